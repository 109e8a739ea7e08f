package lvm

import (
	"context"
	"fmt"
	"strconv"
)

// Extend grows the LV to size bytes (lvextend -L; lvm rounds up to whole
// extents). It refuses a size at or below the current one before running
// anything: lvextend would fail on it ("not larger than existing size"),
// and a shrink is never what a caller of Extend means (lvextend(8)).
func (c *Client) Extend(ctx context.Context, name string, current, size uint64) error {
	if err := ValidateLVName(name); err != nil {
		return err
	}
	if size <= current {
		return fmt.Errorf("extend logical volume %s: %d bytes is not more than its %d bytes", c.lvRef(name), size, current)
	}
	if _, err := c.run(ctx, "lvextend", "-L", strconv.FormatUint(size, 10)+"b", c.lvRef(name)); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("extend logical volume %s: %w: %w", c.lvRef(name), ErrNotFound, err)
		}
		return fmt.Errorf("extend logical volume %s: %w", c.lvRef(name), err)
	}
	return nil
}
