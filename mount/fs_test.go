package mount

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/internal/command"
	"golang.org/x/sys/unix"
)

// A mount table as the kernel writes it: optional fields, a mount point with
// a space (\040), and two mounts stacked on one directory.
const baseMountInfo = `22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/root rw
25 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
41 22 7:1 / /mnt/with\040space rw,nosuid,nodev,relatime shared:30 master:2 - ext4 /dev/loop1 rw
42 22 0:45 / /mnt/stack rw,relatime - tmpfs tmpfs rw
43 42 253:3 / /mnt/stack rw,nosuid,nodev,relatime - xfs /dev/dm-3 rw,attr2
`

type fakeMounts struct {
	t     *testing.T
	dir   string
	info  string
	calls [][]string
	// run decides what a command does to the mount table and returns its error.
	run func(argv []string) error
	// stdout, if set, is what a command prints.
	stdout func(argv []string, stdin []byte) []byte
}

func newFakeMounts(t *testing.T, table string) *fakeMounts {
	dir := t.TempDir()
	fm := &fakeMounts{t: t, dir: dir, info: filepath.Join(dir, "mountinfo")}
	fm.write(table)
	// /sys/dev/block/253:3 is the dm device cryptvol-v1.
	if err := os.MkdirAll(filepath.Join(dir, "sys/dev/block/253:3/dm"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sys/dev/block/253:3/dm/name"), []byte("cryptvol-v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The device node (a plain file: isDevice then compares names).
	dev := filepath.Join(dir, "dev/mapper/cryptvol-v1")
	if err := os.MkdirAll(filepath.Dir(dev), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dev, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return fm
}

func (fm *fakeMounts) write(table string) {
	if err := os.WriteFile(fm.info, []byte(table), 0o644); err != nil {
		fm.t.Fatal(err)
	}
}

func (fm *fakeMounts) read() string {
	b, err := os.ReadFile(fm.info)
	if err != nil {
		fm.t.Fatal(err)
	}
	return string(b)
}

func (fm *fakeMounts) exec(_ context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	argv := append([]string{name}, args...)
	fm.calls = append(fm.calls, argv)
	if stdin != nil && name != "debugfs" { // debugfs reads its commands, nothing secret
		fm.t.Errorf("%s got stdin", name)
	}
	if fm.run == nil {
		fm.t.Fatalf("unexpected command %q", argv)
	}
	var out []byte
	if fm.stdout != nil {
		out = fm.stdout(argv, stdin)
	}
	return out, fm.run(argv)
}

// mount and unmount stand for mount(2) and umount2(2): they are recorded
// as the mount(8) and umount(8) command lines that would do the same, and
// answered by run like a program.
func (fm *fakeMounts) mount(dev, target, fstype, options string) error {
	_, err := fm.exec(context.Background(), nil, "mount", "-t", fstype, "-o", options, dev, target)
	return err
}

func (fm *fakeMounts) unmount(target string) error {
	_, err := fm.exec(context.Background(), nil, "umount", target)
	return err
}

func (fm *fakeMounts) fs() *FS {
	f := New(WithExec(fm.exec), WithSyscalls(fm.mount, fm.unmount), WithMountInfo(fm.info), WithSysfs(filepath.Join(fm.dir, "sys")), WithDevRoot(fm.dir))
	// The table's mount points (/mnt/stack...) are not on this host.
	f.stat = func(string) (os.FileInfo, error) { return nil, nil }
	return f
}

// A mount point that does not exist has nothing mounted on it, and
// MountedDevice says so without reading the mount table (a volume at rest);
// one that exists is looked up in the table.
func TestMountedDeviceOfAMissingPathReadsNoTable(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "mnt", "v1")
	f := New(WithMountInfo(filepath.Join(dir, "no-table")))
	if dev, err := f.MountedDevice(target); err != nil || dev != "" {
		t.Fatalf("missing mount point: %q, %v; want \"\" without reading the table", dev, err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := f.MountedDevice(target); err == nil {
		t.Fatal("an existing mount point was not looked up in the (unreadable) table")
	}
	table := filepath.Join(dir, "mountinfo")
	os.WriteFile(table, []byte("22 1 253:0 / / rw - ext4 /dev/root rw\n70 22 7:1 / "+target+" rw - ext4 /dev/loop1 rw\n"), 0o644)
	if dev, err := New(WithMountInfo(table), WithSysfs(dir)).MountedDevice(target); err != nil || dev != "/dev/loop1" {
		t.Fatalf("mounted: %q, %v", dev, err)
	}
}

// lookup reads the table through github.com/moby/sys/mountinfo: escaped
// paths are decoded, optional fields skipped, and the topmost of stacked
// mounts is the one found.
func TestLookup(t *testing.T) {
	fm := newFakeMounts(t, baseMountInfo+`50 22 0:50 /a\134b /mnt/x\012y rw - fuse.sshfs user@host:/dir\040x rw`+"\n")
	f := fm.fs()
	for target, want := range map[string]struct {
		major, minor   int
		fstype, source string
		options        string
	}{
		"/mnt/with space": {7, 1, "ext4", "/dev/loop1", "rw,nosuid,nodev,relatime"},
		"/mnt/stack":      {253, 3, "xfs", "/dev/dm-3", "rw,nosuid,nodev,relatime"},
		"/mnt/x\ny":       {0, 50, "fuse.sshfs", "user@host:/dir x", "rw"},
	} {
		e, err := f.lookup(target)
		if err != nil || e == nil {
			t.Fatalf("lookup(%q) = %v, %v", target, e, err)
		}
		if e.Major != want.major || e.Minor != want.minor || e.FSType != want.fstype || e.Source != want.source || e.Options != want.options {
			t.Errorf("lookup(%q) = %+v, want %+v", target, *e, want)
		}
	}
	if e, err := f.lookup("/mnt/none"); err != nil || e != nil {
		t.Errorf("lookup of an unmounted path = %v, %v", e, err)
	}
	fm.write("22 1 253:0 / / rw shared:1 ext4 /dev/root rw\n")
	if _, err := f.lookup("/"); err == nil {
		t.Error("a line without the separator was accepted")
	}
}

func TestMountedDevice(t *testing.T) {
	fm := newFakeMounts(t, baseMountInfo)
	f := fm.fs()
	for target, want := range map[string]string{
		"/mnt/with space": "/dev/loop1",
		"/mnt/stack":      "/dev/mapper/cryptvol-v1", // the top mount, named through sysfs
		"/mnt/none":       "",
		"/proc":           "proc",
	} {
		got, err := f.MountedDevice(target)
		if err != nil || got != want {
			t.Errorf("MountedDevice(%q) = %q, %v; want %q", target, got, err, want)
		}
	}
	if _, err := f.MountedDevice("relative/path"); err == nil {
		t.Error("relative target accepted")
	}
	if _, err := New(WithMountInfo(filepath.Join(fm.dir, "missing"))).MountedDevice(fm.dir); err == nil {
		t.Error("an unreadable mount table must be an error, not \"not mounted\"")
	}
}

// MountedUnder: the mount points directly inside a root, each with its
// topmost device, from one read; deeper mounts and the root itself are not
// volumes.
func TestMountedUnder(t *testing.T) {
	fm := newFakeMounts(t, baseMountInfo+"60 22 0:60 / /mnt/deep/er rw - tmpfs tmpfs rw\n61 22 0:61 / /mnt rw - tmpfs tmpfs rw\n")
	got, err := fm.fs().MountedUnder("/mnt")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"with space": "/dev/loop1", "stack": "/dev/mapper/cryptvol-v1"}
	if len(got) != len(want) || got["with space"] != want["with space"] || got["stack"] != want["stack"] {
		t.Errorf("MountedUnder(/mnt) = %q, want %q", got, want)
	}
	if _, err := fm.fs().MountedUnder("relative"); err == nil {
		t.Error("a relative root was accepted")
	}
	if _, err := New(WithMountInfo(filepath.Join(fm.dir, "missing"))).MountedUnder("/mnt"); err == nil {
		t.Error("an unreadable mount table must be an error, not \"nothing mounted\"")
	}
}

func TestMountedDeviceResolvesSymlinkedTarget(t *testing.T) {
	fm := newFakeMounts(t, "")
	real := filepath.Join(fm.dir, "real")
	link := filepath.Join(fm.dir, "link")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	fm.write("60 22 253:3 / " + real + " rw,nosuid,nodev - ext4 /dev/mapper/cryptvol-v1 rw\n")
	if got, err := fm.fs().MountedDevice(link); err != nil || got != "/dev/mapper/cryptvol-v1" {
		t.Fatalf("MountedDevice(link) = %q, %v", got, err)
	}
}

func TestMkfs(t *testing.T) {
	fm := newFakeMounts(t, "")
	fm.run = func([]string) error { return nil }
	f := fm.fs()
	ctx := context.Background()
	if err := f.Mkfs(ctx, "/dev/mapper/cryptvol-v1", "ext4"); err != nil {
		t.Fatal(err)
	}
	if err := f.Mkfs(ctx, "/dev/mapper/cryptvol-v2", "xfs"); err != nil {
		t.Fatal(err)
	}
	// One program each.
	want := [][]string{
		{"mkfs.ext4", "-q", "-F", "-E", "lazy_journal_init=1", "/dev/mapper/cryptvol-v1"},
		{"mkfs.xfs", "-q", "-f", "/dev/mapper/cryptvol-v2"},
	}
	if !reflect.DeepEqual(fm.calls, want) {
		t.Fatalf("calls = %q, want %q", fm.calls, want)
	}
	for _, c := range []struct{ dev, fs string }{{"/dev/x", "btrfs"}, {"/dev/x", ""}, {"/dev/x", "EXT4"}, {"dev/x", "ext4"}, {"/dev/../x", "ext4"}} {
		err := f.Mkfs(ctx, c.dev, c.fs)
		if err == nil {
			t.Errorf("Mkfs(%q, %q) accepted bad input", c.dev, c.fs)
		}
	}
	if err := f.Mkfs(ctx, "/dev/x", "btrfs"); err == nil || !strings.Contains(err.Error(), "ext4 and xfs") {
		t.Errorf("error should list what is allowed: %v", err)
	}
	if len(fm.calls) != 2 {
		t.Fatalf("bad input reached a command: %q", fm.calls[2:])
	}
}

func TestMkfsFailure(t *testing.T) {
	fm := newFakeMounts(t, "")
	fm.run = func(argv []string) error {
		return &command.Error{Args: argv, ExitCode: 1, Stderr: "mkfs.xfs: /dev/x appears to contain an existing filesystem\n"}
	}
	err := fm.fs().Mkfs(context.Background(), "/dev/x", "xfs")
	var e *command.Error
	if !errors.As(err, &e) || e.ExitCode != 1 || !strings.Contains(err.Error(), "/dev/x") || !strings.Contains(err.Error(), "existing filesystem") {
		t.Fatalf("err = %v", err)
	}
}

func TestMount(t *testing.T) {
	fm := newFakeMounts(t, baseMountInfo)
	target := filepath.Join(fm.dir, "volumes", "v1")
	fm.run = func(argv []string) error {
		fm.write(fm.read() + "70 22 253:3 / " + strings.ReplaceAll(argv[len(argv)-1], " ", `\040`) + " rw,nosuid,nodev,relatime - ext4 " + argv[len(argv)-2] + " rw\n")
		return nil
	}
	f := fm.fs()
	if err := f.Mount(context.Background(), "/dev/mapper/cryptvol-v1", target, "ext4"); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"mount", "-t", "ext4", "-o", "nodev,nosuid", "/dev/mapper/cryptvol-v1", target}}
	if !reflect.DeepEqual(fm.calls, want) {
		t.Fatalf("calls = %q, want %q", fm.calls, want)
	}
	fi, err := os.Stat(target)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("mount point: %v, %v; want a 0700 directory", fi, err)
	}
	// Mounting again is a no-op.
	if err := f.Mount(context.Background(), "/dev/mapper/cryptvol-v1", target, "ext4"); err != nil || len(fm.calls) != 1 {
		t.Fatalf("second Mount: %v, calls %q", err, fm.calls)
	}
}

