package volume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
	"github.com/cryptvol/cryptvol/volume/options"
)

// Reconcile brings the state file, LVM, dm-crypt and the mount table into
// agreement, following the rules in the package documentation. It logs each
// repair with volume= and op=reconcile, carries on past a volume it cannot
// repair, and returns every failure joined. Run it before serving requests:
// it works from one listing of the LVs (a mapping can only be open on an
// active LV, so inactive volumes cost no cryptsetup call at all). The
// counts it keeps are suspect (sweep.go): the plugin starting may mean
// dockerd started.
func (m *Manager) Reconcile(ctx context.Context) error {
	var errs []error
	snap := m.st.Snapshot()

	// Rule 1: a remove interrupted by a crash is finished.
	for _, e := range snap.Removing {
		err := m.withLock(e.Volume, func(log logrus.FieldLogger) error { return m.finishRemove(ctx, e, log) })
		m.repaired(e.Volume, "finished a remove a crash interrupted (rule 1)", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %q: reconcile: %w", e.Volume, err))
		}
	}
	// Rule 2: a create interrupted by a crash is undone, unless it had
	// completed and only the journal entry was left.
	for _, e := range snap.Creating {
		err := m.withLock(e.Volume, func(log logrus.FieldLogger) error { return m.undoCreate(ctx, e, log) })
		m.repaired(e.Volume, "settled a create a crash interrupted (rule 2)", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %q: reconcile: %w", e.Volume, err))
		}
	}

	// Rule 2b: a key rotation interrupted by a crash is finished if its
	// keyslot was added, else undone (rotate.go).
	for _, e := range snap.Rotating {
		err := m.withLock(e.Volume, func(log logrus.FieldLogger) error { return m.settleRotation(ctx, e, log) })
		m.repaired(e.Volume, "settled a key rotation a crash interrupted (rule 2b)", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %q: reconcile: %w", e.Volume, err))
		}
	}

	// Rule 2c: a restore from the trash or a remove into it that a crash
	// interrupted is settled (trashrestore.go, trash.go).
	for _, e := range snap.Restoring {
		err := m.withLock(e.Volume, func(log logrus.FieldLogger) error { return m.settleRestore(ctx, e, log) })
		m.repaired(e.Target, "settled a restore from the trash a crash interrupted (rule 2c)", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("trash entry %s: reconcile: %w", e.Volume, err))
		}
	}
	for _, e := range snap.Trashing {
		err := m.withLock(e.Volume, func(log logrus.FieldLogger) error { return m.settleTrash(ctx, e, log) })
		m.repaired(e.Volume, "settled a remove into the trash a crash interrupted (rule 2c)", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("trash entry %s: reconcile: %w", e.Volume, err))
		}
	}

	// Rules 3-5: every LV of ours, and the listing seeds the view
	// (lvview.go).
	lvs, err := m.listForReconcile(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("reconcile: listing volumes: %w", err))
		return errors.Join(errs...)
	}
	rest := m.readRest(ctx)
	exists := map[string]bool{}
	for _, lv := range lvs {
		name, ok := volumeName(lv)
		if !ok {
			m.log.WithFields(logrus.Fields{"lv": lv.Name, "op": "reconcile"}).Warn("LV carries the cryptvol tag but not a cryptvol name; ignored")
			continue
		}
		ready, err := m.reconcileVolume(ctx, name, lv, rest)
		if err != nil {
			errs = append(errs, err)
		}
		exists[name] = ready
	}

	// Rule 6: mount IDs of volumes that no longer exist are dropped.
	for name := range m.st.Snapshot().Mounts {
		if exists[name] {
			continue
		}
		err := m.dropIDs(name)
		m.repaired(name, "dropped the mount IDs of a volume that no longer exists (rule 6)", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %q: reconcile: %w", name, err))
			continue
		}
		m.logFor(name, "reconcile").Warn("dropped mount IDs of a volume that no longer exists")
	}

	// Rule 7: mounts and mappings under the mount root of names that are
	// not volumes.
	errs = append(errs, m.reconcileStrays(ctx, exists)...)

	// Records the current boot id even when nothing changed.
	if err := m.st.Update(func(*journal.State) {}); err != nil {
		errs = append(errs, fmt.Errorf("reconcile: %w", err))
	}
	// Every count loaded is of an earlier epoch, so suspect (sweep.go):
	// the first sweep probes the volumes that have them.
	m.sw.poke()
	return errors.Join(errs...)
}

func (m *Manager) withLock(name string, fn func(log logrus.FieldLogger) error) error {
	unlock := m.lock(name)
	defer unlock()
	return fn(m.logFor(name, "reconcile"))
}

// restView is what reconciliation reads once for all volumes: the mounts
// under the mount root and the device-mapper names. On a single host every
// volume's LV is active at rest (keepsActive), and asking the mount table
// and sysfs per volume would read them N times; nil: ask per volume.
type restView struct {
	mounts map[string]string
	open   map[string]bool
	// dirs are the names in the mount root, read once: a volume at rest
	// whose mount point is not there needs no rmdir: at 1,000 volumes a
	// system call per volume adds to the time from a restart to
	// answering. nil: try the rmdir.
	dirs map[string]bool
}

