package volume

import (
	"github.com/cryptvol/cryptvol/mount"
)

// What this file owns: knowing whether the mounts the plugin makes under
// MountRoot reach dockerd, and the data directory a container is given.

// checkPropagation reads whether MountRoot, the plugin's propagated mount,
// is shared (mount.FS.Shared) and keeps the answer for Status; it returns
// the error a Mount gives while it is not. A MountRoot that is not a mount
// point (the plugin run outside Docker, as the lab's Go tests run it) has
// nothing to check. An unreadable table is not a verdict: the mount's own
// checks then fail on it.
func (m *Manager) checkPropagation() error {
	mounted, shared, fields, err := m.fs.Shared(m.cfg.MountRoot)
	if err != nil || !mounted || shared {
		m.prop.Store(nil)
		return nil
	}
	perr := mount.ErrNotShared(m.cfg.MountRoot, fields)
	msg := perr.Error()
	if m.prop.Swap(&msg) == nil {
		m.log.WithField("op", "sweep").Error(msg)
	}
	return perr
}

// dataPath returns the volume's data directory when it is a directory of
// the filesystem mounted at the volume's mountpoint (mount.FS.Data), else
// "": a filesystem of the older layout held by containers that a cryptvol
// without the data directory gave its root.
func (m *Manager) dataPath(name string) string {
	p, err := m.fs.Data(m.mountpoint(name), mapperPath(name), false)
	if err != nil {
		m.logFor(name, "path").WithError(err).Debug("no data directory to hand out")
		return ""
	}
	return p
}