func TestMountRefusesOccupiedTarget(t *testing.T) {
	fm := newFakeMounts(t, baseMountInfo)
	target := filepath.Join(fm.dir, "v1")
	fm.write(baseMountInfo + "70 22 0:60 / " + target + " rw - tmpfs tmpfs rw\n")
	err := fm.fs().Mount(context.Background(), "/dev/mapper/cryptvol-v1", target, "ext4")
	if err == nil || !strings.Contains(err.Error(), "tmpfs is already mounted") {
		t.Fatalf("err = %v", err)
	}
	if len(fm.calls) != 0 {
		t.Fatalf("ran %q", fm.calls)
	}
}

func TestMountNotInTableIsAnError(t *testing.T) {
	fm := newFakeMounts(t, baseMountInfo)
	fm.run = func([]string) error { return nil } // exits 0, mounts nothing
	err := fm.fs().Mount(context.Background(), "/dev/mapper/cryptvol-v1", filepath.Join(fm.dir, "v1"), "ext4")
	if err == nil || !strings.Contains(err.Error(), "shows nothing there") {
		t.Fatalf("err = %v", err)
	}
}

func TestMountFailure(t *testing.T) {
	fm := newFakeMounts(t, baseMountInfo)
	fm.run = func(argv []string) error { return unix.EINVAL }
	err := fm.fs().Mount(context.Background(), "/dev/mapper/cryptvol-v1", filepath.Join(fm.dir, "v1"), "xfs")
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "/dev/mapper/cryptvol-v1") || !strings.Contains(err.Error(), "dmesg") {
		t.Fatalf("err = %v; want EINVAL naming the device and where the kernel says why", err)
	}
}

