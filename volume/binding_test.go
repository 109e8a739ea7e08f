package volume

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// copyVolume puts volume from's header (its token rewritten to name to,
// as cryptsetup token import does without a passphrase), its data and its
// key tag onto volume to: what whoever can write the storage can do.
func (h *harness) copyVolume(from, to string) (fromKey string) {
	h.t.Helper()
	w := h.w
	w.mu.Lock()
	defer w.mu.Unlock()
	src, dst := w.lvs[lvName(from)], w.lvs[lvName(to)]
	fromKey, toKey := tagValue(src.Tags, tagKeyPrefix), tagValue(dst.Tags, tagKeyPrefix)
	hd := *w.headers[lvName(from)]
	hd.slots = maps.Clone(hd.slots)
	tok := *hd.h.Token
	tok.Volume = to
	hd.h.Token = &tok
	w.headers[lvName(to)] = &hd
	w.fsMade[lvName(to)] = w.fsMade[lvName(from)]
	w.layout[lvName(to)] = w.layout[lvName(from)]
	i := slices.Index(dst.Tags, tagKeyPrefix+toKey)
	dst.Tags = slices.Clone(dst.Tags)
	dst.Tags[i] = tagKeyPrefix + fromKey
	return fromKey
}

// Volume x's header, data and key tag copied onto volume y, the token
// edited to name y: the storage names x's key for y, and x's key opens
// the header. Its KMIP name says it is x's, so Mount of y refuses it,
// naming y, the key and its name, and opens no mapping.
func TestKeyNamedForAnotherVolumeIsRefused(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("x", nil)
	h.mustCreate("y", nil)
	h.mustMount("x", "c1")
	h.mustUnmount("x", "c1")
	xKey := h.copyVolume("x", "y")
	xName := h.w.keys[xKey].name

	_, err := h.m.Mount(h.ctx, "y", "c2")
	if err == nil {
		t.Fatalf("Mount of y with x's header, data and key tag succeeded: x's data is open as y")
	}
	for _, want := range []string{`"y"`, `"` + xKey + `"`, `"` + xName + `"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Mount of y: %v; want an error naming %s", err, want)
		}
	}
	if mounted, open, _ := h.up("y"); mounted || open {
		t.Errorf("after the refused Mount of y: mounted %v, mapping open %v; want neither", mounted, open)
	}
	if _, open, _ := h.up("x"); open {
		t.Error("x's mapping is open after the refused Mount of y")
	}
}

// The names that bind a key to volume v of group vg0 (UUID U): the ones
// newKeyName and legacyKeyName make for v, and no other.
func TestKeyNamesThatBindAKeyToItsVolume(t *testing.T) {
	const u, vg, v = "U-1", "vg0", "v"
	for kn, want := range map[string]bool{
		"cryptvol/U-1/v/0123456789abcdef":  true,
		"cryptvol/vg0/v":                   true,
		"cryptvol/U-1/w/0123456789abcdef":  false, // another volume
		"cryptvol/U-2/v/0123456789abcdef":  false, // v of another group
		"cryptvol/vg1/v":                   false, // v of another group, legacy
		"cryptvol/vg0/w":                   false,
		"cryptvol/vg0/v/0123456789abcdef":  false, // the group's name where its UUID goes
		"cryptvol/U-1/v":                   false, // the UUID where the name goes
		"cryptvol/U-1/v/0123456789abcde":   false, // nonce too short
		"cryptvol/U-1/v/0123456789abcdef0": false, // too long
		"cryptvol/U-1/v/0123456789ABCDEF":  false, // newKeyName writes lower case
		"cryptvol/U-1/v/0123456789abcdeg":  false,
		"cryptvol/U-1/v/x/0123456789abcde": false,
		"cryptvol/U-1/v/":                  false,
		"cryptvol/U-1//0123456789abcdef":   false,
		"":                                 false,
	} {
		if got := keyNamedFor(kn, u, vg, v); got != want {
			t.Errorf("keyNamedFor(%q) = %v, want %v", kn, got, want)
		}
	}
	if keyNamedFor("cryptvol//v/0123456789abcdef", "", vg, v) {
		t.Error("a group without a UUID accepts a name without one")
	}
	name, err := newKeyName(u, v)
	if err != nil || !keyNamedFor(name, u, vg, v) {
		t.Errorf("newKeyName made %q (%v), which does not bind its key to its volume", name, err)
	}
}

// Keys a volume legitimately has open it: a key of the name cryptvol gave
// in state file version 1, whose names are not unique, a key with several
// names one of which is the volume's, and, after a restart, a key named
// with the group's UUID (read once, from the metadata text). A key of the
// volume's name in another group is refused, and so is a key without a
// name. (Rotated keys, clones, snapshots and tenants' keys mount in
// rotate_test.go, clone_test.go and tenant_test.go, through the same
// check.)
func TestKeysOfTheVolumeStillOpenIt(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v", nil)
	id := h.w.headers["cv-v"].h.Token.KeyID
	own := h.w.keys[id].name

	h.w.keys[id].name = "cryptvol/vg0/v"
	h.mustMount("v", "c1")
	h.mustUnmount("v", "c1")

	h.restart()
	h.w.keys[id].name = own
	h.w.resetCalls()
	h.mustMount("v", "c2")
	if n := strings.Count(strings.Join(h.w.calls, " "), "lvm.MetadataVG"); n != 1 {
		t.Errorf("the first Mount after a restart read the group %d times, want once: %q", n, h.w.calls)
	}
	h.mustUnmount("v", "c2")
	h.w.resetCalls()
	h.mustMount("v", "c3")
	h.mustUnmount("v", "c3")
	if slices.ContainsFunc(h.w.calls, func(c string) bool { return strings.HasPrefix(c, "lvm.MetadataVG") }) {
		t.Errorf("a later Mount read the group again: %q", h.w.calls)
	}

	if err := h.m.checkKeyBinding(h.ctx, "v", id, []string{"label given by an operator", own}); err != nil {
		t.Errorf("a key with the volume's name among others: %v", err)
	}
	if err := h.m.checkKeyBinding(h.ctx, "v", id, nil); err == nil || !strings.Contains(err.Error(), "has no name") {
		t.Errorf("a key without a name: %v; want it refused saying so", err)
	}

	h.w.keys[id].name = strings.Replace(own, "Vg0uuid-0000", "Vg1uuid-1111", 1)
	if _, err := h.m.Mount(h.ctx, "v", "c4"); err == nil || !strings.Contains(err.Error(), "Vg1uuid-1111") {
		t.Errorf("Mount with a key of v in another volume group: %v; want it refused naming the key's name", err)
	}
	if mounted, open, _ := h.up("v"); mounted || open {
		t.Errorf("after the refused Mount: mounted %v, mapping open %v", mounted, open)
	}
}
