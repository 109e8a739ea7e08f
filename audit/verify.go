package audit

import (
	"context"
	"fmt"
	"os"
)

// Report is what Verify found.
type Report struct {
	Files   []string `json:"files"`
	Records int      `json:"records"`
	// FirstSeq and LastSeq are the sequence numbers of the first and last
	// records read.
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	LastHash string `json:"last_hash"`
	// Beginning says where the trail begins: BeginFirst, BeginVouched or
	// BeginMissing.
	Beginning string `json:"beginning"`
	// VouchedBy is the record whose anchor vouches for a BeginVouched
	// beginning.
	VouchedBy uint64      `json:"vouched_by,omitempty"`
	Anchors   AnchorCheck `json:"anchors"`
	Problems  []Problem   `json:"problems"`
}

// Where a trail begins.
const (
	// BeginFirst: the first record is record 1.
	BeginFirst = "first record"
	// BeginVouched: older files were rotated away, and an anchor says the
	// files held records from FirstSeq on.
	BeginVouched = "rotated away, vouched for by an anchor"
	// BeginMissing: the first record is not record 1, and no anchor says
	// the trail was kept from there: older files were rotated away or
	// removed, and nothing tells which.
	BeginMissing = "missing, nothing vouches for it"
)

// AnchorCheck is what Verify made of the anchor's heads.
type AnchorCheck struct {
	// Checked is false when Verify was given no anchor; Error says why the
	// heads could not be read.
	Checked bool   `json:"checked"`
	Error   string `json:"error,omitempty"`
	// Heads is how many heads the anchor holds, Matched how many of them
	// name a record in the files with the same hash.
	Heads   int `json:"heads"`
	Matched int `json:"matched"`
	// LatestSeq is the highest record anchored; records after it are not
	// vouched for yet (the next rotation or start anchors them).
	LatestSeq uint64 `json:"latest_seq"`
}

// OK says whether the files hold an unbroken chain that agrees with every
// head the anchor holds.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Problem is one place where the chain does not hold. Line 0 is about the
// trail as a whole.
type Problem struct {
	File string `json:"file"`
	Line int    `json:"line"`
	What string `json:"what"`
}

// Verify reads the files, oldest first, as one trail, and reports every
// line that is not a record exactly as the plugin writes it, every record
// that is damaged or edited (its hash does not match its content), out of
// place (its prev is not the hash of the record before it: records were
// removed, inserted or reordered), or numbered out of turn. Reading goes
// on past a problem from the record as written, so one edit is reported
// once. With an anchor, the trail must also agree with every head it
// holds (anchorcheck.go): that finds a trail rewritten from any record on
// with its hashes recomputed, records cut off the end and files removed
// from the beginning, up to the latest head. A nil anchor checks the files
// alone. Only a file that cannot be read is an error; an anchor that
// cannot be read is reported in Anchors.Error.
func Verify(ctx context.Context, files []string, a Anchor) (*Report, error) {
	rep := &Report{Files: files, Problems: []Problem{}}
	ac := newAnchorCheck(ctx, a, rep)
	var prev *Record
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		fileStart := true
		err = scanLines(f, func(n int, line []byte, complete bool) error {
			bad := func(format string, a ...any) {
				rep.Problems = append(rep.Problems, Problem{File: p, Line: n, What: fmt.Sprintf(format, a...)})
			}
			if !complete {
				bad("incomplete last line (%d bytes without a newline): a crash while it was written, or the file was cut", len(line))
				return nil
			}
			r, err := parseLine(line)
			if err != nil {
				bad("%v", err)
				if r.Hash == "" {
					return nil
				}
			}
			if sum, err := r.sum(); err != nil || sum != r.Hash {
				bad("record %d was changed after it was written (its hash does not match its content)", r.Seq)
			}
			switch {
			case prev == nil:
				rep.FirstSeq = r.Seq
				if r.Prev == "" && r.Seq != 1 {
					bad("record %d claims to start the trail, but only record 1 can", r.Seq)
				}
			case r.Prev != prev.Hash:
				bad("record %d does not follow record %d (its prev is not that record's hash): records were removed, inserted or reordered here", r.Seq, prev.Seq)
			case r.Seq != prev.Seq+1:
				bad("record %d follows record %d: the numbers should be consecutive", r.Seq, prev.Seq)
			}
			if fileStart {
				ac.fileStarts(r.Seq)
				fileStart = false
			}
			ac.record(p, n, &r, prev == nil, bad)
			rep.Records++
			rep.LastSeq, rep.LastHash = r.Seq, r.Hash
			prev = &r
			return nil
		})
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	ac.finish(files)
	return rep, nil
}
