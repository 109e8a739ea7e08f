package volume

import (
	"slices"
	"strings"
	"testing"
)

// opCost is what one operation asked of the layers below, in order, and
// how many programs that started: lvm/, luks/ and mount/ start one program
// per call except crypt.Format (luksFormat, token import; isLuks only when
// a fresh LV shows a LUKS magic, luks/header.go), which its own tests
// pin, and crypt.Inspect, which reads an intact header from the device and
// runs luksDump only for a damaged one (luks/header.go), crypt.Erase,
// which wipes such a header itself (luks/wipe.go), fs.Mount and
// fs.Unmount, which are mount(2) and umount2(2) (mount/syscall.go), and
// lvm.MetadataLVs and lvm.MetadataVG, which read the metadata text from
// the devices, and crypt.Open and crypt.Close, ioctls for a plain LUKS2
// mapping (luks/dmcreate.go, luks/dmremove.go; cryptsetup for an
// integrity one); keys.
// calls are KMIP work and start none. Reads of the metadata
// mark, the mount table, sysfs and the state file start nothing and are
// left out (programs in lvview_test.go).
func opCost(h *harness) (calls string, programs int) {
	var out []string
	for _, c := range programsOf(h) {
		op := strings.Fields(c)[0]
		out = append(out, op)
		switch {
		case op == "crypt.Format":
			programs += 2
		case op == "crypt.Inspect", op == "crypt.Erase", op == "fs.Mount", op == "fs.Unmount", op == "lvm.MetadataLVs", op == "lvm.MetadataVG",
			op == "crypt.Open", op == "crypt.Close":
		case !strings.HasPrefix(op, "keys."):
			programs++
		}
	}
	return strings.Join(out, " "), programs
}

// The programs and KMIP calls of each step of a volume's life, as `docker
// run` and `docker volume` drive it, pinned: a change that adds a program
// start to any of them fails here and must say why. On a single
// host the LV stays active between uses (keepsActive).
func TestOperationCostsArePinned(t *testing.T) {
	h := newHarness(t)
	get := func(name string) {
		if _, err := h.m.Get(h.ctx, name); err != nil {
			t.Fatalf("Get %s: %v", name, err)
		}
	}
	steps := []struct {
		what     string
		do       func()
		want     string
		programs int
	}{
		// The name and the group's free space come from the metadata
		// text (no lvs, no vgs).
		{"create", func() { h.mustCreate("v1", nil) },
			"lvm.MetadataLVs lvm.MetadataVG keys.Create lvm.CreateLV crypt.Format crypt.Open fs.Mkfs crypt.Close lvm.AddTag", 5},
		// The create's commits moved the mark: the view reads the
		// metadata text again, from the devices.
		{"first read after create (reads the text once)", func() { get("v1") }, "lvm.MetadataLVs", 0},
		{"get", func() { get("v1") }, "", 0},
		// The header check (read from the device: the header is checked
		// before the key goes near it), KMIP Get, the keyslot unlocked and
		// the mapping made with ioctls, mount(2):
		// the LV comes from the view, its activation and a stale mapping
		// are looked for in sysfs.
		{"first mount", func() { h.mustMount("v1", "c1") }, "crypt.Inspect keys.Get crypt.Open fs.Mount", 0},
		{"path", func() {
			if p, err := h.m.Path(h.ctx, "v1"); err != nil || p == "" {
				t.Fatalf("Path = %q, %v", p, err)
			}
		}, "", 0},
		{"second mount (docker cp)", func() { h.mustMount("v1", "c1") }, "", 0},
		{"unmount, not the last", func() { h.mustUnmount("v1", "c1") }, "", 0},
		{"last unmount", func() { h.mustUnmount("v1", "c1") }, "fs.Unmount crypt.Close", 0},
		{"list", func() {
			if vols, err := h.m.List(h.ctx); err != nil || len(vols) != 1 {
				t.Fatalf("List = %+v, %v", vols, err)
			}
		}, "", 0},
		{"remove", func() {
			if err := h.m.Remove(h.ctx, "v1"); err != nil {
				t.Fatal(err)
			}
			// lvremove and the key destroy run side by side.
		}, "crypt.Inspect crypt.Erase keys.Destroy lvm.RemoveLV", 1},
	}
	for _, s := range steps {
		h.w.resetCalls()
		s.do()
		got, n := opCost(h)
		if strings.Contains(got, "keys.Destroy") { // the one step with calls side by side
			f := strings.Fields(got)
			slices.Sort(f[2:])
			got = strings.Join(f, " ")
		}
		if got != s.want || n != s.programs {
			t.Errorf("%s ran %d programs:\n  %s\nwant %d:\n  %s", s.what, n, got, s.programs, s.want)
		}
	}
}
