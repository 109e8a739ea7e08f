//go:build lab

package tests

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/internal/kmiplab"
	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume"
)

// node is one host's driver stack against the groups-mode KMIP server:
// its own KMIP identity, node name (Object Group), state and audit trail.
type node struct {
	name  string
	mgr   *volume.Manager
	trail string
}

// newNode builds it; tenants, if given, is the directory of tenant
// identities (option tenant).
func newNode(t *testing.T, srv *kmiplab.Server, identity, name string, tenants ...string) *node {
	t.Helper()
	vg, pool := os.Getenv("CRYPTVOL_LAB_VG"), os.Getenv("CRYPTVOL_LAB_POOL")
	l, err := lvm.New(vg)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := srv.Identity(identity)
	kms, err := keys.NewKMIP(keys.Config{Endpoint: srv.Endpoint, CAFile: srv.CAFile, CertFile: cert, KeyFile: key,
		ServerName: srv.ServerName, Timeout: 20 * time.Second, Group: keys.NodeGroup(name), Policy: srv.Policy}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kms.Close() })
	state := t.TempDir()
	trail, err := audit.Open(audit.Options{Path: filepath.Join(state, "audit.log"), Host: name, Sync: true}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trail.Close() })
	// No Reconcile: both nodes share the lab's volume group, and each
	// would take the other's mounted volumes for its own stale ones (one
	// VG per host is the single-host setup; a VG that hosts share needs
	// shared mode, CRYPTVOL_SHARED).
	cfg := volume.Config{VG: vg, DefaultFS: "ext4", ThinPool: pool, MountRoot: t.TempDir(), StateDir: state,
		DefaultSize: 64 << 20, NoWorkqueue: true, Audit: trail}
	if len(tenants) > 0 {
		ts := keys.NewTenants(kms.Config(), tenants[0], quietLog())
		t.Cleanup(ts.Close)
		cfg.TenantKeys = func(tenant string) (volume.Keys, error) {
			k, err := ts.For(tenant)
			if err != nil {
				return nil, err
			}
			return k, nil
		}
	}
	m, err := volume.New(cfg, l, luks.New(), mount.New(), kms, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return &node{name: name, mgr: m, trail: filepath.Join(state, "audit.log")}
}

func (n *node) create(t *testing.T, vol string) { t.Helper(); n.createWith(t, vol, nil) }

func (n *node) createWith(t *testing.T, vol string, opts map[string]string) {
	t.Helper()
	if err := n.mgr.Create(ctx(t), vol, opts); err != nil {
		t.Fatalf("%s: create %s: %v", n.name, vol, err)
	}
	t.Cleanup(func() {
		for _, id := range []string{"a", "b"} {
			_ = n.mgr.Unmount(context.Background(), vol, id)
		}
		if err := n.mgr.Remove(context.Background(), vol); err != nil && !errors.Is(err, volume.ErrNotFound) {
			t.Errorf("cleanup: %s: remove %s: %v", n.name, vol, err)
		}
	})
}

