package volume

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/volume/options"
)

func withGrace(d time.Duration) func(*Config) { return func(c *Config) { c.RemoveGrace = d } }

// clock makes the harness's manager (and any after a restart, via
// h.restart's callers setting it again) read a time the test moves.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// Under a grace, docker volume rm makes the volume vanish from Docker and
// frees its name at once, closes it, and deactivates its key; the trash
// lists it; the same name removed twice is two entries, which a restore by
// name refuses to choose between; each comes back with its data's key
// replaced by a new, Active one named for the name it comes back under,
// and mounts.
func TestRemoveUnderGraceGoesToTrashAndRestores(t *testing.T) {
	h := newHarness(t, withGrace(72*time.Hour))
	c := &clock{t: time.Unix(1765000000, 0)}
	h.m.now = c.now
	h.mustCreate("v", nil)
	h.runContainer("v", "c1")
	h.stopContainer("v", "c1")
	first := h.w.headers["cv-v"].h.Token.KeyID
	if err := h.m.Remove(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Get(h.ctx, "v"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after a remove into the trash: %v, want ErrNotFound", err)
	}
	if vols, _ := h.m.List(h.ctx); len(vols) != 0 {
		t.Fatalf("List after a remove into the trash: %v", vols)
	}
	if !h.w.keys[first].deactivated {
		t.Error("the trashed volume's key is still Active")
	}
	h.assertConsistent()

	c.t = c.t.Add(time.Second)
	h.mustCreate("v", nil)
	second := h.w.headers["cv-v"].h.Token.KeyID
	if err := h.m.Remove(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	trash, err := h.m.Trash(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(trash) != 2 || trash[0].Volume != "v" || trash[0].KeyID != first || trash[1].KeyID != second ||
		!trash[0].RemovedAt.Equal(time.Unix(1765000000, 0)) || !trash[0].PurgeAt.Equal(trash[0].RemovedAt.Add(72*time.Hour)) || trash[0].KeyPending {
		t.Fatalf("trash %+v; want two entries of v, oldest first, with their keys and times", trash)
	}
	if _, err := h.m.Restore(h.ctx, "v", ""); err == nil || !strings.Contains(err.Error(), trash[0].ID) || !strings.Contains(err.Error(), trash[1].ID) {
		t.Fatalf("restore by a name in the trash twice: %v; want a refusal naming both ids", err)
	}
	r, err := h.m.Restore(h.ctx, trash[0].ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Volume != "v" || r.OldKeyID != first || r.NewKeyID == "" || r.NewKeyID == first {
		t.Fatalf("restore %+v", r)
	}
	if _, ok := h.w.keys[first]; ok {
		t.Error("the restored volume's old key still exists")
	}
	if hd := h.w.headers["cv-v"]; hd.h.Token.KeyID != r.NewKeyID || !hd.opens(h.w.keys[r.NewKeyID].b) || h.w.keys[r.NewKeyID].deactivated {
		t.Error("the restored volume is not opened by its new, Active key")
	}
	if _, err := h.m.Restore(h.ctx, trash[1].ID, ""); err == nil || !strings.Contains(err.Error(), "restore trash entry "+trash[1].ID+" under another name") {
		t.Fatalf("restore onto an existing volume: %v", err)
	}
	r2, err := h.m.Restore(h.ctx, trash[1].ID, "v2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.w.keys[r2.NewKeyID].name, "/v2/") {
		t.Errorf("a volume restored as v2 has a key named %q, not bound to v2", h.w.keys[r2.NewKeyID].name)
	}
	h.assertConsistent()
	for _, v := range []string{"v", "v2"} {
		h.mustMount(v, "c2")
		h.mustUnmount(v, "c2")
	}
	if trash, _ := h.m.Trash(h.ctx); len(trash) != 0 {
		t.Errorf("trash after both restores: %+v", trash)
	}
	h.assertConsistent()
}

// The sweeper purges an entry once its grace has passed, exactly as a
// remove destroys a volume: header erased, LV gone, key destroyed; not
// before.
func TestSweepPurgesOnceTheGraceHasPassed(t *testing.T) {
	h := newHarness(t, withGrace(time.Hour))
	c := &clock{t: time.Unix(1765000000, 0)}
	h.m.now = c.now
	h.mustCreate("v", nil)
	key := h.w.headers["cv-v"].h.Token.KeyID
	if err := h.m.Remove(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(59 * time.Minute)
	h.m.Sweep(h.ctx)
	if trash, _ := h.m.Trash(h.ctx); len(trash) != 1 {
		t.Fatalf("trash before the grace ends: %+v", trash)
	}
	c.t = c.t.Add(time.Minute)
	h.m.Sweep(h.ctx)
	if trash, _ := h.m.Trash(h.ctx); len(trash) != 0 {
		t.Fatalf("trash after the grace: %+v", trash)
	}
	if _, ok := h.w.keys[key]; ok || len(h.w.lvs) != 0 {
		t.Errorf("after the purge: key there %v, LVs %v", ok, h.w.lvs)
	}
	if !slices.ContainsFunc(h.w.calls, func(c string) bool { return strings.HasPrefix(c, "crypt.Erase ") }) {
		t.Error("the purge did not erase the LUKS header")
	}
	h.assertConsistent()
}

// KMIP away at the remove: the volume goes to the trash all the same (its
// data is closed and hidden); the key's deactivation is shown pending and
// done by the sweeper once KMIP answers. A failing rename leaves the volume
// as it was.
func TestTrashWithKMIPAwayAndAFailedRename(t *testing.T) {
	h := newHarness(t, withGrace(time.Hour))
	h.mustCreate("v", nil)
	key := h.w.headers["cv-v"].h.Token.KeyID
	h.w.failures["keys.Deactivate"] = []error{errors.New("kmip 127.0.0.1:5696: connection refused")}
	if err := h.m.Remove(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if trash, _ := h.m.Trash(h.ctx); len(trash) != 1 || !trash[0].KeyPending || h.w.keys[key].deactivated {
		t.Fatalf("trash with KMIP away: %+v", trash)
	}
	h.m.Sweep(h.ctx)
	if trash, _ := h.m.Trash(h.ctx); len(trash) != 1 || trash[0].KeyPending || !h.w.keys[key].deactivated {
		t.Fatalf("trash after a sweep with KMIP back: %+v", trash)
	}
	h.assertConsistent()

	h.mustCreate("w", nil)
	h.w.failures["lvm.Rename"] = []error{errors.New("lvrename: VG lock failed")}
	if err := h.m.Remove(h.ctx, "w"); err == nil || !strings.Contains(err.Error(), "not removed") {
		t.Fatalf("remove with a failing rename: %v", err)
	}
	if _, err := h.m.Get(h.ctx, "w"); err != nil {
		t.Fatalf("the volume is gone after a failed move to the trash: %v", err)
	}
	h.mustMount("w", "c1")
	h.mustUnmount("w", "c1")
	h.assertConsistent()
}

// What Restore refuses, making nothing: ids it did not make, names not in
// the trash, an LV named like a trash entry that cryptvol did not put
// there, and a key whose KMIP name binds it to another volume.
func TestRestoreRefusesWhatIsNotItsTrash(t *testing.T) {
	h := newHarness(t, withGrace(time.Hour))
	for _, what := range []string{"", "+1", "v+", "v+0123", "v+12a", "../v+1", "v+1+2"} {
		if _, err := h.m.Restore(h.ctx, what, ""); err == nil {
			t.Errorf("restore of %q succeeded", what)
		}
	}
	if _, err := h.m.Restore(h.ctx, "nope", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("restore of a name not in the trash: %v", err)
	}
	h.mustCreate("v", nil)
	if err := h.m.Remove(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	trash, _ := h.m.Trash(h.ctx)
	if _, err := h.m.Restore(h.ctx, trash[0].ID, "bad name"); err == nil {
		t.Error("restore under an invalid name succeeded")
	}
	// The header and tag of the trash entry say another volume's key.
	h.mustCreate("x", nil)
	xKey := h.w.headers["cv-x"].h.Token.KeyID
	lv := h.w.lvs["cv-"+trash[0].ID]
	hd := h.w.headers["cv-"+trash[0].ID]
	own := hd.h.Token.KeyID
	hd.h.Token.KeyID = xKey
	for i, tg := range lv.Tags {
		if strings.HasPrefix(tg, tagKeyPrefix) {
			lv.Tags[i] = tagKeyPrefix + xKey
		}
	}
	keysBefore := len(h.w.keys)
	if _, err := h.m.Restore(h.ctx, trash[0].ID, ""); err == nil || !strings.Contains(err.Error(), "not a name of that volume") {
		t.Fatalf("restore of an entry whose token names another volume's key: %v", err)
	}
	if len(h.w.keys) != keysBefore || h.w.lvs["cv-v"] != nil {
		t.Errorf("a refused restore left %d keys (want %d) or a volume", len(h.w.keys), keysBefore)
	}
	hd.h.Token.KeyID = own
	for i, tg := range lv.Tags {
		if strings.HasPrefix(tg, tagKeyPrefix) {
			lv.Tags[i] = tagKeyPrefix + own
		}
	}
	if _, err := h.m.Restore(h.ctx, trash[0].ID, ""); err != nil {
		t.Fatal(err)
	}
	h.assertConsistent()
}

// With the grace turned off after volumes went to the trash, the first
// sweep purges them, and no later sweep reads the trash again.
func TestGraceTurnedOffPurgesAtTheFirstSweep(t *testing.T) {
	h := newHarness(t, withGrace(time.Hour))
	h.mustCreate("v", nil)
	if err := h.m.Remove(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	h.cfg.RemoveGrace = 0
	h.restart()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.m.Sweep(h.ctx)
	if len(h.w.lvs) != 0 || len(h.w.keys) != 0 {
		t.Fatalf("after the first sweep with no grace: LVs %v, %d keys", h.w.lvs, len(h.w.keys))
	}
	h.w.calls = nil
	h.m.Sweep(h.ctx)
	if slices.ContainsFunc(h.w.calls, func(c string) bool { return strings.HasPrefix(c, "lvm.MetadataLVs ") }) {
		t.Error("a later sweep with no grace read the trash")
	}
	h.mustCreate("w", nil)
	if err := h.m.Remove(h.ctx, "w"); err != nil || len(h.w.lvs) != 0 {
		t.Fatalf("a remove with no grace: %v, LVs left %v", err, h.w.lvs)
	}
	h.assertConsistent()
}

// A volume in the trash still holds its blocks: the thin pool's
// over-commit limit counts it until it is purged or restored.
func TestTrashCountsAgainstThePoolLimits(t *testing.T) {
	h := newHarness(t, withGrace(time.Hour), func(c *Config) { c.ThinPool = "pool"; c.ThinMaxOvercommit = 1.5 })
	h.mustCreate("a", map[string]string{"size": "4G"})
	if err := h.m.Remove(h.ctx, "a"); err != nil {
		t.Fatal(err)
	}
	err := h.m.Create(h.ctx, "b", map[string]string{"size": "3G"})
	if err == nil || !strings.Contains(err.Error(), "already backs 4 GiB of thin volumes") {
		t.Fatalf("create beside a 4G volume in the trash: %v; want the over-commit refusal", err)
	}
	h.cfg.RemoveGrace = 0
	h.restart()
	h.m.Sweep(h.ctx)
	h.mustCreate("b", map[string]string{"size": "3G"})
	h.assertConsistent()
}

// A trash id is read from an LV's name, which whoever can write the disks
// can choose: parseTrashID accepts exactly the ids trashID makes, each
// naming a valid volume and a time after 1970.
func FuzzParseTrashID(f *testing.F) {
	for _, s := range []string{"v+1765000000000", "a.b-c_d+1", "v+0", "v+01", "+1", "v+", "v+1+2", "v+-1", "v+1e3",
		"v+999999999999999", "v+9999999999999999", "../v+1", "v 1+1", "v+1 ", strings.Repeat("a", 64) + "+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		name, at, ok := parseTrashID(id)
		if !ok {
			return
		}
		if got := trashID(name, at); got != id {
			t.Fatalf("parseTrashID(%q) = %q, %v: trashID makes %q of it", id, name, at, got)
		}
		if err := options.ValidateName(name); err != nil || at.UnixMilli() <= 0 {
			t.Fatalf("parseTrashID(%q) accepted name %q (%v) at %v", id, name, err, at)
		}
	})
}

// During the grace the key is unusable to cryptvol: an LV put back under
// its volume's name by hand (lvrename) does not mount, since its key is
// Deactivated, and nothing is left open; Restore is the way back.
func TestATrashedVolumeRenamedBackByHandDoesNotMount(t *testing.T) {
	h := newHarness(t, withGrace(time.Hour))
	h.mustCreate("v", nil)
	if err := h.m.Remove(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	trash, _ := h.m.Trash(h.ctx)
	if err := (fakeLVM{h.s}).Rename(h.ctx, "cv-"+trash[0].ID, "cv-v"); err != nil {
		t.Fatal(err)
	}
	_, err := h.m.Mount(h.ctx, "v", "c1")
	if err == nil || !strings.Contains(err.Error(), "not active") {
		t.Fatalf("mount of a volume whose key is Deactivated: %v", err)
	}
	if mounted, open, _ := h.up("v"); mounted || open {
		t.Errorf("a refused mount left the volume mounted=%v open=%v", mounted, open)
	}
}
