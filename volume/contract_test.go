package volume

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// What dockerd really does, against the bookkeeping. Each test fails for a
// simpler bookkeeping: a set of IDs instead of counts, a teardown without
// the kernel's word, or a journal keyed by name.

// docker cp into or out of a running container: Mount and Unmount under
// the container's own ID while it keeps running.
func TestDockerCpDoesNotCloseARunningContainersVolume(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	h.mustMount("v1", "c1") // docker cp
	h.mustUnmount("v1", "c1")
	h.assertUp("v1")
	if v, err := h.m.Get(h.ctx, "v1"); err != nil || v.Status[StatusMounted] != true {
		t.Fatalf("inspect while the container runs: %+v, %v", v, err)
	}
	h.runContainer("v1", "c2") // another container can still mount it
	h.stopContainer("v1", "c2")
	h.stopContainer("v1", "c1")
	h.assertDown("v1")
	h.assertConsistent()
}

// The kernel says the mapping is held although docker's last Unmount came:
// the volume stays up (never an empty mountpoint under a live user) and is
// closed by the sweeper once nothing holds it.
func TestLastUnmountWhileKernelHoldsKeepsItUpUntilReleased(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	h.mustUnmount("v1", "c1") // dockerd lost track; the container still holds it
	h.assertUp("v1")
	if v, _ := h.m.Get(h.ctx, "v1"); v.Status[StatusPending] == nil {
		t.Errorf("Status does not say the volume is waiting to close: %v", v.Status)
	}
	h.sweepKeepsUntilLetGo("v1")
}

// A teardown that fails is retried until it succeeds (dropping the ID
// without a retry would leave a mapping with no owner).
func TestFailedTeardownIsRetried(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustMount("v1", "c1")
	h.w.failNext("lvm.Deactivate", errors.New("lvm: device busy"))
	if err := h.m.Unmount(h.ctx, "v1", "c1"); err != nil {
		t.Fatalf("unmount: %v (the ID is released; the teardown is the plugin's to finish)", err)
	}
	if _, _, active := h.up("v1"); !active {
		t.Fatal("the injected failure did not happen")
	}
	h.m.Sweep(h.ctx)
	h.assertDown("v1")
	h.assertConsistent()
}

// A lingering volume that is mounted again is no longer retried.
func TestLingeringVolumeMountedAgainStaysUp(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	h.mustUnmount("v1", "c1")
	h.containerGone("v1")
	h.runContainer("v1", "c2")
	h.m.Sweep(h.ctx)
	h.assertUp("v1")
	h.stopContainer("v1", "c2")
	h.assertDown("v1")
}

// dockerd killed with a container running: the plugin restarts in a new
// mount namespace while the container still holds the volume; then dockerd
// stops the container and never sends its Unmount
// (https://github.com/moby/moby/issues/46508).
func TestDockerdKilledStaleIDsAreClosedBySweep(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	h.pluginRestarted()
	h.assertUp("v1") // still held: mounted again for it, IDs kept
	if ids := h.m.st.IDs("v1"); len(ids) != 1 {
		t.Fatalf("ids %v", ids)
	}
	h.containerGone("v1")
	h.m.Sweep(h.ctx)
	h.assertDown("v1")
	if ids := h.m.st.IDs("v1"); len(ids) != 0 {
		t.Fatalf("stale ids kept: %v", ids)
	}
	if err := h.m.Remove(h.ctx, "v1"); err != nil {
		t.Fatalf("docker volume rm: %v", err)
	}
	h.assertConsistent()
}

// Docker 26.1 restarts a SIGKILLed plugin, then can unmount the old
// instance's propagated mount, taking the new instance's mount with it,
// while the container keeps its own. The plugin mounts it again (Status
// and Path are right again); a volume whose mount went and that nothing
// holds is closed by the probe of its suspect IDs.
func TestMountUnmountedFromOutsideIsRestored(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustCreate("v2", nil)
	h.runContainer("v1", "c1")
	h.runContainer("v2", "c2")
	h.pluginRestarted()
	h.assertUp("v1")
	h.w.unmountFromOutside(h.m.mountpoint("v1")) // dockerd's late unmount
	h.w.unmountFromOutside(h.m.mountpoint("v2"))
	h.containerGone("v2")
	h.m.restoreMissing(h.ctx)
	if v, err := h.m.Get(h.ctx, "v1"); err != nil || v.Status[StatusMounted] != true || v.Mountpoint != h.m.dataPath("v1") {
		t.Fatalf("inspect after the outside unmount: %+v, %v", v, err)
	}
	h.m.Sweep(h.ctx)
	if p, err := h.m.Path(h.ctx, "v1"); err != nil || p != filepath.Join(h.m.mountpoint("v1"), "data") {
		t.Fatalf("Path = %q, %v", p, err)
	}
	h.assertUp("v1")
	h.assertDown("v2")
	if ids := h.m.st.IDs("v2"); len(ids) != 0 {
		t.Fatalf("stale ids kept: %v", ids)
	}
	h.stopContainer("v1", "c1")
	h.assertDown("v1")
	h.assertConsistent()
}

