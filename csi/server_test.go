package csi

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cryptvol/cryptvol/mount"
)

// panicky panics in Remove, as a bug deep in an operation would.
type panicky struct{ *fakeManager }

func (panicky) Remove(context.Context, string) error { panic("bug") }

// serve runs s over gRPC in memory and returns a client connection.
func serve(t *testing.T, s *Server) *grpc.ClientConn {
	t.Helper()
	l := bufconn.Listen(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	conn, err := grpc.NewClient("passthrough:///csi", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn
}

func TestOverGRPCErrorsAreCodesAPanicIsInternalAndEachCallIsLogged(t *testing.T) {
	var logs bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logs)
	log.SetLevel(logrus.DebugLevel)
	var observed []string
	s := New(log, Options{Name: "cryptvol-csi", Binds: &fakeBinds{table: map[string]mount.At{}},
		Observe: func(call string, _ time.Duration, err error) {
			observed = append(observed, call+":"+status.Code(err).String())
		}})
	m := newFakeManager(t)
	m.vols["v"] = 1 << 30
	s.Start(panicky{m})
	conn := serve(t, s)
	ctl := csipb.NewControllerClient(conn)
	ctx := context.Background()

	_, err := ctl.ControllerPublishVolume(ctx, &csipb.ControllerPublishVolumeRequest{VolumeId: "nosuch", NodeId: "n@vg-uuid-1", VolumeCapability: writer})
	if status.Code(err) != codes.NotFound {
		t.Errorf("a missing volume over gRPC: %v, want NOT_FOUND", err)
	}
	_, err = ctl.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: "v"})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "bug") {
		t.Errorf("a panic: %v, want INTERNAL naming it", err)
	}
	// The server lives on.
	info, err := csipb.NewIdentityClient(conn).GetPluginInfo(ctx, &csipb.GetPluginInfoRequest{})
	if err != nil || info.GetName() != "cryptvol-csi" {
		t.Fatalf("after the panic: %v, %v", info, err)
	}
	if got := strings.Join(observed, " "); got != "ControllerPublishVolume:NotFound DeleteVolume:Internal GetPluginInfo:OK" {
		t.Errorf("observed %s", got)
	}
	out := logs.String()
	for _, want := range []string{`msg="request failed"`, `op=csi.ControllerPublishVolume`, `volume=nosuch`, `msg="request panicked"`,
		`msg="request done"`, `op=csi.GetPluginInfo`, `kmip_round_trips=0`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}
