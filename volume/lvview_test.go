package volume

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// programs returns the calls since the last reset that would have run a
// program or asked KMIP: lvm, cryptsetup, mkfs/mount/umount, keys. The
// metadata mark and the mount table are reads of a device and of /proc.
func programsOf(h *harness) []string {
	var out []string
	for _, c := range h.w.callLog() {
		// Reads of the devices' metadata mark, the mount table, sysfs
		// (IsOpen, lvm.Active), the data directory, statfs and the state file start
		// no program.
		if strings.HasPrefix(c, "lvm.MetadataMark") || strings.HasPrefix(c, "lvm.Active ") || strings.HasPrefix(c, "fs.MountedDevice") ||
			strings.HasPrefix(c, "fs.MountedUnder") || strings.HasPrefix(c, "fs.Data") || strings.HasPrefix(c, "fs.Usage") || strings.HasPrefix(c, "crypt.IsOpen") || strings.HasPrefix(c, "crypt.Mappings") || strings.HasPrefix(c, "state.") {
			continue
		}
		out = append(out, c)
	}
	return out
}

// What dockerd asks most (Get, Path, List) runs no program while the volume
// group is unchanged, mounted or not.
func TestReadsRunNoProgramWhileTheGroupIsUnchanged(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustCreate("v2", nil)
	p := h.mustMount("v2", "c1")
	if _, err := h.m.List(h.ctx); err != nil { // the first read after the plugin's own changes lists once
		t.Fatal(err)
	}
	h.w.resetCalls()
	for i := 0; i < 3; i++ {
		vols, err := h.m.List(h.ctx)
		if err != nil || len(vols) != 2 || vols[0].Name != "v1" || vols[1].Name != "v2" {
			t.Fatalf("List = %+v, %v", vols, err)
		}
		if vols[0].Mountpoint != "" || vols[0].Status[StatusMounted] != false ||
			vols[1].Mountpoint != p || vols[1].Status[StatusMounted] != true {
			t.Fatalf("List mounts wrong: %+v", vols)
		}
		v, err := h.m.Get(h.ctx, "v2")
		if err != nil || v.Mountpoint != p {
			t.Fatalf("Get v2 = %+v, %v", v, err)
		}
		if got, err := h.m.Path(h.ctx, "v1"); err != nil || got != "" {
			t.Fatalf("Path v1 = %q, %v", got, err)
		}
		if _, err := h.m.Get(h.ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get nosuch: %v, want ErrNotFound", err)
		}
	}
	if got := programsOf(h); len(got) != 0 {
		t.Errorf("reads of an unchanged group ran %d programs: %v", len(got), got)
	}
}

// The view follows every commit: the plugin's own, and one made outside it
// (an operator's lvremove, another host on shared devices).
func TestReadsFollowEveryMetadataCommit(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	if _, err := h.m.Get(h.ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	h.mustCreate("v2", nil)
	if _, err := h.m.Get(h.ctx, "v2"); err != nil {
		t.Fatalf("a volume the plugin just made: %v", err)
	}
	delete(h.w.lvs, "cv-v1") // lvremove by hand
	if _, err := h.m.Get(h.ctx, "v1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a volume removed outside: %v, want ErrNotFound", err)
	}
	if vols, _ := h.m.List(h.ctx); len(vols) != 1 || vols[0].Name != "v2" {
		t.Fatalf("List after an outside remove: %+v", vols)
	}
	if err := h.m.Remove(h.ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Path(h.ctx, "v2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Path of a removed volume: %v, want ErrNotFound", err)
	}
	// A half-made volume (no ready tag) is not listed, and appears once
	// its create finishes.
	h.mustCreate("v3", nil)
	lv := h.w.lvs["cv-v3"]
	lv.Tags = slices.DeleteFunc(lv.Tags, func(s string) bool { return s == TagReady })
	if _, err := h.m.Get(h.ctx, "v3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a half-made volume: %v, want ErrNotFound", err)
	}
	lv.Tags = append(lv.Tags, TagReady)
	if _, err := h.m.Get(h.ctx, "v3"); err != nil {
		t.Fatalf("Get once ready: %v", err)
	}
}

