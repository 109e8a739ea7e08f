package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume"
	"github.com/cryptvol/cryptvol/volume/options"
)

// dataRoot is the directory of a volume's filesystem that every bind the
// node makes shows: its data directory (mount/layout.go), never its root.
const dataRoot = "/" + mount.DataDir

// publishID is the mount ID a target path holds the volume under
// (volume.Manager counts Mounts per ID): one per target, the same at every
// retry.
func publishID(target string) string {
	sum := sha256.Sum256([]byte(target))
	return "csi-" + hex.EncodeToString(sum[:8])
}

// NodeGetInfo: the node id names this host and its volume group, and the
// topology is the group's.
func (s *Server) NodeGetInfo(ctx context.Context, _ *csipb.NodeGetInfoRequest) (*csipb.NodeGetInfoResponse, error) {
	_, group, err := s.managerAndGroup(ctx)
	if err != nil {
		return nil, err
	}
	return &csipb.NodeGetInfoResponse{NodeId: nodeID(s.o.Node, group), AccessibleTopology: topology(group)}, nil
}

// NodeGetCapabilities: volume statistics. No stage and unstage: a publish
// brings the volume up and its unpublish takes it down. Swarm's agent never
// sends NodeUnstageVolume for a volume it staged while it runs (swarmkit
// agent/csi/plugin/plugin.go, NodeUnstageVolume, as vendored in moby
// v28.5.2: it returns early for a volume in its map; the fix,
// https://github.com/moby/swarmkit/pull/3178, is not merged), which would
// leave a staged volume open, and in a shared group held, on a node it
// left. Offer STAGE_UNSTAGE_VOLUME again once that fix is in the Docker
// releases cryptvol supports.
func (s *Server) NodeGetCapabilities(context.Context, *csipb.NodeGetCapabilitiesRequest) (*csipb.NodeGetCapabilitiesResponse, error) {
	var caps []*csipb.NodeServiceCapability
	for _, c := range []csipb.NodeServiceCapability_RPC_Type{
		csipb.NodeServiceCapability_RPC_GET_VOLUME_STATS,
	} {
		caps = append(caps, &csipb.NodeServiceCapability{Type: &csipb.NodeServiceCapability_Rpc{
			Rpc: &csipb.NodeServiceCapability_RPC{Type: c}}})
	}
	return &csipb.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// isVolume says whether at is a bind of name's data directory.
func isVolume(at mount.At, name string) bool {
	return at.Device == volume.Device(name) && at.Root == dataRoot
}

// checkPath refuses a path that is not clean and absolute.
func checkPath(kind, p string) error {
	if p == "" {
		return invalid("the %s is missing", kind)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		return invalid("the %s %q is not a clean absolute path other than /", kind, p)
	}
	return nil
}

// unbind unmounts the volume's bind at path; nothing mounted there is
// success, anything else mounted there is refused, never unmounted.
func (s *Server) unbind(ctx context.Context, name, path string) error {
	at, err := s.o.Binds.MountAt(path)
	if err != nil {
		return err
	}
	switch {
	case at.Device == "":
		return nil
	case !isVolume(at, name):
		return status.Errorf(codes.FailedPrecondition, "%s has %s (%s) mounted, not volume %q; left alone", path, at.Device, at.Root, name)
	}
	return s.o.Binds.Unmount(ctx, path)
}

// NodePublishVolume brings the volume up on this node (volume.Manager.Mount
// under the target's mount ID: in a shared group its exclusive activation,
// then the KMIP Get, the open and the mount) and binds its data directory
// at the target path, read-only if asked. The target is created here,
// sealed (an empty directory nothing can write to) before the bind covers
// it, and removed by the unpublish: uncovered, it takes no data.
func (s *Server) NodePublishVolume(ctx context.Context, req *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	name, target := req.GetVolumeId(), req.GetTargetPath()
	if name == "" {
		return nil, invalid("the volume id is missing")
	}
	if err := checkPath("target path", target); err != nil {
		return nil, err
	}
	if _, why := checkCapability(req.GetVolumeCapability()); why != "" {
		return nil, invalid("%s", why)
	}
	ro := req.GetReadonly() || req.GetVolumeCapability().GetAccessMode().GetMode() == csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	m, err := s.manager(ctx)
	if err != nil {
		return nil, err
	}
	defer s.lock(name)()
	at, err := s.o.Binds.MountAt(target)
	if err != nil {
		return nil, err
	}
	switch {
	case isVolume(at, name) && at.ReadOnly == ro:
		return &csipb.NodePublishVolumeResponse{}, nil
	case isVolume(at, name):
		return nil, status.Errorf(codes.AlreadyExists, "volume %q is published at %s with read-only %t, asked %t", name, target, at.ReadOnly, ro)
	case at.Device != "":
		return nil, status.Errorf(codes.AlreadyExists, "target path %s has %s mounted, not volume %q", target, at.Device, name)
	}
	// The target is sealed before anything else is made: what the bind
	// covers is an empty directory nothing can write to, so that a target
	// whose bind went while the orchestrator may think the volume is
	// published there (unmounted from outside, or gone with a reboot)
	// takes no data (mount/seal.go; TestLabCSIVolumeLife unmounts one).
	if err := s.o.Binds.Seal(target); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %q: target %s: %v", name, target, err)
	}
	id := publishID(target)
	// A target already holding the volume whose bind went (unmounted from
	// outside) is bound again, with no second Mount for one unpublish.
	var data string
	if m.Holds(name, id) {
		data, err = m.Path(ctx, name)
	}
	if data == "" && err == nil {
		data, err = m.Mount(ctx, name, id)
	}
	if err == nil {
		if err = s.o.Binds.Bind(ctx, volume.Device(name), data, dataRoot, target, ro); err != nil {
			cctx, cancel := command.CleanupContext(ctx)
			defer cancel()
			if uerr := m.Unmount(cctx, name, id); uerr != nil {
				err = errors.Join(err, fmt.Errorf("undoing the mount: %w", uerr))
			}
			err = fmt.Errorf("volume %q: publishing at %s: %w", name, target, err)
		}
	}
	if err != nil {
		// The sealed target goes: nothing was bound there.
		if uerr := s.o.Binds.Unseal(target); uerr == nil {
			_ = os.Remove(target)
		}
		return nil, err
	}
	return &csipb.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume unbinds the target path, removes it and releases the
// target's mount: the last release closes the volume and, in a shared
// group, deactivates its LV, so that another node can take it.
func (s *Server) NodeUnpublishVolume(ctx context.Context, req *csipb.NodeUnpublishVolumeRequest) (*csipb.NodeUnpublishVolumeResponse, error) {
	name, target := req.GetVolumeId(), req.GetTargetPath()
	if name == "" {
		return nil, invalid("the volume id is missing")
	}
	if err := checkPath("target path", target); err != nil {
		return nil, err
	}
	if err := options.ValidateName(name); err != nil {
		return nil, status.Errorf(codes.NotFound, "%v", err)
	}
	m, err := s.manager(ctx)
	if err != nil {
		return nil, err
	}
	defer s.lock(name)()
	if err := s.unbind(ctx, name, target); err != nil {
		return nil, err
	}
	if err := s.o.Binds.Unseal(target); err != nil {
		return nil, fmt.Errorf("volume %q: unpublished, but %w", name, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("volume %q: unpublished, but removing %s: %w", name, target, err)
	}
	if err := m.Unmount(ctx, name, publishID(target)); err != nil {
		return nil, err
	}
	return &csipb.NodeUnpublishVolumeResponse{}, nil
}

// NodeGetVolumeStats reports the filesystem's use as seen at a path where
// the volume is published.
func (s *Server) NodeGetVolumeStats(ctx context.Context, req *csipb.NodeGetVolumeStatsRequest) (*csipb.NodeGetVolumeStatsResponse, error) {
	name, path := req.GetVolumeId(), req.GetVolumePath()
	if name == "" {
		return nil, invalid("the volume id is missing")
	}
	if path == "" {
		return nil, invalid("the volume path is missing")
	}
	m, err := s.manager(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := m.Get(ctx, name); err != nil {
		return nil, err
	}
	// A path that is not clean and absolute is no path the volume was
	// published at: NOT_FOUND, as the spec has it.
	var at mount.At
	if checkPath("volume path", path) == nil {
		if at, err = s.o.Binds.MountAt(path); err != nil {
			return nil, err
		}
	}
	if !isVolume(at, name) {
		return nil, status.Errorf(codes.NotFound, "volume %q is not published at %s", name, path)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return nil, fmt.Errorf("volume %q: statfs %s: %w", name, path, err)
	}
	bs := uint64(st.Bsize)
	return &csipb.NodeGetVolumeStatsResponse{Usage: []*csipb.VolumeUsage{
		{Unit: csipb.VolumeUsage_BYTES, Total: int64(st.Blocks * bs), Available: int64(st.Bavail * bs), Used: int64((st.Blocks - st.Bfree) * bs)},
		{Unit: csipb.VolumeUsage_INODES, Total: int64(st.Files), Available: int64(st.Ffree), Used: int64(st.Files - st.Ffree)},
	}}, nil
}
