//go:build lab

package tests

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume"
)

// Get, Path and List, what dockerd asks on every docker run and inspect,
// run no program, and see a commit made outside the plugin (an operator's
// lvchange, another host on shared devices) at the next read,
// from the metadata text on the devices.
func TestLabReadsRunNoProgramAndSeeOutsideCommits(t *testing.T) {
	s := newStack(t)
	var runs atomic.Int64
	counted, err := lvm.New(s.vg, lvm.WithExec(func(ctx context.Context, stdin []byte, prog string, args ...string) ([]byte, error) {
		runs.Add(1)
		return command.Runner(command.ProgramAndAction)(ctx, stdin, prog, args...)
	}))
	if err != nil {
		t.Fatal(err)
	}
	s.lvm = counted
	s.restart()
	s.create("lab-view", nil)
	p := s.mount("lab-view", "a")
	defer s.unmount("lab-view", "a")
	reads := func() {
		t.Helper()
		vols, err := s.mgr.List(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, v := range vols {
			if v.Name == "lab-view" {
				found = v.Mountpoint == p && v.Status[volume.StatusMounted] == true
			}
		}
		if !found {
			t.Fatalf("List does not show lab-view mounted at %s: %+v", p, vols)
		}
		if v, err := s.mgr.Get(ctx(t), "lab-view"); err != nil || v.Mountpoint != p {
			t.Fatalf("Get = %+v, %v", v, err)
		}
		if got, err := s.mgr.Path(ctx(t), "lab-view"); err != nil || got != p {
			t.Fatalf("Path = %q, %v", got, err)
		}
	}
	reads() // the first read after the plugin's own commits reads the metadata text once
	runs.Store(0)
	for i := 0; i < 5; i++ {
		reads()
	}
	if n := runs.Load(); n != 0 {
		t.Fatalf("5 rounds of List, Get and Path ran lvm %d times, want 0", n)
	}

	lvchange := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("lvm", append([]string{"lvchange"}, append(args, s.vg+"/cv-lab-view")...)...).CombinedOutput(); err != nil {
			t.Fatalf("lvchange %v: %v: %s", args, err, out)
		}
	}
	// Outside the plugin, the volume stops being complete: the next Get says so.
	lvchange("--deltag", volume.TagReady)
	if _, err := s.mgr.Get(ctx(t), "lab-view"); !errors.Is(err, volume.ErrNotFound) {
		t.Fatalf("Get after the ready tag was taken away outside: %v, want not found", err)
	}
	lvchange("--addtag", volume.TagReady)
	runs.Store(0)
	reads()
	if n := runs.Load(); n != 0 {
		t.Errorf("the first reads after an outside commit ran lvm %d times, want 0 (the view reads the metadata text)", n)
	}
}

// Restart to answering: a restart of the plugin process (no
// CRYPTVOL_DEVICES) finds its volume group on the devices the last start
// learned and reconciles from the metadata text, so it runs no program. A
// record naming a device that is not the group's costs that start one vgs,
// which puts the group's real devices back in the record.
func TestLabRestartRunsNoProgram(t *testing.T) {
	p := newPlug(t)
	shim := filepath.Join(p.dir, "shim")
	installShim(t, shim)
	p.start(shim)
	p.must("create", p.create("lab-restart", nil))
	defer func() {
		if p.cmd == nil {
			p.start(shim)
		}
		if err := p.remove("lab-restart"); err != nil {
			t.Errorf("remove: %v", err)
		}
	}()
	restart := func() []string {
		t.Helper()
		p.stop()
		plan(t, shim, 0, "count")
		p.start(shim)
		calls := disarm(t, shim)
		if v, err := p.get("lab-restart"); err != nil || v.Name != "lab-restart" {
			t.Fatalf("after the restart Get = %+v, %v", v, err)
		}
		return calls
	}
	if calls := restart(); len(calls) != 0 {
		t.Fatalf("a restart ran %d programs, want none: %q", len(calls), calls)
	}

	record := filepath.Join(p.dir, "state", "lvm-devices.json")
	notPV := filepath.Join(p.dir, "not-a-pv")
	if err := os.WriteFile(notPV, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	stale, _ := json.Marshal(map[string]any{"vg": os.Getenv("CRYPTVOL_LAB_VG"), "devices": []string{notPV}})
	if err := os.WriteFile(record, stale, 0o600); err != nil {
		t.Fatal(err)
	}
	if calls := restart(); len(calls) != 1 || !strings.HasPrefix(calls[0], "lvm vgs ") {
		t.Fatalf("a restart with a stale record ran %q, want one vgs", calls)
	}
	if b, err := os.ReadFile(record); err != nil || strings.Contains(string(b), notPV) || !strings.Contains(string(b), `"/dev/`) {
		t.Fatalf("the record after vgs: %s (%v), want the group's devices", b, err)
	}
	if calls := restart(); len(calls) != 0 {
		t.Fatalf("the restart after that ran %q, want none", calls)
	}
}
