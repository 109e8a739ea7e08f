package keys

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// lateDeadlineConn holds back the deadline a call's cancellation sets on
// the socket (conn.roundtrip's context.AfterFunc: a deadline in the past)
// until the next call has set its own, then lets it land: the order the
// scheduler may pick when the cancellation comes just as the answer
// arrives. Closing the socket lets it land too, on a closed socket.
type lateDeadlineConn struct {
	net.Conn
	mu      sync.Mutex
	held    chan struct{} // closed to let the held deadline land; nil when none is held
	landed  chan struct{} // closed once it has landed
	closing sync.Once
}

func (c *lateDeadlineConn) SetDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Unix(2, 0)) {
		c.mu.Lock()
		held, landed := make(chan struct{}), make(chan struct{})
		c.held, c.landed = held, landed
		c.mu.Unlock()
		<-held
		err := c.Conn.SetDeadline(t)
		close(landed)
		return err
	}
	err := c.Conn.SetDeadline(t)
	c.releaseHeld()
	return err
}

// releaseHeld lets a held deadline land and waits until it has.
func (c *lateDeadlineConn) releaseHeld() {
	c.mu.Lock()
	held, landed := c.held, c.landed
	c.held = nil
	c.mu.Unlock()
	if held != nil {
		close(held)
		<-landed
	}
}

func (c *lateDeadlineConn) Close() error {
	err := c.Conn.Close()
	c.closing.Do(c.releaseHeld)
	return err
}

// A call whose context is cancelled as its answer arrives leaves the
// cancellation's deadline to land on the socket later, here after the next
// call has set its own. That next call must not inherit it: it succeeds on
// a connection of its own, and the server is not taken for unreachable.
// The answer the first call read is still its result.
func TestLateCancellationDeadlineSparesTheNextCall(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _, err := e.m.Create(ctx, "cryptvol/vg0/late", "")
	if err != nil {
		t.Fatal(err)
	}
	e.m.dial = func(ctx context.Context, endpoint string) (link, error) {
		l, err := e.m.dialTLS(ctx, endpoint)
		if err != nil {
			return nil, err
		}
		return newConn(&lateDeadlineConn{Conn: l.(*conn).sock}), nil
	}
	e.m.Close()
	k, err := e.m.Get(ctx, id) // dials the wrapped socket
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	conns := e.fake.conns.Load()

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hook := cancel
	e.fake.beforeAnswer.Store((*func())(&hook))
	first, err := e.m.Get(cctx, id)
	if err != nil {
		t.Fatalf("Get whose context ended as the answer came: %v, want the answer it read", err)
	}
	first.Wipe()

	second, err := e.m.Get(ctx, id)
	if err != nil {
		t.Fatalf("the next Get: %v, want the key", err)
	}
	defer second.Wipe()
	if !bytes.Equal(second.Bytes(), e.fake.obj(id).material) {
		t.Fatal("the next Get returned other bytes than the key's")
	}
	if e.m.downErr != nil {
		t.Fatalf("the server is taken for unreachable: %v", e.m.downErr)
	}
	if n := e.fake.conns.Load() - conns; n != 1 {
		t.Fatalf("the next Get came on %d new connections, want 1: the cancelled call's socket is not reused", n)
	}
}
