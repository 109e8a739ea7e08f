// Package blockdev owns the one question lvm/ and luks/ ask of a device
// node without a program: which block device it is now. Both compare that
// number with sysfs before trusting a node (a node can outlive its device,
// and the number can be given to another). It keeps no state and is safe
// for concurrent use.
package blockdev

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Number returns the device number of the block device at path, following
// links (/dev/VG/LV is one); a path that is not a block device is an error.
func Number(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, fmt.Errorf("%s is not a block device", path)
	}
	return st.Rdev, nil
}
