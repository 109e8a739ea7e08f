//go:build lab

package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/keys"
)

// plug is the real plugin binary (bin/cryptvol, built by make lab-bins) run
// as a process in the guest and driven over its unix socket exactly as
// dockerd drives it. The process-level tests kill it with SIGKILL, restart
// it and cut it off from KMIP, which an in-process Manager cannot show.
type plug struct {
	t   *testing.T
	bin string // the plugin binary, pluginBinary unless a test says
	dir string // state/, mnt/, shim/, plugin.log, the socket
	env []string
	// shimDir is the fault-injection shim's directory, put first in the
	// plugin's PATH at each start (crash_lab_test.go; "" for none).
	shimDir string
	cmd     *exec.Cmd
	done    chan error
	hc      *http.Client
}

// pluginBinary is the binary under test, relative to this package's directory.
const pluginBinary = "../bin/cryptvol"

// newPlug prepares (but does not start) a plugin over the lab VG in a
// directory that outlives the test, so that TestMain's secret scan can read
// its state and logs at the end of the run.
func newPlug(t *testing.T, extraEnv ...string) *plug {
	t.Helper()
	if os.Getenv("CRYPTVOL_LAB_VG") == "" || os.Getenv("CRYPTVOL_KMIP_ENDPOINT") == "" {
		t.Skip("CRYPTVOL_LAB_VG and CRYPTVOL_KMIP_* are set only inside the lab guest")
	}
	dir, err := os.MkdirTemp(runDir, "plug-")
	if err != nil {
		t.Fatal(err)
	}
	p := &plug{t: t, dir: dir}
	sock := filepath.Join(dir, "cryptvol.sock")
	p.env = append(os.Environ(),
		"CRYPTVOL_VG="+os.Getenv("CRYPTVOL_LAB_VG"),
		"CRYPTVOL_DEVICES=",
		"CRYPTVOL_THIN_POOL=",
		"CRYPTVOL_DEFAULT_SIZE=64M",
		"CRYPTVOL_MOUNT_ROOT="+filepath.Join(dir, "mnt"),
		"CRYPTVOL_STATE_DIR="+filepath.Join(dir, "state"),
		"CRYPTVOL_SOCKET="+sock,
		"CRYPTVOL_LOG_LEVEL=debug", // the most a log can say: the secret scan reads it
	)
	p.env = append(p.env, extraEnv...)
	p.hc = &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true, // a killed and restarted plugin must not be reached over a dead connection
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	t.Cleanup(func() {
		if p.cmd != nil {
			p.stop()
		}
	})
	return p
}

// start runs the plugin with PATH prefixed by pathDir (if not empty) and
// waits until it answers.
func (p *plug) start(pathDir string) {
	p.t.Helper()
	env := append([]string(nil), p.env...)
	if pathDir != "" {
		env = append(env, "PATH="+pathDir+":"+os.Getenv("PATH"))
	}
	logf, err := os.OpenFile(filepath.Join(p.dir, "plugin.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	bin := p.bin
	if bin == "" {
		bin = pluginBinary
	}
	cmd := exec.Command(bin)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start plugin: %v", err)
	}
	p.cmd, p.done = cmd, make(chan error, 1)
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.cmd = nil
			p.t.Fatalf("plugin exited at start (%v); log:\n%s", err, p.logTail())
		default:
		}
		// List answers once start-up reconciliation is done; Capabilities
		// answers as soon as the socket listens.
		var list struct{ Volumes []any }
		if p.call("List", struct{}{}, &list) == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("plugin did not answer within 3 minutes; log:\n%s", p.logTail())
}

// waitDead waits for a plugin that is being killed (by the fault-injection
// shim) and reports whether it died of SIGKILL.
func (p *plug) waitDead() bool {
	p.t.Helper()
	select {
	case err := <-p.done:
		p.cmd = nil
		ee, ok := err.(*exec.ExitError)
		if !ok {
			return false
		}
		ws, ok := ee.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	case <-time.After(2 * time.Minute):
		p.t.Fatalf("plugin still alive; log:\n%s", p.logTail())
		return false
	}
}

// stop ends the plugin as docker plugin disable does (SIGTERM).
func (p *plug) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

