// Package plugin serves Docker's VolumeDriver protocol on top of the volume
// lifecycle. It owns only the translation: requests in, each with its own
// deadline; results and errors out, as text the docker CLI shows verbatim.
// All behaviour lives in package volume.
//
// Deadlines: docker waits 2 minutes for Create, Remove, Mount and Unmount
// and 1 minute for Get, List and Path (volume/drivers/proxy.go in moby), or
// less when `docker plugin enable --timeout` caps it (30 s by default). The
// defaults here are 10 seconds shorter than docker's own, so that an
// operation gives up, undoes its steps and answers with a readable error
// before docker stops listening; a Mount that finishes after a shorter cap
// is taken back (mount.go).
//
// The same socket serves the administrators' requests of `cryptvol rotate`
// and `cryptvol reencrypt` (admin.go), through the same deadlines and
// in-flight accounting.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	dv "github.com/docker/go-plugins-helpers/volume"
	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/cryptvol/cryptvol/internal/cost"
	"github.com/cryptvol/cryptvol/volume"

	"github.com/cryptvol/cryptvol/internal/failpoint"
)

// Manager is the part of *volume.Manager the driver uses.
type Manager interface {
	Create(ctx context.Context, name string, opts map[string]string) error
	Remove(ctx context.Context, name string) error
	Mount(ctx context.Context, name, id string) (string, error)
	Unmount(ctx context.Context, name, id string) error
	Path(ctx context.Context, name string) (string, error)
	Get(ctx context.Context, name string) (volume.Volume, error)
	List(ctx context.Context) ([]volume.Volume, error)
}

var _ Manager = (*volume.Manager)(nil)

// Default deadlines, just under docker's own.
const (
	DefaultLongTimeout  = 110 * time.Second
	DefaultShortTimeout = 50 * time.Second
)

// Options tunes the driver. Zero values take the defaults.
type Options struct {
	LongTimeout  time.Duration // Create, Remove, Mount, Unmount
	ShortTimeout time.Duration // Get, List, Path
	// ReencryptTimeout bounds cryptvol reencrypt (admin.go).
	ReencryptTimeout time.Duration
	// Observe, if set, is told of every request: its call, time, error
	// (the metrics).
	Observe func(call string, took time.Duration, err error)
	// Status, if set, adds plugin-wide facts (KMIP reachability) to every
	// volume's Status.
	Status func() map[string]any
	// Global: the volumes are on a volume group shared by several hosts,
	// so each name means one volume across them; Capabilities says scope
	// "global" (otherwise "local"), which `docker volume inspect` shows.
	Global bool
}

// Driver implements dv.Driver.
type Driver struct {
	log       logrus.FieldLogger
	long      time.Duration
	short     time.Duration
	reencrypt time.Duration
	status    func() map[string]any
	observe   func(call string, took time.Duration, err error)
	scope     string

	// The manager arrives once start-up reconciliation is done (start.go).
	startMu  sync.Mutex
	m        Manager
	ready    chan struct{} // closed when m is set
	startErr error         // the latest start-up failure while m is unset
	refused  bool          // startErr is final: StartRefused

	// Requests in flight, for a clean shutdown. Not a WaitGroup: requests
	// may start while Wait is waiting, which a WaitGroup forbids.
	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed when inflight drops to 0
}

var _ dv.Driver = (*Driver)(nil)

// New returns a driver serving m.
func New(m Manager, log logrus.FieldLogger, o Options) *Driver {
	d := NewStarting(log, o)
	d.Start(m)
	return d
}

// Handler returns the go-plugins-helpers HTTP handler for d, with the
// administrators' paths (admin.go).
func (d *Driver) Handler() *dv.Handler {
	h := dv.NewHandler(d)
	d.serveMount(h)
	d.serveAdmin(h)
	d.serveTransfer(h)
	return h
}

// Wait blocks until no request is in flight or ctx ends. Called on shutdown
// after the listener is closed, so that an operation is not cut off between
// two of its steps.
func (d *Driver) Wait(ctx context.Context) error {
	d.mu.Lock()
	if d.inflight == 0 {
		d.mu.Unlock()
		return nil
	}
	idle := d.idle
	d.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Driver) begin() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inflight == 0 {
		d.idle = make(chan struct{})
	}
	d.inflight++
}

func (d *Driver) end() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight--
	if d.inflight == 0 {
		close(d.idle)
	}
}

