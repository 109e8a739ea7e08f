package lvm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// pvMetadataSize is the metadata area pvcreate gives each PV EnsureVG makes.
// lvm's default, 1020 KiB, holds a group's metadata text only up to about
// half its size (an update is written beside the copy it replaces): the lab
// measured about 470 bytes of text per tagged thin LV and 508 KiB free in a
// new area, so a group of cryptvol volumes would stop taking new ones near
// 1,100, too close to the goal of 1,000 volumes per group. A larger area
// costs only its disk space: lvm reads and writes the text, not the whole
// area.
const pvMetadataSize = "16m"

// EnsureVG creates the volume group from devices unless it already exists,
// with metadata areas of pvMetadataSize. pvcreate runs without -y on
// purpose: on a device that carries a filesystem or other signature lvm asks
// before wiping, reads EOF from the empty stdin and refuses, so a wrong
// device in the configuration does not lose data.
func (c *Client) EnsureVG(ctx context.Context, devices []string) error {
	if c.groupOn(ctx, devices) {
		return nil
	}
	_, err := c.VG(ctx)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	if len(devices) == 0 {
		return fmt.Errorf("volume group %s does not exist and no devices were given to create it", c.vg)
	}
	seen := map[string]bool{}
	for _, d := range devices {
		if err := validateDevice(d); err != nil {
			return err
		}
		if seen[d] {
			return fmt.Errorf("device %s is listed twice", d)
		}
		seen[d] = true
	}
	if _, err := c.run(ctx, append([]string{"pvcreate", "--metadatasize", pvMetadataSize}, devices...)...); err != nil {
		return fmt.Errorf("create physical volumes for %s on %s: %w", c.vg, strings.Join(devices, ", "), err)
	}
	if _, err := c.run(ctx, append([]string{"vgcreate", c.vg}, devices...)...); err != nil {
		return fmt.Errorf("create volume group %s on %s: %w", c.vg, strings.Join(devices, ", "), err)
	}
	return nil
}

// groupOn reports whether devices hold the group's current metadata text,
// read from them without running lvm (a vgs saved on every start, where
// each lvm command costs more the more volumes the group holds); they are
// then the devices MetadataMark reads. A device that is not a PV, or not
// the group's, says no, and vgs decides.
func (c *Client) groupOn(ctx context.Context, devices []string) bool {
	if len(devices) == 0 {
		return false
	}
	// Only read here: pvcreate and vgcreate, which take the devices as
	// arguments, validate them. Names lvm would not report are not learned
	// (learnDevices), and MetadataVG would then run pvs: vgs decides.
	for _, d := range devices {
		if !strings.HasPrefix(d, "/") {
			return false
		}
	}
	c.learnDevices(devices)
	if _, err := c.MetadataVG(ctx); err != nil {
		c.mu.Lock()
		c.pvs = nil
		c.mu.Unlock()
		return false
	}
	return true
}

// CheckVG confirms the group exists. The devices a previous start learned
// (Devices), when given and still holding the group's current metadata
// text, answer with no program (a vgs saved on every restart); otherwise
// vgs decides, as groupOn says. A stale list costs only that vgs: a device
// that is no longer the group's does not hold its text.
func (c *Client) CheckVG(ctx context.Context, known []string) error {
	if c.groupOn(ctx, known) {
		return nil
	}
	_, err := c.VG(ctx)
	return err
}

// Devices returns the group's devices as this client last learned them
// (from a report, or from CheckVG or EnsureVG), or nil when it has not.
func (c *Client) Devices() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pvs)
}

// EnsureThinPool creates the thin pool over 90% of the group's free space
// unless it exists; an existing LV of that name must be a thin pool. The
// 10% left free gives lvm room to grow the pool metadata and spare.
//
// An existing pool is found in the metadata text when the group's devices
// are known (an lvs saved on every start); lvs decides whatever the text
// does not show.
func (c *Client) EnsureThinPool(ctx context.Context, pool string) error {
	if err := ValidateLVName(pool); err != nil {
		return err
	}
	if typ, err := c.textSegtype(ctx, pool); err == nil && typ != "" {
		if typ != "thin-pool" {
			return fmt.Errorf("%s exists but is a %q volume, not a thin pool", c.lvRef(pool), typ)
		}
		return nil
	}
	r, err := c.pool(ctx, pool)
	if err == nil {
		if r.Segtype != "thin-pool" {
			return fmt.Errorf("%s exists but is a %q volume, not a thin pool", c.lvRef(pool), r.Segtype)
		}
		return nil
	}
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	if _, err := c.run(ctx, "lvcreate", "--type", "thin-pool", "-l", "90%FREE", "-n", pool, "-y", c.vg); err != nil {
		return fmt.Errorf("create thin pool %s: %w", c.lvRef(pool), err)
	}
	return nil
}
