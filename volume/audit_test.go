package volume

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/audit"
)

// auditTrail gives the harness a real trail file and returns its path.
func auditTrail(t *testing.T, h *harness) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Options{Path: p, Host: "node-a"}, h.logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h.cfg.Audit = l
	h.restart()
	return p
}

type trailLine struct {
	Op, Volume, Key, Mount, Result, Error, Detail string
}

func readTrail(t *testing.T, h *harness, p string) []trailLine {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	h.w.assertNoSecret(t, "audit file", string(b))
	files, _ := audit.Files(p)
	if rep, err := audit.Verify(context.Background(), files, nil); err != nil || !rep.OK() {
		t.Fatalf("trail does not verify: %v %+v", err, rep)
	}
	var out []trailLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, trailLine{r.Op, r.Volume, r.KeyID, r.MountID, r.Result, r.Error, r.Detail})
	}
	return out
}

// Every key operation and volume change of a volume's life is in the trail,
// in order, with its key id and mount id; a Mount whose key the KMIP server
// no longer has fails saying so, and that is recorded too.
func TestTrailRecordsAVolumesLifeInOrder(t *testing.T) {
	h := newHarness(t)
	p := auditTrail(t, h)
	h.mustCreate("db", nil)
	h.mustMount("db", "c1")
	h.mustUnmount("db", "c1")
	if err := h.m.Remove(h.ctx, "db"); err != nil {
		t.Fatal(err)
	}
	h.mustCreate("gone", nil)
	var id string
	for k := range h.w.keys {
		id = k
	}
	delete(h.w.keys, id) // as decommission does on the server
	_, err := h.m.Mount(h.ctx, "gone", "c2")
	if err == nil || !strings.Contains(err.Error(), "revoked or destroyed on the KMIP server") {
		t.Fatalf("Mount with a destroyed key: %v; want an error saying the key is gone", err)
	}

	got := readTrail(t, h, p)
	var ops []string
	for _, l := range got {
		ops = append(ops, l.Op+" "+l.Volume+" "+l.Result)
	}
	want := []string{
		"key.create db ok", "volume.create db ok",
		"key.get db ok", "volume.mount db ok",
		"volume.unmount db ok",
		"key.destroy db ok", "volume.remove db ok",
		"key.create gone ok", "volume.create gone ok",
		"key.get gone error", "volume.mount gone error",
	}
	if strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Fatalf("trail:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
	if got[0].Key == "" || got[0].Key != got[2].Key || got[0].Key != got[5].Key {
		t.Errorf("key ids: create %q, get %q, destroy %q; want the same id", got[0].Key, got[2].Key, got[5].Key)
	}
	if got[3].Mount != "c1" || got[4].Mount != "c1" {
		t.Errorf("mount ids %q, %q; want c1", got[3].Mount, got[4].Mount)
	}
	if !strings.Contains(got[10].Error, id) {
		t.Errorf("the failed mount's record %q does not name key %s", got[10].Error, id)
	}
}

// A repair at start-up is in the trail.
func TestTrailRecordsRepairs(t *testing.T) {
	h := newHarness(t)
	p := auditTrail(t, h)
	h.mustCreate("a", nil)
	h.mustMount("a", "c1")
	h.containerGone("a")
	h.restartInNewNamespace()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	got := readTrail(t, h, p)
	last := got[len(got)-1]
	if last.Op != "volume.repair" || last.Volume != "a" {
		t.Fatalf("last record %+v; want the repair of volume a", last)
	}
}
