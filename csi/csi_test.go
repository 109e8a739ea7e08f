package csi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume"
	"github.com/cryptvol/cryptvol/volume/options"
)

// fakeManager keeps volumes in memory and records every call that makes or
// changes something, so that tests can say nothing was made.
type fakeManager struct {
	mu      sync.Mutex
	vols    map[string]uint64            // name -> size
	opts    map[string]map[string]string // name -> options of its create
	mounts  map[string]map[string]int    // name -> id -> count
	changes []string
	root    string
}

func newFakeManager(t *testing.T) *fakeManager {
	return &fakeManager{vols: map[string]uint64{}, opts: map[string]map[string]string{}, mounts: map[string]map[string]int{}, root: t.TempDir()}
}

func (f *fakeManager) Create(_ context.Context, name string, opts map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[name]; ok {
		if s, ok := opts["size"]; ok && s != strconv.FormatUint(f.vols[name], 10) {
			return fmt.Errorf("volume %q: %w", name, volume.ErrExists)
		}
		return nil
	}
	if opts["fs"] == "btrfs" {
		return fmt.Errorf("option fs: %w", volume.ErrInvalid)
	}
	size := uint64(1 << 30)
	if s, ok := opts["size"]; ok {
		size, _ = strconv.ParseUint(s, 10, 64)
	}
	f.vols[name], f.opts[name] = size, opts
	f.changes = append(f.changes, "create "+name)
	return nil
}

func (f *fakeManager) Remove(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := options.ValidateName(name); err != nil {
		return fmt.Errorf("%w: %w", volume.ErrInvalid, err) // as volume.Manager's Remove
	}
	if _, ok := f.vols[name]; !ok {
		return fmt.Errorf("volume %q: %w", name, volume.ErrNotFound)
	}
	if len(f.mounts[name]) > 0 {
		return fmt.Errorf("volume %q: %w", name, volume.ErrInUse)
	}
	delete(f.vols, name)
	f.changes = append(f.changes, "remove "+name)
	return nil
}

func (f *fakeManager) Get(_ context.Context, name string) (volume.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	size, ok := f.vols[name]
	if !ok {
		return volume.Volume{}, fmt.Errorf("volume %q: %w", name, volume.ErrNotFound)
	}
	return volume.Volume{Name: name, Status: map[string]any{volume.StatusSizeBytes: strconv.FormatUint(size, 10)}}, nil
}

func (f *fakeManager) List(ctx context.Context) ([]volume.Volume, error) {
	f.mu.Lock()
	var names []string
	for n := range f.vols {
		names = append(names, n)
	}
	f.mu.Unlock()
	sort.Strings(names)
	var vs []volume.Volume
	for _, n := range names {
		v, _ := f.Get(ctx, n)
		vs = append(vs, v)
	}
	return vs, nil
}

func (f *fakeManager) Mount(_ context.Context, name, id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[name]; !ok {
		return "", fmt.Errorf("volume %q: %w", name, volume.ErrNotFound)
	}
	if f.mounts[name] == nil {
		f.mounts[name] = map[string]int{}
	}
	f.mounts[name][id]++
	f.changes = append(f.changes, "mount "+name+" "+id)
	data := filepath.Join(f.root, name, "data")
	return data, os.MkdirAll(data, 0o755)
}

func (f *fakeManager) Unmount(_ context.Context, name, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mounts[name][id] == 0 {
		return nil
	}
	if f.mounts[name][id]--; f.mounts[name][id] == 0 {
		delete(f.mounts[name], id)
	}
	if len(f.mounts[name]) == 0 {
		delete(f.mounts, name)
	}
	f.changes = append(f.changes, "unmount "+name+" "+id)
	return nil
}

func (f *fakeManager) Holds(name, id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mounts[name][id] > 0
}

func (f *fakeManager) Path(_ context.Context, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.mounts[name]) == 0 {
		return "", nil
	}
	return filepath.Join(f.root, name, "data"), nil
}

func (f *fakeManager) Capacity(context.Context) (uint64, error) { return 5 << 30, nil }
func (f *fakeManager) Group(context.Context) (string, error)    { return "vg-uuid-1", nil }
func (f *fakeManager) RoundSize(_ context.Context, n uint64) (uint64, error) {
	const extent = 4 << 20
	return (n + extent - 1) / extent * extent, nil
}

