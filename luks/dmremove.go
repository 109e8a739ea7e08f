package luks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryptvol/cryptvol/internal/failpoint"
)

// Closing a mapping without cryptsetup: `cryptsetup close` is a program
// start where the kernel's work, one DM_DEV_REMOVE, takes milliseconds, and
// every last unmount of a `docker run` paid it. Close takes this path for
// the mappings cryptsetup made of a plain LUKS2 volume and for the
// tableless devices an open cut off leaves (dmlist.go), and leaves every
// other case (no node, a device of another kind under that name, a
// dm-integrity device stacked underneath, which cryptsetup removes with it)
// to cryptsetup.

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
	switch info, err := c.dmStatus(mapping); {
	case gone(err):
		return nil // not open: closed, as Close promises
	case err != nil:
		return errNotDirect
	case !info.live():
		return c.closeUnloaded(mapping, info)
	}
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
	failpoint.Here("dm-remove")
	switch err := c.dmRemove(mapping); {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("close mapping %s: %w: the kernel says it is open (%w)", mapping, ErrBusy, err)
	case errors.Is(err, unix.ENXIO):
		// Removed meanwhile: closed, as Close promises.
	case err != nil:
		return fmt.Errorf("close mapping %s: DM_DEV_REMOVE: %w", mapping, err)
	}
	// Closed means gone from device-mapper's name table, not an ioctl
	// that answered 0.
	if _, err := c.dmStatus(mapping); !gone(err) {
		return fmt.Errorf("close mapping %s: DM_DEV_REMOVE answered, but the kernel still lists the device (%v)", mapping, err)
	}
	// The node libdevmapper made, if still there and still this device's
	// number (udev, where it runs, removes it too).
	failpoint.Here("dm-node-remove")
	if now, err := c.devNumber(node); err == nil && now == dev {
		if err := os.Remove(node); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("close mapping %s: removing %s: %w", mapping, node, err)
		}
	}
	return nil
}

// closeUnloaded removes a device called mapping that has no live table:
// an open cut off after DM_DEV_CREATE, before the resume that makes its
// table live (dmlist.go). It maps no data, so removing it loses nothing,
// and cryptsetup would not: its close answers "not active" (exit 4) and
// leaves the name taken, so that the volume's next open fails. Only a
// device with the uuid cryptsetup and openDirect give a LUKS2 mapping of
// this name is removed; any other is an error naming it.
func (c *Cryptsetup) closeUnloaded(mapping string, info dmInfo) error {
	if !luks2MappingUUID(info.uuid, mapping) {
		return fmt.Errorf("close mapping %s: a device-mapper device of that name has no live table and uuid %q, which is not a LUKS2 mapping's of that name; left alone", mapping, info.uuid)
	}
	failpoint.Here("dm-remove")
	switch err := c.dmRemove(mapping); {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("close mapping %s (no live table): %w: the kernel says it is open (%w)", mapping, ErrBusy, err)
	case err != nil && !gone(err):
		return fmt.Errorf("close mapping %s (no live table): DM_DEV_REMOVE: %w", mapping, err)
	}
	if _, err := c.dmStatus(mapping); !gone(err) {
		return fmt.Errorf("close mapping %s (no live table): DM_DEV_REMOVE answered, but the kernel still has the device (%v)", mapping, err)
	}
	// libdevmapper may have made a node before it was cut off.
	node := filepath.Join(c.devMapper, mapping)
	if now, err := c.devNumber(node); err == nil && now == info.dev {
		if err := os.Remove(node); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("close mapping %s: removing %s: %w", mapping, node, err)
		}
	}
	return nil
}

// luks2MappingUUID says whether uuid is the device-mapper uuid of a LUKS2
// mapping called mapping: CRYPT-LUKS2-, the header's uuid as 32 lower-case
// hex digits, a dash, the mapping's name (cryptsetup lib/utils_dm.c
// dm_prepare_uuid; dmcreate.go makes the same).
func luks2MappingUUID(uuid, mapping string) bool {
	hex, ok := strings.CutPrefix(uuid, "CRYPT-LUKS2-")
	if !ok {
		return false
	}
	hex, ok = strings.CutSuffix(hex, "-"+mapping)
	if !ok || len(hex) != 32 {
		return false
	}
	for _, r := range hex {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

func readLine(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSuffix(string(b), "\n"), err
}
