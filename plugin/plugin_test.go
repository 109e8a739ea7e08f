package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dv "github.com/docker/go-plugins-helpers/volume"
	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/internal/cost"
	"github.com/cryptvol/cryptvol/volume"
)

// fakeManager records calls and answers from a script.
type fakeManager struct {
	mu    sync.Mutex
	calls []string
	ctxs  []context.Context
	err   error
	path  string
	vols  []volume.Volume
	block chan struct{} // if set, operations wait for it or their deadline
	// panicOn names a call that panics (Mount).
	panicOn string
	// spend, if set, runs in every call with its context (cost tallies).
	spend func(ctx context.Context)
}

func (f *fakeManager) record(ctx context.Context, call string) error {
	if f.panicOn != "" && strings.HasPrefix(call, strings.ToLower(f.panicOn)) {
		panic("boom in " + call)
	}
	if f.spend != nil {
		f.spend(ctx)
	}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.ctxs = append(f.ctxs, ctx)
	block, err := f.block, f.err
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return fmt.Errorf("volume %q: create failed at luksFormat: %w", "v1", ctx.Err())
		}
	}
	return err
}

func (f *fakeManager) Create(ctx context.Context, name string, opts map[string]string) error {
	return f.record(ctx, fmt.Sprintf("create %s %v", name, opts))
}
func (f *fakeManager) Remove(ctx context.Context, name string) error {
	return f.record(ctx, "remove "+name)
}
func (f *fakeManager) Mount(ctx context.Context, name, id string) (string, error) {
	if err := f.record(ctx, "mount "+name+" "+id); err != nil {
		return "", err
	}
	return f.path, nil
}
func (f *fakeManager) Unmount(ctx context.Context, name, id string) error {
	return f.record(ctx, "unmount "+name+" "+id)
}
func (f *fakeManager) Path(ctx context.Context, name string) (string, error) {
	if err := f.record(ctx, "path "+name); err != nil {
		return "", err
	}
	return f.path, nil
}
func (f *fakeManager) Get(ctx context.Context, name string) (volume.Volume, error) {
	if err := f.record(ctx, "get "+name); err != nil {
		return volume.Volume{}, err
	}
	for _, v := range f.vols {
		if v.Name == name {
			return v, nil
		}
	}
	return volume.Volume{}, fmt.Errorf("volume %q: %w", name, volume.ErrNotFound)
}
func (f *fakeManager) List(ctx context.Context) ([]volume.Volume, error) {
	if err := f.record(ctx, "list"); err != nil {
		return nil, err
	}
	return f.vols, nil
}

// serve runs the driver behind the real go-plugins-helpers handler on a
// unix socket, as dockerd talks to it, and returns a client for it.
func serve(t *testing.T, d *Driver) *http.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "p.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go d.Handler().Serve(l)
	t.Cleanup(func() { l.Close() })
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func post(t *testing.T, c *http.Client, path, body string) (int, map[string]any) {
	t.Helper()
	resp, err := c.Post("http://plugin"+path, "application/vnd.docker.plugins.v1.1+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: reply is not JSON: %q", path, b)
	}
	return resp.StatusCode, out
}

func newDriver(f *fakeManager, o Options) (*Driver, *bytes.Buffer) {
	var logs bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logs)
	return New(f, l, o), &logs
}

func TestActivateAndCapabilities(t *testing.T) {
	d, _ := newDriver(&fakeManager{}, Options{})
	c := serve(t, d)
	_, out := post(t, c, "/Plugin.Activate", "")
	if fmt.Sprint(out["Implements"]) != "[VolumeDriver]" {
		t.Errorf("activate: %v", out)
	}
	code, out := post(t, c, "/VolumeDriver.Capabilities", "{}")
	if code != 200 || fmt.Sprint(out["Capabilities"]) != "map[Scope:local]" {
		t.Errorf("capabilities: %d %v", code, out)
	}
	// A shared volume group: one name is one volume on every host, and
	// `docker volume inspect` says so.
	d, _ = newDriver(&fakeManager{}, Options{Global: true})
	if code, out := post(t, serve(t, d), "/VolumeDriver.Capabilities", "{}"); code != 200 || fmt.Sprint(out["Capabilities"]) != "map[Scope:global]" {
		t.Errorf("capabilities in a shared group: %d %v", code, out)
	}
}

