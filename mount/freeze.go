package mount

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FIFREEZE and FITHAW, _IOWR('X', 119, int) and _IOWR('X', 120, int)
// (include/uapi/linux/fs.h); golang.org/x/sys/unix does not name them.
const (
	fiFreeze = 0xC0045877
	fiThaw   = 0xC0045878
)

// Freeze makes the filesystem mounted at target consistent on its device
// and blocks writes to it until Thaw (what fsfreeze(8) does, without the
// program): a snapshot taken meanwhile holds every write that returned
// before. Writers wait; nothing fails.
func (f *FS) Freeze(target string) error { return ioctlAt(target, fiFreeze, "freeze") }

// Thaw lets writes to the filesystem at target go on. A filesystem not
// frozen gives EINVAL, which counts as thawed.
func (f *FS) Thaw(target string) error {
	err := ioctlAt(target, fiThaw, "thaw")
	if errors.Is(err, unix.EINVAL) {
		return nil
	}
	return err
}

func ioctlAt(target string, req uint, what string) error {
	if err := validatePath("mount point", target); err != nil {
		return err
	}
	d, err := os.Open(target)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, target, err)
	}
	defer d.Close()
	if err := unix.IoctlSetInt(int(d.Fd()), req, 0); err != nil {
		return fmt.Errorf("%s %s: %w", what, target, err)
	}
	return nil
}
