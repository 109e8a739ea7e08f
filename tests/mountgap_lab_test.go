//go:build lab

package tests

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/volume"
)

// The plugin takes any connection closed without a byte for dockerd's
// attach, which opens the sweeper's probe window. One that came between a
// Mount and dockerd's bind of the returned path had the sweeper find nothing
// holding the volume, take it down, and leave the container an empty
// directory where its volume should be (one way to what CI stop 29 saw:
// contract.sh read no file after `docker plugin enable` under Docker 26.1).
// The real plugin process, an attach right after a Mount: the path must
// still be the volume.
func TestLabAttachLeavesAMountNotYetBound(t *testing.T) {
	const v = "lab-attach"
	p, mp := mountedWithFile(t, v)

	logPath := filepath.Join(p.dir, "plugin.log")
	before, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", filepath.Join(p.dir, "cryptvol.sock"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The attach pokes the sweeper; a sweep already under way when it came
	// may have looked at the volume before the window opened, so two.
	deadline := time.Now().Add(90 * time.Second)
	for {
		all, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		after := string(all[len(before):])
		if i := strings.Index(after, "dockerd attached"); i >= 0 && strings.Count(after[i:], "sweep done") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no attach and two sweeps within 90 s of a connection closed without a byte; log:\n%s", p.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}

	if b, err := os.ReadFile(filepath.Join(mp, "kept")); err != nil || string(b) != "volume" {
		t.Fatalf("after the attach the path a Mount returned is not the volume: %q, %v; log:\n%s", b, err, p.logTail())
	}
	if !mappingOpen(t, v) {
		t.Fatalf("the mapping was closed under a Mount not yet bound; log:\n%s", p.logTail())
	}
	stillMountedThenRemove(p, v, mp, "the attach")
}

// Docker 26.1 unmounts a restarted plugin's mount from outside, seconds
// after the plugin answers (volume/restore.go): when a container's Mount
// has just been answered, before dockerd binds the path. The real plugin
// process: a Mount, then its mount taken from outside; the plugin must
// mount the volume again at once, not close it as unused.
func TestLabOutsideUnmountRightAfterAMountIsMountedAgain(t *testing.T) {
	const v = "lab-gap"
	p, mp := mountedWithFile(t, v)
	mustRun(t, "umount", mp)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(mp, "kept")); err == nil && string(b) == "volume" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the path is not the volume again 30 s after its mount was taken; mapping open: %v; log:\n%s", mappingOpen(t, v), p.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	stillMountedThenRemove(p, v, mp, "the remount")
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