// fakeBinds is a mount table of binds, and the directories sealed.
type fakeBinds struct {
	mu      sync.Mutex
	table   map[string]mount.At
	sealed  map[string]bool
	fail    error // the next Bind fails with it
	sealErr error // every Seal fails with it
}

func (b *fakeBinds) Seal(dir string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sealErr != nil {
		return b.sealErr
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !os.IsExist(err) {
		return err
	}
	if b.sealed == nil {
		b.sealed = map[string]bool{}
	}
	b.sealed[dir] = true
	return nil
}

func (b *fakeBinds) Unseal(dir string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.sealed, dir)
	return nil
}

func (b *fakeBinds) MountAt(target string) (mount.At, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.table[target], nil
}

func (b *fakeBinds) Bind(_ context.Context, dev, src, root, target string, ro bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.sealed[target] {
		return fmt.Errorf("bind over %s, which is not sealed", target)
	}
	if b.fail != nil {
		err := b.fail
		b.fail = nil
		return err
	}
	b.table[target] = mount.At{Device: dev, Root: root, ReadOnly: ro}
	return nil
}

func (b *fakeBinds) Unmount(_ context.Context, target string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.table, target)
	return nil
}

func newTestServer(t *testing.T) (*Server, *fakeManager, *fakeBinds) {
	t.Helper()
	m := newFakeManager(t)
	b := &fakeBinds{table: map[string]mount.At{}}
	s := New(nil, Options{Name: "cryptvol-csi", Version: "test", Node: "node1", Binds: b})
	s.Start(m)
	return s, m, b
}

func mountCap(mode csipb.VolumeCapability_AccessMode_Mode) *csipb.VolumeCapability {
	return &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: mode},
	}
}

var writer = mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)

func wantCode(t *testing.T, err error, code codes.Code, mentions string) {
	t.Helper()
	// The server's interceptor maps plain errors; calls made directly on
	// the Server in tests get the same mapping here.
	st, _ := status.FromError(toStatus(err))
	if st.Code() != code {
		t.Fatalf("code %s (%v), want %s", st.Code(), err, code)
	}
	if !strings.Contains(st.Message(), mentions) {
		t.Fatalf("message %q does not mention %q", st.Message(), mentions)
	}
}

func TestCreateRefusesBadInputBeforeMakingAnything(t *testing.T) {
	s, m, _ := newTestServer(t)
	ctx := context.Background()
	block := &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	multi := mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	nfs := mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	nfs.GetMount().FsType = "nfs"
	for _, c := range []struct {
		name     string
		req      *csipb.CreateVolumeRequest
		code     codes.Code
		mentions string
	}{
		{"no name", &csipb.CreateVolumeRequest{VolumeCapabilities: []*csipb.VolumeCapability{writer}}, codes.InvalidArgument, "name is missing"},
		{"no capability", &csipb.CreateVolumeRequest{Name: "v"}, codes.InvalidArgument, "capabilities are missing"},
		{"block", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{block}}, codes.InvalidArgument, "block access is not offered"},
		{"multi-node writer", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{multi}}, codes.InvalidArgument, "MULTI_NODE_MULTI_WRITER is not offered"},
		{"filesystem", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{nfs}}, codes.InvalidArgument, `filesystem "nfs"`},
		{"size parameter", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{writer}, Parameters: map[string]string{"size": "1G"}}, codes.InvalidArgument, "parameter size"},
		{"option the grammar refuses", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{writer}, Parameters: map[string]string{"fs": "btrfs"}}, codes.InvalidArgument, "option fs"},
		{"range upside down", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{writer}, CapacityRange: &csipb.CapacityRange{RequiredBytes: 2 << 30, LimitBytes: 1 << 30}}, codes.OutOfRange, "capacity range"},
		{"limit under an extent", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{writer}, CapacityRange: &csipb.CapacityRange{RequiredBytes: 1 << 20, LimitBytes: 2 << 20}}, codes.OutOfRange, "over the limit"},
		{"other topology", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{writer}, AccessibilityRequirements: &csipb.TopologyRequirement{Requisite: []*csipb.Topology{{Segments: map[string]string{TopologyKey: "other"}}}}}, codes.ResourceExhausted, "requisite topology"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.CreateVolume(ctx, c.req)
			wantCode(t, err, c.code, c.mentions)
			if len(m.changes) > 0 {
				t.Fatalf("made %v", m.changes)
			}
		})
	}
}

