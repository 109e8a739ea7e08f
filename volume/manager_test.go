package volume

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
	"github.com/cryptvol/cryptvol/volume/options"
)

func TestCreateMakesACompleteClosedVolume(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", map[string]string{"size": "100M"})

	w := h.w
	lv, ok := w.lvs["cv-v1"]
	if !ok {
		t.Fatal("no LV cv-v1")
	}
	for _, tag := range []string{"cryptvol", "cryptvol_fs_ext4", "cryptvol_key_k1", "cryptvol_ready"} {
		if !slices.Contains(lv.Tags, tag) {
			t.Errorf("LV tags %v lack %q", lv.Tags, tag)
		}
	}
	if lv.Size != 100<<20 || lv.Pool != "" {
		t.Errorf("LV size %d pool %q, want 100 MiB thick", lv.Size, lv.Pool)
	}
	hd := w.headers["cv-v1"]
	if hd == nil || hd.h.Token == nil || *hd.h.Token != (luks.Token{KeyID: "k1", Volume: "v1"}) {
		t.Fatalf("LUKS header/token wrong: %+v", hd)
	}
	if w.fsMade["cv-v1"] != "ext4" {
		t.Errorf("filesystem %q, want ext4", w.fsMade["cv-v1"])
	}
	// Named for the VG's UUID (two hosts' VGs may share a name) and this
	// create alone (a later volume of the same name gets another key).
	if k := w.keys["k1"]; k == nil || !regexp.MustCompile(`^cryptvol/Vg0uuid-0000/v1/[0-9a-f]{16}$`).MatchString(k.name) {
		t.Errorf("KMIP key k1 missing or misnamed: %+v", k)
	}
	h.assertDown("v1")
	h.assertConsistent()
	// On a single host the LV stays active (keepsActive): the first mount
	// needs no lvchange.
	if !lv.Active {
		t.Error("the new volume's LV was deactivated on a single host")
	}
	// Format before the mapping is opened, mkfs through the mapping, ready tag last.
	calls := strings.Join(w.callLog(), "\n")
	order := []string{"keys.Create", "lvm.CreateLV", "crypt.Format", "crypt.Open", "fs.Mkfs", "crypt.Close", "lvm.AddTag"}
	last := -1
	for _, op := range order {
		i := strings.Index(calls, op+" ")
		if i < last {
			t.Errorf("%s out of order in:\n%s", op, calls)
		}
		last = i
	}
}

func TestCreateThinAndXFS(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ThinPool = "pool" })
	h.mustCreate("thin1", map[string]string{"size": "7G"}) // beyond the pool's 2 GiB free, within the 8 GiB VG
	h.mustCreate("thick1", map[string]string{"thin": "false", "fs": "xfs", "size": "320M"})
	if p := h.w.lvs["cv-thin1"].Pool; p != "pool" {
		t.Errorf("thin1 pool %q, want pool", p)
	}
	if h.w.lvs["cv-thick1"].Pool != "" || h.w.fsMade["cv-thick1"] != "xfs" {
		t.Errorf("thick1: %+v fs %q", h.w.lvs["cv-thick1"], h.w.fsMade["cv-thick1"])
	}
	if !strings.Contains(h.logs.String(), "larger than the pool's free space") {
		t.Error("no warning about a thin volume larger than the pool's free space")
	}
	err := h.m.Create(h.ctx, "thin2", map[string]string{"size": "9G"})
	if err == nil || !strings.Contains(err.Error(), "more than the whole volume group") {
		t.Fatalf("9G thin volume in an 8G VG: %v", err)
	}
	h.assertConsistent()
}

func TestCreateExistingSameOptionsSucceeds(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", map[string]string{"size": "99.5M", "fs": "ext4"})
	h.w.resetCalls()
	for _, opts := range []map[string]string{
		{"size": "99.5M", "fs": "ext4"},
		{"size": "100M"}, // same after rounding to the 4 MiB extent
		{"size": "97M"},  // 97M rounds up to 100M as well
		{"fs": "ext4", "thin": "false"},
		nil, // options left out accept the existing volume
	} {
		if err := h.m.Create(h.ctx, "v1", opts); err != nil {
			t.Errorf("Create(v1, %v) on existing volume: %v", opts, err)
		}
	}
	for _, c := range h.w.callLog() {
		if strings.HasPrefix(c, "keys.Create") || strings.HasPrefix(c, "lvm.CreateLV") || strings.HasPrefix(c, "crypt.Format") {
			t.Errorf("idempotent create made something: %s", c)
		}
	}
	if len(h.w.keys) != 1 || len(h.w.lvs) != 1 {
		t.Errorf("%d keys %d LVs, want 1 and 1", len(h.w.keys), len(h.w.lvs))
	}
}

