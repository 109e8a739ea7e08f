package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
	"github.com/cryptvol/cryptvol/volume/options"
)

// Remove destroys the volume: LUKS header erased, LV removed, KMIP key
// revoked and destroyed; with Config.RemoveGrace set, a complete volume
// goes to the trash instead (trash.go). It is refused while a container holds the volume.
// Mount IDs that may be stale (see sweep.go) are checked against the kernel
// first. The exact objects (LV UUID, key ids) are journaled before anything
// is destroyed, so a remove that fails half-way is finished later (at the
// next sweep, start, or Create of the name) without ever touching a later
// volume of the same name.
func (m *Manager) Remove(ctx context.Context, name string) (err error) {
	defer m.recordOp("volume.remove", name, "", time.Now(), &err)
	if err := options.ValidateName(name); err != nil {
		return ofKind(ErrInvalid, err)
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "remove")

	if ids := m.st.IDs(name); len(ids) > 0 {
		inUse := fmt.Errorf("volume %q: %w by %d container(s); stop them before removing it", name, ErrInUse, len(ids))
		if !m.sw.suspect(name, ids) {
			return inUse
		}
		held, err := m.release(ctx, name, log)
		switch {
		case err != nil:
			return fmt.Errorf("%w (checking whether they still hold it failed: %w)", inUse, err)
		case held:
			return inUse
		}
		if err := m.dropIDs(name); err != nil {
			return fmt.Errorf("volume %q: %w", name, err)
		}
		logStale(log, len(ids), "nothing held the volume (its containers ended while dockerd was not tracking them)")
	}
	done, err := m.takeTurn(ctx)
	if err != nil {
		return fmt.Errorf("volume %q: not removed, nothing was touched: %w", name, err)
	}
	defer done()
	finished, err := m.settleJournal(ctx, name, log)
	if err != nil {
		return err
	}

	lv, err := m.removeTarget(ctx, name)
	switch {
	case errors.Is(err, lvm.ErrNotFound) && finished > 0:
		return nil // a retry of a remove that had failed half-way: now done
	case errors.Is(err, lvm.ErrNotFound):
		return fmt.Errorf("volume %q: %w", name, ErrNotFound)
	case err != nil:
		return fmt.Errorf("volume %q: %w", name, err)
	case !slices.Contains(lv.Tags, TagOurs):
		return fmt.Errorf("volume %q: LV %s/%s is not a cryptvol volume (no %q tag); not touching it", name, m.cfg.VG, lv.Name, TagOurs)
	case !slices.Contains(lv.Tags, TagReady):
		if err := m.halfMadeElsewhere(name, lv); err != nil {
			return err
		}
	}

	if m.cfg.RemoveGrace > 0 && slices.Contains(lv.Tags, TagReady) {
		return m.removeToTrash(ctx, name, lv, log)
	}

	// The keys to destroy are the ones this LV names, read before the
	// keyslots (and with them nothing) are erased.
	hdr, err := m.readHeader(ctx, name, &lv)
	if err != nil {
		return fmt.Errorf("volume %q: remove: %w", name, err)
	}
	keyIDs := hdr.keyIDs(nil, lv, name)
	// An unsettled key rotation of this LV has one or two keys more; the
	// remove takes them over, with the rotation's entry.
	rots, keyIDs, err := m.rotationKeys(ctx, name, lv, keyIDs)
	if err != nil {
		return fmt.Errorf("volume %q: remove: %w", name, err)
	}
	entry := journal.Entry{Volume: name, LVUUID: lv.UUID, KeyIDs: keyIDs, Tenant: tenantOf(lv)}
	if err := m.st.Update(func(s *journal.State) {
		s.Removing = append(journal.Without(s.Removing, entry), entry)
		for _, r := range rots {
			s.Rotating = journal.WithoutRotation(s.Rotating, r)
		}
	}); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	erased, err := m.destroy(ctx, name, tenantOf(lv), &lv, &hdr, keyIDs, "", log)
	if err != nil {
		if !erased {
			// The volume is intact and usable: nothing may finish a
			// remove that was answered with an error.
			if jerr := m.st.Update(func(s *journal.State) { s.Removing = journal.Without(s.Removing, entry) }); jerr != nil {
				log.WithError(jerr).Warn("could not clear the journal entry of a failed remove")
			}
			return fmt.Errorf("volume %q: remove: %w", name, err)
		}
		return fmt.Errorf("volume %q: remove: %w (the volume's data is already unreadable; the rest is finished in the background)", name, err)
	}
	log.Info("volume removed: LUKS header erased, LV removed, KMIP key destroyed")
	if err := m.st.Update(func(s *journal.State) { s.Removing = journal.Without(s.Removing, entry); s.Forget(name) }); err != nil {
		// The work is done; a stale entry only makes a later sweep find
		// nothing of that LV and destroy already destroyed keys.
		log.WithError(err).Warn("could not clear the journal entry")
	}
	return nil
}

