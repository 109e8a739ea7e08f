package keys

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ovh/kmip-go"
)

// A trashed volume's key: Deactivate moves it to Deactivated and says yes
// again when repeated or when its answer was lost (a resent Revoke fails on
// the key the first one revoked); Get no longer serves it, GetDeactivated
// does, with its names; a Compromised key is served by neither; an unknown
// id is ErrNotFound; and Destroy takes a Deactivated key.
func TestDeactivateThenGetDeactivatedOverAnInMemoryLink(t *testing.T) {
	fake := newFakeKMS()
	m := newMemKMIP(t, fake)
	ctx := context.Background()
	id, k, err := m.Create(ctx, "cryptvol/u/a/0123456789abcdef", "")
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	if err := m.Deactivate(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st := fake.obj(id).state; st != kmip.StateDeactivated {
		t.Fatalf("state after Deactivate = %v, want Deactivated", st)
	}
	if err := m.Deactivate(ctx, id); err != nil {
		t.Errorf("deactivating a Deactivated key again: %v", err)
	}
	if _, err := m.Get(ctx, id); !errors.Is(err, ErrNotActive) {
		t.Errorf("Get of a Deactivated key: %v, want ErrNotActive", err)
	}
	got, err := m.GetDeactivated(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), fake.obj(id).material) || len(got.Names()) != 1 || got.Names()[0] != "cryptvol/u/a/0123456789abcdef" {
		t.Errorf("GetDeactivated returned other material or names %q", got.Names())
	}
	got.Wipe()

	fake.resentAnswer = true
	id2, k2, err := m.Create(ctx, "cryptvol/u/b/0123456789abcdef", "")
	if err != nil {
		t.Fatal(err)
	}
	k2.Wipe()
	if err := m.Deactivate(ctx, id2); err != nil {
		t.Errorf("a Deactivate whose first answer was lost: %v", err)
	}
	fake.resentAnswer = false

	c := fake.put("cryptvol/u/c/0123456789abcdef", kmip.StateCompromised, bytes.Repeat([]byte{7}, keyBytes), fake.clock)
	if _, err := m.GetDeactivated(ctx, c); !errors.Is(err, ErrNotActive) {
		t.Errorf("GetDeactivated of a Compromised key: %v, want ErrNotActive", err)
	}
	if err := m.Deactivate(ctx, c); err == nil {
		t.Error("Deactivate of a Compromised key succeeded")
	}
	if err := m.Deactivate(ctx, "999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Deactivate of an unknown id: %v, want ErrNotFound", err)
	}
	if err := m.Destroy(ctx, id); err != nil || fake.obj(id) != nil {
		t.Errorf("Destroy of a Deactivated key: %v (still there: %t)", err, fake.obj(id) != nil)
	}
}