// decommission runs `cryptvol decommission` as an administrator would, from
// another process with the admin identity, and decodes its --json output.
func decommission(t *testing.T, srv *kmiplab.Server, node string, flags ...string) (exit int, keysOut []map[string]any) {
	t.Helper()
	cert, key := srv.Identity("admin")
	args := append([]string{"decommission", node, "--json", "--kmip-endpoint", srv.Endpoint, "--kmip-ca", srv.CAFile,
		"--kmip-cert", cert, "--kmip-key", key, "--kmip-server-name", srv.ServerName}, flags...)
	cmd := exec.Command("../bin/cryptvol", args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	out, err := cmd.Output()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		exit = ee.ExitCode()
	case err != nil:
		t.Fatalf("cryptvol decommission: %v", err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("cryptvol decommission %v: exit %d, output is not JSON: %v\n%s", flags, exit, err, out)
	}
	return exit, doc.Keys
}

// Requirement: "Decommission node A from another process with admin
// credentials: A's plugin cannot mount any of A's volumes and says why;
// volumes created elsewhere still work." Against PyKMIP with roles: the
// admin identity may find, revoke and destroy any key but fetch none.
func TestLabDecommissionNode(t *testing.T) {
	if os.Getenv("CRYPTVOL_LAB_VG") == "" {
		t.Skip("CRYPTVOL_LAB_VG is set only inside the lab guest")
	}
	srv := kmiplab.Start(t)
	a := newNode(t, srv, "client", "lab-node-a")
	b := newNode(t, srv, "node-b", "lab-node-b")
	a.create(t, "dc-a1")
	a.create(t, "dc-a2")
	b.create(t, "dc-b1")

	p1, err := a.mgr.Mount(ctx(t), "dc-a1", "a")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(p1, "f"), []byte("a1 data"), 0o644))
	must(t, a.mgr.Unmount(ctx(t), "dc-a1", "a"))
	// dc-a2 stays mounted through the decommission: its mapping holds the
	// volume key in the kernel, and no KMIP action can take that away.
	p2, err := a.mgr.Mount(ctx(t), "dc-a2", "a")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(p2, "f"), []byte("a2 data"), 0o644))

	exit, listed := decommission(t, srv, "lab-node-a", "--dry-run")
	if exit != 0 || len(listed) != 2 {
		t.Fatalf("dry run: exit %d, keys %v; want node A's 2 keys listed", exit, listed)
	}
	for _, k := range listed {
		if k["result"] != "would destroy" || k["state"] != "Active" {
			t.Errorf("dry run lists %v; want an Active key it would destroy", k)
		}
	}
	// With the volume group, read with lvs: each key shows the volume
	// whose LV's tag names it (one host: no maker, no mount record).
	exit, withVG := decommission(t, srv, "lab-node-a", "--dry-run", "--vg", os.Getenv("CRYPTVOL_LAB_VG"))
	var vols []string
	for _, k := range withVG {
		if lv, ok := k["lv"].(map[string]any); ok && k["result"] == "would destroy" {
			if v, _ := lv["volume"].(string); v != "" {
				vols = append(vols, v)
			}
		}
	}
	slices.Sort(vols)
	if exit != 0 || !slices.Equal(vols, []string{"dc-a1", "dc-a2"}) {
		t.Errorf("dry run with --vg: exit %d, keys %v; want the keys of dc-a1 and dc-a2, each shown with its volume", exit, withVG)
	}
	if _, err := a.mgr.Mount(ctx(t), "dc-a1", "a"); err != nil {
		t.Fatalf("after a dry run node A cannot mount: %v", err)
	}
	must(t, a.mgr.Unmount(ctx(t), "dc-a1", "a"))

	exit, done := decommission(t, srv, "lab-node-a", "--yes")
	if exit != 0 || len(done) != 2 || done[0]["result"] != "destroyed" || done[1]["result"] != "destroyed" {
		t.Fatalf("decommission: exit %d, keys %v; want 2 destroyed", exit, done)
	}

	_, err = a.mgr.Mount(ctx(t), "dc-a1", "a")
	if err == nil || !strings.Contains(err.Error(), "revoked or destroyed on the KMIP server") {
		t.Fatalf("node A mounts a volume of its after decommission: %v; want a refusal saying why", err)
	}
	if out, err := exec.Command("dmsetup", "info", "cryptvol-dc-a1").CombinedOutput(); err == nil {
		t.Errorf("the refused mount left a mapping:\n%s", out)
	}
	if b, err := os.ReadFile(filepath.Join(p2, "f")); err != nil || string(b) != "a2 data" {
		t.Errorf("the volume mounted during the decommission: %q, %v; want it readable until unmounted", b, err)
	}
	must(t, a.mgr.Unmount(ctx(t), "dc-a2", "a"))
	if _, err := a.mgr.Mount(ctx(t), "dc-a2", "b"); err == nil {
		t.Error("node A mounted dc-a2 again after its decommission")
	}

	pb, err := b.mgr.Mount(ctx(t), "dc-b1", "a")
	if err != nil {
		t.Fatalf("node B's volume after node A's decommission: %v", err)
	}
	must(t, os.WriteFile(filepath.Join(pb, "f"), []byte("b1 data"), 0o644))
	must(t, b.mgr.Unmount(ctx(t), "dc-b1", "a"))

	if exit, again := decommission(t, srv, "lab-node-a", "--yes"); exit != 0 || len(again) != 0 {
		t.Errorf("second decommission: exit %d, keys %v; want nothing left to do", exit, again)
	}

	// Node A's trail shows its refused mounts, with the reason.
	tb, err := os.ReadFile(a.trail)
	must(t, err)
	if !strings.Contains(string(tb), `"op":"volume.mount","volume":"dc-a1","mount_id":"a","result":"error","error":"`) ||
		!strings.Contains(string(tb), "revoked or destroyed") {
		t.Errorf("node A's audit trail lacks the refused mount:\n%s", tb)
	}
	files, _ := audit.Files(a.trail)
	if rep, err := audit.Verify(context.Background(), files, nil); err != nil || !rep.OK() {
		t.Errorf("node A's trail does not verify: %v %+v", err, rep)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
