package luks

import (
	"errors"
	"fmt"
)

// ErrUnexpectedHeader means a LUKS2 header is not one cryptvol made for the
// expected key: wrong cipher, no keyslot left, or no or another token.
var ErrUnexpectedHeader = errors.New("unexpected LUKS header")

// Verify checks that h is what Format writes for the KMIP key keyID, so that
// a volume is only ever opened when its header says which key it belongs to.
func (h Header) Verify(keyID string) error {
	switch {
	case h.Version != 2:
		return fmt.Errorf("%w: LUKS version %d, want 2", ErrUnexpectedHeader, h.Version)
	case h.Cipher != Cipher:
		return fmt.Errorf("%w: cipher %q, want %q", ErrUnexpectedHeader, h.Cipher, Cipher)
	case h.Keyslots == 0:
		return fmt.Errorf("%w: no keyslot (erased)", ErrUnexpectedHeader)
	case h.Token == nil:
		return fmt.Errorf("%w: no %s token", ErrUnexpectedHeader, TokenType)
	case h.Token.KeyID != keyID:
		return fmt.Errorf("%w: token names key %q, want %q", ErrUnexpectedHeader, h.Token.KeyID, keyID)
	}
	return nil
}
