package volume

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/mount"
)

// RootSpec is the owner and mode a new volume's root directory gets
// (options uid, gid, mode): what an image's directory would otherwise have
// to give it, for a service that does not run as root.
type RootSpec struct {
	UID, GID int         // -1: root's default (0)
	Mode     os.FileMode // 0: the filesystem's default (0755)
}

// set says whether any of it was asked for.
func (r RootSpec) set() bool { return r.UID >= 0 || r.GID >= 0 || r.Mode != 0 }

// maxID is the largest uid or gid accepted: Linux's are 32-bit, and
// 4294967295 means "no change" to chown(2).
const maxID = 1<<31 - 1

// parseFSOptions reads mountopts, uid, gid and mode into o, whose FS is
// already set.
func parseFSOptions(opts map[string]string, o *Options) error {
	o.Root = RootSpec{UID: -1, GID: -1}
	o.Mkfs = mount.DefaultMkfs
	for _, f := range []struct {
		name string
		dst  *int
	}{{OptInodeRatio, &o.Mkfs.InodeRatio}, {OptReservedPercent, &o.Mkfs.ReservedPercent}, {OptInodeMaxPct, &o.Mkfs.InodeMaxPct}} {
		v, ok := opts[f.name]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("option %s=%q is not a whole number", f.name, truncate(v, 40))
		}
		*f.dst = n
	}
	if err := o.Mkfs.Validate(o.FS); err != nil {
		return fmt.Errorf("option %w", err)
	}
	if v, ok := opts[OptMountOpts]; ok {
		for _, m := range strings.Split(v, ",") {
			if m = strings.TrimSpace(m); m != "" {
				o.MountOpts = append(o.MountOpts, m)
			}
		}
		if err := mount.ValidateOptions(o.FS, o.MountOpts); err != nil {
			return fmt.Errorf("option mountopts: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{OptUID, &o.Root.UID}, {OptGID, &o.Root.GID}} {
		v, ok := opts[f.name]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxID {
			return fmt.Errorf("option %s=%q is not valid (allowed: a number from 0 to %d)", f.name, truncate(v, 40), maxID)
		}
		*f.dst = n
	}
	if v, ok := opts[OptDiscard]; ok {
		switch v {
		case "true":
			o.Discard = true
		case "false":
		default:
			return fmt.Errorf("option discard=%q is not valid (allowed: true, false)", truncate(v, 40))
		}
	}
	if v, ok := opts[OptIntegrity]; ok {
		if o.Discard {
			return fmt.Errorf("options integrity and discard=true cannot go together: dm-integrity takes no discards")
		}
		if v != luks.IntegrityHMACSHA256 {
			return fmt.Errorf("option integrity=%q is not supported (allowed: %s)", truncate(v, 40), luks.IntegrityHMACSHA256)
		}
		o.Integrity = v
	}
	if v, ok := opts[OptMode]; ok {
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n == 0 || n > 0o7777 || len(v) < 3 {
			return fmt.Errorf("option mode=%q is not valid (allowed: octal permissions such as 755, 0750 or 1777)", truncate(v, 40))
		}
		o.Root.Mode = os.FileMode(n&0o777) | modeBits(n)
	}
	return nil
}

// modeBits turns the octal set-id and sticky bits into Go's.
func modeBits(n uint64) os.FileMode {
	var m os.FileMode
	if n&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

// tagDiscard marks a volume made with discard=true: opened with
// --allow-discards and mounted with discard, so that blocks the filesystem
// frees go back to a thin pool (at the cost cryptsetup-open(8) names: an
// observer of the device sees which blocks are free).
const tagDiscard = "cryptvol_discard"

// mountOptions are a volume's mount options: its own, and discard.
func mountOptions(tags []string) []string {
	opts := mountOptsOf(tags)
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
func (m *Manager) setRoot(ctx context.Context, rb *rollback, name string, o Options) error {
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
