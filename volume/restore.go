package volume

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"
)

// What this file owns: putting back the plugin's own mount of a volume in
// use when something outside the plugin unmounts it (restoreMount), run
// from Manager.Run when the kernel reports the mount table changed and at
// every sweep. It takes the volume's lock like any operation on it.

// restoreMissing restores the mount of each volume with mount IDs whose
// mount is gone (restoreMount).
func (m *Manager) restoreMissing(ctx context.Context) {
	for name := range m.st.snapshot().Mounts {
		if err := m.restoreMount(ctx, name); err != nil {
			m.logFor(name, "sweep").WithError(err).Warn("restoring the plugin's mount of a volume in use failed")
		}
	}
}

// restoreMount puts back the plugin's own mount of a volume with mount IDs
// when it is gone while the plugin runs: Docker 26.1 restarts a SIGKILLed
// plugin and then unmounts the old instance's propagated mount, which takes
// the new instance's mount with it (lab, tests/e2e/contract.sh), so Status
// said "not mounted" and Path "" under a running container. A volume one
// of whose IDs was mounted less than mountGrace ago is mounted again at
// once (remountRecent). Any other is released: a mapping still held is
// mounted again (release), one that nothing holds is closed and its IDs,
// stale, dropped. Our own mounts and
// unmounts change the table too, so a volume whose mount is in place is
// seen without its lock: it costs one read of the table and never waits for
// an operation on the volume. Run calls it through
// restoreMissing as soon as the kernel reports the table changed: the
// unmount can come after the restarted plugin answers (commit "volume:
// restore a mount taken from outside when the table changes").
func (m *Manager) restoreMount(ctx context.Context, name string) error {
	if ok, _, err := m.mountedHere(name); err == nil && ok {
		return nil
	}
	unlock := m.lock(name)
	defer unlock()
	ids := m.st.ids(name)
	if len(ids) == 0 {
		return nil
	}
	ok, other, err := m.mountedHere(name)
	switch {
	case err != nil:
		return err
	case ok:
		return nil
	case other != "":
		return fmt.Errorf("volume %q: %s is mounted at %s instead of the volume; leaving it", name, other, m.mountpoint(name))
	}
	if m.sw.recent(name, ids) {
		return m.remountRecent(ctx, name)
	}
	return m.releaseOrDrop(ctx, name, outcomes{
		heldLevel: logrus.WarnLevel,
		held:      "the plugin's mount of a volume its containers hold was unmounted from outside; mounted it again",
		dropped:   "volume closed: its mount was gone and nothing held it, so its mount IDs were stale",
	})
}

// remountRecent mounts the still open mapping of a volume again at once,
// for restoreMount (the caller holds the lock), when one of its IDs was
// mounted less than mountGrace ago: dockerd may not have bound the path
// yet, and releasing (closing what nothing holds yet, dropping the IDs)
// would hand that container an empty directory for certain. Mounted again
// within milliseconds of the kernel's report, the path is the volume by
// the time dockerd binds it, unless the bind came first. Docker 26.1
// unmounts a restarted plugin's mounts seconds after it answers (see
// restoreMount), which is when a container that waited for the plugin
// mounts its volume.
func (m *Manager) remountRecent(ctx context.Context, name string) error {
	log := m.logFor(name, "sweep").WithField("mount_ids", len(m.st.ids(name)))
	open, err := m.crypt.IsOpen(ctx, mappingName(name))
	if err != nil {
		return err
	}
	if !open {
		return fmt.Errorf("volume %q: its mount was taken from outside moments after a Mount and its mapping is closed; the next Mount opens it", name)
	}
	lv, err := m.viewVolume(ctx, name)
	if err != nil {
		return err
	}
	if err := m.remount(ctx, name, lv, log); err != nil {
		return fmt.Errorf("volume %q: mounting it again after its mount was taken from outside: %w", name, err)
	}
	log.Warn("the plugin's mount of a volume mounted moments ago was unmounted from outside; mounted it again at once")
	return nil
}
