package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
	"github.com/cryptvol/cryptvol/volume/options"
)

// Mount makes the volume available to the container with mount ID id and
// returns the path of its data directory, inside its filesystem
// (mount/layout.go). The first ID brings the volume up (activate, KMIP
// Get, header check, open, mount); later Mounts share it, each counted, so
// that every Unmount releases exactly one. Every call proves the mountpoint
// is the decrypted filesystem and the data directory one of its own before
// returning it. The count is persisted before success is returned.
func (m *Manager) Mount(ctx context.Context, name, id string) (_ string, err error) {
	defer m.recordOp("volume.mount", name, id, time.Now(), &err)
	if err := options.ValidateName(name); err != nil {
		return "", ofKind(ErrInvalid, err)
	}
	if id == "" {
		return "", fmt.Errorf("volume %q: mount request without an ID", name)
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "mount").WithField("id", id)
	// A rotation left half-way may have moved the token and not yet the
	// tag, which the header check below would refuse.
	if len(m.st.Rotations(name)) > 0 {
		if err := m.settleRotations(ctx, name, log); err != nil {
			log.WithError(err).Warn("an unfinished key rotation could not be settled before the mount")
		}
	}

	if err := m.checkPropagation(); err != nil {
		return "", fmt.Errorf("volume %q: %w", name, err)
	}
	// From the view: the tags and path Mount needs change only with a
	// metadata commit, which the view's mark tells (lvview.go); a second
	// Mount (docker cp) then runs no program at all. Activation is asked of
	// lvm whatever the view's Active says.
	lv, err := m.viewVolume(ctx, name)
	if err != nil {
		return "", err
	}
	brought, activated, err := m.ensureMounted(ctx, name, lv, log)
	if err != nil {
		return "", err
	}
	path, err := m.fs.Data(m.mountpoint(name), mapperPath(name), false)
	if errors.Is(err, mount.ErrOldLayout) {
		// Mounted again for the containers that hold it (ensureMounted
		// found its mapping held), it stays so for them.
		brought = false
		err = fmt.Errorf("%w; it is held by containers started by a cryptvol version that gave them the root, and moves into its data directory at its next first mount: stop those containers, then start this one", err)
	}
	if err == nil {
		err = m.st.Update(func(s *journal.State) { s.AddMount(name, id) })
		if err != nil {
			err = fmt.Errorf("recording mount ID: %w", err)
		}
	}
	if err != nil {
		if brought {
			// Unrecorded, this mount would never be unmounted.
			m.undoMount(ctx, name, activated, log)
		}
		return "", fmt.Errorf("volume %q: %w", name, err)
	}
	m.sw.mounted(name, id)
	log.WithField("mounts", m.st.Mounts(name)[id]).WithField("mount_ids", len(m.st.IDs(name))).Info("mounted")
	return path, nil
}

// undoMount takes down a volume this Mount brought up and cannot hand out,
// leaving its LV as the Mount found it; what cannot be undone lingers.
func (m *Manager) undoMount(ctx context.Context, name string, activated bool, log logrus.FieldLogger) {
	cctx, cancel := command.CleanupContext(ctx)
	defer cancel()
	terr := m.teardown(cctx, name, log)
	if terr == nil && activated && m.keepsActive() {
		// teardown deactivates only in a shared group.
		terr = m.lvm.Deactivate(cctx, lvName(name))
	}
	if terr != nil {
		log.WithError(terr).Error("could not undo a mount that cannot be handed out")
		m.sw.linger(name, terr)
	}
}

// ensureMounted returns nil only when the mountpoint is verified to be the
// volume's decrypted filesystem. brought says whether this call mounted it,
// activated whether it also activated the LV.
func (m *Manager) ensureMounted(ctx context.Context, name string, lv lvm.LV, log logrus.FieldLogger) (brought, activated bool, err error) {
	ok, other, err := m.mountedHere(name)
	if err != nil {
		return false, false, err
	}
	if ok {
		return false, false, nil
	}
	if other != "" {
		return false, false, fmt.Errorf("volume %q: %s is mounted at %s instead of the volume; refusing to hand it out", name, other, m.mountpoint(name))
	}
	if ids := m.st.IDs(name); len(ids) > 0 {
		// The plugin restarted in a new mount namespace, or someone
		// unmounted it: the containers holding these IDs get it back.
		log.WithField("mount_ids", len(ids)).Warn("volume has mount IDs but is not mounted here; mounting it again")
	}
	activated, err = m.bringUp(ctx, name, lv, log)
	return true, activated, err
}