func TestRequestsReachTheManager(t *testing.T) {
	f := &fakeManager{path: "/mnt/volumes/v1"}
	d, _ := newDriver(f, Options{})
	c := serve(t, d)

	for _, r := range []struct{ path, body, want string }{
		{"/VolumeDriver.Create", `{"Name":"v1","Opts":{"size":"1G","fs":"xfs"}}`, "create v1 map[fs:xfs size:1G]"},
		{"/VolumeDriver.Create", `{"Name":"v2"}`, "create v2 map[]"},
		{"/VolumeDriver.Mount", `{"Name":"v1","ID":"abc"}`, "mount v1 abc"},
		{"/VolumeDriver.Path", `{"Name":"v1"}`, "path v1"},
		{"/VolumeDriver.Unmount", `{"Name":"v1","ID":"abc"}`, "unmount v1 abc"},
		{"/VolumeDriver.Remove", `{"Name":"v1"}`, "remove v1"},
	} {
		code, out := post(t, c, r.path, r.body)
		if code != 200 || out["Err"] != nil {
			t.Errorf("%s: %d %v", r.path, code, out)
		}
		f.mu.Lock()
		got := f.calls[len(f.calls)-1]
		f.mu.Unlock()
		if got != r.want {
			t.Errorf("%s: manager got %q, want %q", r.path, got, r.want)
		}
		if strings.Contains(r.path, "Mount") || strings.Contains(r.path, "Path") {
			if out["Mountpoint"] != "/mnt/volumes/v1" {
				t.Errorf("%s: Mountpoint %v", r.path, out["Mountpoint"])
			}
		}
	}
	// Each request had its own deadline, long for mutations, short for reads.
	for i, ctx := range f.ctxs {
		dl, ok := ctx.Deadline()
		if !ok {
			t.Fatalf("call %d had no deadline", i)
		}
		left := time.Until(dl)
		want := DefaultLongTimeout
		if strings.HasPrefix(f.calls[i], "path") {
			want = DefaultShortTimeout
		}
		if left > want || left < want-5*time.Second {
			t.Errorf("%s: deadline in %s, want about %s", f.calls[i], left, want)
		}
	}
}

func TestGetAndList(t *testing.T) {
	created := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600))
	f := &fakeManager{vols: []volume.Volume{
		{Name: "a", CreatedAt: created, Status: map[string]any{"size": "1 GiB", "mounted": false, "kmip_key_id": "7"}},
		{Name: "b", Mountpoint: "/mnt/volumes/b", Status: map[string]any{"mounted": true, "mount_count": 2}},
	}}
	d, _ := newDriver(f, Options{})
	c := serve(t, d)

	code, out := post(t, c, "/VolumeDriver.Get", `{"Name":"a"}`)
	if code != 200 {
		t.Fatalf("get: %d %v", code, out)
	}
	v := out["Volume"].(map[string]any)
	if v["Name"] != "a" || v["CreatedAt"] != "2026-03-04T04:06:07Z" || v["Mountpoint"] != nil {
		t.Errorf("get a: %v", v)
	}
	if st := v["Status"].(map[string]any); st["size"] != "1 GiB" || st["kmip_key_id"] != "7" || st["mounted"] != false {
		t.Errorf("status: %v", st)
	}

	code, out = post(t, c, "/VolumeDriver.Get", `{"Name":"nope"}`)
	if code != 500 || out["Err"] != `volume "nope": no such volume` {
		t.Errorf("get unknown: %d %v", code, out)
	}

	code, out = post(t, c, "/VolumeDriver.List", `{}`)
	vols, _ := out["Volumes"].([]any)
	if code != 200 || len(vols) != 2 {
		t.Fatalf("list: %d %v", code, out)
	}
	b := vols[1].(map[string]any)
	if b["Mountpoint"] != "/mnt/volumes/b" || b["CreatedAt"] != nil || b["Status"].(map[string]any)["mount_count"] != 2.0 {
		t.Errorf("list b: %v", b)
	}

	f.vols = nil
	_, out = post(t, c, "/VolumeDriver.List", `{}`)
	if vols, ok := out["Volumes"].([]any); !ok || len(vols) != 0 {
		t.Errorf("empty list should be [], got %v", out)
	}
}