func TestCreateExistingDifferentOptionsSaysWhy(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ThinPool = "pool" })
	h.mustCreate("v1", map[string]string{"size": "1G", "thin": "false"})
	cases := map[string]struct {
		opts map[string]string
		want string
	}{
		"size": {map[string]string{"size": "2G"}, "size is 1 GiB, requested 2 GiB"},
		"fs":   {map[string]string{"fs": "xfs"}, "fs is ext4, requested xfs"},
		"thin": {map[string]string{"thin": "true"}, "thin is false, requested true"},
		"two":  {map[string]string{"size": "400M", "fs": "xfs"}, "size is 1 GiB, requested 400 MiB; fs is ext4, requested xfs"},
	}
	for name, c := range cases {
		err := h.m.Create(h.ctx, "v1", c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `volume "v1" already exists with different options`) {
			t.Errorf("%s: err = %v, want it to say %q", name, err, c.want)
		}
	}
	h.assertConsistent()
}

func TestCreateRefusesBeforeMakingAnything(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.DefaultSize = 64 << 20 })
	cases := map[string]struct {
		name string
		opts map[string]string
		want string
	}{
		"bad name":                  {"bad/name", nil, "not allowed"},
		"reserved name":             {"x_tdata", nil, "LVM reserves"},
		"unknown option":            {"v", map[string]string{"encrypt": "no"}, "allowed options: size, fs, thin"},
		"too small":                 {"v", map[string]string{"size": "32M"}, "at least 64 MiB"},
		"default too small for xfs": {"v", map[string]string{"fs": "xfs"}, "the default size 64 MiB is too small for xfs"},
		"too large thick":           {"v", map[string]string{"size": "7G"}, "more than the 6 GiB free"},
		"thin without pool":         {"v", map[string]string{"thin": "true"}, "no thin pool is configured"},
		"bad size":                  {"v", map[string]string{"size": "10 gigs"}, "allowed: a number"},
	}
	for what, c := range cases {
		err := h.m.Create(h.ctx, c.name, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", what, err, c.want)
		}
	}
	for _, call := range h.w.callLog() {
		if !strings.HasPrefix(call, "lvm.LV ") && !strings.HasPrefix(call, "lvm.VG ") &&
			!strings.HasPrefix(call, "lvm.MetadataLVs ") && !strings.HasPrefix(call, "lvm.MetadataVG ") {
			t.Errorf("refused create ran %s", call)
		}
	}
	if len(h.w.keys) != 0 || len(h.w.lvs) != 0 {
		t.Errorf("refused creates left %d keys, %d LVs", len(h.w.keys), len(h.w.lvs))
	}
}

func TestCreateRefusesForeignLV(t *testing.T) {
	h := newHarness(t)
	h.w.lvs["cv-v1"] = lvmLV("cv-v1", nil)
	err := h.m.Create(h.ctx, "v1", nil)
	if err == nil || !strings.Contains(err.Error(), "is not a cryptvol volume") {
		t.Fatalf("err = %v", err)
	}
	if len(h.w.keys) != 0 || h.w.lvs["cv-v1"] == nil {
		t.Fatal("touched a foreign LV or made a key")
	}
}

