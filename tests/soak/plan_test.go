package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// simulate runs n steps of a chooser against a model that every operation
// succeeds on, as the driver would apply them, and returns the steps.
func simulate(seed uint64, n int) []string {
	c, m := NewChooser(seed), NewModel()
	var down Down
	var out []string
	for range n {
		s := c.Next(m, down)
		apply(m, s.Op)
		down = down.after(s.Op.Fault)
		if s.KMIPBack {
			down.KMIP = false
		}
		if s.PoolDrain {
			down.Pool = false
		}
		down = down.after(s.After)
		line := fmt.Sprintf("#%d %s", s.Op.Seq, s.Op)
		if s.KMIPBack {
			line += " kmip-start"
		}
		if s.PoolDrain {
			line += " pool-drain"
		}
		if s.After != nil {
			line += " then " + s.After.String()
		}
		out = append(out, line)
	}
	return out
}

// apply is the model update of a successful operation (ops.go does the
// same after docker's answers).
func apply(m *Model, o Op) {
	applyOK(m, o, "M")
	for _, s := range o.Sub {
		apply(m, s)
	}
}

func TestSameSeedSameSequence(t *testing.T) {
	a, b := simulate(7, 400), simulate(7, 400)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatal("seed 7 gave two different sequences")
	}
	if c := simulate(8, 400); strings.Join(a, "\n") == strings.Join(c, "\n") {
		t.Fatal("seeds 7 and 8 gave the same sequence")
	}
}

func TestEveryKindIsChosenAndTargetsExist(t *testing.T) {
	c, m := NewChooser(1), NewModel()
	seen := map[Kind]int{}
	var check func(o Op)
	check = func(o Op) {
		seen[o.Kind]++
		switch o.Kind {
		case OpStart, OpStop, OpKill, OpRmContainer, OpCpIn, OpCpOut:
			if m.Ctrs[o.Ctr] == nil {
				t.Fatalf("#%d %s: container %q is not in the model", o.Seq, o, o.Ctr)
			}
		case OpVolumeRm, OpRotate, OpResize:
			if m.Vols[o.Vol] == nil {
				t.Fatalf("#%d %s: volume %q is not in the model", o.Seq, o, o.Vol)
			}
		case OpSnapshot, OpClone:
			if v := m.Vols[o.Src]; v == nil || !v.Thin || v.ReadOnly {
				t.Fatalf("#%d %s: source %q is not a thin writable volume", o.Seq, o, o.Src)
			}
		}
		for _, s := range o.Sub {
			check(s)
		}
	}
	for range 2000 {
		s := c.Next(m, Down{})
		check(s.Op)
		apply(m, s.Op)
	}
	for _, w := range opWeights {
		if seen[w.kind] == 0 {
			t.Errorf("%s never chosen in 2000 steps", w.kind)
		}
	}
}

// The writer's script, run by busybox sh against a directory of this
// machine instead of /data, writes records the verifier accepts and acks
// each one after it.
func TestWriterScriptWritesVerifiableRecords(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox on this machine")
	}
	dir := t.TempDir()
	script := strings.ReplaceAll(writerScript("w1", "MARK"), "/data/", dir+"/")
	script = strings.Replace(script, "sleep 2; done", "[ $i -ge 3 ] \\&\\& exit 0; done", 1)
	script = strings.ReplaceAll(script, "\\&\\&", "&&")
	out, err := exec.Command(bb, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("writer: %v: %s", err, out)
	}
	acked, failed := Acks(string(out))
	if len(acked) != 1 || len(failed) != 0 {
		t.Fatalf("acks %v, failures %v in %q", acked, failed, out)
	}
	for f, n := range acked {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if res, err := VerifyLog(data, f, n); err != nil || res.Valid != 3 || n != 3 {
			t.Fatalf("%s: %+v, %v (acked %d)", f, res, err, n)
		}
	}
}

// Every fault is chosen; none that needs the KMIP server up is chosen
// while it is down, and a recovery comes only for what is down.
func TestFaultsFireOnlyWhenTheyCan(t *testing.T) {
	c, m := NewChooser(3), NewModel()
	var down Down
	seen := map[Kind]int{}
	fire := func(seq int, f *Fault) {
		if f == nil {
			return
		}
		seen[f.Kind]++
		kmipFault := f.Kind == FaultKMIPStop || f.Kind == FaultKMIPSilent || f.Kind == FaultKMIPSlow
		if kmipFault && down.KMIP {
			t.Fatalf("#%d: %s chosen while the KMIP server is down", seq, f)
		}
		if f.Kind == FaultKMIPSlow && (f.ForS < 20 || f.ForS > 90) {
			t.Fatalf("#%d: %s: want 20-90 s", seq, f)
		}
		down = down.after(f)
	}
	for range 4000 {
		s := c.Next(m, down)
		apply(m, s.Op)
		fire(s.Op.Seq, s.Op.Fault)
		if s.KMIPBack && !down.KMIP || s.PoolDrain && !down.Pool {
			t.Fatalf("#%d: a recovery of what is not down (%+v)", s.Op.Seq, down)
		}
		down.KMIP = down.KMIP && !s.KMIPBack
		down.Pool = down.Pool && !s.PoolDrain
		fire(s.Op.Seq, s.After)
	}
	for _, w := range faultWeights {
		if seen[w.kind] == 0 {
			t.Errorf("%s never chosen in 4000 steps", w.kind)
		}
	}
}
