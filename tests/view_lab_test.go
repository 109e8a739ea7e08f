//go:build lab

package tests

import (
	"context"
	"errors"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume"
)

// Issue 15: Get, Path and List, what dockerd asks on every docker run and
// inspect, run no program, and see a commit made outside the plugin (an
// operator's lvchange, another host on shared devices) at the next read,
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
