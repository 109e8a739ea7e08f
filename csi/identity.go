package csi

import (
	"context"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// GetPluginInfo names the plugin and its build.
func (s *Server) GetPluginInfo(context.Context, *csipb.GetPluginInfoRequest) (*csipb.GetPluginInfoResponse, error) {
	return &csipb.GetPluginInfoResponse{Name: s.o.Name, VendorVersion: s.o.Version}, nil
}

// GetPluginCapabilities: a controller service, and volumes constrained by
// topology (a volume is reachable from the hosts of its volume group).
func (s *Server) GetPluginCapabilities(context.Context, *csipb.GetPluginCapabilitiesRequest) (*csipb.GetPluginCapabilitiesResponse, error) {
	var caps []*csipb.PluginCapability
	for _, c := range []csipb.PluginCapability_Service_Type{
		csipb.PluginCapability_Service_CONTROLLER_SERVICE,
		csipb.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS,
	} {
		caps = append(caps, &csipb.PluginCapability{Type: &csipb.PluginCapability_Service_{
			Service: &csipb.PluginCapability_Service{Type: c}}})
	}
	return &csipb.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

// Probe answers ready once start-up reconciliation is done; before, it
// says not ready rather than failing, as the spec asks of a plugin that is
// still starting.
func (s *Server) Probe(context.Context, *csipb.ProbeRequest) (*csipb.ProbeResponse, error) {
	s.startMu.Lock()
	ready := s.m != nil
	s.startMu.Unlock()
	return &csipb.ProbeResponse{Ready: wrapperspb.Bool(ready)}, nil
}
