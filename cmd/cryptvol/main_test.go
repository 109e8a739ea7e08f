package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/plugin"
	"github.com/cryptvol/cryptvol/volume"
)

// slowManager answers Mount after release is closed; other calls at once.
type slowManager struct {
	release chan struct{}
}

func (s *slowManager) Create(context.Context, string, map[string]string) error { return nil }
func (s *slowManager) Remove(context.Context, string) error                    { return nil }
func (s *slowManager) Mount(ctx context.Context, name, id string) (string, error) {
	<-s.release
	return "/mnt/volumes/" + name, nil
}
func (s *slowManager) Unmount(context.Context, string, string) error { return nil }
func (s *slowManager) Path(context.Context, string) (string, error)  { return "", nil }
func (s *slowManager) Get(_ context.Context, name string) (volume.Volume, error) {
	return volume.Volume{Name: name}, nil
}
func (s *slowManager) List(context.Context) ([]volume.Volume, error) { return nil, nil }

// On SIGTERM (ctx cancelled) serve stops accepting, lets the request in
// flight finish, removes its socket and returns cleanly.
func TestServeStopsGracefully(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "cryptvol.sock")
	// A stale socket file from a killed process does not stop a restart.
	os.MkdirAll(filepath.Dir(sock), 0o755)
	os.WriteFile(sock, nil, 0o600)

	m := &slowManager{release: make(chan struct{})}
	log := logrus.New()
	log.SetOutput(io.Discard)
	drv := plugin.New(m, log, plugin.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	l, err := listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- serve(ctx, drv, l, nil, log) }()

	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	var resp *http.Response
	for i := 0; i < 200; i++ {
		resp, err = client.Post("http://p/VolumeDriver.Capabilities", "application/json", strings.NewReader("{}"))
		if err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"Scope":"local"`) {
		t.Fatalf("capabilities: %s", b)
	}

	mountDone := make(chan string, 1)
	go func() {
		resp, err := client.Post("http://p/VolumeDriver.Mount", "application/json", strings.NewReader(`{"Name":"v","ID":"x"}`))
		if err != nil {
			mountDone <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		mountDone <- string(b)
	}()
	time.Sleep(50 * time.Millisecond) // let the mount reach the manager
	cancel()
	select {
	case err := <-done:
		t.Fatalf("serve returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(m.release)
	if got := <-mountDone; !strings.Contains(got, `"Mountpoint":"/mnt/volumes/v"`) {
		t.Errorf("in-flight mount answered %q", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

// A state file of a newer format stops start-up before anything writes: no
// audit record, no volume group command (the VG named here does not exist,
// and lvm.New would fail differently), and no retry; every request says
// why, naming both builds.
func TestNewerStateFileRefusesStartTouchingNothing(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, volume.StateFile)
	content := []byte(`{"version": 99, "writer": "cryptvol 9.9.9", "mounts": {}}`)
	if err := os.WriteFile(state, content, 0o600); err != nil {
		t.Fatal(err)
	}
	env := baseEnv(t)
	env["CRYPTVOL_VG"], env["CRYPTVOL_STATE_DIR"], env["CRYPTVOL_MOUNT_ROOT"] = "no-such-vg", dir, filepath.Join(dir, "mnt")
	cfg, err := load(env)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	drv := plugin.NewStarting(log, plugin.Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if m, kms := startUp(context.Background(), cfg, drv, nil, &kmipHealth{}, nil, log); m != nil || kms != nil {
			t.Errorf("startUp gave a manager: %v %v", m, kms)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("startUp is still retrying a state file of a newer format")
	}
	_, err = drv.List()
	if err == nil || !strings.Contains(err.Error(), "cryptvol refuses to start: state file "+state+" has state format 99, written by cryptvol 9.9.9; this plugin is cryptvol unknown and reads state formats 1 to 2") {
		t.Fatalf("list: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("the state directory holds more than the state file: %v", ents)
	}
	if got, _ := os.ReadFile(state); string(got) != string(content) {
		t.Errorf("the state file changed: %s", got)
	}
}
