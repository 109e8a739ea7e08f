package mount

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Binds are what a CSI node publishes: a volume's data directory made
// visible at a path the container orchestrator chose (package csi). Like
// Mount, success means the mount table shows what was asked at target.

// At describes the topmost mount at a path.
type At struct {
	Device   string // as MountedDevice names it; "" when nothing is mounted there
	Root     string // the directory of that filesystem mounted there ("/" for a whole filesystem)
	ReadOnly bool   // the mount (not the filesystem) is read-only
}

// MountAt returns what is mounted at target (a zero At when nothing is).
func (f *FS) MountAt(target string) (At, error) {
	if err := validatePath("mount point", target); err != nil {
		return At{}, err
	}
	if _, err := f.stat(target); errors.Is(err, fs.ErrNotExist) {
		return At{}, nil
	}
	e, err := f.lookup(target)
	if err != nil || e == nil {
		return At{}, err
	}
	ro := false
	for _, o := range strings.Split(e.Options, ",") {
		ro = ro || o == ReadOnly
	}
	return At{Device: f.source(e), Root: e.Root, ReadOnly: ro}, nil
}

// Bind mounts the directory src, a directory root of the filesystem on dev,
// at target (created, mode 0750, if missing; its parent must exist),
// read-only if asked, nodev and nosuid whatever src's mount has. It is
// idempotent: the same bind already there succeeds; anything else mounted
// there is an error, as is a bind that came out otherwise than asked (it is
// taken down again).
func (f *FS) Bind(ctx context.Context, dev, src, root, target string, readOnly bool) error {
	if err := validatePath("bind source", src); err != nil {
		return err
	}
	if err := validatePath("bind target", target); err != nil {
		return err
	}
	want := At{Device: dev, Root: root, ReadOnly: readOnly}
	got, err := f.MountAt(target)
	if err != nil {
		return err
	}
	switch {
	case got == want:
		return nil
	case got.Device != "":
		return fmt.Errorf("bind %s on %s: %s (%s, read-only %t) is already mounted there", src, target, got.Device, got.Root, got.ReadOnly)
	}
	if _, err := os.Stat(filepath.Dir(target)); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	if err := os.Mkdir(target, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("bind %s on %s: create the target: %w", src, target, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	// github.com/moby/sys/mount remounts a bind to apply ro, nodev and
	// nosuid, which the first mount(2) of MS_BIND ignores (mount(2),
	// "Creating a bind mount").
	opts := "bind," + mountOptions
	if readOnly {
		opts += "," + ReadOnly
	}
	if err := f.sys.mount(src, target, "none", opts); err != nil {
		return mountErr(src, target, err)
	}
	if got, err = f.MountAt(target); err != nil || got != want {
		uerr := f.Unmount(ctx, target)
		if err == nil {
			err = fmt.Errorf("bind %s on %s: the mount table shows %q (%s, read-only %t) there, not the bind asked for", src, target, got.Device, got.Root, got.ReadOnly)
		}
		return errors.Join(err, uerr)
	}
	return nil
}
