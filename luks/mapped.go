package luks

import (
	"context"
	"fmt"
)

// IsOpen reports whether a device-mapper device called mapping exists, with
// or without a table (dmlist.go says why sysfs cannot tell): one
// DM_DEV_STATUS, no program. A first mount and start-up reconciliation ask
// this of every volume, and a program start each would be most of what they
// cost. A device being removed meanwhile is gone from the kernel's name
// table first (drivers/md/dm-ioctl.c, dm_hash_remove), so it answers
// closed, never an error.
func (c *Cryptsetup) IsOpen(ctx context.Context, mapping string) (bool, error) {
	if err := ValidateMapping(mapping); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	switch _, err := c.dmStatus(mapping); {
	case err == nil:
		return true, nil
	case gone(err):
		return false, nil
	default:
		return false, fmt.Errorf("asking device-mapper whether %s exists: %w", mapping, err)
	}
}

// Mappings returns the names of all device-mapper devices, tableless ones
// included, from one DM_LIST_DEVICES: start-up reconciliation asks whether
// each volume's mapping is open, and one answer for all of them costs one
// ioctl where N would cost N. On an error the caller asks IsOpen per
// volume.
func (c *Cryptsetup) Mappings(ctx context.Context) (map[string]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	list, err := c.dmList()
	if err != nil {
		return nil, fmt.Errorf("listing device-mapper devices: %w", err)
	}
	names := make(map[string]bool, len(list))
	for _, n := range list {
		names[n] = true
	}
	return names, nil
}
