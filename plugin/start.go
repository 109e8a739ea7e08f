package plugin

import (
	"context"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Start-up. dockerd gives a starting managed plugin about 12.5 s to listen
// (0.5 s, then 4 dials 3 s apart: moby daemon/pkg/plugin/manager_linux.go
// pluginPostStart) and marks it failed after that, for good. Reconciliation
// and the KMIP check can take longer (a KMIP server that accepts and does
// not answer), so the socket is served at once by a driver without a
// manager: requests wait for it within their own deadline (Capabilities,
// which needs none, answers at once), and fail at once with the reason
// while start-up is failing.

// NewStarting returns a driver that serves requests once Start gives it its
// manager.
func NewStarting(log logrus.FieldLogger, o Options) *Driver {
	if log == nil {
		log = logrus.StandardLogger()
	}
	d := &Driver{log: log, long: o.LongTimeout, short: o.ShortTimeout, status: o.Status, observe: o.Observe, ready: make(chan struct{}), scope: "local"}
	if o.Global {
		d.scope = "global"
	}
	if d.long <= 0 {
		d.long = DefaultLongTimeout
	}
	if d.short <= 0 {
		d.short = DefaultShortTimeout
	}
	if d.reencrypt = o.ReencryptTimeout; d.reencrypt <= 0 {
		d.reencrypt = DefaultReencryptTimeout
	}
	return d
}

// Start hands the driver its manager; waiting requests proceed.
func (d *Driver) Start(m Manager) {
	d.startMu.Lock()
	defer d.startMu.Unlock()
	if d.m != nil {
		return
	}
	d.m, d.startErr = m, nil
	close(d.ready)
}

// StartFailed records why start-up has not succeeded yet (it is retried):
// requests fail at once with it instead of waiting.
func (d *Driver) StartFailed(err error) {
	d.startMu.Lock()
	defer d.startMu.Unlock()
	if d.m == nil && !d.refused {
		d.startErr = err
	}
}

// StartRefused records why start-up will not be tried again in this
// process (a state file of a newer format: waiting does not change it).
// Every request but Capabilities fails at once with it.
func (d *Driver) StartRefused(err error) {
	d.startMu.Lock()
	defer d.startMu.Unlock()
	if d.m == nil {
		d.startErr, d.refused = err, true
	}
}

// manager waits for the manager within ctx.
func (d *Driver) manager(ctx context.Context) (Manager, error) {
	d.startMu.Lock()
	m, serr, refused := d.m, d.startErr, d.refused
	d.startMu.Unlock()
	if m != nil {
		return m, nil
	}
	if serr != nil {
		if refused {
			return nil, fmt.Errorf("cryptvol refuses to start: %w", serr)
		}
		return nil, fmt.Errorf("cryptvol is not ready (start-up is retried): %w", serr)
	}
	select {
	case <-d.ready:
		d.startMu.Lock()
		defer d.startMu.Unlock()
		return d.m, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("cryptvol is still starting (reconciling volumes): %w", ctx.Err())
	}
}

// guard turns a panic in a request into its error, so that dockerd gets an
// answer and the process lives on (package volume undoes what a panicking
// operation made before the panic reaches here).
func (d *Driver) guard(op string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			d.log.WithFields(logrus.Fields{"op": op, "panic": fmt.Sprint(r), "stack": string(debug.Stack())}).Error("request panicked")
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	return fn()
}

// WatchAttach wraps the plugin's listener so that onAttach runs when dockerd
// attaches: a connection that closes without having sent a byte while no
// connection accepted before it is still open. That is dockerd's check that
// a plugin listens whenever it starts or re-attaches to it (moby
// plugin/manager_linux.go@v26.1.5 pluginPostStart dials and closes),
// including after its own restart under live-restore, when the plugin is
// not restarted and gets no other sign; a new dockerd's connections all
// come after that dial, the old one's having closed with it. Go's HTTP
// client also closes a connection it dialed and did not need, but only
// while older connections of the same client are open (it keeps up to two
// idle, each of which served a request), so those do not count. Calls are
// spaced at least minGap apart.
func WatchAttach(l net.Listener, minGap time.Duration, onAttach func()) net.Listener {
	return &attachListener{Listener: l, gap: minGap, fn: onAttach, open: map[uint64]bool{}}
}

type attachListener struct {
	net.Listener
	gap  time.Duration
	fn   func()
	mu   sync.Mutex
	seq  uint64          // connections accepted
	open map[uint64]bool // the sequence numbers of those not yet closed
	last time.Time
}

func (l *attachListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.seq++
	seq := l.seq
	l.open[seq] = true
	l.mu.Unlock()
	return &attachConn{Conn: c, l: l, seq: seq}, nil
}

// closed counts the close of connection seq and reports whether it was an
// attach.
func (l *attachListener) closed(seq uint64, silent bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.open, seq)
	if !silent || !l.last.IsZero() && time.Since(l.last) < l.gap {
		return false
	}
	for older := range l.open {
		if older < seq {
			return false
		}
	}
	l.last = time.Now()
	return true
}

type attachConn struct {
	net.Conn
	l      *attachListener
	seq    uint64
	read   atomic.Bool
	closed atomic.Bool
}

func (c *attachConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.read.Store(true)
	}
	return n, err
}

func (c *attachConn) Close() error {
	if !c.closed.Swap(true) && c.l.closed(c.seq, !c.read.Load()) {
		go c.l.fn()
	}
	return c.Conn.Close()
}
