package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
)

// Mount makes the volume available to the container with mount ID id and
// returns its mountpoint. The first ID brings the volume up (activate, KMIP
// Get, header check, open, mount); later IDs share it. Every call, repeated
// IDs included, proves the mountpoint is the decrypted filesystem before
// returning it: a path that is not would let a container write plaintext to
// the host disk. The ID is persisted before success is returned.
func (m *Manager) Mount(ctx context.Context, name, id string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("volume %q: mount request without an ID", name)
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "mount").WithField("id", id)

	lv, err := m.ourLV(ctx, name)
	if err != nil {
		return "", err
	}
	brought, err := m.ensureMounted(ctx, name, lv, log)
	if err != nil {
		return "", err
	}
	if err := m.st.update(func(s *state) { s.addMount(name, id) }); err != nil {
		if brought {
			// Unrecorded, this mount would never be unmounted.
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			if terr := m.teardown(cctx, name, log); terr != nil {
				log.WithError(terr).Error("could not undo a mount whose ID could not be recorded")
			}
		}
		return "", fmt.Errorf("volume %q: recording mount ID: %w", name, err)
	}
	log.WithField("mount_ids", len(m.st.ids(name))).Info("mounted")
	return m.mountpoint(name), nil
}

// ensureMounted returns nil only when the mountpoint is verified to be the
// volume's decrypted filesystem. brought says whether this call mounted it.
func (m *Manager) ensureMounted(ctx context.Context, name string, lv lvm.LV, log logrus.FieldLogger) (brought bool, err error) {
	ok, other, err := m.mountedHere(name)
	if err != nil {
		return false, err
	}
	if ok {
		return false, nil
	}
	if other != "" {
		return false, fmt.Errorf("volume %q: %s is mounted at %s instead of the volume; refusing to hand it out", name, other, m.mountpoint(name))
	}
	if ids := m.st.ids(name); len(ids) > 0 {
		// Someone unmounted it behind our back; the containers holding
		// these IDs get it back.
		log.WithField("mount_ids", len(ids)).Warn("volume has mount IDs but is not mounted; mounting it again")
	}
	return true, m.bringUp(ctx, name, lv, log)
}

// bringUp activates, unlocks and mounts the volume, then verifies the mount.
// On failure it undoes its steps in reverse.
func (m *Manager) bringUp(ctx context.Context, name string, lv lvm.LV, log logrus.FieldLogger) (err error) {
	target := m.mountpoint(name)
	mapping := mappingName(name)
	var undo []undoStep
	step := ""
	defer func() {
		if err == nil {
			return
		}
		err = fmt.Errorf("volume %q: mount failed at %s: %w", name, step, err)
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i].fn(cctx); uerr != nil {
				log.WithError(uerr).WithField("undo", undo[i].what).Error("undo of a failed mount failed")
			}
		}
	}()

	step = "checking for a stale mapping"
	open, err := m.crypt.IsOpen(ctx, mapping)
	if err != nil {
		return err
	}
	if open {
		// Left by an interrupted operation. Closing it means the header
		// and key are checked again below rather than trusted.
		log.Warn("closing a stale mapping before mounting")
		if err := m.crypt.Close(ctx, mapping); err != nil {
			return err
		}
	}

	step = "LV activation"
	undo = append(undo, undoStep{"deactivate LV", func(ctx context.Context) error {
		return m.lvm.Deactivate(ctx, lvName(name))
	}})
	if err := m.lvm.Activate(ctx, lvName(name)); err != nil {
		return err
	}
	dev := m.devPath(lv)

	step = "LUKS header check"
	h, err := m.crypt.Inspect(ctx, dev)
	if err != nil {
		return err
	}
	keyID, err := checkHeader(h, name, tagValue(lv.Tags, tagKeyPrefix))
	if err != nil {
		return err
	}
	fstype := tagValue(lv.Tags, tagFSPrefix)
	if _, ok := minSize[fstype]; !ok {
		return fmt.Errorf("LV tag %q names no supported filesystem", tagFSPrefix+fstype)
	}

	step = "KMIP key fetch"
	key, err := m.keys.Get(ctx, keyID)
	if err != nil {
		return err
	}
	defer key.Wipe()

	step = "cryptsetup open"
	undo = append(undo, undoStep{"close mapping", func(ctx context.Context) error {
		return m.crypt.Close(ctx, mapping)
	}})
	if err := m.crypt.Open(ctx, dev, mapping, key.Bytes(), luks.OpenOptions{NoWorkqueue: m.cfg.NoWorkqueue}); err != nil {
		return err
	}
	key.Wipe()

	step = "creating the mountpoint"
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	step = "mount"
	undo = append(undo, undoStep{"unmount", func(ctx context.Context) error {
		src, err := m.fs.MountedDevice(target)
		if err != nil || src == "" {
			return err
		}
		return m.fs.Unmount(ctx, target)
	}})
	if err := m.fs.Mount(ctx, mapperPath(name), target, fstype); err != nil {
		return err
	}

	step = "verifying the mount"
	ok, other, err := m.mountedHere(name)
	if err != nil {
		return err
	}
	if !ok {
		if other == "" {
			other = "nothing"
		}
		return fmt.Errorf("%s is mounted at %s, not %s", other, target, mapperPath(name))
	}
	log.WithField("target", target).Debug("volume brought up")
	return nil
}