// An outside unmount before dockerd binds a path it was just given: the
// bind fails (the data directory is inside the filesystem), never lands in
// a directory of the host's; the plugin mounts the volume again at once,
// keeps the ID, and a bind after that gets the volume.
func TestOutsideUnmountBeforeTheBindFailsClosed(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustMount("v1", "c1") // not yet bound into the container
	h.w.unmountFromOutside(h.m.mountpoint("v1"))
	if h.tryBind("v1") {
		t.Fatal("a bind found a directory to bind while the volume was not mounted")
	}
	if p, err := h.m.Path(h.ctx, "v1"); err != nil || p != "" {
		t.Fatalf("Path while unmounted = %q, %v; want none", p, err)
	}
	h.m.restoreMissing(h.ctx)
	h.assertUp("v1")
	if ids := h.m.st.IDs("v1"); len(ids) != 1 {
		t.Fatalf("ids %v, want c1 kept", ids)
	}
	h.bind("v1")
	h.sweepUnmountsNothing("a mount of the current epoch")
	h.stopContainer("v1", "c1")
	h.assertDown("v1")
	h.assertConsistent()
}

// Live-restore: dockerd comes back without restarting the plugin, and a
// container died meanwhile. Its attach begins an epoch: the IDs recorded
// before are suspect and probed.
func TestDockerAttachProbesMountsRecordedBefore(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustCreate("v2", nil)
	h.runContainer("v1", "c1")
	h.runContainer("v2", "c2") // survives dockerd's absence
	h.containerGone("v1")
	h.m.Sweep(h.ctx)
	h.assertUp("v1") // no reason to doubt the IDs yet
	h.m.DockerAttached()
	h.m.Sweep(h.ctx)
	h.assertDown("v1")
	h.assertUp("v2")
	if ids := h.m.st.IDs("v2"); len(ids) != 1 {
		t.Fatalf("live container's ID dropped: %v", ids)
	}
	h.stopContainer("v2", "c2")
	h.assertDown("v2")
}

// A Mount of the current epoch is never probed: dockerd binds the
// returned path after the Mount.
func TestProbeNeverTouchesAMountOfTheCurrentEpoch(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.m.DockerAttached()
	h.mustMount("v1", "c1") // not yet bound into the container
	h.sweepUnmountsNothing("a fresh mount")
	h.sweepUnmountsNothing("a fresh mount, a sweep later")
	h.assertUp("v1")
}

// An epoch that begins between a Mount and dockerd's bind makes that ID
// suspect; the probe finds nothing holding the volume and closes it. The
// late bind then fails: the container does not start, and nothing is
// written anywhere but the volume. No grace period is needed for safety.
func TestProbeOfAMountNotYetBoundFailsClosed(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustMount("v1", "c1")
	h.m.DockerAttached()
	h.m.Sweep(h.ctx)
	h.assertDown("v1")
	if h.tryBind("v1") {
		t.Fatal("a bind found a directory to bind after the probe closed the volume")
	}
	h.assertConsistent()
}

// dockerd SIGKILLed without live-restore: it restarts the plugin (an
// epoch) and a container with a restart policy starts again under the
// mount ID it had saved, whose first Mount was never unmounted. Its stop
// sends one Unmount: the volume must close, not stay decrypted with no
// container for ever.
func TestRestartPolicyContainerReusingItsIDClosesItsVolume(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	h.pluginRestarted()
	h.containerGone("v1")      // dockerd's restore stopped it, no Unmount
	h.runContainer("v1", "c1") // the restart policy: the same ID
	h.m.Sweep(h.ctx)
	h.assertUp("v1")
	if got := h.m.st.Mounts("v1")["c1"]; got != 2 {
		t.Fatalf("c1 counted %d times, want 2 (one suspect, one current)", got)
	}
	h.stopContainer("v1", "c1") // docker stop: one Unmount
	h.assertUp("v1")            // one suspect count left: the kernel decides
	h.m.Sweep(h.ctx)
	h.assertDown("v1")
	if ids := h.m.st.IDs("v1"); len(ids) != 0 {
		t.Fatalf("ids %v", ids)
	}
	h.assertConsistent()
}

