package luks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// IsOpen reports whether a device-mapper device called mapping exists. It
// reads the kernel's own list, sysfs's /sys/block/dm-N/dm/name (the dm
// sysfs ABI, Documentation/ABI/testing/sysfs-block-dm), instead of running
// `cryptsetup status`, which answers the same from the same kernel: a first
// mount and start-up reconciliation ask this of every volume, and a program
// start each was most of what they cost (issue 15).
//
// A device being removed meanwhile vanishes from the listing (ENOENT) or
// refuses to say its name (drivers/md/dm-sysfs.c: dm_attr_show answers
// EINVAL once the device is being freed). Rather than guess whether that
// one was ours, IsOpen then asks cryptsetup, as it does when sysfs cannot
// be read at all. (Taking such an error for a failure left 5 of 50 volumes
// open after the lab's 50 concurrent unmounts: their teardown failed and
// was left to the sweeper.)
func (c *Cryptsetup) IsOpen(ctx context.Context, mapping string) (bool, error) {
	if err := ValidateMapping(mapping); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	found := false
	err := c.scan(func(name string) bool {
		found = name == mapping
		return !found
	})
	if err != nil {
		return c.status(ctx, mapping)
	}
	return found, nil
}

// Mappings returns the names of all device-mapper devices, from one pass
// over sysfs: start-up reconciliation asks whether each volume's mapping is
// open, and IsOpen for each of N volumes would read N x N names (issue 15).
// Where IsOpen falls back to cryptsetup, Mappings returns the error, and the
// caller asks IsOpen per volume.
func (c *Cryptsetup) Mappings(ctx context.Context) (map[string]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	if err := c.scan(func(name string) bool { names[name] = true; return true }); err != nil {
		return nil, fmt.Errorf("listing device-mapper devices in %s: %w", c.sysBlock, err)
	}
	return names, nil
}

// scan calls each with the name of every device-mapper device until it
// returns false. Devices removed during the pass are skipped.
func (c *Cryptsetup) scan(each func(name string) bool) error {
	entries, err := os.ReadDir(c.sysBlock)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "dm-") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.sysBlock, e.Name(), "dm", "name"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing
		}
		if err != nil {
			return err
		}
		if !each(strings.TrimSuffix(string(b), "\n")) {
			return nil
		}
	}
	return nil
}

// status asks cryptsetup whether the mapping exists: status exits 0 for an
// active mapping and 4 for an inactive one.
func (c *Cryptsetup) status(ctx context.Context, mapping string) (bool, error) {
	_, err := c.run(ctx, nil, "status", mapping)
	open, err := answer(err, 4)
	if err != nil {
		return false, fmt.Errorf("status of mapping %s: %w", mapping, err)
	}
	return open, nil
}