// bringUp activates, unlocks and mounts the volume, then verifies the mount.
// On failure (or panic) it undoes its steps in reverse.
func (m *Manager) bringUp(ctx context.Context, name string, lv lvm.LV, log logrus.FieldLogger) (activated bool, err error) {
	target := m.mountpoint(name)
	mapping := mappingName(name)
	rb := &rollback{op: "mount", name: name, log: log}
	defer func() {
		// What could not be undone (a mapping that would not close) is
		// the sweeper's to take down: no container holds it.
		if failed := rb.finish(ctx, &err, recover()); len(failed) > 0 {
			m.sw.linger(name, fmt.Errorf("undoing a failed mount: %s", strings.Join(failed, "; ")))
		}
	}()

	rb.at("checking for a stale mapping")
	open, err := m.crypt.IsOpen(ctx, mapping)
	if err != nil {
		return false, err
	}
	fstype := tagValue(lv.Tags, tagFSPrefix)
	if options.MinSize(fstype) == 0 {
		return false, fmt.Errorf("LV tag %q names no supported filesystem", tagFSPrefix+fstype)
	}
	if open {
		// Left by an interrupted operation, or held by containers while
		// the plugin's own mount is gone (a restart in a new mount
		// namespace). Closing it means the header and key are checked
		// again below rather than trusted; when something still holds
		// it, the mapping this plugin opened is mounted again as it is.
		err := m.crypt.Close(ctx, mapping)
		switch {
		case errors.Is(err, luks.ErrBusy):
			// Only the volume's own mapping is mounted again: a device
			// someone else made under its name is not this volume.
			if err := m.crypt.MappingOf(ctx, mapping, m.devPath(lv)); err != nil {
				return false, fmt.Errorf("volume %q: a device %s is held open, and it is not this volume's: %w", name, mapping, err)
			}
			log.Info("mapping is held by running containers; mounting it again")
			return false, m.mountVerified(ctx, rb, name, lv)
		case err != nil:
			return false, err
		}
		log.Warn("closed a stale mapping before mounting")
	}

	// On a single host the LV is normally active already (keepsActive):
	// the kernel says so without a program. A shared group's LV is
	// activated exclusively each time: that takes its lock.
	if !m.keepsActive() || !m.lvm.Active(lv) {
		rb.at("LV activation")
		rb.add("deactivate LV", func(ctx context.Context) error { return m.lvm.Deactivate(ctx, lvName(name)) })
		if err := m.lvm.Activate(ctx, lvName(name)); err != nil {
			return false, m.elsewhere(name, lv, err)
		}
		activated = true
	}
	if m.cfg.Shared {
		rb.at("recording this host on the LV")
		rb.add("take this host's record off the LV", func(ctx context.Context) error {
			m.clearMountedHere(ctx, name, log)
			return nil
		})
		if err := m.recordMountedHere(ctx, name, lv); err != nil {
			return false, err
		}
	}
	dev := m.devPath(lv)

	rb.at("LUKS header check")
	h, err := m.crypt.Inspect(ctx, dev)
	if err != nil {
		return false, err
	}
	keyID, err := h.Check(name, tagValue(lv.Tags, tagKeyPrefix))
	if err != nil {
		return false, err
	}

	rb.at("KMIP key fetch")
	key, err := m.keyGet(ctx, name, tenantOf(lv), keyID)
	if errors.Is(err, keys.ErrNotFound) || errors.Is(err, keys.ErrNotActive) {
		// What a node decommissioned by `cryptvol decommission` sees.
		return false, fmt.Errorf("its KMIP key %q was revoked or destroyed on the KMIP server (as `cryptvol decommission` does to all keys of a node), so it cannot be decrypted: %w", keyID, err)
	}
	if err != nil {
		return false, err
	}
	defer key.Wipe()

	rb.at("opening the LUKS2 mapping")
	// Nothing holds a mapping this call opened and handed out nowhere: a
	// busy answer is another program's scan (close.go).
	rb.add("close mapping", func(ctx context.Context) error { return m.closeUnheld(ctx, mapping) })
	if err := m.crypt.Open(ctx, dev, mapping, key.Bytes(), m.openOptions(lv.Tags)); err != nil {
		return false, err
	}
	key.Wipe()
	if err := m.mountVerified(ctx, rb, name, lv); err != nil {
		return false, err
	}
	// This call opened the mapping, so no container holds the filesystem:
	// the one moment its layout may be made or moved into (layout.go).
	rb.at("making the data directory")
	if _, err := m.fs.Data(target, mapperPath(name), true); err != nil {
		if slices.Contains(lv.Tags, tagReadOnly) {
			err = fmt.Errorf("%w (a read-only snapshot made by a cryptvol before the data directory cannot be given one; a clone of it, from=, is writable and gets one)", err)
		}
		return false, err
	}
	log.WithField("target", target).Debug("volume brought up")
	return activated, nil
}

