package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Soak is the running driver: the lab, the model, what the writers
// acknowledged, and what went wrong.
type Soak struct {
	Lab
	Log      *OpLog
	Model    *Model
	mu       sync.Mutex // guards Model, acks and the lists below during a burst
	acks     map[string]ack
	down     Down          // what the faults left broken (the chooser's view)
	silent   bool          // the KMIP server is SIGSTOPped (kmip-silent), not stopped
	slowing  chan struct{} // closed to end a kmip-slow early; nil when none runs
	slowDone chan struct{} // closed when the kmip-slow has ended
	filled   int64         // MiB the pool's filler holds (pool-fill)
	faulting int           // faults in flight
	// Violations break an invariant; Warnings are operations that failed
	// with no fault to explain it, printed at the end.
	Violations []string
	Warnings   []string
	maxSettle  time.Duration
	pruneAll   bool      // docker volume prune takes -a (Docker 23 and later)
	start      time.Time // when the soak began: the key scan reads files changed since
	lvs        []LV      // as the last check listed them
}

// ack: the highest acknowledged record of a writer's file, and its volume.
type ack struct {
	Vol string
	N   int
}

const img = "busybox:lab"

func (s *Soak) violate(format string, a ...any) {
	v := fmt.Sprintf(format, a...)
	s.mu.Lock()
	s.Violations = append(s.Violations, v)
	s.mu.Unlock()
	s.Log.Printf("VIOLATION: %s", v)
}

// explained: an operation's failure has a fault to blame.
func (s *Soak) explained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down.KMIP || s.down.Pool || s.slowing != nil || s.faulting > 0
}

// Do runs one operation (a fault during it too) and updates the model.
func (s *Soak) Do(o Op) {
	var wg sync.WaitGroup
	if o.Fault != nil {
		s.mu.Lock()
		s.faulting++
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(o.Fault.DelayMS) * time.Millisecond)
			s.Inject(*o.Fault)
		}()
	}
	s.do(o)
	wg.Wait()
	if o.Fault != nil {
		s.mu.Lock()
		s.faulting--
		s.mu.Unlock()
	}
}

