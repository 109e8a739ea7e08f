package volume

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
	"github.com/cryptvol/cryptvol/volume/options"
)

// keyIDTagRE limits which KMIP ids are copied into an LV tag; others are
// recorded in the LUKS token only.
var keyIDTagRE = regexp.MustCompile(`^[A-Za-z0-9_+.-]{1,100}$`)

// Create makes the volume: KMIP key, LV, LUKS2 header with our token,
// filesystem; it leaves the mapping closed and the LV inactive. Everything
// is validated before anything is made. Creating an existing volume succeeds
// when the options the caller gave match it, and fails saying what differs.
// A failure at any step (or a panic) undoes the steps before it.
func (m *Manager) Create(ctx context.Context, name string, opts map[string]string) (err error) {
	defer m.recordOp("volume.create", name, "", time.Now(), &err)
	if err := options.ValidateName(name); err != nil {
		return ofKind(ErrInvalid, err)
	}
	o, err := options.Parse(opts, m.defaults())
	if err != nil {
		return ofKind(ErrInvalid, fmt.Errorf("volume %q: %w", name, err))
	}
	// The tenant's identity is checked before anything is made.
	if _, err := m.keysFor(o.Tenant); err != nil {
		return ofKind(ErrInvalid, fmt.Errorf("volume %q: option tenant: %w", name, err))
	}
	if o.From == name {
		return ofKind(ErrInvalid, fmt.Errorf("volume %q: option from names the volume itself", name))
	}
	unlock := m.lockBoth(name, o.From)
	defer unlock()
	log := m.logFor(name, "create")
	// The turn comes before any program runs: 50 creates that each ran
	// lvs before waiting ran 50 lvm processes at once, and under load one
	// vgs then outlasted docker's deadline (turns.go).
	done, err := m.takeTurn(ctx)
	if err != nil {
		return fmt.Errorf("volume %q: not created, nothing was made: %w", name, err)
	}
	defer done()

	// What an earlier create or remove of this name left is finished
	// first (compose removes and creates a name again).
	if _, err := m.settleJournal(ctx, name, log); err != nil {
		return err
	}
	lv, err := m.lookupLV(ctx, name)
	switch {
	case err == nil:
		if !slices.Contains(lv.Tags, TagOurs) {
			return fmt.Errorf("volume %q: LV %s/%s exists but is not a cryptvol volume (it has no %q tag); choose another name", name, m.cfg.VG, lv.Name, TagOurs)
		}
		if slices.Contains(lv.Tags, TagReady) {
			return ofKind(ErrExists, m.compare(ctx, name, lv, o))
		}
		// Half-made with no journal entry (damage from outside): holding
		// the volume's lock, nobody else here is creating it; in shared
		// mode another host may be.
		if err := m.halfMadeElsewhere(name, lv); err != nil {
			return err
		}
		log.Warn("undoing a half-made volume before creating it again")
		if _, err := m.destroy(ctx, name, tenantOf(lv), &lv, nil, nil, "", log); err != nil {
			return fmt.Errorf("volume %q: cleaning up a half-made volume: %w", name, err)
		}
	case errors.Is(err, lvm.ErrNotFound):
	default:
		return fmt.Errorf("volume %q: %w", name, err)
	}
	var src lvm.LV // the clone's source, read under its lock
	if o.From != "" {
		if src, err = m.cloneSource(ctx, name, o.From); err != nil {
			return err
		}
		if src.Pool != m.cfg.ThinPool {
			return fmt.Errorf("volume %q: option from: %q is in thin pool %q, not the plugin's (%q)", name, o.From, src.Pool, m.cfg.ThinPool)
		}
		o.Size, o.Thin, o.FS = src.Size, true, tagValue(src.Tags, tagFSPrefix)
		if err := m.cloneTenant(name, src, &o); err != nil {
			return err
		}
	}
	vg, err := m.checkCapacity(ctx, name, o, log)
	if err != nil {
		return err
	}

	// The journal entry lets a restarted plugin undo a create that a crash
	// interrupted, including a KMIP key made before any LV existed: the key
	// name is unique to this create, so Locate by it finds only this
	// create's key.
	keyName, err := newKeyName(vg.UUID, name)
	if err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	m.noteVGUUID(vg.UUID)
	entry := journal.Entry{Volume: name, KeyName: keyName, Tenant: o.Tenant, Clone: o.From != ""}
	if err := m.st.Update(func(s *journal.State) { s.BeginCreate(entry) }); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	if err := m.create(ctx, name, o, src, keyName, log); err != nil {
		return err
	}
	if err := m.st.Update(func(s *journal.State) { s.Creating = journal.Without(s.Creating, entry) }); err != nil {
		// The volume is complete (it carries TagReady); reconciliation
		// drops a journal entry for a complete volume.
		log.WithError(err).Warn("volume created but its journal entry could not be cleared")
	}
	log.WithFields(logrus.Fields{"size": o.Size, "fs": o.FS, "thin": o.Thin}).Info("volume created")
	return nil
}