// Unmount releases mount ID id. When no ID remains the volume is unmounted,
// its mapping closed and its LV deactivated. An unknown ID is harmless. The
// ID is dropped (and persisted) before the teardown: if the teardown fails,
// nothing holds the volume any more, so Remove and reconciliation may finish
// the job, while the mount itself stays verified for any later Mount.
func (m *Manager) Unmount(ctx context.Context, name, id string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "unmount").WithField("id", id)

	ids := m.st.ids(name)
	if !slices.Contains(ids, id) {
		log.Debug("unmount of an unknown mount ID ignored")
		return nil
	}
	if err := m.st.update(func(s *state) { s.dropMount(name, id) }); err != nil {
		return fmt.Errorf("volume %q: recording unmount: %w", name, err)
	}
	if len(ids) > 1 {
		log.WithField("mount_ids", len(ids)-1).Info("mount ID released; volume stays mounted")
		return nil
	}
	if err := m.teardown(ctx, name, log); err != nil {
		return fmt.Errorf("volume %q: unmount: %w", name, err)
	}
	log.Info("volume unmounted, closed and deactivated")
	return nil
}

// Remove destroys the volume: LUKS keyslots erased, LV removed, KMIP key
// revoked and destroyed. It is refused while any mount ID holds the volume.
// If the LV is already gone (an interrupted remove), the key is still
// located and destroyed. It fails with ErrNotFound only when neither an LV
// nor a key exists.
func (m *Manager) Remove(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "remove")

	if ids := m.st.ids(name); len(ids) > 0 {
		return fmt.Errorf("volume %q: %w by %d container(s); stop them before removing it", name, ErrInUse, len(ids))
	}
	lv, err := m.lvm.LV(ctx, lvName(name))
	switch {
	case errors.Is(err, lvm.ErrNotFound):
		ids, err := m.keys.Locate(ctx, m.keyName(name))
		if err != nil {
			return fmt.Errorf("volume %q: LV is gone; locating its KMIP key: %w", name, err)
		}
		if len(ids) == 0 {
			return fmt.Errorf("volume %q: %w", name, ErrNotFound)
		}
		for _, id := range ids {
			if err := m.keys.Destroy(ctx, id); err != nil {
				return fmt.Errorf("volume %q: LV is gone; destroying its KMIP key %q: %w", name, id, err)
			}
		}
		log.WithField("keys", len(ids)).Info("LV was already gone; its KMIP key is destroyed")
		return m.clearJournal(name, log)
	case err != nil:
		return fmt.Errorf("volume %q: %w", name, err)
	case !hasTag(lv.Tags, TagOurs):
		return fmt.Errorf("volume %q: LV %s/%s is not a cryptvol volume (no %q tag); not touching it", name, m.cfg.VG, lv.Name, TagOurs)
	}

	// Journaled so that a restarted plugin finishes a remove a crash
	// interrupted: after the keyslots are erased the volume is useless.
	if err := m.st.update(func(s *state) { s.Removing = addSorted(s.Removing, name) }); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	// A half-made volume may have duplicate keys from a retried KMIP create.
	erased, err := m.destroy(ctx, name, &lv, !hasTag(lv.Tags, TagReady), log)
	if err != nil {
		if !erased {
			// The volume is intact and usable: a later start must not
			// finish a remove that was answered with an error.
			if jerr := m.st.update(func(s *state) { s.Removing = removeSorted(s.Removing, name) }); jerr != nil {
				log.WithError(jerr).Warn("could not clear the journal entry of a failed remove")
			}
		}
		return fmt.Errorf("volume %q: remove: %w", name, err)
	}
	log.Info("volume removed: keyslots erased, LV removed, KMIP key destroyed")
	return m.clearJournal(name, log)
}