// mountVerified mounts the open mapping at the mountpoint, with the LV's
// filesystem and mount options, and proves the mount table shows it there.
func (m *Manager) mountVerified(ctx context.Context, rb *rollback, name string, lv lvm.LV) error {
	target := m.mountpoint(name)
	rb.at("creating the mountpoint")
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	rb.at("mount")
	rb.add("unmount", func(ctx context.Context) error {
		src, err := m.fs.MountedDevice(target)
		if err != nil || src == "" {
			return err
		}
		return m.fs.Unmount(ctx, target)
	})
	if err := m.fs.Mount(ctx, mapperPath(name), target, tagValue(lv.Tags, tagFSPrefix), mountOptions(lv.Tags)...); err != nil {
		return err
	}
	rb.at("verifying the mount")
	ok, other, err := m.mountedHere(name)
	if err != nil {
		return err
	}
	if !ok {
		if other == "" {
			other = "nothing"
		}
		return fmt.Errorf("%s is mounted at %s, not %s", other, target, mapperPath(name))
	}
	return nil
}

// Unmount releases one Mount of mount ID id. When no Mount remains, the
// volume is taken down (unmounted, closed, in a shared group deactivated:
// keepsActive) unless the kernel
// says something still holds its mapping; then it stays up and is retried
// in the background, as is a teardown that fails. An unknown ID succeeds:
// dockerd sends Unmount for mounts the plugin may have already released
// (after a restart, or a probe that found them stale).
func (m *Manager) Unmount(ctx context.Context, name, id string) (err error) {
	defer m.recordOp("volume.unmount", name, id, time.Now(), &err)
	if err := options.ValidateName(name); err != nil {
		return ofKind(ErrInvalid, err)
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "unmount").WithField("id", id)

	counts := m.st.Mounts(name)
	if counts[id] == 0 {
		log.Debug("unmount of an unknown mount ID ignored")
		return nil
	}
	// The last unmount records the filesystem's usage in the same write,
	// for Status and the metrics while the volume is closed.
	usage, last := journal.Usage{}, false
	if counts[id] == 1 && len(counts) == 1 {
		usage, last = m.closingUsage(name)
	}
	if err := m.st.Update(func(s *journal.State) {
		s.DropMount(name, id)
		if last {
			s.SetUsage(name, usage)
		}
	}); err != nil {
		return fmt.Errorf("volume %q: recording unmount: %w", name, err)
	}
	if counts[id] > 1 || len(counts) > 1 {
		left := len(m.st.IDs(name))
		log.WithField("mount_ids", left).Info("mount released; volume stays mounted")
		m.sw.unmounted(name, id, left)
		return nil
	}
	m.sw.unmounted(name, id, 0)
	held, err := m.release(ctx, name, log)
	switch {
	case err != nil:
		// The ID is gone (docker's view), the teardown is ours to finish:
		// retried in the background until it succeeds or the volume is
		// mounted again.
		log.WithError(err).Error("teardown failed; retrying in the background")
		m.sw.linger(name, err)
	case held:
		log.Warn("last mount released but the kernel still holds the volume (a mount docker did not account for); it stays decrypted and is closed once nothing holds it")
		m.sw.linger(name, errHeld)
	default:
		log.Info("volume unmounted and closed")
	}
	return nil
}

// errHeld is what Status shows for a volume kept up because the kernel
// still holds it while no mount ID does.
var errHeld = errors.New("still held open outside docker's mount accounting")

// release takes the volume down (teardown): unmount, close, remove the
// empty mountpoint. If closing fails because the mapping is still held (a
// container's mount namespace keeps the filesystem after the plugin's own
// mount is gone) the plugin's mount is restored and held is true: the
// volume must stay usable for the next Mount and for dockerd's Path. Safe
// to repeat after a crash at any point. The caller holds the volume lock.
func (m *Manager) release(ctx context.Context, name string, log logrus.FieldLogger) (held bool, err error) {
	err = m.teardown(ctx, name, log)
	if !errors.Is(err, luks.ErrBusy) {
		return false, err
	}
	lv, lerr := m.viewVolume(ctx, name)
	if lerr != nil {
		return true, fmt.Errorf("mapping still in use; reading the LV to mount it again: %w", lerr)
	}
	if err := m.remount(ctx, name, lv, log); err != nil {
		return true, fmt.Errorf("mapping still in use; mounting it again: %w", err)
	}
	return true, nil
}

// remount mounts the volume's open mapping at its mountpoint again and
// verifies it; a failure or panic undoes what it made.
func (m *Manager) remount(ctx context.Context, name string, lv lvm.LV, log logrus.FieldLogger) (err error) {
	rb := &rollback{op: "remount", name: name, log: log}
	defer func() { rb.finish(ctx, &err, recover()) }()
	return m.mountVerified(ctx, rb, name, lv)
}
