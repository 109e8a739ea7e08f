package volume

import "context"

// What an orchestrator asks of the volume group before it places a volume
// (package csi: GetCapacity, topology, capacity ranges).

// Capacity is the size of the largest volume a create could be given now:
// the volume group's free space for thick volumes; for thin ones, the thin
// pool's free data space (a thin create may ask for more: that is what
// thin is for, but it is all that can be written).
func (m *Manager) Capacity(ctx context.Context) (uint64, error) {
	if m.cfg.ThinPool != "" {
		st, err := m.lvm.PoolStatus(ctx, m.cfg.ThinPool)
		if err != nil {
			return 0, err
		}
		m.pool.set(st, m.now())
		return st.Free(), nil
	}
	vg, err := m.groupInfo(ctx)
	if err != nil {
		return 0, err
	}
	return vg.Free, nil
}

// Group returns the volume group's UUID: hosts that see the same UUID
// share the group (CRYPTVOL_SHARED), each other host's is its own.
func (m *Manager) Group(ctx context.Context) (string, error) {
	vg, err := m.groupInfo(ctx)
	if err != nil {
		return "", err
	}
	return vg.UUID, nil
}

// RoundSize returns what size a create asking for size bytes gets: LVM
// rounds up to whole extents.
func (m *Manager) RoundSize(ctx context.Context, size uint64) (uint64, error) {
	vg, err := m.groupInfo(ctx)
	if err != nil {
		return 0, err
	}
	return roundUp(size, vg.ExtentSize), nil
}

// Device is the decrypted volume's block device while it is open: what the
// mount table shows for its filesystem and for every bind of its data
// directory.
func Device(name string) string { return mapperPath(name) }

// Holds says whether mount ID id holds the volume (a Mount not yet matched
// by an Unmount): a CSI publish whose bind went from under it binds again
// without counting a second Mount that no unpublish would match.
func (m *Manager) Holds(name, id string) bool { return m.st.Mounts(name)[id] > 0 }
