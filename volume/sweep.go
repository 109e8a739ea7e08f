package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/volume/internal/journal"
)

// What the sweeper does, and why:
//
//   - A volume whose last Mount was released but which could not be taken
//     down (teardown failed, or the kernel still holds the mapping) lingers:
//     it is retried every Config.SweepInterval until it goes down or is
//     mounted again.
//   - dockerd does not persist which mounts are active. Killed and started
//     again, it stops the containers it had running and never sends their
//     Unmounts (https://github.com/moby/moby/issues/46508); under
//     live-restore, containers that die while it is down end the same way;
//     and a container with a restart policy starts again under the mount ID
//     it had saved (moby volume/mounts/mounts.go@v26.1.5, MountPoint.Setup
//     reuses m.ID), so one ID can carry a Mount its container will never
//     Unmount. So the counts recorded before the plugin's latest start or
//     dockerd's latest attach (an epoch) are suspect. A Mount counts in the
//     current epoch, an Unmount takes back a Mount of the current epoch
//     first, and a volume all of whose counts are suspect is probed at
//     every sweep, with no time limit, until the kernel says nothing holds
//     it (then its IDs were stale and are dropped) or a Mount of the
//     current epoch comes.
//
// A probe unmounts the plugin's mount for as long as a close attempt takes
// (release): that can no longer expose a directory, since a container is
// given the data directory inside the filesystem (mount/layout.go), which
// does not exist while the filesystem is not mounted. A bind of that path
// made during the probe fails instead; the volume lock keeps every Mount
// out of it, and a volume with a Mount of the current epoch is never
// probed, so only a bind whose Mount predates the epoch can meet it.
type sweeper struct {
	mu sync.Mutex
	// current counts, per volume and mount ID, the Mounts of this epoch
	// not yet matched by an Unmount.
	current   map[string]map[string]int
	lingering map[string]error // volume -> why it is still up with no ID
	interval  time.Duration
	wake      chan struct{}
}

func newSweeper(interval time.Duration) *sweeper {
	return &sweeper{
		current: map[string]map[string]int{}, lingering: map[string]error{},
		interval: interval, wake: make(chan struct{}, 1),
	}
}

// mounted counts a Mount of id in the current epoch; the volume is in use
// and no longer lingers.
func (s *sweeper) mounted(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current[name] == nil {
		s.current[name] = map[string]int{}
	}
	s.current[name][id]++
	delete(s.lingering, name)
}

// unmounted takes back one Mount of id of the current epoch, if there is
// one; a volume left with idsLeft IDs, all suspect, wakes the sweeper to
// probe it.
func (s *sweeper) unmounted(name, id string, idsLeft int) {
	s.mu.Lock()
	if n := s.current[name][id]; n > 1 {
		s.current[name][id]--
	} else if n == 1 {
		delete(s.current[name], id)
		if len(s.current[name]) == 0 {
			delete(s.current, name)
		}
	}
	suspect := idsLeft > 0 && len(s.current[name]) == 0
	s.mu.Unlock()
	if suspect {
		s.poke()
	}
}

// forget drops the volume's current counts: its IDs are gone.
func (s *sweeper) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.current, name)
}

// linger records that the volume must go down and has not.
func (s *sweeper) linger(name string, why error) {
	s.mu.Lock()
	s.lingering[name] = why
	s.mu.Unlock()
	s.poke()
}

func (s *sweeper) settled(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.lingering, name)
}

// pending returns why the volume is up with no mount ID, or nil.
func (s *sweeper) pending(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lingering[name]
}

// newEpoch makes every recorded count suspect.
func (s *sweeper) newEpoch() {
	s.mu.Lock()
	s.current = map[string]map[string]int{}
	s.mu.Unlock()
	s.poke()
}

func (s *sweeper) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// suspect reports whether the volume has mount IDs and none of them has a
// Mount of the current epoch.
func (s *sweeper) suspect(name string, ids []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(ids) > 0 && len(s.current[name]) == 0
}

func (s *sweeper) lingeringNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.lingering))
}

// DockerAttached is called when dockerd (re)attaches to the plugin: mounts
// recorded before may belong to containers that died while it was away, so
// a new epoch begins.
func (m *Manager) DockerAttached() {
	m.log.WithField("op", "sweep").Info("dockerd attached: mounts recorded before are checked against the kernel until a container mounts them again or nothing holds them")
	m.sw.newEpoch()
}