// call runs one request with its deadline and turns its error into the text
// docker will show.
func (d *Driver) call(op, name string, timeout time.Duration, fn func(ctx context.Context, m Manager) error) error {
	d.begin()
	defer d.end()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx, tally := cost.With(ctx)
	start := time.Now()
	m, err := d.manager(ctx)
	if err == nil {
		err = d.guard(op, func() error { return fn(ctx, m) })
	}
	// The work is done and docker has not heard: the point after the
	// last step.
	failpoint.Here("answer")
	// What the request cost besides time: `make bench` reads these (debug)
	// lines to break a docker run down by call. Microseconds: a Get
	// takes a few milliseconds, and rounded to the millisecond it could
	// not be told apart from its goal of under 5 ms.
	log := d.log.WithFields(logrus.Fields{"op": op, "duration": time.Since(start).Round(time.Microsecond),
		"programs": tally.Programs(), "kmip_round_trips": tally.KMIPRoundTrips()})
	if by := tally.ByProgram(); by != "" {
		log = log.WithField("by_program", by)
	}
	if name != "" {
		log = log.WithField("volume", name)
	}
	if d.observe != nil {
		d.observe(op, time.Since(start), err)
	}
	if err == nil {
		log.Debug("request done")
		return nil
	}
	// One line, so the docker CLI prints lvm and cryptsetup stderr readably.
	msg := command.OneLine(err.Error())
	if msg == "" {
		msg = "unknown error"
	}
	// Only when the request's own deadline passed: a KMIP or command
	// timeout inside it also wraps DeadlineExceeded and says so itself.
	if ctx.Err() != nil {
		msg = fmt.Sprintf("%s: gave up after %s: %s", op, timeout, msg)
	}
	log.WithError(err).Error("request failed")
	return errors.New(msg)
}

// Create implements dv.Driver.
func (d *Driver) Create(r *dv.CreateRequest) error {
	return d.call("create", r.Name, d.long, func(ctx context.Context, m Manager) error {
		return m.Create(ctx, r.Name, r.Options)
	})
}

// Remove implements dv.Driver.
func (d *Driver) Remove(r *dv.RemoveRequest) error {
	return d.call("remove", r.Name, d.long, func(ctx context.Context, m Manager) error {
		return m.Remove(ctx, r.Name)
	})
}

// Mount implements dv.Driver, for a caller that always takes the answer;
// dockerd's requests go through serveMount (mount.go).
func (d *Driver) Mount(r *dv.MountRequest) (*dv.MountResponse, error) {
	var res *dv.MountResponse
	err := d.mount(r, func(got *dv.MountResponse) error { res = got; return nil })
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Unmount implements dv.Driver.
func (d *Driver) Unmount(r *dv.UnmountRequest) error {
	return d.call("unmount", r.Name, d.long, func(ctx context.Context, m Manager) error {
		return m.Unmount(ctx, r.Name, r.ID)
	})
}

// Path implements dv.Driver.
func (d *Driver) Path(r *dv.PathRequest) (*dv.PathResponse, error) {
	var p string
	err := d.call("path", r.Name, d.short, func(ctx context.Context, m Manager) (err error) {
		p, err = m.Path(ctx, r.Name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &dv.PathResponse{Mountpoint: p}, nil
}

// Get implements dv.Driver.
func (d *Driver) Get(r *dv.GetRequest) (*dv.GetResponse, error) {
	var v volume.Volume
	err := d.call("get", r.Name, d.short, func(ctx context.Context, m Manager) (err error) {
		v, err = m.Get(ctx, r.Name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &dv.GetResponse{Volume: d.toDocker(v)}, nil
}

// List implements dv.Driver.
func (d *Driver) List() (*dv.ListResponse, error) {
	var vols []volume.Volume
	err := d.call("list", "", d.short, func(ctx context.Context, m Manager) (err error) {
		vols, err = m.List(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*dv.Volume, 0, len(vols))
	for _, v := range vols {
		out = append(out, d.toDocker(v))
	}
	return &dv.ListResponse{Volumes: out}, nil
}

// Capabilities implements dv.Driver: scope "local" when the volumes live
// on this host's disks, "global" in a shared volume group (Options.Global).
func (d *Driver) Capabilities() *dv.CapabilitiesResponse {
	return &dv.CapabilitiesResponse{Capabilities: dv.Capability{Scope: d.scope}}
}

func (d *Driver) toDocker(v volume.Volume) *dv.Volume {
	out := &dv.Volume{Name: v.Name, Mountpoint: v.Mountpoint, Status: v.Status}
	if d.status != nil {
		if out.Status == nil {
			out.Status = map[string]any{}
		}
		for k, val := range d.status() {
			out.Status[k] = val
		}
	}
	if !v.CreatedAt.IsZero() {
		out.CreatedAt = v.CreatedAt.UTC().Format(time.RFC3339)
	}
	return out
}
