package volume

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// exportOf exports name, failing the test on error.
func exportOf(h *harness, name string) []byte {
	h.t.Helper()
	var b bytes.Buffer
	if _, err := h.m.Export(h.ctx, name, &b); err != nil {
		h.t.Fatalf("Export(%s): %v", name, err)
	}
	return b.Bytes()
}

// An export imported on the same host under another name is the same
// filesystem, opened by a key of its own; the source and its key are
// untouched. A mounted source is frozen for the copy and thawed after.
func TestExportImportUnderAnotherName(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("src", map[string]string{"size": "64M"})
	h.runContainer("src", "c1")
	h.w.contents["cv-src"] = "written before the export"
	srcKey := h.w.headers["cv-src"].h.Token.KeyID
	stream := exportOf(h, "src")
	target := h.cfg.MountRoot + "/src"
	if len(h.w.froze) != 1 || h.w.froze[0] != target || h.w.frozen[target] {
		t.Errorf("the mounted source was not frozen for the copy and thawed after: froze %v, frozen now %v", h.w.froze, h.w.frozen[target])
	}
	if bytes.Contains(stream, []byte(h.w.keys[srcKey].b)) {
		t.Error("the export holds the key's bytes")
	}
	im, err := h.m.Import(h.ctx, "dst", bytes.NewReader(stream), false)
	if err != nil {
		t.Fatal(err)
	}
	if im.From != "src" || im.OldKeyID != srcKey || im.NewKeyID == "" || im.NewKeyID == srcKey || im.SizeBytes != 64<<20 {
		t.Fatalf("import %+v", im)
	}
	if h.w.contents["cv-dst"] != "written before the export" {
		t.Errorf("the imported volume holds %q", h.w.contents["cv-dst"])
	}
	if _, ok := h.w.keys[srcKey]; !ok {
		t.Error("the import destroyed the exported volume's key")
	}
	if !strings.Contains(h.w.keys[im.NewKeyID].name, "/dst/") {
		t.Errorf("the imported volume's key is named %q, not for dst", h.w.keys[im.NewKeyID].name)
	}
	h.stopContainer("src", "c1")
	h.assertConsistent()
	h.mustMount("dst", "c2")
	h.mustUnmount("dst", "c2")
	if _, err := h.m.Import(h.ctx, "dst", bytes.NewReader(stream), true); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("an import onto an existing volume: %v", err)
	}
	im2, err := h.m.Import(h.ctx, "dst2", bytes.NewReader(stream), true)
	if err != nil || !im2.Reencrypted || h.w.headers["cv-dst2"].reencrypted != h.w.headers["cv-src"].reencrypted+1 {
		t.Errorf("import with reencrypt: %+v, %v", im2, err)
	}
	h.assertConsistent()
}

