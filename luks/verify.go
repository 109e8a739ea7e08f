package luks

import (
	"errors"
	"fmt"
)

// ErrUnexpectedHeader means a LUKS2 header is not one cryptvol made for the
// volume: another version, cipher or key size, no keyslot left, or no token
// or one naming another volume or key.
var ErrUnexpectedHeader = errors.New("unexpected LUKS header")

// Check accepts exactly what Format writes for volume: LUKS2, Cipher with a
// KeyBits-bit volume key, a keyslot left, and a cryptvol-kmip token naming
// volume and a KMIP key. tagKeyID, when not "", is the key id recorded
// outside the header (the LV tag) and must agree. Check returns the token's
// key id: a volume is only ever opened with the key its own header names.
func (h Header) Check(volume, tagKeyID string) (keyID string, err error) {
	switch {
	case h.Version != 2:
		err = fmt.Errorf("LUKS%d, expected LUKS2", h.Version)
	case h.Keyslots == 0:
		err = errors.New("no keyslots left (erased by `cryptsetup erase`)")
	case h.Cipher != Cipher:
		err = fmt.Errorf("cipher is %q, expected %q", h.Cipher, Cipher)
	case h.Integrity != "" && h.Integrity != "hmac(sha256)":
		err = fmt.Errorf("integrity is %q, expected none or hmac(sha256)", h.Integrity)
	case h.KeyBits != KeyBits && h.KeyBits != KeyBits+integrityBits(h):
		err = fmt.Errorf("volume key is %d bits, expected %d", h.KeyBits, KeyBits+integrityBits(h))
	case h.Token == nil:
		err = fmt.Errorf("no %s token", TokenType)
	case h.Token.KeyID == "":
		err = fmt.Errorf("the %s token has no KMIP key id", TokenType)
	case h.Token.Volume != volume:
		err = fmt.Errorf("the %s token belongs to volume %q", TokenType, h.Token.Volume)
	case tagKeyID != "" && tagKeyID != h.Token.KeyID:
		err = fmt.Errorf("the token's KMIP key id %q differs from the LV tag's %q", h.Token.KeyID, tagKeyID)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnexpectedHeader, err)
	}
	return h.Token.KeyID, nil
}

// integrityBits is the part of the volume key an integrity protection
// takes. With integrity, a keyslot's key_size counts it or not depending on
// how cryptsetup records the HMAC key (the cipher's 512 bits are what
// --key-size sets): both are accepted, and only with integrity.
func integrityBits(h Header) int {
	if h.Integrity != "" {
		return integrityKeyBits
	}
	return 0
}
