package luks

import (
	"errors"
	"strings"
	"testing"
)

func TestHeaderCheck(t *testing.T) {
	good := Header{Version: 2, Cipher: "aes-xts-plain64", KeyBits: 512, SectorSize: 4096, Keyslots: 1, Token: &Token{KeyID: "17", Volume: "v"}}
	if id, err := good.Check("v", "17"); err != nil || id != "17" {
		t.Fatalf("Check(good) = %q, %v", id, err)
	}
	if id, err := good.Check("v", ""); err != nil || id != "17" {
		t.Fatalf("Check(good, no tag) = %q, %v", id, err)
	}
	edit := func(f func(h *Header)) Header {
		h := good
		f(&h)
		return h
	}
	for want, h := range map[string]Header{
		"LUKS1, expected LUKS2":          edit(func(h *Header) { h.Version = 1 }),
		`cipher is "aes-cbc-essiv`:       edit(func(h *Header) { h.Cipher = "aes-cbc-essiv:sha256" }),
		"256 bits, expected 512":         edit(func(h *Header) { h.KeyBits = 256 }),
		"no keyslots left":               edit(func(h *Header) { h.Keyslots = 0 }),
		"no cryptvol-kmip token":         edit(func(h *Header) { h.Token = nil }),
		"has no KMIP key id":             edit(func(h *Header) { h.Token = &Token{Volume: "v"} }),
		`belongs to volume "w"`:          edit(func(h *Header) { h.Token = &Token{KeyID: "17", Volume: "w"} }),
		`"18" differs from the LV tag's`: edit(func(h *Header) { h.Token = &Token{KeyID: "18", Volume: "v"} }),
	} {
		id, err := h.Check("v", "17")
		if !errors.Is(err, ErrUnexpectedHeader) || !strings.Contains(err.Error(), want) || id != "" {
			t.Errorf("Check(%+v) = %q, %v; want ErrUnexpectedHeader mentioning %q", h, id, err, want)
		}
	}
}