// Run sweeps until ctx ends: lingering volumes are taken down, possibly
// stale mount IDs probed, and removes whose KMIP step failed retried; with
// Config.RotateAfter set, keys that old are rotated (schedule.go). Start
// it after Reconcile. Between sweeps, a change of the mount table is
// answered at once by restoreMissing, so a mount taken from under a running
// container is back within the time a mount takes, not a SweepInterval.
func (m *Manager) Run(ctx context.Context) {
	if m.cfg.RotateAfter > 0 {
		go m.runSchedule(ctx)
	}
	t := time.NewTicker(m.sw.interval)
	defer t.Stop()
	changed := make(chan struct{}, 1)
	go func() {
		err := m.fs.WatchMounts(ctx, func() {
			select {
			case changed <- struct{}{}:
			default: // a pass is due already; it reads the table after this change
			}
		})
		if err != nil {
			m.log.WithField("op", "sweep").WithError(err).Warn("not watching the mount table: a mount taken from outside is restored only by the next sweep")
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Sweep(ctx)
		case <-m.sw.wake:
			m.Sweep(ctx)
		case <-changed:
			m.restoreMissing(ctx)
		}
	}
}

// Sweep runs one round of Run's work.
func (m *Manager) Sweep(ctx context.Context) {
	m.checkPropagation()
	for _, name := range m.sw.lingeringNames() {
		m.sweepLingering(ctx, name)
	}
	probed := 0
	for name := range m.st.Snapshot().Mounts {
		if m.sw.suspect(name, m.st.IDs(name)) {
			probed++
			if err := m.probe(ctx, name); err != nil {
				m.logFor(name, "sweep").WithError(err).Warn("probing whether the volume is still held failed")
			}
		} else if err := m.restoreMount(ctx, name); err != nil {
			m.logFor(name, "sweep").WithError(err).Warn("restoring the plugin's mount of a volume in use failed")
		}
	}
	for _, e := range m.st.Snapshot().Removing {
		if err := m.retryRemove(ctx, e); err != nil {
			m.logFor(e.Volume, "sweep").WithError(err).Debug("unfinished remove still cannot finish")
		}
	}
	// A rotation that could not finish (KMIP away at its end) is finished
	// here, so that the old key does not outlive it for long.
	for _, e := range m.st.Snapshot().Rotating {
		if err := m.withLock(e.Volume, func(log logrus.FieldLogger) error { return m.settleRotation(ctx, e, log) }); err != nil {
			m.logFor(e.Volume, "sweep").WithError(err).Debug("unfinished key rotation still cannot be settled")
		}
	}
	m.sweepTrash(ctx)
	m.log.WithFields(logrus.Fields{"op": "sweep", "probed": probed}).Debug("sweep done")
}

func (m *Manager) sweepLingering(ctx context.Context, name string) {
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "sweep")
	if len(m.st.IDs(name)) > 0 || m.sw.pending(name) == nil {
		m.sw.settled(name) // mounted again meanwhile
		return
	}
	held, err := m.release(ctx, name, log)
	switch {
	case err != nil:
		m.sw.linger(name, err)
		log.WithError(err).Warn("taking the volume down failed again; retrying")
	case held:
		m.sw.linger(name, errHeld)
		log.Debug("volume still held")
	default:
		m.sw.settled(name)
		log.Info("volume taken down: nothing holds it any more")
	}
}

// probe checks whether anything still holds a volume whose mount IDs are
// all suspect, and drops them if nothing does.
func (m *Manager) probe(ctx context.Context, name string) error {
	unlock := m.lock(name)
	defer unlock()
	ids := m.st.IDs(name)
	if !m.sw.suspect(name, ids) {
		return nil
	}
	return m.releaseOrDrop(ctx, name, outcomes{
		heldLevel: logrus.DebugLevel,
		held:      "volume still held by its containers",
		dropped:   "volume closed: nothing held it, so its mount IDs were stale (their containers ended while dockerd was not tracking them, https://github.com/moby/moby/issues/46508)",
	})
}

// outcomes are what releaseOrDrop logs for each answer.
type outcomes struct {
	heldLevel     logrus.Level
	held, dropped string
}

// releaseOrDrop releases a volume whose mount IDs are in doubt (the caller
// holds its lock) and logs the answer: held, it is mounted (again) and its
// IDs kept; not held, it is closed and its IDs, stale, dropped.
func (m *Manager) releaseOrDrop(ctx context.Context, name string, say outcomes) error {
	log := m.logFor(name, "sweep").WithField("mount_ids", len(m.st.IDs(name)))
	held, err := m.release(ctx, name, log)
	switch {
	case err != nil:
		return err
	case held:
		log.Log(say.heldLevel, say.held)
		return nil
	}
	if err := m.dropIDs(name); err != nil {
		return fmt.Errorf("volume %q: dropping stale mount IDs: %w", name, err)
	}
	log.Warn(say.dropped)
	return nil
}

// errStillRemoving refuses a create while an earlier volume of the same
// name is still being taken apart.
var errStillRemoving = errors.New("an earlier volume of this name is still being removed")

// logStale is the one message for IDs found stale at start-up.
func logStale(log logrus.FieldLogger, ids int, why string) {
	log.WithField("mount_ids", ids).Warn("dropped stale mount IDs: " + why)
}

// dropIDs forgets every mount ID of the volume.
func (m *Manager) dropIDs(name string) error {
	if err := m.st.Update(func(s *journal.State) { delete(s.Mounts, name) }); err != nil {
		return err
	}
	m.sw.forget(name)
	return nil
}
