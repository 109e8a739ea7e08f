package volume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
	"github.com/cryptvol/cryptvol/volume/options"
)

// The trash: with Config.RemoveGrace set, Remove does not destroy a
// complete volume. It closes it, renames its LV from cv-NAME to
// cv-NAME+MILLIS (the trash id: the name and the remove's time in Unix
// milliseconds), and deactivates its KMIP key. '+' is allowed in LV names
// (lvm(8), VALID NAMES) and never in a volume name (options.ValidateName),
// so Docker never lists it (volumeName), NAME is free for a new volume at
// once, and nothing of the trash can be mistaken for a volume. A
// Deactivated key can no longer become Active (KMIP 1.4 specification,
// 4.19 Activate), so Restore (untrash.go) moves the volume onto a new key.
// Once RemoveGrace has passed since the remove (as configured now, so a
// grace turned off purges at the next sweep), the sweeper purges it as
// Remove would have: journaled, header erased, LV removed, key destroyed.
//
// The rename is the commit point of a remove into the trash: before it the
// volume is intact and the journal entry (State.Trashing) is dropped; after
// it, the entry stays until the key is deactivated, which the sweeper and
// start-up retry while KMIP is away. The trash lives in the volume group,
// so in a shared group every host lists it, restores it and purges it.

const trashSep = "+"

// trashID names the trash entry of volume name removed at at.
func trashID(name string, at time.Time) string {
	return name + trashSep + strconv.FormatInt(at.UnixMilli(), 10)
}

