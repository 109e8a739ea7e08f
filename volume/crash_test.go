package volume

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// scenario is one operation, run on a prepared volume "v", in which the
// plugin process is killed at a chosen step.
type scenario struct {
	name    string
	config  func(*Config) // nil: the harness's defaults
	prepare func(h *harness)
	op      func(h *harness) error
	// after tells, once the volume exists again after recovery, which mount
	// IDs a retry of the operation leaves (the retry must succeed).
	retry func(h *harness) error
}

var crashScenarios = []scenario{
	{
		name:    "create",
		prepare: func(h *harness) {},
		op:      func(h *harness) error { return h.m.Create(h.ctx, "v", map[string]string{"size": "256M"}) },
		retry:   func(h *harness) error { return h.m.Create(h.ctx, "v", map[string]string{"size": "256M"}) },
	},
	{
		name:    "create with root owner and mode",
		prepare: func(h *harness) {},
		op: func(h *harness) error {
			return h.m.Create(h.ctx, "v", map[string]string{"uid": strconv.Itoa(os.Getuid()), "mode": "0750", "mountopts": "noatime"})
		},
		retry: func(h *harness) error {
			return h.m.Create(h.ctx, "v", map[string]string{"uid": strconv.Itoa(os.Getuid()), "mode": "0750", "mountopts": "noatime"})
		},
	},
	{
		name:    "first mount",
		prepare: func(h *harness) { h.mustCreate("v", nil) },
		op:      func(h *harness) error { _, err := h.m.Mount(h.ctx, "v", "c1"); return err },
		retry:   func(h *harness) error { _, err := h.m.Mount(h.ctx, "v", "c1"); return err },
	},
	{
		name:    "second mount",
		prepare: func(h *harness) { h.mustCreate("v", nil); h.mustMount("v", "c1") },
		op:      func(h *harness) error { _, err := h.m.Mount(h.ctx, "v", "c2"); return err },
		retry:   func(h *harness) error { _, err := h.m.Mount(h.ctx, "v", "c2"); return err },
	},
	{
		name:    "last unmount",
		prepare: func(h *harness) { h.mustCreate("v", nil); h.mustMount("v", "c1") },
		op:      func(h *harness) error { return h.m.Unmount(h.ctx, "v", "c1") },
		retry:   func(h *harness) error { return h.m.Unmount(h.ctx, "v", "c1") },
	},
	{
		name:    "rotate",
		prepare: func(h *harness) { h.mustCreate("v", nil) },
		op:      func(h *harness) error { _, err := h.m.Rotate(h.ctx, "v"); return err },
		retry:   func(h *harness) error { _, err := h.m.Rotate(h.ctx, "v"); return err },
	},
	{
		name:    "rotate mounted",
		prepare: func(h *harness) { h.mustCreate("v", nil); h.runContainer("v", "c1") },
		op:      func(h *harness) error { _, err := h.m.Rotate(h.ctx, "v"); return err },
		retry:   func(h *harness) error { _, err := h.m.Rotate(h.ctx, "v"); return err },
	},
	{
		name:    "reencrypt",
		prepare: func(h *harness) { h.mustCreate("v", nil) },
		op:      func(h *harness) error { _, err := h.m.Reencrypt(h.ctx, "v"); return err },
		retry:   func(h *harness) error { _, err := h.m.Reencrypt(h.ctx, "v"); return err },
	},
	{
		name:    "resize",
		prepare: func(h *harness) { h.mustCreate("v", map[string]string{"size": "256M"}) },
		op:      func(h *harness) error { _, err := h.m.Resize(h.ctx, "v", "512M"); return err },
		retry: func(h *harness) error {
			if _, err := h.m.Resize(h.ctx, "v", "512M"); err != nil {
				return err
			}
			return grown(h, "v", 512<<20)
		},
	},
	{
		name:    "resize mounted",
		prepare: func(h *harness) { h.mustCreate("v", map[string]string{"size": "256M"}); h.runContainer("v", "c1") },
		op:      func(h *harness) error { _, err := h.m.Resize(h.ctx, "v", "512M"); return err },
		retry: func(h *harness) error {
			if _, err := h.m.Resize(h.ctx, "v", "512M"); err != nil {
				return err
			}
			return grown(h, "v", 512<<20)
		},
	},
	{
		name:   "clone of a mounted volume",
		config: func(c *Config) { c.ThinPool = "pool" },
		prepare: func(h *harness) {
			h.mustCreate("src", nil)
			h.runContainer("src", "c1")
		},
		op:    func(h *harness) error { return h.m.Create(h.ctx, "v", map[string]string{"from": "src"}) },
		retry: func(h *harness) error { return h.m.Create(h.ctx, "v", map[string]string{"from": "src"}) },
	},
	{
		name:    "remove",
		prepare: func(h *harness) { h.mustCreate("v", nil) },
		op:      func(h *harness) error { return h.m.Remove(h.ctx, "v") },
		retry: func(h *harness) error {
			err := h.m.Remove(h.ctx, "v")
			if errors.Is(err, ErrNotFound) {
				return nil // finished by reconciliation
			}
			return err
		},
	},
	{
		name:    "remove into the trash",
		config:  withGrace(time.Hour),
		prepare: func(h *harness) { h.mustCreate("v", nil) },
		op:      func(h *harness) error { return h.m.Remove(h.ctx, "v") },
		retry: func(h *harness) error {
			if err := h.m.Remove(h.ctx, "v"); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			return inTrash(h, 1)
		},
	},
	{
		name:    "restore from the trash",
		config:  withGrace(time.Hour),
		prepare: func(h *harness) { h.mustCreate("v", nil); mustRemove(h, "v") },
		op:      func(h *harness) error { _, err := h.m.Restore(h.ctx, "v", ""); return err },
		retry: func(h *harness) error {
			if _, err := h.m.Get(h.ctx, "v"); err != nil {
				if _, err := h.m.Restore(h.ctx, "v", ""); err != nil {
					return err
				}
			}
			if _, err := h.m.Mount(h.ctx, "v", "c9"); err != nil {
				return err
			}
			if err := h.m.Unmount(h.ctx, "v", "c9"); err != nil {
				return err
			}
			return inTrash(h, 0)
		},
	},
	{
		name:    "purge",
		config:  withGrace(time.Millisecond),
		prepare: func(h *harness) { h.mustCreate("v", nil); mustRemove(h, "v"); time.Sleep(2 * time.Millisecond) },
		op:      func(h *harness) error { h.m.Sweep(h.ctx); return nil },
		retry: func(h *harness) error {
			h.m.Sweep(h.ctx)
			if len(h.w.keys) != 0 {
				return fmt.Errorf("%d keys left after a purge", len(h.w.keys))
			}
			return inTrash(h, 0)
		},
	},
}

