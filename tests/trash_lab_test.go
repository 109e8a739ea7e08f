//go:build lab

package tests

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/plugin"
)

func (p *plug) restore(what, as string) error {
	return p.call(plugin.RestorePath, plugin.VolumeRequest{Name: what, As: as}, nil)
}

// trashLVs lists the LVs of volume v's entries in the trash (cv-v+MILLIS),
// read from lvm, not from the plugin.
func trashLVs(t *testing.T, v string) []string {
	t.Helper()
	out, err := run(t, "lvs", "--noheadings", "-o", "lv_name", os.Getenv("CRYPTVOL_LAB_VG"))
	if err != nil {
		t.Fatalf("lvs: %v", err)
	}
	var found []string
	for _, n := range strings.Fields(out) {
		if strings.HasPrefix(n, "cv-"+v+"+") {
			found = append(found, n)
		}
	}
	return found
}

// assertTrashed: v is gone from the plugin, in the trash once, its key
// Deactivated on the KMIP server (GetDeactivated serves it, Get does not).
func assertTrashed(t *testing.T, p *plug, v string) {
	t.Helper()
	if _, err := p.get(v); err == nil {
		t.Errorf("%s: the plugin still serves it after its remove", v)
	}
	if lvs := trashLVs(t, v); len(lvs) != 1 {
		t.Errorf("%s: %d trash entries %v, want 1", v, len(lvs), lvs)
	}
	ids := kmipKeys(t, v)
	if len(ids) != 1 {
		t.Fatalf("%s: %d KMIP keys named for it in the trash, want 1", v, len(ids))
	}
	if _, err := labKeys(t).Get(ctx(t), ids[0]); !errors.Is(err, keys.ErrNotActive) {
		t.Errorf("%s: its key %s in the trash: Get says %v, want not active", v, ids[0], err)
	}
	k, err := labKeys(t).GetDeactivated(ctx(t), ids[0])
	if err != nil {
		t.Errorf("%s: its Deactivated key %s cannot be fetched to restore it: %v", v, ids[0], err)
	}
	k.Wipe()
}

// waitPurged waits for the sweeper to purge v's trash entry: its LV and
// every key named for it gone.
func waitPurged(t *testing.T, p *plug, v string, dead func() bool) error {
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if dead != nil && dead() {
			return nil
		}
		if len(trashLVs(t, v)) == 0 && len(kmipKeys(t, v)) == 0 {
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("%s: not purged within 90 s (trash %v, keys %v)", v, trashLVs(t, v), kmipKeys(t, v))
}

// dead reports whether the plugin process has exited, leaving its exit for
// waitDead.
func (p *plug) dead() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// mountReadBack mounts v, finds the data written before the crash, and
// unmounts it.
func mountReadBack(t *testing.T, p *plug, v string) {
	t.Helper()
	mp, err := p.mount(v, "check")
	p.must("mount", err)
	readBack(t, p, mp)
	p.must("unmount", p.unmount(v, "check"))
}

// destroyNow removes v at once: the plugin restarted with no grace for it.
func destroyNow(t *testing.T, p *plug, v string) {
	t.Helper()
	env := p.env
	p.stop()
	p.env = append(append([]string(nil), env...), "CRYPTVOL_REMOVE_GRACE=off")
	p.start(p.shimDir)
	p.must("remove with no grace", p.remove(v))
	p.stop()
	p.env = env
	p.start(p.shimDir)
}

var trashCrashCases = []crashCase{
	{
		op:      "remove into the trash",
		keep:    true,
		prepare: ensureWithData,
		do:      func(p *plug, v string) error { return p.remove(v) },
		retry: func(p *plug, v string) error {
			if _, err := p.get(v); err == nil {
				return p.remove(v)
			}
			return nil
		},
		verify: func(t *testing.T, p *plug, v string) {
			assertTrashed(t, p, v)
			// Back for the next crash point, which is also a restore.
			p.must("restore", p.restore(v, ""))
			mountReadBack(t, p, v)
		},
		cleanup: destroyNow,
	},
	{
		op:   "restore",
		keep: true,
		prepare: func(t *testing.T, p *plug, v string) {
			ensureWithData(t, p, v)
			p.must("remove into the trash", p.remove(v))
		},
		do: func(p *plug, v string) error { return p.restore(v, "") },
		retry: func(p *plug, v string) error {
			if _, err := p.get(v); err != nil {
				return p.restore(v, "")
			}
			return nil
		},
		verify: func(t *testing.T, p *plug, v string) {
			assertDown(t, p, v) // one key named for it: the Deactivated one is destroyed
			if lvs := trashLVs(t, v); len(lvs) != 0 {
				t.Errorf("%s: still in the trash after its restore: %v", v, lvs)
			}
			mountReadBack(t, p, v)
		},
		cleanup: destroyNow,
	},
	{
		op:         "purge",
		unanswered: true,
		prepare: func(t *testing.T, p *plug, v string) {
			ensureWithData(t, p, v)
			p.must("remove into the trash", p.remove(v))
			// Its grace passed: the remove's time in its name an hour and
			// a minute back. The plugin's first sweep, 15 s after its
			// start, purges it.
			p.stop()
			lvs := trashLVs(t, v)
			if len(lvs) != 1 {
				t.Fatalf("%s: trash entries %v, want 1", v, lvs)
			}
			ms, err := strconv.ParseInt(strings.TrimPrefix(lvs[0], "cv-"+v+"+"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			old := fmt.Sprintf("cv-%s+%d", v, ms-61*60*1000)
			if out, err := run(t, "lvrename", os.Getenv("CRYPTVOL_LAB_VG"), lvs[0], old); err != nil {
				t.Fatalf("lvrename: %v: %s", err, out)
			}
			p.start(p.shimDir)
		},
		cleanup: func(*testing.T, *plug, string) {},
		do:      func(p *plug, v string) error { return waitPurged(p.t, p, v, p.dead) },
		retry:   func(p *plug, v string) error { return waitPurged(p.t, p, v, nil) },
		verify: func(t *testing.T, p *plug, v string) {
			assertGone(t, p, v)
			if lvs := trashLVs(t, v); len(lvs) != 0 {
				t.Errorf("%s: still in the trash: %v", v, lvs)
			}
		},
	},
}

// TestLabKillAtEveryStepOfTheTrash is TestLabKillAtEveryStep for the
// undo window (volume/trash.go, trashrestore.go), the plugin run with
// CRYPTVOL_REMOVE_GRACE=1h: a remove into the trash, a restore from it, and
// the sweeper's purge of an entry whose grace has passed, each SIGKILLed at
// every step that changes something. Not in make test, for its time (a
// purge waits for a sweep): scripts/vm/test-stage crash runs it after
// TestLabKillAtEveryStep (tests/README.md).
func TestLabKillAtEveryStepOfTheTrash(t *testing.T) {
	needFaults(t)
	p, shim := newFaultsPlug(t, "CRYPTVOL_REMOVE_GRACE=1h")
	killAtEveryStep(t, p, shim, "tc", trashCrashCases)
}