func TestCreateIsIdempotentAndComparesTheRange(t *testing.T) {
	s, m, _ := newTestServer(t)
	ctx := context.Background()
	req := &csipb.CreateVolumeRequest{Name: "data", VolumeCapabilities: []*csipb.VolumeCapability{writer},
		CapacityRange: &csipb.CapacityRange{RequiredBytes: 64 << 20, LimitBytes: 64 << 20}}
	r1, err := s.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if r1.GetVolume().GetVolumeId() != "data" || r2.GetVolume().GetVolumeId() != "data" || r2.GetVolume().GetCapacityBytes() != 64<<20 {
		t.Fatalf("volumes %v and %v", r1.GetVolume(), r2.GetVolume())
	}
	if got := r1.GetVolume().GetAccessibleTopology()[0].GetSegments()[TopologyKey]; got != "vg-uuid-1" {
		t.Fatalf("topology %q", got)
	}
	req.CapacityRange = &csipb.CapacityRange{RequiredBytes: 128 << 20, LimitBytes: 128 << 20}
	_, err = s.CreateVolume(ctx, req)
	wantCode(t, err, codes.AlreadyExists, "outside the capacity range")
	if len(m.changes) != 1 {
		t.Fatalf("changes %v, want one create", m.changes)
	}
	// A required size rounds up to whole extents.
	r, err := s.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: "odd", VolumeCapabilities: []*csipb.VolumeCapability{writer},
		CapacityRange: &csipb.CapacityRange{RequiredBytes: 5 << 20}})
	if err != nil || r.GetVolume().GetCapacityBytes() != 8<<20 {
		t.Fatalf("odd: %v, %v", r, err)
	}
}

func TestANameTheGrammarRefusesNamesOneVolume(t *testing.T) {
	s, m, _ := newTestServer(t)
	ctx := context.Background()
	long := strings.Repeat("x", 128)
	req := &csipb.CreateVolumeRequest{Name: long, VolumeCapabilities: []*csipb.VolumeCapability{writer}}
	r1, err := s.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	id := r1.GetVolume().GetVolumeId()
	if id != r2.GetVolume().GetVolumeId() || !strings.HasPrefix(id, "csi-") || len(id) != 44 {
		t.Fatalf("ids %q, %q", id, r2.GetVolume().GetVolumeId())
	}
	if len(m.vols) != 1 {
		t.Fatalf("volumes %v", m.vols)
	}
}

func TestDeleteIsIdempotentAndRefusesAVolumeInUse(t *testing.T) {
	s, m, _ := newTestServer(t)
	ctx := context.Background()
	if _, err := s.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no id: %v", err)
	}
	if _, err := s.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: "nosuch"}); err != nil {
		t.Fatalf("missing volume: %v", err)
	}
	// An id no volume can have (CSI allows 128 characters of any kind) is deleted already.
	if _, err := s.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: strings.Repeat("x/", 64)}); err != nil {
		t.Fatalf("an id the grammar refuses: %v", err)
	}
	m.vols["v"] = 1 << 30
	m.mounts["v"] = map[string]int{"x": 1}
	_, err := s.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: "v"})
	wantCode(t, err, codes.FailedPrecondition, "in use")
	if _, ok := m.vols["v"]; !ok {
		t.Fatal("a volume in use was removed")
	}
}

