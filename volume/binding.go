package volume

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Which key opens a volume is read from the storage (the LUKS token and the
// LV key tag), and whoever can write the storage can rewrite both: volume
// X's header and data copied onto volume Y, with the token and tag edited
// to name X's key for Y, would open X's data as Y. What the storage cannot
// change is the key's name on the KMIP server, given at its create
// (newKeyName, or legacyKeyName for a volume of state file version 1, whose
// key names are not unique), so a key is used for a volume only when one of
// its names is a name of that volume in this volume group. keys.Manager.Get
// hands the names out with the material, from the same request.

// keyNameNonceLen is the length of newKeyName's random part, in hex digits.
const keyNameNonceLen = 16

// keyNamedFor says whether the KMIP key name kn is one cryptvol gives a key
// of volume name in the volume group of UUID vgUUID, called vg:
// cryptvol/VG_UUID/NAME/NONCE (newKeyName) or cryptvol/VG/NAME
// (legacyKeyName).
func keyNamedFor(kn, vgUUID, vg, name string) bool {
	if kn == "cryptvol/"+vg+"/"+name {
		return true
	}
	nonce, ok := strings.CutPrefix(kn, "cryptvol/"+vgUUID+"/"+name+"/")
	if !ok || vgUUID == "" || len(nonce) != keyNameNonceLen {
		return false
	}
	for _, c := range nonce {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkKeyBinding returns nil when one of names, the Name attributes of the
// KMIP key id, is a name of volume name (keyNamedFor); otherwise an error
// naming the volume, the key, the names found and the names allowed.
func (m *Manager) checkKeyBinding(ctx context.Context, name, id string, names []string) error {
	vgUUID, err := m.vgUUID(ctx)
	if err != nil {
		return fmt.Errorf("KMIP key %q of volume %q not used: the volume group's UUID, which the key's name must carry, cannot be read: %w", id, name, err)
	}
	for _, kn := range names {
		if keyNamedFor(kn, vgUUID, m.cfg.VG, name) {
			return nil
		}
	}
	found := "has no name"
	if len(names) > 0 {
		found = fmt.Sprintf("is named %q", names[0])
		for _, kn := range names[1:] {
			found += fmt.Sprintf(", %q", kn)
		}
	}
	return fmt.Errorf("KMIP key %q, named by volume %q's LUKS token and LV tag, %s, not a name of that volume (allowed: cryptvol/%s/%s/<%d hex digits>, or %q for a key made before key names were unique): token and tag may have been copied from another volume, so the key is not used",
		id, name, found, vgUUID, name, keyNameNonceLen, m.legacyKeyName(name))
}

// vgID caches the volume group's UUID: it names every key (newKeyName),
// and a Mount, the one path that would read it only for the binding, then
// reads no metadata for it beyond the first time.
type vgID struct {
	mu   sync.Mutex
	uuid string
}

// vgUUID returns the volume group's UUID, read once (groupInfo: from the
// metadata text, no program) unless a create read it first.
func (m *Manager) vgUUID(ctx context.Context) (string, error) {
	m.vgid.mu.Lock()
	defer m.vgid.mu.Unlock()
	if m.vgid.uuid != "" {
		return m.vgid.uuid, nil
	}
	vg, err := m.groupInfo(ctx)
	if err != nil {
		return "", err
	}
	if vg.UUID == "" {
		return "", fmt.Errorf("volume group %q reports no UUID", m.cfg.VG)
	}
	m.vgid.uuid = vg.UUID
	return vg.UUID, nil
}

// noteVGUUID records the UUID a create or rotation read anyway.
func (m *Manager) noteVGUUID(uuid string) {
	if uuid == "" {
		return
	}
	m.vgid.mu.Lock()
	defer m.vgid.mu.Unlock()
	m.vgid.uuid = uuid
}