func (s *Soak) do(o Op) {
	t0 := time.Now()
	if o.Kind == OpBurst {
		// Clones and snapshots first in the model: they copy only what was
		// in their source before the burst.
		subs := slices.Clone(o.Sub)
		slices.SortStableFunc(subs, func(a, b Op) int {
			return boolInt(b.Kind == OpClone || b.Kind == OpSnapshot) - boolInt(a.Kind == OpClone || a.Kind == OpSnapshot)
		})
		var wg sync.WaitGroup
		oks := make([]bool, len(subs))
		for i, sub := range subs {
			wg.Add(1)
			go func() { defer wg.Done(); oks[i] = s.one(sub) }()
		}
		wg.Wait()
		s.mu.Lock()
		for i, sub := range subs {
			if oks[i] {
				applyOK(s.Model, sub, s.Marker)
			}
		}
		s.mu.Unlock()
		s.Log.Printf("#%d burst done in %.1fs", o.Seq, time.Since(t0).Seconds())
		s.Log.Count("op burst")
		return
	}
	if s.one(o) {
		s.mu.Lock()
		applyOK(s.Model, o, s.Marker)
		s.mu.Unlock()
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// one runs a single operation, prints and counts its outcome, and says
// whether the model should take it as done.
func (s *Soak) one(o Op) bool {
	t0 := time.Now()
	err := s.exec(o)
	d := time.Since(t0).Seconds()
	if err == nil {
		s.Log.Printf("#%d ok %s (%.1fs)", o.Seq, o.Kind, d)
		s.Log.Count(fmt.Sprintf("op %s ok", o.Kind))
		return true
	}
	var ref refused
	if errors.As(err, &ref) {
		s.Log.Printf("#%d refused as it must be %s (%.1fs): %v", o.Seq, o.Kind, d, err)
		s.Log.Count(fmt.Sprintf("op %s refused", o.Kind))
		return false
	}
	why := "under a fault"
	if !s.explained() && expectedToWork(o.Kind) {
		why = "WITHOUT a fault"
		s.mu.Lock()
		s.Warnings = append(s.Warnings, fmt.Sprintf("#%d %s: %v", o.Seq, o, err))
		s.mu.Unlock()
	}
	s.Log.Printf("#%d failed %s %s (%.1fs): %v", o.Seq, why, o.Kind, d, err)
	s.Log.Count(fmt.Sprintf("op %s failed", o.Kind))
	return false
}

// expectedToWork: kinds whose failure with no fault is worth a warning
// (resize of a thick volume may find the group full, a remove may meet a
// container the model does not know of).
func expectedToWork(k Kind) bool {
	switch k {
	case OpCreate, OpRunWriter, OpStart, OpStop, OpKill, OpRmContainer, OpCpIn, OpCpOut, OpRotate, OpSnapshot, OpClone:
		return true
	}
	return false
}

// refused: an operation that had to fail did.
type refused struct{ error }

func (s *Soak) exec(o Op) error {
	s.mu.Lock()
	ctr := s.Model.Ctrs[o.Ctr]
	var ctrVol string
	if ctr != nil {
		ctrVol = ctr.Vol
	}
	want := s.Model.Files[ctrVol+"/"+o.File]
	s.mu.Unlock()
	switch o.Kind {
	case OpCreate, OpCreateInvalid, OpClone:
		args := []string{"volume", "create", "-d", "cryptvol"}
		opts := o.Opts
		if o.Kind == OpClone {
			opts = []string{"from=" + o.Src}
		}
		for _, kv := range opts {
			args = append(args, "--opt", kv)
		}
		_, err := docker(append(args, o.Vol)...)
		if o.Kind != OpCreateInvalid {
			return err
		}
		if err == nil {
			s.violate("#%d invalid create %s was accepted", o.Seq, o)
			return nil
		}
		if _, lerr := run("lvs", s.VG+"/cv-"+o.Vol); lerr == nil {
			s.violate("#%d invalid create %s was refused and left LV cv-%s", o.Seq, o, o.Vol)
		}
		return refused{err}
	case OpRunWriter:
		args := []string{"run", "-d", "--name", o.Ctr, "-v", o.Vol + ":/data"}
		if slices.Contains(o.Opts, "auto") {
			args = append(args, "--volume-driver", "cryptvol")
		}
		if slices.Contains(o.Opts, "restart") {
			args = append(args, "--restart=always")
		}
		_, err := docker(append(args, img, "sh", "-c", writerScript(o.Ctr, s.Marker))...)
		if err != nil {
			// A container whose start failed stays (created), holding its
			// volume: it is not part of the model, so it goes.
			docker("rm", "-f", o.Ctr)
		}
		return err
	case OpStart:
		_, err := docker("start", o.Ctr)
		return err
	case OpStop:
		_, err := docker("stop", "-t", "5", o.Ctr)
		return err
	case OpKill:
		_, err := docker("kill", o.Ctr)
		if err != nil && strings.Contains(err.Error(), "is not running") {
			// A fault (dockerd killed without live-restore) stopped it
			// since the model last heard; docker answers as it must.
			return refused{err}
		}
		return err
	case OpRmContainer:
		s.collectAcks(o.Ctr, ctrVol)
		_, err := docker("rm", "-f", o.Ctr)
		return err
	case OpCpIn:
		src := filepath.Join(os.TempDir(), fmt.Sprintf("soak-%s", o.File))
		if err := os.WriteFile(src, []byte(cpContent(o, s.Marker)), 0o600); err != nil {
			return err
		}
		defer os.Remove(src)
		_, err := docker("cp", src, o.Ctr+":/data/"+o.File)
		return err
	case OpCpOut:
		out, err := docker("cp", o.Ctr+":/data/"+o.File, "-")
		if err != nil {
			return err
		}
		files, err := untar([]byte(out))
		if err != nil {
			return err
		}
		if got := files[o.File]; got != want {
			s.violate("#%d docker cp out of %s (volume %s) gave %q for %s, copied in as %q", o.Seq, o.Ctr, ctrVol, got, o.File, want)
		}
		return nil
	case OpVolumeRm:
		s.uncertain(o.Vol)
		users, _ := docker("ps", "-a", "-q", "--filter", "volume="+o.Vol)
		_, err := docker("volume", "rm", o.Vol)
		if strings.TrimSpace(users) != "" {
			if err == nil {
				s.violate("#%d docker volume rm %s succeeded while containers %s use it", o.Seq, o.Vol, strings.Fields(users))
				return nil
			}
			return refused{err}
		}
		return err
	case OpPrune:
		s.mu.Lock()
		for _, v := range s.Model.VolNames(nil) {
			s.Model.Vols[v].Certain = s.Model.Vols[v].Certain && s.Model.Used(v)
		}
		s.mu.Unlock()
		// Docker 23 and later prune only anonymous volumes unless -a;
		// 20.10 has no -a and prunes every unused one.
		args := []string{"volume", "prune", "-f"}
		if s.pruneAll {
			args = append(args, "-a")
		}
		_, err := docker(args...)
		return err
	case OpRotate:
		_, err := s.admin("rotate", o.Vol)
		return err
	case OpResize:
		out, err := docker("volume", "inspect", o.Vol, "--format", `{{index .Status "size_bytes"}}`)
		if err != nil {
			return err
		}
		cur, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			return fmt.Errorf("size_bytes %q: %v", out, err)
		}
		add, _ := strconv.Atoi(strings.Trim(o.Size, "+M"))
		_, err = s.admin("resize", o.Vol, fmt.Sprintf("%dM", cur>>20+int64(add)))
		return err
	case OpSnapshot:
		_, err := s.admin("snapshot", o.Src, o.Vol)
		return err
	}
	return fmt.Errorf("unknown operation %s", o.Kind)
}

// uncertain: the volume may go away (a remove or prune is tried).
func (s *Soak) uncertain(vol string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.Model.Vols[vol]; v != nil {
		v.Certain = false
	}
}

// collectAcks reads a writer container's log into the acknowledged
// records, before docker rm takes the log away; a writer that saw a write
// fail breaks an invariant.
func (s *Soak) collectAcks(ctr, vol string) {
	out, err := docker("logs", ctr)
	if err != nil {
		return
	}
	acked, failed := Acks(out)
	s.mu.Lock()
	for f, n := range acked {
		if a := s.acks[f]; n > a.N {
			s.acks[f] = ack{Vol: vol, N: n}
		}
	}
	s.mu.Unlock()
	for _, f := range failed {
		s.violate("writer %s on volume %s: a write or sync failed (%s)", ctr, vol, f)
	}
}

// untar reads a tar stream's regular files by base name.
func untar(b []byte) (map[string]string, error) {
	byDir, err := untarDirs(b)
	out := map[string]string{}
	for _, files := range byDir {
		for f, data := range files {
			out[f] = data
		}
	}
	return out, err
}

// untarDirs reads a tar stream's regular files by base name, grouped by
// their first directory (dirOf; "" for files at the top).
func untarDirs(b []byte) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("tar: %v", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return out, fmt.Errorf("tar %s: %v", h.Name, err)
		}
		d := dirOf(h.Name)
		if out[d] == nil {
			out[d] = map[string]string{}
		}
		out[d][filepath.Base(h.Name)] = string(data)
	}
}