// newKeyName names a new volume's KMIP key: the volume group's UUID keeps
// two hosts' groups of the same name apart on a shared KMIP server, and a
// random part keeps each create's key apart from every earlier one of the
// same volume name, so that nothing ever finds another volume's key by name.
func newKeyName(vgUUID, name string) (string, error) {
	if vgUUID == "" {
		return "", errors.New("the volume group reports no UUID")
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", fmt.Errorf("making a key name: %w", err)
	}
	return "cryptvol/" + vgUUID + "/" + name + "/" + hex.EncodeToString(nonce[:]), nil
}

// legacyKeyName is the key name of state file version 1, where key names
// are not unique per create: logged, and a name that binds a key to its
// volume (binding.go), never one to find or destroy keys by.
func (m *Manager) legacyKeyName(name string) string { return "cryptvol/" + m.cfg.VG + "/" + name }

// create runs the steps (a clone's from src); on failure it undoes them in
// reverse. The journal entry is cleared only when the undo completed.
func (m *Manager) create(ctx context.Context, name string, o options.Options, src lvm.LV, keyName string, log logrus.FieldLogger) (err error) {
	rb := &rollback{op: "create", name: name, log: log}
	defer func() {
		err = m.endCreate(ctx, rb, err, recover(), journal.Entry{Volume: name, KeyName: keyName, Tenant: o.Tenant}, false, log)
	}()

	rb.at("KMIP key creation")
	// A KMIP create that timed out may still have made the key; Locate by
	// this create's own name finds it whether or not we learnt its id.
	rb.add("destroy KMIP key", func(ctx context.Context) error { return m.destroyKeysNamed(ctx, name, o.Tenant, keyName, nil) })
	keyID, key, err := m.keyCreate(ctx, name, o.Tenant, keyName, "")
	if err != nil {
		return err
	}
	defer key.Wipe()
	rb.replaceLast("destroy KMIP key", func(ctx context.Context) error {
		return m.destroyKeysNamed(ctx, name, o.Tenant, keyName, []string{keyID})
	})

	if o.From != "" {
		err = m.makeClone(ctx, rb, name, o, src, keyID, key.Bytes(), log)
	} else {
		err = m.makeFresh(ctx, rb, name, o, keyID, key.Bytes())
	}
	if err != nil {
		return err
	}
	key.Wipe()
	// On a single host the LV stays active (keepsActive). In a shared
	// group it is deactivated in the same lvchange: a crash after its
	// commit leaves a complete volume still active, which start-up
	// reconciliation deactivates as it does any unused volume's LV.
	if m.keepsActive() {
		rb.at("marking the volume complete")
		return m.lvm.AddTag(ctx, lvName(name), TagReady)
	}
	rb.at("LV deactivation and marking the volume complete")
	return m.lvm.DeactivateAndTag(ctx, lvName(name), TagReady)
}

