package main

import (
	"math/rand/v2"
	"strings"
)

// checkLogs reads volumes' files and verifies them: every writer's log up
// to its acknowledged records (and, in clones and snapshots, the copies'
// shape), and every file docker cp put in. A settle check reads a few
// volumes chosen by sample, the final check all of them.
func (s *Soak) checkLogs(n int, final bool, sample *rand.Rand) {
	s.mu.Lock()
	ctrs := s.Model.CtrNames(nil)
	ctrVol := map[string]string{}
	holder := map[string]string{}
	for _, c := range ctrs {
		v := s.Model.Ctrs[c].Vol
		ctrVol[c] = v
		if holder[v] == "" {
			holder[v] = c
		}
	}
	vols := s.Model.VolNames(nil)
	s.mu.Unlock()
	for _, c := range ctrs {
		s.collectAcks(c, ctrVol[c])
	}
	if !final && len(vols) > 3 {
		sample.Shuffle(len(vols), func(i, j int) { vols[i], vols[j] = vols[j], vols[i] })
		vols = vols[:3]
	}
	records, files := 0, 0
	for _, v := range vols {
		var out string
		var err error
		if c := holder[v]; c != "" {
			out, err = docker("cp", c+":/data/.", "-")
		} else {
			// At a path the image lacks: dockerd copies an image's content
			// at the mount path into an empty volume and then chmods its
			// root, which a read-only snapshot of an empty volume refuses
			// (EROFS), so that container would not start.
			out, err = docker("run", "--rm", "-v", v+":/soakread:ro", img, "tar", "-C", "/soakread", "-cf", "-", ".")
		}
		if err != nil {
			s.violate("check %d: reading volume %s: %v", n, v, err)
			continue
		}
		got, err := untar([]byte(out))
		if err != nil {
			s.violate("check %d: reading volume %s: %v", n, v, err)
			continue
		}
		s.mu.Lock()
		want := map[string]string{}
		for _, f := range s.Model.FilesOf(v) {
			want[f] = s.Model.Files[v+"/"+f]
		}
		acked := map[string]int{}
		for f, a := range s.acks {
			if a.Vol == v {
				acked[f] = a.N
			}
		}
		s.mu.Unlock()
		for f, data := range got {
			if !writerFile.MatchString(f) {
				continue
			}
			res, err := VerifyLog([]byte(data), f, acked[f])
			if err != nil {
				s.violate("check %d: volume %s: %v", n, v, err)
			}
			records += res.Valid
			files++
		}
		for f, a := range acked {
			if _, ok := got[f]; !ok && a > 0 {
				s.violate("check %d: volume %s: writer log %s with %d acknowledged records is gone", n, v, f, a)
			}
		}
		for f, w := range want {
			if got[f] != w {
				s.violate("check %d: volume %s: %s holds %q, docker cp put %q", n, v, f, strings.TrimSpace(got[f]), strings.TrimSpace(w))
			}
		}
		s.Log.Count("check volume-read")
	}
	s.Log.Printf("check %d: %d volumes read, %d writer logs with %d intact records verified", n, len(vols), files, records)
}
