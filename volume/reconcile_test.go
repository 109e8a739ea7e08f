package volume

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/volume/internal/journal"
)

func readState(t *testing.T, h *harness) journal.State {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.cfg.StateDir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var s journal.State
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("state file is not JSON: %v\n%s", err, b)
	}
	return s
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != StateFile {
			t.Errorf("stray file in state directory: %s", e.Name())
		}
	}
}

func TestStatePersistedAndReloadedByNewManager(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	h.runContainer("v1", "c2")

	s := readState(t, h)
	if s.BootID != "boot-1" || s.Mounts["v1"]["c1"] != 1 || s.Mounts["v1"]["c2"] != 1 {
		t.Fatalf("state on disk: %+v", s)
	}
	assertNoTempFiles(t, h.cfg.StateDir)
	if fi, err := os.Stat(filepath.Join(h.cfg.StateDir, StateFile)); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("state file mode %v, %v: want private", fi.Mode(), err)
	}

	h.restart() // a new plugin process, same boot
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.assertUp("v1")
	v, err := h.m.Get(h.ctx, "v1")
	if err != nil || v.Status[StatusMountCount] != 2 {
		t.Fatalf("after restart Get = %+v, %v", v, err)
	}
	if err := h.m.Remove(h.ctx, "v1"); !errors.Is(err, ErrInUse) {
		t.Fatalf("remove after restart: %v", err)
	}
	h.stopContainer("v1", "c1")
	h.assertUp("v1")
	h.stopContainer("v1", "c2")
	h.assertDown("v1")
	h.assertConsistent()
}

// A failed write must leave the previous file in place: the rename is the
// commit point.
func TestStateWriteFailureKeepsOldFileAndFailsTheMount(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustMount("v1", "c1")
	before, _ := os.ReadFile(filepath.Join(h.cfg.StateDir, StateFile))

	h.w.failNext("state.rename", errors.New("disk full"))
	if p, err := h.m.Mount(h.ctx, "v1", "c2"); err == nil || p != "" || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Mount = %q, %v", p, err)
	}
	after, _ := os.ReadFile(filepath.Join(h.cfg.StateDir, StateFile))
	if string(before) != string(after) {
		t.Fatalf("state file changed by a failed write:\n%s\n---\n%s", before, after)
	}
	assertNoTempFiles(t, h.cfg.StateDir)
	// c1 still holds it: the failed second mount must not tear it down.
	h.assertUp("v1")
	if ids := h.m.st.IDs("v1"); strings.Join(ids, ",") != "c1" {
		t.Fatalf("in-memory ids %v, want c1", ids)
	}
}

func TestCorruptStateFileStopsStart(t *testing.T) {
	h := newHarness(t)
	os.WriteFile(filepath.Join(h.cfg.StateDir, StateFile), []byte("{not json"), 0o600)
	_, err := h.newManager()
	if err == nil || !strings.Contains(err.Error(), "not valid JSON") || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("err = %v", err)
	}
}

func TestRebootDiscardsMountIDs(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustCreate("v2", nil)
	h.mustMount("v1", "c1")

	// Reboot: kernel state is gone; LVM auto-activated v2 at boot.
	h.w.mounts = map[string]string{}
	h.w.mappings = map[string]string{}
	for _, lv := range h.w.lvs {
		lv.Active = false
	}
	h.w.lvs["cv-v2"].Active = true
	os.WriteFile(h.bootIDs, []byte("boot-2\n"), 0o644)

	h.restart()
	if ids := h.m.st.IDs("v1"); len(ids) != 0 {
		t.Fatalf("ids survived a reboot: %v", ids)
	}
	if !strings.Contains(h.logs.String(), "discarding mount IDs recorded before the last reboot") {
		t.Error("discard not logged")
	}
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if s := readState(t, h); s.BootID != "boot-2" || len(s.Mounts) != 0 {
		t.Errorf("state after reconcile: %+v", s)
	}
	h.assertDown("v2")
	if err := h.m.Remove(h.ctx, "v1"); err != nil {
		t.Fatalf("remove after reboot: %v", err)
	}
	h.assertConsistent()
}

// The plugin died after mounting but before recording the ID: docker got
// an error, so nothing uses the mount. Reconcile takes it down.
func TestReconcileClosesStaleMountAndMapping(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.s.crashOn = "state.rename"
	if _, err := h.m.Mount(h.ctx, "v1", "c1"); err == nil {
		t.Fatal("mount succeeded")
	}
	h.assertUp("v1") // the dead process could not clean up
	h.restart()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.assertDown("v1")
	logs := h.logs.String()
	for _, want := range []string{"took down a volume no container holds"} {
		if !strings.Contains(logs, want) {
			t.Errorf("repair %q not logged", want)
		}
	}
	if !strings.Contains(logs, "op=reconcile") || !strings.Contains(logs, "volume=v1") {
		t.Errorf("repairs not logged with volume= and op= fields:\n%s", logs)
	}
	h.assertConsistent()
}

