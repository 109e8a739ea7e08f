package luks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// The keyslot operations of a key rotation: add a keyslot for a new
// passphrase, point the token at it, kill the old keyslot. Each works on an
// open device as on a closed one (LUKS2 metadata changes take
// cryptsetup's header lock; dm-crypt's volume key is not touched), so a
// mounted volume is rotated under its containers.

// maxSlots is LUKS2's keyslot count (cryptsetup's LUKS2_KEYSLOTS_MAX).
const maxSlots = 32

// FreeSlot is the lowest keyslot id h does not use.
func (h Header) FreeSlot() (int, error) {
	for i := 0; i < maxSlots; i++ {
		if !slices.Contains(h.SlotIDs, i) {
			return i, nil
		}
	}
	return 0, errors.New("all 32 LUKS2 keyslots are in use")
}

// HasSlot says whether keyslot slot is in use.
func (h Header) HasSlot(slot int) bool { return slices.Contains(h.SlotIDs, slot) }

// addKeyArgs match formatArgs' keyslot parameters (pbkdf2 at the minimum:
// the passphrase is a random 256-bit key). Both passphrases come on stdin,
// the existing one first, each read for exactly KeySize bytes
// (cryptsetup-luksAddKey(8): --keyfile-size, --new-keyfile-size).
var addKeyArgs = []string{
	"luksAddKey", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha256", "--batch-mode",
	"--key-file", "-", "--keyfile-size", strconv.Itoa(KeySize),
	"--new-keyfile", "-", "--new-keyfile-size", strconv.Itoa(KeySize),
}

// AddKey adds keyslot slot for passphrase newKey, authorized by existing.
// Neither passphrase is in argv: both go on stdin, from one private buffer
// zeroed afterwards.
func (c *Cryptsetup) AddKey(ctx context.Context, dev string, existing, newKey []byte, slot int) error {
	if err := validateDevice(dev); err != nil {
		return err
	}
	if err := validateKey(existing); err != nil {
		return fmt.Errorf("add keyslot to %s: existing passphrase: %w", dev, err)
	}
	if err := validateKey(newKey); err != nil {
		return fmt.Errorf("add keyslot to %s: new passphrase: %w", dev, err)
	}
	if slot < 0 || slot >= maxSlots {
		return fmt.Errorf("add keyslot to %s: slot %d is not a LUKS2 keyslot (0-%d)", dev, slot, maxSlots-1)
	}
	both := make([]byte, 0, 2*KeySize)
	both = append(append(both, existing...), newKey...)
	defer clear(both)
	args := append(slices.Clone(addKeyArgs), "--new-key-slot", strconv.Itoa(slot), dev)
	if _, err := c.run(ctx, both, args...); err != nil {
		return fmt.Errorf("add keyslot %d to %s: %w", slot, dev, err)
	}
	return nil
}

// SetToken replaces cryptvol's token (LUKS2 token id tokenID) with one that
// names token's key and assigns it to keyslot slot.
func (c *Cryptsetup) SetToken(ctx context.Context, dev string, tokenID int, token Token, slot int) error {
	if err := validateDevice(dev); err != nil {
		return err
	}
	if err := validateToken(token); err != nil {
		return fmt.Errorf("replace token of %s: %w", dev, err)
	}
	tj, err := json.Marshal(tokenJSON{Type: TokenType, Keyslots: []string{strconv.Itoa(slot)}, KMIPID: token.KeyID, Volume: token.Volume})
	if err != nil {
		return fmt.Errorf("replace token of %s: %w", dev, err)
	}
	if _, err := c.run(ctx, tj, "token", "import", "--token-id", strconv.Itoa(tokenID), "--token-replace", "--json-file", "-", dev); err != nil {
		return fmt.Errorf("replace token of %s: %w", dev, err)
	}
	return nil
}

// KillSlot destroys keyslot slot. --batch-mode: no other passphrase is asked
// for (cryptsetup-luksKillSlot(8)), so the slot of a passphrase already
// destroyed on the KMIP server can go too. The caller makes sure another
// keyslot remains.
func (c *Cryptsetup) KillSlot(ctx context.Context, dev string, slot int) error {
	if err := validateDevice(dev); err != nil {
		return err
	}
	if slot < 0 || slot >= maxSlots {
		return fmt.Errorf("kill keyslot of %s: slot %d is not a LUKS2 keyslot (0-%d)", dev, slot, maxSlots-1)
	}
	if _, err := c.run(ctx, nil, "luksKillSlot", "--batch-mode", dev, strconv.Itoa(slot)); err != nil {
		return fmt.Errorf("kill keyslot %d of %s: %w", slot, dev, err)
	}
	return nil
}
