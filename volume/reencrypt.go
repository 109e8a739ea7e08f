package volume

import (
	"context"
	"fmt"
	"time"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/volume/options"
)

// Reencryption is what Reencrypt did.
type Reencryption struct {
	Volume  string `json:"volume"`
	Resumed bool   `json:"resumed"` // an interrupted reencryption was finished
	Online  bool   `json:"online"`  // the volume was mounted throughout
}

// Reencrypt re-encrypts the volume's data under a new volume key, for a
// volume key that may have leaked; the KMIP key (passphrase) stays. Online
// when the volume is mounted: its containers keep reading and writing. It
// runs for as long as the data takes to rewrite, holding the volume's lock:
// Docker's requests for this volume wait meanwhile (and give up after
// Docker's 2 minutes). cryptsetup keeps its progress in the
// header, so an interrupted reencryption (a crash, the request's deadline)
// leaves a volume that mounts, and is finished by the next Reencrypt.
func (m *Manager) Reencrypt(ctx context.Context, name string) (r Reencryption, err error) {
	start := time.Now()
	defer func() {
		m.record(audit.Event{Op: "volume.reencrypt", Volume: name, Detail: fmt.Sprintf("resumed=%t online=%t", r.Resumed, r.Online), Err: err, Took: time.Since(start)})
	}()
	if err := options.ValidateName(name); err != nil {
		return r, err
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "reencrypt")
	lv, err := m.completeLV(ctx, name)
	if err != nil {
		return r, err
	}
	if err := refuseUnchangeable(name, lv, "reencrypt", "a new"); err != nil {
		return r, err
	}
	if len(m.st.Rotations(name)) > 0 {
		return r, fmt.Errorf("volume %q: a key rotation is not settled yet; run cryptvol rotate first", name)
	}
	r = Reencryption{Volume: name, Online: lv.Active && len(m.st.IDs(name)) > 0}
	dev, restore, err := m.activeFor(ctx, name, lv, log)
	if err != nil {
		return r, err
	}
	defer restore()
	h, keyID, err := m.checkedHeader(ctx, name, lv, dev)
	if err != nil {
		return r, err
	}
	key, err := m.keyGet(ctx, name, tenantOf(lv), keyID)
	if err != nil {
		return r, fmt.Errorf("volume %q: %w", name, err)
	}
	defer key.Wipe()
	r.Resumed = h.Reencrypting
	if err := m.crypt.Reencrypt(ctx, dev, key.Bytes(), luks.ReencryptOptions{Resume: h.Reencrypting}); err != nil {
		return r, fmt.Errorf("volume %q: %w (the progress is kept in the header: the volume mounts, and cryptvol reencrypt finishes it)", name, err)
	}
	key.Wipe()
	log.WithField("online", r.Online).WithField("resumed", r.Resumed).Info("reencrypted the volume's data under a new volume key")
	return r, nil
}
