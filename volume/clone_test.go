package volume

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func thinHarness(t *testing.T) *harness {
	return newHarness(t, func(c *Config) { c.ThinPool = "pool" })
}

// A clone has the source's data and filesystem and a KMIP key of its own:
// the source's key does not open it, and removing the source leaves it
// working. A mounted source is frozen for the snapshot and thawed after.
func TestCloneHasItsOwnKey(t *testing.T) {
	h := thinHarness(t)
	h.mustCreate("src", map[string]string{"size": "256M", "mountopts": "noatime"})
	h.runContainer("src", "c1")
	h.mustCreate("cl", map[string]string{"from": "src"})
	if len(h.w.froze) != 1 || h.w.froze[0] != h.m.mountpoint("src") || len(h.w.frozen) != 0 {
		t.Errorf("freezes %v, frozen now %v; want the mounted source frozen once and thawed", h.w.froze, h.w.frozen)
	}
	src, cl := h.w.headers["cv-src"], h.w.headers["cv-cl"]
	srcKey, clKey := src.h.Token.KeyID, cl.h.Token.KeyID
	if clKey == srcKey || cl.h.Token.Volume != "cl" || cl.h.Keyslots != 1 {
		t.Fatalf("clone token %+v with %d keyslots; want its own key alone", cl.h.Token, cl.h.Keyslots)
	}
	if cl.opens(h.w.keys[srcKey].b) || !cl.opens(h.w.keys[clKey].b) {
		t.Error("the clone opens with the source's key, or not with its own")
	}
	tags := h.w.lvs["cv-cl"].Tags
	if slices.Contains(tags, tagKeyPrefix+srcKey) || !slices.Contains(tags, tagKeyPrefix+clKey) ||
		!slices.Contains(tags, tagMountOptsPrefix+"noatime") || !slices.Contains(tags, TagReady) {
		t.Errorf("clone tags %v", tags)
	}
	if h.w.fsSize["cv-cl"] != h.w.fsSize["cv-src"] || h.w.lvs["cv-cl"].Size != 256<<20 {
		t.Error("the clone is not the source's filesystem and size")
	}
	h.stopContainer("src", "c1")
	if err := h.m.Remove(h.ctx, "src"); err != nil {
		t.Fatal(err)
	}
	h.mustMount("cl", "c2")
	h.mustUnmount("cl", "c2")
	h.assertConsistent()
}

func TestCloneReencryptAndRefusals(t *testing.T) {
	h := thinHarness(t)
	h.mustCreate("src", nil)
	h.mustCreate("cl", map[string]string{"from": "src", "reencrypt": "true"})
	if h.w.headers["cv-cl"].reencrypted != 1 || h.w.headers["cv-src"].reencrypted != 0 {
		t.Error("reencrypt=true did not give the clone (alone) a new volume key")
	}
	h.mustCreate("thick", map[string]string{"thin": "false"})
	for opts, want := range map[string]map[string]string{
		"is a thick volume; clones are thin snapshots": {"from": "thick"},
		`option from: volume "nope": no such volume`:   {"from": "nope"},
		"option size cannot go with from":              {"from": "src", "size": "1G"},
		"option reencrypt is only for a clone":         {"reencrypt": "true"},
		"option from names the volume itself":          {"from": "x"},
	} {
		err := h.m.Create(h.ctx, "x", want)
		if err == nil || !strings.Contains(err.Error(), opts) {
			t.Errorf("%v: %v; want %q", want, err, opts)
		}
	}
	if _, ok := h.w.lvs["cv-x"]; ok {
		t.Error("a refused clone made an LV")
	}
	h.assertConsistent()
}

// readonly=true (cryptvol snapshot): opened --readonly, mounted ro; resize
// and reencrypt refuse it; readonly needs from.
func TestReadOnlySnapshot(t *testing.T) {
	h := thinHarness(t)
	h.mustCreate("src", nil)
	h.mustCreate("snap", map[string]string{"from": "src", "readonly": "true"})
	if !h.w.layout["cv-snap"] || func() bool { m, o, _ := h.up("snap"); return m || o }() {
		t.Fatalf("a read-only snapshot has no data directory after its create (made while it is writable), or is left open")
	}
	mp := h.mustMount("snap", "c1")
	if !h.w.openOpts[mappingPrefix+"snap"].ReadOnly || h.w.mountOpt[filepath.Dir(mp)] != "ro" {
		t.Errorf("open %+v, mount %q; want read-only", h.w.openOpts[mappingPrefix+"snap"], h.w.mountOpt[filepath.Dir(mp)])
	}
	h.mustUnmount("snap", "c1")
	if _, err := h.m.Resize(h.ctx, "snap", "2G"); err == nil || !strings.Contains(err.Error(), "read-only snapshot") {
		t.Errorf("resize: %v", err)
	}
	if _, err := h.m.Reencrypt(h.ctx, "snap"); err == nil || !strings.Contains(err.Error(), "read-only snapshot") {
		t.Errorf("reencrypt: %v", err)
	}
	if err := h.m.Create(h.ctx, "x", map[string]string{"readonly": "true"}); err == nil || !strings.Contains(err.Error(), "only for a snapshot") {
		t.Errorf("readonly without from: %v", err)
	}
	h.assertConsistent()
}

// An xfs clone's filesystem has its source's UUID, which xfs refuses to
// mount twice unless told nouuid (xfs(5)): every xfs volume is mounted
// nouuid, so a clone and its source are used at once, either mounted
// first. Found by the soak: a source could not be mounted while a
// container used its clone.
func TestXFSCloneAndSourceMountAtOnce(t *testing.T) {
	h := thinHarness(t)
	h.mustCreate("src", map[string]string{"fs": "xfs", "size": "320M"})
	h.mustCreate("cl", map[string]string{"from": "src"})
	h.runContainer("cl", "c1")
	h.runContainer("src", "c2")
	h.stopContainer("src", "c2")
	h.stopContainer("cl", "c1")
	h.runContainer("src", "c3")
	h.runContainer("cl", "c4")
	h.stopContainer("cl", "c4")
	h.stopContainer("src", "c3")
	h.assertConsistent()
}