// What an import refuses makes nothing: a flipped byte, a cut file, bytes
// that are no export, and a file whose key this host may not fetch (here:
// destroyed since).
func TestImportRefusesBadFilesMakingNothing(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("src", map[string]string{"size": "64M"})
	stream := exportOf(h, "src")
	nothingMade := func(what string) {
		t.Helper()
		if _, ok := h.w.lvs["cv-dst"]; ok || len(h.w.keys) != 1 {
			t.Errorf("%s: LV made %v, %d keys (want the source's alone)", what, ok, len(h.w.keys))
		}
	}
	for name, bad := range map[string][]byte{
		"a flipped byte":  flip(stream, len(stream)/2),
		"a flipped last":  flip(stream, len(stream)-1),
		"cut short":       stream[:len(stream)-40],
		"not an export":   []byte("tar file\x00\x00"),
		"a manifest only": stream[:200],
	} {
		if _, err := h.m.Import(h.ctx, "dst", bytes.NewReader(bad), false); err == nil {
			t.Errorf("%s: imported", name)
		}
		nothingMade(name)
	}
	srcKey := h.w.headers["cv-src"].h.Token.KeyID
	delete(h.w.keys, srcKey)
	_, err := h.m.Import(h.ctx, "dst", bytes.NewReader(stream), false)
	if err == nil || !strings.Contains(err.Error(), "cannot be used by this host") {
		t.Errorf("an import whose key is gone: %v", err)
	}
	if _, ok := h.w.lvs["cv-dst"]; ok || len(h.w.keys) != 0 {
		t.Errorf("a refused import left LV %v, %d keys", ok, len(h.w.keys))
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

// An import under the exported volume's own name (as on another host)
// cut short by a crash at any step never destroys the exported volume's
// key, which its token names until the import is complete.
func TestImportUnderTheSameNameCrashedNeverDestroysTheExportedKey(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("db", map[string]string{"size": "64M"})
	stream := exportOf(h, "db")
	srcKey := h.w.headers["cv-db"].h.Token.KeyID
	// The other host: db's LV is not in its group; the KMIP server is shared.
	delete(h.w.lvs, "cv-db")
	delete(h.w.headers, "cv-db")
	before := h.s.n.Load()
	if _, err := h.m.Import(h.ctx, "db", bytes.NewReader(stream), false); err != nil {
		t.Fatal(err)
	}
	steps := int(h.s.n.Load() - before)
	for k := 1; k <= steps; k++ {
		t.Run(fmt.Sprintf("step%02d", k), func(t *testing.T) {
			h := newHarness(t)
			h.mustCreate("db", map[string]string{"size": "64M"})
			stream := exportOf(h, "db")
			srcKey := h.w.headers["cv-db"].h.Token.KeyID
			delete(h.w.lvs, "cv-db")
			delete(h.w.headers, "cv-db")
			h.s.crashAt = int(h.s.n.Load()) + k
			_, _ = h.m.Import(h.ctx, "db", bytes.NewReader(stream), false)
			h.restart()
			if err := h.m.Reconcile(h.ctx); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			if _, ok := h.w.keys[srcKey]; !ok {
				t.Fatal("the exported volume's key was destroyed")
			}
			if _, err := h.m.Get(h.ctx, "db"); err != nil {
				if _, err := h.m.Import(h.ctx, "db", bytes.NewReader(stream), false); err != nil {
					t.Fatalf("import again: %v", err)
				}
			}
			h.mustMount("db", "c1")
			h.mustUnmount("db", "c1")
			if _, ok := h.w.keys[srcKey]; !ok {
				t.Fatal("the exported volume's key was destroyed")
			}
			delete(h.w.keys, srcKey) // the other host's volume's, not this one's
			h.assertConsistent()
		})
	}
	if _, ok := h.w.keys[srcKey]; !ok {
		t.Error("the exported volume's key was destroyed")
	}
}

// The plugin killed during an export, with the volume's filesystem frozen
// for the copy: the kernel keeps the freeze, and start-up thaws it, so the
// volume's writers go on.
func TestStartThawsAFilesystemAnExportLeftFrozen(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v", map[string]string{"size": "64M"})
	h.runContainer("v", "c1")
	before := h.s.n.Load()
	exportOf(h, "v")
	steps := int(h.s.n.Load() - before)
	frozenAt := 0
	for k := 1; k <= steps && frozenAt == 0; k++ {
		h2 := newHarness(t)
		h2.mustCreate("v", map[string]string{"size": "64M"})
		h2.runContainer("v", "c1")
		target := h2.cfg.MountRoot + "/v"
		h2.s.crashAt = int(h2.s.n.Load()) + k
		var b bytes.Buffer
		_, _ = h2.m.Export(h2.ctx, "v", &b)
		if !h2.w.frozen[target] {
			continue
		}
		frozenAt = k
		h2.restart()
		if err := h2.m.Reconcile(h2.ctx); err != nil {
			t.Fatal(err)
		}
		if h2.w.frozen[target] {
			t.Fatalf("crash at step %d left the filesystem frozen, and start-up did not thaw it", k)
		}
		h2.assertUp("v")
		h2.stopContainer("v", "c1")
	}
	if frozenAt == 0 {
		t.Fatal("no crash point left the filesystem frozen: the test shows nothing")
	}
}

// A read-only snapshot in use is exported without a freeze: nothing can
// write to it.
func TestExportOfAMountedReadOnlySnapshotFreezesNothing(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ThinPool = "pool" })
	h.mustCreate("src", map[string]string{"size": "64M"})
	h.mustCreate("snap", map[string]string{"from": "src", "readonly": "true"})
	h.runContainer("snap", "c1")
	h.w.froze = nil
	exportOf(h, "snap")
	if len(h.w.froze) != 0 {
		t.Errorf("froze %v for a read-only snapshot", h.w.froze)
	}
	h.stopContainer("snap", "c1")
}