// removeTarget finds the LV Remove works on. A complete volume comes from
// the view (lvview.go), which is as current as an lvs run now would be: an
// unchanged metadata mark means no commit since its listing (one program
// fewer per remove). Its Active flag may be stale (activation is no
// commit), so it is asked of the kernel, and readHeader activates an LV
// that is not. A name the view lacks is asked of lvm, which also sees
// half-made and foreign LVs of that name.
func (m *Manager) removeTarget(ctx context.Context, name string) (lvm.LV, error) {
	if lv, err := m.viewVolume(ctx, name); err == nil {
		lv.Active = m.lvm.Active(lv)
		return lv, nil
	}
	return m.lvm.LV(ctx, lvName(name))
}

// header is what readHeader found on an LV: its LUKS2 header, if it has one.
type header struct {
	luks.Header
	isLUKS bool
}

// readHeader activates the LV unless lv says it is active (and records that
// it now is) and reads its LUKS header.
func (m *Manager) readHeader(ctx context.Context, name string, lv *lvm.LV) (header, error) {
	if !lv.Active {
		if err := m.lvm.Activate(ctx, lvName(name)); err != nil {
			return header{}, fmt.Errorf("activating LV %s to read its LUKS header: %w", lvName(name), m.elsewhere(name, *lv, err))
		}
		lv.Active = true
	}
	h, err := m.crypt.Inspect(ctx, m.devPath(*lv))
	switch {
	case err == nil:
		return header{Header: h, isLUKS: true}, nil
	case errors.Is(err, luks.ErrNotLUKS):
		return header{}, nil
	default:
		return header{}, fmt.Errorf("reading LUKS header: %w", err)
	}
}

// keyIDs adds the key ids the LV names (its LUKS token and its tag) to
// ids. A token that names another volume is a copy of that volume's
// header (a block-level copy or snapshot of its LV), and its key is that
// volume's: it is never destroyed with this one; so is the token of an
// import not yet complete (tagImported), which names the exported volume
// and its key whatever name it is imported under. Likewise an LV with two
// key tags carries one copied from a snapshot's source (a clone cut
// short): neither is trusted, and the clone's own key is found by its
// create's journal instead.
func (h header) keyIDs(ids []string, lv lvm.LV, name string) []string {
	importing := slices.Contains(lv.Tags, tagImported) && !slices.Contains(lv.Tags, TagReady)
	if h.isLUKS && h.Token != nil && h.Token.Volume == name && !importing {
		ids = appendUnique(ids, h.Token.KeyID)
	}
	var tagged []string
	for _, t := range lv.Tags {
		if id, ok := strings.CutPrefix(t, tagKeyPrefix); ok {
			tagged = append(tagged, id)
		}
	}
	if len(tagged) == 1 {
		ids = appendUnique(ids, tagged[0])
	}
	return ids
}

// settleJournal finishes what earlier creates and removes of name left
// (the caller holds its lock). An unfinished remove whose LV is gone only
// has keys left to destroy, which harms no new volume: it stays for the
// sweeper if KMIP is away. One whose LV is still there blocks. finished
// counts the removes finished here.
func (m *Manager) settleJournal(ctx context.Context, name string, log logrus.FieldLogger) (finished int, err error) {
	snap := m.st.Snapshot()
	for _, e := range journal.EntriesOf(snap.Creating, name) {
		if err := m.undoCreate(ctx, e, log); err != nil {
			return 0, fmt.Errorf("volume %q: cleaning up an interrupted create: %w", name, err)
		}
	}
	for _, e := range journal.EntriesOf(snap.Removing, name) {
		err := m.finishRemove(ctx, e, log)
		if err == nil {
			finished++
			continue
		}
		lv, lerr := m.lvm.LV(ctx, lvName(name))
		if lerr == nil && lv.UUID == e.LVUUID {
			return finished, fmt.Errorf("volume %q: %w: %w", name, errStillRemoving, err)
		}
		log.WithError(err).Warn("an earlier remove of this name still has KMIP keys to destroy; retrying in the background")
	}
	return finished, nil
}

