package csi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cryptvol/cryptvol/volume/options"
)

// TopologyKey is the one topology segment cryptvol reports: the volume
// group's UUID. The hosts of a shared group (CRYPTVOL_SHARED) report the
// same value and can each take any of its volumes; any other host's group is
// its own.
const TopologyKey = "cryptvol/volume-group"

// volumeName is the volume a CreateVolume name stands for: the name itself
// when it is a valid volume name (Docker's cluster volume names are), else
// "csi-" and the first 40 hex digits of its SHA-256, so that a name the
// volume grammar refuses (CSI allows 128 characters of any kind) still
// names one volume, the same one at every retry.
func volumeName(csiName string) string {
	if options.ValidateName(csiName) == nil {
		return csiName
	}
	sum := sha256.Sum256([]byte(csiName))
	return "csi-" + hex.EncodeToString(sum[:20])
}

// invalid is an INVALID_ARGUMENT status.
func invalid(format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, format, a...)
}

// accessModes are the modes cryptvol gives: one node at a time (an open
// dm-crypt mapping and a mounted ext4 or xfs belong to one kernel), any
// number of workloads on it.
var accessModes = []csipb.VolumeCapability_AccessMode_Mode{
	csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
	csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
	csipb.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
	csipb.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER,
}

// checkCapability says why cryptvol cannot give c ("" when it can) and
// returns the filesystem it asks for ("" for the default).
func checkCapability(c *csipb.VolumeCapability) (fs string, why string) {
	if c == nil {
		return "", "a volume capability is empty"
	}
	if c.GetBlock() != nil {
		return "", "block access is not offered: a cryptvol volume is a filesystem (allowed: access type mount)"
	}
	mnt := c.GetMount()
	if mnt == nil {
		return "", "the capability has no access type (allowed: mount)"
	}
	if c.GetAccessMode() == nil || !slices.Contains(accessModes, c.GetAccessMode().GetMode()) {
		return "", fmt.Sprintf("access mode %s is not offered: a volume is open on one node at a time (allowed: %s)", c.GetAccessMode().GetMode(), modeNames())
	}
	switch fs = mnt.GetFsType(); fs {
	case "", options.FSExt4, options.FSXFS:
	default:
		return "", fmt.Sprintf("filesystem %q is not offered (allowed: %s, %s)", fs, options.FSExt4, options.FSXFS)
	}
	if len(mnt.GetMountFlags()) > 0 {
		return "", fmt.Sprintf("mount flags %q are not taken here (allowed: none; mount options are set when the volume is made, with parameter mountopts)", strings.Join(mnt.GetMountFlags(), ","))
	}
	return fs, ""
}

func modeNames() string {
	var n []string
	for _, m := range accessModes {
		n = append(n, m.String())
	}
	return strings.Join(n, ", ")
}

// checkCapabilities checks every capability of a request that needs at
// least one, and returns the one filesystem they ask for.
func checkCapabilities(cs []*csipb.VolumeCapability) (string, error) {
	if len(cs) == 0 {
		return "", invalid("volume capabilities are missing (at least one is required)")
	}
	fs := ""
	for _, c := range cs {
		f, why := checkCapability(c)
		if why != "" {
			return "", invalid("%s", why)
		}
		if f != "" && fs != "" && f != fs {
			return "", invalid("the capabilities ask for two filesystems, %s and %s", fs, f)
		}
		if f != "" {
			fs = f
		}
	}
	return fs, nil
}

// createOptions turns a CreateVolume's parameters (the volume options of
// `docker volume create --opt`) and filesystem into the options of
// volume.Manager.Create. Size comes from the capacity range only.
func createOptions(params map[string]string, fs string) (map[string]string, error) {
	opts := make(map[string]string, len(params)+2)
	for k, v := range params {
		if k == "size" {
			return nil, invalid("parameter size is not taken here: the size comes from the capacity range (docker volume create --required-bytes, --limit-bytes)")
		}
		opts[k] = v
	}
	if fs != "" {
		if p, ok := opts["fs"]; ok && p != fs {
			return nil, invalid("parameter fs=%s and the capability's filesystem %s differ", p, fs)
		}
		opts["fs"] = fs
	}
	return opts, nil
}

// nodeID is the node id of node on the group with UUID group: the
// controller publishes a volume only to a node of its own group.
func nodeID(node, group string) string { return node + "@" + group }

// nodeGroup returns the group of a node id ("" if it is not one of ours).
func nodeGroup(id string) string {
	i := strings.LastIndexByte(id, '@')
	if i <= 0 {
		return ""
	}
	return id[i+1:]
}

// topology is the accessible topology of every volume and node of group.
func topology(group string) *csipb.Topology {
	return &csipb.Topology{Segments: map[string]string{TopologyKey: group}}
}

// reachable says whether requirements (nil: none) allow group.
func reachable(req *csipb.TopologyRequirement, group string) bool {
	if req == nil || len(req.GetRequisite()) == 0 {
		return true
	}
	for _, t := range req.GetRequisite() {
		if v, ok := t.GetSegments()[TopologyKey]; ok && v == group {
			return true
		}
	}
	return false
}
