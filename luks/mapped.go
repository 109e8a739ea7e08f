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
func (c *Cryptsetup) IsOpen(ctx context.Context, mapping string) (bool, error) {
	if err := ValidateMapping(mapping); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	entries, err := os.ReadDir(c.sysBlock)
	if err != nil {
		return false, fmt.Errorf("status of mapping %s: listing device-mapper devices: %w", mapping, err)
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
			return false, fmt.Errorf("status of mapping %s: reading the name of %s: %w", mapping, e.Name(), err)
		}
		if strings.TrimSuffix(string(b), "\n") == mapping {
			return true, nil
		}
	}
	return false, nil
}
