package keys

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/ovh/kmip-go"
)

// Decommission's half in keys: a node's keys carry its Object Group and
// policy, Group finds exactly them with their names, and Compromise leaves
// each destroyed whatever its state; a second run finds nothing to do.
func TestGroupFindsANodesKeysAndCompromiseDestroysThem(t *testing.T) {
	fake := newFakeKMS()
	ctx := context.Background()
	nodeA := newMemKMIP(t, fake)
	nodeA.cfg.Group, nodeA.cfg.Policy = NodeGroup("node-a"), "cryptvol"
	nodeB := newMemKMIP(t, fake)
	nodeB.cfg.Group = NodeGroup("node-b")
	// Share one server: newMemKMIP gives each its own executor over fake.

	a1, k, err := nodeA.Create(ctx, "cryptvol/vg-a/one/01", "")
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	a2, k, err := nodeA.Create(ctx, "cryptvol/vg-a/two/02", "")
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	b1, k, err := nodeB.Create(ctx, "cryptvol/vg-b/one/03", "")
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	if o := fake.obj(a1); !slices.Equal(o.groups, []string{"cryptvol-node:node-a"}) || o.policy != "cryptvol" {
		t.Fatalf("node A's key has groups %q, policy %q; want [cryptvol-node:node-a], cryptvol", o.groups, o.policy)
	}
	if o := fake.obj(b1); o.policy != "" {
		t.Fatalf("node B set no policy, yet its key has %q", o.policy)
	}
	// One key revoked already (a half-done earlier decommission).
	if err := nodeA.revoke(ctx, a2); err != nil {
		t.Fatal(err)
	}

	admin := newMemKMIP(t, fake)
	got, err := admin.Group(ctx, NodeGroup("node-a"))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, ki := range got {
		ids = append(ids, ki.ID)
		if len(ki.Names) != 1 || ki.State == "" {
			t.Errorf("key %s: names %q state %q; want its one name and its state", ki.ID, ki.Names, ki.State)
		}
	}
	slices.Sort(ids)
	if want := []string{a1, a2}; !slices.Equal(ids, want) {
		t.Fatalf("node A's group lists %q, want %q", ids, want)
	}

	for _, id := range ids {
		if gone, err := admin.Compromise(ctx, id); err != nil || gone {
			t.Fatalf("Compromise(%s) = gone %v, %v; want it destroyed now", id, gone, err)
		}
	}
	for _, id := range ids {
		if _, err := nodeA.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of decommissioned key %s: %v, want ErrNotFound", id, err)
		}
		if gone, err := admin.Compromise(ctx, id); err != nil || !gone {
			t.Errorf("second Compromise(%s) = gone %v, %v; want gone", id, gone, err)
		}
	}
	if got, err := admin.Group(ctx, NodeGroup("node-a")); err != nil || len(got) != 0 {
		t.Errorf("after decommission node A's group lists %v, %v; want nothing", got, err)
	}
	if k, err := nodeB.Get(ctx, b1); err != nil {
		t.Errorf("node B's key after node A's decommission: %v", err)
	} else {
		k.Wipe()
	}
	if fake.count(kmip.OperationRevoke) != 1+2+2 {
		t.Errorf("revokes: %d, want 5 (one for the setup, one per key per Compromise)", fake.count(kmip.OperationRevoke))
	}
}

func TestGroupAndPolicySettingsAreChecked(t *testing.T) {
	pki := newTestPKI(t)
	cfg := pki.config("kmip.invalid:5696")
	cfg.Group = "node\x00a"
	if _, err := NewKMIP(cfg, nil); err == nil {
		t.Fatal("a group with a NUL byte was accepted")
	}
	cfg.Group, cfg.Policy = "", string(make([]byte, 300))
	if _, err := NewKMIP(cfg, nil); err == nil {
		t.Fatal("a 300-byte policy name was accepted")
	}
}

// A key made for another node's volume (a rotation in a shared group) goes
// in the group the caller names, not the client's own, in the same one
// Create request; "" keeps the client's group; a bad group is refused
// before anything is sent.
func TestCreateInAGroupOtherThanTheClients(t *testing.T) {
	fake := newFakeKMS()
	ctx := context.Background()
	node2 := newMemKMIP(t, fake)
	node2.cfg.Group = NodeGroup("node2")

	own, k, err := node2.Create(ctx, "cryptvol/vg/own/01", "")
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	creates := fake.count(kmip.OperationCreate)
	other, k, err := node2.Create(ctx, "cryptvol/vg/theirs/02", NodeGroup("node1"))
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	if got := fake.count(kmip.OperationCreate) - creates; got != 1 {
		t.Errorf("Create with a group sent %d Create operations, want 1", got)
	}
	if o := fake.obj(own); !slices.Equal(o.groups, []string{"cryptvol-node:node2"}) {
		t.Errorf("key made with group \"\" has groups %q, want the client's [cryptvol-node:node2]", o.groups)
	}
	if o := fake.obj(other); !slices.Equal(o.groups, []string{"cryptvol-node:node1"}) {
		t.Errorf("key made for node1 has groups %q, want [cryptvol-node:node1]", o.groups)
	}
	ops := fake.totalOps()
	if _, _, err := node2.Create(ctx, "cryptvol/vg/bad/03", "node\x00one"); err == nil {
		t.Error("a group with a NUL byte was accepted")
	}
	if fake.totalOps() != ops {
		t.Error("a Create with a bad group reached the server")
	}
}

// ObjectGroups reads each key's group in one round trip, from the server:
// a key in no group has "", one in two has both, and an id the server does
// not know is left out.
func TestObjectGroupsInOneRoundTrip(t *testing.T) {
	fake := newFakeKMS()
	ctx := context.Background()
	m := newMemKMIP(t, fake)
	m.cfg.Group = NodeGroup("node2")
	a, k, err := m.Create(ctx, "cryptvol/vg/a/01", "")
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	b, k, err := m.Create(ctx, "cryptvol/vg/b/02", NodeGroup("node1"))
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	fake.mu.Lock()
	fake.objs[b].groups = append(fake.objs[b].groups, "extra")
	fake.mu.Unlock()
	none := fake.put("cryptvol/vg/c/03", kmip.StateActive, make([]byte, keyBytes), fake.clock)
	before := fake.msgs.Load()
	got, err := m.ObjectGroups(ctx, []string{a, b, none, "999"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{a: "cryptvol-node:node2", b: "cryptvol-node:node1,extra", none: ""}
	if !maps.Equal(got, want) {
		t.Errorf("ObjectGroups = %v, want %v", got, want)
	}
	if n := fake.msgs.Load() - before; n != 1 {
		t.Errorf("ObjectGroups took %d round trips, want 1", n)
	}
}
