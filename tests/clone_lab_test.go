//go:build lab

package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/internal/command"
)

// Requirement: "A clone of a mounted volume holds the data as of the
// snapshot; writes to either do not show in the other; removing the source
// leaves the clone working; the clone's KMIP key differs." Through the
// real plugin on the lab's thin pool; also: the source's key does not open
// the clone, and reencrypt=true gives the clone its own volume key.
func TestLabCloneOfAMountedVolume(t *testing.T) {
	p := newPlug(t, "CRYPTVOL_THIN_POOL="+os.Getenv("CRYPTVOL_LAB_POOL"))
	p.start("")
	p.must("create src", p.create("csrc", map[string]string{"size": "64M"}))
	// Unmounted first: a source left mounted would be held, and every later
	// stack on the lab's group would mount it again for its holder.
	t.Cleanup(func() { _ = p.unmount("csrc", "w"); _ = p.remove("csrc") })
	mp, err := p.mount("csrc", "w")
	p.must("mount src", err)
	// Not synced: the freeze for the snapshot must bring it to the disk.
	must(t, os.WriteFile(filepath.Join(mp, "f"), []byte("one"), 0o644))

	p.must("clone the mounted source", p.create("cclone", map[string]string{"from": "csrc"}))
	t.Cleanup(func() { _ = p.remove("cclone") })
	must(t, os.WriteFile(filepath.Join(mp, "after"), []byte("src only"), 0o644))

	_, srcKey := headerOf(t, "csrc")
	slots, cloneKey := headerOf(t, "cclone")
	if cloneKey == srcKey || slots != 1 {
		t.Fatalf("clone: token key %s (source %s), %d keyslots; want its own key alone", cloneKey, srcKey, slots)
	}
	tags, err := run(t, "lvs", "--noheadings", "-o", "lv_tags", os.Getenv("CRYPTVOL_LAB_VG")+"/cv-cclone")
	if err != nil || strings.Contains(tags, "cryptvol_key_"+srcKey+",") || strings.HasSuffix(strings.TrimSpace(tags), "cryptvol_key_"+srcKey) {
		t.Errorf("clone tags %q carry the source's key (%v)", tags, err)
	}
	// The source's key does not open the clone.
	k, err := labKeys(t).Get(context.Background(), srcKey)
	must(t, err)
	lv := os.Getenv("CRYPTVOL_LAB_VG") + "/cv-cclone"
	run(t, "lvchange", "-ay", lv)
	_, terr := command.Run(context.Background(), command.ProgramAndAction, k.Bytes(), "cryptsetup", "open", "--test-passphrase", "--key-file", "-", "/dev/"+lv)
	k.Wipe()
	run(t, "lvchange", "-an", lv)
	if terr == nil {
		t.Error("the source's KMIP key opens the clone")
	}

	cmp, err := p.mount("cclone", "c")
	p.must("mount clone", err)
	if b, err := os.ReadFile(filepath.Join(cmp, "f")); err != nil || string(b) != "one" {
		t.Errorf("the clone holds %q, %v; want what the source held at the snapshot", b, err)
	}
	if _, err := os.Stat(filepath.Join(cmp, "after")); err == nil {
		t.Error("a write to the source after the snapshot shows in the clone")
	}
	must(t, os.WriteFile(filepath.Join(cmp, "clone-only"), []byte("x"), 0o644))
	if _, err := os.Stat(filepath.Join(mp, "clone-only")); err == nil {
		t.Error("a write to the clone shows in the source")
	}
	p.must("unmount clone", p.unmount("cclone", "c"))

	p.must("clone with reencrypt", p.create("cclone2", map[string]string{"from": "csrc", "reencrypt": "true"}))
	t.Cleanup(func() { _ = p.remove("cclone2") })
	if volumeKeyDigest(t, "cclone2") == volumeKeyDigest(t, "csrc") {
		t.Error("reencrypt=true left the clone with the source's volume key")
	}

	// A read-only snapshot (cryptvol snapshot's create): the data as of now,
	// and no container can change it.
	p.must("read-only snapshot", p.create("csnap", map[string]string{"from": "csrc", "readonly": "true"}))
	t.Cleanup(func() { _ = p.remove("csnap") })
	smp, err := p.mount("csnap", "s")
	p.must("mount snapshot", err)
	if b, err := os.ReadFile(filepath.Join(smp, "after")); err != nil || string(b) != "src only" {
		t.Errorf("the snapshot holds %q, %v; want the source as of the snapshot", b, err)
	}
	if err := os.WriteFile(filepath.Join(smp, "x"), []byte("x"), 0o644); err == nil {
		t.Error("a read-only snapshot took a write")
	}
	p.must("unmount snapshot", p.unmount("csnap", "s"))

	p.must("unmount src", p.unmount("csrc", "w"))
	p.must("remove src", p.remove("csrc"))
	cmp, err = p.mount("cclone", "c")
	p.must("mount the clone after the source is gone", err)
	if b, err := os.ReadFile(filepath.Join(cmp, "f")); err != nil || string(b) != "one" {
		t.Errorf("after the source's removal the clone holds %q, %v", b, err)
	}
	p.must("unmount", p.unmount("cclone", "c"))
	readBackClone := func(v string) {
		mp, err := p.mount(v, "r")
		p.must("mount "+v, err)
		if b, err := os.ReadFile(filepath.Join(mp, "f")); err != nil || string(b) != "one" {
			t.Errorf("%s holds %q, %v", v, b, err)
		}
		p.must("unmount", p.unmount(v, "r"))
	}
	readBackClone("cclone2")
}
