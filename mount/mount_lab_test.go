//go:build lab

package mount

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/lvm"
)

// TestLabMountDMDevice mounts an LV (a device-mapper device) by its
// /dev/<vg>/<lv> path and checks that MountedDevice names it as
// /dev/mapper/<name>, the same device.
func TestLabMountDMDevice(t *testing.T) {
	vgName := os.Getenv("CRYPTVOL_LAB_VG")
	if vgName == "" {
		t.Skip("CRYPTVOL_LAB_VG is not set (lab only)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lvc, err := lvm.New(vgName)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("cvlab-mount-%d", time.Now().UnixNano()%1e9)
	if err := lvc.CreateLV(ctx, lvm.CreateRequest{Name: name, Size: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	lv, err := lvc.LV(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	f := New()
	target := filepath.Join(t.TempDir(), "mnt")
	t.Cleanup(func() {
		if err := f.Unmount(context.Background(), target); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := lvc.RemoveLV(context.Background(), name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	if err := f.Mkfs(ctx, lv.Path, "ext4"); err != nil {
		t.Fatal(err)
	}
	if err := f.Mount(ctx, lv.Path, target, "ext4"); err != nil {
		t.Fatal(err)
	}
	dev, err := f.MountedDevice(target)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(dev) != "/dev/mapper" || rdev(t, dev) != rdev(t, lv.Path) {
		t.Fatalf("MountedDevice = %q, want the /dev/mapper name of %s", dev, lv.Path)
	}
	if err := os.WriteFile(filepath.Join(target, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Unmount(ctx, target); err != nil {
		t.Fatal(err)
	}
	if dev, err := f.MountedDevice(target); err != nil || dev != "" {
		t.Fatalf("MountedDevice after Unmount = %q, %v", dev, err)
	}
	if err := f.Unmount(ctx, target); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}
	if err := lvc.Deactivate(ctx, name); err != nil {
		t.Fatalf("LV busy after Unmount: %v", err)
	}
}

func rdev(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Sys().(*syscall.Stat_t).Rdev)
}
