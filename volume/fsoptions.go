package volume

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume/options"
)

// tagDiscard marks a volume made with discard=true: opened with
// --allow-discards and mounted with discard, so that blocks the filesystem
// frees go back to a thin pool (at the cost cryptsetup-open(8) names: an
// observer of the device sees which blocks are free).
const tagDiscard = "cryptvol_discard"

// mountOptions are a volume's mount options: its own, discard, read-only,
// and for xfs nouuid: a clone's filesystem is a copy of its source's, UUID
// included, which xfs refuses to mount beside the other unless told nouuid
// (xfs(5)); each volume is its own block device, so the check guards
// nothing here (TestXFSCloneAndSourceMountAtOnce).
func mountOptions(tags []string) []string {
	opts := mountOptsOf(tags)
	if tagValue(tags, tagFSPrefix) == options.FSXFS {
		opts = append(opts, mount.NoUUID)
	}
	if slices.Contains(tags, tagDiscard) {
		opts = append(opts, mount.Discard)
	}
	if slices.Contains(tags, tagReadOnly) {
		opts = append(opts, mount.ReadOnly)
	}
	return opts
}

// openOptions are how a volume's mapping is opened.
func (m *Manager) openOptions(tags []string) luks.OpenOptions {
	return luks.OpenOptions{NoWorkqueue: m.cfg.NoWorkqueue, AllowDiscards: slices.Contains(tags, tagDiscard),
		ReadOnly: slices.Contains(tags, tagReadOnly)}
}

// tagIntegrityPrefix marks a volume formatted with dm-integrity: resize and
// reencryption refuse it (cryptsetup supports neither for it).
const tagIntegrityPrefix = "cryptvol_integrity_"

// tagMountOptsPrefix records a volume's mount options on its LV, joined by
// "+" (LVM tags allow no comma, lvm(8) "Tags").
const tagMountOptsPrefix = "cryptvol_mountopts_"

// mountOptsOf reads them back.
func mountOptsOf(tags []string) []string {
	v := tagValue(tags, tagMountOptsPrefix)
	if v == "" {
		return nil
	}
	return strings.Split(v, "+")
}

// setRoot gives the new filesystem's root directory the owner and mode
// asked for: mounted at the volume's own mountpoint (a crash meanwhile is
// undone with the create, whose teardown unmounts it there), changed, and
// unmounted. Two programs more, only for a create that asks.
func (m *Manager) setRoot(ctx context.Context, rb *rollback, name string, o options.Options) error {
	target := m.mountpoint(name)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	rb.add("unmount", func(ctx context.Context) error {
		src, err := m.fs.MountedDevice(target)
		if err != nil || src == "" {
			return err
		}
		return m.fs.Unmount(ctx, target)
	})
	if err := m.fs.Mount(ctx, mapperPath(name), target, o.FS, o.MountOpts...); err != nil { // no discard needed to set an owner
		return err
	}
	if ok, other, err := m.mountedHere(name); err != nil || !ok {
		return fmt.Errorf("the new filesystem is not mounted at %s (found %q): %v", target, other, err)
	}
	if err := os.Lchown(target, o.Root.UID, o.Root.GID); err != nil {
		return fmt.Errorf("chown of the root directory: %w", err)
	}
	if o.Root.Mode != 0 {
		if err := os.Chmod(target, o.Root.Mode); err != nil {
			return fmt.Errorf("chmod of the root directory: %w", err)
		}
	}
	if err := m.fs.Unmount(ctx, target); err != nil {
		return err
	}
	_ = os.Remove(target) // mounts make it again; an empty directory is all it is
	return nil
}

// refuseUnchangeable refuses op on a volume with integrity protection, which
// cryptsetup supports neither resizing nor reencrypting, and on a
// read-only snapshot, which stays as it was taken.
func refuseUnchangeable(name string, lv lvm.LV, op, instead string) error {
	if v := tagValue(lv.Tags, tagIntegrityPrefix); v != "" {
		return fmt.Errorf("volume %q has integrity protection (%s), which cryptsetup cannot %s; copy its data to %s volume instead", name, v, op, instead)
	}
	if slices.Contains(lv.Tags, tagReadOnly) {
		return fmt.Errorf("volume %q is a read-only snapshot; it is not changed (%s refused)", name, op)
	}
	return nil
}
