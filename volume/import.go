package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/export"
	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
	"github.com/cryptvol/cryptvol/volume/options"
)

// Imported is what Import made.
type Imported struct {
	Volume      string `json:"volume"`
	From        string `json:"from"`       // the exported volume's name
	OldKeyID    string `json:"old_key_id"` // the exported volume's key, untouched
	NewKeyID    string `json:"new_key_id"`
	SizeBytes   uint64 `json:"size_bytes"`
	Reencrypted bool   `json:"reencrypted"`
}

// Import makes volume name from an export stream (package export) read
// from r. The stream is written onto a new LV (zeros where it left blocks
// out, on a thick LV) and its checksum checked before anything else is
// done with it; then the exported header must be a LUKS2 header whose
// token names the manifest's volume and key, and that key must be one this
// host's KMIP identity (or the manifest's tenant's) may fetch, bound by its
// name to the exported volume. The new volume gets a key of its own, named
// for it, in a keyslot of its own: the exported key's keyslots are killed
// and that key is left as it is (it is the exported volume's). With
// reencrypt, its data is also re-encrypted under a new volume key. A file
// that is not an export, is cut short or changed, or whose key this host
// may not fetch, is refused and whatever was made is undone: no LV, no
// key. Journaled as a create (Import set), so a crash at any step is
// undone at the next start without touching the exported volume's key.
func (m *Manager) Import(ctx context.Context, name string, r io.Reader, reencrypt bool) (im Imported, err error) {
	start := time.Now()
	defer func() {
		m.record(audit.Event{Op: "volume.import", Volume: name, KeyID: im.NewKeyID, Detail: fmt.Sprintf("from %q, key %s", im.From, im.OldKeyID), Err: err, Took: time.Since(start)})
	}()
	if err := options.ValidateName(name); err != nil {
		return im, err
	}
	rd, err := export.NewReader(r)
	if err != nil {
		return im, fmt.Errorf("volume %q: not imported, nothing was made: %w", name, err)
	}
	man := rd.Manifest()
	im = Imported{Volume: name, From: man.Volume, OldKeyID: man.KeyID, SizeBytes: man.SizeBytes}
	o := options.Options{Size: man.SizeBytes, FS: man.FS, Thin: m.cfg.ThinPool != "", Tenant: man.Tenant, Integrity: man.Integrity}
	if err := checkImportable(man); err != nil {
		return im, fmt.Errorf("volume %q: not imported, nothing was made: %w", name, err)
	}
	if _, err := m.keysFor(o.Tenant); err != nil {
		return im, fmt.Errorf("volume %q: not imported, nothing was made: the export's tenant: %w", name, err)
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "import").WithField("from", man.Volume)
	done, err := m.takeTurn(ctx)
	if err != nil {
		return im, fmt.Errorf("volume %q: not imported, nothing was made: %w", name, err)
	}
	defer done()
	if _, err := m.settleJournal(ctx, name, log); err != nil {
		return im, err
	}
	switch _, err := m.lvm.LV(ctx, lvName(name)); {
	case err == nil:
		return im, fmt.Errorf("volume %q exists; import under another name (nothing was made)", name)
	case !errors.Is(err, lvm.ErrNotFound):
		return im, fmt.Errorf("volume %q: %w", name, err)
	}
	vg, err := m.checkCapacity(ctx, name, o, log)
	if err != nil {
		return im, err
	}
	keyName, err := newKeyName(vg.UUID, name)
	if err != nil {
		return im, fmt.Errorf("volume %q: %w", name, err)
	}
	m.noteVGUUID(vg.UUID)
	entry := journal.Entry{Volume: name, KeyName: keyName, Tenant: o.Tenant}
	if err := m.st.Update(func(s *journal.State) { s.BeginCreate(entry) }); err != nil {
		return im, fmt.Errorf("volume %q: %w", name, err)
	}
	rb := &rollback{op: "import", name: name, log: log}
	defer func() {
		err = m.endCreate(ctx, rb, err, recover(), entry, true, log)
		if err != nil {
			im.NewKeyID = ""
		}
	}()
	im.NewKeyID, err = m.importSteps(ctx, rb, name, rd, o, keyName, reencrypt)
	if err != nil {
		return im, fmt.Errorf("volume %q: import failed: %w", name, err)
	}
	im.Reencrypted = reencrypt
	log.WithFields(logrus.Fields{"size": man.SizeBytes, "old_key_id": man.KeyID, "new_key_id": im.NewKeyID}).Info("volume imported under a key of its own")
	return im, nil
}

