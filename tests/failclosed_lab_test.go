//go:build lab

package tests

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/volume"
)

// A container is given the data directory inside the volume's filesystem
// (mount/layout.go), so whenever the filesystem is not mounted there is no
// directory to write to: a write through the path either reaches the volume
// or fails. These tests force the moments when the plugin's own mount is
// gone (an outside unmount, the probe of a held volume after a restart),
// write through the path a Mount returned at that moment, and then scan the
// host's disk under the plugin's mount root: nothing may be there. Each
// fails on a plugin that hands out the filesystem's mount point itself.

// TestLabOutsideUnmountOffersNoDirectory: the plugin's mount taken from
// outside (Docker 26.1 after restarting the plugin), and a write through
// the path right after, again and again.
func TestLabOutsideUnmountOffersNoDirectory(t *testing.T) {
	const v = "lab-gap"
	p, mp := mountedWithFile(t, v)
	target := filepath.Join(p.dir, "mnt", v)
	landed := writeThrough(t, mp, 20, func(int) {
		waitFor(t, p, "the plugin to mount the volume again", 30*time.Second, func() bool { return mountedAt(t, target) })
		mustRun(t, "umount", target)
	})
	waitFor(t, p, "the plugin to mount the volume again", 30*time.Second, func() bool { return readsKept(mp) })
	mustHold(t, mp, landed)
	stillMountedThenRemove(p, v, mp, "the outside unmounts")
	noHostFiles(t, filepath.Join(p.dir, "mnt"))
}

// TestLabProbeOfAHeldVolumeOffersNoDirectory: the plugin SIGKILLed and
// started again while a container (a bind of the path) holds the volume:
// the IDs are suspect and the volume is probed at every sweep (unmounted,
// a close refused, mounted again) for as long as the container holds it;
// writes through the path meanwhile reach the volume or fail. Once the
// container lets go, the next probe closes the volume.
func TestLabProbeOfAHeldVolumeOffersNoDirectory(t *testing.T) {
	const v = "lab-probe"
	p, mp := mountedWithFile(t, v)
	container := t.TempDir()
	mustRun(t, "mount", "--bind", mp, container)
	t.Cleanup(func() { _ = syscall.Unmount(container, 0) })
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.waitDead()
	logBefore := len(p.logTail())
	p.start("")
	// Two sweeps of the default 15 s interval: at least one probe. A write
	// every 2 ms, at most a few thousand, fits the 64 MiB volume.
	end := time.Now().Add(35 * time.Second)
	landed := writeThrough(t, mp, 1<<30, func(int) {
		if time.Now().After(end) {
			panic(errDone)
		}
		time.Sleep(2 * time.Millisecond)
	})
	if !strings.Contains(p.logTail()[min(logBefore, len(p.logTail())):], "volume still held by its containers") {
		t.Fatalf("no probe of the held volume in 35 s; log:\n%s", p.logTail())
	}
	mustHold(t, container, landed)
	if err := syscall.Unmount(container, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, "the probe to close the volume its container let go", 40*time.Second, func() bool { return !mappingOpen(t, v) })
	if ids, err := p.get(v); err != nil || ids.Status[volume.StatusMountCount] != float64(0) {
		t.Fatalf("after the probe closed it: %+v, %v", ids, err)
	}
	p.must("remove", p.remove(v))
	noHostFiles(t, filepath.Join(p.dir, "mnt"))
}

var errDone = errors.New("done")

// writeThrough writes file wN through path n times, calling before(i)
// first each time (it may panic with errDone to stop), and returns the
// names whose write succeeded. A write that fails must fail because the
// path does not exist.
func writeThrough(t *testing.T, path string, n int, before func(i int)) (landed []string) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil && r != errDone {
			panic(r)
		}
	}()
	for i := range n {
		before(i)
		name := fmt.Sprintf("w%d", i%1000) // a bounded number of files
		err := os.WriteFile(filepath.Join(path, name), []byte(name), 0o600)
		switch {
		case err == nil:
			landed = append(landed, name)
		case !errors.Is(err, fs.ErrNotExist):
			t.Fatalf("write %d through %s: %v, want success or no such directory", i, path, err)
		}
	}
	return landed
}