func (m *Manager) readRest(ctx context.Context) *restView {
	if !m.keepsActive() {
		return nil
	}
	log := m.log.WithField("op", "reconcile")
	open, err := m.crypt.Mappings(ctx)
	if err != nil {
		log.WithError(err).Warn("could not list device-mapper devices at once; asking for each volume")
		return nil
	}
	mounts, err := m.fs.MountedUnder(m.cfg.MountRoot)
	if err != nil {
		log.WithError(err).Warn("could not read the mount table at once; asking for each volume")
		return nil
	}
	rv := &restView{mounts: mounts, open: open}
	if entries, err := os.ReadDir(m.cfg.MountRoot); err == nil {
		rv.dirs = make(map[string]bool, len(entries))
		for _, e := range entries {
			rv.dirs[e.Name()] = true
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		rv.dirs = map[string]bool{}
	}
	return rv
}

// mayHaveDir says whether name's mount point may exist, as far as the
// reading of the mount root knows.
func (r *restView) mayHaveDir(name string) bool {
	return r == nil || r.dirs == nil || r.dirs[name]
}

// atRest says whether the view shows the volume with nothing mounted and
// no mapping.
func (r *restView) atRest(name string) bool {
	return r != nil && r.mounts[name] == "" && !r.open[mappingName(name)]
}

// reconcileVolume applies rules 3-5 to one LV and reports whether it is a
// complete volume afterwards.
func (m *Manager) reconcileVolume(ctx context.Context, name string, lv lvm.LV, rest *restView) (ready bool, err error) {
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "reconcile")
	wrap := func(err error) error { return fmt.Errorf("volume %q: reconcile: %w", name, err) }
	// Rule 3: an LV without TagReady and without a journal entry is a
	// half-made volume (damage from outside, or a version 1 create): undo
	// it, with the keys it names.
	if !slices.Contains(lv.Tags, TagReady) {
		if !m.madeHere(lv) {
			// Shared mode: another host's create, maybe in progress.
			log.WithField("made_by", tagValue(lv.Tags, tagMadeByPrefix)).Debug("half-made volume of another host; left to it")
			return false, nil
		}
		_, err := m.destroy(ctx, name, tenantOf(lv), &lv, nil, nil, "", log)
		m.repaired(name, "removed a half-made volume with the keys it names (rule 3)", err)
		if err != nil {
			return false, wrap(fmt.Errorf("removing a half-made volume: %w", err))
		}
		log.Info("removed a half-made volume (LV, header and KMIP key)")
		return false, nil
	}

	ids := m.st.IDs(name)
	// Rule 4: an inactive LV can be neither open nor mounted, so recorded
	// IDs are stale.
	if !lv.Active {
		return true, m.atRest(name, ids, "the LV is inactive", rest, log)
	}
	// Rule 4 on a single host, where LVs stay active (keepsActive): an
	// active LV with nothing mounted and no mapping is at rest.
	const closed = "its mapping is closed"
	if rest.atRest(name) {
		return true, m.atRest(name, ids, closed, rest, log)
	}
	mounted, _, err := m.mountedHere(name)
	if err != nil {
		return true, wrap(err)
	}
	if mounted {
		// Rule 5a: a filesystem frozen for an export or a clone's
		// snapshot stays frozen when the plugin dies meanwhile (the
		// kernel keeps a freeze until it is thawed), and its writers wait:
		// thawed. Thawing one that is not frozen does nothing.
		if err := m.fs.Thaw(m.mountpoint(name)); err != nil {
			log.WithError(err).Warn("could not thaw the volume's filesystem; its writers may wait until it is thawed (fsfreeze -u)")
		}
	}
	if m.keepsActive() && !mounted && rest == nil {
		open, err := m.crypt.IsOpen(ctx, mappingName(name))
		if err != nil {
			return true, wrap(err)
		}
		if !open {
			return true, m.atRest(name, ids, closed, rest, log)
		}
	}
	// Rule 5: an active volume is taken down unless the kernel says it is
	// held. Held: its mount is (re)established and its IDs kept, or it
	// lingers if it has none. Not held: its IDs were stale.
	if mounted && len(ids) > 0 {
		// Mounted in this namespace as recorded (the plugin restarted in
		// place): left alone; the sweep probes its suspect IDs.
		log.WithField("mount_ids", len(ids)).Debug("mounted as recorded")
		return true, nil
	}
	held, err := m.release(ctx, name, log)
	m.repaired(name, releaseOutcome(held, len(ids) > 0), err)
	switch {
	case err != nil:
		if len(ids) == 0 {
			m.sw.linger(name, err)
		}
		return true, wrap(err)
	case held && len(ids) > 0:
		log.WithField("mount_ids", len(ids)).Info("volume is held by its containers; mounted for them")
	case held:
		m.sw.linger(name, errHeld)
		log.Warn("volume has no mount ID but the kernel still holds it; it stays decrypted until nothing does")
	case len(ids) > 0:
		if err := m.dropIDs(name); err != nil {
			return true, wrap(err)
		}
		logStale(log, len(ids), "nothing held the volume any more; it is closed")
	default:
		log.WithField("was_mounted", mounted).Info("took down a volume no container holds")
	}
	return true, nil
}

