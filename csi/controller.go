package csi

import (
	"context"
	"errors"
	"strconv"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cryptvol/cryptvol/volume"
)

// ControllerGetCapabilities: create and delete, publish (the node check),
// list, capacity. Snapshots, clones and expansion are offered by the admin
// command line, not here: Docker's cluster volumes support neither (moby
// docs/cluster_volumes.md@v26.1.5, "Unsupported features").
func (s *Server) ControllerGetCapabilities(context.Context, *csipb.ControllerGetCapabilitiesRequest) (*csipb.ControllerGetCapabilitiesResponse, error) {
	var caps []*csipb.ControllerServiceCapability
	for _, c := range []csipb.ControllerServiceCapability_RPC_Type{
		csipb.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csipb.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csipb.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csipb.ControllerServiceCapability_RPC_GET_CAPACITY,
	} {
		caps = append(caps, &csipb.ControllerServiceCapability{Type: &csipb.ControllerServiceCapability_Rpc{
			Rpc: &csipb.ControllerServiceCapability_RPC{Type: c}}})
	}
	return &csipb.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// CreateVolume makes the volume (or finds it made by an earlier call of the
// same name: CSI retries a create whose answer it lost). Everything is
// checked before anything is made.
func (s *Server) CreateVolume(ctx context.Context, req *csipb.CreateVolumeRequest) (*csipb.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("the volume name is missing")
	}
	if req.GetVolumeContentSource() != nil {
		return nil, invalid("a volume content source (snapshot or clone) is not offered here (allowed: none; clone with `docker volume create --opt from=VOLUME` on the VolumeDriver)")
	}
	fs, err := checkCapabilities(req.GetVolumeCapabilities())
	if err != nil {
		return nil, err
	}
	opts, err := createOptions(req.GetParameters(), fs)
	if err != nil {
		return nil, err
	}
	m, group, err := s.managerAndGroup(ctx)
	if err != nil {
		return nil, err
	}
	if !reachable(req.GetAccessibilityRequirements(), group) {
		return nil, status.Errorf(codes.ResourceExhausted, "the requisite topology does not include this node's volume group (%s=%s)", TopologyKey, group)
	}
	required, limit := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	if required < 0 || limit < 0 || (limit > 0 && required > limit) {
		return nil, status.Errorf(codes.OutOfRange, "capacity range: required %d bytes, limit %d bytes (allowed: 0 <= required <= limit, 0 for none)", required, limit)
	}
	size := uint64(required)
	if size == 0 {
		size = uint64(limit) // the most allowed; 0: the default size
	}
	if size > 0 {
		got, err := m.RoundSize(ctx, size)
		if err != nil {
			return nil, err
		}
		if limit > 0 && got > uint64(limit) {
			return nil, status.Errorf(codes.OutOfRange, "capacity range: %d bytes round up to %d, over the limit of %d (volumes are whole extents of the volume group)", size, got, limit)
		}
		opts["size"] = strconv.FormatUint(got, 10)
	}
	name := volumeName(req.GetName())
	if v, err := m.Get(ctx, name); err == nil {
		// The size is compared here to answer ALREADY_EXISTS with the
		// range; Create compares the other options.
		have := sizeOf(v)
		if (required > 0 && have < uint64(required)) || (limit > 0 && have > uint64(limit)) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %q exists with %d bytes, outside the capacity range asked (%d to %d)", name, have, required, limit)
		}
		delete(opts, "size")
	} else if !errors.Is(err, volume.ErrNotFound) {
		return nil, err
	}
	if err := m.Create(ctx, name, opts); err != nil {
		return nil, err
	}
	v, err := m.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return &csipb.CreateVolumeResponse{Volume: &csipb.Volume{
		VolumeId:           name,
		CapacityBytes:      int64(sizeOf(v)),
		AccessibleTopology: []*csipb.Topology{topology(group)},
	}}, nil
}