// mustHold checks that every file that landed is in the volume.
func mustHold(t *testing.T, path string, landed []string) {
	t.Helper()
	for _, name := range landed {
		if b, err := os.ReadFile(filepath.Join(path, name)); err != nil || string(b) != name {
			t.Fatalf("%s written through the path is not in the volume: %q, %v", name, b, err)
		}
	}
}

func readsKept(mp string) bool {
	b, err := os.ReadFile(filepath.Join(mp, "kept"))
	return err == nil && string(b) == "volume"
}

func waitFor(t *testing.T, p *plug, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; log:\n%s", d, what, p.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// noHostFiles fails if anything but empty directories is on the host's
// disk under root (mounted filesystems are not descended into): a byte
// there is a container's write that missed its volume.
func noHostFiles(t *testing.T, root string) {
	t.Helper()
	var rootDev uint64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		dev := uint64(fi.Sys().(*syscall.Stat_t).Dev)
		if path == root {
			rootDev = dev
		}
		switch {
		case dev != rootDev:
			return filepath.SkipDir
		case !d.IsDir():
			return fmt.Errorf("%s is on the host's disk under the plugin's mount root", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// mountedWithFile starts the real plugin, creates volume v and mounts it
// for ID c1 as dockerd would, with nothing bound to the path yet, and
// writes the file "kept" through the path.
func mountedWithFile(t *testing.T, v string) (*plug, string) {
	t.Helper()
	p := newPlug(t)
	p.start("")
	p.must("create", p.create(v, nil))
	t.Cleanup(func() { _ = p.remove(v) })
	mp, err := p.mount(v, "c1")
	p.must("mount", err)
	if want := filepath.Join(p.dir, "mnt", v, "data"); mp != want {
		t.Fatalf("Mount returned %s, want the data directory %s", mp, want)
	}
	if err := os.WriteFile(filepath.Join(mp, "kept"), []byte("volume"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, mp
}

// stillMountedThenRemove checks that inspect shows v mounted at mp after
// what happened, then unmounts c1 and removes v.
func stillMountedThenRemove(p *plug, v, mp, after string) {
	p.t.Helper()
	got, err := p.get(v)
	p.must("get", err)
	if got.Status[volume.StatusMounted] != true || got.Mountpoint != mp {
		p.t.Fatalf("inspect after %s: %+v", after, got)
	}
	p.must("unmount", p.unmount(v, "c1"))
	p.must("remove", p.remove(v))
}

// TestLabMountSaysWhenPropagationIsNotShared: the plugin's mount root is a
// mount point that is not shared (what dockerd's propagated mount becomes
// when its propagation breaks): Mount fails naming the repair and opens
// nothing, Get's Status says it; made shared again, Mount works.
func TestLabMountSaysWhenPropagationIsNotShared(t *testing.T) {
	const v = "lab-prop"
	p := newPlug(t)
	root := filepath.Join(p.dir, "mnt")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mount", "--bind", root, root)
	t.Cleanup(func() { _ = syscall.Unmount(root, syscall.MNT_DETACH) })
	mustRun(t, "mount", "--make-private", root)
	p.start("")
	p.must("create", p.create(v, nil))
	t.Cleanup(func() { _ = p.remove(v) })
	_, err := p.mount(v, "c1")
	if err == nil || !strings.Contains(err.Error(), "not shared with the host") || !strings.Contains(err.Error(), "docker plugin disable -f cryptvol") {
		t.Fatalf("Mount under a private mount root: %v", err)
	}
	if mappingOpen(t, v) {
		t.Fatal("a refused Mount left the mapping open")
	}
	if got, err := p.get(v); err != nil || got.Status[volume.StatusPropagation] == nil {
		t.Fatalf("Status does not say the propagation is broken: %+v, %v", got, err)
	}
	mustRun(t, "mount", "--make-shared", root)
	mp, err := p.mount(v, "c1")
	p.must("mount once shared", err)
	if got, err := p.get(v); err != nil || got.Status[volume.StatusPropagation] != nil {
		t.Fatalf("Status still says broken after the repair: %+v, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(mp, "kept"), []byte("volume"), 0o600); err != nil {
		t.Fatal(err)
	}
	stillMountedThenRemove(p, v, mp, "the repair")
}
