package lvm

import (
	"context"
	"fmt"
)

// Snapshot makes name, a thin snapshot of the thin LV origin, active and
// with the given tags (lvcreate -s without a size: a thin snapshot,
// lvmthin(7)). A thin snapshot skips activation unless told otherwise;
// --setactivationskip n makes it activate like any volume. It shares the
// origin's blocks until either is written, and outlives the origin.
func (c *Client) Snapshot(ctx context.Context, origin, name string, tags []string) error {
	for _, n := range []string{origin, name} {
		if err := ValidateLVName(n); err != nil {
			return err
		}
	}
	args := []string{"lvcreate", "-s", c.lvRef(origin), "-n", name, "--setactivationskip", "n", "--activate", "y", "-y"}
	for _, t := range tags {
		if err := ValidateTag(t); err != nil {
			return err
		}
		args = append(args, "--addtag", t)
	}
	if _, err := c.run(ctx, args...); err != nil {
		if isExists(err) {
			return fmt.Errorf("snapshot %s as %s: %w: %w", c.lvRef(origin), name, ErrExists, err)
		}
		return fmt.Errorf("snapshot %s as %s: %w", c.lvRef(origin), name, err)
	}
	return nil
}
