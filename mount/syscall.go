package mount

import (
	"errors"
	"fmt"

	sysmount "github.com/moby/sys/mount"
	"golang.org/x/sys/unix"
)

// Mounting and unmounting are system calls, not programs: mount(8) and
// umount(8) add a program start each to every first mount and last unmount
// (more than the kernel's work for a small volume), and do nothing for a
// block device and a listed filesystem type beyond mount(2): no helper
// exists for ext4 or xfs, and /run/mount/utab, which umount(8) would also
// update, records only userspace options that cryptvol never uses.

// syscalls is the kernel side of Mount and Unmount; tests replace it.
type syscalls struct {
	mount   func(dev, target, fstype, options string) error
	unmount func(target string) error
}

// kernel is the real one. Options are split into mount flags (nodev,
// nosuid, ro, noatime...) and the filesystem's data string as mount(8)
// does, by github.com/moby/sys/mount (what dockerd's local driver uses for
// its o= options). The unmount is umount2(2) without MNT_DETACH: a lazy
// unmount would succeed while a container still holds the filesystem, and
// the mapping under it could then not be closed (luks.ErrBusy) with nothing
// mounted where the plugin looks.
var kernel = syscalls{
	mount:   sysmount.Mount,
	unmount: func(target string) error { return unix.Unmount(target, 0) },
}

// WithSyscalls replaces mount(2) and umount2(2) (tests record the calls and
// edit a fake mount table). mount gets the options as one comma-separated
// string, as mount(8) -o would.
func WithSyscalls(mount func(dev, target, fstype, options string) error, unmount func(target string) error) Option {
	return func(f *FS) { f.sys = syscalls{mount: mount, unmount: unmount} }
}

// explain says what an errno from mount(2) means for a volume: the kernel
// gives only the number (its log says more).
func explain(err error) string {
	switch {
	case errors.Is(err, unix.EINVAL):
		return " (the kernel refused the filesystem or one of its options; its log, dmesg, says which)"
	case errors.Is(err, unix.EBUSY):
		return " (the device is mounted elsewhere or held open)"
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO):
		return " (the device or the mount point does not exist)"
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return " (not permitted: the plugin needs CAP_SYS_ADMIN)"
	}
	return ""
}

// mountErr wraps an errno from mount(2) with what it means.
func mountErr(dev, target string, err error) error {
	return fmt.Errorf("mount %s on %s: %w%s", dev, target, err, explain(err))
}

// unmountErr wraps an errno from umount2(2).
func unmountErr(target string, err error) error {
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("unmount %s: %w (something still uses the filesystem)", target, err)
	}
	return fmt.Errorf("unmount %s: %w", target, err)
}
