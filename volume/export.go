package volume

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/export"
	"github.com/cryptvol/cryptvol/internal/version"
	"github.com/cryptvol/cryptvol/volume/options"
)

// exportBlock is the size of the blocks an export reads, writes and leaves
// out when they are all zero.
const exportBlock = 64 << 10

// Export writes volume name to w as an export stream (package export): its
// LUKS2 header and ciphertext as they are on its LV, never plaintext, and
// a manifest naming it and the KMIP key that opens it. The volume is read
// under its lock; a volume mounted here has its filesystem frozen for the
// whole copy (its writers wait, nothing fails), so the stream holds every
// write that returned before. Nothing of the volume changes.
func (m *Manager) Export(ctx context.Context, name string, w io.Writer) (man export.Manifest, err error) {
	start := time.Now()
	defer func() {
		m.record(audit.Event{Op: "volume.export", Volume: name, KeyID: man.KeyID, Detail: fmt.Sprintf("%d bytes", man.SizeBytes), Err: err, Took: time.Since(start)})
	}()
	if err := options.ValidateName(name); err != nil {
		return man, err
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "export")
	lv, err := m.completeLV(ctx, name)
	if err != nil {
		return man, err
	}
	if len(m.st.Rotations(name)) > 0 {
		return man, fmt.Errorf("volume %q: a key rotation is not settled yet; run cryptvol rotate first", name)
	}
	dev, restore, err := m.activeFor(ctx, name, lv, log)
	if err != nil {
		return man, err
	}
	defer restore()
	h, keyID, err := m.checkedHeader(ctx, name, lv, dev)
	if err != nil {
		return man, err
	}
	if h.Reencrypting {
		return man, fmt.Errorf("volume %q: a reencryption of its data is not finished; run cryptvol reencrypt first", name)
	}
	// The key's name, which binds it to this volume on an importing host,
	// comes with its material; the material is not needed.
	key, err := m.keyGet(ctx, name, tenantOf(lv), keyID)
	if err != nil {
		return man, fmt.Errorf("volume %q: %w", name, err)
	}
	names := key.Names()
	key.Wipe()
	vgUUID, err := m.vgUUID(ctx)
	if err != nil {
		return man, err
	}
	keyName := ""
	for _, n := range names {
		if keyNamedFor(n, vgUUID, "", name) {
			keyName = n
		}
	}
	if keyName == "" {
		return man, fmt.Errorf("volume %q: its key %q has a name of a cryptvol before key names were unique (%q); rotate its key (cryptvol rotate) and export it again", name, keyID, names)
	}
	bs := uint32(exportBlock)
	for lv.Size%uint64(bs) != 0 && bs > 4096 {
		bs /= 2
	}
	man = export.Manifest{Format: export.Format, Volume: name, SizeBytes: lv.Size, BlockSize: bs,
		FS: tagValue(lv.Tags, tagFSPrefix), Thin: lv.Pool != "", Cipher: h.Cipher, Integrity: tagValue(lv.Tags, tagIntegrityPrefix),
		KeyID: keyID, KeyName: keyName, VGUUID: vgUUID, Tenant: tenantOf(lv), Created: m.now().UTC(), Writer: "cryptvol " + version.Get()}
	// A read-only snapshot takes no writes to freeze out.
	if ok, _, err := m.mountedHere(name); err != nil {
		return man, err
	} else if ok && !slices.Contains(lv.Tags, tagReadOnly) {
		target := m.mountpoint(name)
		if err := m.fs.Freeze(target); err != nil {
			return man, fmt.Errorf("volume %q: freezing its filesystem for a consistent export: %w", name, err)
		}
		defer func() {
			if err := m.fs.Thaw(target); err != nil {
				log.WithError(err).Error("could not thaw the exported volume; its writers wait until it is thawed (fsfreeze -u)")
			}
		}()
	}
	d, err := m.fs.OpenDevice(dev, false)
	if err != nil {
		return man, fmt.Errorf("volume %q: %w", name, err)
	}
	defer d.Close()
	ew, err := export.NewWriter(w, man)
	if err != nil {
		return man, fmt.Errorf("volume %q: %w", name, err)
	}
	buf := make([]byte, bs)
	for off := uint64(0); off < man.SizeBytes; off += uint64(bs) {
		if err := ctx.Err(); err != nil {
			return man, fmt.Errorf("volume %q: export stopped at %d of %d bytes: %w", name, off, man.SizeBytes, err)
		}
		// io.ReaderAt: a short read comes with its error.
		if n, err := d.ReadAt(buf, int64(off)); n != len(buf) {
			return man, fmt.Errorf("volume %q: reading its LV at %d: %w", name, off, err)
		}
		if err := ew.Block(off, buf); err != nil {
			return man, fmt.Errorf("volume %q: writing the export: %w", name, err)
		}
	}
	if err := ew.Close(); err != nil {
		return man, fmt.Errorf("volume %q: writing the export: %w", name, err)
	}
	log.WithField("size", man.SizeBytes).Info("volume exported: its header and ciphertext")
	return man, nil
}