func TestControllerPublishChecksVolumeAndNode(t *testing.T) {
	s, m, _ := newTestServer(t)
	ctx := context.Background()
	m.vols["v"] = 1 << 30
	info, err := s.NodeGetInfo(ctx, &csipb.NodeGetInfoRequest{})
	if err != nil || info.GetNodeId() != "node1@vg-uuid-1" {
		t.Fatalf("node info %v, %v", info, err)
	}
	pub := func(vol, node string) error {
		_, err := s.ControllerPublishVolume(ctx, &csipb.ControllerPublishVolumeRequest{VolumeId: vol, NodeId: node, VolumeCapability: writer})
		return err
	}
	if err := pub("v", info.GetNodeId()); err != nil {
		t.Fatal(err)
	}
	wantCode(t, pub("nosuch", info.GetNodeId()), codes.NotFound, "no such volume")
	wantCode(t, pub("v", "some-fake-node-id"), codes.NotFound, "not a node of volume group")
	wantCode(t, pub("v", "node2@other-group"), codes.NotFound, "not a node of volume group")
	if err := pub("v", "node2@vg-uuid-1"); err != nil {
		t.Fatalf("a node of the same shared group: %v", err)
	}
}

func TestListVolumesPages(t *testing.T) {
	s, m, _ := newTestServer(t)
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		m.vols[n] = 1 << 30
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		r, err := s.ListVolumes(ctx, &csipb.ListVolumesRequest{MaxEntries: 2, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range r.GetEntries() {
			got = append(got, e.GetVolume().GetVolumeId())
		}
		if token = r.GetNextToken(); token == "" {
			break
		}
		if pages > 5 {
			t.Fatal("no end of pages")
		}
	}
	if strings.Join(got, "") != "abcde" {
		t.Fatalf("listed %v", got)
	}
	_, err := s.ListVolumes(ctx, &csipb.ListVolumesRequest{StartingToken: "invalid-token"})
	wantCode(t, err, codes.Aborted, "starting token")
}

func publish(s *Server, name, target string, ro bool) error {
	_, err := s.NodePublishVolume(context.Background(), &csipb.NodePublishVolumeRequest{VolumeId: name, TargetPath: target, VolumeCapability: writer, Readonly: ro})
	return err
}

func TestNodeLifecycle(t *testing.T) {
	s, m, b := newTestServer(t)
	ctx := context.Background()
	m.vols["v"] = 1 << 30
	target := filepath.Join(t.TempDir(), "published")
	for range 2 { // idempotent
		if err := publish(s, "v", target, false); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.mounts["v"][publishID(target)]; got != 1 {
		t.Fatalf("a repeated publish mounted %d times", got)
	}
	if want := (mount.At{Device: volume.Device("v"), Root: "/data"}); b.table[target] != want {
		t.Fatalf("binds %v", b.table)
	}
	// The same target read-only is a conflict, not a silent success.
	wantCode(t, publish(s, "v", target, true), codes.AlreadyExists, "read-only")

	for range 2 {
		if _, err := s.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: target}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target left after unpublish: %v", err)
	}
	if len(b.table) != 0 || len(m.mounts) != 0 || len(b.sealed) != 0 {
		t.Fatalf("left binds %v, mounts %v, sealed %v", b.table, m.mounts, b.sealed)
	}
}

func TestABindThatWentIsBoundAgainWithoutASecondMount(t *testing.T) {
	s, m, b := newTestServer(t)
	m.vols["v"] = 1 << 30
	target := filepath.Join(t.TempDir(), "published")
	if err := publish(s, "v", target, false); err != nil {
		t.Fatal(err)
	}
	delete(b.table, target) // unmounted from outside
	if err := publish(s, "v", target, false); err != nil {
		t.Fatal(err)
	}
	if got := m.mounts["v"][publishID(target)]; got != 1 || b.table[target].Device != volume.Device("v") {
		t.Fatalf("mounts %d, bind %v", got, b.table[target])
	}
	if _, err := s.NodeUnpublishVolume(context.Background(), &csipb.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if len(m.mounts) != 0 {
		t.Fatalf("the volume is still held after its one unpublish: %v", m.mounts)
	}
}

func TestPublishMakesNothingWhenTheTargetCannotBeSealed(t *testing.T) {
	s, m, b := newTestServer(t)
	m.vols["v"] = 1 << 30
	b.sealErr = errors.New("mark immutable: operation not permitted (the plugin needs CAP_LINUX_IMMUTABLE)")
	target := filepath.Join(t.TempDir(), "published")
	wantCode(t, publish(s, "v", target, false), codes.FailedPrecondition, "CAP_LINUX_IMMUTABLE")
	if len(m.changes) != 0 || len(b.table) != 0 {
		t.Fatalf("made %v, binds %v", m.changes, b.table)
	}
}

func TestPublishRefusesATargetThatIsSomethingElse(t *testing.T) {
	s, m, b := newTestServer(t)
	m.vols["v"] = 1 << 30
	target := filepath.Join(t.TempDir(), "published")
	b.table[target] = mount.At{Device: "/dev/sdb1", Root: "/"}
	wantCode(t, publish(s, "v", target, false), codes.AlreadyExists, "/dev/sdb1")
	if len(m.changes) != 0 || b.table[target].Device != "/dev/sdb1" {
		t.Fatalf("changes %v, binds %v", m.changes, b.table)
	}
}

func TestPublishOfAVolumeThatDoesNotExist(t *testing.T) {
	s, _, b := newTestServer(t)
	target := filepath.Join(t.TempDir(), "published")
	wantCode(t, publish(s, "nosuch", target, false), codes.NotFound, "no such volume")
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) || len(b.table) != 0 || len(b.sealed) != 0 {
		t.Fatalf("a refused publish left %v, %v, %v", err, b.table, b.sealed)
	}
}

func TestPublishUndoesTheMountWhenTheBindFails(t *testing.T) {
	s, m, b := newTestServer(t)
	m.vols["v"] = 1 << 30
	target := filepath.Join(t.TempDir(), "published")
	b.fail = errors.New("mount(2): EPERM")
	if err := publish(s, "v", target, false); err == nil {
		t.Fatal("publish succeeded")
	}
	if len(m.mounts) != 0 {
		t.Fatalf("mounts left: %v", m.mounts)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) || len(b.sealed) != 0 {
		t.Fatalf("target left: %v, sealed %v", err, b.sealed)
	}
}

func TestUnbindLeavesWhatIsNotTheVolume(t *testing.T) {
	s, m, b := newTestServer(t)
	m.vols["v"] = 1 << 30
	target := filepath.Join(t.TempDir(), "published")
	b.table[target] = mount.At{Device: "/dev/sdb1", Root: "/"}
	_, err := s.NodeUnpublishVolume(context.Background(), &csipb.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: target})
	wantCode(t, err, codes.FailedPrecondition, "left alone")
	if b.table[target].Device != "/dev/sdb1" {
		t.Fatal("another filesystem was unmounted")
	}
}