// parseTrashID splits a trash id into the volume's name and the time of its
// remove; ok is false for anything trashID did not make.
func parseTrashID(id string) (name string, at time.Time, ok bool) {
	name, ms, found := strings.Cut(id, trashSep)
	if !found || options.ValidateName(name) != nil || ms == "" || len(ms) > 15 || ms[0] == '0' ||
		strings.Trim(ms, "0123456789") != "" {
		return "", time.Time{}, false
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n <= 0 {
		return "", time.Time{}, false
	}
	return name, time.UnixMilli(n), true
}

// Trashed is one volume in the trash, as `cryptvol trash` lists it.
type Trashed struct {
	ID        string    `json:"id"`
	Volume    string    `json:"volume"`
	RemovedAt time.Time `json:"removed_at"`
	// PurgeAt is when the sweeper crypto-shreds it: RemovedAt plus the
	// grace configured now.
	PurgeAt   time.Time `json:"purge_at"`
	SizeBytes uint64    `json:"size_bytes"`
	KeyID     string    `json:"key_id,omitempty"`
	Tenant    string    `json:"tenant,omitempty"`
	// KeyPending says its key's deactivation has not reached KMIP yet
	// (retried by the sweeper).
	KeyPending bool `json:"key_pending,omitempty"`
}

// trashedOf returns the trash entry an LV is, if it is one: named by
// trashID, with our tag and cryptvol_ready.
func (m *Manager) trashedOf(lv lvm.LV) (Trashed, bool) {
	id, ok := strings.CutPrefix(lv.Name, lvPrefix)
	if !ok || !slices.Contains(lv.Tags, TagOurs) || !slices.Contains(lv.Tags, TagReady) {
		return Trashed{}, false
	}
	name, at, ok := parseTrashID(id)
	if !ok {
		return Trashed{}, false
	}
	return Trashed{ID: id, Volume: name, RemovedAt: at, PurgeAt: at.Add(m.cfg.RemoveGrace), SizeBytes: lv.Size,
		KeyID: tagValue(lv.Tags, tagKeyPrefix), Tenant: tenantOf(lv)}, true
}

// Trash lists the volumes in the trash, oldest remove first, read from the
// group's metadata (no program).
func (m *Manager) Trash(ctx context.Context) ([]Trashed, error) {
	_, lvs, err := m.lvm.MetadataLVs(ctx, TagOurs)
	if err != nil {
		return nil, fmt.Errorf("listing the trash: %w", err)
	}
	pending := map[string]bool{}
	for _, e := range m.st.Snapshot().Trashing {
		pending[e.Volume] = true
	}
	out := []Trashed{}
	for _, lv := range lvs {
		if t, ok := m.trashedOf(lv); ok {
			t.KeyPending = pending[t.ID]
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Trashed) int { return cmp.Or(a.RemovedAt.Compare(b.RemovedAt), strings.Compare(a.ID, b.ID)) })
	return out, nil
}

// removeToTrash is Remove's way with a complete volume under a grace: any
// unsettled key rotation settled first (so that one key opens it), then
// the keys its header and tag name read, then trash.
func (m *Manager) removeToTrash(ctx context.Context, name string, lv lvm.LV, log logrus.FieldLogger) error {
	if len(m.st.Rotations(name)) > 0 {
		if err := m.settleRotations(ctx, name, log); err != nil {
			return fmt.Errorf("volume %q: not removed: an earlier key rotation is not settled: %w", name, err)
		}
		var err error
		if lv, err = m.removeTarget(ctx, name); err != nil {
			return fmt.Errorf("volume %q: %w", name, err)
		}
	}
	hdr, err := m.readHeader(ctx, name, &lv)
	if err != nil {
		return fmt.Errorf("volume %q: remove: %w", name, err)
	}
	keyIDs := hdr.keyIDs(nil, lv, name)
	if !hdr.isLUKS || len(keyIDs) == 0 {
		return fmt.Errorf("volume %q: not removed: it has no LUKS header naming its key, so the trash could not restore it (turn CRYPTVOL_REMOVE_GRACE off to destroy it)", name)
	}
	return m.trash(ctx, name, lv, keyIDs, log)
}

// trash moves the complete volume name, whose LV is lv and whose keys are
// keyIDs, into the trash (see the top of this file). The caller holds the
// volume's lock and has checked that nothing holds it.
func (m *Manager) trash(ctx context.Context, name string, lv lvm.LV, keyIDs []string, log logrus.FieldLogger) error {
	if err := m.teardown(ctx, name, log); err != nil {
		return fmt.Errorf("volume %q: closing it for the trash: %w", name, err)
	}
	at := m.now()
	e := journal.Entry{Volume: trashID(name, at), LVUUID: lv.UUID, KeyIDs: keyIDs, Tenant: tenantOf(lv)}
	if err := m.st.Update(func(s *journal.State) { s.Trashing = append(s.Trashing, e) }); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	if err := m.lvm.Rename(ctx, lvName(name), lvName(e.Volume)); err != nil {
		if jerr := m.st.Update(func(s *journal.State) { s.Trashing = journal.Without(s.Trashing, e) }); jerr != nil {
			log.WithError(jerr).Warn("could not clear the journal entry of a failed remove into the trash")
		}
		return fmt.Errorf("volume %q: not removed, its LV could not be moved to the trash: %w", name, err)
	}
	if err := m.st.Update(func(s *journal.State) { s.Forget(name) }); err != nil {
		log.WithError(err).Warn("could not drop the removed volume's usage figures")
	}
	m.sw.forget(name)
	m.record(audit.Event{Op: "volume.trash", Volume: name, Detail: fmt.Sprintf("kept as %s until %s", e.Volume, at.Add(m.cfg.RemoveGrace).UTC().Format(time.RFC3339))})
	log = log.WithField("trash_id", e.Volume)
	if err := m.settleTrash(ctx, e, log); err != nil {
		log.WithError(err).Warn("volume moved to the trash; deactivating its KMIP key failed and is retried in the background")
		return nil
	}
	log.Info("volume moved to the trash: closed, LV renamed, KMIP key deactivated")
	return nil
}

// settleTrash finishes one journaled remove into the trash: when the LV
// was renamed (it is under the trash id with the entry's UUID) its keys are
// deactivated; when it was not, the remove never took effect. Either way
// the entry is dropped. The caller holds the lock of the trash id or of
// nothing else touching it.
func (m *Manager) settleTrash(ctx context.Context, e journal.Entry, log logrus.FieldLogger) error {
	lv, err := m.lvm.LV(ctx, lvName(e.Volume))
	switch {
	case err == nil && lv.UUID == e.LVUUID:
		for _, id := range e.KeyIDs {
			if err := m.keyDeactivate(ctx, e.Volume, e.Tenant, id); err != nil && !errors.Is(err, keys.ErrNotFound) {
				return fmt.Errorf("deactivating KMIP key %q: %w", id, err)
			}
		}
	case err == nil || errors.Is(err, lvm.ErrNotFound):
		// Never renamed (the volume is still under its name), or since
		// restored or purged: nothing of this entry is left to do.
	default:
		return err
	}
	return m.st.Update(func(s *journal.State) { s.Trashing = journal.Without(s.Trashing, e) })
}

// sweepTrash is the sweeper's part: key deactivations still pending, then
// every entry whose grace has passed purged.
func (m *Manager) sweepTrash(ctx context.Context) {
	for _, e := range m.st.Snapshot().Trashing {
		if err := m.withLock(e.Volume, func(log logrus.FieldLogger) error { return m.settleTrash(ctx, e, log) }); err != nil {
			m.logFor(e.Volume, "sweep").WithError(err).Debug("a trashed volume's KMIP key still cannot be deactivated")
		}
	}
	// With no grace, only the first sweep reads the trash: what a grace
	// since turned off left there is purged, and no sweep after pays for
	// a listing.
	if m.cfg.RemoveGrace <= 0 && m.trashRead.Swap(true) {
		return
	}
	list, err := m.Trash(ctx)
	if err != nil {
		m.log.WithField("op", "sweep").WithError(err).Warn("reading the trash failed")
		return
	}
	for _, t := range list {
		if m.now().Before(t.PurgeAt) {
			continue
		}
		if err := m.purge(ctx, t.ID); err != nil {
			m.logFor(t.ID, "purge").WithError(err).Warn("purging a volume whose grace has passed failed; retried at the next sweep")
		}
	}
}

// purge crypto-shreds the trash entry id as Remove does a volume: the exact
// LV (by UUID) and its keys journaled, header erased, LV removed, keys
// destroyed. An entry a restore is working on is left to it.
func (m *Manager) purge(ctx context.Context, id string) (err error) {
	unlock := m.lock(id)
	defer unlock()
	log := m.logFor(id, "purge")
	if slices.ContainsFunc(m.st.Snapshot().Restoring, func(r journal.Restore) bool { return r.Volume == id }) {
		return nil
	}
	name, _, _ := parseTrashID(id)
	lv, err := m.lvm.LV(ctx, lvName(id))
	switch {
	case errors.Is(err, lvm.ErrNotFound):
		return nil // restored or purged meanwhile
	case err != nil:
		return err
	}
	t, ok := m.trashedOf(lv)
	if !ok || m.now().Before(t.PurgeAt) {
		return nil
	}
	defer m.recordOp("volume.purge", name, "", time.Now(), &err)
	hdr, err := m.readHeader(ctx, id, &lv)
	if err != nil {
		return err
	}
	keyIDs := hdr.keyIDs(nil, lv, name)
	for _, e := range journal.EntriesOf(m.st.Snapshot().Trashing, id) {
		keyIDs = appendUnique(keyIDs, e.KeyIDs...)
	}
	entry := journal.Entry{Volume: id, LVUUID: lv.UUID, KeyIDs: keyIDs, Tenant: tenantOf(lv)}
	if err := m.st.Update(func(s *journal.State) {
		s.Removing = append(journal.Without(s.Removing, entry), entry)
		s.Trashing = slices.DeleteFunc(s.Trashing, func(x journal.Entry) bool { return x.Volume == id })
	}); err != nil {
		return err
	}
	if _, err := m.destroy(ctx, id, entry.Tenant, &lv, &hdr, keyIDs, "", log); err != nil {
		return fmt.Errorf("%w (journaled: the sweeper finishes it)", err)
	}
	log.Info("purged a volume whose grace had passed: LUKS header erased, LV removed, KMIP key destroyed")
	return m.st.Update(func(s *journal.State) { s.Removing = journal.Without(s.Removing, entry) })
}