// Every step of create fails once in turn; each failure must leave nothing
// behind (no LV, key, mapping, journal entry) and name the volume and step.
func TestCreateFailureAtEachStepUndoesEarlierSteps(t *testing.T) {
	steps := map[string]string{
		"keys.Create":  "KMIP key creation",
		"lvm.CreateLV": "lvcreate",
		"crypt.Format": "luksFormat",
		"crypt.Open":   "opening the LUKS2 mapping",
		"fs.Mkfs":      "mkfs.ext4",
		"crypt.Close":  "closing the LUKS2 mapping",
		"lvm.AddTag":   "marking the volume complete",
		// A shared group's create deactivates in the same lvchange.
		"shared lvm.DeactivateAndTag": "LV deactivation and marking the volume complete",
	}
	for op, step := range steps {
		t.Run(op, func(t *testing.T) {
			h := newHarness(t)
			if o, ok := strings.CutPrefix(op, "shared "); ok {
				h, op = sharedHarness(t), o
			}
			cause := errors.New("injected " + op + " failure")
			h.w.failNext(op, cause)
			err := h.m.Create(h.ctx, "v1", nil)
			if err == nil {
				t.Fatal("create succeeded")
			}
			if !errors.Is(err, cause) || !strings.Contains(err.Error(), `volume "v1"`) || !strings.Contains(err.Error(), step) {
				t.Errorf("error %q does not wrap the cause with volume and step %q", err, step)
			}
			if strings.Contains(err.Error(), "cleanup incomplete") {
				t.Errorf("cleanup reported incomplete: %v", err)
			}
			h.w.assertNoSecret(t, "error", err.Error())
			if len(h.w.lvs) != 0 || len(h.w.keys) != 0 || len(h.w.mappings) != 0 {
				t.Errorf("left behind: LVs %v keys %d mappings %v", h.w.lvs, len(h.w.keys), h.w.mappings)
			}
			if s := h.m.st.Snapshot(); len(s.Creating) != 0 {
				t.Errorf("journal still lists %v", s.Creating)
			}
			if h.w.vg.Free != 6<<30 {
				t.Errorf("VG free %d, want all space back", h.w.vg.Free)
			}
			// The name is usable again.
			h.mustCreate("v1", nil)
			h.assertConsistent()
		})
	}
}

// A KMIP create that times out after the server made the key must not leave
// the key behind.
func TestCreateTimedOutKMIPCreateLeavesNoKey(t *testing.T) {
	h := newHarness(t)
	h.w.createOrphan = true
	err := h.m.Create(h.ctx, "v1", nil)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:5696") {
		t.Fatalf("err = %v, want the KMIP error naming the endpoint", err)
	}
	if len(h.w.keys) != 0 {
		t.Fatalf("orphan key left: %d keys", len(h.w.keys))
	}
}

// When the undo itself cannot finish (KMIP down), the journal keeps the
// create, and the next start finishes the cleanup.
func TestCreateIncompleteUndoFinishedByReconcile(t *testing.T) {
	h := newHarness(t)
	h.w.failNext("crypt.Format", errors.New("format failed"))
	kmipDown := errors.New("kmip 127.0.0.1:5696: connection refused")
	h.w.before = func(op, arg string) {
		if op == "crypt.Format" {
			h.w.failAlways("keys.Locate", kmipDown)
			h.w.failAlways("keys.Destroy", kmipDown)
		}
	}
	err := h.m.Create(h.ctx, "v1", nil)
	if err == nil || !strings.Contains(err.Error(), "cleanup incomplete") {
		t.Fatalf("err = %v, want cleanup incomplete", err)
	}
	if len(h.w.lvs) != 0 {
		t.Error("LV not removed")
	}
	if len(h.w.keys) != 1 {
		t.Fatalf("%d keys, want the one that could not be destroyed", len(h.w.keys))
	}
	if s := h.m.st.Snapshot(); len(journal.EntriesOf(s.Creating, "v1")) != 1 {
		t.Fatalf("journal lost the unfinished create: %+v", s)
	}
	h.w.before = nil
	h.w.clearFailures()
	h.restart()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if len(h.w.keys) != 0 {
		t.Error("reconcile did not destroy the orphan key")
	}
	if !strings.Contains(h.logs.String(), "undid an interrupted create") {
		t.Error("repair not logged")
	}
	h.assertConsistent()
}

func TestCreateRedoesHalfMadeVolume(t *testing.T) {
	h := newHarness(t)
	// A create that died after mkfs, before the ready tag.
	h.s.crashOn = "lvm.AddTag"
	_ = h.m.Create(h.ctx, "v1", nil)
	if lv := h.w.lvs["cv-v1"]; lv == nil || slices.Contains(lv.Tags, TagReady) {
		t.Fatal("setup: expected a half-made LV")
	}
	h.restart()
	// Without reconciling first: Create itself finishes the job.
	h.mustCreate("v1", nil)
	h.assertConsistent()
	if len(h.w.keys) != 1 {
		t.Errorf("%d keys, want 1", len(h.w.keys))
	}
}

