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
)

// What the sweeper does, and why (issue 10):
//
//   - A volume whose last Mount was released but which could not be taken
//     down (teardown failed, or the kernel still holds the mapping) lingers:
//     it is retried every Config.SweepInterval until it goes down or is
//     mounted again.
//   - dockerd does not persist which mounts are active. Killed and started
//     again, it stops the containers it had running and never sends their
//     Unmounts (moby#46508); under live-restore, containers that die while
//     it is down end the same way. So mount IDs recorded before dockerd's
//     latest start may be stale. A start of the plugin (dockerd's start
//     restarts it, moby daemon/pkg/plugin/manager.go reload) and every
//     attach of dockerd (it dials the socket without a request,
//     manager_linux.go pluginPostStart) open a probe window
//     (Config.ProbeWindow): during it, a volume none of whose IDs was
//     mounted since, or within mountGrace, is probed every SweepInterval by
//     release. If nothing holds it, its IDs were stale and are dropped; if
//     something does, the plugin's mount is restored and the IDs kept.
//
// An ID mounted after the window opened, or less than mountGrace before, is
// never probed: dockerd bind-mounts the path a Mount returned after the
// Mount, and a probe in between finds nothing holding the volume, takes it
// down and hands the container an empty directory. A window can open right
// after a Mount: an attach is any connection to the socket closed without
// a byte, whoever dials it (CI stop 29 showed a container an empty
// directory in place of its volume, tests/e2e/contract.sh under Docker
// 26.1; how is not known, and this was one way).
type sweeper struct {
	mu          sync.Mutex
	mountedAt   map[string]map[string]time.Time // volume -> ID -> its latest Mount here
	lingering   map[string]error                // volume -> why it is still up with no ID
	probeUntil  time.Time                       // the window opened probeWindow before
	now         func() time.Time
	interval    time.Duration
	probeWindow time.Duration
	wake        chan struct{}
}

// mountGrace is how long after a Mount its ID is never probed: the time
// dockerd may take to start the container that binds the path, under load.
// It is shorter than DefaultProbeWindow, so an ID of a container that died
// with dockerd right after its Mount is still probed in that window.
const mountGrace = time.Minute

func newSweeper(interval, window time.Duration) *sweeper {
	return &sweeper{
		mountedAt: map[string]map[string]time.Time{}, lingering: map[string]error{},
		now: time.Now, interval: interval, probeWindow: window, wake: make(chan struct{}, 1),
	}
}

// mounted records a Mount of id; the volume is in use and no longer
// lingers.
func (s *sweeper) mounted(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mountedAt[name] == nil {
		s.mountedAt[name] = map[string]time.Time{}
	}
	s.mountedAt[name][id] = s.now()
	delete(s.lingering, name)
}

// released forgets id, whose last Mount was released.
func (s *sweeper) released(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mountedAt[name], id)
	if len(s.mountedAt[name]) == 0 {
		delete(s.mountedAt, name)
	}
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

// openWindow makes every recorded ID a candidate for probing, once it is
// mountGrace old.
func (s *sweeper) openWindow() {
	s.mu.Lock()
	now := s.now()
	s.probeUntil = now.Add(s.probeWindow)
	// An entry past the grace no longer keeps its ID from a probe.
	for name, ids := range s.mountedAt {
		for id, at := range ids {
			if now.Sub(at) >= mountGrace {
				delete(ids, id)
			}
		}
		if len(ids) == 0 {
			delete(s.mountedAt, name)
		}
	}
	s.mu.Unlock()
	s.poke()
}

func (s *sweeper) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// latestMount is when the latest Mount of any of ids was recorded here;
// ok is false when none was (IDs loaded from the state file). The caller
// holds s.mu.
func (s *sweeper) latestMount(name string, ids []string) (latest time.Time, ok bool) {
	for _, id := range ids {
		if at, found := s.mountedAt[name][id]; found && (!ok || at.After(latest)) {
			latest, ok = at, true
		}
	}
	return latest, ok
}

// recent reports whether one of the volume's ids was mounted less than
// mountGrace ago: dockerd may not have bound its path yet.
func (s *sweeper) recent(name string, ids []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.latestMount(name, ids)
	return ok && s.now().Sub(at) < mountGrace
}

// probeable reports whether the volume's ids may be stale: the window is
// open and none of them was mounted since it opened or within mountGrace.
// IDs a Mount of this process did not record (loaded from the state file)
// have no time and may be probed.
func (s *sweeper) probeable(name string, ids []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(ids) == 0 || !now.Before(s.probeUntil) {
		return false
	}
	at, ok := s.latestMount(name, ids)
	return !ok || at.Before(s.probeUntil.Add(-s.probeWindow)) && now.Sub(at) >= mountGrace
}

func (s *sweeper) lingeringNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.lingering))
}

// DockerAttached is called when dockerd (re)attaches to the plugin: mounts
// recorded before may belong to containers that died while it was away.
func (m *Manager) DockerAttached() {
	m.log.WithField("op", "sweep").Info("dockerd attached: checking for a probe window whether recorded mounts are still held")
	m.sw.openWindow()
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
	for _, name := range m.sw.lingeringNames() {
		m.sweepLingering(ctx, name)
	}
	probed := 0
	for name := range m.st.snapshot().Mounts {
		if m.sw.probeable(name, m.st.ids(name)) {
			probed++
			if err := m.probe(ctx, name); err != nil {
				m.logFor(name, "sweep").WithError(err).Warn("probing whether the volume is still held failed")
			}
		} else if err := m.restoreMount(ctx, name); err != nil {
			m.logFor(name, "sweep").WithError(err).Warn("restoring the plugin's mount of a volume in use failed")
		}
	}
	for _, e := range m.st.snapshot().Removing {
		if err := m.retryRemove(ctx, e); err != nil {
			m.logFor(e.Volume, "sweep").WithError(err).Debug("unfinished remove still cannot finish")
		}
	}
	// A rotation that could not finish (KMIP away at its end) is finished
	// here, so that the old key does not outlive it for long.
	for _, e := range m.st.snapshot().Rotating {
		if err := m.withLock(e.Volume, func(log logrus.FieldLogger) error { return m.settleRotation(ctx, e, log) }); err != nil {
			m.logFor(e.Volume, "sweep").WithError(err).Debug("unfinished key rotation still cannot be settled")
		}
	}
	m.log.WithFields(logrus.Fields{"op": "sweep", "probed": probed}).Debug("sweep done")
}

func (m *Manager) sweepLingering(ctx context.Context, name string) {
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "sweep")
	if len(m.st.ids(name)) > 0 || m.sw.pending(name) == nil {
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

// probe checks whether anything still holds a volume whose mount IDs may
// be stale, and drops them if nothing does.
func (m *Manager) probe(ctx context.Context, name string) error {
	unlock := m.lock(name)
	defer unlock()
	ids := m.st.ids(name)
	if !m.sw.probeable(name, ids) {
		return nil
	}
	return m.releaseOrDrop(ctx, name, outcomes{
		heldLevel: logrus.DebugLevel,
		held:      "volume still held by its containers",
		dropped:   "volume closed: nothing held it, so its mount IDs were stale (their containers ended while dockerd was not tracking them, moby#46508)",
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
	log := m.logFor(name, "sweep").WithField("mount_ids", len(m.st.ids(name)))
	held, err := m.release(ctx, name, log)
	switch {
	case err != nil:
		return err
	case held:
		log.Log(say.heldLevel, say.held)
		return nil
	}
	if err := m.st.update(func(s *state) { delete(s.Mounts, name) }); err != nil {
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
