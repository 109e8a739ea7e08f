//go:build lab

package keys

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
)

// Against PyKMIP: a trail whose log anchors its heads on the server at
// open and at each rotation verifies intact; rewritten from a record on
// with its hashes recomputed, it still verifies as a chain alone, and fails
// against the heads the server holds.
func TestLabAuditAnchorFindsARewrittenTrail(t *testing.T) {
	m := labKMIP(t)
	ctx := context.Background()
	node := fmt.Sprintf("labaudit-%d", time.Now().UnixNano())
	a, err := NewAuditAnchor(m, node)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "audit.log")
	log := logrus.New()
	open := func() *audit.Log {
		l, err := audit.Open(audit.Options{Path: p, Host: node, MaxSize: 4096, Keep: 3, Anchor: a}, log)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	for range 60 {
		l.Record(audit.Event{Op: "key.get", Volume: "db", KeyID: strings.Repeat("k", 60)})
	}
	l.Close()
	l = open() // anchors record 60 at open
	l.Close()

	heads, err := a.Heads(ctx)
	if err != nil || len(heads) < 2 {
		t.Fatalf("heads on the server: %+v, %v; want the rotations' and the open's", heads, err)
	}
	files, _ := audit.Files(p)
	rep, err := audit.Verify(ctx, files, a)
	if err != nil || !rep.OK() || rep.Anchors.LatestSeq != 60 || rep.Anchors.Matched == 0 || rep.Beginning != audit.BeginVouched {
		t.Fatalf("intact trail: %v %+v; want it to verify, record 60 anchored, the beginning vouched for", err, rep)
	}
	t.Logf("intact: %d records from %d, %d heads, %d matched", rep.Records, rep.FirstSeq, rep.Anchors.Heads, rep.Anchors.Matched)

	rewriteTrail(t, files, rep.Records-10)
	if rep, _ := audit.Verify(ctx, files, nil); !rep.OK() {
		t.Fatalf("the rewrite broke the chain (%+v): the test no longer shows what the anchor adds", rep.Problems)
	}
	rep, err = audit.Verify(ctx, files, a)
	if err != nil || rep.OK() || !strings.Contains(rep.Problems[0].What, "is not the record anchored under its number") {
		t.Fatalf("rewritten trail: %v %+v; want a rewritten record reported against its anchor", err, rep.Problems)
	}
	t.Logf("rewritten: %s:%d: %s", rep.Problems[0].File, rep.Problems[0].Line, rep.Problems[0].What)
}