// makeFresh makes a new volume's LV, header and filesystem, and closes
// it; the LV is left active.
func (m *Manager) makeFresh(ctx context.Context, rb *rollback, name string, o options.Options, keyID string, key []byte) error {
	rb.at("lvcreate")
	tags := append([]string{TagOurs, tagFSPrefix + o.FS}, m.sharedCreateTags()...)
	if keyIDTagRE.MatchString(keyID) {
		tags = append(tags, tagKeyPrefix+keyID)
	}
	if o.Tenant != "" {
		tags = append(tags, tagTenantPrefix+o.Tenant)
	}
	if len(o.MountOpts) > 0 {
		tags = append(tags, tagMountOptsPrefix+strings.Join(o.MountOpts, "+"))
	}
	if o.Integrity != "" {
		tags = append(tags, tagIntegrityPrefix+o.Integrity)
	}
	if o.Discard {
		tags = append(tags, tagDiscard)
	}
	req := lvm.CreateRequest{Name: lvName(name), Size: o.Size, Tags: tags}
	if o.Thin {
		req.Pool = m.cfg.ThinPool
	}
	// lvcreate activates the new LV (lvm.Client.CreateLV: --activate y).
	if err := m.createLV(ctx, rb, req); err != nil {
		return err
	}
	dev := m.devPath(lvm.LV{Name: lvName(name)})

	rb.at("luksFormat")
	if err := m.crypt.Format(ctx, dev, key, luks.Token{KeyID: keyID, Volume: name}, luks.FormatOptions{Integrity: o.Integrity}); err != nil {
		return err
	}
	rb.at("opening the LUKS2 mapping")
	rb.add("close mapping", func(ctx context.Context) error { return m.closeUnheld(ctx, mappingName(name)) })
	if err := m.crypt.Open(ctx, dev, mappingName(name), key, m.openOptions(tags)); err != nil {
		return err
	}

	rb.at("mkfs." + o.FS)
	if err := m.fs.Mkfs(ctx, mapperPath(name), o.FS, o.Mkfs); err != nil {
		return err
	}
	if o.Root.Asked() {
		rb.at("setting the root directory's owner and mode")
		if err := m.setRoot(ctx, rb, name, o); err != nil {
			return err
		}
	}
	rb.at("closing the LUKS2 mapping")
	if err := m.closeUnheld(ctx, mappingName(name)); err != nil {
		return err
	}
	return nil
}

// undoCreate undoes one journaled create (the caller holds the volume lock)
// unless it had completed: its LV if it is still half-made, and the keys
// made under its unique key name.
func (m *Manager) undoCreate(ctx context.Context, e journal.Entry, log logrus.FieldLogger) error {
	drop := func() error {
		return m.st.Update(func(s *journal.State) { s.Creating = journal.Without(s.Creating, e) })
	}
	lv, err := m.lvm.LV(ctx, lvName(e.Volume))
	var lvp *lvm.LV
	switch {
	case err == nil && !slices.Contains(lv.Tags, TagOurs):
		log.Error("create journal entry names an LV that is not ours; dropping the entry")
		return drop()
	case err == nil && slices.Contains(lv.Tags, TagReady) && (!e.Clone || m.cloneComplete(ctx, e.Volume, lv)):
		log.Info("interrupted create had completed; keeping the volume")
		return drop()
	case err == nil && !m.madeHere(lv):
		// Another host's create of the name, after this one failed before
		// its lvcreate: only this create's own keys are undone.
		log.WithField("made_by", tagValue(lv.Tags, tagMadeByPrefix)).Info("the LV of this name is another host's; undoing only this create's keys")
	case err == nil:
		lvp = &lv
	case errors.Is(err, lvm.ErrNotFound):
	default:
		return err
	}
	keyName := e.KeyName
	if e.Legacy {
		// Version 1 named keys by volume alone: only the LV's own keys
		// (token, tag) are known to be this create's.
		keyName = ""
		if lvp == nil {
			log.WithField("kmip_key_name", m.legacyKeyName(e.Volume)).Warn("an older cryptvol's create journal names only this volume and no LV is left; keys are never destroyed by name alone: check the KMIP server for keys of this name")
			return drop()
		}
	}
	if _, err := m.destroy(ctx, e.Volume, e.Tenant, lvp, nil, e.KeyIDs, keyName, log); err != nil {
		return fmt.Errorf("undoing an interrupted create: %w", err)
	}
	log.WithField("had_lv", lvp != nil).Info("undid an interrupted create")
	return drop()
}

// destroyKeysNamed destroys the given key ids and every key Located under
// keyName. Destroy of an unknown id succeeds.
func (m *Manager) destroyKeysNamed(ctx context.Context, name, tenant, keyName string, ids []string) error {
	found, err := m.keyLocate(ctx, name, tenant, keyName)
	if err != nil {
		return fmt.Errorf("locating KMIP keys named %q: %w", keyName, err)
	}
	// ids may hold "": a journal entry written before its key was made.
	for _, id := range appendUnique(appendUnique(nil, ids...), found...) {
		if err := m.keyDestroy(ctx, name, tenant, id); err != nil {
			return fmt.Errorf("destroying KMIP key %q: %w", id, err)
		}
	}
	return nil
}

