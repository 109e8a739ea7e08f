package volume

import (
	"errors"
	"path/filepath"
	"slices"

	"github.com/sirupsen/logrus"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/volume/internal/journal"
)

// A rotation gives the volume a new key and leaves only it: the old key is
// destroyed, one keyslot opens the header, token and tag name the new key,
// and the volume mounts with it. Unmounted, the LV is left inactive;
// mounted, it stays mounted and open throughout.
func TestRotateReplacesTheKey(t *testing.T) {
	for _, mounted := range []bool{false, true} {
		h := newHarness(t)
		h.mustCreate("v", nil)
		if mounted {
			h.runContainer("v", "c1")
		}
		old := h.w.headers["cv-v"].h.Token.KeyID
		r, err := h.m.Rotate(h.ctx, "v")
		if err != nil {
			t.Fatal(err)
		}
		if r.OldKeyID != old || r.NewKeyID == "" || r.NewKeyID == old {
			t.Fatalf("rotation %+v; want old %s replaced by a new key", r, old)
		}
		if _, ok := h.w.keys[old]; ok {
			t.Error("the old key still exists on the KMIP server")
		}
		hd := h.w.headers["cv-v"]
		if hd.h.Token.KeyID != r.NewKeyID || hd.h.Keyslots != 1 || !hd.opens(h.w.keys[r.NewKeyID].b) {
			t.Errorf("header after rotation: token %s, %d keyslots; want the new key alone", hd.h.Token.KeyID, hd.h.Keyslots)
		}
		h.assertConsistent()
		if mounted {
			h.assertUp("v")
			h.stopContainer("v", "c1")
		} else {
			h.assertDown("v")
		}
		h.mustMount("v", "c2")
		h.mustUnmount("v", "c2")
		h.assertDown("v")
	}
}

// A failure before the new keyslot exists is undone: the new key is
// destroyed and the old one still opens the volume.
func TestRotateFailureIsUndone(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v", nil)
	old := h.w.headers["cv-v"].h.Token.KeyID
	h.w.failures["crypt.AddKey"] = []error{errors.New("cryptsetup: device busy")}
	_, err := h.m.Rotate(h.ctx, "v")
	if err == nil || !strings.Contains(err.Error(), "undone") || !strings.Contains(err.Error(), old) {
		t.Fatalf("Rotate with a failing luksAddKey: %v; want it undone naming the old key", err)
	}
	if len(h.w.keys) != 1 || h.w.keys[old] == nil {
		t.Errorf("keys after an undone rotation: %d, want only the old one", len(h.w.keys))
	}
	h.assertConsistent()
	if _, err := h.m.Rotate(h.ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("rotate of a missing volume: %v", err)
	}
}

