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
	d := &Driver{log: log, long: o.LongTimeout, short: o.ShortTimeout, status: o.Status, observe: o.Observe, ready: make(chan struct{})}
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
	if d.m == nil {
		d.startErr = err
	}
}

// manager waits for the manager within ctx.
func (d *Driver) manager(ctx context.Context) (Manager, error) {
	d.startMu.Lock()
	m, serr := d.m, d.startErr
	d.startMu.Unlock()
	if m != nil {
		return m, nil
	}
	if serr != nil {
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

// WatchAttach wraps the plugin's listener so that onAttach runs when a
// connection closes without having sent a byte: that is how dockerd checks
// that a plugin listens whenever it starts or re-attaches to it
// (pluginPostStart dials and closes), including after its own restart under
// live-restore, when the plugin is not restarted and gets no other sign.
// Calls are spaced at least minGap apart.
func WatchAttach(l net.Listener, minGap time.Duration, onAttach func()) net.Listener {
	return &attachListener{Listener: l, gap: minGap, fn: onAttach}
}

type attachListener struct {
	net.Listener
	gap  time.Duration
	fn   func()
	mu   sync.Mutex
	last time.Time
}

func (l *attachListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &attachConn{Conn: c, l: l}, nil
}

func (l *attachListener) attached() {
	l.mu.Lock()
	if !l.last.IsZero() && time.Since(l.last) < l.gap {
		l.mu.Unlock()
		return
	}
	l.last = time.Now()
	l.mu.Unlock()
	l.fn()
}

type attachConn struct {
	net.Conn
	l      *attachListener
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
	if !c.closed.Swap(true) && !c.read.Load() {
		go c.l.attached()
	}
	return c.Conn.Close()
}
