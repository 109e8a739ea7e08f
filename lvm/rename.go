package lvm

import (
	"context"
	"fmt"
)

// Rename renames the LV from to to in one metadata commit (lvrename(8)),
// active or not: an active LV's device-mapper name and /dev link follow.
// A taken name wraps ErrExists, and nothing is renamed then.
func (c *Client) Rename(ctx context.Context, from, to string) error {
	for _, n := range []string{from, to} {
		if err := ValidateLVName(n); err != nil {
			return err
		}
	}
	if _, err := c.run(ctx, "lvrename", c.vg, from, to); err != nil {
		if isExists(err) {
			return fmt.Errorf("rename logical volume %s to %s: %w: %w", c.lvRef(from), to, ErrExists, err)
		}
		return fmt.Errorf("rename logical volume %s to %s: %w", c.lvRef(from), to, err)
	}
	return nil
}
