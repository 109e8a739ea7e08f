package plugin

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
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

// dockerd's "is it listening" dial (connect, close, nothing sent) is the
// plugin's only sign that dockerd (re)attached; a request is not one.
func TestWatchAttachSeesDialsWithoutRequests(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "p.sock")
	raw, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	l := WatchAttach(raw, 0, func() { n.Add(1) })
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
