package admin

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/volume"
)

// statusVolumes is a plugin.Manager whose List gives volumes with Status.
type statusVolumes struct {
	fakeVolumes
	vols []volume.Volume
}

func (s *statusVolumes) List(context.Context) ([]volume.Volume, error) { return s.vols, nil }

// report lists each volume's key, its age against the limit, tenant,
// integrity and where it is open, then the trail's verdict; exit 1 for a
// key past --rotate-after ($CRYPTVOL_ROTATE_AFTER) or a trail that does not
// verify, and the JSON document says the same.
func TestReportFlagsOverdueKeysAndABrokenTrail(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	old := now
	t.Cleanup(func() { now = old })
	now = func() time.Time { return t0 }
	f := &statusVolumes{vols: []volume.Volume{
		{Name: "db", Mountpoint: "/mnt/volumes/db/data", Status: map[string]any{
			volume.StatusKeyID: "41", volume.StatusKeySince: t0.Add(-100 * 24 * time.Hour).Format(time.RFC3339), volume.StatusKeyFrom: "create",
			volume.StatusMounted: true, volume.StatusTenant: "acme"}},
		{Name: "logs", Status: map[string]any{
			volume.StatusKeyID: "57", volume.StatusKeySince: t0.Add(-10 * 24 * time.Hour).Format(time.RFC3339), volume.StatusKeyFrom: "rotation",
			volume.StatusMounted: false, volume.StatusIntegrity: "hmac-sha256"}},
	}}
	log := logrus.New()
	log.SetOutput(io.Discard)
	dir := t.TempDir()
	sock := servePlugin(t, f, dir)
	trail := filepath.Join(dir, "audit.log")
	al, err := audit.Open(audit.Options{Path: trail, Host: "node-a", MaxSize: 1 << 20, Keep: 2}, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"volume.create", "volume.mount", "key.rotate"} {
		al.Record(audit.Event{Op: op, Volume: "db"})
	}
	al.Close()
	env := map[string]string{"CRYPTVOL_SOCKET": sock, "CRYPTVOL_AUDIT_FILE": trail}

	code, out, errOut := runCmd(env, "report")
	if code != ExitOK || !strings.Contains(out, "db: key 41 since 2026-08-29T12:00:00Z by create, 100d0h old, tenant acme; open at /mnt/volumes/db/data") ||
		!strings.Contains(out, "logs: key 57 since 2026-11-27T12:00:00Z by rotation, 10d0h old, integrity hmac-sha256; closed") ||
		!strings.Contains(out, "audit trail "+trail+": ok, 3 records") || !strings.Contains(out, "ok: 2 volumes, no key overdue, the trail verifies") {
		t.Fatalf("report without a limit: exit %d\n%s%s", code, out, errOut)
	}

	env["CRYPTVOL_ROTATE_AFTER"] = "90d"
	code, out, _ = runCmd(env, "report")
	if code != ExitFailed || !strings.Contains(out, "100d0h old OVERDUE") || strings.Contains(out, "10d0h old OVERDUE") ||
		!strings.Contains(out, "NOT OK: 1 keys overdue, trail verified: true") {
		t.Fatalf("report with CRYPTVOL_ROTATE_AFTER=90d: exit %d\n%s", code, out)
	}
	code, out, _ = runCmd(env, "report", "--rotate-after", "off", "--json")
	var doc reportDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != ExitOK || !doc.OK || doc.Overdue != 0 || len(doc.Volumes) != 2 ||
		doc.Volumes[0].KeyAgeH != 2400 || !doc.Volumes[0].Mounted || doc.Volumes[1].Integrity != "hmac-sha256" || !doc.Audit.OK {
		t.Fatalf("report --rotate-after off --json: exit %d, %v\n%s", code, err, out)
	}

	// An edited record: the trail no longer verifies.
	b, _ := os.ReadFile(trail)
	os.WriteFile(trail, []byte(strings.Replace(string(b), `"volume":"db"`, `"volume":"dc"`, 1)), 0o600)
	code, out, _ = runCmd(env, "report", "--rotate-after", "off")
	if code != ExitFailed || !strings.Contains(out, "audit trail "+trail+": BROKEN: 1 problems") {
		t.Fatalf("report after an edit: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCmd(env, "report", "--rotate-after", "5m"); code != ExitUsage || !strings.Contains(errOut, "at least 1h") {
		t.Fatalf("report --rotate-after 5m: exit %d, %s", code, errOut)
	}
	if code, _, _ := runCmd(env, "report", "--audit", filepath.Join(dir, "none.log")); code != ExitFailed {
		t.Fatalf("report of a missing trail: exit %d", code)
	}
	if !strings.Contains(out, "KMIP groups: not asked") {
		t.Errorf("report without a KMIP endpoint does not say the groups were not asked:\n%s", out)
	}

	// With a KMIP endpoint: each key's Object Group as the server has it,
	// in one request for all; a key this identity may not read is named.
	savedGroups, savedAnchor := keyGroups, auditAnchor
	t.Cleanup(func() { keyGroups, auditAnchor = savedGroups, savedAnchor })
	var asked []string
	keyGroups = func(_ keys.Config, ids []string) (map[string]string, error) {
		asked = append(asked, ids...)
		return map[string]string{"41": "cryptvol-node:node-a"}, nil
	}
	auditAnchor = func(keys.Config, string) (audit.Anchor, func(), error) { return &memAnchor{}, func() {}, nil }
	env["CRYPTVOL_KMIP_ENDPOINT"] = "kmip.invalid:5696"
	os.WriteFile(trail, b, 0o600)
	code, out, _ = runCmd(env, "report", "--rotate-after", "off", "--json")
	doc = reportDoc{}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Volumes) != 2 || doc.Volumes[0].Group != "cryptvol-node:node-a" ||
		doc.Volumes[0].Node != "node-a" || doc.Volumes[1].Group != "" || !strings.Contains(doc.KeyGroups, "may not read the keys of logs") ||
		strings.Join(asked, ",") != "41,57" {
		t.Fatalf("report --json with KMIP: exit %d, %v, asked %v\n%s", code, err, asked, out)
	}
	if _, out, _ = runCmd(env, "report", "--rotate-after", "off"); !strings.Contains(out, "tenant acme, KMIP group cryptvol-node:node-a;") {
		t.Errorf("report with KMIP does not show db's group:\n%s", out)
	}
}