// finishRemove finishes one journaled remove (the caller holds the volume
// lock): the LV it names, if it is still there, and the keys it names.
func (m *Manager) finishRemove(ctx context.Context, e journal.Entry, log logrus.FieldLogger) error {
	drop := func() error {
		return m.st.Update(func(s *journal.State) { s.Removing = journal.Without(s.Removing, e) })
	}
	lv, err := m.lvm.LV(ctx, lvName(e.Volume))
	var lvp *lvm.LV
	switch {
	case err == nil && !e.Legacy && lv.UUID == e.LVUUID:
		lvp = &lv
	case err == nil:
		// Another LV of that name: a later volume, or (legacy entry) one
		// that cannot be told from the one being removed. Not touched.
		if e.Legacy {
			log.WithField("lv", lv.Name).Warn("an older cryptvol's remove journal names only this volume; its LV is kept (run docker volume rm again if it should go)")
			return drop()
		}
	case errors.Is(err, lvm.ErrNotFound):
		if e.Legacy {
			log.WithField("kmip_key_name", m.legacyKeyName(e.Volume)).Warn("an older cryptvol's remove journal names only this volume; its LV is gone and keys are never destroyed by name alone: check the KMIP server for keys of this name")
			return drop()
		}
	default:
		return err
	}
	if _, err := m.destroy(ctx, e.Volume, e.Tenant, lvp, nil, e.KeyIDs, "", log); err != nil {
		return fmt.Errorf("finishing an interrupted remove: %w", err)
	}
	log.Info("finished an interrupted remove")
	return drop()
}

// retryRemove is the sweeper's retry of a journaled remove.
func (m *Manager) retryRemove(ctx context.Context, e journal.Entry) error {
	unlock := m.lock(e.Volume)
	defer unlock()
	if !slices.ContainsFunc(m.st.Snapshot().Removing, func(x journal.Entry) bool {
		return x.Volume == e.Volume && x.LVUUID == e.LVUUID && x.Legacy == e.Legacy
	}) {
		return nil
	}
	return m.finishRemove(ctx, e, m.logFor(e.Volume, "sweep"))
}

// destroy takes a volume apart: teardown, erase keyslots, then remove the
// LV and destroy the keys side by side. The keys destroyed are keyIDs, the LV's own (token, tag),
// and, for an interrupted create, those Located under that create's unique
// keyName: never keys found by a name another volume could have. hdr is
// the LV's header when the caller has just read it (readHeader), nil to
// read it here. Every step tolerates having been done already, so destroy
// can be repeated after a crash at any point. erased reports whether the
// keyslots are gone (from this call), after which the volume's data is
// unreachable.
func (m *Manager) destroy(ctx context.Context, name, tenant string, lv *lvm.LV, hdr *header, keyIDs []string, keyName string, log logrus.FieldLogger) (erased bool, err error) {
	ids := slices.Clone(keyIDs)
	if lv == nil {
		return false, m.destroyKeys(ctx, name, tenant, keyName, ids)
	}
	if err := m.teardownMounted(ctx, name, true, log); err != nil {
		return false, err
	}
	if hdr == nil {
		h, err := m.readHeader(ctx, name, lv)
		if err != nil {
			return false, err
		}
		hdr = &h
	}
	ids = hdr.keyIDs(ids, *lv, name)
	var keys <-chan error
	if hdr.isLUKS {
		if err := m.crypt.Erase(ctx, m.devPath(*lv)); err != nil {
			return false, fmt.Errorf("erasing LUKS keyslots: %w", err)
		}
		erased = true
		log.Debug("LUKS header erased")
		// The data is unreadable now, and the journal entry finishes
		// whatever fails from here: the keys go while lvremove
		// runs, so that a remove does not wait for lvremove and
		// then for KMIP in turn.
		keys = m.goDestroyKeys(ctx, name, tenant, keyName, ids)
	} else {
		log.Debug("LV has no LUKS header")
	}
	// lvremove deactivates the LV itself (nothing has it open: the
	// mapping is closed above).
	if err := m.lvm.RemoveLV(ctx, lvName(name)); err != nil && !errors.Is(err, lvm.ErrNotFound) {
		err = fmt.Errorf("removing LV %s: %w", lvName(name), err)
		if keys != nil {
			err = errors.Join(err, <-keys)
		}
		return erased, err
	}
	removeMountpoint(m.mountpoint(name), log)
	if keys != nil {
		return erased, <-keys
	}
	// No header was erased: the keys go only once the LV is gone, so that
	// a failed lvremove leaves a volume whose keys still open it.
	return erased, m.destroyKeys(ctx, name, tenant, keyName, ids)
}

// destroyKeys destroys the key ids, or, with keyName, the keys found under
// that name besides them (destroyKeysNamed).
func (m *Manager) destroyKeys(ctx context.Context, name, tenant, keyName string, ids []string) error {
	if keyName != "" {
		return m.destroyKeysNamed(ctx, name, tenant, keyName, ids)
	}
	for _, id := range ids {
		if err := m.keyDestroy(ctx, name, tenant, id); err != nil {
			return fmt.Errorf("destroying KMIP key %q: %w", id, err)
		}
	}
	return nil
}

// goDestroyKeys runs destroyKeys beside the caller, who must receive its
// one result; a panic there comes back as an error, not a dead plugin.
func (m *Manager) goDestroyKeys(ctx context.Context, name, tenant, keyName string, ids []string) <-chan error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("destroying KMIP keys: panic: %v", r)
			}
		}()
		done <- m.destroyKeys(ctx, name, tenant, keyName, ids)
	}()
	return done
}
