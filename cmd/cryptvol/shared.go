package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/cryptvol/cryptvol/lvm"
)

// loadShared reads CRYPTVOL_SHARED (shared mode: a volume group on devices
// several hosts see, locked through each host's lvmlockd) and refuses what
// cannot go with it.
func (c *Config) loadShared(get func(name, def string) string) error {
	hid := get("CRYPTVOL_HOST_ID", "")
	switch v := get("CRYPTVOL_SHARED", "false"); v {
	case "true":
		c.Shared = true
	case "false":
		if hid != "" {
			return fmt.Errorf("CRYPTVOL_HOST_ID=%s is only used with CRYPTVOL_SHARED=true (the sanlock host_id of a shared volume group's host)", hid)
		}
		return nil
	default:
		return fmt.Errorf("CRYPTVOL_SHARED=%q is not valid (allowed: true, false)", v)
	}
	// lvmlockd(8): host_id is 1 to 2000 and unique among the hosts of the
	// group; empty leaves it to lvm's lvmlocal.conf (a plugin run on the
	// host itself).
	if hid != "" {
		n, err := strconv.Atoi(hid)
		if err != nil || n < 1 || n > 2000 {
			return fmt.Errorf("CRYPTVOL_HOST_ID=%q is not valid (allowed: a whole number from 1 to 2000, unique among the hosts of the shared group, or empty to use lvm's local/host_id)", hid)
		}
		c.HostID = n
	}
	if c.ThinPool != "" {
		return fmt.Errorf("CRYPTVOL_SHARED=true cannot go with CRYPTVOL_THIN_POOL=%s: LVM activates a thin pool on one host at a time, so its volumes could not move between hosts; shared volumes are thick", c.ThinPool)
	}
	if len(c.Devices) > 0 {
		return fmt.Errorf("CRYPTVOL_SHARED=true never creates the volume group (two hosts starting at once would both try): create it once, from one host, with vgcreate --shared %s DEVICE..., and leave CRYPTVOL_DEVICES empty", c.VG)
	}
	return nil
}

// sharedGroup checks that the shared group exists and is shared, joins
// its lockspace on this host, and then claims this host's node name in it
// (nodename.go: after the join, when this host's host_id is its own).
func sharedGroup(ctx context.Context, lv *lvm.Client, vg, node string) error {
	if err := lv.CheckShared(ctx); err != nil {
		return err
	}
	if err := lv.StartLocks(ctx); err != nil {
		return err
	}
	return claimNode(ctx, lv, vg, node)
}
