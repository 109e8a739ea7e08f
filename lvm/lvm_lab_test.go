//go:build lab

package lvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/internal/command"
)

func labClient(t *testing.T) (*Client, string) {
	t.Helper()
	vg := os.Getenv("CRYPTVOL_LAB_VG")
	if vg == "" {
		t.Skip("CRYPTVOL_LAB_VG is not set (lab only)")
	}
	c, err := New(vg)
	if err != nil {
		t.Fatal(err)
	}
	return c, os.Getenv("CRYPTVOL_LAB_POOL")
}

func TestLabLifecycle(t *testing.T) {
	c, pool := labClient(t)
	if pool == "" {
		t.Fatal("CRYPTVOL_LAB_POOL is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	tag := "cvlabtest_" + suffix
	thick, thin := "cvlab-thick-"+suffix, "cvlab-thin-"+suffix
	for _, name := range []string{thick, thin} {
		t.Cleanup(func() {
			if err := c.RemoveLV(context.Background(), name); err != nil && !errors.Is(err, ErrNotFound) {
				t.Errorf("cleanup: %v", err)
			}
		})
	}

	vg, err := c.VG(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if vg.Free < 128<<20 || vg.ExtentSize == 0 || vg.Size < vg.Free {
		t.Fatalf("VG = %+v", vg)
	}
	if _, err := c.PoolFree(ctx, pool); err != nil {
		t.Fatal(err)
	}

	if err := c.CreateLV(ctx, CreateRequest{Name: thick, Size: 64 << 20, Tags: []string{tag, "cryptvol_fs_ext4"}}); err != nil {
		t.Fatal(err)
	}
	lv, err := c.LV(ctx, thick)
	if err != nil {
		t.Fatal(err)
	}
	if !lv.Active || lv.Pool != "" || lv.Size != 64<<20 || lv.Path != "/dev/"+vg.Name+"/"+thick || time.Since(lv.Created) > time.Hour {
		t.Fatalf("thick LV = %+v", lv)
	}
	if _, err := os.Stat(lv.Path); err != nil {
		t.Fatalf("active thick LV has no device node: %v", err)
	}

	if err := c.CreateLV(ctx, CreateRequest{Name: thin, Size: 96 << 20, Pool: pool, Tags: []string{tag}}); err != nil {
		t.Fatal(err)
	}
	tlv, err := c.LV(ctx, thin)
	if err != nil {
		t.Fatal(err)
	}
	if !tlv.Active || tlv.Pool != pool || tlv.Size != 96<<20 {
		t.Fatalf("thin LV = %+v", tlv)
	}
	if err := c.CreateLV(ctx, CreateRequest{Name: thin, Size: 96 << 20, Pool: pool}); !errors.Is(err, ErrExists) {
		t.Fatalf("creating %s twice: %v, want ErrExists", thin, err)
	}

	if err := c.AddTag(ctx, thin, "cryptvol_key_17"); err != nil {
		t.Fatal(err)
	}
	listed, err := c.ListLVs(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range listed {
		names = append(names, l.Name)
		if l.Name == thin && !slices.Contains(l.Tags, "cryptvol_key_17") {
			t.Errorf("AddTag not visible: %q", l.Tags)
		}
	}
	slices.Sort(names)
	if want := []string{thick, thin}; !slices.Equal(names, want) {
		t.Fatalf("ListLVs(%s) = %q, want %q", tag, names, want)
	}

	for _, name := range []string{thick, thin} {
		if err := c.Deactivate(ctx, name); err != nil {
			t.Fatal(err)
		}
		got, err := c.LV(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got.Active {
			t.Fatalf("%s still active after Deactivate", name)
		}
		// Active asks the kernel (sysfs), not lvs: the two agree.
		if c.Active(got) {
			t.Fatalf("%s: Active says active after Deactivate", name)
		}
		if _, err := os.Stat(got.Path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: device node %s still there after Deactivate: %v", name, got.Path, err)
		}
		if err := c.Activate(ctx, name); err != nil {
			t.Fatal(err)
		}
		if got, err = c.LV(ctx, name); err != nil {
			t.Fatal(err)
		}
		if !got.Active {
			t.Fatalf("%s not active after Activate", name)
		}
		if !c.Active(got) {
			t.Fatalf("%s: Active says inactive after Activate (node %s, uuid %s)", name, got.Path, got.UUID)
		}
		if _, err := os.Stat(got.Path); err != nil {
			t.Fatalf("%s: no device node after Activate: %v", name, err)
		}
	}
	if _, err := c.PoolFree(ctx, pool); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{thick, thin} {
		if err := c.RemoveLV(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := c.LV(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("LV(%s) after RemoveLV: %v, want ErrNotFound", name, err)
		}
		if err := c.RemoveLV(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second RemoveLV(%s): %v, want ErrNotFound", name, err)
		}
	}
	if listed, err := c.ListLVs(ctx, tag); err != nil || len(listed) != 0 {
		t.Fatalf("ListLVs after removal = %v, %v", listed, err)
	}
	if err := c.Activate(ctx, "cvlab-never-"+suffix); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Activate of a missing LV: %v, want ErrNotFound", err)
	}
}

// The metadata mark (MetadataMark) is read from the devices: it changes
// with every commit, the Client's own or an outside lvm command's, and not
// with activation; after the first read (one pvs) it runs no program.
func TestLabMetadataMark(t *testing.T) {
	c, _ := labClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	runs := 0
	counted, err := New(c.vg, WithExec(func(ctx context.Context, stdin []byte, prog string, args ...string) ([]byte, error) {
		runs++
		return command.Runner(command.ProgramAndAction)(ctx, stdin, prog, args...)
	}))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("cvlab-mark-%d", time.Now().UnixNano()%1e9)
	t.Cleanup(func() { c.RemoveLV(context.Background(), name) })
	seqno := func() string {
		out, err := c.run(ctx, "vgs", "--noheadings", "-o", "vg_seqno", c.vg)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	mark := func() string {
		t.Helper()
		m, err := counted.MetadataMark(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m0, s0 := mark(), seqno()
	if runs != 1 {
		t.Fatalf("first MetadataMark ran %d programs, want 1 (pvs)", runs)
	}
	if m := mark(); m != m0 {
		t.Fatalf("mark changed with no commit: %q then %q", m0, m)
	}
	step := func(what string, do func() error, wantChange bool) {
		t.Helper()
		before, sBefore := mark(), seqno()
		if err := do(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		after, sAfter := mark(), seqno()
		if (after != before) != wantChange || (sAfter != sBefore) != wantChange {
			t.Fatalf("%s: mark %q -> %q, vg_seqno %s -> %s; want changed=%v", what, before, after, sBefore, sAfter, wantChange)
		}
	}
	step("lvcreate", func() error {
		return c.CreateLV(ctx, CreateRequest{Name: name, Size: 16 << 20, Tags: []string{"cvlabmark"}})
	}, true)
	// The LVs read from the metadata text are lvs's, on real devices with
	// device-mapper: activation from the kernel (Active), the rest from
	// the text, with no program.
	sameAsLvs := func(what string) {
		t.Helper()
		want, err := c.ListLVs(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		before := runs
		_, got, err := counted.MetadataLVs(ctx, "")
		if err != nil {
			t.Fatalf("%s: MetadataLVs: %v", what, err)
		}
		if runs != before {
			t.Errorf("%s: MetadataLVs ran %d programs", what, runs-before)
		}
		for i := range got {
			got[i].Active = c.Active(got[i])
		}
		// A thin pool has no device node for Active to look at (lvs
		// reports it active when its -tpool layer is): pools are
		// compared without activation. No cryptvol volume is a pool.
		for i := range want {
			if want[i].Path == "" && i < len(got) && got[i].Name == want[i].Name {
				got[i].Active = want[i].Active
			}
		}
		sameLVs(t, what, want, got)
		wantVG, err := c.VG(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before = runs
		if vg, err := counted.MetadataVG(ctx); err != nil || vg != wantVG || runs != before {
			t.Errorf("%s: group from the text %+v (%v, %d programs), vgs reported %+v", what, vg, err, runs-before, wantVG)
		}
	}
	sameAsLvs("after lvcreate")
	step("lvchange -an", func() error { return c.Deactivate(ctx, name) }, false)
	sameAsLvs("after lvchange -an")
	step("lvchange -ay", func() error { return c.Activate(ctx, name) }, false)
	step("lvchange --addtag", func() error { return c.AddTag(ctx, name, "cvlabmark2") }, true)
	step("lvchange -ay", func() error { return c.Activate(ctx, name) }, false)
	step("lvchange -an --addtag", func() error { return c.DeactivateAndTag(ctx, name, "cvlabmark3") }, true)
	if lv, err := c.LV(ctx, name); err != nil || lv.Active || !slices.Contains(lv.Tags, "cvlabmark3") {
		t.Fatalf("after DeactivateAndTag: %+v, %v; want inactive and tagged cvlabmark3", lv, err)
	}
	// An outside lvm command, as an operator or another host would run.
	step("lvm lvchange --deltag (outside the client)", func() error {
		_, err := c.run(ctx, "lvchange", "--deltag", "cvlabmark2", c.lvRef(name))
		return err
	}, true)
	step("lvremove", func() error { return c.RemoveLV(ctx, name) }, true)
	if runs != 1 {
		t.Errorf("MetadataMark ran %d programs over all its reads, want only the first pvs", runs)
	}
	if s := seqno(); s == s0 {
		t.Errorf("vg_seqno %s unchanged over five commits", s)
	}
	// Another reader (a fresh Client, another process) reads the same mark.
	fresh, _ := New(c.vg)
	if m, err := fresh.MetadataMark(ctx); err != nil || m != mark() {
		t.Errorf("a fresh client's mark %q, %v; want %q", m, err, mark())
	}
}
