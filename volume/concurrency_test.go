package volume

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConcurrentDistinctVolumes(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.DefaultSize = 64 << 20 })
	h.s.track = true
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("vol%02d", i)
			if err := h.m.Create(h.ctx, name, nil); err != nil {
				errs <- err
				return
			}
			if _, err := h.m.Mount(h.ctx, name, "c"); err != nil {
				errs <- err
				return
			}
			if _, err := h.m.List(h.ctx); err != nil {
				errs <- err
				return
			}
			if err := h.m.Unmount(h.ctx, name, "c"); err != nil {
				errs <- err
				return
			}
			if i%2 == 0 {
				if err := h.m.Remove(h.ctx, name); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(h.w.lvs) != n/2 || len(h.w.keys) != n/2 || len(h.w.mappings) != 0 || len(h.w.mounts) != 0 {
		t.Errorf("final: %d LVs %d keys %d mappings %d mounts", len(h.w.lvs), len(h.w.keys), len(h.w.mappings), len(h.w.mounts))
	}
	if h.w.maxTotal < 2 {
		t.Errorf("operations on distinct volumes never overlapped (max %d in flight)", h.w.maxTotal)
	}
	if h.w.maxPerVol > 1 {
		t.Errorf("%d operations ran at once on one volume", h.w.maxPerVol)
	}
	h.assertConsistent()
	h.restart()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.assertConsistent()
}

func TestConcurrentIDsOnOneVolume(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("shared", nil)
	h.s.track = true
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	// Half the IDs stay; half mount and unmount again.
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("c%02d", i)
			p, err := h.m.Mount(h.ctx, "shared", id)
			if err != nil {
				errs <- err
				return
			}
			if p == "" {
				errs <- fmt.Errorf("empty path for %s", id)
			}
			if i%2 == 1 {
				if err := h.m.Unmount(h.ctx, "shared", id); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if h.w.maxPerVol > 1 {
		t.Errorf("%d operations ran at once on one volume", h.w.maxPerVol)
	}
	if ids := h.m.st.IDs("shared"); len(ids) != n/2 {
		t.Fatalf("%d ids, want %d", len(ids), n/2)
	}
	h.assertUp("shared")
	h.assertConsistent()
	for i := 0; i < n; i += 2 {
		h.mustUnmount("shared", fmt.Sprintf("c%02d", i))
	}
	h.assertDown("shared")
	h.assertConsistent()
}

// Creates beyond MaxCreates wait before making anything; one whose request
// runs out of time while waiting fails naming why, and has made nothing:
// no KMIP key, no LV, no journal entry.
func TestCreatesWaitTheirTurn(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxCreates = 1 })
	release, first := h.createHeldAtMkfs("first")

	ctx, cancel := context.WithTimeout(h.ctx, 100*time.Millisecond)
	defer cancel()
	err := h.m.Create(ctx, "second", nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `volume "second": not created, nothing was made`) ||
		!strings.Contains(err.Error(), "CRYPTVOL_MAX_CREATES") {
		t.Fatalf("create waiting behind a full line: %v", err)
	}
	// Not even a lookup: with 50 creates each running lvs before their
	// turn, one vgs can outlast docker's deadline (seen in the lab).
	for _, c := range h.w.callLog() {
		if strings.Contains(c, "second") {
			t.Errorf("the create that never got its turn ran %q", c)
		}
	}

	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	h.mustCreate("second", nil) // the slot is free again
	h.assertConsistent()
	h.restart()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.assertConsistent()
}

// Removes take the same turns (turns.go): unbounded, a burst of removes
// outlasts docker's request deadline. One that runs out of time waiting has
// touched nothing: the volume, its key and its data are intact, and a
// later remove works.
func TestRemovesWaitTheirTurn(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxCreates = 1 })
	h.mustCreate("old", nil)
	release, first := h.createHeldAtMkfs("first")

	keysBefore := len(h.w.keys)
	ctx, cancel := context.WithTimeout(h.ctx, 100*time.Millisecond)
	defer cancel()
	err := h.m.Remove(ctx, "old")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `volume "old": not removed, nothing was touched`) ||
		!strings.Contains(err.Error(), "CRYPTVOL_MAX_CREATES") {
		t.Fatalf("remove waiting behind a full line: %v", err)
	}
	if h.w.lvs["cv-old"] == nil || len(h.w.keys) != keysBefore {
		t.Fatal("the remove that never got its turn touched the volume or its key")
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Get(h.ctx, "old"); err != nil {
		t.Fatalf("the volume is not usable after the refused remove: %v", err)
	}
	if err := h.m.Remove(h.ctx, "old"); err != nil {
		t.Fatal(err)
	}
	h.assertConsistent()
}

// createHeldAtMkfs starts a Create of name that holds its turn at mkfs until
// release is closed; first gets its result.
func (h *harness) createHeldAtMkfs(name string) (release chan struct{}, first chan error) {
	building := make(chan struct{})
	release, first = make(chan struct{}), make(chan error, 1)
	var blocked atomic.Bool
	h.w.before = func(op, arg string) {
		if op == "fs.Mkfs" && blocked.CompareAndSwap(false, true) {
			close(building)
			<-release
		}
	}
	go func() { first <- h.m.Create(h.ctx, name, nil) }()
	<-building
	return release, first
}
