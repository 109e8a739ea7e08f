package volume

import (
	"fmt"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/lvm"
)

// Which KMIP Object Group a volume's key goes in. `cryptvol decommission
// NODE` (admin/decommission.go) revokes and destroys every key in NODE's
// group (keys.NodeGroup), so a key must be in the group of the node whose
// volume it opens, and stay there:
//
//   - Create makes the key in this node's group (the KMIP client's
//     Config.Group). A clone or snapshot (option from=, `cryptvol
//     snapshot`) is a new volume made here: its key is in this node's
//     group whatever node made its source, and decommissioning the
//     source's maker leaves it alone. Clones are thin snapshots (clone.go),
//     which a shared group does not offer (shared.go), so in a shared group
//     the case does not arise today; were it to, the clone would carry
//     cryptvol_madeby_ with this node like any create, and its rotations
//     would keep this node's group.
//   - A rotation in a shared group may run on any host (every host rotates
//     every volume on schedule, schedule.go): the new key goes in the group
//     of the node the LV's cryptvol_madeby_ tag names, never the rotating
//     host's. On a single host, or for an LV without that tag, it goes in
//     this node's group, as a create's.

// keyGroupFor is the Object Group a rotation's new key for lv goes in: ""
// for the client's own (this node's).
func (m *Manager) keyGroupFor(name string, lv lvm.LV) (string, error) {
	if !m.cfg.Shared {
		return "", nil
	}
	maker := tagValue(lv.Tags, tagMadeByPrefix)
	if maker == "" || maker == m.cfg.Node {
		return "", nil
	}
	if err := keys.ValidateNode(maker); err != nil {
		return "", fmt.Errorf("volume %q: its tag %s%s should name the node that made it, whose KMIP object group its key belongs in: %w", name, tagMadeByPrefix, maker, err)
	}
	return keys.NodeGroup(maker), nil
}