func TestMountTwoIDs(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	p1 := h.mustMount("v1", "c1")
	want := filepath.Join(h.cfg.MountRoot, "v1", "data")
	if p1 != want {
		t.Fatalf("mountpoint %q, want %q", p1, want)
	}
	h.assertUp("v1")
	if !h.w.openOpts["cryptvol-v1"].NoWorkqueue {
		t.Error("mapping opened without the no-workqueue flags")
	}
	if p2 := h.mustMount("v1", "c2"); p2 != p1 {
		t.Fatalf("second mount %q, want %q", p2, p1)
	}
	if n := countCalls(h.w, "crypt.Open"); n != 2 { // one in create, one in mount
		t.Errorf("crypt.Open ran %d times, want 2", n)
	}
	v, err := h.m.Get(h.ctx, "v1")
	if err != nil || v.Status[StatusMountCount] != 2 || v.Status[StatusMounted] != true || v.Mountpoint != want {
		t.Fatalf("Get = %+v, %v", v, err)
	}
	h.mustUnmount("v1", "c1")
	h.assertUp("v1")
	h.mustUnmount("v1", "c2")
	h.assertDown("v1")
	if _, err := os.Stat(want); !os.IsNotExist(err) {
		t.Errorf("mountpoint directory left: %v", err)
	}
	h.assertConsistent()
	// Mount again: the same volume comes back.
	h.mustMount("v1", "c3")
	h.assertUp("v1")
}

// dockerd sends a Mount for every use of a mount point's ID: docker cp on a
// running container mounts again under the container's own ID, and its
// Unmount must not take the volume from under the container.
func TestMountRepeatedIDIsCounted(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	p := h.mustMount("v1", "c1")
	if p2 := h.mustMount("v1", "c1"); p2 != p {
		t.Fatalf("repeat mount %q, want %q", p2, p)
	}
	if ids := h.m.st.IDs("v1"); len(ids) != 1 || h.m.st.Mounts("v1")["c1"] != 2 {
		t.Fatalf("ids %v counts %v, want c1 twice", ids, h.m.st.Mounts("v1"))
	}
	// The repeat still verifies: mounts vanished behind our back come back.
	delete(h.w.mounts, p)
	if p3 := h.mustMount("v1", "c1"); p3 != p {
		t.Fatalf("re-mount %q", p3)
	}
	h.assertUp("v1")
	h.mustUnmount("v1", "c1")
	h.mustUnmount("v1", "c1")
	h.assertUp("v1") // one Mount of c1 is still unmatched
	if got := h.mustMount("v1", "c2"); got != p {
		t.Fatalf("second container got %q", got)
	}
	h.mustUnmount("v1", "c2")
	h.mustUnmount("v1", "c1")
	h.assertDown("v1")
	h.assertConsistent()
}

func TestUnmountUnknownIDIsHarmless(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustMount("v1", "c1")
	h.mustUnmount("v1", "nobody")
	h.assertUp("v1")
	h.mustUnmount("v1", "c1")
	h.mustUnmount("v1", "c1")
	h.assertDown("v1")
	if err := h.m.Unmount(h.ctx, "never-created", "x"); err != nil {
		t.Errorf("unmount of unknown volume: %v", err)
	}
}

func TestMountUnknownVolume(t *testing.T) {
	h := newHarness(t)
	_, err := h.m.Mount(h.ctx, "ghost", "c1")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `volume "ghost": no such volume`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := h.m.Mount(h.ctx, "../x", "c1"); err == nil {
		t.Fatal("mount of a bad name accepted")
	}
}

// The central promise: never hand a container a path that is not
// the decrypted filesystem.
func TestMountVerifyFailureNeverReturnsAPath(t *testing.T) {
	for name, setup := range map[string]func(w *world){
		"mount does nothing":   func(w *world) { w.silentMount = true },
		"wrong device mounted": func(w *world) { w.wrongSource = "/dev/sda1" },
		"mountinfo unreadable": func(w *world) { w.failNext("fs.MountedDevice", nil, errors.New("reading mountinfo: EIO")) },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.mustCreate("v1", nil)
			setup(h.w)
			p, err := h.m.Mount(h.ctx, "v1", "c1")
			if err == nil || p != "" {
				t.Fatalf("Mount = %q, %v; want no path and an error", p, err)
			}
			if !strings.Contains(err.Error(), `volume "v1"`) {
				t.Errorf("error %q does not name the volume", err)
			}
			h.w.silentMount, h.w.wrongSource = false, ""
			h.w.clearFailures()
			h.assertDown("v1")
			delete(h.w.mounts, filepath.Join(h.cfg.MountRoot, "v1"))
			if ids := h.m.st.IDs("v1"); len(ids) != 0 {
				t.Errorf("ids recorded for a failed mount: %v", ids)
			}
			if p, _ := h.m.Path(h.ctx, "v1"); p != "" {
				t.Errorf("Path = %q for an unmounted volume", p)
			}
		})
	}
}

