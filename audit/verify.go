package audit

import (
	"encoding/json"
	"fmt"
	"os"
)

// Report is what Verify found.
type Report struct {
	Files   []string `json:"files"`
	Records int      `json:"records"`
	// FirstSeq and LastSeq are the sequence numbers of the first and last
	// records read; a FirstSeq above 1 means older files were rotated away.
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	LastHash string    `json:"last_hash"`
	Problems []Problem `json:"problems"`
}

// OK says whether the files hold an unbroken chain.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Problem is one place where the chain does not hold.
type Problem struct {
	File string `json:"file"`
	Line int    `json:"line"`
	What string `json:"what"`
}

// Verify reads the files, oldest first, as one trail, and reports every
// record that is damaged or edited (its hash does not match its content),
// out of place (its prev is not the hash of the record before it: records
// were removed, inserted or reordered), or numbered out of turn. Reading
// goes on past a problem from the record as written, so one edit is
// reported once. Only a file that cannot be read is an error.
func Verify(files []string) (*Report, error) {
	rep := &Report{Files: files, Problems: []Problem{}}
	var prev *Record
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		err = scanLines(f, func(n int, line []byte, complete bool) error {
			bad := func(format string, a ...any) {
				rep.Problems = append(rep.Problems, Problem{File: p, Line: n, What: fmt.Sprintf(format, a...)})
			}
			if !complete {
				bad("incomplete last line (%d bytes without a newline): a crash while it was written, or the file was cut", len(line))
				return nil
			}
			var r Record
			if err := json.Unmarshal(line, &r); err != nil || r.Hash == "" {
				bad("not an audit record")
				return nil
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
	return rep, nil
}
