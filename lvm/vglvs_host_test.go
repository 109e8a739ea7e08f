package lvm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// groupText is a metadata file for vgcfgrestore: group vg (uuid vgid) on
// one PV (uuid pvid), with a thin pool and its hidden LVs, a thick LV of
// two segments, and n thin LVs carrying the tags cryptvol volumes carry.
func groupText(vg, vgid, pvid string, n int) string {
	uuid := func(i int) string { return fmt.Sprintf("%06d-AAAA-BBBB-CCCC-DDDD-EEEE-%06d", i, i) }
	linear := func(name string, id, extents, at int, visible bool) string {
		status := `"READ", "WRITE"`
		if visible {
			status += `, "VISIBLE"`
		}
		return fmt.Sprintf("%s {\nid = %q\nstatus = [%s]\nflags = []\ncreation_time = 1796280000\ncreation_host = \"lab\"\nsegment_count = 1\n"+
			"segment1 {\nstart_extent = 0\nextent_count = %d\ntype = \"striped\"\nstripe_count = 1\nstripes = [\n\"pv0\", %d\n]\n}\n}\n",
			name, uuid(id), status, extents, at)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s {\nid = %q\nseqno = 1\nformat = \"lvm2\"\nstatus = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nflags = []\nextent_size = 8192\nmax_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n", vg, vgid)
	fmt.Fprintf(&b, "physical_volumes {\npv0 {\nid = %q\ndevice = \"/dev/null\"\nstatus = [\"ALLOCATABLE\"]\nflags = []\ndev_size = 131072\npe_start = 128\npe_count = 15\n}\n}\n", pvid)
	fmt.Fprintf(&b, "logical_volumes {\npool0 {\nid = %q\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\ncreation_time = 1796280000\ncreation_host = \"lab\"\nsegment_count = 1\n"+
		"segment1 {\nstart_extent = 0\nextent_count = 8\ntype = \"thin-pool\"\nmetadata = \"pool0_tmeta\"\npool = \"pool0_tdata\"\ntransaction_id = %d\nchunk_size = 128\ndiscards = \"passdown\"\nzero_new_blocks = 1\n}\n}\n", uuid(1), n)
	b.WriteString(linear("lvol0_pmspare", 2, 1, 0, false))
	b.WriteString(linear("pool0_tmeta", 3, 1, 1, false))
	b.WriteString(linear("pool0_tdata", 4, 8, 2, false))
	fmt.Fprintf(&b, "cv-thick {\nid = %q\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\ntags = [\"cryptvol\", \"cryptvol_ready\"]\ncreation_time = 1796280100\ncreation_host = \"lab\"\nsegment_count = 2\n"+
		"segment1 {\nstart_extent = 0\nextent_count = 1\ntype = \"striped\"\nstripe_count = 1\nstripes = [\n\"pv0\", 10\n]\n}\n"+
		"segment2 {\nstart_extent = 1\nextent_count = 2\ntype = \"striped\"\nstripe_count = 1\nstripes = [\n\"pv0\", 12\n]\n}\n}\n", uuid(5))
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "cv-vol-%d {\nid = %q\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\ntags = [\"cryptvol_ready\", \"cryptvol\", \"cryptvol_fs_ext4\", \"cryptvol_key_%d\"]\n"+
			"creation_time = %d\ncreation_host = \"lab\"\nsegment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = %d\ntype = \"thin\"\nthin_pool = \"pool0\"\ntransaction_id = %d\ndevice_id = %d\n}\n}\n",
			i, uuid(100+i), i, 1796281000+i, 1+i%7, i-1, i)
	}
	b.WriteString("}\n}\ncontents = \"Text Format Volume Group\"\nversion = 1\ndescription = \"cryptvol host test\"\ncreation_host = \"lab\"\ncreation_time = 1796280996\n")
	return b.String()
}

// Real lvm, a real metadata area: after every commit, the LVs and the group
// read from the text are those lvs and vgs report, through the circular area's wrap too (a
// 60 KiB area and a 15 KiB text wrap every few commits).
func TestHostMetadataLVsFollowLvm(t *testing.T) {
	loop := hostLoop(t, 64<<20)
	vg := fmt.Sprintf("cvtext%d", time.Now().UnixNano()%1e9)
	ctx := context.Background()
	lvm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("lvm", args...).Output()
		if err != nil {
			t.Fatalf("lvm %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	lvm("pvcreate", "-q", "--dataalignment", "64k", "--metadatasize", "16k", loop)
	lvm("vgcreate", "-q", vg, loop)
	t.Cleanup(func() {
		// vgremove would deactivate the thin pool's hidden LVs, which
		// needs device-mapper: wipe the label instead, and the copies
		// lvm kept of the group's metadata.
		if out, err := exec.Command("lvm", "pvremove", "-ff", "-y", loop).CombinedOutput(); err != nil {
			t.Errorf("lvm pvremove: %v: %s", err, out)
		}
		old, _ := filepath.Glob("/etc/lvm/archive/" + vg + "_*.vg")
		for _, f := range append(old, "/etc/lvm/backup/"+vg) {
			os.Remove(f)
		}
	})
	file := filepath.Join(t.TempDir(), vg+".vg")
	text := groupText(vg, lvm("vgs", "--noheadings", "-o", "vg_uuid", vg), lvm("pvs", "--noheadings", "-o", "pv_uuid", loop), 40)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	// --force: the group has thin LVs, which lvm restores only when told.
	lvm("vgcfgrestore", "-q", "--force", "-f", file, vg)

	c, err := New(vg)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string) string {
		t.Helper()
		for _, tag := range []string{"cryptvol", ""} {
			want, err := c.ListLVs(ctx, tag)
			if err != nil {
				t.Fatal(err)
			}
			_, got, err := c.MetadataLVs(ctx, tag)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			sameLVs(t, what+", tag "+tag, want, got)
		}
		wantVG, err := c.VG(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if vg, err := c.MetadataVG(ctx); err != nil || vg != wantVG {
			t.Fatalf("%s: group from the text %+v (%v), vgs reported %+v", what, vg, err, wantVG)
		}
		mark, err := c.MetadataMark(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return mark
	}
	mark := check("restored")
	wraps := 0
	for i := 0; i < 40 && wraps < 2; i++ {
		lv := fmt.Sprintf("%s/cv-vol-%d", vg, 1+i%40)
		if i%2 == 0 {
			lvm("lvchange", "--addtag", fmt.Sprintf("cvtest_round_%d", i), lv)
		} else {
			lvm("lvchange", "--deltag", "cryptvol_ready", lv)
		}
		next := check(fmt.Sprintf("commit %d", i))
		if next == mark {
			t.Fatalf("commit %d left the mark at %q", i, mark)
		}
		mark = next
		c.marks.mu.Lock()
		_, where, err := c.marks.readLocked([]string{loop}, vg)
		c.marks.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if where.loc.offset+where.loc.size > where.size {
			wraps++
		}
	}
	t.Logf("the text wrapped past the area's end %d times", wraps)
	if wraps == 0 {
		t.Fatal("40 commits and the text never wrapped past the area's end: the wrapped read went untested")
	}
}