func appendUnique(list []string, vs ...string) []string {
	for _, v := range vs {
		if v != "" && !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}

// compare decides whether an existing volume satisfies a create request.
// Only options the caller gave are compared: leaving an option out accepts
// the existing value, as docker does for its own volumes.
func (m *Manager) compare(ctx context.Context, name string, lv lvm.LV, o options.Options) error {
	var diffs []string
	if o.SizeSet {
		vg, err := m.groupInfo(ctx)
		if err != nil {
			return fmt.Errorf("volume %q: %w", name, err)
		}
		// lvm rounds sizes up to whole extents.
		if same := lv.Size >= o.Size && lv.Size-o.Size < max(vg.ExtentSize, 1); !same {
			diffs = append(diffs, fmt.Sprintf("size is %s, requested %s", options.FormatSize(lv.Size), options.FormatSize(o.Size)))
		}
	}
	if fs := tagValue(lv.Tags, tagFSPrefix); o.FSSet && fs != o.FS {
		diffs = append(diffs, fmt.Sprintf("fs is %s, requested %s", fs, o.FS))
	}
	if thin := lv.Pool != ""; o.ThinSet && thin != o.Thin {
		diffs = append(diffs, fmt.Sprintf("thin is %t, requested %t", thin, o.Thin))
	}
	if got, want := strings.Join(mountOptsOf(lv.Tags), ","), strings.Join(o.MountOpts, ","); o.MountOpts != nil && got != want {
		diffs = append(diffs, fmt.Sprintf("mountopts is %q, requested %q", got, want))
	}
	if got := tagValue(lv.Tags, tagIntegrityPrefix); o.Integrity != "" && got != o.Integrity {
		diffs = append(diffs, fmt.Sprintf("integrity is %q, requested %q", got, o.Integrity))
	}
	if t := tenantOf(lv); o.TenantSet && t != o.Tenant {
		diffs = append(diffs, fmt.Sprintf("tenant is %q, requested %q", t, o.Tenant))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("volume %q already exists with different options: %s", name, strings.Join(diffs, "; "))
	}
	return nil
}

// checkCapacity refuses sizes the volume group cannot give: a thick volume
// needs its whole size free; a thin one may exceed the pool's free space
// (that is what thin is for) but never the whole group.
func (m *Manager) checkCapacity(ctx context.Context, name string, o options.Options, log logrus.FieldLogger) (lvm.VG, error) {
	vg, err := m.groupInfo(ctx)
	if err != nil {
		return vg, fmt.Errorf("volume %q: reading volume group: %w", name, err)
	}
	size := roundUp(o.Size, vg.ExtentSize)
	min := options.MinSize(o.FS)
	if o.Thin {
		if size > vg.Size {
			return vg, ofKind(ErrNoSpace, fmt.Errorf("volume %q: size %s is more than the whole volume group %q (%s) (allowed for a thin %s volume: %s to %s)",
				name, options.FormatSize(o.Size), m.cfg.VG, options.FormatSize(vg.Size), o.FS, options.FormatSize(min), options.FormatSize(vg.Size)))
		}
		return vg, m.checkPool(ctx, name, size, log)
	}
	if size > vg.Free {
		if vg.Free < min {
			return vg, ofKind(ErrNoSpace, fmt.Errorf("volume %q: size %s is more than volume group %q can give: only %s free, less than the %s minimum of %s",
				name, options.FormatSize(o.Size), m.cfg.VG, options.FormatSize(vg.Free), o.FS, options.FormatSize(min)))
		}
		return vg, ofKind(ErrNoSpace, fmt.Errorf("volume %q: size %s is more than the %s free in volume group %q (allowed for a thick %s volume: %s to %s)",
			name, options.FormatSize(o.Size), options.FormatSize(vg.Free), m.cfg.VG, o.FS, options.FormatSize(min), options.FormatSize(vg.Free)))
	}
	return vg, nil
}
