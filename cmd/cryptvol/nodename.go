package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Node names in a shared group. A node's name (CRYPTVOL_NODE) is in the
// tags of what it makes and mounts (volume/shared.go) and in the KMIP Object
// Group of its keys (keys.NodeGroup), which `cryptvol decommission NODE`
// destroys: two hosts with one name would each take the other's half-made
// volumes for their own, and decommissioning one would destroy the keys of
// both. So each name is bound, by a tag on the group itself
// (cryptvol_node_NAME=HOSTID), to the sanlock host_id of the host that
// claimed it, and a host whose name is bound to another host_id does not
// start.
//
// Why this holds: sanlock lets one live host at a time hold a host_id in a
// lockspace (its delta lease; sanlock(8), lvmlockd(8)), and the claim is
// made only after this host has joined the group's lockspace
// (sharedGroup), so a host_id names one host. Each claim is one vgchange
// under the group's lock, so the hosts' commits form one sequence, and a
// host reads the tags again after its own commit: of two hosts claiming a
// name at once, the later commit's host sees the earlier one's claim,
// withdraws its own and refuses (the earlier may refuse too, if it reads
// after the later commit; both then retry at the plugin's next start
// attempt). A name bound to this host's host_id under another name is this
// host's old name, and is freed in the same commit.

const tagNodePrefix = "cryptvol_node_"

// nodeTagger is what claimNode needs of the group. Implemented by
// *lvm.Client.
type nodeTagger interface {
	VGTags(ctx context.Context) ([]string, error)
	ChangeVGTags(ctx context.Context, del, add []string) error
	HostID(ctx context.Context) (int, error)
}

func nodeTag(node string, hostID int) string {
	return tagNodePrefix + node + "=" + strconv.Itoa(hostID)
}

// nodeClaim is one cryptvol_node_ tag.
type nodeClaim struct {
	tag, node string
	hostID    int
}

func nodeClaims(tags []string) []nodeClaim {
	var out []nodeClaim
	for _, t := range tags {
		v, ok := strings.CutPrefix(t, tagNodePrefix)
		if !ok {
			continue
		}
		i := strings.LastIndexByte(v, '=')
		if i < 0 {
			continue
		}
		if id, err := strconv.Atoi(v[i+1:]); err == nil {
			out = append(out, nodeClaim{t, v[:i], id})
		}
	}
	return out
}

// otherClaim returns a claim of node by a host_id other than hostID.
func otherClaim(claims []nodeClaim, node string, hostID int) (nodeClaim, bool) {
	i := slices.IndexFunc(claims, func(c nodeClaim) bool { return c.node == node && c.hostID != hostID })
	if i < 0 {
		return nodeClaim{}, false
	}
	return claims[i], true
}

// claimNode binds node to this host's host_id in the shared group vgName,
// or refuses when another host_id has it.
func claimNode(ctx context.Context, vg nodeTagger, vgName, node string) error {
	hostID, err := vg.HostID(ctx)
	if err != nil {
		return fmt.Errorf("shared volume group %s: %w", vgName, err)
	}
	if hostID < 1 {
		return fmt.Errorf("shared volume group %s: this host's sanlock host_id is not set (CRYPTVOL_HOST_ID, or local/host_id in lvm's lvmlocal.conf); it binds the node name %q to this host", vgName, node)
	}
	refuse := func(c nodeClaim) error {
		return fmt.Errorf("node name %q (CRYPTVOL_NODE) is in use in shared volume group %s by the host with sanlock host_id %d (group tag %s), and this host has host_id %d: each host of a group needs a name of its own; set another, or, if that host is gone or was renamed, free the name from any host of the group with: vgchange --deltag %s %s",
			node, vgName, c.hostID, c.tag, hostID, c.tag, vgName)
	}
	tags, err := vg.VGTags(ctx)
	if err != nil {
		return err
	}
	if c, ok := otherClaim(nodeClaims(tags), node, hostID); ok {
		return refuse(c)
	}
	ours := nodeTag(node, hostID)
	if slices.Contains(tags, ours) {
		return nil
	}
	var old []string
	for _, c := range nodeClaims(tags) {
		if c.hostID == hostID {
			old = append(old, c.tag)
		}
	}
	if err := vg.ChangeVGTags(ctx, old, []string{ours}); err != nil {
		return fmt.Errorf("claiming node name %q for host_id %d: %w", node, hostID, err)
	}
	if tags, err = vg.VGTags(ctx); err != nil {
		return err
	}
	if c, ok := otherClaim(nodeClaims(tags), node, hostID); ok {
		if err := vg.ChangeVGTags(ctx, []string{ours}, nil); err != nil {
			return fmt.Errorf("%w; withdrawing this host's claim failed too, remove it with vgchange --deltag %s %s: %v", refuse(c), ours, vgName, err)
		}
		return refuse(c)
	}
	return nil
}