func TestMountValidates(t *testing.T) {
	fm := newFakeMounts(t, baseMountInfo)
	f := fm.fs()
	ctx := context.Background()
	for _, c := range []struct{ dev, target, fs string }{
		{"/dev/x", "/", "ext4"}, {"/dev/x", "rel", "ext4"}, {"/dev/x", "/mnt/../etc", "ext4"},
		{"x", "/mnt/v", "ext4"}, {"/dev/x", "/mnt/v", "vfat"},
	} {
		if err := f.Mount(ctx, c.dev, c.target, c.fs); err == nil {
			t.Errorf("Mount(%q, %q, %q) accepted bad input", c.dev, c.target, c.fs)
		}
	}
	if len(fm.calls) != 0 {
		t.Fatalf("ran %q", fm.calls)
	}
}

func TestUnmount(t *testing.T) {
	fm := newFakeMounts(t, baseMountInfo)
	fm.run = func(argv []string) error {
		fm.write(strings.Replace(fm.read(), `41 22 7:1 / /mnt/with\040space rw,nosuid,nodev,relatime shared:30 master:2 - ext4 /dev/loop1 rw`+"\n", "", 1))
		return nil
	}
	f := fm.fs()
	if err := f.Unmount(context.Background(), "/mnt/with space"); err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"umount", "/mnt/with space"}}; !reflect.DeepEqual(fm.calls, want) {
		t.Fatalf("calls = %q", fm.calls)
	}
	// Not mounted any more: nothing to run.
	if err := f.Unmount(context.Background(), "/mnt/with space"); err != nil || len(fm.calls) != 1 {
		t.Fatalf("second Unmount: %v, calls %q", err, fm.calls)
	}
}

