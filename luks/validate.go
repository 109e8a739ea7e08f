package luks

import (
	"fmt"
	"path/filepath"
	"unicode/utf8"
)

// maxMappingLen is device-mapper's DM_NAME_LEN (128) minus the NUL.
const maxMappingLen = 127

// maxTokenField bounds token strings so the token stays far below the LUKS2
// JSON area (12 KiB by default).
const maxTokenField = 1024

func validateDevice(dev string) error {
	if !filepath.IsAbs(dev) || filepath.Clean(dev) != dev || dev == "/" {
		return fmt.Errorf("invalid device %q: must be a clean absolute path such as /dev/vg/lv", dev)
	}
	return nil
}

// ValidateMapping checks a dm-crypt mapping name.
func ValidateMapping(name string) error {
	const allowed = "letters, digits and _ . + - (not starting with '-', not \".\" or \"..\", at most 127 characters)"
	switch {
	case name == "":
		return fmt.Errorf("invalid mapping name: empty; allowed: %s", allowed)
	case len(name) > maxMappingLen:
		return fmt.Errorf("invalid mapping name %q: %d characters; allowed: %s", name, len(name), allowed)
	case name == "." || name == "..":
		return fmt.Errorf("invalid mapping name %q; allowed: %s", name, allowed)
	case name[0] == '-':
		return fmt.Errorf("invalid mapping name %q: starts with '-'; allowed: %s", name, allowed)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '+' || r == '-') {
			return fmt.Errorf("invalid mapping name %q: character %q; allowed: %s", name, r, allowed)
		}
	}
	return nil
}

func validateKey(key []byte) error {
	if len(key) != KeySize {
		// The length is not secret; the bytes never appear in errors.
		return fmt.Errorf("invalid key: %d bytes, want %d", len(key), KeySize)
	}
	return nil
}

func validateToken(tok Token) error {
	for _, f := range []struct{ name, val string }{{"key id", tok.KeyID}, {"volume", tok.Volume}} {
		switch {
		case f.val == "":
			return fmt.Errorf("invalid token: empty %s", f.name)
		case len(f.val) > maxTokenField:
			return fmt.Errorf("invalid token: %s is %d bytes, at most %d allowed", f.name, len(f.val), maxTokenField)
		case !utf8.ValidString(f.val):
			// encoding/json would silently replace invalid bytes, recording
			// a different key id than the one given.
			return fmt.Errorf("invalid token: %s %q is not valid UTF-8", f.name, f.val)
		}
	}
	return nil
}
