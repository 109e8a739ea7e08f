package luks

import (
	"errors"
	"strings"
	"testing"
)

func TestHeaderVerify(t *testing.T) {
	good := Header{Version: 2, Cipher: "aes-xts-plain64", KeyBits: 512, SectorSize: 4096, Keyslots: 1, Token: &Token{KeyID: "17", Volume: "v"}}
	if err := good.Verify("17"); err != nil {
		t.Fatal(err)
	}
	for want, h := range map[string]Header{
		"LUKS version 1":         {Version: 1, Cipher: "aes-xts-plain64", Keyslots: 1, Token: good.Token},
		`cipher "aes-cbc-essiv`:  {Version: 2, Cipher: "aes-cbc-essiv:sha256", Keyslots: 1, Token: good.Token},
		"no keyslot":             {Version: 2, Cipher: "aes-xts-plain64", Keyslots: 0, Token: good.Token},
		"no cryptvol-kmip token": {Version: 2, Cipher: "aes-xts-plain64", Keyslots: 1},
		`names key "18"`:         {Version: 2, Cipher: "aes-xts-plain64", Keyslots: 1, Token: &Token{KeyID: "18", Volume: "v"}},
	} {
		err := h.Verify("17")
		if !errors.Is(err, ErrUnexpectedHeader) || !strings.Contains(err.Error(), want) {
			t.Errorf("Verify(%+v) = %v, want ErrUnexpectedHeader mentioning %q", h, err, want)
		}
	}
}
