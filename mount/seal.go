package mount

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// fsImmutableFL is FS_IMMUTABLE_FL (include/uapi/linux/fs.h), which
// golang.org/x/sys/unix does not name: an inode with it cannot be changed,
// nor anything created in it, by anyone, root included, until the flag is
// cleared, which takes CAP_LINUX_IMMUTABLE (chattr(1), "i").
const fsImmutableFL = 0x10

// Seal makes dir an empty, immutable directory (created, mode 0750, if
// missing; its parent must exist): what a bind is then mounted over. Should
// the bind go while something still binds dir itself (a container started
// by an orchestrator that thinks the volume is still there), what it gets
// is a directory nothing can write to, never a directory of the host's disk
// that takes data. A mount over an immutable directory is allowed: the
// mount changes the mount table, not the directory. A dir that is not empty
// is refused: something wrote there while nothing was mounted.
func (f *FS) Seal(dir string) error {
	if err := validatePath("directory", dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("seal %s: %w", dir, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("seal %s: %w", dir, err)
	}
	defer d.Close()
	if names, err := d.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("seal %s: it is not empty (%s...): something wrote there while nothing was mounted; look at it, then remove it", dir, names[0])
	} else if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("seal %s: %w", dir, err)
	}
	return setImmutable(d, dir, true)
}

// Unseal clears what Seal set, so that dir can be removed. A dir that does
// not exist is unsealed already.
func (f *FS) Unseal(dir string) error {
	if err := validatePath("directory", dir); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unseal %s: %w", dir, err)
	}
	defer d.Close()
	return setImmutable(d, dir, false)
}

func setImmutable(d *os.File, dir string, on bool) error {
	fd := int(d.Fd())
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("inode flags of %s: %w (its filesystem must support chattr +i)", dir, err)
	}
	want := flags &^ fsImmutableFL
	if on {
		want = flags | fsImmutableFL
	}
	if want == flags {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(want)); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("mark %s immutable=%t: %w (the plugin needs CAP_LINUX_IMMUTABLE)", dir, on, err)
		}
		return fmt.Errorf("mark %s immutable=%t: %w (its filesystem must support chattr +i)", dir, on, err)
	}
	return nil
}
