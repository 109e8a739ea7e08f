//go:build lab

package tests

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/internal/kmiplab"
	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/volume"
)

func kmipAs(t *testing.T, srv *kmiplab.Server, identity string) *keys.KMIP {
	t.Helper()
	cert, key := srv.Identity(identity)
	k, err := keys.NewKMIP(keys.Config{Endpoint: srv.Endpoint, CAFile: srv.CAFile, CertFile: cert, KeyFile: key,
		ServerName: srv.ServerName, Timeout: 20 * time.Second, Policy: srv.Policy}, quietLog())
	must(t, err)
	t.Cleanup(func() { k.Close() })
	return k
}

// Requirement: "Two tenants: each creates volumes; tenant B's identity
// cannot Get tenant A's key." Against PyKMIP, which gives each key to the
// identity that made it. A tenant's volume works like any other; the
// plugin's own identity cannot fetch its key either; a decommission of the
// node finds the tenants' keys too (they carry the node's group). A
// snapshot stays with its source's tenant.
func TestLabTenantsKeysAreTheirOwn(t *testing.T) {
	if os.Getenv("CRYPTVOL_LAB_VG") == "" {
		t.Skip("CRYPTVOL_LAB_VG is set only inside the lab guest")
	}
	srv := kmiplab.Start(t)
	n := newNode(t, srv, "client", "lab-node-t", srv.TenantsDir())
	if err := n.mgr.Create(ctx(t), "tn-x", map[string]string{"tenant": "tenant-c"}); err == nil {
		t.Error("a tenant without an identity in the tenants directory was accepted")
	}
	keyOf := map[string]string{}
	for vol, tenant := range map[string]string{"tn-a": "tenant-a", "tn-b": "tenant-b"} {
		n.createWith(t, vol, map[string]string{"tenant": tenant})
		p, err := n.mgr.Mount(ctx(t), vol, "a")
		must(t, err)
		must(t, os.WriteFile(filepath.Join(p, "f"), []byte(tenant), 0o644))
		must(t, n.mgr.Unmount(ctx(t), vol, "a"))
		v, err := n.mgr.Get(ctx(t), vol)
		must(t, err)
		if v.Status[volume.StatusTenant] != tenant {
			t.Errorf("%s: inspect shows tenant %v, want %s", vol, v.Status[volume.StatusTenant], tenant)
		}
		keyOf[tenant] = keyID(t, v)
	}

	a, b, own := kmipAs(t, srv, "tenant-a"), kmipAs(t, srv, "tenant-b"), kmipAs(t, srv, "client")
	c := context.Background()
	if k, err := a.Get(c, keyOf["tenant-a"]); err != nil {
		t.Errorf("tenant A cannot Get its own key: %v", err)
	} else {
		k.Wipe()
	}
	if _, err := b.Get(c, keyOf["tenant-a"]); err == nil {
		t.Error("tenant B's identity fetched tenant A's key")
	}
	if _, err := a.Get(c, keyOf["tenant-b"]); err == nil {
		t.Error("tenant A's identity fetched tenant B's key")
	}
	if _, err := own.Get(c, keyOf["tenant-a"]); err == nil {
		t.Error("the plugin's own identity fetched a tenant's key")
	}
	listed, err := kmipAs(t, srv, "admin").Group(c, keys.NodeGroup("lab-node-t"))
	must(t, err)
	if len(listed) != 2 {
		t.Errorf("the node's group lists %d keys, want the 2 tenant keys: %+v", len(listed), listed)
	}
	// Mounting again goes through the tenant's identity (the plugin's own
	// could not fetch the key).
	p, err := n.mgr.Mount(ctx(t), "tn-b", "a")
	must(t, err)
	if got, _ := os.ReadFile(filepath.Join(p, "f")); string(got) != "tenant-b" {
		t.Errorf("tn-b holds %q", got)
	}
	must(t, n.mgr.Unmount(ctx(t), "tn-b", "a"))

	// A snapshot of tenant A's volume holds A's data under the same volume
	// key, so it is A's: its key is made through A's identity, which alone
	// fetches it, and a clone for tenant B is refused, making nothing.
	n.createWith(t, "tn-a-snap", map[string]string{"from": "tn-a", "readonly": "true"})
	v, err := n.mgr.Get(ctx(t), "tn-a-snap")
	must(t, err)
	if v.Status[volume.StatusTenant] != "tenant-a" {
		t.Errorf("the snapshot of tenant A's volume shows tenant %v", v.Status[volume.StatusTenant])
	}
	snapKey := keyID(t, v)
	if k, err := a.Get(c, snapKey); err != nil {
		t.Errorf("tenant A cannot Get the key of its volume's snapshot: %v", err)
	} else {
		k.Wipe()
	}
	if _, err := own.Get(c, snapKey); err == nil {
		t.Error("the plugin's own identity fetched the key of a tenant's snapshot")
	}
	if err := n.mgr.Create(ctx(t), "tn-a-to-b", map[string]string{"from": "tn-a", "tenant": "tenant-b"}); err == nil {
		t.Error("a clone of tenant A's volume for tenant B was made")
		_ = n.mgr.Remove(context.Background(), "tn-a-to-b")
	}
	if _, err := n.mgr.Get(ctx(t), "tn-a-to-b"); err == nil {
		t.Error("the refused clone left a volume")
	}
}
