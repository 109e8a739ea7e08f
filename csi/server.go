package csi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cryptvol/cryptvol/internal/cost"
	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume"
)

// Manager is the part of *volume.Manager the CSI service uses.
type Manager interface {
	Create(ctx context.Context, name string, opts map[string]string) error
	Remove(ctx context.Context, name string) error
	Get(ctx context.Context, name string) (volume.Volume, error)
	List(ctx context.Context) ([]volume.Volume, error)
	Mount(ctx context.Context, name, id string) (string, error)
	Unmount(ctx context.Context, name, id string) error
	Path(ctx context.Context, name string) (string, error)
	Holds(name, id string) bool
	Capacity(ctx context.Context) (uint64, error)
	Group(ctx context.Context) (string, error)
	RoundSize(ctx context.Context, size uint64) (uint64, error)
}

var _ Manager = (*volume.Manager)(nil)

// Binds is the part of *mount.FS the node service uses.
type Binds interface {
	MountAt(target string) (mount.At, error)
	Bind(ctx context.Context, dev, src, root, target string, readOnly bool) error
	Unmount(ctx context.Context, target string) error
	Seal(dir string) error
	Unseal(dir string) error
}

var _ Binds = (*mount.FS)(nil)

// Deadlines, as package plugin's: long for what runs programs and KMIP
// requests, short for what reads.
const (
	DefaultLongTimeout  = 110 * time.Second
	DefaultShortTimeout = 50 * time.Second
)

// Options configures a Server.
type Options struct {
	Name    string // GetPluginInfo's name, e.g. "cryptvol-csi"
	Version string // GetPluginInfo's vendor_version
	Node    string // this host's name (CRYPTVOL_NODE): the node id's first part
	Binds   Binds  // nil: mount.New()
	// Observe, if set, is told of every call: its method, time, error
	// (the metrics).
	Observe      func(call string, took time.Duration, err error)
	LongTimeout  time.Duration
	ShortTimeout time.Duration
}

// Server implements CSI's Identity, Controller and Node services.
type Server struct {
	csipb.UnimplementedIdentityServer
	csipb.UnimplementedControllerServer
	csipb.UnimplementedNodeServer

	o   Options
	log logrus.FieldLogger

	startMu  sync.Mutex
	m        Manager
	startErr error
	ready    chan struct{}

	locksMu sync.Mutex
	locks   map[string]*volLock // node-side binds, per volume
}

type volLock struct {
	mu   sync.Mutex
	refs int
}

// New returns a server that answers once Start gives it its manager.
func New(log logrus.FieldLogger, o Options) *Server {
	if log == nil {
		log = logrus.StandardLogger()
	}
	if o.Binds == nil {
		o.Binds = mount.New()
	}
	if o.LongTimeout <= 0 {
		o.LongTimeout = DefaultLongTimeout
	}
	if o.ShortTimeout <= 0 {
		o.ShortTimeout = DefaultShortTimeout
	}
	return &Server{o: o, log: log, ready: make(chan struct{}), locks: map[string]*volLock{}}
}

// Start hands the server its manager; waiting calls proceed.
func (s *Server) Start(m Manager) {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.m == nil {
		s.m, s.startErr = m, nil
		close(s.ready)
	}
}

// StartFailed records why start-up has not succeeded yet: calls fail at
// once with it (UNAVAILABLE) instead of waiting.
func (s *Server) StartFailed(err error) {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.m == nil {
		s.startErr = err
	}
}

// manager waits for the manager within ctx.
func (s *Server) manager(ctx context.Context) (Manager, error) {
	s.startMu.Lock()
	m, serr := s.m, s.startErr
	s.startMu.Unlock()
	if m != nil {
		return m, nil
	}
	if serr != nil {
		return nil, status.Errorf(codes.Unavailable, "cryptvol is not ready (start-up is retried): %v", serr)
	}
	select {
	case <-s.ready:
		return s.manager(ctx)
	case <-ctx.Done():
		return nil, status.Errorf(codes.Unavailable, "cryptvol is still starting (reconciling volumes): %v", ctx.Err())
	}
}

// managerAndGroup waits for the manager and reads its volume group's UUID,
// which node ids and topology name.
func (s *Server) managerAndGroup(ctx context.Context) (Manager, string, error) {
	m, err := s.manager(ctx)
	if err != nil {
		return nil, "", err
	}
	group, err := m.Group(ctx)
	return m, group, err
}

// Register adds the three services to g.
func (s *Server) Register(g *grpc.Server) {
	csipb.RegisterIdentityServer(g, s)
	csipb.RegisterControllerServer(g, s)
	csipb.RegisterNodeServer(g, s)
}

// Serve serves the CSI services on l until ctx ends, then stops taking
// calls and waits for those in flight.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	g := grpc.NewServer(grpc.UnaryInterceptor(s.intercept))
	s.Register(g)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			g.GracefulStop()
		case <-done:
		}
	}()
	err := g.Serve(l)
	close(done)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// long says which calls get the long deadline: those that run programs or
// reach KMIP.
var long = map[string]bool{
	"CreateVolume": true, "DeleteVolume": true,
	"NodeStageVolume": true, "NodeUnstageVolume": true,
	"NodePublishVolume": true, "NodeUnpublishVolume": true,
}

// intercept gives each call its deadline, turns a panic into INTERNAL (the
// process lives on; package volume undid what the operation made), maps
// plain errors to codes, logs and observes the call.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	timeout := s.o.ShortTimeout
	if long[method] {
		timeout = s.o.LongTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx, tally := cost.With(ctx)
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			s.log.WithFields(logrus.Fields{"op": "csi." + method, "panic": fmt.Sprint(r), "stack": string(debug.Stack())}).Error("request panicked")
			resp, err = nil, status.Errorf(codes.Internal, "internal error: %v", r)
		}
		err = toStatus(err)
		took := time.Since(start)
		if s.o.Observe != nil {
			s.o.Observe(method, took, err)
		}
		// The fields of package plugin's request lines: `make bench`
		// reads both (scripts/bench/calls.py).
		l := s.log.WithFields(logrus.Fields{"op": "csi." + method, "duration": took.Round(time.Microsecond),
			"programs": tally.Programs(), "kmip_round_trips": tally.KMIPRoundTrips()})
		if by := tally.ByProgram(); by != "" {
			l = l.WithField("by_program", by)
		}
		if v, ok := req.(interface{ GetVolumeId() string }); ok && v.GetVolumeId() != "" {
			l = l.WithField("volume", v.GetVolumeId())
		}
		if err != nil {
			l.WithError(err).Warn("request failed")
		} else {
			l.Debug("request done")
		}
	}()
	return h(ctx, req)
}

// toStatus maps package volume's errors to the codes the CSI spec gives
// them; an error that already is a status is kept.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, volume.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, volume.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, volume.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, volume.ErrNoSpace):
		code = codes.ResourceExhausted
	case errors.Is(err, volume.ErrInUse), errors.Is(err, volume.ErrInUseElsewhere):
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// lock serializes the node's binds of one volume.
func (s *Server) lock(name string) func() {
	s.locksMu.Lock()
	l := s.locks[name]
	if l == nil {
		l = &volLock{}
		s.locks[name] = l
	}
	l.refs++
	s.locksMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.locksMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, name)
		}
		s.locksMu.Unlock()
	}
}
