package volume

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/luks"
)

func init() { closeRetryGap = time.Millisecond }

// An lvm command of another create scans every block device, the mapping
// a create made a moment ago included, and holds it open for that moment:
// the create's close is retried as libdevmapper retries a remove, not
// failed (seen in the lab: parallel `docker volume create`s, "create failed
// at closing the LUKS2 mapping: mapping is in use"). A mapping that stays
// busy still fails the create, which is undone.
func TestCreateRetriesACloseAnLVMScanMakesBusy(t *testing.T) {
	h := newHarness(t)
	busy := fmt.Errorf("close mapping cryptvol-v1: %w: the kernel says it is open", luks.ErrBusy)
	h.w.failNext("crypt.Close", busy, busy, busy)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	h.stopContainer("v1", "c1")
	h.assertConsistent()

	errs := slices.Repeat([]error{busy}, closeRetries)
	h.w.failNext("crypt.Close", errs...)
	err := h.m.Create(h.ctx, "v2", nil)
	if err == nil || !errors.Is(err, luks.ErrBusy) || !strings.Contains(err.Error(), "closing the LUKS2 mapping") {
		t.Fatalf("create whose mapping stays busy: %v", err)
	}
	if _, ok := h.w.lvs["cv-v2"]; ok {
		t.Fatal("a failed create left its LV")
	}
	h.assertConsistent()
}

// A Mount that fails after opening the mapping closes it again; when that
// close fails too, the volume lingers, and the sweep closes it: nothing
// stays decrypted for a Mount that handed out no path.
func TestFailedMountWhoseCloseFailsIsClosedBySweep(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.w.failNext("fs.Mount", errors.New("mount: wrong fs type"))
	h.w.failNext("crypt.Close", errors.New("DM_DEV_REMOVE: no such ioctl"))
	if _, err := h.m.Mount(h.ctx, "v1", "c1"); err == nil {
		t.Fatal("mount succeeded")
	}
	if _, open, _ := h.up("v1"); !open {
		t.Fatal("the failed close left nothing open; the test injects nothing")
	}
	h.m.Sweep(h.ctx)
	h.assertDown("v1")
	h.assertConsistent()
}