// tagImported marks an LV made by Import. Until it is complete its header
// is the exported volume's, whose token names that volume's key: never
// this LV's to destroy (header.keyIDs).
const tagImported = "cryptvol_imported"

// checkImportable checks what of an export's manifest becomes this host's
// objects: its filesystem and the integrity tag.
func checkImportable(man export.Manifest) error {
	if man.FS != options.FSExt4 && man.FS != options.FSXFS {
		return fmt.Errorf("the export's filesystem %q (allowed: %s, %s)", man.FS, options.FSExt4, options.FSXFS)
	}
	if man.Integrity != "" {
		if err := lvm.ValidateTag(tagIntegrityPrefix + man.Integrity); err != nil {
			return fmt.Errorf("the export's integrity %q: %w", man.Integrity, err)
		}
	}
	return nil
}

// importSteps makes the LV, writes the stream onto it, checks the header,
// and gives the volume its own key; rb undoes each step.
func (m *Manager) importSteps(ctx context.Context, rb *rollback, name string, rd *export.Reader, o options.Options, keyName string, reencrypt bool) (string, error) {
	man := rd.Manifest()
	rb.at("lvcreate")
	tags := append([]string{TagOurs, tagImported, tagFSPrefix + o.FS}, m.sharedCreateTags()...)
	if o.Tenant != "" {
		tags = append(tags, tagTenantPrefix+o.Tenant)
	}
	if o.Integrity != "" {
		tags = append(tags, tagIntegrityPrefix+o.Integrity)
	}
	req := lvm.CreateRequest{Name: lvName(name), Size: o.Size, Tags: tags}
	if o.Thin {
		req.Pool = m.cfg.ThinPool
	}
	if err := m.createLV(ctx, rb, req); err != nil {
		return "", err
	}
	dev := m.devPath(lvm.LV{Name: lvName(name)})
	rb.at("writing the export onto the LV")
	if err := m.writeExport(ctx, dev, rd, !o.Thin); err != nil {
		return "", err
	}

	rb.at("the exported header")
	h, err := m.crypt.Inspect(ctx, dev)
	if err != nil {
		return "", err
	}
	oldID, err := h.Check(man.Volume, man.KeyID)
	if err != nil {
		return "", fmt.Errorf("the exported header: %w", err)
	}
	if h.Reencrypting {
		return "", errors.New("the exported header has a reencryption under way")
	}
	rb.at("the exported volume's KMIP key")
	oldKey, err := m.keyGetExported(ctx, name, o.Tenant, oldID, man)
	if err != nil {
		return "", err
	}
	defer oldKey.Wipe()

	rb.at("KMIP key creation")
	rb.add("destroy KMIP key", func(ctx context.Context) error { return m.destroyKeysNamed(ctx, name, o.Tenant, keyName, nil) })
	newID, newKey, err := m.keyCreate(ctx, name, o.Tenant, keyName, "")
	if err != nil {
		return "", err
	}
	defer newKey.Wipe()
	rb.replaceLast("destroy KMIP key", func(ctx context.Context) error {
		return m.destroyKeysNamed(ctx, name, o.Tenant, keyName, []string{newID})
	})
	rb.at("a keyslot for the imported volume's key")
	if err := m.takeOver(ctx, dev, h, oldKey.Bytes(), newID, newKey.Bytes(), name); err != nil {
		return "", err
	}
	oldKey.Wipe()
	if reencrypt {
		rb.at("reencryption under a volume key of its own")
		if err := m.crypt.Reencrypt(ctx, dev, newKey.Bytes(), luks.ReencryptOptions{}); err != nil {
			return "", err
		}
	}
	newKey.Wipe()
	var add []string
	if keyIDTagRE.MatchString(newID) {
		add = append(add, tagKeyPrefix+newID, tagKeyTimePrefix+strconv.FormatInt(m.now().Unix(), 10))
	}
	rb.at("tagging the LV with its key")
	if err := m.lvm.ReplaceTags(ctx, lvName(name), nil, add); err != nil {
		return "", err
	}
	if m.keepsActive() {
		rb.at("marking the volume complete")
		return newID, m.lvm.AddTag(ctx, lvName(name), TagReady)
	}
	rb.at("LV deactivation and marking the volume complete")
	return newID, m.lvm.DeactivateAndTag(ctx, lvName(name), TagReady)
}

