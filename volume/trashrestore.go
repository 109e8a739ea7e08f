package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
	"github.com/cryptvol/cryptvol/volume/options"
)

// Restored is what Restore did.
type Restored struct {
	ID       string `json:"id"`
	Volume   string `json:"volume"`
	OldKeyID string `json:"old_key_id"`
	NewKeyID string `json:"new_key_id"`
}

// Restore brings a volume back from the trash (trash.go) as as, or under
// its own name when as is "". what is a trash id, or a volume name with
// exactly one entry in the trash. Its KMIP key is Deactivated and can never
// be Active again, so the volume moves onto a new key named for the name
// it comes back under, as a rotation does (rotate.go): the restore is
// journaled; the new key is made; the old one is fetched
// (GetDeactivated: still bound by its name to the volume it was made for,
// binding.go); a keyslot is added for the new key; the token names the new
// key and the name; the key tag is swapped and the old keyslot killed; the
// LV is renamed back, which makes it a volume again; the old key is
// destroyed. Until the keyslot is in the header a failure or crash undoes
// the restore (the new key destroyed, the trash entry as it was); after,
// it is finished (settleRestore). The data is never touched.
func (m *Manager) Restore(ctx context.Context, what, as string) (r Restored, err error) {
	start := time.Now()
	defer func() {
		m.record(audit.Event{Op: "volume.restore", Volume: r.Volume, KeyID: r.NewKeyID, Detail: fmt.Sprintf("from the trash as %s; replaces key %s", r.ID, r.OldKeyID), Err: err, Took: time.Since(start)})
	}()
	id, err := m.trashEntry(ctx, what)
	if err != nil {
		return r, err
	}
	name, _, _ := parseTrashID(id)
	target := as
	if target == "" {
		target = name
	}
	if err := options.ValidateName(target); err != nil {
		return r, err
	}
	r = Restored{ID: id, Volume: target}
	unlock := m.lock(id)
	defer unlock()
	unlockTarget := m.lock(target)
	defer unlockTarget()
	log := m.logFor(target, "restore").WithField("trash_id", id)

	for _, e := range m.st.Snapshot().Restoring {
		if e.Volume == id {
			if err := m.settleRestore(ctx, e, log); err != nil {
				return r, fmt.Errorf("trash entry %s: an earlier restore of it is not settled: %w", id, err)
			}
		}
	}
	if _, err := m.settleJournal(ctx, target, log); err != nil {
		return r, err
	}
	switch _, err := m.lvm.LV(ctx, lvName(target)); {
	case err == nil:
		return r, fmt.Errorf("volume %q exists: restore trash entry %s under another name (cryptvol restore %s NEWNAME)", target, id, id)
	case !errors.Is(err, lvm.ErrNotFound):
		return r, fmt.Errorf("volume %q: %w", target, err)
	}
	lv, err := m.lvm.LV(ctx, lvName(id))
	if errors.Is(err, lvm.ErrNotFound) {
		return r, fmt.Errorf("trash entry %s: %w (purged, or restored meanwhile)", id, ErrNotFound)
	} else if err != nil {
		return r, fmt.Errorf("trash entry %s: %w", id, err)
	}
	if _, ok := m.trashedOf(lv); !ok {
		return r, fmt.Errorf("trash entry %s: LV %s is not a volume cryptvol moved to the trash; not touching it", id, lv.Name)
	}
	if !lv.Active {
		if err := m.lvm.Activate(ctx, lvName(id)); err != nil {
			return r, fmt.Errorf("trash entry %s: activating its LV: %w", id, m.elsewhere(id, lv, err))
		}
		lv.Active = true
	}
	dev := m.devPath(lv)
	h, err := m.crypt.Inspect(ctx, dev)
	if err != nil {
		return r, fmt.Errorf("trash entry %s: %w", id, err)
	}
	if r.OldKeyID, err = h.Check(name, tagValue(lv.Tags, tagKeyPrefix)); err != nil {
		return r, fmt.Errorf("trash entry %s: %w", id, err)
	}
	slot, err := h.FreeSlot()
	if err != nil {
		return r, fmt.Errorf("trash entry %s: %w", id, err)
	}
	vgUUID, err := m.vgUUID(ctx)
	if err != nil {
		return r, err
	}
	keyName, err := newKeyName(vgUUID, target)
	if err != nil {
		return r, err
	}
	group, err := m.keyGroupFor(target, lv)
	if err != nil {
		return r, err
	}
	e := journal.Restore{Rotation: journal.Rotation{Volume: id, LVUUID: lv.UUID, Tenant: tenantOf(lv), OldKeyID: r.OldKeyID, NewKeyName: keyName, NewSlot: slot}, Target: target}
	if err := m.st.Update(func(s *journal.State) { s.Restoring = append(s.Restoring, e) }); err != nil {
		return r, err
	}
	if err := m.addRestoreKey(ctx, &e, name, group, dev); err != nil {
		cctx, cancel := command.CleanupContext(ctx)
		defer cancel()
		if serr := m.settleRestore(cctx, e, log); serr != nil {
			return r, fmt.Errorf("trash entry %s: restore failed: %w (settling it failed too; it is retried at the next restore or start: %v)", id, err, serr)
		}
		return r, fmt.Errorf("trash entry %s: restore failed and was undone; it is still in the trash: %w", id, err)
	}
	if err := m.finishRestore(ctx, e, lv, h, log); err != nil {
		return r, fmt.Errorf("trash entry %s: its new key %q opens it, but finishing the restore failed (retried at the next restore or start): %w", id, e.NewKeyID, err)
	}
	r.NewKeyID = e.NewKeyID
	log.WithFields(logrus.Fields{"old_key_id": r.OldKeyID, "new_key_id": r.NewKeyID}).Info("restored a volume from the trash under a new KMIP key")
	return r, nil
}

