package volume

import (
	"context"
	"errors"
	"time"

	"github.com/cryptvol/cryptvol/luks"
)

// What this file owns: closing a mapping that nothing should hold.

// Retries of a close that finds the mapping busy, as libdevmapper makes
// them for a remove it is told to retry, as cryptsetup close tells it
// (lvm2 libdm/ioctl/libdm-iface.c, DM_IOCTL_RETRIES and
// DM_RETRY_USLEEP_DELAY): an lvm command of another create, or an
// administrator's, opens every block device for a moment to read its
// label (lvm's device scan), a mapping made a moment ago included.
const closeRetries = 25

var closeRetryGap = 200 * time.Millisecond

// closeUnheld closes a mapping that nothing of the plugin's or of a
// container's holds (a create's, after its mkfs; a remove's), retrying a
// busy answer about five seconds. A mapping that may be held by a
// container is closed once, without retries (teardown): busy is the
// answer sought there.
func (m *Manager) closeUnheld(ctx context.Context, mapping string) error {
	for i := 1; ; i++ {
		err := m.crypt.Close(ctx, mapping)
		if !errors.Is(err, luks.ErrBusy) || i == closeRetries {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(closeRetryGap):
		}
	}
}