// Suspect IDs are checked at every sweep for as long as something holds
// the volume, however long dockerd takes to restore or stop its
// containers; there is no window after which checks stop.
func TestSuspectIDsAreCheckedWithoutATimeLimit(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	h.pluginRestarted()
	for range 3 {
		h.m.Sweep(h.ctx)
		h.assertUp("v1")
	}
	h.containerGone("v1")
	h.m.Sweep(h.ctx)
	h.assertDown("v1")
	h.assertConsistent()
}

// A propagated mount that is not shared with the host would keep every
// volume mounted here out of dockerd's sight: Mount says so, with the
// repair, and opens nothing; Status shows it until it is repaired.
func TestMountRefusedWhilePropagationIsNotShared(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.w.propagation = "master:7"
	_, err := h.m.Mount(h.ctx, "v1", "c1")
	if err == nil || !strings.Contains(err.Error(), "not shared with the host") || !strings.Contains(err.Error(), "docker plugin disable -f cryptvol") {
		t.Fatalf("Mount: %v", err)
	}
	h.assertDown("v1")
	if v, _ := h.m.Get(h.ctx, "v1"); v.Status[StatusPropagation] == nil {
		t.Fatalf("Status does not say the propagation is broken: %v", v.Status)
	}
	h.w.propagation = "shared:7"
	h.m.Sweep(h.ctx)
	if v, _ := h.m.Get(h.ctx, "v1"); v.Status[StatusPropagation] != nil {
		t.Fatalf("Status still says broken after the repair: %v", v.Status)
	}
	h.runContainer("v1", "c1")
	h.stopContainer("v1", "c1")
	h.assertConsistent()
}

// A filesystem of the older layout (its files at the root), held by
// containers an older cryptvol gave the root: it is never moved under them,
// and a new container is refused, not given the root; once they are gone
// the next first mount moves it into the data directory.
func TestOlderLayoutMovesOnlyWhenNothingHoldsIt(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "old")
	h.restartInNewNamespace() // the upgrade
	h.w.mu.Lock()
	delete(h.w.layout, "cv-v1")
	h.w.oldLayout["cv-v1"] = true
	h.w.mu.Unlock()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.assertUp("v1")
	_, err := h.m.Mount(h.ctx, "v1", "new")
	if err == nil || !strings.Contains(err.Error(), "stop those containers") {
		t.Fatalf("Mount beside containers of the older layout: %v", err)
	}
	if len(h.w.migrated) != 0 || h.tryBind("v1") {
		t.Fatalf("moved under its containers (%v) or bindable", h.w.migrated)
	}
	if v, _ := h.m.Get(h.ctx, "v1"); v.Mountpoint != "" {
		t.Fatalf("Mountpoint %q handed out for the older layout", v.Mountpoint)
	}
	h.containerGone("v1")
	h.m.Sweep(h.ctx)
	h.assertDown("v1")
	h.runContainer("v1", "new")
	if len(h.w.migrated) != 1 {
		t.Fatalf("migrated %v, want cv-v1 once", h.w.migrated)
	}
	h.stopContainer("v1", "new")
	h.assertConsistent()
}

// docker volume rm of a volume whose containers died with dockerd: the IDs
// are checked against the kernel instead of refusing for ever.
func TestRemoveChecksIDsThatMayBeStale(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	h.pluginRestarted()
	if err := h.m.Remove(h.ctx, "v1"); !errors.Is(err, ErrInUse) {
		t.Fatalf("remove while the container runs: %v", err)
	}
	h.containerGone("v1")
	if err := h.m.Remove(h.ctx, "v1"); err != nil {
		t.Fatalf("remove after the container died: %v", err)
	}
	h.assertConsistent()
}

// A remove that fails after erasing (KMIP away), then the same name created
// again and used, then a restart: the new volume and its key survive, and
// the old key is destroyed once KMIP answers.
func TestFailedRemoveNeverDestroysALaterVolumeOfTheSameName(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	oldKey := h.w.headers["cv-v1"].h.Token.KeyID
	kmipDown := errors.New("kmip 127.0.0.1:5696: connection refused")
	h.w.before = func(op, arg string) {
		if op == "keys.Destroy" && arg == oldKey {
			h.w.failNext("keys.Destroy", kmipDown)
		}
	}
	if err := h.m.Remove(h.ctx, "v1"); err == nil {
		t.Fatal("remove succeeded with KMIP away")
	}
	h.mustCreate("v1", nil)
	newKey := h.w.headers["cv-v1"].h.Token.KeyID
	if newKey == oldKey || h.w.keys[newKey].name == h.w.keys[oldKey].name {
		t.Fatalf("the new volume shares the old one's key or key name")
	}
	h.runContainer("v1", "c1")
	h.stopContainer("v1", "c1")
	h.restartInNewNamespace()
	if err := h.m.Reconcile(h.ctx); err == nil {
		t.Log("reconcile could not finish the old remove, as expected with KMIP away")
	}
	if _, ok := h.w.lvs["cv-v1"]; !ok {
		t.Fatal("the new volume's LV was destroyed")
	}
	if _, ok := h.w.keys[newKey]; !ok {
		t.Fatal("the new volume's key was destroyed")
	}
	h.w.before = nil
	h.m.Sweep(h.ctx)
	if _, ok := h.w.keys[oldKey]; ok {
		t.Fatal("the old key survives KMIP's return")
	}
	h.mustMount("v1", "c2")
	h.mustUnmount("v1", "c2")
	h.assertConsistent()
}

