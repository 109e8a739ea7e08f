package keys

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// closedAddr is an address nothing listens on: a dial is refused at once.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// countingSilentServer accepts connections and never answers, counting them.
func countingSilentServer(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			accepted.Add(1)
			held = append(held, c) // hold it open, say nothing
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), &accepted
}

// KMIP failover: with the first endpoint refusing, the keys are served by
// the next one, and the failover is logged.
func TestFailoverToTheNextEndpoint(t *testing.T) {
	e := newEnv(t)
	down := closedAddr(t)
	m := e.client(t, e.pki.config(down+","+e.server.addr))
	id, k, err := m.Create(context.Background(), "cryptvol/vg0/fo", "")
	if err != nil {
		t.Fatalf("Create with the first endpoint down: %v", err)
	}
	k.Wipe()
	if e.fake.obj(id) == nil {
		t.Fatal("the key is not on the second server")
	}
	if !strings.Contains(e.logs.String(), "KMIP failover") || !strings.Contains(e.logs.String(), e.server.addr) {
		t.Fatalf("no failover logged:\n%s", e.logs)
	}
}

// A first endpoint that accepts connections and never answers gets only
// its share of the call's time: the call is still served by the second
// within its timeout. The next connection starts with the server that
// answered last, so the silent one costs its share once, not per call.
func TestFailoverPastASilentServer(t *testing.T) {
	e := newEnv(t)
	silent, accepted := countingSilentServer(t)
	cfg := e.pki.config(silent + "," + e.server.addr)
	cfg.Timeout = 2 * time.Second
	m := e.client(t, cfg)
	ctx := context.Background()
	id, k, err := m.Create(ctx, "cryptvol/vg0/silent", "")
	if err != nil {
		t.Fatalf("Create with a silent first endpoint: %v", err)
	}
	k.Wipe()
	if n := accepted.Load(); n != 1 {
		t.Fatalf("the silent server saw %d connections, want 1", n)
	}
	m.Close() // the next call dials again
	k, err = m.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get after reconnecting: %v", err)
	}
	k.Wipe()
	if n := accepted.Load(); n != 1 {
		t.Errorf("the reconnect dialed the silent server again (%d connections), not the one that answered", n)
	}
}

// Every endpoint down: one error, on one line, naming each and why, and
// ErrUnavailable so that queued calls fail at once.
func TestAllEndpointsDown(t *testing.T) {
	e := newEnv(t)
	a, b := closedAddr(t), closedAddr(t)
	silent, _ := countingSilentServer(t)
	cfg := e.pki.config(a + "," + silent + "," + b)
	cfg.Timeout = 600 * time.Millisecond
	m := e.client(t, cfg)
	_, err := m.Get(context.Background(), "1")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get = %v, want ErrUnavailable", err)
	}
	msg := err.Error()
	for _, want := range []string{a + ": connect:", silent + ": connect:", "share of the 600ms timeout", b + ": connect:", "refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q is more than one line", msg)
	}
}

func TestParseEndpoints(t *testing.T) {
	eps, err := ParseEndpoints(" a:5696, b.example:15696 ")
	if err != nil || len(eps) != 2 || eps[0] != "a:5696" || eps[1] != "b.example:15696" {
		t.Fatalf("ParseEndpoints = %q, %v", eps, err)
	}
	for in, want := range map[string]string{
		"":             "no KMIP endpoint given",
		"a:1,,b:2":     `KMIP endpoint "" is not host:port`,
		"a":            `KMIP endpoint "a" is not host:port`,
		":5696":        `KMIP endpoint ":5696" is not host:port`,
		"a:0":          `port "0" is not a number from 1 to 65535`,
		"a:1,a:1":      `KMIP endpoint "a:1" is listed twice`,
		"[::1]:5696,x": `KMIP endpoint "x" is not host:port`,
	} {
		if _, err := ParseEndpoints(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseEndpoints(%q) = %v, want an error saying %q", in, err, want)
		}
	}
}
