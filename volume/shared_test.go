package volume

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/lvm"
)

func sharedHarness(t *testing.T) *harness {
	return newHarness(t, func(c *Config) { c.Shared, c.Node = true, "node2" })
}

// Shared mode: what a shared group's volume records, and when: the maker at
// create, the host that has it mounted while it does, for inspect on every
// host.
func TestSharedVolumeRecordsItsMakerAndMounter(t *testing.T) {
	h := sharedHarness(t)
	h.mustCreate("v", nil)
	if tags := h.w.lvs["cv-v"].Tags; !slices.Contains(tags, "cryptvol_madeby_node2") {
		t.Fatalf("tags %v: want cryptvol_madeby_node2", tags)
	}
	// A host that died holding the volume left its record; this host's
	// activation proves it stale, and the record is replaced.
	h.w.lvs["cv-v"].Tags = append(h.w.lvs["cv-v"].Tags, "cryptvol_on_node1")
	h.mustMount("v", "c1")
	tags := h.w.lvs["cv-v"].Tags
	if !slices.Contains(tags, "cryptvol_on_node2") || slices.Contains(tags, "cryptvol_on_node1") {
		t.Fatalf("tags after mount %v: want cryptvol_on_node2 only", tags)
	}
	v, err := h.m.Get(h.ctx, "v")
	if err != nil || v.Status[StatusMountedOn] != "node2" {
		t.Fatalf("Get: %v, %v: want mounted_on node2", v.Status, err)
	}
	h.mustUnmount("v", "c1")
	if tags := h.w.lvs["cv-v"].Tags; slices.ContainsFunc(tags, func(t string) bool { return strings.HasPrefix(t, tagOnPrefix) }) {
		t.Fatalf("tags after the last unmount %v: want no mount record", tags)
	}
	if v, _ := h.m.Get(h.ctx, "v"); v.Status[StatusMountedOn] != "" {
		t.Errorf("mounted_on after unmount = %q", v.Status[StatusMountedOn])
	}
	h.assertConsistent()
}

// A Mount while another host holds the LV's lock fails saying so, names
// that host, and leaves nothing behind: no mapping, no record of this host.
func TestSharedMountHeldElsewhereFailsClearly(t *testing.T) {
	h := sharedHarness(t)
	h.mustCreate("v", nil)
	h.w.lvs["cv-v"].Tags = append(h.w.lvs["cv-v"].Tags, "cryptvol_on_node1")
	h.w.failNext("lvm.Activate", fmt.Errorf("activate logical volume vg0/cv-v: %w: LV locked by other host: vg0/cv-v", lvm.ErrHeldElsewhere))
	_, err := h.m.Mount(h.ctx, "v", "c1")
	if !errors.Is(err, ErrInUseElsewhere) || !strings.Contains(err.Error(), "mounted on node1") {
		t.Fatalf("Mount = %v: want ErrInUseElsewhere naming node1", err)
	}
	if len(h.w.mappings) != 0 {
		t.Errorf("mappings %v left open", h.w.mappings)
	}
	if tags := h.w.lvs["cv-v"].Tags; slices.Contains(tags, "cryptvol_on_node2") || !slices.Contains(tags, "cryptvol_on_node1") {
		t.Errorf("tags %v: node1's record must stay, none of this host's added", tags)
	}
	h.w.lvs["cv-v"].Tags = slices.DeleteFunc(h.w.lvs["cv-v"].Tags, func(t string) bool { return t == "cryptvol_on_node1" })
	h.assertConsistent()
}

// Another host's half-made volume may be its create in progress:
// reconciliation, a Create and a Remove of the name leave it alone. This
// host's own half-made volume is still undone.
func TestSharedHalfMadeVolumeOfAnotherHostIsLeftAlone(t *testing.T) {
	h := sharedHarness(t)
	h.w.lvs["cv-theirs"] = lvmLV("cv-theirs", []string{TagOurs, "cryptvol_fs_ext4", "cryptvol_madeby_node1"})
	h.w.lvs["cv-mine"] = lvmLV("cv-mine", []string{TagOurs, "cryptvol_fs_ext4", "cryptvol_madeby_node2"})
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.w.lvs["cv-theirs"]; !ok {
		t.Fatal("reconciliation removed another host's half-made volume")
	}
	if _, ok := h.w.lvs["cv-mine"]; ok {
		t.Error("reconciliation kept this host's own half-made volume")
	}
	err := h.m.Create(h.ctx, "theirs", nil)
	if err == nil || !strings.Contains(err.Error(), "being created by node1") {
		t.Errorf("Create of the name = %v: want a refusal naming node1", err)
	}
	err = h.m.Remove(h.ctx, "theirs")
	if err == nil || !strings.Contains(err.Error(), "being created by node1") {
		t.Errorf("Remove of the name = %v: want a refusal naming node1", err)
	}
	if _, ok := h.w.lvs["cv-theirs"]; !ok {
		t.Fatal("another host's half-made volume was removed")
	}
	delete(h.w.lvs, "cv-theirs")
	h.assertConsistent()
}