func TestVolumeStatsOnlyWhereTheVolumeIs(t *testing.T) {
	s, m, b := newTestServer(t)
	ctx := context.Background()
	m.vols["v"] = 1 << 30
	dir := t.TempDir()
	_, err := s.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "nosuch", VolumePath: dir})
	wantCode(t, err, codes.NotFound, "no such volume")
	_, err = s.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: dir})
	wantCode(t, err, codes.NotFound, "not published")
	_, err = s.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: "some/path"})
	wantCode(t, err, codes.NotFound, "not published")
	b.table[dir] = mount.At{Device: volume.Device("v"), Root: "/data"}
	r, err := s.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: dir})
	if err != nil || len(r.GetUsage()) != 2 || r.GetUsage()[0].GetTotal() <= 0 {
		t.Fatalf("stats %v, %v", r, err)
	}
}

func TestCallsWaitForStartUpAndFailWithItsReason(t *testing.T) {
	s := New(nil, Options{Binds: &fakeBinds{table: map[string]mount.At{}}})
	ctx := context.Background()
	p, err := s.Probe(ctx, &csipb.ProbeRequest{})
	if err != nil || p.GetReady().GetValue() {
		t.Fatalf("probe before start: %v, %v", p, err)
	}
	s.StartFailed(errors.New("volume group vg0 does not exist"))
	_, err = s.ListVolumes(ctx, &csipb.ListVolumesRequest{})
	wantCode(t, err, codes.Unavailable, "vg0 does not exist")
	s.Start(newFakeManager(t))
	if p, _ := s.Probe(ctx, &csipb.ProbeRequest{}); !p.GetReady().GetValue() {
		t.Fatal("not ready after start")
	}
}
