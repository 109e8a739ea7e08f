package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/lvm"
)

// Reconcile brings the state file, LVM, dm-crypt and the mount table into
// agreement, following the rules in the package documentation. It logs each
// repair with volume= and op=reconcile, carries on past a volume it cannot
// repair, and returns every failure joined. Run it before serving requests:
// it works from one listing of the LVs (a mapping can only be open on an
// active LV, so inactive volumes cost no cryptsetup call at all).
func (m *Manager) Reconcile(ctx context.Context) error {
	var errs []error
	snap := m.st.snapshot()

	// Rule 1: a remove interrupted by a crash is finished.
	for _, name := range snap.Removing {
		if err := m.finishRemove(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	// Rule 2: a create interrupted by a crash is undone, unless it had
	// completed and only the journal entry was left.
	for _, name := range snap.Creating {
		if err := m.undoCreate(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}

	// Rules 3-5: every LV of ours.
	lvs, err := m.lvm.ListLVs(ctx, TagOurs)
	if err != nil {
		errs = append(errs, fmt.Errorf("reconcile: listing volumes: %w", err))
		return errors.Join(errs...)
	}
	exists := map[string]bool{}
	for _, lv := range lvs {
		name, ok := volumeName(lv)
		if !ok {
			m.log.WithFields(logrus.Fields{"lv": lv.Name, "op": "reconcile"}).Warn("LV carries the cryptvol tag but not a cryptvol name; ignored")
			continue
		}
		ready, err := m.reconcileVolume(ctx, name, lv)
		if err != nil {
			errs = append(errs, err)
		}
		exists[name] = ready
	}

	// Rule 6: mount IDs of volumes that no longer exist are dropped.
	for name := range m.st.snapshot().Mounts {
		if exists[name] {
			continue
		}
		log := m.logFor(name, "reconcile")
		if err := m.st.update(func(s *state) { delete(s.Mounts, name) }); err != nil {
			errs = append(errs, fmt.Errorf("volume %q: reconcile: %w", name, err))
			continue
		}
		log.Warn("dropped mount IDs of a volume that no longer exists")
	}

	// Rule 7: mounts and mappings under the mount root of names that are
	// not volumes.
	errs = append(errs, m.reconcileStrays(ctx, exists)...)

	// Records the current boot id even when nothing changed.
	if err := m.st.update(func(*state) {}); err != nil {
		errs = append(errs, fmt.Errorf("reconcile: %w", err))
	}
	return errors.Join(errs...)
}

func (m *Manager) finishRemove(ctx context.Context, name string) error {
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "reconcile")
	if ids := m.st.ids(name); len(ids) > 0 {
		// Remove is refused while IDs exist, so this cannot come from
		// Remove; keep the volume.
		log.Error("remove journal entry for a volume with mount IDs; keeping the volume")
		return m.st.update(func(s *state) { s.Removing = removeSorted(s.Removing, name) })
	}
	lv, err := m.lvm.LV(ctx, lvName(name))
	var lvp *lvm.LV
	switch {
	case err == nil:
		if !hasTag(lv.Tags, TagOurs) {
			log.Error("remove journal entry names an LV that is not ours; dropping the entry")
			return m.st.update(func(s *state) { s.Removing = removeSorted(s.Removing, name) })
		}
		lvp = &lv
	case errors.Is(err, lvm.ErrNotFound):
	default:
		return fmt.Errorf("volume %q: reconcile: %w", name, err)
	}
	if _, err := m.destroy(ctx, name, lvp, true, log); err != nil {
		return fmt.Errorf("volume %q: reconcile: finishing an interrupted remove: %w", name, err)
	}
	log.Info("finished an interrupted remove")
	return m.st.update(func(s *state) { s.Removing = removeSorted(s.Removing, name) })
}

func (m *Manager) undoCreate(ctx context.Context, name string) error {
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "reconcile")
	lv, err := m.lvm.LV(ctx, lvName(name))
	var lvp *lvm.LV
	switch {
	case err == nil:
		if !hasTag(lv.Tags, TagOurs) {
			log.Error("create journal entry names an LV that is not ours; dropping the entry")
			return m.st.update(func(s *state) { s.Creating = removeSorted(s.Creating, name) })
		}
		if hasTag(lv.Tags, TagReady) {
			log.Info("interrupted create had completed; keeping the volume")
			return m.st.update(func(s *state) { s.Creating = removeSorted(s.Creating, name) })
		}
		lvp = &lv
	case errors.Is(err, lvm.ErrNotFound):
	default:
		return fmt.Errorf("volume %q: reconcile: %w", name, err)
	}
	if _, err := m.destroy(ctx, name, lvp, true, log); err != nil {
		return fmt.Errorf("volume %q: reconcile: undoing an interrupted create: %w", name, err)
	}
	log.WithField("had_lv", lvp != nil).Info("undid an interrupted create")
	return m.st.update(func(s *state) { s.Creating = removeSorted(s.Creating, name) })
}

// reconcileVolume applies rules 3-5 to one LV and reports whether it is a
// complete volume afterwards.
func (m *Manager) reconcileVolume(ctx context.Context, name string, lv lvm.LV) (ready bool, err error) {
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "reconcile")
	wrap := func(err error) error { return fmt.Errorf("volume %q: reconcile: %w", name, err) }
	// Rule 3: an LV without TagReady is a half-made volume (its create
	// never finished, and under the volume lock none is running): undo it.
	if !hasTag(lv.Tags, TagReady) {
		if _, err := m.destroy(ctx, name, &lv, true, log); err != nil {
			return false, wrap(fmt.Errorf("removing a half-made volume: %w", err))
		}
		log.Info("removed a half-made volume (LV, header and KMIP key)")
		return false, nil
	}

	// Rule 4: recorded IDs stand only if the volume really is mounted.
	if ids := m.st.ids(name); len(ids) > 0 {
		ok, other, err := m.mountedHere(name)
		if err != nil {
			return true, wrap(err)
		}
		if ok {
			log.WithField("mount_ids", len(ids)).Debug("mounted as recorded")
			return true, nil
		}
		if err := m.st.update(func(s *state) { delete(s.Mounts, name) }); err != nil {
			return true, wrap(err)
		}
		log.WithFields(logrus.Fields{"mount_ids": len(ids), "mounted": other}).
			Warn("dropped stale mount IDs: the volume was not mounted (an interrupted unmount, or an unmount from outside)")
	}

	// Rule 5: with no IDs, nothing may be up.
	target := m.mountpoint(name)
	if src, err := m.fs.MountedDevice(target); err != nil {
		return true, wrap(err)
	} else if src != "" {
		if err := m.fs.Unmount(ctx, target); err != nil {
			return true, wrap(fmt.Errorf("unmounting stale mount %s: %w", target, err))
		}
		log.WithFields(logrus.Fields{"target": target, "source": src}).Info("unmounted a stale mount")
	}
	if !lv.Active {
		removeMountpoint(target, log)
		return true, nil
	}
	if open, err := m.crypt.IsOpen(ctx, mappingName(name)); err != nil {
		return true, wrap(err)
	} else if open {
		if err := m.crypt.Close(ctx, mappingName(name)); err != nil {
			return true, wrap(fmt.Errorf("closing stale mapping: %w", err))
		}
		log.WithField("mapping", mappingName(name)).Info("closed a stale mapping")
	}
	if err := m.lvm.Deactivate(ctx, lvName(name)); err != nil {
		return true, wrap(fmt.Errorf("deactivating stale active LV: %w", err))
	}
	log.WithField("lv", lv.Name).Info("deactivated a stale active LV")
	removeMountpoint(target, log)
	return true, nil
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
		if !e.IsDir() || exists[name] || ValidateName(name) != nil {
			continue
		}
		if slices.Contains(m.st.snapshot().Creating, name) {
			continue
		}
		unlock := m.lock(name)
		log := m.logFor(name, "reconcile")
		target := m.mountpoint(name)
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
			if err := m.crypt.Close(ctx, mappingName(name)); err != nil {
				errs = append(errs, fmt.Errorf("volume %q: reconcile: closing mapping: %w", name, err))
			} else {
				log.WithField("mapping", mappingName(name)).Info("closed a mapping of a volume that does not exist")
			}
		}
		removeMountpoint(target, log)
		unlock()
	}
	return errs
}
