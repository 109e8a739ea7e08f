package luks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Closing a mapping without cryptsetup (issue 15): `cryptsetup close` is a
// program start, 0.12-0.17 s in the lab where the kernel's work, one
// DM_DEV_REMOVE, takes milliseconds, and every last unmount of a
// `docker run` paid it. Close takes this path for the mappings cryptsetup
// made of a plain LUKS2 volume, and leaves every other case (no node, a
// device of another kind under that name, a dm-integrity device stacked
// underneath, which cryptsetup removes with it) to cryptsetup.

// errNotDirect says the direct path (openDirect, closeDirect) does not
// apply and has changed nothing: run cryptsetup.
var errNotDirect = errors.New("not a plain LUKS2 mapping cryptvol opens or closes itself")

// removeDM asks the kernel to remove the device-mapper device called name:
// EBUSY while anything holds it open, ENXIO when there is none.
func removeDM(name string) error {
	_, err := dmCall(dmDevRemoveCmd, name, "", 0, 0, nil)
	return err
}

// closeDirect removes mapping with one ioctl when it is a LUKS2 mapping
// cryptsetup made straight over a device, then its /dev/mapper node, as
// libdevmapper does where no udev runs. It returns errNotDirect, having
// changed nothing, when that is not what it finds.
func (c *Cryptsetup) closeDirect(mapping string) error {
	node := filepath.Join(c.devMapper, mapping)
	dev, err := c.devNumber(node)
	if err != nil {
		return errNotDirect // no node (or not a block device): cryptsetup knows
	}
	sys := filepath.Join(c.sysDevBlock, fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev)))
	// The node must be this mapping's device now, not a stale node of a
	// number since given to another device, and cryptsetup's LUKS2 kind:
	// nothing is removed by its name alone.
	if name, err := readLine(filepath.Join(sys, "dm", "name")); err != nil || name != mapping {
		return errNotDirect
	}
	if uuid, err := readLine(filepath.Join(sys, "dm", "uuid")); err != nil || !strings.HasPrefix(uuid, "CRYPT-LUKS2-") {
		return errNotDirect
	}
	// A device cryptsetup stacked underneath (dm-integrity: CRYPT-SUBDEV-,
	// or older CRYPT-INTEGRITY-) goes with it: cryptsetup's job.
	slaves, err := os.ReadDir(filepath.Join(sys, "slaves"))
	if err != nil {
		return errNotDirect
	}
	for _, s := range slaves {
		if uuid, err := readLine(filepath.Join(sys, "slaves", s.Name(), "dm", "uuid")); err == nil && strings.HasPrefix(uuid, "CRYPT-") {
			return errNotDirect
		}
	}
	switch err := c.dmRemove(mapping); {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("close mapping %s: %w: the kernel says it is open (%w)", mapping, ErrBusy, err)
	case errors.Is(err, unix.ENXIO):
		// Removed meanwhile: closed, as Close promises.
	case err != nil:
		return fmt.Errorf("close mapping %s: DM_DEV_REMOVE: %w", mapping, err)
	}
	// Closed means gone from the kernel's own list, not an ioctl that
	// answered 0.
	if name, err := readLine(filepath.Join(sys, "dm", "name")); err == nil && name == mapping {
		return fmt.Errorf("close mapping %s: DM_DEV_REMOVE answered, but the kernel still lists the device", mapping)
	}
	// The node libdevmapper made, if still there and still this device's
	// number (udev, where it runs, removes it too).
	if now, err := c.devNumber(node); err == nil && now == dev {
		if err := os.Remove(node); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("close mapping %s: removing %s: %w", mapping, node, err)
		}
	}
	return nil
}

func readLine(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSuffix(string(b), "\n"), err
}
