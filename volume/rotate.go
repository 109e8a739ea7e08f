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

// Rotation is what Rotate did.
type Rotation struct {
	Volume   string `json:"volume"`
	OldKeyID string `json:"old_key_id"`
	NewKeyID string `json:"new_key_id"`
}

// Rotate replaces the volume's KMIP key, its LUKS passphrase, with a new
// one, whether the volume is mounted or not. The data and its volume key
// stay as they are; a mounted volume's containers see nothing. Steps, each
// journaled or idempotent: the rotation is journaled; a new key
// is made (Create: made and activated) under a name of its own, in the
// KMIP Object Group of the node that made the volume (keygroup.go); the old
// key is fetched; a keyslot is added for the new key (both keys on
// cryptsetup's stdin); the token is pointed at the new key and keyslot;
// the LV's key tag is swapped; the old keyslot is killed; the old key is
// revoked and destroyed; the journal entry is dropped. A crash or failure
// at any point is settled by settleRotation: before the new keyslot exists,
// undone (the new key destroyed); after, finished. Either way exactly one
// key opens the volume afterwards.
func (m *Manager) Rotate(ctx context.Context, name string) (r Rotation, err error) {
	start := time.Now()
	defer func() {
		m.record(audit.Event{Op: "volume.rotate", Volume: name, KeyID: r.NewKeyID, Detail: "replaces key " + r.OldKeyID, Err: err, Took: time.Since(start)})
	}()
	if err := options.ValidateName(name); err != nil {
		return r, err
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "rotate")
	if err := m.settleRotations(ctx, name, log); err != nil {
		return r, fmt.Errorf("volume %q: an earlier rotation is not settled: %w", name, err)
	}
	lv, err := m.completeLV(ctx, name)
	if err != nil {
		return r, err
	}
	dev, restore, err := m.activeFor(ctx, name, lv, log)
	if err != nil {
		return r, err
	}
	defer restore()
	h, oldID, err := m.checkedHeader(ctx, name, lv, dev)
	if err != nil {
		return r, err
	}
	if h.Reencrypting {
		return r, fmt.Errorf("volume %q: a reencryption of its data is not finished; run cryptvol reencrypt first", name)
	}
	slot, err := h.FreeSlot()
	if err != nil {
		return r, fmt.Errorf("volume %q: %w", name, err)
	}
	vg, err := m.lvm.VG(ctx)
	if err != nil {
		return r, fmt.Errorf("volume %q: %w", name, err)
	}
	keyName, err := newKeyName(vg.UUID, name)
	if err != nil {
		return r, fmt.Errorf("volume %q: %w", name, err)
	}
	group, err := m.keyGroupFor(name, lv)
	if err != nil {
		return r, err
	}
	e := journal.Rotation{Volume: name, LVUUID: lv.UUID, Tenant: tenantOf(lv), OldKeyID: oldID, NewKeyName: keyName, NewSlot: slot}
	if err := m.st.Update(func(s *journal.State) { s.Rotating = append(s.Rotating, e) }); err != nil {
		return r, fmt.Errorf("volume %q: %w", name, err)
	}
	r = Rotation{Volume: name, OldKeyID: oldID}
	if err := m.addNewKey(ctx, &e, group, dev, log); err != nil {
		// Settled by what the header shows: a keyslot added before a
		// timeout is finished, else the new key is destroyed.
		cctx, cancel := command.CleanupContext(ctx)
		defer cancel()
		if serr := m.settleRotation(cctx, e, log); serr != nil {
			return r, fmt.Errorf("volume %q: rotation failed: %w (settling it failed too, it is retried at the next rotation, remove or start: %v)", name, err, serr)
		}
		return r, fmt.Errorf("volume %q: rotation failed and was undone; the old key %q still opens it: %w", name, oldID, err)
	}
	if err := m.finishRotation(ctx, e, lv, dev, h, log); err != nil {
		return r, fmt.Errorf("volume %q: the new key %q opens the volume, but finishing the rotation failed (retried at the next rotation, remove or start): %w", name, e.NewKeyID, err)
	}
	r.NewKeyID = e.NewKeyID
	log.WithFields(logrus.Fields{"old_key_id": oldID, "new_key_id": e.NewKeyID}).Info("rotated the volume's KMIP key")
	return r, nil
}