func TestErrorsReachDockerAsReadableText(t *testing.T) {
	f := &fakeManager{}
	d, logs := newDriver(f, Options{})
	c := serve(t, d)

	f.err = errors.New(`volume "v1": option "colour" is not supported (allowed options: size, fs, thin)`)
	code, out := post(t, c, "/VolumeDriver.Create", `{"Name":"v1","Opts":{"colour":"red"}}`)
	if code != 500 || out["Err"] != f.err.Error() {
		t.Errorf("create: %d %v", code, out)
	}
	f.err = errors.New("volume \"v1\": lvremove failed:\n  Logical volume vg/cv-v1 in use.\n")
	code, out = post(t, c, "/VolumeDriver.Remove", `{"Name":"v1"}`)
	if code != 500 || out["Err"] != `volume "v1": lvremove failed:; Logical volume vg/cv-v1 in use.` {
		t.Errorf("remove: %d %q", code, out["Err"])
	}
	f.err = fmt.Errorf("volume %q: %w by %d container(s); stop them before removing it", "v1", volume.ErrInUse, 2)
	_, out = post(t, c, "/VolumeDriver.Remove", `{"Name":"v1"}`)
	if out["Err"] != `volume "v1": volume is in use by 2 container(s); stop them before removing it` {
		t.Errorf("in use: %q", out["Err"])
	}
	_, out = post(t, c, "/VolumeDriver.Mount", `{"Name":"v1","ID":"x"}`)
	if out["Err"] == nil || out["Mountpoint"] != nil {
		t.Errorf("failed mount must carry no mountpoint: %v", out)
	}
	if !strings.Contains(logs.String(), "op=remove") || !strings.Contains(logs.String(), "volume=v1") {
		t.Errorf("failures not logged with op= and volume=:\n%s", logs.String())
	}

	resp, err := c.Post("http://plugin/VolumeDriver.Create", "application/json", strings.NewReader(`{not json`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("bad JSON: status %d", resp.StatusCode)
	}
}

func TestDeadlineGivesUpWithReadableError(t *testing.T) {
	f := &fakeManager{block: make(chan struct{})}
	d, _ := newDriver(f, Options{LongTimeout: 50 * time.Millisecond, ShortTimeout: 20 * time.Millisecond})
	c := serve(t, d)
	start := time.Now()
	code, out := post(t, c, "/VolumeDriver.Create", `{"Name":"v1"}`)
	if time.Since(start) > 5*time.Second {
		t.Fatal("deadline not applied")
	}
	msg, _ := out["Err"].(string)
	if code != 500 || !strings.HasPrefix(msg, "create: gave up after 50ms: ") || !strings.Contains(msg, `volume "v1"`) {
		t.Errorf("%d %q", code, msg)
	}
}

// A timeout inside the operation (KMIP, a command) is reported as it is,
// not as the request's deadline, which had not passed.
func TestInnerTimeoutIsNotReportedAsTheRequestDeadline(t *testing.T) {
	inner := fmt.Errorf(`volume "v1": kmip 10.0.0.1:5696: no answer in time (timeout 5s): %w`, context.DeadlineExceeded)
	f := &fakeManager{err: inner}
	d, _ := newDriver(f, Options{})
	c := serve(t, d)
	_, out := post(t, c, "/VolumeDriver.Create", `{"Name":"v1"}`)
	msg, _ := out["Err"].(string)
	if strings.Contains(msg, "gave up") || !strings.Contains(msg, "kmip 10.0.0.1:5696: no answer in time") {
		t.Errorf("%q", msg)
	}
}

func TestWaitDrainsInFlightRequests(t *testing.T) {
	f := &fakeManager{block: make(chan struct{})}
	d, _ := newDriver(f, Options{})
	c := serve(t, d)
	done := make(chan int)
	go func() {
		code, _ := post(t, c, "/VolumeDriver.Mount", `{"Name":"v1","ID":"x"}`)
		done <- code
	}()
	for {
		f.mu.Lock()
		n := len(f.calls)
		f.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := d.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait returned %v while a request was in flight", err)
	}
	close(f.block)
	if code := <-done; code != 200 {
		t.Errorf("status %d", code)
	}
	if err := d.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Each request's log line says what it cost: the programs its work started,
// by name, and its KMIP round trips; `make bench` breaks a docker run down
// from these lines.
func TestRequestLogCarriesItsCost(t *testing.T) {
	f := &fakeManager{path: "/mnt/volumes/v1", spend: func(ctx context.Context) {
		cost.Program(ctx, "/usr/sbin/lvm")
		cost.Program(ctx, "cryptsetup")
		cost.Program(ctx, "lvm")
		cost.KMIP(ctx)
	}}
	d, logs := newDriver(f, Options{})
	d.log.(*logrus.Logger).SetLevel(logrus.DebugLevel)
	d.Start(f)
	if _, err := d.Mount(&dv.MountRequest{Name: "v1", ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	line := logs.String()
	for _, want := range []string{"op=mount", "programs=3", "kmip_round_trips=1", `by_program="cryptsetup 1, lvm 2"`} {
		if !strings.Contains(line, want) {
			t.Errorf("request log lacks %s:\n%s", want, line)
		}
	}
	// A second request starts from nothing.
	logs.Reset()
	f.spend = nil
	if _, err := d.Path(&dv.PathRequest{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	if line := logs.String(); !strings.Contains(line, "programs=0") || !strings.Contains(line, "kmip_round_trips=0") || strings.Contains(line, "by_program") {
		t.Errorf("Path's log line does not show a cost of nothing:\n%s", line)
	}
}

// dockerd's client gives up on a Mount after `docker plugin enable
// --timeout` and then never sends its Unmount (it records a mount ID only
// for a Mount answered in time): a Mount that finishes after the client
// left is taken back, so the volume does not stay decrypted with no
// container.
func TestAMountDockerdGaveUpOnIsTakenBack(t *testing.T) {
	f := &fakeManager{path: "/mnt/v1/data", block: make(chan struct{})}
	d, logs := newDriver(f, Options{})
	c := serve(t, d)
	c.Timeout = 200 * time.Millisecond
	resp, err := c.Post("http://plugin/VolumeDriver.Mount", "application/json", strings.NewReader(`{"Name":"v1","ID":"c1"}`))
	if err == nil {
		resp.Body.Close()
		t.Fatal("the Mount answered before the client gave up")
	}
	close(f.block) // the Mount finishes now, after dockerd stopped waiting
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		calls := strings.Join(f.calls, "; ")
		f.mu.Unlock()
		if calls == "mount v1 c1; unmount v1 c1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls %q, want the Mount taken back by its Unmount", calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := d.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "stopped waiting") {
		t.Errorf("the log does not say why the mount was taken back:\n%s", logs.String())
	}

	// A Mount answered in time is not taken back.
	f2 := &fakeManager{path: "/mnt/v2/data"}
	d2, _ := newDriver(f2, Options{})
	if code, out := post(t, serve(t, d2), "/VolumeDriver.Mount", `{"Name":"v2","ID":"c2"}`); code != 200 || out["Mountpoint"] != "/mnt/v2/data" {
		t.Fatalf("Mount = %d %v", code, out)
	}
	if got := strings.Join(f2.calls, "; "); got != "mount v2 c2" {
		t.Errorf("calls %q, want the Mount alone", got)
	}
}
