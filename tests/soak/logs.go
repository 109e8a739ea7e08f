package main

import (
	"fmt"
	"math/rand/v2"
	"path"
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
	got := s.readVolumes(n, vols, holder)
	records, files := 0, 0
	for _, v := range vols {
		got, ok := got[v]
		if !ok {
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

// readBatch is how many volumes one reading container mounts: a container
// start costs seconds under emulation, a mount a fraction of that.
const readBatch = 6

// readVolumes reads every file of vols: through docker cp from a container
// that holds the volume, the others read-only in containers of readBatch
// volumes each. A batch that fails is read again one volume at a time, so
// that a failure names its volume; a volume that cannot be read is a
// violation, and missing from the result.
func (s *Soak) readVolumes(n int, vols []string, holder map[string]string) map[string]map[string]string {
	out := map[string]map[string]string{}
	var free []string
	for _, v := range vols {
		c := holder[v]
		if c == "" {
			free = append(free, v)
			continue
		}
		tarb, err := docker("cp", c+":/data/.", "-")
		if err == nil {
			out[v], err = untar([]byte(tarb))
		}
		if err != nil {
			s.violate("check %d: reading volume %s: %v", n, v, err)
			delete(out, v)
		}
	}
	read := func(batch []string) (map[string]map[string]string, error) {
		// At a path the image lacks: dockerd copies an image's content at
		// the mount path into an empty volume and then chmods its root,
		// which a read-only snapshot of an empty volume refuses (EROFS),
		// so that container would not start.
		args := []string{"run", "--rm"}
		for i, v := range batch {
			args = append(args, "-v", fmt.Sprintf("%s:/soakread/%d:ro", v, i))
		}
		tarb, err := docker(append(args, img, "tar", "-C", "/soakread", "-cf", "-", ".")...)
		if err != nil {
			return nil, err
		}
		byDir, err := untarDirs([]byte(tarb))
		if err != nil {
			return nil, err
		}
		got := map[string]map[string]string{}
		for i, v := range batch {
			got[v] = byDir[fmt.Sprint(i)]
		}
		return got, nil
	}
	for len(free) > 0 {
		batch := free[:min(readBatch, len(free))]
		free = free[len(batch):]
		got, err := read(batch)
		if err != nil && len(batch) > 1 {
			s.Log.Printf("check %d: reading %s at once: %v; one at a time", n, strings.Join(batch, " "), err)
			for _, v := range batch {
				one, err := read([]string{v})
				if err != nil {
					s.violate("check %d: reading volume %s: %v", n, v, err)
					continue
				}
				out[v] = one[v]
			}
			continue
		}
		if err != nil {
			s.violate("check %d: reading volume %s: %v", n, batch[0], err)
			continue
		}
		for v, files := range got {
			out[v] = files
		}
	}
	return out
}

// dirOf: a tar member's first directory below "." ("./3/w1-ab" is in "3").
func dirOf(name string) string {
	name = strings.TrimPrefix(path.Clean(name), "./")
	d, _, ok := strings.Cut(name, "/")
	if !ok {
		return ""
	}
	return d
}
