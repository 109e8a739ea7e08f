package admin

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/keys"
)

// memAnchor keeps heads in memory, as the KMIP server keeps them.
type memAnchor struct {
	mu    sync.Mutex
	heads []audit.Head
}

func (a *memAnchor) Seal(_ context.Context, h audit.Head) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.heads = append(a.heads, h)
	return nil
}

func (a *memAnchor) Heads(context.Context) ([]audit.Head, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.heads), nil
}

// audit verify reads the node's heads when a KMIP endpoint is set, says
// where the trail begins and what vouches for it, and fails on a line with
// a field added and on records cut off the end.
func TestAuditVerifyChecksAnchorsAndSaysWhereTheTrailBegins(t *testing.T) {
	a := &memAnchor{}
	var asked string
	saved := auditAnchor
	auditAnchor = func(_ keys.Config, node string) (audit.Anchor, func(), error) { asked = node; return a, func() {}, nil }
	t.Cleanup(func() { auditAnchor = saved })

	p := filepath.Join(t.TempDir(), "audit.log")
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	l, err := audit.Open(audit.Options{Path: p, Host: "node-a", MaxSize: 4096, Keep: 2, Anchor: a}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for range 60 {
		l.Record(audit.Event{Op: "volume.mount", Volume: "db", MountID: strings.Repeat("f", 64)})
	}
	l.Close()
	env := map[string]string{"CRYPTVOL_AUDIT_FILE": p, "CRYPTVOL_KMIP_ENDPOINT": "kmip.invalid:5696", "CRYPTVOL_NODE": "node-a"}
	code, out, _ := runCmd(env, "audit", "verify")
	if code != ExitOK || asked != "node-a" || !strings.Contains(out, "beginning: records before") || !strings.Contains(out, "anchors: ") {
		t.Fatalf("verify of a good rotated trail: exit %d, node %q\n%s", code, asked, out)
	}
	code, out, _ = runCmd(env, "audit", "verify", "--no-kmip")
	if code != ExitOK || !strings.Contains(out, "beginning MISSING") || !strings.Contains(out, "anchors not checked") {
		t.Fatalf("verify --no-kmip: exit %d\n%s", code, out)
	}

	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), `"op":`, `"actor":"mallory","op":`, 1)), 0o600)
	code, out, _ = runCmd(env, "audit", "verify")
	if code != ExitFailed || !strings.Contains(out, p+":1: record") || !strings.Contains(out, "not written as the plugin writes it") {
		t.Fatalf("verify of a line with a field added: exit %d\n%s", code, out)
	}

	// A restart anchors record 60; then the last two records are cut off.
	os.WriteFile(p, b, 0o600)
	l, _ = audit.Open(audit.Options{Path: p, Host: "node-a", MaxSize: 4096, Keep: 2, Anchor: a}, quiet)
	l.Close()
	ls := strings.SplitAfter(string(b), "\n")
	os.WriteFile(p, []byte(strings.Join(ls[:len(ls)-3], "")), 0o600)
	code, out, _ = runCmd(env, "audit", "verify")
	if code != ExitFailed || !strings.Contains(out, "were cut off the end") {
		t.Fatalf("verify of a trail cut short of its latest anchor: exit %d\n%s", code, out)
	}
}
