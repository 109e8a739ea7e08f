package mount

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func imageFile(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func readRange(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return b
}

// TestHostMkfs runs the real mkfs tools on image files (no root needed) and
// checks the superblock magic each leaves.
func TestHostMkfs(t *testing.T) {
	for _, c := range []struct {
		fstype string
		size   int64
		off    int64
		magic  []byte
	}{
		{"ext4", 64 << 20, 1080, []byte{0x53, 0xef}}, // s_magic 0xEF53, little endian
		{"xfs", 320 << 20, 0, []byte("XFSB")},
	} {
		t.Run(c.fstype, func(t *testing.T) {
			if _, err := exec.LookPath("mkfs." + c.fstype); err != nil {
				t.Skipf("mkfs.%s not installed", c.fstype)
			}
			img := imageFile(t, c.size)
			if err := New().Mkfs(context.Background(), img, c.fstype); err != nil {
				t.Fatal(err)
			}
			if got := readRange(t, img, c.off, len(c.magic)); !bytes.Equal(got, c.magic) {
				t.Fatalf("superblock magic = %x, want %x", got, c.magic)
			}
		})
	}
}

// TestHostMountLoop mounts a real filesystem through a loop device: it
// proves the mount options, the mountinfo parsing (with a space in the
// path) and the idempotent Mount/Unmount against the real kernel.
func TestHostMountLoop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx := context.Background()
	f := New()
	img := imageFile(t, 64<<20)
	if err := f.Mkfs(ctx, img, "ext4"); err != nil {
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
	target := filepath.Join(t.TempDir(), "volumes", "my vol")
	t.Cleanup(func() {
		if dev, _ := f.MountedDevice(target); dev != "" {
			_ = exec.Command("umount", target).Run()
		}
	})

	if err := f.Mount(ctx, loop, target, "ext4"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(target)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created parent: %v, %v; want mode 0700", fi, err)
	}
	if dev, err := f.MountedDevice(target); err != nil || dev != loop {
		t.Fatalf("MountedDevice = %q, %v; want %s", dev, err, loop)
	}
	e, err := f.lookup(target)
	if err != nil || e == nil {
		t.Fatalf("lookup: %v, %v", e, err)
	}
	if opts := "," + e.Options + ","; !strings.Contains(opts, ",nodev,") || !strings.Contains(opts, ",nosuid,") || e.FSType != "ext4" {
		t.Fatalf("mounted as %s with %q, want ext4 with nodev,nosuid", e.FSType, e.Options)
	}
	if err := os.WriteFile(filepath.Join(target, "f"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Mount(ctx, loop, target, "ext4"); err != nil {
		t.Fatalf("second Mount of the same device: %v", err)
	}

	if err := f.Unmount(ctx, target); err != nil {
		t.Fatal(err)
	}
	if dev, err := f.MountedDevice(target); err != nil || dev != "" {
		t.Fatalf("MountedDevice after Unmount = %q, %v", dev, err)
	}
	if _, err := os.Stat(filepath.Join(target, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file visible in the bare mount point: %v", err)
	}
	if err := f.Unmount(ctx, target); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}

	if err := f.Mount(ctx, loop, target, "ext4"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "kept" {
		t.Fatalf("file after remount: %q, %v", b, err)
	}
	if err := f.Unmount(ctx, target); err != nil {
		t.Fatal(err)
	}
}