// writeExport writes the stream's blocks onto dev, and on a thick LV zeros
// where the stream left blocks out (a thin LV reads zeros where nothing was
// written; a thick one reads what the disk held before). Nothing counts as
// written until the stream's checksum has been checked (io.EOF from Next)
// and the device synced.
func (m *Manager) writeExport(ctx context.Context, dev string, rd *export.Reader, zeroGaps bool) (err error) {
	man := rd.Manifest()
	d, err := m.fs.OpenDevice(dev, true)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing %s: %w", dev, cerr)
		}
	}()
	zeros := make([]byte, man.BlockSize)
	fill := func(from, to uint64) error {
		for ; zeroGaps && from < to; from += uint64(len(zeros)) {
			n := min(uint64(len(zeros)), to-from)
			if _, err := d.WriteAt(zeros[:n], int64(from)); err != nil {
				return err
			}
		}
		return nil
	}
	var next uint64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		off, data, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := fill(next, off); err != nil {
			return err
		}
		if _, err := d.WriteAt(data, int64(off)); err != nil {
			return err
		}
		next = off + uint64(len(data))
	}
	if err := fill(next, man.SizeBytes); err != nil {
		return err
	}
	return d.Sync()
}

// keyGetExported fetches the exported volume's key, bound by its name to
// the exported volume in the exporting group (binding.go), with name's
// tenant identity.
func (m *Manager) keyGetExported(ctx context.Context, name, tenant, id string, man export.Manifest) (*keys.Key, error) {
	start := time.Now()
	k, err := m.keysFor(tenant)
	var key *keys.Key
	if err == nil {
		key, err = k.Get(ctx, id)
	}
	if err == nil && !slices.ContainsFunc(key.Names(), func(n string) bool { return keyNamedFor(n, man.VGUUID, "", man.Volume) }) {
		err = fmt.Errorf("KMIP key %q is named %q, not a name of volume %q of volume group %s: the export's header or manifest names another volume's key, so it is not used",
			id, strings.Join(key.Names(), ", "), man.Volume, man.VGUUID)
		key.Wipe()
		key = nil
	}
	m.record(audit.Event{Op: "key.get", Volume: name, Tenant: tenant, KeyID: id, Detail: "the exported volume's key, for an import", Err: err, Took: time.Since(start)})
	if err != nil {
		return nil, fmt.Errorf("the exported volume's KMIP key %q cannot be used by this host (its KMIP identity may not fetch it, or it was destroyed): %w", id, err)
	}
	return key, nil
}

// takeOver makes header h on dev the volume name's: a keyslot for its key
// (id, key) opened with the old one, the token naming it and name, every
// other keyslot killed.
func (m *Manager) takeOver(ctx context.Context, dev string, h luks.Header, old []byte, id string, key []byte, name string) error {
	slot, err := h.FreeSlot()
	if err != nil {
		return err
	}
	if err := m.crypt.AddKey(ctx, dev, old, key, slot); err != nil {
		return err
	}
	if err := m.crypt.SetToken(ctx, dev, h.TokenID, luks.Token{KeyID: id, Volume: name}, slot); err != nil {
		return err
	}
	for _, s := range h.SlotIDs {
		if err := m.crypt.KillSlot(ctx, dev, s); err != nil {
			return err
		}
	}
	return nil
}
