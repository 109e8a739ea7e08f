package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
)

func runCmd(env map[string]string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(args, Env{Stdout: &o, Stderr: &e, Getenv: func(k string) string { return env[k] }})
	return code, o.String(), e.String()
}

func TestUsageErrorsSayWhatIsAllowed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, ExitUsage, `unknown command "frobnicate"`},
		{[]string{"decommission"}, ExitUsage, "want exactly one NODE"},
		{[]string{"decommission", "node-a"}, ExitUsage, "pass --yes to do it, or --dry-run"},
		{[]string{"decommission", "--yes", "--dry-run", "node-a"}, ExitUsage, "pass --yes to do it, or --dry-run"},
		{[]string{"decommission", "bad node", "--yes"}, ExitUsage, `node name "bad node" is not valid`},
		{[]string{"decommission", "node-a", "--frob"}, ExitUsage, "flag provided but not defined: -frob"},
		{[]string{"decommission", "node-a", "--yes"}, ExitUsage, "Endpoint"},
		{[]string{"audit", "verify", "a", "b"}, ExitUsage, "want at most one FILE"},
		{[]string{"audit", "verify", "/nonexistent/audit.log"}, ExitFailed, "no audit file at /nonexistent/audit.log"},
	} {
		code, _, stderr := runCmd(nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("cryptvol %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.want)
		}
	}
	if code, out, _ := runCmd(nil, "help", "decommission"); code != 0 || !strings.Contains(out, "-kmip-cert") {
		t.Errorf("help decommission: %d %q", code, out)
	}
	if code, out, _ := runCmd(nil, "decommission", "-h"); code != 0 || !strings.Contains(out, "usage: cryptvol decommission") {
		t.Errorf("decommission -h: %d %q", code, out)
	}
}

// audit verify reads the trail the plugin writes, rotated files included,
// and fails, saying where, once a line is edited.
func TestAuditVerifyPassesAndThenFindsAnEdit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	l, err := audit.Open(audit.Options{Path: p, Host: "h", MaxSize: 4096, Keep: 3}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		l.Record(audit.Event{Op: "volume.mount", Volume: "db", MountID: strings.Repeat("f", 64)})
	}
	l.Close()
	env := map[string]string{"CRYPTVOL_AUDIT_FILE": p}
	code, out, _ := runCmd(env, "audit", "verify")
	if code != ExitOK || !strings.Contains(out, "30 records in 3 files") || !strings.Contains(out, "ok: the chain is unbroken") ||
		!strings.Contains(out, "beginning: the trail begins at record 1") || !strings.Contains(out, "anchors not checked") {
		t.Fatalf("verify of a good trail: exit %d\n%s", code, out)
	}
	b, _ := os.ReadFile(p + ".1")
	os.WriteFile(p+".1", bytes.Replace(b, []byte(`"volume":"db"`), []byte(`"volume":"xx"`), 1), 0o600)
	code, out, _ = runCmd(env, "audit", "verify", "--json")
	var rep audit.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if code != ExitFailed || len(rep.Problems) != 1 || rep.Problems[0].File != p+".1" || rep.Problems[0].Line != 1 {
		t.Fatalf("verify of an edited trail: exit %d, problems %+v; want one at %s.1:1", code, rep.Problems, p)
	}
}
