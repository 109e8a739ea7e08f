package volume

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/cryptvol/cryptvol/volume/options"
)

// Resized is what Resize did.
type Resized struct {
	Volume   string `json:"volume"`
	OldBytes uint64 `json:"old_bytes"`
	NewBytes uint64 `json:"new_bytes"`
	Online   bool   `json:"online"` // mounted for containers throughout
}

// Resize grows the volume to size, mounted or not: lvextend, the dm-crypt
// mapping resized to the grown LV, the filesystem grown online (resize2fs,
// xfs_growfs). A volume no container holds is brought up for the
// filesystem step and taken down again. Shrinking is refused: neither
// filesystem shrinks online and xfs not at all. Every step does nothing when
// already done (the LV at the size, the mapping filling it, the filesystem
// filling the mapping), so a resize a crash interrupted is finished by
// running it again; until then the volume works at its old filesystem size.
func (m *Manager) Resize(ctx context.Context, name, size string) (r Resized, err error) {
	start := time.Now()
	defer func() {
		m.record(audit.Event{Op: "volume.resize", Volume: name, Detail: fmt.Sprintf("%d -> %d bytes", r.OldBytes, r.NewBytes), Err: err, Took: time.Since(start)})
	}()
	if err := options.ValidateName(name); err != nil {
		return r, err
	}
	want, err := options.ParseSize(size)
	if err != nil {
		return r, fmt.Errorf("volume %q: %w", name, err)
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "resize")
	lv, err := m.completeLV(ctx, name)
	if err != nil {
		return r, err
	}
	if err := refuseUnchangeable(name, lv, "resize", "a larger"); err != nil {
		return r, err
	}
	vg, err := m.lvm.VG(ctx)
	if err != nil {
		return r, fmt.Errorf("volume %q: %w", name, err)
	}
	want = roundUp(want, vg.ExtentSize)
	r = Resized{Volume: name, OldBytes: lv.Size, NewBytes: want, Online: len(m.st.IDs(name)) > 0}
	switch {
	case want < lv.Size:
		return r, fmt.Errorf("volume %q is %s; shrinking to %s is not supported (allowed: %s or more)", name, options.FormatSize(lv.Size), options.FormatSize(want), options.FormatSize(lv.Size))
	case lv.Pool == "" && want-lv.Size > vg.Free:
		return r, fmt.Errorf("volume %q: growing from %s to %s needs %s more, and volume group %q has %s free", name, options.FormatSize(lv.Size), options.FormatSize(want), options.FormatSize(want-lv.Size), m.cfg.VG, options.FormatSize(vg.Free))
	case lv.Pool != "" && want > vg.Size:
		return r, fmt.Errorf("volume %q: %s is more than the whole volume group %q (%s)", name, options.FormatSize(want), m.cfg.VG, options.FormatSize(vg.Size))
	}
	if want > lv.Size {
		if err := m.lvm.Extend(ctx, lvName(name), lv.Size, want); err != nil {
			return r, fmt.Errorf("volume %q: %w", name, err)
		}
		lv.Size = want
	}

	// The filesystem is grown mounted; a closed volume is brought up
	// without a mount ID and taken down after.
	brought, _, err := m.ensureMounted(ctx, name, lv, log)
	if err != nil {
		return r, fmt.Errorf("volume %q: the LV is %s, but mounting it to grow the filesystem failed (run the resize again): %w", name, options.FormatSize(want), err)
	}
	if brought {
		lv.Active = true
		defer func() {
			cctx, cancel := command.CleanupContext(ctx)
			defer cancel()
			if terr := m.teardown(cctx, name, log); terr != nil {
				log.WithError(terr).Warn("taking the volume down after its resize failed; the sweeper retries")
				m.sw.linger(name, terr)
			}
		}()
	}
	_, keyID, err := m.checkedHeader(ctx, name, lv, m.devPath(lv))
	if err != nil {
		return r, err
	}
	key, err := m.keyGet(ctx, name, tenantOf(lv), keyID)
	if err != nil {
		return r, fmt.Errorf("volume %q: %w", name, err)
	}
	defer key.Wipe()
	if err := m.crypt.Resize(ctx, mappingName(name), key.Bytes()); err != nil {
		return r, fmt.Errorf("volume %q: %w", name, err)
	}
	key.Wipe()
	if err := m.fs.Grow(ctx, mapperPath(name), m.mountpoint(name), tagValue(lv.Tags, tagFSPrefix)); err != nil {
		return r, fmt.Errorf("volume %q: %w", name, err)
	}
	log.WithFields(map[string]any{"old_bytes": r.OldBytes, "new_bytes": r.NewBytes, "online": r.Online}).Info("volume grown")
	return r, nil
}

// roundUp rounds n up to a multiple of unit (unit 0 leaves n alone),
// saturating instead of wrapping so a huge request cannot pass a capacity check.
func roundUp(n, unit uint64) uint64 {
	if unit == 0 || n%unit == 0 {
		return n
	}
	r := n + unit - n%unit
	if r < n {
		return math.MaxUint64
	}
	return r
}
