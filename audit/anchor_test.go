package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// memAnchor keeps heads in memory, as the KMIP server keeps them.
type memAnchor struct {
	mu    sync.Mutex
	heads []Head
	fail  error // Seal and Heads fail with it
}

func (a *memAnchor) Seal(_ context.Context, h Head) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	a.heads = append(a.heads, h)
	return nil
}

func (a *memAnchor) Heads(context.Context) ([]Head, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.heads), a.fail
}

// trail writes n records of about 200 bytes and closes the log, which
// hands the anchor its last head.
func trail(t *testing.T, n int, opts Options) string {
	t.Helper()
	opts.Path, opts.Host = filepath.Join(t.TempDir(), "audit.log"), "h"
	l := openLog(t, opts)
	for range n {
		l.Record(Event{Op: "volume.create", Volume: strings.Repeat("v", 60)})
	}
	l.Close()
	return opts.Path
}

func lastHash(t *testing.T, p string) string {
	t.Helper()
	ls := lines(t, p)
	var r Record
	if err := json.Unmarshal([]byte(ls[len(ls)-1]), &r); err != nil {
		t.Fatal(err)
	}
	return r.Hash
}

func verifyWith(t *testing.T, path string, a Anchor) *Report {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), files, a)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// rewrite replaces the records of the trail's files from the from-th
// record on (counted from 0 over all files) with others whose hashes are
// recomputed, as anyone who can write the files can do.
func rewrite(t *testing.T, path string, from int) {
	t.Helper()
	files, _ := Files(path)
	k, prev := 0, ""
	for _, f := range files {
		ls := lines(t, f)
		for i := range ls {
			var r Record
			if err := json.Unmarshal([]byte(ls[i]), &r); err != nil {
				t.Fatal(err)
			}
			if k >= from {
				r.Volume, r.Prev, r.Hash = "rewritten", prev, ""
				b, _ := json.Marshal(r)
				sum := sha256.Sum256(b)
				r.Hash = hex.EncodeToString(sum[:])
				b, _ = json.Marshal(r)
				ls[i] = string(b) + "\n"
			}
			prev = r.Hash
			k++
		}
		if err := os.WriteFile(f, []byte(strings.Join(ls, "")), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Heads are anchored when the log opens and at each rotation, never on
// Record itself; what they say matches the files.
func TestHeadsAreAnchoredAtOpenAndRotation(t *testing.T) {
	a := &memAnchor{}
	p := trail(t, 3, Options{Anchor: a})
	if len(a.heads) != 0 {
		t.Fatalf("heads %+v anchored for a trail opened empty and never rotated; want none", a.heads)
	}
	openLog(t, Options{Path: p, Host: "h", Anchor: a}).Close()
	if len(a.heads) != 1 || a.heads[0] != (Head{Seq: 3, Hash: lastHash(t, p), First: 1, Current: 1}) {
		t.Fatalf("heads %+v; want the open's: record 3, files from 1, current file from 1", a.heads)
	}
	// Heads that come faster than the anchor takes them are coalesced:
	// only the newest waits. Each rotation hands one over.
	l := openLog(t, Options{Path: p, Host: "h", Anchor: a, MaxSize: 4096, Keep: 2})
	for range 60 {
		l.Record(Event{Op: "key.get", Volume: strings.Repeat("v", 100)})
	}
	l.Close()
	if len(a.heads) < 2 {
		t.Fatalf("heads %+v; want at least one rotation's after the open's", a.heads)
	}
	rep := verifyWith(t, p, a)
	inFiles := 0
	for _, h := range a.heads {
		if h.Seq >= rep.FirstSeq && h.Seq <= rep.LastSeq {
			inFiles++
		}
	}
	if !rep.OK() || !rep.Anchors.Checked || inFiles == 0 || rep.Anchors.Matched != inFiles || rep.Beginning != BeginVouched {
		t.Fatalf("report %+v; want an intact trail, the %d heads of records still in the files matched, the beginning vouched for", rep, inFiles)
	}
	last := a.heads[len(a.heads)-1]
	files, _ := Files(p)
	if last.First != rep.FirstSeq || last.Current != 63-uint64(len(lines(t, files[len(files)-1])))+1 {
		t.Errorf("last head %+v; want first %d and current the current file's first record", last, rep.FirstSeq)
	}
}

// A trail rewritten from any record on, hashes recomputed, verifies as a
// chain; against the anchor it fails at the first anchored record it
// changed.
func TestAnchorFindsATrailRewrittenWithRecomputedHashes(t *testing.T) {
	a := &memAnchor{}
	p := trail(t, 100, Options{Anchor: a, MaxSize: 4096, Keep: 3})
	if rep := verifyWith(t, p, a); !rep.OK() {
		t.Fatalf("intact trail: %+v", rep.Problems)
	}
	rewrite(t, p, 5)
	if rep := verifyWith(t, p, nil); !rep.OK() {
		t.Fatalf("the rewrite broke the chain itself (%+v): the test no longer shows what the anchor adds", rep.Problems)
	}
	rep := verifyWith(t, p, a)
	if rep.OK() || !strings.Contains(rep.Problems[0].What, "is not the record anchored under its number") {
		t.Fatalf("problems %+v; want the first anchored record after the rewrite reported", rep.Problems)
	}
}

// Records cut off the end are found up to the latest head.
func TestAnchorFindsRecordsCutOffTheEnd(t *testing.T) {
	a := &memAnchor{}
	p := trail(t, 5, Options{})
	l := openLog(t, Options{Path: p, Host: "h", Anchor: a})
	l.Close() // anchors record 5
	ls := lines(t, p)
	if err := os.WriteFile(p, []byte(strings.Join(ls[:3], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := verifyWith(t, p, a)
	if rep.OK() || !strings.Contains(rep.Problems[0].What, "records 4 to 5 were cut off the end") {
		t.Fatalf("problems %+v; want records 4 to 5 reported cut off", rep.Problems)
	}
}

// A trail whose first record is not record 1 says whether an anchor
// vouches for where it begins; the oldest file removed on top of rotation
// is found.
func TestBeginningRotatedAwayIsVouchedForOrReportedMissing(t *testing.T) {
	a := &memAnchor{}
	p := trail(t, 100, Options{Anchor: a, MaxSize: 4096, Keep: 3})
	rep := verifyWith(t, p, a)
	if !rep.OK() || rep.FirstSeq == 1 || rep.Beginning != BeginVouched || rep.VouchedBy == 0 {
		t.Fatalf("report %+v; want older files rotated away and the beginning vouched for", rep)
	}
	if rep := verifyWith(t, p, nil); rep.Beginning != BeginMissing {
		t.Errorf("without an anchor: beginning %q; want %q", rep.Beginning, BeginMissing)
	}
	files, _ := Files(p)
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	rep = verifyWith(t, p, a)
	if rep.OK() || rep.Beginning != BeginMissing || !strings.Contains(rep.Problems[0].What, "were removed") {
		t.Fatalf("report %+v; want the removed file reported and the beginning missing", rep)
	}
}

// An anchor that fails loses no record and blocks nothing; the next head
// covers the records, and Verify says when it could not read the heads.
func TestAFailingAnchorLosesNoRecord(t *testing.T) {
	a := &memAnchor{fail: errors.New("kmip: server unreachable")}
	p := trail(t, 100, Options{Anchor: a, MaxSize: 4096, Keep: 3})
	rep := verifyWith(t, p, a)
	if !rep.OK() || rep.LastSeq != 100 || rep.Anchors.Checked || !strings.Contains(rep.Anchors.Error, "unreachable") {
		t.Fatalf("report %+v; want every record written and the anchor's error reported", rep)
	}
	a.fail = nil
	l := openLog(t, Options{Path: p, Host: "h", Anchor: a})
	l.Close()
	if rep := verifyWith(t, p, a); !rep.OK() || rep.Anchors.LatestSeq != 100 || rep.Anchors.Matched != 1 {
		t.Fatalf("report %+v; want the next open's head to cover record 100", rep)
	}
}