// trashEntry resolves what Restore was given to one trash id.
func (m *Manager) trashEntry(ctx context.Context, what string) (string, error) {
	if _, _, ok := parseTrashID(what); ok {
		return what, nil
	}
	if err := options.ValidateName(what); err != nil {
		return "", fmt.Errorf("%q is neither a trash id (NAME+MILLIS, as cryptvol trash lists them) nor a volume name: %w", what, err)
	}
	list, err := m.Trash(ctx)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, t := range list {
		if t.Volume == what {
			ids = append(ids, t.ID)
		}
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("volume %q: %w in the trash", what, ErrNotFound)
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("volume %q is in the trash %d times; restore one by its id: %s", what, len(ids), strings.Join(ids, ", "))
}

// addRestoreKey makes the new key, journals its id, and adds its keyslot
// with the old key, fetched though Deactivated. name is the volume the old
// key was made for.
func (m *Manager) addRestoreKey(ctx context.Context, e *journal.Restore, name, group, dev string) error {
	newID, newKey, err := m.keyCreate(ctx, e.Target, e.Tenant, e.NewKeyName, group)
	if err != nil {
		return err
	}
	defer newKey.Wipe()
	old := *e
	e.NewKeyID = newID
	if err := m.st.Update(func(s *journal.State) { s.Restoring = append(journal.WithoutRestore(s.Restoring, old), *e) }); err != nil {
		return err
	}
	oldKey, err := m.keyGetDeactivated(ctx, name, e.Tenant, e.OldKeyID)
	if err != nil {
		return err
	}
	defer oldKey.Wipe()
	return m.crypt.AddKey(ctx, dev, oldKey.Bytes(), newKey.Bytes(), e.NewSlot)
}

// finishRestore makes the new key the volume's only one and the LV a
// volume again, given lv and its header h as read before; each step checks
// whether it was done already. Then the old key is destroyed and the
// journal entries of the trash id dropped.
func (m *Manager) finishRestore(ctx context.Context, e journal.Restore, lv lvm.LV, h luks.Header, log logrus.FieldLogger) error {
	dev := m.devPath(lv)
	if h.Token == nil || h.Token.KeyID != e.NewKeyID || h.Token.Volume != e.Target {
		if err := m.crypt.SetToken(ctx, dev, h.TokenID, luks.Token{KeyID: e.NewKeyID, Volume: e.Target}, e.NewSlot); err != nil {
			return err
		}
	}
	// As finishRotation: the key tags other than the new key's go, and
	// the new key's tag and age come, in one commit.
	var del, add []string
	for _, t := range lv.Tags {
		if strings.HasPrefix(t, tagKeyPrefix) && t != tagKeyPrefix+e.NewKeyID {
			del = append(del, t)
		}
	}
	if t := tagKeyPrefix + e.NewKeyID; keyIDTagRE.MatchString(e.NewKeyID) && !slices.Contains(lv.Tags, t) {
		add = append(add, t, tagKeyTimePrefix+strconv.FormatInt(m.now().Unix(), 10))
		for _, t := range lv.Tags {
			if strings.HasPrefix(t, tagKeyTimePrefix) {
				del = append(del, t)
			}
		}
	}
	if err := m.lvm.ReplaceTags(ctx, lv.Name, del, add); err != nil {
		return err
	}
	for _, s := range h.SlotIDs {
		if s != e.NewSlot {
			if err := m.crypt.KillSlot(ctx, dev, s); err != nil {
				return err
			}
		}
	}
	if lv.Name != lvName(e.Target) {
		if err := m.lvm.Rename(ctx, lv.Name, lvName(e.Target)); err != nil {
			return fmt.Errorf("renaming the LV back to %s: %w", lvName(e.Target), err)
		}
	}
	if !m.keepsActive() {
		if err := m.lvm.Deactivate(ctx, lvName(e.Target)); err != nil {
			log.WithError(err).Warn("could not deactivate the restored volume's LV; the sweeper retries")
			m.sw.linger(e.Target, err)
		}
	}
	if err := m.keyDestroy(ctx, e.Volume, e.Tenant, e.OldKeyID); err != nil {
		return fmt.Errorf("destroying the old KMIP key %q: %w", e.OldKeyID, err)
	}
	return m.st.Update(func(s *journal.State) {
		s.Restoring = journal.WithoutRestore(s.Restoring, e)
		s.Trashing = slices.DeleteFunc(s.Trashing, func(x journal.Entry) bool { return x.Volume == e.Volume })
	})
}

// settleRestore finishes or undoes one journaled restore by what the
// header shows, as settleRotation does a rotation: the LV is looked for
// under the trash id and under the target name, by UUID. An entry no
// longer journaled was settled meanwhile and is left alone. The caller
// holds the trash id's lock.
func (m *Manager) settleRestore(ctx context.Context, e journal.Restore, log logrus.FieldLogger) error {
	if !slices.ContainsFunc(m.st.Snapshot().Restoring, func(x journal.Restore) bool { return x.NewKeyName == e.NewKeyName }) {
		return nil
	}
	undo := func(why string) error {
		if err := m.destroyKeysNamed(ctx, e.Target, e.Tenant, e.NewKeyName, []string{e.NewKeyID}); err != nil {
			return err
		}
		log.WithField("new_key_name", e.NewKeyName).Info("undid an unfinished restore from the trash: " + why)
		return m.st.Update(func(s *journal.State) { s.Restoring = journal.WithoutRestore(s.Restoring, e) })
	}
	var lv lvm.LV
	found := false
	for _, n := range []string{lvName(e.Volume), lvName(e.Target)} {
		l, err := m.lvm.LV(ctx, n)
		switch {
		case err == nil && l.UUID == e.LVUUID:
			lv, found = l, true
		case err != nil && !errors.Is(err, lvm.ErrNotFound):
			return err
		}
		if found {
			break
		}
	}
	if !found {
		return undo("the trash entry is gone")
	}
	if !lv.Active {
		if err := m.lvm.Activate(ctx, lv.Name); err != nil {
			return fmt.Errorf("activating LV %s: %w", lv.Name, err)
		}
		lv.Active = true
	}
	dev := m.devPath(lv)
	h, err := m.crypt.Inspect(ctx, dev)
	if err != nil {
		return err
	}
	finish, why, err := m.keyslotVerdict(ctx, &e.Rotation, e.Target, dev, h)
	if err != nil {
		return fmt.Errorf("%w; the restore is left as it is", err)
	}
	if !finish {
		return undo(why)
	}
	log.WithField("new_key_id", e.NewKeyID).Info("finishing a restore from the trash that was interrupted after its keyslot was added")
	return m.finishRestore(ctx, e, lv, h, log)
}
