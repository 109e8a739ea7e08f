package lvm

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// VGTags reports the volume group's own tags (vg_tags): what the hosts of
// a shared group record about themselves (cmd/cryptvol/nodename.go).
func (c *Client) VGTags(ctx context.Context) ([]string, error) {
	out, err := c.run(ctx, "vgs", "-o", "vg_tags", "--reportformat", "json", c.vg)
	if err != nil {
		return nil, fmt.Errorf("tags of volume group %s: %w", c.vg, err)
	}
	rows, err := parseReport[struct {
		Tags string `json:"vg_tags"`
	}](out, "vg")
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("tags of volume group %s: vgs reported %d groups", c.vg, len(rows))
	}
	if rows[0].Tags == "" {
		return nil, nil
	}
	return strings.Split(rows[0].Tags, ","), nil
}

// ChangeVGTags deletes the group's tags del and adds the tags add in one
// metadata commit (vgchange; in a shared group under the group's lock, so
// the commits of all hosts are one sequence).
func (c *Client) ChangeVGTags(ctx context.Context, del, add []string) error {
	args, err := tagArgs(del, add)
	if err != nil || len(args) == 0 {
		return err
	}
	if _, err := c.run(ctx, append(append([]string{"vgchange"}, args...), c.vg)...); err != nil {
		return fmt.Errorf("change tags of volume group %s: %w", c.vg, err)
	}
	return nil
}

// HostID reports the sanlock host_id this client's commands hand lvmlockd:
// local/host_id of the configuration they run with (WithShared's, else
// lvm's own), 0 when none is set (lvmconfig(8): --type full shows the
// default for a setting left out).
func (c *Client) HostID(ctx context.Context) (int, error) {
	out, err := c.run(ctx, "lvmconfig", "--type", "full", "local/host_id")
	if err != nil {
		return 0, fmt.Errorf("read lvm's local/host_id: %w", err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "host_id=")
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("read lvm's local/host_id: lvmconfig printed %q, want host_id=N", strings.TrimSpace(string(out)))
	}
	return n, nil
}
