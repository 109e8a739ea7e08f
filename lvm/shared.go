package lvm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cryptvol/cryptvol/internal/command"
)

// Shared volume groups (lvmlockd(8)): a group on devices that every host of
// a cluster sees, with lock type sanlock. Each host runs sanlock and
// lvmlockd; lvm commands reach lvmlockd through its socket,
// /run/lvm/lvmlockd.socket (fixed when lvm2 is built), and take the group's
// lock to change metadata and an LV's lock to activate it. An LV activated
// exclusively (-aey) on one host cannot be activated on another until it is
// deactivated there or that host's sanlock lease has expired.

// ErrHeldElsewhere is returned (wrapped) when an LV's lock is held by
// another host: the LV is active there.
var ErrHeldElsewhere = errors.New("active on another host")

// ErrNoLocks is returned (wrapped) when this host cannot take the group's
// locks at all: lvmlockd or sanlock is not running, or the group's
// lockspace is not started here.
var ErrNoLocks = errors.New("the group's locks are not available on this host")

// WithShared makes the Client use the group as a shared one: every command
// is told to use lvmlockd (whatever lvm.conf says: the managed plugin's
// rootfs has its own) and activation is exclusive. hostID, when above 0, is
// this host's sanlock host_id (lvmlockd(8): 1 to 2000, unique among the
// hosts), which vgchange --lock-start hands lvmlockd; 0 leaves it to lvm's
// own configuration (lvmlocal.conf), which the managed plugin's rootfs does
// not have.
func WithShared(hostID int) Option {
	return func(c *Client) {
		c.shared = true
		conf := "global/use_lvmlockd=1"
		if hostID > 0 {
			conf += fmt.Sprintf(" local/host_id=%d", hostID)
		}
		// One --config for both: lvm takes the last of several (lvm(8)).
		c.sharedConfig = []string{"--config", conf}
	}
}

// lockFailure classifies lvmlockd's refusals (lvm exits 5 for these as for
// much else, so the message decides). "LV locked by other host" is the LV
// lock's conflict (lib/locking/lvmlockd.c, lockd_lv), the one the lab shows;
// "Global lock failed: held by other host" (lockd_global) is another host's
// brief hold of the global lock, not a volume in use there, and is left
// unclassified. The others say the group's lockspace is not usable here.
func lockFailure(err error) error {
	var e *command.Error
	if !errors.As(err, &e) {
		return nil
	}
	switch s := e.Stderr; {
	case strings.Contains(s, "LV locked by other host"):
		return ErrHeldElsewhere
	case strings.Contains(s, "due to failed lock"), strings.Contains(s, "lockspace not found or started"),
		strings.Contains(s, "lvmlockd") && strings.Contains(s, "not running"):
		return ErrNoLocks
	}
	return nil
}

// StartLocks joins the group's lockspace on this host (vgchange
// --lock-start), which must happen before anything in a shared group is
// activated or changed here; a started lockspace is left as it is. Joining
// a sanlock lockspace takes tens of seconds (acquiring this host's delta
// lease), longer after an unclean stop. lvmlockd looks for the lockspace's
// device (/dev/mapper/VG-lvmlock) as soon as lvm has activated it, and
// without udev lvm makes that node only afterwards: the first start then
// fails ("invalid parameters for sanlock", seen in the lab), so one failed
// start is retried. Before that, lvm's test for a running lvmlockd is
// made to pass where this process's /run is not the host's (lockd.go).
func (c *Client) StartLocks(ctx context.Context) error {
	if !c.shared {
		return nil
	}
	if err := markLockd(); err != nil {
		return fmt.Errorf("shared volume group %s: %w", c.vg, err)
	}
	var err error
	for try := 0; try < 2; try++ {
		if _, err = c.run(ctx, "vgchange", "--lock-start", c.vg); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("start the locks of shared volume group %s (vgchange --lock-start; is lvmlockd running, with sanlock, and is this host's host_id set?): %w", c.vg, err)
}

// CheckShared verifies that the group exists and is a shared one (lock
// type sanlock or dlm). Shared mode never creates the group: two hosts
// starting at once would both find it missing (lvmlockd(8): creating the
// first sanlock VG is not protected by locking).
func (c *Client) CheckShared(ctx context.Context) error {
	vg, err := c.VG(ctx)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("shared volume group %s does not exist; create it once, from one host: vgcreate --shared %s DEVICE...: %w", c.vg, c.vg, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("shared volume group: %w", err)
	}
	switch vg.LockType {
	case "sanlock", "dlm":
		return nil
	default:
		return fmt.Errorf("volume group %s is not shared (lock type %q): shared mode needs one made with vgcreate --shared, or converted with vgchange --locktype sanlock", c.vg, vg.LockType)
	}
}
