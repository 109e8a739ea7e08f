package keys

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovh/kmip-go"
	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
)

// Heads go to the server one Register each and come back as sealed; each
// node reads its own group only, and a node's key listing (decommission)
// does not see them.
func TestAuditAnchorSealsAndReadsHeads(t *testing.T) {
	fake := newFakeKMS()
	m := newMemKMIP(t, fake)
	ctx := context.Background()
	a, err := NewAuditAnchor(m, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewAuditAnchor(m, "node-b")
	if _, err := NewAuditAnchor(m, "bad node"); err == nil {
		t.Error("a node name with a space was accepted")
	}
	want := []audit.Head{{Seq: 7, Hash: "aa", First: 1, Current: 5}, {Seq: 9, Hash: "bb", First: 5, Current: 10}}
	for _, h := range want {
		before := fake.msgs.Load()
		if err := a.Seal(ctx, h); err != nil {
			t.Fatal(err)
		}
		if n := fake.msgs.Load() - before; n > 2 || fake.count(kmip.OperationRegister) == 0 {
			t.Errorf("seal of record %d: %d round trips; want one Register (and the first connection's DiscoverVersions)", h.Seq, n)
		}
	}
	if err := b.Seal(ctx, audit.Head{Seq: 3, Hash: "cc", First: 1, Current: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := a.Heads(ctx)
	if err != nil || len(got) != 2 || !(got[0] == want[0] && got[1] == want[1] || got[0] == want[1] && got[1] == want[0]) {
		t.Fatalf("heads of node-a = %+v, %v; want %+v", got, err, want)
	}
	if objs := fake.named("cryptvol-audit/node-a/9"); len(objs) != 1 || objs[0].groups[0] != "cryptvol-audit:node-a" {
		t.Errorf("the head of record 9 is not named cryptvol-audit/node-a/9 in group cryptvol-audit:node-a: %+v", objs)
	}
	if ks, err := m.Group(ctx, AuditGroup("node-a")); err != nil || len(ks) != 0 {
		t.Errorf("listing keys of the anchors' group = %+v, %v; want no keys", ks, err)
	}

	// Anything else in the group fails the reading, naming it.
	fake.mu.Lock()
	fake.objs["99"] = &fakeObj{id: "99", opaque: []byte("not json"), groups: []string{AuditGroup("node-a")}}
	fake.mu.Unlock()
	if _, err := a.Heads(ctx); err == nil || !strings.Contains(err.Error(), `object "99"`) {
		t.Errorf("heads with a foreign object in the group: %v; want an error naming object 99", err)
	}
}

// The trail of a plugin whose log anchors through KMIP: it verifies
// intact; rewritten from a record on with its hashes recomputed it still
// verifies as a chain, and fails against the server's heads.
func TestAuditTrailRewriteFailsAgainstKMIPHeads(t *testing.T) {
	fake := newFakeKMS()
	m := newMemKMIP(t, fake)
	a, _ := NewAuditAnchor(m, "node-a")
	p := filepath.Join(t.TempDir(), "audit.log")
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	l, err := audit.Open(audit.Options{Path: p, Host: "node-a", MaxSize: 4096, Keep: 3, Anchor: a}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for range 80 {
		l.Record(audit.Event{Op: "key.get", Volume: "db", KeyID: strings.Repeat("k", 60)})
	}
	l.Close()

	ctx := context.Background()
	files, _ := audit.Files(p)
	rep, err := audit.Verify(ctx, files, a)
	if err != nil || !rep.OK() || rep.Anchors.Matched == 0 || rep.Beginning != audit.BeginVouched {
		t.Fatalf("intact trail: %v %+v; want it to verify with matched heads and a vouched beginning", err, rep)
	}
	rewriteTrail(t, files, rep.Records-20)
	if rep, _ := audit.Verify(ctx, files, nil); !rep.OK() {
		t.Fatalf("the rewrite broke the chain (%+v): the test no longer shows what the anchor adds", rep.Problems)
	}
	rep, _ = audit.Verify(ctx, files, a)
	if rep.OK() || !strings.Contains(rep.Problems[0].What, "is not the record anchored under its number") {
		t.Fatalf("rewritten trail against the server's heads: %+v; want an anchored record reported", rep.Problems)
	}
}

// rewriteTrail changes every record from the from-th (counted over all
// files) on and recomputes the hashes, as anyone who can write the files
// can: the hash is SHA-256 of the record's JSON with hash empty.
func rewriteTrail(t *testing.T, files []string, from int) {
	t.Helper()
	k, prev := 0, ""
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ls := strings.SplitAfter(string(b), "\n")
		ls = ls[:len(ls)-1]
		for i := range ls {
			var r audit.Record
			if err := json.Unmarshal([]byte(ls[i]), &r); err != nil {
				t.Fatal(err)
			}
			if k >= from {
				r.KeyID, r.Prev, r.Hash = "mallory", prev, ""
				enc, _ := json.Marshal(r)
				sum := sha256.Sum256(enc)
				r.Hash = hex.EncodeToString(sum[:])
				enc, _ = json.Marshal(r)
				ls[i] = string(enc) + "\n"
			}
			prev = r.Hash
			k++
		}
		if err := os.WriteFile(f, []byte(strings.Join(ls, "")), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
