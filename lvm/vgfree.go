package lvm

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
)

// MetadataVG returns what VG reports, taken from the metadata text on the
// group's devices without running lvm, so that a create runs no vgs (one
// lvm program start fewer per create). vg_size is the PVs' extents
// (pe_count) times extent_size; vg_free is that less the extents allocated
// on them, which for the segment types a cryptvol group holds is every
// striped (linear) segment's extent_count, while thin and thin-pool
// segments map other LVs (a pool's hidden _tdata and _tmeta, themselves
// striped), not PVs. A segment of any other type (raid, mirror, cache,
// vdo...) is an error: then ask vgs, which knows them all.
func (c *Client) MetadataVG(ctx context.Context) (VG, error) {
	_, g, err := c.currentGroup(ctx, true)
	if err != nil {
		return VG{}, err
	}
	vg, err := vgFromGroup(g.section, g.extent, c.vg)
	if err != nil {
		return VG{}, fmt.Errorf("volume group %s: %w", c.vg, err)
	}
	return vg, nil
}

// vgFromText reads group vg's size, free space, extent size, uuid and lock
// type from its metadata text.
func vgFromText(text []byte, vg string) (VG, error) {
	g, sectors, err := groupOf(text, vg)
	if err != nil {
		return VG{}, err
	}
	return vgFromGroup(g, sectors, vg)
}

// vgFromGroup is vgFromText on the group's parsed section.
func vgFromGroup(g *cfgSection, sectors uint64, vg string) (VG, error) {
	id, ok := g.str("id")
	if !ok {
		return VG{}, errors.New("metadata text: the group has no id")
	}
	lockType, _ := g.str("lock_type") // written only for a shared group
	var total, used uint64
	pvs := g.sub("physical_volumes")
	if pvs == nil {
		return VG{}, errors.New("metadata text: no physical_volumes")
	}
	for _, pv := range pvs.subs {
		n, err := pv.num("pe_count")
		if err != nil {
			return VG{}, fmt.Errorf("metadata text: %w", err)
		}
		total += n
	}
	if lvs := g.sub("logical_volumes"); lvs != nil {
		for _, lv := range lvs.subs {
			for _, seg := range lv.subs {
				n, err := segmentPVExtents(seg)
				if err != nil {
					return VG{}, fmt.Errorf("metadata text: LV %s, %s: %w", lv.name, seg.name, err)
				}
				used += n
			}
		}
	}
	extent := sectors * 512
	hi, size := bits.Mul64(total, extent)
	if hi != 0 || used > total {
		return VG{}, fmt.Errorf("metadata text: %d extents allocated of %d", used, total)
	}
	return VG{Name: vg, Size: size, Free: (total - used) * extent, ExtentSize: extent, UUID: id, LockType: lockType}, nil
}

// segmentPVExtents is how many PV extents a segment allocates.
func segmentPVExtents(seg *cfgSection) (uint64, error) {
	typ, _ := seg.str("type")
	switch typ {
	case "striped":
		// extent_count is the segment's logical extents: stripe_count
		// areas of extent_count/stripe_count extents each.
		if _, ok := seg.values["stripes"]; !ok {
			return 0, errors.New("striped segment without stripes")
		}
		return seg.num("extent_count")
	case "thin", "thin-pool":
		return 0, nil
	}
	return 0, fmt.Errorf("segment type %q: its allocation is not read here", typ)
}
