package volume

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
)

// A volume's filesystem usage in Status, as df reports it inside the
// container: measured (statfs, no program) while the volume is mounted,
// and for a closed one the figures of its last close, with their time.
// Decimal strings, as StatusSizeBytes and for the same reason.
const (
	StatusUsedBytes  = "used_bytes"
	StatusFreeBytes  = "free_bytes" // available to containers: df's Available
	StatusInodesUsed = "inodes_used"
	StatusInodesFree = "inodes_free"
	StatusUsageAt    = "usage_at" // RFC 3339: now while mounted, else the last close
)

// Usage is a volume's filesystem usage at At; Live is whether it was just
// measured (the volume is mounted) rather than recorded at its last close.
type Usage struct {
	mount.Usage
	At   time.Time
	Live bool
}

// usageOf returns name's usage: measured when mounted is true (the mount
// table shows its mapping at its mountpoint, so statfs reads the volume's
// filesystem and not the directory under it), else as last recorded.
func (m *Manager) usageOf(name string, mounted bool) (Usage, bool) {
	if mounted {
		if u, err := m.fs.Usage(m.mountpoint(name)); err == nil {
			return Usage{Usage: u, At: m.now(), Live: true}, true
		}
	}
	r, ok := m.st.Usage(name)
	if !ok {
		return Usage{}, false
	}
	return Usage{Usage: mount.Usage{Size: r.Size, Used: r.Used, Avail: r.Avail, Inodes: r.Inodes, InodesFree: r.InodesFree}, At: r.At}, true
}

// closingUsage measures name's usage before its last unmount, for the
// journal: ok is false unless the mount table shows the volume mounted.
func (m *Manager) closingUsage(name string) (journal.Usage, bool) {
	if here, _, err := m.mountedHere(name); err != nil || !here {
		return journal.Usage{}, false
	}
	u, err := m.fs.Usage(m.mountpoint(name))
	if err != nil {
		return journal.Usage{}, false
	}
	return journal.Usage{Size: u.Size, Used: u.Used, Avail: u.Avail, Inodes: u.Inodes, InodesFree: u.InodesFree, At: m.now().UTC()}, true
}

// addUsage puts u in a Status.
func addUsage(status map[string]any, u Usage) {
	status[StatusUsedBytes] = strconv.FormatUint(u.Used, 10)
	status[StatusFreeBytes] = strconv.FormatUint(u.Avail, 10)
	status[StatusInodesUsed] = strconv.FormatUint(u.InodesUsed(), 10)
	status[StatusInodesFree] = strconv.FormatUint(u.InodesFree, 10)
	status[StatusUsageAt] = u.At.UTC().Format(time.RFC3339)
}

// Usages returns the usage of every volume that has figures, by name, for
// the metrics: the mounted ones measured, the others as last recorded.
func (m *Manager) Usages(ctx context.Context) (map[string]Usage, error) {
	lvs, err := m.viewVolumes(ctx)
	if err != nil {
		return nil, err
	}
	mounts, err := m.fs.MountedUnder(m.cfg.MountRoot)
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	out := make(map[string]Usage, len(lvs))
	for name := range lvs {
		if u, ok := m.usageOf(name, mounts[name] == mapperPath(name)); ok {
			out[name] = u
		}
	}
	return out, nil
}