func TestMountRefusesWhenSomethingElseIsMountedThere(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	target := filepath.Join(h.cfg.MountRoot, "v1")
	h.w.mounts[target] = "/dev/sdb1"
	_, err := h.m.Mount(h.ctx, "v1", "c1")
	if err == nil || !strings.Contains(err.Error(), "/dev/sdb1 is mounted at") {
		t.Fatalf("err = %v", err)
	}
	if h.w.mounts[target] != "/dev/sdb1" {
		t.Error("someone else's mount was touched")
	}
	if _, open := h.w.mappings["cryptvol-v1"]; open {
		t.Error("mapping opened")
	}
}

// Each step of a mount fails once in turn, with the LV active (as a single
// host leaves it) and inactive (after a boot that did not activate it):
// nothing is left decrypted, and the LV is left as the mount found it.
func TestMountFailureAtEachStepUndoes(t *testing.T) {
	for _, c := range []string{"crypt.IsOpen", "inactive crypt.IsOpen", "inactive lvm.Activate", "crypt.Inspect", "inactive crypt.Inspect",
		"keys.Get", "crypt.Open", "inactive crypt.Open", "fs.Mount", "inactive fs.Mount", "state.rename", "inactive state.rename"} {
		t.Run(c, func(t *testing.T) {
			h := newHarness(t)
			h.mustCreate("v1", nil)
			op, inactive := strings.CutPrefix(c, "inactive ")
			h.w.lvs["cv-v1"].Active = !inactive
			cause := errors.New("injected " + op + " failure")
			h.w.failNext(op, cause)
			p, err := h.m.Mount(h.ctx, "v1", "c1")
			if err == nil || p != "" {
				t.Fatalf("Mount = %q, %v", p, err)
			}
			if !errors.Is(err, cause) || !strings.Contains(err.Error(), `volume "v1"`) {
				t.Errorf("error %q does not wrap the cause with the volume", err)
			}
			h.w.assertNoSecret(t, "error", err.Error())
			h.assertDown("v1")
			if h.w.lvs["cv-v1"].Active == inactive {
				t.Errorf("LV active = %v after the failed mount, want %v as before it", !inactive, inactive)
			}
			if ids := h.m.st.IDs("v1"); len(ids) != 0 {
				t.Errorf("ids recorded: %v", ids)
			}
			h.assertConsistent()
		})
	}
}

