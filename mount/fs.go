package mount

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/cryptvol/cryptvol/internal/failpoint"
)

// Options every volume is mounted with: a volume is data, never device
// nodes or set-uid programs for the host.
const mountOptions = "nodev,nosuid"

// FS makes, mounts and unmounts filesystems and reads the mount table.
type FS struct {
	exec      command.Exec
	sys       syscalls // mount(2), umount2(2): syscall.go
	mountinfo string
	sysfs     string
	devRoot   string // where device paths are read from ("/"; tests: a directory)
	// stat is os.Stat; tests whose mount tables name paths this host lacks
	// replace it.
	stat func(string) (os.FileInfo, error)
}

// Option configures an FS.
type Option func(*FS)

// WithExec replaces the command runner (tests use a fake).
func WithExec(e command.Exec) Option { return func(f *FS) { f.exec = e } }

// WithMountInfo reads the mount table from path instead of /proc/self/mountinfo.
func WithMountInfo(path string) Option { return func(f *FS) { f.mountinfo = path } }

// WithSysfs looks up device-mapper names under root instead of /sys.
func WithSysfs(root string) Option { return func(f *FS) { f.sysfs = root } }

// WithDevRoot reads devices (an ext4 superblock, fresh.go) under root
// instead of /.
func WithDevRoot(root string) Option { return func(f *FS) { f.devRoot = root } }

// New returns an FS using the real commands, /proc/self/mountinfo and /sys.
func New(opts ...Option) *FS {
	f := &FS{exec: command.Runner(command.WholeArgv), sys: kernel, mountinfo: "/proc/self/mountinfo", sysfs: "/sys", devRoot: "/", stat: os.Stat}
	for _, o := range opts {
		o(f)
	}
	return f
}

// ValidateFSType accepts the filesystems cryptvol supports.
func ValidateFSType(fstype string) error {
	switch fstype {
	case "ext4", "xfs":
		return nil
	}
	return fmt.Errorf("invalid filesystem type %q: allowed are ext4 and xfs", fstype)
}

func validatePath(kind, p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		return fmt.Errorf("invalid %s %q: must be a clean absolute path other than /", kind, p)
	}
	return nil
}

// Mkfs creates a filesystem on dev. -F/-f: dev is a freshly opened volume
// whose random-looking contents must not make mkfs stop and ask. The data
// directory containers get is made at the filesystem's first mount
// (layout.go).
//
// ext4 gets lazy_journal_init: mke2fs then leaves the journal unzeroed
// (mke2fs(8)), which spares every create the zeroing of the journal, each
// block of it written through AES. The risk mke2fs(8) names is a crash
// replaying stale journal blocks left by an earlier filesystem; dev is a
// mapping over a header written moments ago with a new random volume key,
// so everything under the journal reads as cipher noise, never as an old
// transaction (nor passes jbd2's checksums).
func (f *FS) Mkfs(ctx context.Context, dev, fstype string, opts ...MkfsOptions) error {
	if err := ValidateFSType(fstype); err != nil {
		return err
	}
	if err := validatePath("device", dev); err != nil {
		return err
	}
	o := DefaultMkfs
	if len(opts) > 0 {
		o = opts[0]
	}
	if err := o.Validate(fstype); err != nil {
		return err
	}
	var args []string
	switch fstype {
	case "ext4":
		args = []string{"-q", "-F", "-E", "lazy_journal_init=1"}
		if o.InodeRatio > 0 {
			args = append(args, "-i", strconv.Itoa(o.InodeRatio))
		}
		if o.ReservedPercent >= 0 {
			args = append(args, "-m", strconv.Itoa(o.ReservedPercent))
		}
	case "xfs":
		args = []string{"-q", "-f"}
		if o.InodeMaxPct >= 0 {
			args = append(args, "-i", "maxpct="+strconv.Itoa(o.InodeMaxPct))
		}
	}
	args = append(args, dev)
	if _, err := f.exec(ctx, nil, "mkfs."+fstype, args...); err != nil {
		return fmt.Errorf("make %s filesystem on %s: %w", fstype, dev, err)
	}
	return nil
}

// Mount mounts dev on target with nodev,nosuid and the extra options (each
// on options.go's allow-list for fstype), creating target (mode 0700)
// if it does not exist; volume/ makes it first, 0755 as dockerd's local
// driver does. It is idempotent: dev already mounted there succeeds, anything
// else mounted there is an error. Success means the mount table shows dev
// at target, not merely that mount(2) returned 0.
func (f *FS) Mount(ctx context.Context, dev, target, fstype string, extra ...string) error {
	if err := ValidateFSType(fstype); err != nil {
		return err
	}
	internal := []string{Discard, ReadOnly}
	if fstype == "xfs" {
		internal = append(internal, NoUUID)
	}
	if err := validate(fstype, extra, append(AllowedOptions(fstype), internal...)); err != nil {
		return err
	}
	opts := strings.Join(append([]string{mountOptions}, extra...), ",")
	if err := validatePath("device", dev); err != nil {
		return err
	}
	if err := validatePath("mount point", target); err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return fmt.Errorf("mount %s: create mount point: %w", dev, err)
	}
	e, err := f.lookup(target)
	if err != nil {
		return err
	}
	if e != nil {
		if f.isDevice(e, dev) {
			return nil
		}
		return fmt.Errorf("mount %s on %s: %s is already mounted there", dev, target, f.source(e))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, target, err)
	}
	failpoint.Here("mount")
	if err := f.sys.mount(dev, target, fstype, opts); err != nil {
		return mountErr(dev, target, err)
	}
	e, err = f.lookup(target)
	if err != nil {
		return err
	}
	if e == nil || !f.isDevice(e, dev) {
		got := "nothing"
		if e != nil {
			got = f.source(e)
		}
		return fmt.Errorf("mount %s on %s: mount succeeded but the mount table shows %s there", dev, target, got)
	}
	return nil
}