// atRest applies rule 4 to a volume nothing can hold (why says what shows
// it): its recorded IDs are stale and dropped, its empty mountpoint goes.
func (m *Manager) atRest(name string, ids []string, why string, rest *restView, log logrus.FieldLogger) error {
	if len(ids) > 0 {
		err := m.dropIDs(name)
		m.repaired(name, "dropped stale mount IDs: "+why+" (rule 4)", err)
		if err != nil {
			return fmt.Errorf("volume %q: reconcile: %w", name, err)
		}
		logStale(log, len(ids), why+", so nothing can hold the volume")
	}
	if rest.mayHaveDir(name) {
		removeMountpoint(m.mountpoint(name), log)
	}
	return nil
}

// releaseOutcome describes rule 5's result for the trail.
func releaseOutcome(held, hadIDs bool) string {
	switch {
	case held && hadIDs:
		return "mounted again for the containers that hold it (rule 5)"
	case held:
		return "left decrypted: the kernel holds it but no mount ID does (rule 5)"
	case hadIDs:
		return "dropped stale mount IDs and closed it: nothing held it (rule 5)"
	default:
		return "closed: active, but no container held it (rule 5)"
	}
}

// reconcileStrays handles directories under the mount root whose name is not
// a complete volume: whatever is mounted there or open under its mapping
// name is a leftover and is taken down.
func (m *Manager) reconcileStrays(ctx context.Context, exists map[string]bool) []error {
	entries, err := os.ReadDir(m.cfg.MountRoot)
	if err != nil {
		return []error{fmt.Errorf("reconcile: reading mount root: %w", err)}
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || exists[name] || options.ValidateName(name) != nil {
			continue
		}
		if slices.ContainsFunc(m.st.Snapshot().Creating, func(x journal.Entry) bool { return x.Volume == name }) {
			continue
		}
		unlock := m.lock(name)
		log := m.logFor(name, "reconcile")
		target := m.mountpoint(name)
		m.repaired(name, "took down what was left under the mount root of a volume that does not exist (rule 7)", nil)
		if src, err := m.fs.MountedDevice(target); err != nil {
			errs = append(errs, fmt.Errorf("volume %q: reconcile: %w", name, err))
		} else if src != "" {
			if err := m.fs.Unmount(ctx, target); err != nil {
				errs = append(errs, fmt.Errorf("volume %q: reconcile: unmounting %s: %w", name, target, err))
			} else {
				log.WithFields(logrus.Fields{"target": target, "source": src}).Info("unmounted a mount of a volume that does not exist")
			}
		}
		if open, err := m.crypt.IsOpen(ctx, mappingName(name)); err != nil {
			errs = append(errs, fmt.Errorf("volume %q: reconcile: %w", name, err))
		} else if open {
			switch err := m.crypt.Close(ctx, mappingName(name)); {
			case errors.Is(err, luks.ErrBusy):
				log.WithField("mapping", mappingName(name)).Warn("a mapping of a volume that does not exist is still held; left open")
			case err != nil:
				errs = append(errs, fmt.Errorf("volume %q: reconcile: closing mapping: %w", name, err))
			default:
				log.WithField("mapping", mappingName(name)).Info("closed a mapping of a volume that does not exist")
			}
		}
		removeMountpoint(target, log)
		unlock()
	}
	return errs
}

// listForReconcile lists every LV of ours with its activation as the
// kernel has it, and seeds the view with the listing. The metadata text on
// the devices is read first (no program: an lvs costs more the more volumes
// the group holds, and it would stand between a restart and answering); lvs
// when it cannot be read, after the mark, so that a commit in between moves
// the mark past the seed.
func (m *Manager) listForReconcile(ctx context.Context) ([]lvm.LV, error) {
	mark, lvs, err := m.lvm.MetadataLVs(ctx, TagOurs)
	if err == nil {
		// Activation is not metadata: the kernel says (sysfs, no program).
		// Active answers false when it cannot tell, and rule 4 drops the
		// mount IDs of an inactive LV: an LV with IDs that reads inactive
		// is confirmed by lvs before they go.
		sure := true
		for i := range lvs {
			lvs[i].Active = m.lvm.Active(lvs[i])
			if name, ok := volumeName(lvs[i]); ok && !lvs[i].Active && len(m.st.IDs(name)) > 0 {
				sure = false
			}
		}
		m.seedView(mark, lvs)
		if sure {
			return lvs, nil
		}
		m.log.Debug("an LV with mount IDs reads inactive in sysfs; reconciliation asks lvs")
	} else {
		m.log.WithError(err).Warn("LVM metadata text unreadable; reconciliation lists volumes with lvs")
	}
	mark, merr := m.lvm.MetadataMark(ctx)
	if lvs, err = m.lvm.ListLVs(ctx, TagOurs); err != nil {
		return nil, err
	}
	if merr == nil {
		m.seedView(mark, lvs)
	}
	return lvs, nil
}
