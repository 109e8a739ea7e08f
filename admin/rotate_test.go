package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/plugin"
	"github.com/cryptvol/cryptvol/volume"
)

// fakeVolumes is a plugin.Manager whose Rotate renumbers keys.
type fakeVolumes struct {
	keys    map[string]string
	rotated []string
}

func (f *fakeVolumes) Create(_ context.Context, n string, o map[string]string) error {
	f.rotated = append(f.rotated, "create "+n+" from="+o["from"]+" readonly="+o["readonly"])
	return nil
}
func (f *fakeVolumes) Remove(context.Context, string) error                  { return nil }
func (f *fakeVolumes) Mount(context.Context, string, string) (string, error) { return "", nil }
func (f *fakeVolumes) Unmount(context.Context, string, string) error         { return nil }
func (f *fakeVolumes) Path(context.Context, string) (string, error)          { return "", nil }
func (f *fakeVolumes) Get(_ context.Context, n string) (volume.Volume, error) {
	return volume.Volume{Name: n}, nil
}
func (f *fakeVolumes) List(context.Context) ([]volume.Volume, error) {
	return []volume.Volume{{Name: "a"}, {Name: "b"}}, nil
}
func (f *fakeVolumes) Reencrypt(_ context.Context, n string) (volume.Reencryption, error) {
	if _, ok := f.keys[n]; !ok {
		return volume.Reencryption{}, errors.New(`volume "` + n + `": no such volume`)
	}
	f.rotated = append(f.rotated, "reencrypt "+n)
	return volume.Reencryption{Volume: n, Online: true}, nil
}

func (f *fakeVolumes) Resize(_ context.Context, n, size string) (volume.Resized, error) {
	f.rotated = append(f.rotated, "resize "+n+" "+size)
	return volume.Resized{Volume: n, OldBytes: 1 << 30, NewBytes: 2 << 30}, nil
}

func (f *fakeVolumes) Trash(context.Context) ([]volume.Trashed, error) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	return []volume.Trashed{
		{ID: "a+1764583200000", Volume: "a", RemovedAt: at, PurgeAt: at.Add(72 * time.Hour), SizeBytes: 1 << 30, KeyID: "7"},
		{ID: "b+1764583201000", Volume: "b", RemovedAt: at.Add(time.Second), PurgeAt: at.Add(72*time.Hour + time.Second), SizeBytes: 2 << 30, KeyID: "8", KeyPending: true},
	}, nil
}