// IDs recorded but the volume not mounted (an unmount that finished its
// teardown and died before recording it): the IDs are dropped.
func TestReconcileDropsStaleIDs(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustMount("v1", "c1")
	// Someone unmounted it; the mapping is still open.
	delete(h.w.mounts, filepath.Join(h.cfg.MountRoot, "v1"))
	h.restart()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.assertDown("v1")
	if ids := h.m.st.IDs("v1"); len(ids) != 0 {
		t.Fatalf("stale ids kept: %v", ids)
	}
	if !strings.Contains(h.logs.String(), "dropped stale mount IDs") {
		t.Error("not logged")
	}
	if err := h.m.Remove(h.ctx, "v1"); err != nil {
		t.Fatalf("remove: %v", err)
	}
}

func TestReconcileKeepsLiveMounts(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustMount("v1", "c1")
	h.restart()
	h.w.resetCalls()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.assertUp("v1")
	for _, c := range h.w.callLog() {
		if strings.HasPrefix(c, "fs.Unmount") || strings.HasPrefix(c, "crypt.Close") || strings.HasPrefix(c, "lvm.Deactivate") {
			t.Errorf("reconcile touched a live volume: %s", c)
		}
	}
	h.mustUnmount("v1", "c1")
	h.assertDown("v1")
}

func TestReconcileRemovesHalfCreatedVolume(t *testing.T) {
	h := newHarness(t)
	// An LV tagged ours with no LUKS header and no journal entry (the state
	// directory was lost): undone. Keys that merely carry its name are not
	// provably its (a later volume could own them): they are left.
	h.w.lvs["cv-half"] = lvmLV("cv-half", []string{TagOurs, "cryptvol_fs_ext4"})
	h.w.keys["k7"] = &fakeKey{name: "cryptvol/vg0/half", b: make([]byte, 32)}
	h.mustCreate("good", nil)
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.w.lvs["cv-half"]; ok {
		t.Error("half-made LV kept")
	}
	if _, ok := h.w.keys["k7"]; !ok || len(h.w.keys) != 2 {
		t.Errorf("keys %v: want good's and the one found only by name", slices.Collect(maps.Keys(h.w.keys)))
	}
	if !strings.Contains(h.logs.String(), "removed a half-made volume") {
		t.Error("not logged")
	}
	delete(h.w.keys, "k7")
	h.assertConsistent()
}

func TestReconcileLeavesForeignLVsAlone(t *testing.T) {
	h := newHarness(t)
	h.w.lvs["data"] = lvmLV("data", []string{TagOurs}) // tagged, not our naming
	h.w.lvs["cv-x"] = lvmLV("cv-x", nil)               // our naming, not tagged
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if h.w.lvs["data"] == nil || h.w.lvs["cv-x"] == nil {
		t.Fatal("reconcile removed an LV that is not a cryptvol volume")
	}
}

func TestReconcileStrayMountpoint(t *testing.T) {
	h := newHarness(t)
	// A volume removed outside cryptvol while mounted.
	target := filepath.Join(h.cfg.MountRoot, "gone")
	os.MkdirAll(target, 0o755)
	h.w.mounts[target] = "/dev/mapper/cryptvol-gone"
	h.w.mappings["cryptvol-gone"] = "cv-gone"
	h.w.lvs["cv-gone"] = lvmLV("cv-gone", nil) // so the mapping has a device; not ours
	h.m.st.Update(func(s *journal.State) { s.AddMount("gone", "c1") })
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if len(h.w.mounts) != 0 || len(h.w.mappings) != 0 {
		t.Errorf("stray mount %v / mapping %v left", h.w.mounts, h.w.mappings)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Error("stray mountpoint directory left")
	}
	if ids := h.m.st.IDs("gone"); len(ids) != 0 {
		t.Error("ids of a missing volume kept")
	}
}

// A failure on one volume does not stop the others being repaired, and is
// reported with the volume's name.
func TestReconcileCarriesOnAndReports(t *testing.T) {
	// A single host: two mappings a crash left open, one refuses to close.
	h := newHarness(t)
	h.mustCreate("a", nil)
	h.mustCreate("b", nil)
	for _, n := range []string{"a", "b"} {
		h.w.mappings["cryptvol-"+n] = "cv-" + n
	}
	h.w.failNext("crypt.Close", errors.New("device busy"))
	err := h.m.Reconcile(h.ctx)
	if err == nil || !strings.Contains(err.Error(), "device busy") || !strings.Contains(err.Error(), "reconcile") {
		t.Fatalf("err = %v", err)
	}
	if len(h.w.mappings) != 1 {
		t.Fatalf("mappings still open %v, want exactly the failed one", h.w.mappings)
	}

	// A shared group: two LVs a crash left active, one refuses to go.
	h = sharedHarness(t)
	h.mustCreate("a", nil)
	h.mustCreate("b", nil)
	for _, n := range []string{"a", "b"} {
		h.w.lvs["cv-"+n].Active = true
	}
	h.w.failNext("lvm.Deactivate", errors.New("device busy"))
	err = h.m.Reconcile(h.ctx)
	if err == nil || !strings.Contains(err.Error(), "device busy") || !strings.Contains(err.Error(), "reconcile") {
		t.Fatalf("shared: err = %v", err)
	}
	active := 0
	for _, lv := range h.w.lvs {
		if lv.Active {
			active++
		}
	}
	if active != 1 {
		t.Fatalf("shared: %d LVs still active, want exactly the failed one", active)
	}
}