func TestMountRefusesForeignHeaders(t *testing.T) {
	cases := map[string]struct {
		edit func(h *luks.Header)
		want string
	}{
		"luks1":       {func(h *luks.Header) { h.Version = 1 }, "LUKS1, expected LUKS2"},
		"cipher":      {func(h *luks.Header) { h.Cipher = "aes-cbc-essiv:sha256" }, `cipher is "aes-cbc-essiv:sha256"`},
		"key size":    {func(h *luks.Header) { h.KeyBits = 256 }, "256 bits, expected 512"},
		"no token":    {func(h *luks.Header) { h.Token = nil }, "no cryptvol-kmip token"},
		"other vol":   {func(h *luks.Header) { h.Token = &luks.Token{KeyID: "k1", Volume: "v2"} }, `belongs to volume "v2"`},
		"tag differs": {func(h *luks.Header) { h.Token = &luks.Token{KeyID: "k9", Volume: "v1"} }, `"k9" differs from the LV tag's "k1"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.mustCreate("v1", nil)
			c.edit(&h.w.headers["cv-v1"].h)
			h.w.resetCalls()
			_, err := h.m.Mount(h.ctx, "v1", "c1")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "LUKS header check") {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if countCalls(h.w, "keys.Get") != 0 {
				t.Error("fetched the key for a foreign header")
			}
			h.assertDown("v1")
		})
	}
}

func TestMountClosesStaleMappingBeforeOpening(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.w.lvs["cv-v1"].Active = true
	h.w.mappings["cryptvol-v1"] = "cv-v1"
	h.mustMount("v1", "c1")
	h.assertUp("v1")
	if countCalls(h.w, "crypt.Inspect") != 1 {
		t.Error("the stale mapping was trusted instead of re-checking the header")
	}
}

// A device held open under a volume's mapping name that maps another LV
// (made by hand, or left by something else) is not mounted as the volume:
// the container would get the other volume's data.
func TestMountRefusesAHeldMappingOfAnotherLV(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustCreate("v2", nil)
	// v1 has been used, so its filesystem has its data directory.
	h.mustMount("v1", "c0")
	if err := h.m.Unmount(h.ctx, "v1", "c0"); err != nil {
		t.Fatal(err)
	}
	h.w.lvs["cv-v1"].Active = true
	h.w.mappings["cryptvol-v2"] = "cv-v1"
	h.w.holders["cryptvol-v2"] = 1
	_, err := h.m.Mount(h.ctx, "v2", "c1")
	if !errors.Is(err, luks.ErrNotThisMapping) || !strings.Contains(err.Error(), "not this volume's") {
		t.Fatalf("Mount = %v, want a refusal naming the foreign mapping", err)
	}
	if mounted, _, _ := h.up("v2"); mounted {
		t.Fatal("the foreign mapping was mounted as the volume")
	}
	if h.w.mappings["cryptvol-v2"] != "cv-v1" {
		t.Error("the device made by someone else was changed")
	}
}

func TestRemove(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustMount("v1", "c1")
	err := h.m.Remove(h.ctx, "v1")
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), `volume "v1": volume is in use by 1 container(s)`) {
		t.Fatalf("remove while mounted: %v", err)
	}
	h.assertUp("v1")
	h.mustUnmount("v1", "c1")
	h.w.resetCalls()
	if err := h.m.Remove(h.ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if len(h.w.lvs) != 0 || len(h.w.keys) != 0 {
		t.Fatalf("left LVs %v keys %d", h.w.lvs, len(h.w.keys))
	}
	calls := strings.Join(h.w.callLog(), "\n")
	erase, rm, destroy := strings.Index(calls, "crypt.Erase"), strings.Index(calls, "lvm.RemoveLV"), strings.Index(calls, "keys.Destroy k1")
	if erase < 0 || rm < erase || destroy < erase {
		t.Errorf("want the erase first, then lvremove and the key destroy (side by side):\n%s", calls)
	}
	if strings.Contains(calls, "keys.Locate") {
		t.Error("Locate used although the token names the key")
	}
	if _, err := h.m.Get(h.ctx, "v1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after remove: %v", err)
	}
	if err := h.m.Remove(h.ctx, "v1"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no such volume") {
		t.Errorf("second remove: %v", err)
	}
	h.assertConsistent()
}

// After a boot that did not activate it (LVM's autoactivation off), a
// volume's LV is inactive: Mount and Remove activate it, from the kernel's
// answer, not the view's stale Active.
func TestMountAndRemoveActivateAnInactiveLV(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustCreate("v2", nil)
	if _, err := h.m.Get(h.ctx, "v1"); err != nil { // the view says active
		t.Fatal(err)
	}
	h.w.lvs["cv-v1"].Active, h.w.lvs["cv-v2"].Active = false, false
	h.w.resetCalls()
	h.mustMount("v1", "c1")
	if calls := strings.Join(programsOf(h), " "); !strings.HasPrefix(calls, "lvm.Activate cv-v1 ") {
		t.Errorf("mount of an inactive LV ran %q, want lvm.Activate first", calls)
	}
	h.mustUnmount("v1", "c1")
	h.assertDown("v1")
	if !h.w.lvs["cv-v1"].Active {
		t.Error("the last unmount deactivated the LV on a single host")
	}
	h.w.resetCalls()
	if err := h.m.Remove(h.ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	if calls := strings.Join(programsOf(h), " "); !strings.HasPrefix(calls, "lvm.Activate cv-v2 ") {
		t.Errorf("remove of an inactive LV ran %q, want lvm.Activate first", calls)
	}
	h.assertConsistent()
}

// A key is never destroyed because of its name alone: with the LV gone and
// nothing journaled for it, nothing proves the key is that volume's.
func TestRemoveWithLVGoneLeavesKeysFoundOnlyByName(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	delete(h.w.lvs, "cv-v1")
	if err := h.m.Remove(h.ctx, "v1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove: %v, want not found", err)
	}
	if len(h.w.keys) != 1 {
		t.Fatal("a key found by name alone was destroyed")
	}
}

func TestRemoveFailureBeforeEraseKeepsVolumeUsable(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.w.failNext("crypt.Erase", errors.New("erase failed"))
	if err := h.m.Remove(h.ctx, "v1"); err == nil {
		t.Fatal("remove succeeded")
	}
	if s := h.m.st.Snapshot(); len(s.Removing) != 0 {
		t.Fatalf("journal keeps a remove that was answered with an error: %v", s.Removing)
	}
	h.w.lvs["cv-v1"].Active = false
	h.restart()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.mustMount("v1", "c1") // still there and usable
	h.assertConsistent()
}

func TestRemoveFailureAfterEraseIsFinished(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.w.failAlways("keys.Destroy", errors.New("kmip 127.0.0.1:5696: connection refused"))
	err := h.m.Remove(h.ctx, "v1")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:5696") {
		t.Fatalf("err = %v", err)
	}
	h.w.clearFailures()
	// Retrying removes the rest: the journal names the key.
	if err := h.m.Remove(h.ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	h.assertConsistent()
}

func TestGetListPath(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ThinPool = "pool" })
	h.mustCreate("b", map[string]string{"size": "1.5G"})
	h.mustCreate("a", map[string]string{"thin": "false", "fs": "xfs", "size": "512M"})
	// A half-made volume is not listed.
	h.w.lvs["cv-half"] = lvmLV("cv-half", []string{TagOurs})
	h.mustMount("b", "c1")

	vols, err := h.m.List(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != 2 || vols[0].Name != "a" || vols[1].Name != "b" {
		t.Fatalf("List = %+v", vols)
	}
	a, b := vols[0], vols[1]
	if a.Mountpoint != "" || a.Status[StatusMounted] != false || a.Status[StatusProvision] != "thick" || a.Status[StatusFS] != "xfs" ||
		a.Status[StatusSize] != "512 MiB" || a.Status[StatusSizeBytes] != "536870912" || a.Status[StatusCipher] != "aes-xts-plain64" {
		t.Errorf("a = %+v", a)
	}
	if b.Mountpoint != filepath.Join(h.cfg.MountRoot, "b", "data") || b.Status[StatusMounted] != true || b.Status[StatusMountCount] != 1 ||
		b.Status[StatusProvision] != "thin" || b.Status[StatusThinPool] != "pool" || b.Status[StatusSize] != "1.5 GiB" {
		t.Errorf("b = %+v", b)
	}
	if a.Status[StatusKeyID] != "k2" || b.Status[StatusKeyID] != "k1" {
		t.Errorf("key ids %v %v", a.Status[StatusKeyID], b.Status[StatusKeyID])
	}
	if a.CreatedAt.IsZero() {
		t.Error("CreatedAt not set")
	}
	js, _ := json.Marshal(vols)
	h.w.assertNoSecret(t, "status", string(js))

	if p, err := h.m.Path(h.ctx, "b"); err != nil || p != b.Mountpoint {
		t.Errorf("Path(b) = %q, %v", p, err)
	}
	if p, err := h.m.Path(h.ctx, "a"); err != nil || p != "" {
		t.Errorf("Path(a) = %q, %v", p, err)
	}
	if _, err := h.m.Path(h.ctx, "half"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Path(half) = %v", err)
	}
	if _, err := h.m.Get(h.ctx, "half"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(half) = %v", err)
	}
	if _, err := h.m.Get(h.ctx, "bad/name"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(bad/name) = %v", err)
	}
}

func TestKeysWipedAndNeverInErrors(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustMount("v1", "c1")
	h.mustUnmount("v1", "c1")
	h.w.assertWiped(t)
	if len(h.w.handed) != 2 {
		t.Fatalf("%d keys handed out, want 2 (create, mount)", len(h.w.handed))
	}
	// Failures after the key is in hand: the error and logs carry no key.
	h.w.failNext("crypt.Open", errors.New("open failed"))
	_, err := h.m.Mount(h.ctx, "v1", "c2")
	if err == nil {
		t.Fatal("mount succeeded")
	}
	h.w.assertNoSecret(t, "error", err.Error())
	h.w.assertWiped(t)
	b, _ := os.ReadFile(filepath.Join(h.cfg.StateDir, StateFile))
	h.w.assertNoSecret(t, "state file", string(b))
}

func lvmLV(name string, tags []string) *lvm.LV {
	return &lvm.LV{Name: name, VG: "vg0", Path: "/dev/vg0/" + name, Size: 100 << 20, Tags: tags}
}

func countCalls(w *world, op string) int {
	n := 0
	for _, c := range w.callLog() {
		if strings.HasPrefix(c, op+" ") {
			n++
		}
	}
	return n
}

func TestNewValidatesConfig(t *testing.T) {
	h := newHarness(t)
	w := h.w.session()
	cases := map[string]struct {
		edit func(c *Config)
		want string
	}{
		"no vg":         {func(c *Config) { c.VG = "" }, "VG is empty"},
		"bad fs":        {func(c *Config) { c.DefaultFS = "zfs" }, `"zfs" is not supported`},
		"small default": {func(c *Config) { c.DefaultFS = options.FSXFS; c.DefaultSize = 100 << 20 }, "below the xfs minimum of 320 MiB"},
		"relative":      {func(c *Config) { c.MountRoot = "mnt" }, "must be absolute"},
		"bad pool":      {func(c *Config) { c.ThinPool = "po/ol" }, "thin pool name"},
		"no boot id":    {func(c *Config) { c.BootIDFile = filepath.Join(t.TempDir(), "missing") }, "reading boot id"},
	}
	for name, c := range cases {
		cfg := h.cfg
		c.edit(&cfg)
		_, err := New(cfg, fakeLVM{w}, fakeCrypt{w}, fakeFS{w}, fakeKeys{w}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
	if _, err := New(h.cfg, nil, fakeCrypt{w}, fakeFS{w}, fakeKeys{w}, nil); err == nil {
		t.Error("nil LVM accepted")
	}
}

// KMIP ids that are not tag-safe are kept in the LUKS token only; the
// volume still mounts and is removed with its key.
func TestKeyIDNotTagSafe(t *testing.T) {
	h := newHarness(t)
	h.w.keyPrefix = "urn:uuid:1234/"
	h.mustCreate("v1", nil)
	for _, tag := range h.w.lvs["cv-v1"].Tags {
		if strings.HasPrefix(tag, tagKeyPrefix) {
			t.Fatalf("unsafe key id put in tag %q", tag)
		}
	}
	if tok := h.w.headers["cv-v1"].h.Token; tok.KeyID != "urn:uuid:1234/1" {
		t.Fatalf("token key id %q", tok.KeyID)
	}
	v, _ := h.m.Get(h.ctx, "v1")
	if v.Status[StatusKeyID] != "(recorded in the LUKS2 token only)" {
		t.Errorf("status key id %v", v.Status[StatusKeyID])
	}
	h.mustMount("v1", "c1")
	h.mustUnmount("v1", "c1")
	if err := h.m.Remove(h.ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if len(h.w.keys) != 0 {
		t.Error("key survived")
	}
}

func TestMountRefusesErasedHeader(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.w.headers["cv-v1"].h.Keyslots = 0
	if _, err := h.m.Mount(h.ctx, "v1", "c1"); err == nil || !strings.Contains(err.Error(), "no keyslots left") {
		t.Fatalf("err = %v", err)
	}
	h.assertDown("v1")
}

// A first mount's debug line says what each of its steps took, in order,
// so that a request's time can be accounted for (make bench's docker run
// timeline shows it); a second mount brings nothing up and has no steps.
func TestMountLogsItsStepsInOrder(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	from := len(h.logs.String())
	h.mustMount("v1", "c1")
	got := h.logs.String()[from:]
	i := strings.Index(got, `msg="mount steps"`)
	if i < 0 {
		t.Fatalf("no mount steps line in:\n%s", got)
	}
	line := got[i:]
	line = line[:strings.IndexByte(line, '\n')]
	last := -1
	for _, step := range []string{"LUKS header check", "KMIP key fetch", "opening the LUKS2 mapping", ", mount ", "verifying the mount", "making the data directory"} {
		j := strings.Index(line, step)
		if j <= last {
			t.Fatalf("step %q missing or out of order in %s", step, line)
		}
		last = j
	}
	if !regexp.MustCompile(`making the data directory [0-9.]+(µs|ms|s)"`).MatchString(line) {
		t.Errorf("the last step has no duration: %s", line)
	}
	from = len(h.logs.String())
	h.mustMount("v1", "c2")
	if strings.Contains(h.logs.String()[from:], "mount steps") {
		t.Error("a second mount, which brings nothing up, logged steps")
	}
}
