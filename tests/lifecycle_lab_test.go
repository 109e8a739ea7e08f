//go:build lab

// Package tests holds cryptvol's integration tests: the whole driver stack
// (volume.Manager over the real lvm, luks, mount and keys packages) against
// the lab guest's real kernel, lvm2, cryptsetup and PyKMIP server.
package tests

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume"
)

type stack struct {
	t     *testing.T
	vg    string
	pool  string
	lvm   *lvm.Client
	crypt *luks.Cryptsetup
	fs    *mount.FS
	keys  *keys.KMIP
	mgr   *volume.Manager
	cfg   volume.Config
}

func newStack(t *testing.T) *stack {
	t.Helper()
	vg, pool := os.Getenv("CRYPTVOL_LAB_VG"), os.Getenv("CRYPTVOL_LAB_POOL")
	if vg == "" || os.Getenv("CRYPTVOL_KMIP_ENDPOINT") == "" {
		t.Skip("CRYPTVOL_LAB_VG and CRYPTVOL_KMIP_* are set only inside the lab guest")
	}
	l, err := lvm.New(vg)
	if err != nil {
		t.Fatal(err)
	}
	k := labKeys(t)
	s := &stack{t: t, vg: vg, pool: pool, lvm: l, crypt: luks.New(), fs: mount.New(), keys: k}
	s.cfg = volume.Config{
		VG: vg, DefaultFS: "ext4", ThinPool: pool, MountRoot: t.TempDir(), StateDir: t.TempDir(),
		DefaultSize: 64 << 20, NoWorkqueue: true,
	}
	s.restart()
	return s
}