// On a single host LVs stay active between uses, so a restart finds every
// volume's LV active; a volume at rest (nothing mounted, its mapping
// closed) is no repair, costs no program, and keeps its LV, while
// IDs recorded for it are stale and dropped.
func TestReconcileLeavesVolumesAtRest(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("a", nil)
	h.mustCreate("b", nil)
	if err := h.m.st.Update(func(s *journal.State) { s.AddMount("b", "gone") }); err != nil {
		t.Fatal(err)
	}
	// An empty mount point left behind (a crash between umount and
	// rmdir) goes; the mount root is read once for all volumes.
	leftover := filepath.Join(h.cfg.MountRoot, "b")
	if err := os.MkdirAll(leftover, 0o700); err != nil {
		t.Fatal(err)
	}
	h.restart()
	trail := auditTrail(t, h)
	h.w.resetCalls()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the empty mount point of a volume at rest is left (%v)", err)
	}
	if got := programsOf(h); len(got) != 1 || got[0] != "lvm.MetadataLVs cryptvol" {
		t.Errorf("reconcile ran %q, want one read of the metadata text", got)
	}
	for _, n := range []string{"a", "b"} {
		if !h.w.lvs["cv-"+n].Active {
			t.Errorf("volume %s: reconcile deactivated a volume at rest", n)
		}
	}
	if ids := h.m.st.IDs("b"); len(ids) != 0 {
		t.Errorf("stale IDs kept: %v", ids)
	}
	var repairs []string
	for _, e := range readTrail(t, h, trail) {
		if e.Op == "volume.repair" {
			repairs = append(repairs, e.Volume+": "+e.Detail)
		}
	}
	if want := []string{"b: dropped stale mount IDs: its mapping is closed (rule 4)"}; !slices.Equal(repairs, want) {
		t.Errorf("repairs %q, want %q (a volume at rest is none)", repairs, want)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "its mapping is closed") {
		t.Errorf("the dropped stale IDs were not logged:\n%s", logs)
	}
	h.assertConsistent()

	// sysfs unreadable at once: each volume is asked on its own, with the
	// same outcome.
	if err := os.MkdirAll(leftover, 0o700); err != nil {
		t.Fatal(err)
	}
	h.restart()
	h.w.failNext("crypt.Mappings", errors.New("sysfs: injected failure"))
	h.w.resetCalls()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if got := programsOf(h); len(got) != 1 {
		t.Errorf("reconcile without the sysfs listing ran %q, want one listing", got)
	}
	if n := strings.Count(strings.Join(h.w.callLog(), "\n"), "crypt.IsOpen"); n != 2 {
		t.Errorf("%d IsOpen calls, want one per volume", n)
	}
	if !h.w.lvs["cv-a"].Active || !h.w.lvs["cv-b"].Active {
		t.Error("a volume at rest was deactivated")
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("without the listing, the empty mount point is left (%v)", err)
	}
	h.assertConsistent()
}

// Start-up reads the LVs from the metadata text and their activation from
// sysfs. Where sysfs cannot tell for a volume with mount IDs (rule 4 would
// drop them as stale), lvs decides, and a volume in use keeps its IDs; a
// text that cannot be read is listed with lvs.
func TestReconcileAsksLvsWhenTheTextOrSysfsCannotTell(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("a", nil)
	h.mustMount("a", "c1")
	h.restart()
	h.w.failAlways("lvm.Active", errors.New("sysfs unreadable"))
	h.w.resetCalls()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if got := programsOf(h); !slices.Contains(got, "lvm.ListLVs cryptvol") {
		t.Errorf("sysfs could not tell, and no lvs: %v", got)
	}
	if ids := h.m.st.IDs("a"); !slices.Equal(ids, []string{"c1"}) {
		t.Fatalf("a mounted volume lost its mount IDs: %v", ids)
	}
	h.w.clearFailures()

	h.restart()
	h.w.failAlways("lvm.MetadataLVs", errors.New("metadata text does not match its checksum"))
	h.w.resetCalls()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if got := programsOf(h); !slices.Contains(got, "lvm.ListLVs cryptvol") {
		t.Errorf("text unreadable, and no lvs: %v", got)
	}
	if ids := h.m.st.IDs("a"); !slices.Equal(ids, []string{"c1"}) {
		t.Fatalf("a mounted volume lost its mount IDs: %v", ids)
	}
}
