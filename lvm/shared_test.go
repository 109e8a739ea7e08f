package lvm

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func sharedClient(t *testing.T, f *fakeLVM) *Client {
	c, err := New("cvhost", WithExec(f.exec), WithShared())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// In a shared group every command is told to use lvmlockd and activation
// is exclusive; another host's lock reads as ErrHeldElsewhere, with lvm's
// own words kept (the message seen in the lab, issue 12).
func TestSharedActivationIsExclusive(t *testing.T) {
	f := newFake(t)
	c := sharedClient(t, f)
	f.on("lvm lvchange --config global/use_lvmlockd=1 -aey cvhost/cv-a", answer{})
	f.on("lvm lvchange --config global/use_lvmlockd=1 -aey cvhost/cv-b", answer{code: 5,
		stderr: "  LV locked by other host: cvhost/cv-b\n  Failed to lock logical volume cvhost/cv-b.\n"})
	f.on("lvm lvchange --config global/use_lvmlockd=1 -aey cvhost/cv-c", answer{code: 5,
		stderr: "  Cannot access VG cvhost due to failed lock.\n"})
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
