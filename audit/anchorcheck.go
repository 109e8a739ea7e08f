package audit

import (
	"context"
	"fmt"
)

// anchorCheck holds a Verify's heads and compares the records with them as
// they are read.
type anchorCheck struct {
	rep    *Report
	bySeq  map[uint64][]Head
	latest *Head
	// starts are the first record of each file read, in order.
	starts []uint64
	first  *Record
}

// newAnchorCheck reads the anchor's heads; without an anchor, or when its
// heads cannot be read, only the beginning is judged (it is missing unless
// it is record 1).
func newAnchorCheck(ctx context.Context, a Anchor, rep *Report) *anchorCheck {
	ac := &anchorCheck{rep: rep, bySeq: map[uint64][]Head{}}
	if a == nil {
		return ac
	}
	heads, err := a.Heads(ctx)
	if err != nil {
		rep.Anchors.Error = err.Error()
		return ac
	}
	rep.Anchors.Checked, rep.Anchors.Heads = true, len(heads)
	for i, h := range heads {
		ac.bySeq[h.Seq] = append(ac.bySeq[h.Seq], h)
		if ac.latest == nil || h.Seq > ac.latest.Seq {
			ac.latest = &heads[i]
		}
	}
	if ac.latest != nil {
		rep.Anchors.LatestSeq = ac.latest.Seq
	}
	return ac
}

func (ac *anchorCheck) fileStarts(seq uint64) { ac.starts = append(ac.starts, seq) }

// record compares r with the heads anchored for its number, and the first
// record's prev with the head of the record before it.
func (ac *anchorCheck) record(file string, line int, r *Record, first bool, bad func(string, ...any)) {
	if first {
		c := *r
		ac.first = &c
		for _, h := range ac.bySeq[r.Seq-1] {
			if r.Seq > 1 && h.Hash != r.Prev {
				bad("record %d does not follow record %d as anchored (its prev is not the anchored hash): the trail was rewritten at or before this record", r.Seq, h.Seq)
			}
		}
	}
	for _, h := range ac.bySeq[r.Seq] {
		if h.Hash != r.Hash {
			bad("record %d is not the record anchored under its number (hash %s): the trail was rewritten at or before this record", r.Seq, h.Hash)
			continue
		}
		ac.rep.Anchors.Matched++
	}
}

// finish judges what only the whole trail shows: records cut off the end
// and where the trail begins.
func (ac *anchorCheck) finish(files []string) {
	rep := ac.rep
	whole := func(format string, a ...any) {
		file := ""
		if len(files) > 0 {
			file = files[len(files)-1]
		}
		rep.Problems = append(rep.Problems, Problem{File: file, What: fmt.Sprintf(format, a...)})
	}
	if l := ac.latest; l != nil && (rep.Records == 0 || l.Seq > rep.LastSeq) {
		whole("the trail ends at record %d, but record %d was anchored: records %d to %d were cut off the end, or the trail was rewritten", rep.LastSeq, l.Seq, rep.LastSeq+1, l.Seq)
	}
	switch {
	case ac.first == nil:
		rep.Beginning = BeginMissing
		return
	case ac.first.Seq == 1 && ac.first.Prev == "":
		rep.Beginning = BeginFirst
		return
	}
	rep.Beginning = BeginMissing
	// With no rotation since the latest head, the files must still begin
	// where it says they began.
	if l := ac.latest; l != nil && l.First < rep.FirstSeq && ac.rotationsSince(l) == 0 {
		whole("the trail begins at record %d, but the anchor of record %d says the files held records from %d on: records %d to %d were removed", rep.FirstSeq, l.Seq, l.First, l.First, rep.FirstSeq-1)
		return
	}
	for _, hs := range ac.bySeq {
		for _, h := range hs {
			if h.First == rep.FirstSeq && (rep.VouchedBy == 0 || h.Seq > rep.VouchedBy) {
				rep.Beginning, rep.VouchedBy = BeginVouched, h.Seq
			}
		}
	}
}

// rotationsSince counts the files that began after h was anchored: each
// comes from a rotation since, which may have dropped an older file.
func (ac *anchorCheck) rotationsSince(h *Head) int {
	n := 0
	for _, s := range ac.starts {
		if s > h.Current {
			n++
		}
	}
	return n
}
