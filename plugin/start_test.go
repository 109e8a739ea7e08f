package plugin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dv "github.com/docker/go-plugins-helpers/volume"
	"github.com/sirupsen/logrus"
)

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// A starting plugin answers at once (dockerd marks a plugin that does not
// listen within ~12.5 s failed for good); requests that need the volumes
// wait for start-up, and fail at once, saying why, while it is failing.
func TestStartingDriverAnswersAndRequestsWait(t *testing.T) {
	d := NewStarting(quietLog(), Options{ShortTimeout: 5 * time.Second})
	if c := d.Capabilities(); c.Capabilities.Scope != "local" {
		t.Fatalf("capabilities %+v", c)
	}
	d.StartFailed(errors.New("volume group cryptvg does not exist"))
	if _, err := d.List(); err == nil || !strings.Contains(err.Error(), "volume group cryptvg does not exist") {
		t.Fatalf("list while start-up fails: %v", err)
	}
	d2 := NewStarting(quietLog(), Options{ShortTimeout: 5 * time.Second})
	got := make(chan error, 1)
	go func() { _, err := d2.List(); got <- err }()
	select {
	case err := <-got:
		t.Fatalf("list answered before start-up finished: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	d2.Start(&fakeManager{})
	if err := <-got; err != nil {
		t.Fatalf("list after start: %v", err)
	}
}

// A refused start-up (a state file of a newer format) says so on every
// request, not that it is retried; Capabilities still answers, so dockerd
// keeps the plugin enabled and `docker volume ls` shows the reason.
func TestRefusedStartSaysSoOnEveryRequest(t *testing.T) {
	d := NewStarting(quietLog(), Options{ShortTimeout: 5 * time.Second})
	d.StartRefused(errors.New("state file /var/lib/cryptvol/mounts.json has state format 3"))
	if c := d.Capabilities(); c.Capabilities.Scope != "local" {
		t.Fatalf("capabilities %+v", c)
	}
	_, lerr := d.List()
	cerr := d.Create(&dv.CreateRequest{Name: "v1"})
	_, merr := d.Mount(&dv.MountRequest{Name: "v1", ID: "c1"})
	for op, err := range map[string]error{"list": lerr, "create": cerr, "mount": merr} {
		if err == nil || !strings.Contains(err.Error(), "refuses to start: state file /var/lib/cryptvol/mounts.json has state format 3") ||
			strings.Contains(err.Error(), "retried") {
			t.Errorf("%s: %v", op, err)
		}
	}
	// A later retry's failure does not turn a refusal back into a wait.
	d.StartFailed(errors.New("other"))
	if _, err := d.List(); err == nil || !strings.Contains(err.Error(), "refuses to start") {
		t.Errorf("list after StartFailed: %v", err)
	}
}

// A panic inside a request becomes its error; the plugin lives on.
func TestRequestPanicBecomesError(t *testing.T) {
	f := &fakeManager{panicOn: "Mount"}
	d := New(f, quietLog(), Options{})
	_, err := d.Mount(&dv.MountRequest{Name: "v1", ID: "c1"})
	if err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("mount: %v", err)
	}
	if _, err := d.List(); err != nil {
		t.Fatalf("list after a panic: %v", err)
	}
}

// attachCounter listens on a new socket through WatchAttach and counts
// the attaches it sees.
func attachCounter(t *testing.T) (sock string, l net.Listener, n *atomic.Int32) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "p.sock")
	raw, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	n = new(atomic.Int32)
	return sock, WatchAttach(raw, 0, func() { n.Add(1) }), n
}

// dockerd's "is it listening" dial (connect, close, nothing sent) is the
// plugin's only sign that dockerd (re)attached; a request is not one.
func TestWatchAttachSeesDialsWithoutRequests(t *testing.T) {
	sock, l, n := attachCounter(t)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	c, _ := net.Dial("unix", sock)
	c.Close()
	c, _ = net.Dial("unix", sock)
	c.Write([]byte("POST /VolumeDriver.List HTTP/1.1\r\n\r\n"))
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got := n.Load(); got != 1 {
		t.Fatalf("attach seen %d times, want 1 (the empty dial only)", got)
	}
}

// A dial closed without a byte while another connection is open is Go's
// HTTP client dropping a connection it did not need in a burst of parallel
// requests (moby's plugin client is a bare http.Transport), not dockerd
// attaching: it must not make every recorded mount suspect. The first
// part fails with the rule "any connection closed without a byte".
func TestWatchAttachIgnoresEmptyDialsBesideOpenConnections(t *testing.T) {
	sock, l, n := attachCounter(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		io.WriteString(w, "{}")
	})}
	go srv.Serve(l)
	defer srv.Close()

	held, err := net.Dial("unix", sock) // an idle keep-alive connection of dockerd's
	if err != nil {
		t.Fatal(err)
	}
	held.Write([]byte("POST /VolumeDriver.Capabilities HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\n\r\n"))
	io.ReadFull(held, make([]byte, 12))
	c, _ := net.Dial("unix", sock)
	c.Close()

	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := client.Post("http://p/VolumeDriver.Get", "application/json", strings.NewReader("{}")); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	if got := n.Load(); got != 0 {
		t.Fatalf("attach seen %d times beside open connections, want 0", got)
	}

	// dockerd gone (its connections closed), a new one dials: an attach.
	// The client's pool may hold a connection it dialed and never used;
	// closed last, after the others, it reads as an attach too, which
	// costs a probe and nothing else. So the count is taken once the
	// server has seen every close, and the new dial must add exactly one.
	client.CloseIdleConnections()
	held.Close()
	al := l.(*attachListener)
	deadline := time.Now().Add(5 * time.Second)
	for {
		al.mu.Lock()
		open := len(al.open)
		al.mu.Unlock()
		if open == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a counted close runs fn on its own goroutine
	base := n.Load()
	if base > 1 {
		t.Fatalf("dockerd's connections closing read as %d attaches, want at most 1", base)
	}
	c, _ = net.Dial("unix", sock)
	c.Close()
	for n.Load() < base+1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.Load(); got != base+1 {
		t.Fatalf("attach of a new dockerd seen %d times, want 1", got-base)
	}
}
