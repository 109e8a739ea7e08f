package lvm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/internal/command"
)

// fakeLVM records every argv and answers from a table keyed by the joined
// argv; an unexpected command fails the test.
type fakeLVM struct {
	t       *testing.T
	calls   [][]string
	answers map[string]answer
}

type answer struct {
	stdout string
	code   int // non-zero: return *command.Error with this exit code
	stderr string
}

func newFake(t *testing.T) *fakeLVM { return &fakeLVM{t: t, answers: map[string]answer{}} }

func (f *fakeLVM) on(argv string, a answer) { f.answers[argv] = a }

func (f *fakeLVM) exec(_ context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	argv := append([]string{name}, args...)
	f.calls = append(f.calls, argv)
	if stdin != nil {
		f.t.Errorf("lvm got stdin %q; lvm commands must not read stdin", stdin)
	}
	a, ok := f.answers[strings.Join(argv, " ")]
	if !ok {
		f.t.Fatalf("unexpected command %q", argv)
	}
	if a.code != 0 {
		return []byte(a.stdout), &command.Error{Args: argv, ExitCode: a.code, Stderr: a.stderr, Naming: command.ProgramAndAction}
	}
	return []byte(a.stdout), nil
}

func (f *fakeLVM) client(t *testing.T) *Client {
	c, err := New("cvhost", WithExec(f.exec))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fixture(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const (
	lvsCmd   = "lvm lvs -o lv_name,vg_name,lv_path,lv_size,lv_tags,lv_active,pool_lv,lv_time,lv_uuid --units b --nosuffix --reportformat json "
	poolCmd  = "lvm lvs -o lv_name,lv_size,data_percent,segtype,lv_active,metadata_percent --units b --nosuffix --reportformat json "
	vgsCmd   = "lvm vgs -o vg_name,vg_size,vg_free,vg_extent_size,vg_uuid,vg_lock_type,pv_name --units b --nosuffix --reportformat json cvhost"
	emptyLVs = "  {\n      \"report\": [\n          {\n              \"lv\": [\n              ]\n          }\n      ]\n  }\n"
	emptyVGs = "  {\n      \"report\": [\n          {\n              \"vg\": [\n              ]\n          }\n      ]\n  }\n"
)

func TestNewRejectsBadVGNames(t *testing.T) {
	for _, vg := range []string{"", ".", "..", "-vg", "vg/x", "vg x", "vg;rm", strings.Repeat("a", 128)} {
		if _, err := New(vg, WithExec(newFake(t).exec)); err == nil {
			t.Errorf("New(%q) accepted a bad volume group name", vg)
		}
	}
	for _, vg := range []string{"vg0", "cryptvol_vg", "a+b.c-d", strings.Repeat("a", 127)} {
		if _, err := New(vg); err != nil {
			t.Errorf("New(%q): %v", vg, err)
		}
	}
}

func TestValidateLVName(t *testing.T) {
	good := []string{"cv-data", "cv-a.b_c+d", "x", strings.Repeat("a", 127), "cv-mysnapshot"}
	bad := []string{"", ".", "..", "-x", "a/b", "a b", "a\x00b", "é", strings.Repeat("a", 128),
		"snapshot1", "pvmove0", "cv-x_tdata", "cv-_rimage_1", "cv-x_cmeta", "cv-x_vorigin"}
	for _, n := range good {
		if err := ValidateLVName(n); err != nil {
			t.Errorf("ValidateLVName(%q): %v", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateLVName(n); err == nil {
			t.Errorf("ValidateLVName(%q) accepted a bad name", n)
		}
	}
	err := ValidateLVName("cv-x y")
	if err == nil || !strings.Contains(err.Error(), "allowed") || !strings.Contains(err.Error(), `"cv-x y"`) {
		t.Errorf("error should name the bad value and what is allowed: %v", err)
	}
}

func TestValidateTag(t *testing.T) {
	good := []string{"cryptvol", "cryptvol_fs_ext4", "cryptvol_key_17", "a/b=c!d:e&f#g+h.i-j"}
	bad := []string{"", "-x", "a b", "a,b", "a@b", "a$b", "a\nb", strings.Repeat("t", 1025)}
	for _, tag := range good {
		if err := ValidateTag(tag); err != nil {
			t.Errorf("ValidateTag(%q): %v", tag, err)
		}
	}
	for _, tag := range bad {
		if err := ValidateTag(tag); err == nil {
			t.Errorf("ValidateTag(%q) accepted a bad tag", tag)
		}
	}
}

func TestLVParsesReport(t *testing.T) {
	f := newFake(t)
	f.on(lvsCmd+"cvhost/cv-thin", answer{stdout: fixture(t, "lvs-one.json")})
	lv, err := f.client(t).LV(context.Background(), "cv-thin")
	if err != nil {
		t.Fatal(err)
	}
	want := LV{
		Name: "cv-thin", VG: "cvhost", Path: "/dev/cvhost/cv-thin", Size: 419430400,
		Tags: []string{"cryptvol", "cryptvol_fs_xfs"}, Active: false, Pool: "pool0",
	}
	created := lv.Created
	lv.Created = time.Time{}
	if !reflect.DeepEqual(lv, want) {
		t.Errorf("LV = %+v, want %+v", lv, want)
	}
	if !created.Equal(time.Date(2026, 11, 23, 11, 10, 0, 0, time.UTC)) {
		t.Errorf("Created = %v", created)
	}
}

func TestLVNotFound(t *testing.T) {
	f := newFake(t)
	stderr := "  Failed to find logical volume \"cvhost/cv-gone\"\n"
	f.on(lvsCmd+"cvhost/cv-gone", answer{stdout: emptyLVs, code: 5, stderr: stderr})
	_, err := f.client(t).LV(context.Background(), "cv-gone")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	var e *command.Error
	if !errors.As(err, &e) || e.ExitCode != 5 || e.Stderr != stderr {
		t.Fatalf("lvm error not kept: %#v", e)
	}
	for _, s := range []string{"cvhost/cv-gone", "lvm lvs", "exit code 5", `Failed to find logical volume "cvhost/cv-gone"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

func TestLVMissingVGIsNotFound(t *testing.T) {
	f := newFake(t)
	f.on(lvsCmd+"cvhost/cv-a", answer{code: 5, stderr: "  Volume group \"cvhost\" not found\n  Cannot process volume group cvhost\n"})
	if _, err := f.client(t).LV(context.Background(), "cv-a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestLVOtherFailureIsNotNotFound(t *testing.T) {
	f := newFake(t)
	f.on(lvsCmd+"cvhost/cv-a", answer{code: 5, stderr: "  Couldn't find device with uuid abc.\n  Cannot process volume group cvhost\n"})
	_, err := f.client(t).LV(context.Background(), "cv-a")
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want a failure that is not ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "Couldn't find device with uuid abc.; Cannot process volume group cvhost") {
		t.Errorf("stderr should be trimmed into one line: %q", err)
	}
}

func TestListLVsByTagKeepsOnlyThisVG(t *testing.T) {
	f := newFake(t)
	f.on(lvsCmd+"@cryptvol", answer{stdout: fixture(t, "lvs-tag.json")})
	lvs, err := f.client(t).ListLVs(context.Background(), "cryptvol")
	if err != nil {
		t.Fatal(err)
	}
	if len(lvs) != 2 || lvs[0].Name != "cv-a" || lvs[1].Name != "cv-thin" {
		t.Fatalf("ListLVs = %+v, want cv-a and cv-thin of cvhost only", lvs)
	}
	if !lvs[0].Active || lvs[1].Active {
		t.Errorf("Active = %v, %v; want true, false", lvs[0].Active, lvs[1].Active)
	}
	if !reflect.DeepEqual(lvs[0].Tags, []string{"cryptvol", "cryptvol_fs_ext4", "cryptvol_key_17"}) {
		t.Errorf("Tags = %q", lvs[0].Tags)
	}
}

func TestListLVsWithoutTagListsTheVG(t *testing.T) {
	f := newFake(t)
	f.on(lvsCmd+"cvhost", answer{stdout: fixture(t, "lvs-all.json")})
	lvs, err := f.client(t).ListLVs(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(lvs) != 3 || lvs[2].Name != "pool0" || lvs[2].Path != "" || lvs[2].Tags != nil || lvs[2].Size != 104857600 {
		t.Fatalf("ListLVs = %+v", lvs)
	}
}

func TestListLVsEmpty(t *testing.T) {
	f := newFake(t)
	f.on(lvsCmd+"@cryptvol", answer{stdout: emptyLVs})
	lvs, err := f.client(t).ListLVs(context.Background(), "cryptvol")
	if err != nil || len(lvs) != 0 {
		t.Fatalf("ListLVs = %v, %v; want none", lvs, err)
	}
}

func TestBadReportIsAnError(t *testing.T) {
	f := newFake(t)
	f.on(lvsCmd+"cvhost/cv-a", answer{stdout: `{"report":[{"lv":[{"lv_name":"cv-a","vg_name":"cvhost","lv_size":"12.5"}]}]}`})
	if _, err := f.client(t).LV(context.Background(), "cv-a"); err == nil || !strings.Contains(err.Error(), "lv_size") {
		t.Fatalf("err = %v, want bad lv_size", err)
	}
	f.on(lvsCmd+"cvhost/cv-b", answer{stdout: `WARNING: not json`})
	if _, err := f.client(t).LV(context.Background(), "cv-b"); err == nil {
		t.Fatal("non-JSON output accepted")
	}
}

func TestVG(t *testing.T) {
	f := newFake(t)
	f.on(vgsCmd, answer{stdout: fixture(t, "vgs.json")})
	vg, err := f.client(t).VG(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (VG{Name: "cvhost", Size: 310378496, Free: 134217728, ExtentSize: 4194304}); vg != want {
		t.Fatalf("VG = %+v, want %+v", vg, want)
	}
}

// The vgs that VG runs names the group's devices (a row per PV): the
// metadata mark is then read from them with no pvs, so a restart runs one
// lvm program fewer. A device lvm cannot find teaches nothing, and the mark
// asks pvs.
func TestVGTeachesTheMarkItsDevices(t *testing.T) {
	pv := pvImage(t, "cvhost", 512, 900, 0xabcd, 0)
	row := func(dev string) string {
		return `{"vg_name":"cvhost","vg_size":"1073741824","vg_free":"0","vg_extent_size":"4194304","vg_uuid":"u","vg_lock_type":"","pv_name":"` + dev + `"}`
	}
	f := newFake(t) // no pvs answer: running it fails the test
	f.on(vgsCmd, answer{stdout: `{"report":[{"vg":[` + row(pv) + `]}]}`})
	c := f.client(t)
	if _, err := c.VG(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m, err := c.MetadataMark(context.Background()); err != nil || !strings.Contains(m, pv) {
		t.Fatalf("MetadataMark after VG = %q, %v; want it read from %s", m, err, pv)
	}

	f = newFake(t)
	f.on(vgsCmd, answer{stdout: `{"report":[{"vg":[` + row(pv) + `,` + row("[unknown]") + `]}]}`})
	f.on("lvm pvs -o pv_name,vg_name --reportformat json --select vg_name=cvhost", answer{stdout: `{"report":[{"pv":[{"pv_name":"` + pv + `","vg_name":"cvhost"}]}]}`})
	c = f.client(t)
	if _, err := c.VG(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.MetadataMark(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.calls; len(got) != 2 || got[1][1] != "pvs" {
		t.Fatalf("ran %q; with a device missing, want the mark to ask pvs", got)
	}
}

func TestVGNotFound(t *testing.T) {
	f := newFake(t)
	f.on(vgsCmd, answer{stdout: emptyVGs, code: 5, stderr: "  Volume group \"cvhost\" not found\n  Cannot process volume group cvhost\n"})
	if _, err := f.client(t).VG(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestPoolFree(t *testing.T) {
	f := newFake(t)
	f.on(poolCmd+"cvhost/pool0", answer{stdout: fixture(t, "lvs-pool-active.json")})
	free, err := f.client(t).PoolFree(context.Background(), "pool0")
	if err != nil {
		t.Fatal(err)
	}
	// 104857600 bytes, 12.50% used.
	if free != 91750400 {
		t.Fatalf("PoolFree = %d, want 91750400", free)
	}
}

func TestPoolFreeActivatesAnInactivePool(t *testing.T) {
	f := newFake(t)
	inactive, active := fixture(t, "lvs-pool-inactive.json"), fixture(t, "lvs-pool-active.json")
	f.on(poolCmd+"cvhost/pool0", answer{stdout: inactive})
	c := f.client(t)
	exec := c.exec
	c.exec = func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
		out, err := exec(ctx, stdin, name, args...)
		if args[0] == "lvchange" {
			f.on(poolCmd+"cvhost/pool0", answer{stdout: active})
		}
		return out, err
	}
	f.on("lvm lvchange -ay cvhost/pool0", answer{})
	free, err := c.PoolFree(context.Background(), "pool0")
	if err != nil {
		t.Fatal(err)
	}
	if free != 91750400 {
		t.Fatalf("PoolFree = %d", free)
	}
	if len(f.calls) != 3 {
		t.Fatalf("calls = %q, want lvs, lvchange -ay, lvs", f.calls)
	}
}

func TestPoolFreeRefusesANonPool(t *testing.T) {
	f := newFake(t)
	f.on(poolCmd+"cvhost/cv-a", answer{stdout: fixture(t, "lvs-notpool.json")})
	if _, err := f.client(t).PoolFree(context.Background(), "cv-a"); err == nil || !strings.Contains(err.Error(), "not a thin pool") {
		t.Fatalf("err = %v", err)
	}
}

func TestCreateThick(t *testing.T) {
	f := newFake(t)
	f.on("lvm lvcreate -n cv-a -L 67108864b --activate y --setactivationskip n --addtag cryptvol --addtag cryptvol_fs_ext4 -y --wipesignatures y cvhost", answer{})
	if err := f.client(t).CreateLV(context.Background(), CreateRequest{Name: "cv-a", Size: 64 << 20, Tags: []string{"cryptvol", "cryptvol_fs_ext4"}}); err != nil {
		t.Fatal(err)
	}
	// One lvm start per create: nothing is listed afterwards.
	if len(f.calls) != 1 {
		t.Fatalf("calls = %q, want only lvcreate", f.calls)
	}
}

func TestCreateThin(t *testing.T) {
	f := newFake(t)
	f.on("lvm lvcreate -T cvhost/pool0 -V 419430400b -n cv-thin --activate y --setactivationskip n --addtag cryptvol -y --wipesignatures y", answer{})
	if err := f.client(t).CreateLV(context.Background(), CreateRequest{Name: "cv-thin", Size: 400 << 20, Pool: "pool0", Tags: []string{"cryptvol"}}); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 1 {
		t.Fatalf("calls = %q, want only lvcreate", f.calls)
	}
}

func TestCreateExisting(t *testing.T) {
	f := newFake(t)
	f.on("lvm lvcreate -n cv-a -L 1024b --activate y --setactivationskip n -y --wipesignatures y cvhost",
		answer{code: 5, stderr: "  Logical Volume \"cv-a\" already exists in volume group \"cvhost\"\n"})
	err := f.client(t).CreateLV(context.Background(), CreateRequest{Name: "cv-a", Size: 1024})
	if !errors.Is(err, ErrExists) || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrExists", err)
	}
}

func TestCreateValidatesBeforeRunning(t *testing.T) {
	for _, req := range []CreateRequest{
		{Name: "cv a", Size: 1 << 20},
		{Name: "cv-a", Size: 0},
		{Name: "cv-a", Size: 1 << 20, Pool: "-pool"},
		{Name: "cv-a", Size: 1 << 20, Tags: []string{"ok", "bad tag"}},
		{Name: "cv-a_tmeta", Size: 1 << 20},
	} {
		f := newFake(t)
		if err := f.client(t).CreateLV(context.Background(), req); err == nil {
			t.Errorf("CreateLV(%+v) accepted bad input", req)
		}
		if len(f.calls) != 0 {
			t.Errorf("CreateLV(%+v) ran %q before validating", req, f.calls)
		}
	}
}

func TestChangeCommands(t *testing.T) {
	f := newFake(t)
	f.on("lvm lvchange -ay cvhost/cv-a", answer{})
	f.on("lvm lvchange -an cvhost/cv-a", answer{})
	f.on("lvm lvchange --addtag cryptvol_key_17 cvhost/cv-a", answer{})
	f.on("lvm lvchange -an --addtag cryptvol_ready cvhost/cv-a", answer{})
	f.on("lvm lvremove -y cvhost/cv-a", answer{})
	c := f.client(t)
	ctx := context.Background()
	for _, err := range []error{c.Activate(ctx, "cv-a"), c.Deactivate(ctx, "cv-a"), c.AddTag(ctx, "cv-a", "cryptvol_key_17"), c.DeactivateAndTag(ctx, "cv-a", "cryptvol_ready"), c.RemoveLV(ctx, "cv-a")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(f.calls) != 5 {
		t.Fatalf("calls = %q", f.calls)
	}
}

func TestChangeCommandsOnMissingLV(t *testing.T) {
	f := newFake(t)
	nf := answer{code: 5, stderr: "  Failed to find logical volume \"cvhost/cv-gone\"\n"}
	f.on("lvm lvchange -ay cvhost/cv-gone", nf)
	f.on("lvm lvchange -an cvhost/cv-gone", nf)
	f.on("lvm lvremove -y cvhost/cv-gone", nf)
	c := f.client(t)
	ctx := context.Background()
	for name, err := range map[string]error{"Activate": c.Activate(ctx, "cv-gone"), "Deactivate": c.Deactivate(ctx, "cv-gone"), "RemoveLV": c.RemoveLV(ctx, "cv-gone")} {
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "cvhost/cv-gone") {
			t.Errorf("%s: err = %v, want ErrNotFound naming the LV", name, err)
		}
	}
}

func TestRemoveInUseIsNotNotFound(t *testing.T) {
	f := newFake(t)
	f.on("lvm lvremove -y cvhost/cv-a", answer{code: 5, stderr: "  Logical volume cvhost/cv-a in use.\n"})
	err := f.client(t).RemoveLV(context.Background(), "cv-a")
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("err = %v", err)
	}
}

func TestChangeCommandsValidate(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	ctx := context.Background()
	for _, err := range []error{c.Activate(ctx, "../x"), c.Deactivate(ctx, "-an"), c.RemoveLV(ctx, ""), c.AddTag(ctx, "cv-a", "-x"), c.AddTag(ctx, "a b", "ok"), c.DeactivateAndTag(ctx, "cv-a", "-x"), c.DeactivateAndTag(ctx, "-an", "ok")} {
		if err == nil {
			t.Error("bad input accepted")
		}
	}
	if _, err := c.ListLVs(ctx, "bad,tag"); err == nil {
		t.Error("bad tag accepted")
	}
	if _, err := c.PoolFree(ctx, "pool/0"); err == nil {
		t.Error("bad pool name accepted")
	}
	if len(f.calls) != 0 {
		t.Fatalf("commands ran before validation: %q", f.calls)
	}
}

func TestEnsureVGExisting(t *testing.T) {
	f := newFake(t)
	f.on(vgsCmd, answer{stdout: fixture(t, "vgs.json")})
	if err := f.client(t).EnsureVG(context.Background(), []string{"/dev/vdb"}); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 1 {
		t.Fatalf("calls = %q, want only vgs", f.calls)
	}
}

func TestEnsureVGCreates(t *testing.T) {
	f := newFake(t)
	f.on(vgsCmd, answer{code: 5, stderr: "  Volume group \"cvhost\" not found\n  Cannot process volume group cvhost\n"})
	f.on("lvm pvcreate --metadatasize 16m /dev/vdb /dev/vdc", answer{})
	f.on("lvm vgcreate cvhost /dev/vdb /dev/vdc", answer{})
	if err := f.client(t).EnsureVG(context.Background(), []string{"/dev/vdb", "/dev/vdc"}); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 3 {
		t.Fatalf("calls = %q", f.calls)
	}
}

func TestEnsureVGRefusesBadDevices(t *testing.T) {
	for _, devs := range [][]string{nil, {"vdb"}, {"/dev/"}, {"/tmp/disk.img"}, {"/dev/../etc/passwd"}, {"/dev/vdb", "/dev/vdb"}, {"/dev/vd b"}} {
		f := newFake(t)
		f.on(vgsCmd, answer{code: 5, stderr: "  Volume group \"cvhost\" not found\n"})
		if err := f.client(t).EnsureVG(context.Background(), devs); err == nil {
			t.Errorf("EnsureVG(%q) accepted bad devices", devs)
		}
		if len(f.calls) != 1 {
			t.Errorf("EnsureVG(%q) ran %q", devs, f.calls)
		}
	}
}

func TestEnsureVGPropagatesOtherErrors(t *testing.T) {
	f := newFake(t)
	f.on(vgsCmd, answer{code: 5, stderr: "  Couldn't find device with uuid abc.\n"})
	if err := f.client(t).EnsureVG(context.Background(), []string{"/dev/vdb"}); err == nil {
		t.Fatal("a failing vgs must not lead to pvcreate")
	}
}

func TestEnsureThinPool(t *testing.T) {
	f := newFake(t)
	f.on(poolCmd+"cvhost/pool0", answer{stdout: fixture(t, "lvs-pool-inactive.json")})
	if err := f.client(t).EnsureThinPool(context.Background(), "pool0"); err != nil || len(f.calls) != 1 {
		t.Fatalf("existing pool: err = %v, calls = %q", err, f.calls)
	}

	f = newFake(t)
	f.on(poolCmd+"cvhost/pool0", answer{code: 5, stderr: "  Failed to find logical volume \"cvhost/pool0\"\n"})
	f.on("lvm lvcreate --type thin-pool -l 90%FREE -n pool0 -y cvhost", answer{})
	if err := f.client(t).EnsureThinPool(context.Background(), "pool0"); err != nil || len(f.calls) != 2 {
		t.Fatalf("missing pool: err = %v, calls = %q", err, f.calls)
	}

	f = newFake(t)
	f.on(poolCmd+"cvhost/cv-a", answer{stdout: fixture(t, "lvs-notpool.json")})
	if err := f.client(t).EnsureThinPool(context.Background(), "cv-a"); err == nil || len(f.calls) != 1 {
		t.Fatalf("non-pool LV: err = %v, calls = %q", err, f.calls)
	}
}

// The mechanics are tested in internal/command; lvm's errors name the
// subcommand, not the whole command line.
func TestDefaultExecNamesTheSubcommand(t *testing.T) {
	c, err := New("vg0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.exec(context.Background(), nil, "sh", "-c", "echo '  boom  ' >&2; exit 5")
	var e *command.Error
	if !errors.As(err, &e) || e.ExitCode != 5 || err.Error() != "sh -c: exit code 5: boom" {
		t.Fatalf("err = %v", err)
	}
}

// ReplaceTags swaps tags in one lvchange (one metadata commit), and runs
// nothing when there is nothing to change.
func TestReplaceTagsIsOneCommand(t *testing.T) {
	f := newFake(t)
	f.on("lvm lvchange --deltag cryptvol_key_1 --deltag cryptvol_keytime_5 --addtag cryptvol_key_2 --addtag cryptvol_keytime_9 cvhost/cv-a", answer{})
	f.on("lvm lvchange --addtag cryptvol_key_3 cvhost/cv-a", answer{})
	c := f.client(t)
	ctx := context.Background()
	for _, err := range []error{
		c.ReplaceTags(ctx, "cv-a", []string{"cryptvol_key_1", "cryptvol_keytime_5"}, []string{"cryptvol_key_2", "cryptvol_keytime_9"}),
		c.ReplaceTags(ctx, "cv-a", nil, []string{"cryptvol_key_3"}), c.ReplaceTags(ctx, "cv-a", nil, nil),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(f.calls) != 2 {
		t.Fatalf("calls = %q, want two lvchange", f.calls)
	}
	if err := c.ReplaceTags(ctx, "cv-a", []string{"ok"}, []string{"-bad"}); err == nil || len(f.calls) != 2 {
		t.Errorf("a bad tag: %v, calls %q", err, f.calls)
	}
}

// Snapshot makes an active thin snapshot with its own tags (lvcreate -s
// names the group through the origin), and checks names and tags before
// running anything.
func TestSnapshot(t *testing.T) {
	f := newFake(t)
	f.on("lvm lvcreate -s cvhost/cv-src -n cv-cl --setactivationskip n --activate y -y --addtag cryptvol --addtag cryptvol_key_9", answer{})
	c := f.client(t)
	if err := c.Snapshot(context.Background(), "cv-src", "cv-cl", []string{"cryptvol", "cryptvol_key_9"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][2]string{{"../x", "cv-cl"}, {"cv-src", "a b"}} {
		if err := c.Snapshot(context.Background(), bad[0], bad[1], nil); err == nil {
			t.Errorf("Snapshot(%q) accepted bad names", bad)
		}
	}
	if err := c.Snapshot(context.Background(), "cv-src", "cv-cl", []string{"bad,tag"}); err == nil {
		t.Error("a bad tag was accepted")
	}
	if len(f.calls) != 1 {
		t.Errorf("bad input reached lvm: %q", f.calls)
	}
}
