package lvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostLoop returns a loop device over a fresh image of size bytes, detached
// at the end of the test; it skips a test that cannot have one here.
func hostLoop(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if os.Getenv("CRYPTVOL_LAB_VG") != "" {
		// The lab's lvm.conf admits only its own disks (no loop devices);
		// TestLabLifecycle covers all of this there on real LVs.
		t.Skip("in the lab")
	}
	for _, tool := range []string{"lvm", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	img := filepath.Join(t.TempDir(), "pv.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device available: %v: %s", err, out)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", loop, err, out)
		}
	})
	return loop
}

// TestHostVGOnLoopDevice runs the real lvm against a VG on a loop device.
// It needs root and loop devices but no device-mapper, so it covers what a
// machine without dm can prove: EnsureVG's pvcreate/vgcreate, the vgs report
// and real lvm's "not found" messages for LVs and VGs.
func TestHostVGOnLoopDevice(t *testing.T) {
	loop := hostLoop(t, 64<<20)
	vg := fmt.Sprintf("cvhosttest%d", time.Now().UnixNano()%1e9)
	c, err := New(vg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.VG(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("VG before creation: %v, want ErrNotFound", err)
	}
	if err := c.EnsureVG(ctx, []string{loop}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, args := range [][]string{{"vgremove", "-y", vg}, {"pvremove", "-y", loop}} {
			if out, err := exec.Command("lvm", args...).CombinedOutput(); err != nil {
				t.Errorf("lvm %v: %v: %s", args, err, out)
			}
		}
	})
	got, err := c.VG(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != vg || got.ExtentSize != 4<<20 || got.Size == 0 || got.Size > 64<<20 || got.Free != got.Size {
		t.Fatalf("VG = %+v, want an empty group of under 64 MiB with 4 MiB extents", got)
	}
	if err := c.EnsureVG(ctx, []string{loop}); err != nil {
		t.Fatalf("EnsureVG on an existing group: %v", err)
	}
	if _, err := c.LV(ctx, "cv-missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LV of a missing volume: %v, want ErrNotFound", err)
	}
	if err := c.RemoveLV(ctx, "cv-missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RemoveLV of a missing volume: %v, want ErrNotFound", err)
	}
	lvs, err := c.ListLVs(ctx, "cryptvol")
	if err != nil || len(lvs) != 0 {
		t.Fatalf("ListLVs = %v, %v; want none", lvs, err)
	}
}