func mustRemove(h *harness, name string) {
	h.t.Helper()
	if err := h.m.Remove(h.ctx, name); err != nil {
		h.t.Fatal(err)
	}
}

// inTrash checks the trash holds n entries.
func inTrash(h *harness, n int) error {
	list, err := h.m.Trash(h.ctx)
	if err != nil {
		return err
	}
	if len(list) != n {
		return fmt.Errorf("trash holds %d entries, want %d: %+v", len(list), n, list)
	}
	return nil
}

// TestCrashAtEveryStep kills the plugin at every step (every call it makes
// to lvm, cryptsetup, mount, KMIP and the state file) of Create, Mount,
// Unmount and Remove, restarts it, reconciles, and checks: no orphan LV,
// mapping, mount or key; surviving volumes unlock with their key; and
// retrying the operation succeeds.
func TestCrashAtEveryStep(t *testing.T) {
	total, held := 0, 0
	for _, sc := range crashScenarios {
		// Count the steps of an uninterrupted run.
		h := newHarness(t, sc.mutate()...)
		sc.prepare(h)
		before := h.s.n.Load()
		if err := sc.op(h); err != nil {
			t.Fatalf("%s without crash: %v", sc.name, err)
		}
		steps := int(h.s.n.Load() - before)

		for k := 1; k <= steps; k++ {
			total++
			ok := t.Run(fmt.Sprintf("%s/step%02d", sc.name, k), func(t *testing.T) {
				h := newHarness(t, sc.mutate()...)
				sc.prepare(h)
				h.s.crashAt = int(h.s.n.Load()) + k
				_ = sc.op(h)
				if !h.s.dead.Load() {
					t.Fatalf("no crash at step %d", k)
				}
				h.restart()
				if err := h.m.Reconcile(h.ctx); err != nil {
					t.Fatalf("reconcile: %v", err)
				}
				h.assertConsistent()
				if err := sc.retry(h); err != nil {
					t.Fatalf("retry after crash: %v", err)
				}
				h.assertConsistent()
			})
			if ok {
				held++
			}
		}
	}
	t.Logf("crash points: %d/%d recovered with no orphans", held, total)
	if total < 40 {
		t.Errorf("only %d crash points exercised", total)
	}
}

func (sc scenario) mutate() []func(*Config) {
	if sc.config == nil {
		return nil
	}
	return []func(*Config){sc.config}
}
