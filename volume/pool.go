package volume

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/options"
)

// DefaultThinMaxFill: past 95% a thin pool is one large write from
// refusing I/O (LVM then errors or queues every write to every thin volume
// of the pool, lvmthin(7), "Data space exhaustion"), and a create that
// lvcreate accepted would fail later inside mkfs after LVM's timeout.
const DefaultThinMaxFill = 95

// poolSeen keeps the thin pool's use as last read, for inspect: reading it
// there would cost a program per Get, so Status shows it with the time it
// was read (at each thin create).
type poolSeen struct {
	mu sync.Mutex
	st lvm.PoolStatus
	at time.Time
}

func (p *poolSeen) set(st lvm.PoolStatus, at time.Time) {
	p.mu.Lock()
	p.st, p.at = st, at
	p.mu.Unlock()
}

func (p *poolSeen) get() (lvm.PoolStatus, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st, p.at
}

// checkPool refuses a thin create of size bytes that the pool cannot take
// safely: its data or metadata at or over ThinMaxFill, or, with
// ThinMaxOvercommit set, the pool's thin volumes and this one more than
// that many times the pool. It runs before anything is made; every refusal
// names the numbers and the setting.
func (m *Manager) checkPool(ctx context.Context, name string, size uint64, log logrus.FieldLogger) error {
	st, err := m.lvm.PoolStatus(ctx, m.cfg.ThinPool)
	if err != nil {
		return fmt.Errorf("volume %q: not created, nothing was made: cannot read thin pool %s's use to check it: %w", name, m.cfg.ThinPool, err)
	}
	m.pool.set(st, m.now())
	if limit := m.cfg.ThinMaxFill; st.DataPercent >= limit || st.MetaPercent >= limit {
		return ofKind(ErrNoSpace, fmt.Errorf("volume %q: not created, nothing was made: thin pool %s is %.2f%% full (data) and %.2f%% (metadata), at or over the %g%% limit (CRYPTVOL_THIN_MAX_FILL); extend the pool or remove volumes",
			name, m.cfg.ThinPool, st.DataPercent, st.MetaPercent, limit))
	}
	if oc := m.cfg.ThinMaxOvercommit; oc > 0 {
		virt, err := m.lvm.ThinVirtualSize(ctx, m.cfg.ThinPool)
		if err != nil {
			return fmt.Errorf("volume %q: not created, nothing was made: %w", name, err)
		}
		if limit := uint64(oc * float64(st.Size)); virt+size > limit {
			return ofKind(ErrNoSpace, fmt.Errorf("volume %q: not created, nothing was made: thin pool %s (%s) already backs %s of thin volumes; %s more would exceed %g times its size, %s (CRYPTVOL_THIN_MAX_OVERCOMMIT)",
				name, m.cfg.ThinPool, options.FormatSize(st.Size), options.FormatSize(virt), options.FormatSize(size), oc, options.FormatSize(limit)))
		}
	}
	if size > st.Free() {
		log.WithFields(logrus.Fields{"size": size, "pool_free": st.Free()}).
			Warn("thin volume is larger than the pool's free space: writes will fail if the pool fills")
	}
	return nil
}

// poolUse describes the pool's last-read use for Status ("" before any).
func (m *Manager) poolUse() string {
	st, at := m.pool.get()
	if at.IsZero() {
		return ""
	}
	return fmt.Sprintf("data %.2f%%, metadata %.2f%% (read at %s)", st.DataPercent, st.MetaPercent, at.UTC().Format(time.RFC3339))
}
