package mount

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Device is a block device opened for an export's reads or an import's
// writes (volume/export.go, volume/import.go).
type Device interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync flushes what was written to the device.
	Sync() error
}

// OpenDevice opens the block device dev: for reading, or for writing with
// O_EXCL, which for a block device means no filesystem, mapping or other
// exclusive opener holds it (open(2)), so an import never writes under
// anything that uses the device. The device's page cache is flushed and
// dropped first (BLKFLSBUF, ioctl_list(2)): writes through a dm-crypt
// mapping on top of it reach the disk without passing through this
// device's cache, so pages an earlier export read may be stale. With the
// filesystem on top frozen or unmounted, what is read after the flush is
// what is on the disk. An import's writes count once Sync has returned.
func (f *FS) OpenDevice(dev string, write bool) (Device, error) {
	if err := validatePath("device", dev); err != nil {
		return nil, err
	}
	flags := os.O_RDONLY
	if write {
		flags = os.O_WRONLY | unix.O_EXCL
	}
	fd, err := os.OpenFile(dev, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dev, err)
	}
	st, err := fd.Stat()
	if err != nil || st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		fd.Close()
		return nil, fmt.Errorf("%s is not a block device", dev)
	}
	if err := unix.IoctlSetInt(int(fd.Fd()), unix.BLKFLSBUF, 0); err != nil {
		fd.Close()
		return nil, fmt.Errorf("dropping the page cache of %s: %w", dev, err)
	}
	return fd, nil
}
