package lvm

import (
	"context"
	"fmt"
	"math"
	"strconv"
)

// PoolStatus is what lvs says of a thin pool.
type PoolStatus struct {
	Size        uint64  // bytes of the data area
	DataPercent float64 // data_percent
	MetaPercent float64 // metadata_percent
}

// Free is the data area's bytes not yet used. data_percent is rounded to
// 0.01%; usage is rounded up so free is never overstated.
func (s PoolStatus) Free() uint64 {
	used := uint64(math.Ceil(float64(s.Size) * s.DataPercent / 100))
	if used >= s.Size {
		return 0
	}
	return s.Size - used
}

// PoolStatus reads the thin pool's size and use. lvm only knows the use
// while the pool is active, and deactivates an implicitly activated pool
// with its last thin volume, so an inactive pool is activated once to read
// it.
func (c *Client) PoolStatus(ctx context.Context, pool string) (PoolStatus, error) {
	return c.poolStatus(ctx, pool, true)
}

// PoolFree returns the bytes of the thin pool's data area not yet used.
func (c *Client) PoolFree(ctx context.Context, pool string) (uint64, error) {
	st, err := c.PoolStatus(ctx, pool)
	return st.Free(), err
}

// PoolUse is PoolStatus's percentages, without activating an inactive
// pool (metrics leave the gauge out rather than activate it for a scrape).
func (c *Client) PoolUse(ctx context.Context, pool string) (data, meta float64, err error) {
	st, err := c.poolStatus(ctx, pool, false)
	return st.DataPercent, st.MetaPercent, err
}

func (c *Client) poolStatus(ctx context.Context, pool string, activate bool) (PoolStatus, error) {
	if err := ValidateLVName(pool); err != nil {
		return PoolStatus{}, err
	}
	r, err := c.pool(ctx, pool)
	if err != nil {
		return PoolStatus{}, err
	}
	if r.Segtype != "thin-pool" {
		return PoolStatus{}, fmt.Errorf("%s is a %q volume, not a thin pool", c.lvRef(pool), r.Segtype)
	}
	if r.DataPercent == "" {
		if !activate {
			return PoolStatus{}, fmt.Errorf("thin pool %s is inactive: lvm reports no use", c.lvRef(pool))
		}
		if _, err := c.run(ctx, "lvchange", "-ay", c.lvRef(pool)); err != nil {
			return PoolStatus{}, fmt.Errorf("activate thin pool %s to read its usage: %w", c.lvRef(pool), err)
		}
		if r, err = c.pool(ctx, pool); err != nil {
			return PoolStatus{}, err
		}
		if r.DataPercent == "" {
			return PoolStatus{}, fmt.Errorf("thin pool %s: lvm reports no data usage even after activation", c.lvRef(pool))
		}
	}
	var st PoolStatus
	if st.Size, err = strconv.ParseUint(r.Size, 10, 64); err != nil {
		return PoolStatus{}, fmt.Errorf("thin pool %s: bad lv_size %q: %w", c.lvRef(pool), r.Size, err)
	}
	for _, f := range []struct {
		name, v string
		dst     *float64
	}{{"data_percent", r.DataPercent, &st.DataPercent}, {"metadata_percent", r.MetaPercent, &st.MetaPercent}} {
		if f.v == "" && f.name == "metadata_percent" {
			continue // older reports; the fill check then sees 0
		}
		pct, err := strconv.ParseFloat(f.v, 64)
		if err != nil || pct < 0 || pct > 100 {
			return PoolStatus{}, fmt.Errorf("thin pool %s: bad %s %q", c.lvRef(pool), f.name, f.v)
		}
		*f.dst = pct
	}
	return st, nil
}

// ThinVirtualSize sums the virtual sizes of every thin volume in the pool,
// the group's volumes of other owners included: what an over-commit limit
// counts.
func (c *Client) ThinVirtualSize(ctx context.Context, pool string) (uint64, error) {
	if err := ValidateLVName(pool); err != nil {
		return 0, err
	}
	out, err := c.run(ctx, "lvs", "-o", "lv_name,lv_size", "--units", "b", "--nosuffix", "--reportformat", "json",
		"--select", "pool_lv="+pool, c.vg)
	if err != nil {
		return 0, fmt.Errorf("thin volumes of pool %s: %w", c.lvRef(pool), err)
	}
	rows, err := parseReport[struct {
		Name string `json:"lv_name"`
		Size string `json:"lv_size"`
	}](out, "lv")
	if err != nil {
		return 0, err
	}
	var sum uint64
	for _, r := range rows {
		n, err := strconv.ParseUint(r.Size, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("thin volume %s: bad lv_size %q", r.Name, r.Size)
		}
		sum += n
	}
	return sum, nil
}