// Unmount unmounts target. A target with nothing mounted succeeds, so
// Unmount is safe to retry.
func (f *FS) Unmount(ctx context.Context, target string) error {
	if err := validatePath("mount point", target); err != nil {
		return err
	}
	e, err := f.lookup(target)
	if err != nil || e == nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	failpoint.Here("unmount")
	uerr := f.sys.unmount(target)
	e, err = f.lookup(target)
	if err != nil {
		return err
	}
	if e == nil {
		// Unmounted, by us or by someone racing us.
		return nil
	}
	if uerr != nil {
		return unmountErr(target, uerr)
	}
	return fmt.Errorf("unmount %s: %s is still mounted there (stacked mounts?)", target, f.source(e))
}

// MountedDevice returns the device mounted at target, or "" if nothing is.
// Device-mapper devices are reported as /dev/mapper/<name> however they
// were mounted (/dev/dm-3, /dev/vg/lv), found through the device number
// in sysfs, so callers can compare against the mapping they opened.
func (f *FS) MountedDevice(target string) (string, error) {
	if err := validatePath("mount point", target); err != nil {
		return "", err
	}
	// Nothing is mounted at a path that does not exist, and a volume at
	// rest has no mount point (teardown removes it): the stat spares the
	// read and parse of the whole mount table, a large part of a Get,
	// whose goal is under 5 ms. A mount point unlinked in another mount
	// namespace takes its mounts with it (Linux 3.18, commit
	// 8ed936b5671b, "vfs: Lazily remove mounts on unlinked files and
	// directories").
	if _, err := f.stat(target); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	e, err := f.lookup(target)
	if err != nil || e == nil {
		return "", err
	}
	return f.source(e), nil
}

// MountedUnder returns, for each mount point directly inside root, its
// name and the device mounted there (the topmost mount; named as
// MountedDevice names it), from one read of the mount table: List reports
// every volume's mount without a read per volume.
func (f *FS) MountedUnder(root string) (map[string]string, error) {
	if err := validatePath("mount root", root); err != nil {
		return nil, err
	}
	root = resolve(root)
	entries, err := f.table(func(i *mountinfo.Info) (skip, stop bool) {
		return filepath.Dir(i.Mountpoint) != root, false
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries { // later lines are mounted on top of earlier ones
		out[filepath.Base(e.Mountpoint)] = f.source(e)
	}
	return out, nil
}

// lookup returns the topmost mount at target, or nil. The table is parsed
// by github.com/moby/sys/mountinfo, as moby and containerd parse it
// (escaped paths, optional fields).
func (f *FS) lookup(target string) (*mountinfo.Info, error) {
	target = resolve(target)
	entries, err := f.table(func(i *mountinfo.Info) (skip, stop bool) {
		return i.Mountpoint != target, false
	})
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, nil
	}
	// Later lines are mounted on top of earlier ones.
	return entries[len(entries)-1], nil
}

// resolve returns p with symlinks resolved, as the kernel lists mount
// points, or p itself when it cannot be resolved.
func resolve(p string) string {
	if resolved, err := filepath.EvalSymlinks(p); err == nil {
		return resolved
	}
	return p
}

// table reads the mount table's entries that filter keeps.
func (f *FS) table(filter mountinfo.FilterFunc) ([]*mountinfo.Info, error) {
	r, err := os.Open(f.mountinfo)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer r.Close()
	entries, err := mountinfo.GetMountsFromReader(r, filter)
	if err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", f.mountinfo, err)
	}
	return entries, nil
}

func (f *FS) source(e *mountinfo.Info) string {
	majMin := fmt.Sprintf("%d:%d", e.Major, e.Minor)
	if name, err := os.ReadFile(filepath.Join(f.sysfs, "dev", "block", majMin, "dm", "name")); err == nil {
		if n := strings.TrimSpace(string(name)); n != "" {
			return "/dev/mapper/" + n
		}
	}
	return e.Source
}

// isDevice reports whether the mount e is of dev: by device number when dev
// is a block device, else by name.
func (f *FS) isDevice(e *mountinfo.Info, dev string) bool {
	if fi, err := os.Stat(dev); err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return e.Major == int(unix.Major(st.Rdev)) && e.Minor == int(unix.Minor(st.Rdev))
		}
	}
	return f.source(e) == dev || e.Source == dev
}
