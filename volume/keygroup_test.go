package volume

import (
	"slices"
	"testing"

	"github.com/cryptvol/cryptvol/keys"
)

// keyGroupOf is the KMIP Object Group of the key an LV's tag names.
func (h *harness) keyGroupOf(name string) string {
	h.t.Helper()
	id := tagValue(h.w.lvs[lvName(name)].Tags, tagKeyPrefix)
	k, ok := h.w.keys[id]
	if !ok {
		h.t.Fatalf("volume %q: its tag names key %q, which the KMIP server does not have", name, id)
	}
	return k.group
}

// In a shared group every host rotates every volume on schedule, and
// `cryptvol decommission NODE` destroys the keys in NODE's group: a key
// must stay in its volume's maker's group across rotations, whoever
// rotates. A volume this host made, or one without a maker tag, keeps this
// host's group.
func TestSharedRotationKeepsTheKeyInItsMakersGroup(t *testing.T) {
	h := sharedHarness(t) // node2
	h.mustCreate("theirs", nil)
	lv := h.w.lvs["cv-theirs"]
	lv.Tags = slices.DeleteFunc(lv.Tags, func(t string) bool { return t == tagMadeByPrefix+"node2" })
	lv.Tags = append(lv.Tags, tagMadeByPrefix+"node1")
	h.w.keys[tagValue(lv.Tags, tagKeyPrefix)].group = keys.NodeGroup("node1")

	for range 2 {
		if _, err := h.m.Rotate(h.ctx, "theirs"); err != nil {
			t.Fatal(err)
		}
		if g := h.keyGroupOf("theirs"); g != "cryptvol-node:node1" {
			t.Fatalf("node2 rotated node1's volume: the new key is in group %q, want cryptvol-node:node1", g)
		}
	}

	h.mustCreate("mine", nil)
	if _, err := h.m.Rotate(h.ctx, "mine"); err != nil {
		t.Fatal(err)
	}
	if g := h.keyGroupOf("mine"); g != "cryptvol-node:node2" {
		t.Errorf("node2 rotated its own volume: the new key is in group %q, want cryptvol-node:node2", g)
	}

	h.mustCreate("untagged", nil)
	lv = h.w.lvs["cv-untagged"]
	lv.Tags = slices.DeleteFunc(lv.Tags, func(t string) bool { return t == tagMadeByPrefix+"node2" })
	if _, err := h.m.Rotate(h.ctx, "untagged"); err != nil {
		t.Fatal(err)
	}
	if g := h.keyGroupOf("untagged"); g != "cryptvol-node:node2" {
		t.Errorf("a volume without a maker tag, rotated by node2: the new key is in group %q, want node2's", g)
	}

	h.assertConsistent()
}

// On a single host the maker tag is never written: a rotation's key goes
// in the plugin's own group, as a create's does.
func TestSingleHostRotationKeepsThePluginsGroup(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Node = "solo" })
	h.mustCreate("v", nil)
	if _, err := h.m.Rotate(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if g := h.keyGroupOf("v"); g != "cryptvol-node:solo" {
		t.Errorf("the rotated key is in group %q, want the plugin's cryptvol-node:solo", g)
	}
}
