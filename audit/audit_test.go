package audit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func openLog(t *testing.T, opts Options) *Log {
	t.Helper()
	l, err := Open(opts, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func verify(t *testing.T, path string) *Report {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), files, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func lines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ls := strings.SplitAfter(string(b), "\n")
	return ls[:len(ls)-1] // after the last newline: ""
}

func TestTrailVerifiesAndContinuesAcrossReopen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: p, Host: "node-a", Sync: true})
	l.Record(Event{Op: "key.create", Volume: "db", KeyID: "7"})
	l.Record(Event{Op: "volume.create", Volume: "db", Err: errors.New("lvcreate: no space")})
	l.Close()
	l = openLog(t, Options{Path: p, Host: "node-a"})
	l.Record(Event{Op: "volume.mount", Volume: "db", MountID: "c0ffee"})
	l.Close()

	rep := verify(t, p)
	if !rep.OK() || rep.Records != 3 || rep.FirstSeq != 1 || rep.LastSeq != 3 {
		t.Fatalf("report %+v; want 3 good records 1..3", rep)
	}
	ls := lines(t, p)
	if !strings.Contains(ls[1], `"result":"error","error":"lvcreate: no space"`) || !strings.Contains(ls[0], `"host":"node-a"`) {
		t.Errorf("records do not say what happened:\n%s", strings.Join(ls, ""))
	}
}

func TestVerifyFindsEditsDeletionsAndReordering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(ls []string) []string
		want   string
	}{
		{"edited volume", func(ls []string) []string {
			ls[2] = strings.Replace(ls[2], `"volume":"v3"`, `"volume":"vX"`, 1)
			return ls
		}, "record 3 was changed"},
		{"deleted middle line", func(ls []string) []string { return append(ls[:2], ls[3:]...) }, "record 4 does not follow record 2"},
		{"swapped lines", func(ls []string) []string { ls[1], ls[2] = ls[2], ls[1]; return ls }, "does not follow"},
		{"first line deleted", func(ls []string) []string { return ls[1:] }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.log")
			l := openLog(t, Options{Path: p, Host: "h"})
			for _, v := range []string{"v1", "v2", "v3", "v4", "v5"} {
				l.Record(Event{Op: "volume.create", Volume: v})
			}
			l.Close()
			if rep := verify(t, p); !rep.OK() {
				t.Fatalf("untouched trail: %+v", rep.Problems)
			}
			if err := os.WriteFile(p, []byte(strings.Join(tc.change(lines(t, p)), "")), 0o600); err != nil {
				t.Fatal(err)
			}
			rep := verify(t, p)
			if tc.want == "" {
				// A trail that starts later is what rotation leaves: not a
				// break in the chain, but with no anchor to vouch for it the
				// beginning is reported missing.
				if !rep.OK() || rep.FirstSeq != 2 || rep.Beginning != BeginMissing {
					t.Fatalf("report %+v; want no problem, first seq 2 and the beginning missing", rep)
				}
				return
			}
			if rep.OK() || !strings.Contains(rep.Problems[0].What, tc.want) {
				t.Fatalf("problems %+v; want one saying %q", rep.Problems, tc.want)
			}
		})
	}
}

func TestRotationKeepsTheChainAndDropsTheOldest(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: p, Host: "h", MaxSize: 4096, Keep: 2})
	for i := 0; i < 100; i++ {
		l.Record(Event{Op: "key.get", Volume: "vol", KeyID: strings.Repeat("k", 50)})
	}
	l.Close()
	files, _ := Files(p)
	if len(files) != 3 || files[0] != p+".2" || files[2] != p {
		t.Fatalf("files %q; want audit.log.2, audit.log.1, audit.log", files)
	}
	for _, f := range files {
		if st, _ := os.Stat(f); st.Size() > 4096 {
			t.Errorf("%s is %d bytes, over the 4096 limit", f, st.Size())
		}
	}
	rep := verify(t, p)
	if !rep.OK() || rep.LastSeq != 100 || rep.FirstSeq == 1 {
		t.Fatalf("report %+v; want an unbroken chain to 100 whose start was rotated away", rep)
	}
	// A file deleted from the middle breaks the chain.
	os.Remove(p + ".1")
	if rep := verify(t, p); rep.OK() {
		t.Fatal("a missing middle file went unnoticed")
	}
}

func TestATornLastLineIsCutAndRecorded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: p, Host: "h"})
	l.Record(Event{Op: "volume.create", Volume: "a"})
	l.Close()
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":2,"time":"2026-`)
	f.Close()
	if rep := verify(t, p); rep.OK() {
		t.Fatal("a torn last line went unnoticed")
	}
	l = openLog(t, Options{Path: p, Host: "h"})
	l.Record(Event{Op: "volume.mount", Volume: "a"})
	l.Close()
	rep := verify(t, p)
	ls := lines(t, p)
	if !rep.OK() || rep.Records != 3 || !strings.Contains(ls[1], `"op":"audit.repair"`) {
		t.Fatalf("report %+v, lines:\n%s\nwant the torn line cut, a repair record, then the mount", rep, strings.Join(ls, ""))
	}
}

func TestRecordsGoToTheLogAndANilLogIsANoOp(t *testing.T) {
	var buf bytes.Buffer
	lg := logrus.New()
	lg.SetOutput(&buf)
	p := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: p, Host: "h"}, lg)
	if err != nil {
		t.Fatal(err)
	}
	l.Record(Event{Op: "key.destroy", KeyID: "9"})
	l.Close()
	if !strings.Contains(buf.String(), "audit_seq=1") || !strings.Contains(buf.String(), "key_id=9") {
		t.Errorf("log lacks the record: %s", buf.String())
	}
	var none *Log
	none.Record(Event{Op: "x"})
	if _, err := Open(Options{Path: "relative.log"}, quiet()); err == nil {
		t.Error("a relative path was accepted")
	}
}