func (p *plug) logTail() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "plugin.log"))
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// call posts one VolumeDriver request (op "Create"...), or one of the
// plugin's own requests (op a path, "/Cryptvol.Rotate"). A reply with a
// non-empty Err, or a transport failure, is an error.
func (p *plug) call(op string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	path := "/VolumeDriver." + op
	if strings.HasPrefix(op, "/") {
		path = op
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://plugin"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r, err := p.hc.Do(hr)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var e struct{ Err string }
	if err := json.Unmarshal(raw, &e); err != nil {
		return fmt.Errorf("%s: reply %q: %w", op, raw, err)
	}
	if e.Err != "" {
		return fmt.Errorf("%s", e.Err)
	}
	if resp != nil {
		return json.Unmarshal(raw, resp)
	}
	return nil
}

func (p *plug) create(name string, opts map[string]string) error {
	return p.call("Create", map[string]any{"Name": name, "Opts": opts}, nil)
}

func (p *plug) remove(name string) error {
	return p.call("Remove", map[string]string{"Name": name}, nil)
}

func (p *plug) mount(name, id string) (string, error) {
	var r struct{ Mountpoint string }
	err := p.call("Mount", map[string]string{"Name": name, "ID": id}, &r)
	return r.Mountpoint, err
}

func (p *plug) unmount(name, id string) error {
	return p.call("Unmount", map[string]string{"Name": name, "ID": id}, nil)
}

type apiVolume struct {
	Name, Mountpoint string
	Status           map[string]any
}

func (p *plug) get(name string) (apiVolume, error) {
	var r struct{ Volume apiVolume }
	err := p.call("Get", map[string]string{"Name": name}, &r)
	return r.Volume, err
}

func (p *plug) must(what string, err error) {
	p.t.Helper()
	if err != nil {
		p.t.Fatalf("%s: %v\nplugin log:\n%s", what, err, p.logTail())
	}
}

// needFaults marks the long fault-injection tests (SIGKILL at every step,
// 50 concurrent volumes: long under emulation). The VM stage runs them in a
// second guest, at the same time as the rest (LAB_PART=faults sets
// LAB_FAULTS=1), so the main guest skips them.
func needFaults(t *testing.T) {
	if os.Getenv("LAB_FAULTS") != "1" {
		t.Skip("long fault-injection test: the faults part of the VM stage runs it (make test, make test-faults)")
	}
}

// ---- what the guest says about a volume, read without the plugin ----

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func mappingOpen(t *testing.T, name string) bool {
	_, err := run(t, "dmsetup", "info", "cryptvol-"+name)
	return err == nil
}

func lvState(t *testing.T, name string) (exists, active bool) {
	out, err := run(t, "lvs", "--noheadings", "-o", "lv_active", os.Getenv("CRYPTVOL_LAB_VG")+"/cv-"+name)
	if err != nil {
		return false, false
	}
	return true, strings.TrimSpace(out) == "active"
}

// mountedAt reports whether a filesystem is mounted at dir, from /proc/mounts.
func mountedAt(t *testing.T, dir string) bool {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// kmipKeys lists the KMIP keys of volume name: cryptvol names each create's
// key cryptvol/VG_UUID/NAME/NONCE, so they are found among every key's
// names (keys.KMIP.Names: one Locate and one batched request), which Locate
// by name cannot do.
func kmipKeys(t *testing.T, name string) []string {
	t.Helper()
	names, err := labKeys(t).Names(ctx(t))
	if err != nil {
		t.Fatalf("listing KMIP key names: %v", err)
	}
	re := regexp.MustCompile(`^cryptvol/[^/]+/` + regexp.QuoteMeta(name) + `/[0-9a-f]{16}$`)
	var ids []string
	for id, ns := range names {
		if slices.ContainsFunc(ns, re.MatchString) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

var (
	labKeysOnce sync.Once
	labKeysC    *keys.KMIP
	labKeysErr  error
)

// labKeys is a KMIP client of the test's own, to check key state from outside the plugin.
func labKeys(t *testing.T) *keys.KMIP {
	labKeysOnce.Do(func() {
		labKeysC, labKeysErr = keys.NewKMIP(keys.Config{
			Endpoint:   os.Getenv("CRYPTVOL_KMIP_ENDPOINT"),
			CAFile:     os.Getenv("CRYPTVOL_KMIP_CA"),
			CertFile:   os.Getenv("CRYPTVOL_KMIP_CERT"),
			KeyFile:    os.Getenv("CRYPTVOL_KMIP_KEY"),
			ServerName: os.Getenv("CRYPTVOL_KMIP_SERVER_NAME"),
			Timeout:    20 * time.Second,
		}, quietLog())
	})
	if labKeysErr != nil {
		t.Fatal(labKeysErr)
	}
	return labKeysC
}

// remember fetches the key of volume name from KMIP and keeps a copy in
// this process for the secret scan at the end of the run.
func remember(t *testing.T, p *plug, name string) string {
	t.Helper()
	v, err := p.get(name)
	p.must("get "+name, err)
	id, _ := v.Status["kmip_key_id"].(string)
	if id == "" {
		t.Fatalf("volume %s has no kmip_key_id in its status: %v", name, v.Status)
	}
	rememberKey(t, id)
	return id
}

// assertGone: no LV, no mapping, no mount, no KMIP key for name.
func assertGone(t *testing.T, p *plug, name string) {
	t.Helper()
	if ex, _ := lvState(t, name); ex {
		t.Errorf("%s: orphan LV", name)
	}
	if mappingOpen(t, name) {
		t.Errorf("%s: orphan dm-crypt mapping", name)
	}
	if mountedAt(t, filepath.Join(p.dir, "mnt", name)) {
		t.Errorf("%s: orphan mount", name)
	}
	if ids := kmipKeys(t, name); len(ids) != 0 {
		t.Errorf("%s: orphan KMIP keys %v", name, ids)
	}
}

// assertDown: the volume exists and nothing of it is decrypted.
func assertDown(t *testing.T, p *plug, name string) {
	t.Helper()
	ex, act := lvState(t, name) // the LV stays active on a single host (volume.keepsActive)
	if !ex || mappingOpen(t, name) || mountedAt(t, filepath.Join(p.dir, "mnt", name)) {
		t.Errorf("%s: want an existing volume that is closed; LV exists=%v active=%v, mapping=%v, mounted=%v",
			name, ex, act, mappingOpen(t, name), mountedAt(t, filepath.Join(p.dir, "mnt", name)))
	}
	if ids := kmipKeys(t, name); len(ids) != 1 {
		t.Errorf("%s: want exactly one KMIP key, have %v", name, ids)
	}
	remember(t, p, name)
}

// assertCoherent: every cryptvol mapping of this plugin is mounted at its
// volume's directory and every such mount is of a mapping. A mapping
// without a mount is a volume left decrypted for nobody; a directory
// without a mount would take plaintext.
func assertCoherent(t *testing.T, p *plug, names ...string) {
	t.Helper()
	for _, n := range names {
		m, mo := mappingOpen(t, n), mountedAt(t, filepath.Join(p.dir, "mnt", n))
		if m != mo {
			t.Errorf("%s: mapping open=%v but mounted=%v", n, m, mo)
		}
	}
}