func (f *fakeVolumes) Restore(_ context.Context, what, as string) (volume.Restored, error) {
	if what != "a+1764583200000" && what != "a" {
		return volume.Restored{}, errors.New(`volume "` + what + `": not found in the trash`)
	}
	f.rotated = append(f.rotated, "restore "+what+" as "+as)
	return volume.Restored{ID: "a+1764583200000", Volume: cmpOr(as, "a"), OldKeyID: "7", NewKeyID: "9"}, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (f *fakeVolumes) Rotate(_ context.Context, n string) (volume.Rotation, error) {
	old, ok := f.keys[n]
	if !ok {
		return volume.Rotation{}, errors.New(`volume "` + n + `": no such volume`)
	}
	f.keys[n] = old + "'"
	f.rotated = append(f.rotated, n)
	return volume.Rotation{Volume: n, OldKeyID: old, NewKeyID: f.keys[n]}, nil
}

// servePlugin serves m as the plugin does, on a socket in dir, until the
// test ends, and returns the socket's path.
func servePlugin(t *testing.T, m plugin.Manager, dir string) string {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	drv := plugin.New(m, log, plugin.Options{})
	sock := filepath.Join(dir, "cryptvol.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go drv.Handler().Serve(l)
	t.Cleanup(func() { l.Close() })
	return sock
}

// rotate goes to the plugin's socket, one request per volume, and reports
// each result; --all takes the plugin's list; a failure is exit 1 naming it.
func TestRotateThroughThePluginSocket(t *testing.T) {
	f := &fakeVolumes{keys: map[string]string{"a": "1", "b": "2"}}
	env := map[string]string{"CRYPTVOL_SOCKET": servePlugin(t, f, t.TempDir())}

	code, out, _ := runCmd(env, "rotate", "a")
	if code != ExitOK || !strings.Contains(out, "a: KMIP key 1 replaced by 1'") {
		t.Fatalf("rotate a: exit %d, %q", code, out)
	}
	code, out, _ = runCmd(env, "rotate", "--all", "--json")
	var doc struct {
		Volumes []struct{ Volume, NewKeyID string } `json:"volumes"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != ExitOK || len(doc.Volumes) != 2 {
		t.Fatalf("rotate --all: exit %d, %v, %q", code, err, out)
	}
	code, out, _ = runCmd(env, "rotate", "a", "zz")
	if code != ExitFailed || !strings.Contains(out, `zz: FAILED: volume "zz": no such volume`) {
		t.Fatalf("rotate of a missing volume: exit %d, %q", code, out)
	}
	code, out, _ = runCmd(env, "reencrypt", "b")
	if code != ExitOK || !strings.Contains(out, "b: data re-encrypted under a new volume key (online, mounted)") {
		t.Fatalf("reencrypt b: exit %d, %q", code, out)
	}
	if code, _, stderr := runCmd(env, "reencrypt", "zz"); code != ExitFailed || !strings.Contains(stderr, "no such volume") {
		t.Fatalf("reencrypt zz: exit %d, %q", code, stderr)
	}
	code, out, _ = runCmd(env, "resize", "a", "2G")
	if code != ExitOK || !strings.Contains(out, "a: grown from 1 GiB to 2 GiB (closed)") {
		t.Fatalf("resize a 2G: exit %d, %q", code, out)
	}
	if code, _, stderr := runCmd(env, "resize", "a", "big"); code != ExitUsage || !strings.Contains(stderr, `size "big" is not valid`) {
		t.Fatalf("resize a big: exit %d, %q", code, stderr)
	}
	if code, out, _ := runCmd(env, "snapshot", "a", "a-snap"); code != ExitOK || !strings.Contains(out, "a-snap: a read-only snapshot of a") {
		t.Fatalf("snapshot: exit %d, %q", code, out)
	}
	code, out, _ = runCmd(env, "trash")
	if code != ExitOK || !strings.Contains(out, "a+1764583200000") || !strings.Contains(out, "2026-12-04 10:00:00") ||
		!strings.Contains(out, "8 (deactivation pending: KMIP unreachable)") {
		t.Fatalf("trash: exit %d, %q", code, out)
	}
	code, out, _ = runCmd(env, "trash", "--json")
	var tr struct {
		Trash []volume.Trashed `json:"trash"`
	}
	if err := json.Unmarshal([]byte(out), &tr); err != nil || code != ExitOK || len(tr.Trash) != 2 || !tr.Trash[1].KeyPending {
		t.Fatalf("trash --json: exit %d, %v, %q", code, err, out)
	}
	code, out, _ = runCmd(env, "restore", "a+1764583200000", "a2")
	if code != ExitOK || !strings.Contains(out, "a2: restored from trash entry a+1764583200000; KMIP key 7 replaced by 9") {
		t.Fatalf("restore: exit %d, %q", code, out)
	}
	if code, _, stderr := runCmd(env, "restore", "zz"); code != ExitFailed || !strings.Contains(stderr, "not found in the trash") {
		t.Fatalf("restore zz: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runCmd(env, "restore", "a", "bad/name"); code != ExitUsage || !strings.Contains(stderr, "not allowed") {
		t.Fatalf("restore under an invalid name: exit %d, %q", code, stderr)
	}
	if code, _, _ := runCmd(env, "restore"); code != ExitUsage {
		t.Fatalf("restore without an id: exit %d", code)
	}
	if strings.Join(f.rotated, ",") != "a,a,b,a,reencrypt b,resize a 2G,create a-snap from=a readonly=true,restore a+1764583200000 as a2" {
		t.Errorf("rotated %v", f.rotated)
	}
}