func TestUnmountFailures(t *testing.T) {
	fm := newFakeMounts(t, baseMountInfo)
	fm.run = func(argv []string) error { return unix.EBUSY }
	err := fm.fs().Unmount(context.Background(), "/mnt/stack")
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "still uses") {
		t.Fatalf("err = %v", err)
	}

	// umount exits 0 but a second mount lies underneath: not unmounted.
	fm = newFakeMounts(t, baseMountInfo)
	fm.run = func([]string) error {
		fm.write(strings.Replace(fm.read(), "43 42 253:3 / /mnt/stack rw,nosuid,nodev,relatime - xfs /dev/dm-3 rw,attr2\n", "", 1))
		return nil
	}
	err = fm.fs().Unmount(context.Background(), "/mnt/stack")
	if err == nil || !strings.Contains(err.Error(), "tmpfs is still mounted") {
		t.Fatalf("err = %v", err)
	}

	// umount fails because someone else unmounted first: success.
	fm = newFakeMounts(t, baseMountInfo)
	fm.run = func(argv []string) error {
		fm.write(strings.Replace(fm.read(), `41 22 7:1 / /mnt/with\040space rw,nosuid,nodev,relatime shared:30 master:2 - ext4 /dev/loop1 rw`+"\n", "", 1))
		return unix.EINVAL // umount2(2): not a mount point
	}
	if err := fm.fs().Unmount(context.Background(), "/mnt/with space"); err != nil {
		t.Fatal(err)
	}
}