// sizeOf is the volume's size in bytes (its LV's).
func sizeOf(v volume.Volume) uint64 {
	s, _ := v.Status[volume.StatusSizeBytes].(string)
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// DeleteVolume removes the volume: its header, LV and KMIP key (or, under
// CRYPTVOL_REMOVE_GRACE, into the trash). A volume that does not exist is
// deleted already.
func (s *Server) DeleteVolume(ctx context.Context, req *csipb.DeleteVolumeRequest) (*csipb.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("the volume id is missing")
	}
	m, err := s.manager(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.Remove(ctx, req.GetVolumeId()); err != nil && !errors.Is(err, volume.ErrNotFound) && !errors.Is(err, volume.ErrInvalid) {
		return nil, err
	}
	return &csipb.DeleteVolumeResponse{}, nil
}

// ControllerPublishVolume checks that the volume exists and the node is
// one of its group's; the node itself takes the volume at publish (in a
// shared group, lvmlockd's exclusive activation), so there is nothing to
// record here and a publish is idempotent by construction.
func (s *Server) ControllerPublishVolume(ctx context.Context, req *csipb.ControllerPublishVolumeRequest) (*csipb.ControllerPublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("the volume id is missing")
	}
	if req.GetNodeId() == "" {
		return nil, invalid("the node id is missing")
	}
	if _, why := checkCapability(req.GetVolumeCapability()); why != "" {
		return nil, invalid("%s", why)
	}
	m, err := s.manager(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := m.Get(ctx, req.GetVolumeId()); err != nil {
		return nil, err
	}
	if err := s.checkNode(ctx, m, req.GetNodeId()); err != nil {
		return nil, err
	}
	return &csipb.ControllerPublishVolumeResponse{}, nil
}

// ControllerUnpublishVolume: the node gave the volume up at unstage.
func (s *Server) ControllerUnpublishVolume(ctx context.Context, req *csipb.ControllerUnpublishVolumeRequest) (*csipb.ControllerUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("the volume id is missing")
	}
	return &csipb.ControllerUnpublishVolumeResponse{}, nil
}

// checkNode answers NOT_FOUND for a node id that is not of this group.
func (s *Server) checkNode(ctx context.Context, m Manager, id string) error {
	group, err := m.Group(ctx)
	if err != nil {
		return err
	}
	if g := nodeGroup(id); g != group {
		return status.Errorf(codes.NotFound, "node %q is not a node of volume group %s (node ids are NODE@VG_UUID, from NodeGetInfo)", id, group)
	}
	return nil
}

// ValidateVolumeCapabilities confirms the capabilities cryptvol gives.
func (s *Server) ValidateVolumeCapabilities(ctx context.Context, req *csipb.ValidateVolumeCapabilitiesRequest) (*csipb.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("the volume id is missing")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, invalid("volume capabilities are missing (at least one is required)")
	}
	m, err := s.manager(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := m.Get(ctx, req.GetVolumeId()); err != nil {
		return nil, err
	}
	if _, err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csipb.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	return &csipb.ValidateVolumeCapabilitiesResponse{Confirmed: &csipb.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// ListVolumes lists the volumes by name; a starting token is the index of
// the first entry to return, from the previous page's next_token.
func (s *Server) ListVolumes(ctx context.Context, req *csipb.ListVolumesRequest) (*csipb.ListVolumesResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, invalid("max_entries %d is negative", req.GetMaxEntries())
	}
	m, err := s.manager(ctx)
	if err != nil {
		return nil, err
	}
	vols, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	start := 0
	if t := req.GetStartingToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > len(vols) {
			return nil, status.Errorf(codes.Aborted, "starting token %q is not one this plugin gave (list again from the start)", t)
		}
		start = n
	}
	end := len(vols)
	if max := int(req.GetMaxEntries()); max > 0 && start+max < end {
		end = start + max
	}
	group, err := m.Group(ctx)
	if err != nil {
		return nil, err
	}
	resp := &csipb.ListVolumesResponse{}
	for _, v := range vols[start:end] {
		resp.Entries = append(resp.Entries, &csipb.ListVolumesResponse_Entry{Volume: &csipb.Volume{
			VolumeId:           v.Name,
			CapacityBytes:      int64(sizeOf(v)),
			AccessibleTopology: []*csipb.Topology{topology(group)},
		}})
	}
	if end < len(vols) {
		resp.NextToken = strconv.Itoa(end)
	}
	return resp, nil
}

// GetCapacity is the largest volume a create could get now (0 for a
// topology that is not this group's).
func (s *Server) GetCapacity(ctx context.Context, req *csipb.GetCapacityRequest) (*csipb.GetCapacityResponse, error) {
	for _, c := range req.GetVolumeCapabilities() {
		if _, why := checkCapability(c); why != "" {
			return &csipb.GetCapacityResponse{}, nil
		}
	}
	m, err := s.manager(ctx)
	if err != nil {
		return nil, err
	}
	if t := req.GetAccessibleTopology(); t != nil {
		group, err := m.Group(ctx)
		if err != nil {
			return nil, err
		}
		if t.GetSegments()[TopologyKey] != group {
			return &csipb.GetCapacityResponse{}, nil
		}
	}
	n, err := m.Capacity(ctx)
	if err != nil {
		return nil, err
	}
	return &csipb.GetCapacityResponse{AvailableCapacity: int64(n)}, nil
}