// A remove during an unsettled rotation (KMIP gone before the old key's
// destroy) destroys both keys.
func TestRemoveTakesOverAnUnsettledRotation(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v", nil)
	h.w.failures["keys.Destroy"] = []error{errors.New("kmip: i/o timeout")}
	if _, err := h.m.Rotate(h.ctx, "v"); err == nil {
		t.Fatal("rotation succeeded although the old key's destroy failed")
	}
	if len(h.m.st.Snapshot().Rotating) != 1 || len(h.w.keys) != 2 {
		t.Fatalf("want the rotation journaled with both keys alive, got %d entries, %d keys", len(h.m.st.Snapshot().Rotating), len(h.w.keys))
	}
	if err := h.m.Remove(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if len(h.w.keys) != 0 || len(h.m.st.Snapshot().Rotating) != 0 {
		t.Errorf("after remove: %d keys, %d rotation entries; want none", len(h.w.keys), len(h.m.st.Snapshot().Rotating))
	}
}

// A rotation stopped between the token and the tag (lvchange failing) is
// finished by the next Mount, which would otherwise refuse the mismatch,
// and by the sweeper.
func TestMountAndSweepFinishAStoppedRotation(t *testing.T) {
	for _, by := range []string{"mount", "sweep"} {
		h := newHarness(t)
		h.mustCreate("v", nil)
		h.w.failures["lvm.ReplaceTags"] = []error{errors.New("lvchange: metadata locked")}
		if _, err := h.m.Rotate(h.ctx, "v"); err == nil {
			t.Fatal("rotation succeeded with a failing lvchange")
		}
		if by == "mount" {
			h.mustMount("v", "c1")
			h.mustUnmount("v", "c1")
		} else {
			h.m.Sweep(h.ctx)
		}
		h.assertConsistent()
	}
}

// A volume whose LV holds a copy of another volume's header (dd from it,
// or a snapshot of it) is removed without touching the other volume's key:
// its token names the other volume.
func TestRemoveNeverDestroysAKeyACopiedHeaderNames(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("src", nil)
	h.mustCreate("cp", nil)
	srcKey := h.w.headers["cv-src"].h.Token.KeyID
	cpKey := h.w.headers["cv-cp"].h.Token.KeyID
	copied := *h.w.headers["cv-src"]
	tok := *copied.h.Token
	copied.h.Token = &tok
	h.w.headers["cv-cp"] = &copied // cp's LV now starts with src's header
	if err := h.m.Remove(h.ctx, "cp"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.w.keys[srcKey]; !ok {
		t.Fatal("removing a volume whose LV held a copy of src's header destroyed src's key")
	}
	if _, ok := h.w.keys[cpKey]; ok {
		t.Error("cp's own key (its tag's) was not destroyed")
	}
	h.mustMount("src", "c1")
	h.mustUnmount("src", "c1")
}

// In a shared group the LV is this host's only while it is active: header
// work on a volume no container uses activates it and deactivates it
// after (on a single host it stays active: keepsActive).
func TestSharedHeaderWorkLeavesTheLVInactive(t *testing.T) {
	h := sharedHarness(t)
	h.mustCreate("v", nil)
	if h.w.lvs["cv-v"].Active {
		t.Fatal("a shared group's new volume is left active")
	}
	if _, err := h.m.Rotate(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if h.w.lvs["cv-v"].Active {
		t.Error("the rotation left a shared group's LV active")
	}
	if _, err := h.m.Reencrypt(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if h.w.lvs["cv-v"].Active {
		t.Error("the reencryption left a shared group's LV active")
	}
	h.mustMount("v", "c1")
	h.mustUnmount("v", "c1")
	h.assertDown("v")
	h.assertConsistent()
}

// A rotation that stopped after making its key, before adding its keyslot
// (a crash), is undone when it is settled if another host of a shared
// group has since rotated the volume into the same keyslot number: its key
// does not open that keyslot, so finishing it would point the token and
// tag at a key that opens nothing (and a later remove would destroy the
// key that does). The volume keeps the other host's key and mounts.
func TestSettleUndoesARotationWhoseKeyslotAnotherHostTook(t *testing.T) {
	h := sharedHarness(t)
	h.mustCreate("v", nil)
	h.s.crashOn = "crypt.AddKey"
	if _, err := h.m.Rotate(h.ctx, "v"); err == nil {
		t.Fatal("the rotation went on past its crash")
	}
	stopped := h.m.st.Snapshot().Rotating
	if len(stopped) != 1 || stopped[0].NewKeyID == "" || stopped[0].NewSlot != 1 {
		t.Fatalf("journal %+v, want one rotation into keyslot 1 with its key made", stopped)
	}

	// node1 rotates the volume meanwhile; its own state has no entry.
	own, ownS := h.cfg, h.s
	h.cfg.StateDir, h.cfg.MountRoot, h.cfg.Node = filepath.Join(t.TempDir(), "state"), filepath.Join(t.TempDir(), "mnt"), "node1"
	h.s = h.w.session()
	other, err := h.newManager()
	if err != nil {
		t.Fatal(err)
	}
	rot, err := other.Rotate(h.ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	h.cfg, h.s = own, ownS
	if hd := h.w.headers["cv-v"]; !slices.Equal(hd.h.SlotIDs, []int{1}) {
		t.Fatalf("node1's rotation left keyslots %v, want its own in keyslot 1", hd.h.SlotIDs)
	}

	h.restart()
	h.mustMount("v", "c1")
	h.mustUnmount("v", "c1")
	if tok := h.w.headers["cv-v"].h.Token; tok == nil || tok.KeyID != rot.NewKeyID {
		t.Errorf("token %+v, want node1's key %q", tok, rot.NewKeyID)
	}
	if _, ok := h.w.keys[stopped[0].NewKeyID]; ok {
		t.Error("the stopped rotation's key was not destroyed")
	}
	if n := len(h.m.st.Snapshot().Rotating); n != 0 {
		t.Errorf("%d rotations still journaled", n)
	}
	h.assertConsistent()
}

// The sweeper takes the journal before the volume's lock: a rotation it
// saw unfinished may be finished by the time it holds the lock. It must
// then leave the volume alone: in a shared group, settling it again would
// activate the LV on this host for a moment after the rotation, and the
// other host's mount would find it locked.
func TestAStaleJournalEntryIsNotSettledAgain(t *testing.T) {
	h := sharedHarness(t)
	h.mustCreate("v", nil)
	var seen []journal.Rotation
	h.w.before = func(op, arg string) {
		if op == "crypt.AddKey" && seen == nil {
			seen = h.m.st.Snapshot().Rotating
		}
	}
	if _, err := h.m.Rotate(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	h.w.before = nil
	if len(seen) != 1 {
		t.Fatalf("journal during the rotation: %+v", seen)
	}
	h.w.resetCalls()
	err := h.m.withLock("v", func(log logrus.FieldLogger) error { return h.m.settleRotation(h.ctx, seen[0], log) })
	if err != nil {
		t.Fatal(err)
	}
	if calls := h.w.callLog(); len(calls) != 0 {
		t.Errorf("settling a rotation that was already finished made calls: %v", calls)
	}
	h.assertDown("v")
	h.assertConsistent()
}