// Two creates of one name never share a key name; the VG UUID is in it.
func TestKeyNamesAreUniquePerCreate(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	first := h.w.keys[h.w.headers["cv-v1"].h.Token.KeyID].name
	if err := h.m.Remove(h.ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	h.mustCreate("v1", nil)
	second := h.w.keys[h.w.headers["cv-v1"].h.Token.KeyID].name
	if first == second || !strings.Contains(first, h.w.vg.UUID) || !strings.Contains(second, h.w.vg.UUID) {
		t.Fatalf("key names %q, %q", first, second)
	}
}

// A panic inside a step (a library bug, kmip-go's send race) still undoes
// everything the operation made.
func TestPanicsUndoCreateAndMount(t *testing.T) {
	for _, op := range []string{"crypt.Open", "fs.Mkfs"} {
		h := newHarness(t)
		h.w.before = func(o, arg string) {
			if o == op {
				panic("boom in " + o)
			}
		}
		err := h.m.Create(h.ctx, "v1", nil)
		if err == nil || !strings.Contains(err.Error(), "internal error") {
			t.Fatalf("create with a panic at %s: %v", op, err)
		}
		if len(h.w.lvs) != 0 || len(h.w.keys) != 0 || len(h.w.mappings) != 0 {
			t.Fatalf("panic at %s left lvs=%d keys=%d mappings=%d", op, len(h.w.lvs), len(h.w.keys), len(h.w.mappings))
		}
	}
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.w.before = func(o, arg string) {
		if o == "fs.Mount" {
			panic("boom")
		}
	}
	if _, err := h.m.Mount(h.ctx, "v1", "c1"); err == nil {
		t.Fatal("mount succeeded")
	}
	h.w.before = nil
	h.assertDown("v1")
	h.assertConsistent()
}

// Version 1 state files are read: IDs become counts of one; journal
// entries of bare names never destroy anything found by name alone.
func TestStateVersion1IsConverted(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.mustCreate("v2", nil)
	h.runContainer("v1", "c1")
	v1 := map[string]any{
		"version": 1, "boot_id": "boot-1",
		"mounts":   map[string][]string{"v1": {"c1"}},
		"removing": []string{"v2"}, // a later v2 exists: kept
	}
	b, _ := json.Marshal(v1)
	if err := os.WriteFile(filepath.Join(h.cfg.StateDir, StateFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if err := h.m.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.m.st.Mounts("v1"); got["c1"] != 1 {
		t.Fatalf("converted mounts %v", got)
	}
	if _, ok := h.w.lvs["cv-v2"]; !ok {
		t.Fatal("a legacy remove entry destroyed the LV of its name")
	}
	if s := readState(t, h); s.Version != StateVersion || len(s.Removing) != 0 {
		t.Fatalf("state after conversion: %+v", s)
	}
	h.stopContainer("v1", "c1")
	h.assertConsistent()
}

// A mount taken from under a running container is restored when the mount
// table changes, not a SweepInterval later: with sweeps an hour apart,
// only the watch can bring it back (Docker 26.1 can unmount a restarted
// plugin's mount after it answers; sweep.go restoreMount).
func TestOutsideUnmountIsRestoredWhenTheTableChanges(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SweepInterval = time.Hour })
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	go func() { h.m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	h.w.unmountFromOutside(h.m.mountpoint("v1"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := h.m.Path(h.ctx, "v1")
		if err != nil {
			t.Fatal(err)
		}
		if p == filepath.Join(h.m.mountpoint("v1"), "data") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Path still \"\" 10 s after the mount was taken from outside; the sweep is an hour away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.assertUp("v1")
	cancel()
	<-done
	h.stopContainer("v1", "c1")
	h.assertDown("v1")
	h.assertConsistent()
}