// A mark that cannot be read is never trusted: each read lists.
func TestReadsListWhenTheMarkIsUnreadable(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	if _, err := h.m.Get(h.ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	h.w.failAlways("lvm.MetadataMark", errors.New("device gone"))
	delete(h.w.lvs, "cv-v1")
	h.w.resetCalls()
	if _, err := h.m.Get(h.ctx, "v1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get with the mark unreadable: %v, want ErrNotFound", err)
	}
	if got := programsOf(h); !slices.ContainsFunc(got, func(c string) bool { return strings.HasPrefix(c, "lvm.ListLVs") }) {
		t.Errorf("no listing with the mark unreadable: %v", got)
	}
	for i := 0; i < 3; i++ {
		h.m.List(h.ctx)
	}
	if n := strings.Count(h.logs.String(), "metadata mark unreadable"); n != 1 {
		t.Errorf("an unreadable mark logged %d times over 4 reads, want once", n)
	}
}

// Start-up reconciliation lists every volume; that listing is the view's,
// so the List dockerd sends once the plugin answers runs no lvs.
func TestReconcileSeedsTheView(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustCreate("v2", nil)
	h.restart()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.w.resetCalls()
	vols, err := h.m.List(h.ctx)
	if err != nil || len(vols) != 2 {
		t.Fatalf("List after start-up = %+v, %v", vols, err)
	}
	if got := programsOf(h); len(got) != 0 {
		t.Errorf("the first List after start-up ran %v", got)
	}
	// A commit after the seed (an operator's lvremove) is still seen.
	delete(h.w.lvs, "cv-v1")
	if vols, err := h.m.List(h.ctx); err != nil || len(vols) != 1 || vols[0].Name != "v2" {
		t.Fatalf("List after an outside remove = %+v, %v", vols, err)
	}
}

// A metadata text that cannot be read (damaged, or lvm's format changed) is
// not the end of reads: they list with lvs, and say so once.
func TestReadsListWithLvsWhenTheTextIsUnreadable(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.w.failAlways("lvm.MetadataLVs", errors.New("metadata text does not match its checksum"))
	h.w.resetCalls()
	if _, err := h.m.Get(h.ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if got := programsOf(h); !slices.Contains(got, "lvm.ListLVs cryptvol") {
		t.Errorf("text unreadable, and no lvs: %v", got)
	}
	// The listing is the view's all the same: an unchanged group runs
	// nothing more.
	h.w.resetCalls()
	h.m.Get(h.ctx, "v1")
	if got := programsOf(h); len(got) != 0 {
		t.Errorf("unchanged group after an lvs listing: %v", got)
	}
	h.mustCreate("v2", nil)
	if vols, err := h.m.List(h.ctx); err != nil || len(vols) != 2 {
		t.Fatalf("List after a create = %+v, %v", vols, err)
	}
	if n := strings.Count(h.logs.String(), "metadata text unreadable; volumes are listed with lvs"); n != 1 {
		t.Errorf("an unreadable text logged %d times over two listings, want once", n)
	}
}

// Create looks its name and the group's free space up in the metadata text;
// with the text unreadable it asks lvs and vgs, and refuses and creates
// exactly as before.
func TestCreateAsksLvmWhenTheTextIsUnreadable(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.w.failAlways("lvm.MetadataLVs", errors.New("metadata text does not match its checksum"))
	h.w.failAlways("lvm.MetadataVG", errors.New("metadata text does not match its checksum"))
	h.w.resetCalls()
	h.mustCreate("v2", nil)
	if got := programsOf(h); !slices.Contains(got, "lvm.LV cv-v2") || !slices.Contains(got, "lvm.VG ") {
		t.Errorf("text unreadable, and create asked neither lvs nor vgs: %v", got)
	}
	if err := h.m.Create(h.ctx, "v1", map[string]string{"size": "400M"}); err == nil || !strings.Contains(err.Error(), "already exists with different options") {
		t.Fatalf("create of an existing name with other options: %v", err)
	}
	if err := h.m.Create(h.ctx, "v3", map[string]string{"size": "70G"}); err == nil || !strings.Contains(err.Error(), "free in volume group") {
		t.Fatalf("create larger than the group: %v", err)
	}
	h.assertConsistent()
}
