package lvm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Active reports whether lv's device is in the kernel now. It asks the
// kernel, not lvm: an lvm command is a program start, and activation writes
// no metadata, so a listing's lv_active goes stale without the metadata
// mark moving. The node /dev/VG/LV is stat'ed and the device-mapper device
// of that number must carry the LV's own uuid, which lvm2 builds as "LVM-"
// followed by the VG's and the LV's uuids without dashes
// (lib/activate/dev_manager.c, build_dm_uuid; a layer such as a thin pool's
// -tpool adds a suffix, and is not the LV): a stale link or a node of
// another device is not the LV.
//
// It answers false whenever it cannot tell (no node, no sysfs, a uuid that
// does not match); callers then run lvchange -ay, which is idempotent. A
// true answer can be stale a moment later only through someone else's
// lvchange -an, which the caller's next program on the device reports.
func (c *Client) Active(lv LV) bool {
	if lv.UUID == "" || ValidateLVName(lv.Name) != nil {
		return false
	}
	dev, err := c.devNumber(filepath.Join(c.devRoot, "dev", c.vg, lv.Name))
	if err != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join(c.sysfs, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev)), "dm", "uuid"))
	if err != nil {
		return false
	}
	u := strings.TrimSpace(string(b))
	want := strings.ReplaceAll(lv.UUID, "-", "")
	return len(want) == 32 && len(u) == len("LVM-")+64 && strings.HasPrefix(u, "LVM-") && strings.HasSuffix(u, want)
}