func (m *Manager) clearJournal(name string, log logrus.FieldLogger) error {
	err := m.st.update(func(s *state) {
		s.Removing = removeSorted(s.Removing, name)
		s.Creating = removeSorted(s.Creating, name)
		delete(s.Mounts, name)
	})
	if err != nil {
		// The work is done; a stale journal entry only makes the next
		// start try again and find nothing.
		log.WithError(err).Warn("could not clear the journal entry")
	}
	return nil
}

// destroy takes a volume apart: teardown, erase keyslots, remove the LV,
// destroy the key. The key id comes from the LUKS token, else the LV tag,
// else (or always, with locateAlways) from a KMIP Locate by name. Every
// step tolerates having been done already, so destroy can be repeated
// after a crash at any point. erased reports whether the keyslots are gone
// (from this call), after which the volume's data is unreachable.
func (m *Manager) destroy(ctx context.Context, name string, lv *lvm.LV, locateAlways bool, log logrus.FieldLogger) (erased bool, err error) {
	if err := m.teardownMounted(ctx, name, true, log); err != nil {
		return false, err
	}
	var ids []string
	if lv != nil {
		if err := m.lvm.Activate(ctx, lvName(name)); err != nil {
			return false, fmt.Errorf("activating LV %s to erase its keyslots: %w", lvName(name), err)
		}
		dev := m.devPath(*lv)
		h, err := m.crypt.Inspect(ctx, dev)
		switch {
		case err == nil:
			if h.Token != nil {
				ids = appendUnique(ids, h.Token.KeyID)
			}
			if err := m.crypt.Erase(ctx, dev); err != nil {
				return false, fmt.Errorf("erasing LUKS keyslots: %w", err)
			}
			erased = true
			log.Debug("LUKS keyslots erased")
		case errors.Is(err, luks.ErrNotLUKS):
			log.Debug("LV has no LUKS header")
		default:
			return false, fmt.Errorf("reading LUKS header: %w", err)
		}
		ids = appendUnique(ids, tagValue(lv.Tags, tagKeyPrefix))
		if err := m.lvm.Deactivate(ctx, lvName(name)); err != nil && !errors.Is(err, lvm.ErrNotFound) {
			return erased, fmt.Errorf("deactivating LV %s: %w", lvName(name), err)
		}
		if err := m.lvm.RemoveLV(ctx, lvName(name)); err != nil && !errors.Is(err, lvm.ErrNotFound) {
			return erased, fmt.Errorf("removing LV %s: %w", lvName(name), err)
		}
	}
	if len(ids) == 0 || locateAlways {
		if err := m.destroyKeysNamed(ctx, m.keyName(name), ids); err != nil {
			return erased, err
		}
	} else {
		for _, id := range ids {
			if err := m.keys.Destroy(ctx, id); err != nil {
				return erased, fmt.Errorf("destroying KMIP key %q: %w", id, err)
			}
		}
	}
	removeMountpoint(m.mountpoint(name), log)
	return erased, nil
}
