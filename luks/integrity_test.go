package luks

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// With integrity, luksFormat gets --integrity and the cipher's own 512-bit
// key size (cryptsetup adds the HMAC's 256); Check accepts the 768 bits of
// the keyslot with integrity, and only with it.
func TestFormatWithIntegrity(t *testing.T) {
	f := newFakeCS(t)
	f.on("cryptsetup isLuks /dev/vg/cv-i", csAnswer{code: 1})
	f.on(formatCmd+"--integrity hmac-sha256 /dev/vg/cv-i", csAnswer{})
	f.on("cryptsetup token import --json-file - /dev/vg/cv-i", csAnswer{})
	cs := New(WithExec(f.exec))
	if err := cs.Format(context.Background(), "/dev/vg/cv-i", testKey, Token{KeyID: "1", Volume: "i"}, FormatOptions{Integrity: IntegrityHMACSHA256}); err != nil {
		t.Fatal(err)
	}
	if err := cs.Format(context.Background(), "/dev/vg/cv-i", testKey, Token{KeyID: "1", Volume: "i"}, FormatOptions{Integrity: "crc32"}); err == nil ||
		!strings.Contains(err.Error(), `integrity "crc32" is not supported (allowed: hmac-sha256)`) || len(f.calls) != 3 {
		t.Errorf("integrity crc32: %v", err)
	}

	h := Header{Version: 2, Cipher: Cipher, KeyBits: 768, Keyslots: 1, Integrity: "hmac(sha256)", Token: &Token{KeyID: "1", Volume: "i"}}
	if _, err := h.Check("i", "1"); err != nil {
		t.Errorf("an integrity header: %v", err)
	}
	for what, mod := range map[string]func(*Header){
		"768 bits without integrity": func(h *Header) { h.Integrity = "" },
		"256 bits with integrity":    func(h *Header) { h.KeyBits = 256 },
		"another integrity":          func(h *Header) { h.Integrity = "hmac(sha512)" },
	} {
		bad := h
		mod(&bad)
		if _, err := bad.Check("i", "1"); !errors.Is(err, ErrUnexpectedHeader) {
			t.Errorf("%s: %v, want ErrUnexpectedHeader", what, err)
		}
	}
}
