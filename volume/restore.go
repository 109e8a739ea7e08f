package volume

import (
	"context"
	"fmt"
)

// What this file owns: putting back the plugin's own mount of a volume in
// use when something outside the plugin unmounts it (restoreMount), run
// from Manager.Run when the kernel reports the mount table changed and at
// every sweep. It takes the volume's lock like any operation on it.

// restoreMissing restores the mount of each volume with mount IDs whose
// mount is gone (restoreMount).
func (m *Manager) restoreMissing(ctx context.Context) {
	for name := range m.st.Snapshot().Mounts {
		if err := m.restoreMount(ctx, name); err != nil {
			m.logFor(name, "sweep").WithError(err).Warn("restoring the plugin's mount of a volume in use failed")
		}
	}
}

// restoreMount mounts the open mapping of a volume with mount IDs again
// when its mount is gone while the plugin runs, so that Status, Path and
// the next Mount see it: Docker 26.1, restarting a SIGKILLed plugin, can
// unmount the old instance's propagated mount after the new one answers,
// taking the new mount with it (tests/e2e/contract.sh, "the plugin
// SIGKILLed under a writing container"). Nothing is decided here
// about whether the IDs are stale: a volume whose IDs are all suspect is
// probed by the sweep like any other. While the mount is gone a container
// binding the volume's path fails, as the path is inside the filesystem
// (mount/layout.go): no write can land beneath the mount point. A volume
// whose mount is in place is seen without its lock: one read of the table,
// never a wait for an operation on the volume.
func (m *Manager) restoreMount(ctx context.Context, name string) error {
	if ok, _, err := m.mountedHere(name); err == nil && ok {
		return nil
	}
	unlock := m.lock(name)
	defer unlock()
	ids := m.st.IDs(name)
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
	log := m.logFor(name, "sweep").WithField("mount_ids", len(ids))
	open, err := m.crypt.IsOpen(ctx, mappingName(name))
	if err != nil {
		return err
	}
	if !open {
		// Nothing can hold a closed mapping: the IDs are stale.
		if err := m.dropIDs(name); err != nil {
			return fmt.Errorf("volume %q: dropping stale mount IDs: %w", name, err)
		}
		logStale(log, len(ids), "its mount was gone and its mapping closed")
		return nil
	}
	lv, err := m.viewVolume(ctx, name)
	if err != nil {
		return err
	}
	if err := m.remount(ctx, name, lv, log); err != nil {
		return fmt.Errorf("volume %q: mounting it again after its mount was taken from outside: %w", name, err)
	}
	log.Warn("the plugin's mount of a volume in use was unmounted from outside; mounted it again")
	return nil
}