// completeLV asks lvm for a complete volume's LV (an admin request has no
// view to trust: it changes the header).
func (m *Manager) completeLV(ctx context.Context, name string) (lvm.LV, error) {
	lv, err := m.lvm.LV(ctx, lvName(name))
	switch {
	case errors.Is(err, lvm.ErrNotFound):
		return lv, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	case err != nil:
		return lv, fmt.Errorf("volume %q: %w", name, err)
	case !slices.Contains(lv.Tags, TagOurs) || !slices.Contains(lv.Tags, TagReady):
		return lv, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	return lv, nil
}

// checkedHeader reads the header of the active LV and checks it as Mount
// does, returning the key id it names.
func (m *Manager) checkedHeader(ctx context.Context, name string, lv lvm.LV, dev string) (luks.Header, string, error) {
	h, err := m.crypt.Inspect(ctx, dev)
	if err != nil {
		return h, "", fmt.Errorf("volume %q: %w", name, err)
	}
	keyID, err := h.Check(name, tagValue(lv.Tags, tagKeyPrefix))
	if err != nil {
		return h, "", fmt.Errorf("volume %q: %w", name, err)
	}
	return h, keyID, nil
}

// activeFor makes sure the LV is active for header work and returns a
// function that puts it back as it was in a shared group; on a single host
// the LV stays active (keepsActive). The caller holds the volume lock, so
// an inactive LV is not mounted and nothing mounts it meanwhile.
func (m *Manager) activeFor(ctx context.Context, name string, lv lvm.LV, log logrus.FieldLogger) (dev string, restore func(), err error) {
	dev = m.devPath(lv)
	if lv.Active {
		return dev, func() {}, nil
	}
	if err := m.lvm.Activate(ctx, lvName(name)); err != nil {
		return "", nil, fmt.Errorf("volume %q: activating LV for its LUKS header: %w", name, m.elsewhere(name, lv, err))
	}
	if m.keepsActive() {
		return dev, func() {}, nil
	}
	return dev, func() {
		cctx, cancel := command.CleanupContext(ctx)
		defer cancel()
		if err := m.lvm.Deactivate(cctx, lvName(name)); err != nil {
			log.WithError(err).Warn("could not deactivate the LV after its key rotation; the sweeper retries")
			m.sw.linger(name, err)
		}
	}, nil
}

// addNewKey makes the new key in Object Group group (keygroup.go), journals
// its id, and adds its keyslot.
func (m *Manager) addNewKey(ctx context.Context, e *journal.Rotation, group, dev string, log logrus.FieldLogger) error {
	newID, newKey, err := m.keyCreate(ctx, e.Volume, e.Tenant, e.NewKeyName, group)
	if err != nil {
		return err
	}
	defer newKey.Wipe()
	old := *e
	e.NewKeyID = newID
	if err := m.st.Update(func(s *journal.State) { s.Rotating = append(journal.WithoutRotation(s.Rotating, old), *e) }); err != nil {
		return err
	}
	oldKey, err := m.keyGet(ctx, e.Volume, e.Tenant, e.OldKeyID)
	if err != nil {
		return err
	}
	defer oldKey.Wipe()
	return m.crypt.AddKey(ctx, dev, oldKey.Bytes(), newKey.Bytes(), e.NewSlot)
}

// finishRotation makes the new key the volume's only one, given the header
// h read before: token, tag, old keyslots, old key; then drops the entry.
// Each step checks whether it was already done.
func (m *Manager) finishRotation(ctx context.Context, e journal.Rotation, lv lvm.LV, dev string, h luks.Header, log logrus.FieldLogger) error {
	if h.Token == nil || h.Token.KeyID != e.NewKeyID {
		if err := m.crypt.SetToken(ctx, dev, h.TokenID, luks.Token{KeyID: e.NewKeyID, Volume: e.Volume}, e.NewSlot); err != nil {
			return err
		}
	}
	// The key id tag and the key's age (scheduled rotation) change in one
	// commit; the age tag of an earlier rotation goes with the old id.
	var del, add []string
	if t := tagKeyPrefix + e.OldKeyID; slices.Contains(lv.Tags, t) {
		del = append(del, t)
	}
	if t := tagKeyPrefix + e.NewKeyID; keyIDTagRE.MatchString(e.NewKeyID) && !slices.Contains(lv.Tags, t) {
		add = append(add, t)
		for _, t := range lv.Tags {
			if strings.HasPrefix(t, tagKeyTimePrefix) {
				del = append(del, t)
			}
		}
		add = append(add, tagKeyTimePrefix+strconv.FormatInt(m.now().Unix(), 10))
	}
	if err := m.lvm.ReplaceTags(ctx, lvName(e.Volume), del, add); err != nil {
		return err
	}
	for _, s := range h.SlotIDs {
		if s == e.NewSlot {
			continue
		}
		if err := m.crypt.KillSlot(ctx, dev, s); err != nil {
			return err
		}
	}
	if err := m.keyDestroy(ctx, e.Volume, e.Tenant, e.OldKeyID); err != nil {
		return fmt.Errorf("destroying the old KMIP key %q: %w", e.OldKeyID, err)
	}
	return m.st.Update(func(s *journal.State) { s.Rotating = journal.WithoutRotation(s.Rotating, e) })
}

// rotationKeys returns the unsettled rotations of lv and ids with their
// keys added: the old one, and the new one by id or, if its id was never
// learnt, by its unique name.
func (m *Manager) rotationKeys(ctx context.Context, name string, lv lvm.LV, ids []string) ([]journal.Rotation, []string, error) {
	var rots []journal.Rotation
	for _, e := range m.st.Rotations(name) {
		if e.LVUUID != lv.UUID {
			continue
		}
		rots = append(rots, e)
		ids = appendUnique(ids, e.OldKeyID, e.NewKeyID)
		if e.NewKeyID == "" {
			found, err := m.keyLocate(ctx, name, e.Tenant, e.NewKeyName)
			if err != nil {
				return nil, nil, err
			}
			ids = appendUnique(ids, found...)
		}
	}
	return rots, ids, nil
}

// settleRotations settles every journaled rotation of name (the caller
// holds the volume lock).
func (m *Manager) settleRotations(ctx context.Context, name string, log logrus.FieldLogger) error {
	for _, e := range m.st.Rotations(name) {
		if err := m.settleRotation(ctx, e, log); err != nil {
			return err
		}
	}
	return nil
}

// settleRotation finishes or undoes one journaled rotation by what the
// volume's header shows (see Rotate), and drops its entry. The caller holds
// the volume lock. An entry no longer journaled was settled meanwhile (the
// sweeper and start-up take the journal before the lock, and Rotate may
// have finished while they waited): it is left alone, touching neither
// LV nor header.
func (m *Manager) settleRotation(ctx context.Context, e journal.Rotation, log logrus.FieldLogger) error {
	if !slices.ContainsFunc(m.st.Rotations(e.Volume), func(x journal.Rotation) bool { return x.NewKeyName == e.NewKeyName }) {
		return nil
	}
	undo := func(why string) error {
		if err := m.destroyKeysNamed(ctx, e.Volume, e.Tenant, e.NewKeyName, []string{e.NewKeyID}); err != nil {
			return err
		}
		log.WithField("new_key_name", e.NewKeyName).Info("undid an unfinished key rotation: " + why)
		return m.st.Update(func(s *journal.State) { s.Rotating = journal.WithoutRotation(s.Rotating, e) })
	}
	lv, err := m.lvm.LV(ctx, lvName(e.Volume))
	switch {
	case errors.Is(err, lvm.ErrNotFound) || (err == nil && lv.UUID != e.LVUUID):
		return undo("the volume is gone")
	case err != nil:
		return err
	}
	dev, restore, err := m.activeFor(ctx, e.Volume, lv, log)
	if err != nil {
		return err
	}
	defer restore()
	h, err := m.crypt.Inspect(ctx, dev)
	if err != nil {
		return err
	}
	finish, why, err := m.keyslotVerdict(ctx, &e, e.Volume, dev, h)
	if err != nil {
		return fmt.Errorf("%w; the rotation is left as it is", err)
	}
	if !finish {
		return undo(why)
	}
	log.WithField("new_key_id", e.NewKeyID).Info("finishing a key rotation that was interrupted after its keyslot was added")
	return m.finishRotation(ctx, e, lv, dev, h, log)
}

// keyslotVerdict says how a journaled key change (a rotation, or a restore
// from the trash) stands by the header h of dev: finish when its keyslot
// is there and opened by its new key (learnt by its unique name, into e,
// if its id never was), else undo, with why. The new key is fetched bound
// to volume name. The keyslot must be this change's: in a shared group
// another host's rotation may have taken the same number after this one
// stopped before adding it, and finishing would point the volume at a key
// that opens nothing. A key the server no longer serves (say it was
// destroyed meanwhile) is an error: the entry stays for an operator.
func (m *Manager) keyslotVerdict(ctx context.Context, e *journal.Rotation, name, dev string, h luks.Header) (finish bool, why string, err error) {
	if !h.HasSlot(e.NewSlot) {
		return false, "its keyslot was never added", nil
	}
	if e.NewKeyID == "" {
		ids, err := m.keyLocate(ctx, name, e.Tenant, e.NewKeyName)
		if err != nil {
			return false, "", err
		}
		if len(ids) != 1 {
			return false, "", fmt.Errorf("keyslot %d was added, but %d KMIP keys are named %q", e.NewSlot, len(ids), e.NewKeyName)
		}
		e.NewKeyID = ids[0]
	}
	k, err := m.keyGet(ctx, name, e.Tenant, e.NewKeyID)
	if err != nil {
		return false, "", fmt.Errorf("keyslot %d was added for KMIP key %q, which cannot be fetched: %w", e.NewSlot, e.NewKeyID, err)
	}
	opens, err := m.crypt.OpensSlot(ctx, dev, k.Bytes(), e.NewSlot)
	k.Wipe()
	if err != nil {
		return false, "", fmt.Errorf("testing whether KMIP key %q opens keyslot %d: %w", e.NewKeyID, e.NewSlot, err)
	}
	if !opens {
		return false, fmt.Sprintf("keyslot %d is there, but its new key %q does not open it (another rotation, from another host, took that keyslot)", e.NewSlot, e.NewKeyID), nil
	}
	return true, "", nil
}
