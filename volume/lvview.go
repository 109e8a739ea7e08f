package volume

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/cryptvol/cryptvol/lvm"
)

// lvView answers Get, Path and List from memory: the group's complete
// cryptvol LVs as last listed, and the metadata mark
// (lvm.Client.MetadataMark) read just before that listing. A read whose mark
// is unchanged uses them and runs no program. Any metadata commit, the
// plugin's own, an operator's or another host's, changes the mark, and the
// next read lists again: from the metadata text the mark points at
// (lvm.Client.MetadataLVs, no program), or with lvs when that text cannot
// be read. A name the view lacks under an unchanged mark does not exist:
// creating its LV would have been a commit. A mark that cannot be read is
// never trusted: that read lists with lvs, and the view is dropped.
//
// Activation writes no metadata, so the LVs' Active flags in the view may be
// stale: readers take mounts from the kernel's table, never from Active.
// Mount takes the LV from the view too (its tags and path, which only a
// commit changes) and activates it whatever Active says, and so does Remove
// for a complete volume (remove.go, removeTarget). The other mutating
// operations (create, reconcile, the sweeper), and Remove for a name the
// view lacks, must see half-made LVs too, and ask lvm under the volume's
// lock.
//
// Concurrency: mu is held across a listing, so readers arriving during one
// wait for it instead of starting their own. It is never held with a
// volume's lock wanted.
type lvView struct {
	mu   sync.Mutex
	mark string
	lvs  map[string]lvm.LV // complete volumes by volume name; nil until listed
	// warned is the last mark error logged: a device that stays unreadable
	// is logged once, not on every read dockerd makes.
	warned string
}

// viewVolumes returns the complete volumes by name, current as of the call.
func (m *Manager) viewVolumes(ctx context.Context) (map[string]lvm.LV, error) {
	v := &m.view
	v.mu.Lock()
	defer v.mu.Unlock()
	mark, merr := m.lvm.MetadataMark(ctx)
	if merr == nil && v.lvs != nil && mark == v.mark {
		return v.lvs, nil
	}
	if merr == nil {
		tmark, list, err := m.lvm.MetadataLVs(ctx, TagOurs)
		if err == nil {
			vols := completeVolumes(list)
			v.lvs, v.mark, v.warned = vols, tmark, ""
			return vols, nil
		}
		m.warnOnce(err, "LVM metadata text unreadable; volumes are listed with lvs")
	}
	list, err := m.lvm.ListLVs(ctx, TagOurs)
	if err != nil {
		return nil, fmt.Errorf("listing volumes: %w", err)
	}
	vols := completeVolumes(list)
	if merr != nil {
		m.warnOnce(merr, "LVM metadata mark unreadable; volumes are listed with lvs on every read")
		v.lvs, v.mark = nil, ""
		return vols, nil
	}
	// The mark was read before lvs ran: a commit in between makes the next
	// read list again, never the view miss it.
	v.lvs, v.mark = vols, mark
	return vols, nil
}

// warnOnce logs err with msg unless it is the error logged last: a device
// that stays unreadable is logged once, not on every read dockerd makes.
// The caller holds m.view.mu.
func (m *Manager) warnOnce(err error, msg string) {
	if err.Error() != m.view.warned {
		m.log.WithError(err).Warn(msg)
		m.view.warned = err.Error()
	}
}

// completeVolumes picks the complete volumes out of a listing of our LVs.
func completeVolumes(list []lvm.LV) map[string]lvm.LV {
	vols := make(map[string]lvm.LV, len(list))
	for _, lv := range list {
		if name, ok := volumeName(lv); ok && slices.Contains(lv.Tags, TagReady) {
			vols[name] = lv
		}
	}
	return vols
}

// seedView makes a listing of our LVs, taken after mark was read, the
// view's: start-up reconciliation lists every volume anyway, and dockerd's
// first List after a (re)start then runs no lvs, which at 1,000 volumes
// would stand between a restart and answering. A repair that commits moves
// the mark past it.
func (m *Manager) seedView(mark string, list []lvm.LV) {
	v := &m.view
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lvs, v.mark, v.warned = completeVolumes(list), mark, ""
}

// viewVolume returns the complete volume called name, or an error wrapping
// ErrNotFound.
func (m *Manager) viewVolume(ctx context.Context, name string) (lvm.LV, error) {
	vols, err := m.viewVolumes(ctx)
	if err != nil {
		return lvm.LV{}, fmt.Errorf("volume %q: %w", name, err)
	}
	lv, ok := vols[name]
	if !ok {
		return lvm.LV{}, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	return lv, nil
}

// lookupLV returns the LV of volume name, whatever its tags, as lvs would
// report it now: from the metadata text, with activation from the kernel,
// or from lvs when the text cannot be read. Create asks it under the
// volume's lock for half-made LVs too, which the view leaves out (one lvm
// start fewer per create).
func (m *Manager) lookupLV(ctx context.Context, name string) (lvm.LV, error) {
	_, lvs, err := m.lvm.MetadataLVs(ctx, "")
	if err != nil {
		m.log.WithError(err).Debug("LVM metadata text unreadable; asking lvs")
		return m.lvm.LV(ctx, lvName(name))
	}
	for _, lv := range lvs {
		if lv.Name == lvName(name) {
			lv.Active = m.lvm.Active(lv)
			return lv, nil
		}
	}
	return lvm.LV{}, fmt.Errorf("logical volume %s/%s: %w", m.cfg.VG, lvName(name), lvm.ErrNotFound)
}

// groupInfo returns the volume group's size, free space, extent size and
// uuid, from the metadata text, or from vgs when the text cannot be read
// or holds segments whose allocation it does not read (lvm.MetadataVG).
func (m *Manager) groupInfo(ctx context.Context) (lvm.VG, error) {
	vg, err := m.lvm.MetadataVG(ctx)
	if err != nil {
		m.log.WithError(err).Debug("volume group from the metadata text unreadable; asking vgs")
		return m.lvm.VG(ctx)
	}
	return vg, nil
}
