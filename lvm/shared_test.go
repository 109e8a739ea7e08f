package lvm

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
)

func sharedClient(t *testing.T, f *fakeLVM) *Client {
	c, err := New("cvhost", WithExec(f.exec), WithShared(0))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// In a shared group every command is told to use lvmlockd and activation
// is exclusive; another host's lock reads as ErrHeldElsewhere, with lvm's
// own words kept (the message seen in the lab).
func TestSharedActivationIsExclusive(t *testing.T) {
	f := newFake(t)
	c := sharedClient(t, f)
	f.on("lvm lvchange --config global/use_lvmlockd=1 -aey cvhost/cv-a", answer{})
	f.on("lvm lvchange --config global/use_lvmlockd=1 -aey cvhost/cv-b", answer{code: 5,
		stderr: "  LV locked by other host: cvhost/cv-b\n  Failed to lock logical volume cvhost/cv-b.\n"})
	f.on("lvm lvchange --config global/use_lvmlockd=1 -aey cvhost/cv-c", answer{code: 5,
		stderr: "  Cannot access VG cvhost due to failed lock.\n"})
	f.on("lvm lvchange --config global/use_lvmlockd=1 -aey cvhost/cv-d", answer{code: 5,
		stderr: "  Global lock failed: held by other host.\n"})
	ctx := context.Background()
	if err := c.Activate(ctx, "cv-a"); err != nil {
		t.Fatal(err)
	}
	err := c.Activate(ctx, "cv-b")
	if !errors.Is(err, ErrHeldElsewhere) || !strings.Contains(err.Error(), "LV locked by other host") {
		t.Errorf("held elsewhere: %v", err)
	}
	err = c.Activate(ctx, "cv-c")
	if !errors.Is(err, ErrNoLocks) || errors.Is(err, ErrHeldElsewhere) {
		t.Errorf("no lockspace: %v", err)
	}
	// Another host holding the global lock for a moment is not the volume
	// in use there.
	err = c.Activate(ctx, "cv-d")
	if err == nil || errors.Is(err, ErrHeldElsewhere) || errors.Is(err, ErrNoLocks) {
		t.Errorf("global lock busy: %v", err)
	}
}

// A single-host Client is unchanged: no --config, -ay, and a lock message
// means nothing special.
func TestUnsharedActivationIsPlain(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	f.on("lvm lvchange -ay cvhost/cv-a", answer{})
	if err := c.Activate(context.Background(), "cv-a"); err != nil {
		t.Fatal(err)
	}
	if err := c.StartLocks(context.Background()); err != nil || len(f.calls) != 1 {
		t.Errorf("StartLocks of a local group: %v, %d commands", err, len(f.calls))
	}
}

// StartLocks retries one failed start (lvmlockd looked for the lockspace's
// device before lvm made its node, in the lab); CheckShared refuses a
// missing or local group, naming what to run.
func TestSharedStartAndCheck(t *testing.T) {
	f := newFake(t)
	c := sharedClient(t, f)
	ctx := context.Background()
	start := "lvm vgchange --config global/use_lvmlockd=1 --lock-start cvhost"
	f.on(start, answer{code: 5, stderr: "  VG cvhost start failed: invalid parameters for sanlock\n"})
	if err := c.StartLocks(ctx); err == nil || !strings.Contains(err.Error(), "is lvmlockd running") {
		t.Errorf("StartLocks failing twice: %v", err)
	}
	if len(f.calls) != 2 {
		t.Errorf("%d starts, want 2", len(f.calls))
	}
	check := strings.Replace(vgsCmd, "lvm vgs ", "lvm vgs --config global/use_lvmlockd=1 ", 1)
	report := func(lt string) string {
		return `{"report":[{"vg":[{"vg_name":"cvhost","vg_size":"1073741824","vg_free":"0","vg_extent_size":"4194304","vg_uuid":"u","vg_lock_type":"` + lt + `"}]}]}`
	}
	f.on(check, answer{stdout: report("sanlock")})
	if err := c.CheckShared(ctx); err != nil {
		t.Errorf("sanlock group: %v", err)
	}
	f.on(check, answer{stdout: report("")})
	if err := c.CheckShared(ctx); err == nil || !strings.Contains(err.Error(), "is not shared") {
		t.Errorf("local group: %v", err)
	}
	f.on(check, answer{code: 5, stderr: "  Volume group \"cvhost\" not found\n  Cannot process volume group cvhost\n"})
	if err := c.CheckShared(ctx); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "vgcreate --shared cvhost") {
		t.Errorf("missing group: %v", err)
	}
}

// A host id set by the plugin (the managed plugin's rootfs has no
// lvmlocal.conf) goes with use_lvmlockd in the one --config lvm reads, so
// that --lock-start can hand it to lvmlockd.
func TestSharedHostID(t *testing.T) {
	f := newFake(t)
	c, err := New("cvhost", WithExec(f.exec), WithShared(7))
	if err != nil {
		t.Fatal(err)
	}
	f.on("lvm vgchange --config global/use_lvmlockd=1 local/host_id=7 --lock-start cvhost", answer{})
	if err := c.StartLocks(context.Background()); err != nil || len(f.calls) != 1 {
		t.Errorf("StartLocks with host id 7: %v, %d commands", err, len(f.calls))
	}
}

// lvm tests for lvmlockd by its pidfile (lockd.go): the file is made when
// lvmlockd's socket is there and the file is missing (the managed plugin's
// own /run), never without the socket, and an existing file is left as it
// is.
func TestMarkLockd(t *testing.T) {
	dir := t.TempDir()
	pid, sock := dir+"/lvmlockd.pid", dir+"/lvmlockd.socket"
	defer func(p, s string) { lockdPidfile, lockdSocket = p, s }(lockdPidfile, lockdSocket)
	lockdPidfile, lockdSocket = pid, sock

	if err := markLockd(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pid); !os.IsNotExist(err) {
		t.Fatalf("no socket: pidfile %v, want none", err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := markLockd(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(pid); err != nil || fi.Size() != 0 {
		t.Fatalf("socket there: pidfile %v, want an empty file", err)
	}
	if err := os.WriteFile(pid, []byte("123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := markLockd(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(pid); string(b) != "123\n" {
		t.Errorf("an existing pidfile was changed: %q", b)
	}
}
