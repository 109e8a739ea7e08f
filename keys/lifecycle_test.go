package keys

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/kmipserver"
	"github.com/ovh/kmip-go/ttlv"
)

// memLink is a link straight to an in-memory server's executor: no TLS and
// no socket. Messages still go through TTLV both ways, as on the wire: the
// server decodes payloads into its own types. The key lifecycle above link
// cannot tell.
type memLink struct{ exec *kmipserver.BatchExecutor }

func (l memLink) roundtrip(ctx context.Context, msg *kmip.RequestMessage) (*kmip.ResponseMessage, error) {
	var req kmip.RequestMessage
	if err := ttlv.UnmarshalTTLV(ttlv.MarshalTTLV(msg), &req); err != nil {
		return nil, err
	}
	var resp kmip.ResponseMessage
	if err := ttlv.UnmarshalTTLV(ttlv.MarshalTTLV(l.exec.HandleRequest(ctx, &req)), &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (memLink) spent() bool { return false }

func (memLink) close() {}

// newMemKMIP is a KMIP whose connections are memLinks to fake.
func newMemKMIP(t *testing.T, fake *fakeKMS) *KMIP {
	t.Helper()
	m, err := NewKMIP(newTestPKI(t).config("kmip.invalid:5696"), nil)
	if err != nil {
		t.Fatal(err)
	}
	exec := fake.executor()
	m.dial = func(context.Context, string) (link, error) { return memLink{exec}, nil }
	return m
}

// The lifecycle rules over a memLink: a create that finds its name taken
// reuses the key, Get serves only Active keys, a destroyed key is gone and
// destroying it again is done. Round trips are counted as the server sees
// them (DiscoverVersions included).
func TestLifecycleOverAnInMemoryLink(t *testing.T) {
	fake := newFakeKMS()
	m := newMemKMIP(t, fake)
	ctx := context.Background()

	id, _, err := m.Create(ctx, "cryptvol/vg0/a", "")
	if err != nil {
		t.Fatal(err)
	}
	// DiscoverVersions; Create; Activate batched with Locate and Get.
	if n := fake.msgs.Load(); n != 3 {
		t.Errorf("first create: %d round trips, want 3", n)
	}
	again, _, err := m.Create(ctx, "cryptvol/vg0/a", "")
	if err != nil || again != id {
		t.Fatalf("create of a taken name = %q, %v; want the existing key %q", again, err, id)
	}
	// Create; Activate, Locate, Get; then the rule: Locate, each key's State
	// and Initial Date, the new key's Destroy, the kept key's Get.
	if n := fake.msgs.Load(); n != 10 {
		t.Errorf("create of a taken name: %d round trips in all, want 10", n)
	}
	if len(fake.named("cryptvol/vg0/a")) != 1 {
		t.Error("a create of a taken name made another key")
	}
	k, err := m.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Bytes(), fake.obj(id).material) || len(k.Bytes()) != keyBytes {
		t.Error("Get did not return the key's material")
	}
	k.Wipe()
	if err := m.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	if fake.obj(id) != nil {
		t.Fatal("the key is still on the server after Destroy")
	}
	if err := m.Destroy(ctx, id); err != nil {
		t.Fatalf("destroying a key already gone: %v", err)
	}
	if _, err := m.Get(ctx, id); err == nil {
		t.Fatal("Get of a destroyed key succeeded")
	}
}

// Create's rule for keys already carrying the name: the oldest Active one is
// kept and every other copy destroyed, and a PreActive key is not served.
func TestCreateKeepsTheOldestActiveKeyOverAnInMemoryLink(t *testing.T) {
	fake := newFakeKMS()
	m := newMemKMIP(t, fake)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	material := func(b byte) []byte { return bytes.Repeat([]byte{b}, keyBytes) }
	newer := fake.put("cryptvol/vg0/b", kmip.StateActive, material(1), t0.Add(time.Hour))
	oldest := fake.put("cryptvol/vg0/b", kmip.StateActive, material(2), t0)
	pre := fake.put("cryptvol/vg0/b", kmip.StatePreActive, material(3), t0.Add(2*time.Hour))

	if _, err := m.Get(ctx, pre); !errors.Is(err, ErrNotActive) {
		t.Fatalf("Get of a PreActive key = %v, want ErrNotActive", err)
	}
	id, _, err := m.Create(ctx, "cryptvol/vg0/b", "")
	if err != nil || id != oldest {
		t.Fatalf("Create = %q, %v; want the oldest Active key %q", id, err, oldest)
	}
	if fake.obj(newer) != nil || fake.obj(pre) != nil {
		t.Fatalf("the other keys named like it are not destroyed: %+v", fake.named("cryptvol/vg0/b"))
	}
}