// restart builds a new Manager over the same state directory, as a plugin restart does.
func (s *stack) restart() {
	s.t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	m, err := volume.New(s.cfg, s.lvm, s.crypt, s.fs, s.keys, log)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := m.Reconcile(ctx(s.t)); err != nil {
		s.t.Fatal(err)
	}
	s.mgr = m
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

// create makes a volume and removes it (with whatever still holds it) when the test ends.
func (s *stack) create(name string, opts map[string]string) {
	s.t.Helper()
	if err := s.mgr.Create(ctx(s.t), name, opts); err != nil {
		s.t.Fatalf("create %s: %v", name, err)
	}
	if v, err := s.mgr.Get(ctx(s.t), name); err == nil {
		rememberKey(s.t, keyID(s.t, v)) // for the end-of-run secret scan
	}
	s.t.Cleanup(func() {
		for _, id := range []string{"a", "b", "c"} {
			_ = s.mgr.Unmount(context.Background(), name, id)
		}
		if err := s.mgr.Remove(context.Background(), name); err != nil && !errors.Is(err, volume.ErrNotFound) {
			s.t.Errorf("cleanup: remove %s: %v", name, err)
		}
	})
}

func (s *stack) mount(name, id string) string {
	s.t.Helper()
	p, err := s.mgr.Mount(ctx(s.t), name, id)
	if err != nil {
		s.t.Fatalf("mount %s %s: %v", name, id, err)
	}
	return p
}

func (s *stack) unmount(name, id string) {
	s.t.Helper()
	if err := s.mgr.Unmount(ctx(s.t), name, id); err != nil {
		s.t.Fatalf("unmount %s %s: %v", name, id, err)
	}
}

func (s *stack) lv(name string) lvm.LV {
	s.t.Helper()
	lv, err := s.lvm.LV(ctx(s.t), "cv-"+name)
	if err != nil {
		s.t.Fatalf("LV of %s: %v", name, err)
	}
	return lv
}

func (s *stack) open(name string) bool {
	s.t.Helper()
	ok, err := s.crypt.IsOpen(ctx(s.t), "cryptvol-"+name)
	if err != nil {
		s.t.Fatal(err)
	}
	return ok
}

// assertDown checks what a user relies on after the last unmount: nothing decrypted. The LV itself stays
// active on a single host (volume.keepsActive): it shows only ciphertext.
func (s *stack) assertDown(name, path string) {
	s.t.Helper()
	if s.open(name) {
		s.t.Errorf("%s: dm-crypt mapping still open", name)
	}
	if path != "" {
		// path is the data directory a Mount returned, inside the
		// filesystem: with the volume down it must not exist, or a
		// container could bind it and write to the host's disk.
		if dev, err := s.fs.MountedDevice(filepath.Dir(path)); err != nil || dev != "" {
			s.t.Errorf("%s: %s still a mountpoint (%q, %v)", name, filepath.Dir(path), dev, err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			s.t.Errorf("%s: %s exists with the volume down (%v)", name, path, err)
		}
	}
}

// withActive runs fn with the raw LV activated, as an attacker with the disk would see it, and leaves the LV as
// it found it.
func (s *stack) withActive(name string, fn func(dev string)) {
	s.t.Helper()
	if lv := s.lv(name); !lv.Active {
		if err := s.lvm.Activate(ctx(s.t), "cv-"+name); err != nil {
			s.t.Fatal(err)
		}
		defer func() {
			if err := s.lvm.Deactivate(ctx(s.t), "cv-"+name); err != nil {
				s.t.Error(err)
			}
		}()
	}
	fn(s.lv(name).Path)
}

func keyID(t *testing.T, v volume.Volume) string {
	t.Helper()
	id, _ := v.Status[volume.StatusKeyID].(string)
	if id == "" {
		t.Fatalf("volume %s: no key id in status %v", v.Name, v.Status)
	}
	return id
}

func TestLabCreateWritesLUKS2HeaderWithTokenAndActiveKey(t *testing.T) {
	s := newStack(t)
	s.create("lab-create", map[string]string{"size": "64M"})
	v, err := s.mgr.Get(ctx(t), "lab-create")
	if err != nil {
		t.Fatal(err)
	}
	id := keyID(t, v)
	s.assertDown("lab-create", "")
	s.withActive("lab-create", func(dev string) {
		f, err := os.Open(dev)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		magic := make([]byte, 6)
		if _, err := f.Read(magic); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(magic, []byte("LUKS\xba\xbe")) {
			t.Errorf("first bytes of the LV = %q, want the LUKS magic", magic)
		}
		h, err := s.crypt.Inspect(ctx(t), dev)
		if err != nil {
			t.Fatal(err)
		}
		if h.Version != 2 || h.Cipher != "aes-xts-plain64" || h.KeyBits != 512 || h.SectorSize != 4096 {
			t.Errorf("header = %+v, want LUKS2 aes-xts-plain64 512-bit 4096-byte sectors", h)
		}
		if h.Token == nil || h.Token.KeyID != id || h.Token.Volume != "lab-create" {
			t.Errorf("token = %+v, want key id %q for volume lab-create", h.Token, id)
		}
	})
	k, err := s.keys.Get(ctx(t), id)
	if err != nil {
		t.Fatalf("KMIP Get of the recorded key %q: %v", id, err)
	}
	if len(k.Bytes()) != 32 {
		t.Errorf("key is %d bytes, want 32", len(k.Bytes()))
	}
	k.Wipe()
	if got := s.lv("lab-create").Size; got < 64<<20 {
		t.Errorf("LV size %d, want at least 64 MiB", got)
	}
}

func TestLabMountWriteUnmountRemount(t *testing.T) {
	s := newStack(t)
	s.create("lab-mount", nil)
	p := s.mount("lab-mount", "a")
	dev, err := s.fs.MountedDevice(filepath.Dir(p))
	if err != nil || dev != "/dev/mapper/cryptvol-lab-mount" {
		t.Fatalf("mountpoint %s is mounted from %q (%v), want the decrypted mapping", p, dev, err)
	}
	if !s.open("lab-mount") || !s.lv("lab-mount").Active {
		t.Fatal("mapping not open or LV not active while mounted")
	}
	if err := os.WriteFile(filepath.Join(p, "f"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.unmount("lab-mount", "a")
	s.assertDown("lab-mount", p)
	if _, err := os.Stat(filepath.Join(p, "f")); err == nil {
		t.Error("the file is visible at the mountpoint after unmount: it was written to the host's disk")
	}
	p = s.mount("lab-mount", "b")
	got, err := os.ReadFile(filepath.Join(p, "f"))
	if err != nil || string(got) != "kept" {
		t.Errorf("after remount read %q, %v; want the file back", got, err)
	}
	s.unmount("lab-mount", "b")
	s.assertDown("lab-mount", p)
}

func TestLabRawLVNeverHoldsPlaintext(t *testing.T) {
	s := newStack(t)
	s.create("lab-raw", map[string]string{"thin": "false"})
	p := s.mount("lab-raw", "a")
	pattern := []byte("cryptvol-known-plaintext-7f3a9c")
	if err := os.WriteFile(filepath.Join(p, "pattern"), bytes.Repeat(pattern, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	s.unmount("lab-raw", "a")
	s.withActive("lab-raw", func(dev string) {
		raw, err := os.ReadFile(dev)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, pattern) {
			t.Fatal("the raw LV contains the plaintext written through the mount")
		}
	})
}

func TestLabTwoMountIDs(t *testing.T) {
	s := newStack(t)
	s.create("lab-two", map[string]string{"thin": "true"})
	if lv := s.lv("lab-two"); lv.Pool != s.pool {
		t.Errorf("thin volume's pool = %q, want %q", lv.Pool, s.pool)
	}
	p1 := s.mount("lab-two", "a")
	p2 := s.mount("lab-two", "b")
	if p1 != p2 {
		t.Fatalf("two IDs got different paths %s and %s", p1, p2)
	}
	// A repeated ID is another Mount (docker cp on a running container):
	// counted, so its Unmount leaves the volume to the first one.
	if again := s.mount("lab-two", "b"); again != p2 {
		t.Fatalf("repeated ID got %s", again)
	}
	s.unmount("lab-two", "a")
	s.unmount("lab-two", "b")
	if !s.open("lab-two") {
		t.Fatal("an unmount closed a volume a Mount of b still holds")
	}
	if dev, _ := s.fs.MountedDevice(filepath.Dir(p2)); dev == "" {
		t.Fatal("an unmount unmounted a volume a Mount of b still holds")
	}
	s.unmount("lab-two", "b")
	s.assertDown("lab-two", p2)
	s.unmount("lab-two", "never-mounted") // harmless
}

func TestLabRemoveShreds(t *testing.T) {
	s := newStack(t)
	s.create("lab-rm", nil)
	v, err := s.mgr.Get(ctx(t), "lab-rm")
	if err != nil {
		t.Fatal(err)
	}
	id := keyID(t, v)
	s.mount("lab-rm", "a")
	err = s.mgr.Remove(ctx(t), "lab-rm")
	if !errors.Is(err, volume.ErrInUse) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("remove while mounted: %v, want an in-use refusal", err)
	}
	s.unmount("lab-rm", "a")
	if err := s.mgr.Remove(ctx(t), "lab-rm"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.lvm.LV(ctx(t), "cv-lab-rm"); !errors.Is(err, lvm.ErrNotFound) {
		t.Errorf("LV after remove: %v, want not found", err)
	}
	if k, err := s.keys.Get(ctx(t), id); err == nil {
		k.Wipe()
		t.Error("the KMIP key can still be fetched after remove")
	}
	if ids := kmipKeys(t, "lab-rm"); len(ids) != 0 {
		t.Errorf("KMIP still holds %v (%v) for the removed volume", ids, err)
	}
}

// A key is never destroyed because of its name alone: with the LV gone and
// nothing journaled, nothing proves the key is that volume's.
func TestLabRemoveAfterLVVanishedLeavesKeyFoundOnlyByName(t *testing.T) {
	s := newStack(t)
	s.create("lab-gone", nil)
	v, err := s.mgr.Get(ctx(t), "lab-gone")
	if err != nil {
		t.Fatal(err)
	}
	id := keyID(t, v)
	if err := s.lvm.RemoveLV(ctx(t), "cv-lab-gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.mgr.Remove(ctx(t), "lab-gone"); !errors.Is(err, volume.ErrNotFound) {
		t.Fatalf("remove of a volume whose LV is gone: %v, want not found", err)
	}
	k, err := s.keys.Get(ctx(t), id)
	if err != nil {
		t.Fatalf("a key found only by its name was destroyed: %v", err)
	}
	k.Wipe()
	if err := s.keys.Destroy(ctx(t), id); err != nil {
		t.Fatal(err)
	}
}

func TestLabXFS(t *testing.T) {
	s := newStack(t)
	s.create("lab-xfs", map[string]string{"fs": "xfs", "size": "320M"})
	p := s.mount("lab-xfs", "a")
	if err := os.WriteFile(filepath.Join(p, "x"), []byte("xfs"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := s.mgr.Get(ctx(t), "lab-xfs")
	if err != nil {
		t.Fatal(err)
	}
	if v.Status[volume.StatusFS] != "xfs" || v.Status[volume.StatusMounted] != true {
		t.Errorf("status %v, want fs xfs and mounted", v.Status)
	}
	s.unmount("lab-xfs", "a")
	s.assertDown("lab-xfs", p)
}

func TestLabRestartKeepsMountIDs(t *testing.T) {
	s := newStack(t)
	s.create("lab-restart", nil)
	p := s.mount("lab-restart", "a")
	s.restart() // a plugin restart: same boot, same state directory
	if dev, _ := s.fs.MountedDevice(filepath.Dir(p)); dev == "" {
		t.Fatal("a plugin restart unmounted a volume a container holds")
	}
	s.unmount("lab-restart", "a")
	s.assertDown("lab-restart", p)
}

func TestLabBadInputCreatesNothing(t *testing.T) {
	s := newStack(t)
	before, err := s.lvm.ListLVs(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opts map[string]string
		want string // the error must name what was wrong
	}{
		{"bad/name", nil, "name"},
		{"-dash", nil, "name"},
		{"has_tmeta", nil, "name"},
		{"lab-unknown", map[string]string{"colour": "red"}, "colour"},
		{"lab-small", map[string]string{"size": "1M"}, "size"},
		{"lab-xfs-small", map[string]string{"fs": "xfs", "size": "100M"}, "size"},
		{"lab-huge", map[string]string{"size": "64T"}, "size"},
		{"lab-badsize", map[string]string{"size": "lots"}, "size"},
		{"lab-badfs", map[string]string{"fs": "btrfs"}, "fs"},
		{"lab-badthin", map[string]string{"thin": "maybe"}, "thin"},
	}
	for _, c := range cases {
		err := s.mgr.Create(ctx(t), c.name, c.opts)
		if err == nil {
			_ = s.mgr.Remove(context.Background(), c.name)
			t.Errorf("create %q %v succeeded, want a refusal", c.name, c.opts)
			continue
		}
		if !strings.Contains(strings.ToLower(err.Error()), c.want) {
			t.Errorf("create %q %v: error %q does not name %q", c.name, c.opts, err, c.want)
		}
		if ids := kmipKeys(t, c.name); len(ids) != 0 {
			t.Errorf("create %q left KMIP keys %v (%v)", c.name, ids, err)
		}
	}
	after, err := s.lvm.ListLVs(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("refused creates changed the VG: %d LVs before, %d after", len(before), len(after))
	}
}

// What Docker 26.1 did to a restarted plugin (tests/e2e/contract.sh), on the
// real kernel: the plugin's mount of a volume a container holds is unmounted
// from outside. With sweeps an hour apart, only the kernel's report of the
// changed mount table (mount.WatchMounts) can bring it back.
func TestLabOutsideUnmountIsRestored(t *testing.T) {
	s := newStack(t)
	s.cfg.SweepInterval = time.Hour
	s.restart()
	s.create("lab-outside", nil)
	p := s.mount("lab-outside", "a")
	if err := os.WriteFile(filepath.Join(p, "kept"), []byte("before"), 0o600); err != nil {
		t.Fatal(err)
	}
	container := t.TempDir() // a container's bind mount holds the filesystem
	mustRun(t, "mount", "--bind", p, container)
	t.Cleanup(func() { _ = exec.Command("umount", container).Run() })

	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.mgr.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(time.Second) // Run's first sweep and the watch start
	mustRun(t, "umount", filepath.Dir(p))

	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.mgr.Path(ctx(t), "lab-outside")
		if err != nil {
			t.Fatal(err)
		}
		if got == p {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Path still \"\" 30 s after the mount was taken from outside; the next sweep is an hour away")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(p, "kept")); err != nil || string(b) != "before" {
		t.Fatalf("the restored mount is not the volume: %q, %v", b, err)
	}
	cancel()
	<-done
	mustRun(t, "umount", container)
	s.unmount("lab-outside", "a")
	s.assertDown("lab-outside", p)
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := run(t, name, args...); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
