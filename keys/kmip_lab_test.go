//go:build lab

package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// labKMIP connects to the real PyKMIP server described by CRYPTVOL_KMIP_*.
func labKMIP(t *testing.T) *KMIP {
	t.Helper()
	return labKMIPVia(t, "")
}

// labKMIPVia is labKMIP with other endpoints listed before the real one.
func labKMIPVia(t *testing.T, before string) *KMIP {
	t.Helper()
	ep := os.Getenv("CRYPTVOL_KMIP_ENDPOINT")
	if ep == "" {
		t.Skip("CRYPTVOL_KMIP_ENDPOINT is not set")
	}
	if before != "" {
		ep = before + "," + ep
	}
	log := logrus.New()
	log.SetLevel(logrus.InfoLevel)
	m, err := NewKMIP(Config{
		Endpoint:   ep,
		CAFile:     os.Getenv("CRYPTVOL_KMIP_CA"),
		CertFile:   os.Getenv("CRYPTVOL_KMIP_CERT"),
		KeyFile:    os.Getenv("CRYPTVOL_KMIP_KEY"),
		ServerName: os.Getenv("CRYPTVOL_KMIP_SERVER_NAME"),
		Timeout:    20 * time.Second,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestLabKMIPLifecycle(t *testing.T) {
	m := labKMIP(t)
	ctx := context.Background()
	name := fmt.Sprintf("cryptvol/labtest/keys-%d", time.Now().UnixNano())

	id, created, err := m.Create(ctx, name, "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer created.Wipe()
	t.Cleanup(func() { _ = m.Destroy(context.Background(), id) })
	t.Logf("created key %q named %q", id, name)

	k1, err := m.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer k1.Wipe()
	if len(k1.Bytes()) != 32 {
		t.Fatalf("Get returned %d bytes, want 32", len(k1.Bytes()))
	}
	// The material came in Create's own request (Activate, Locate, Get).
	if !bytes.Equal(created.Bytes(), k1.Bytes()) {
		t.Fatal("Create returned other material than Get serves for its key")
	}
	if bytes.Equal(k1.Bytes(), make([]byte, 32)) {
		t.Fatal("Get returned an all-zero key")
	}
	// PyKMIP answers the Name asked with the State, in Get's one request.
	if got := k1.Names(); !slices.Equal(got, []string{name}) {
		t.Fatalf("Get returned the names %q, want [%q]", got, name)
	}

	// Latency of Get on the reused connection (the Mount path).
	const n = 20
	start := time.Now()
	for range n {
		k, err := m.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !bytes.Equal(k.Bytes(), k1.Bytes()) {
			k.Wipe()
			t.Fatal("second Get returned different bytes")
		}
		k.Wipe()
	}
	t.Logf("Get latency on a reused connection: %s per call (%d calls)", time.Since(start)/n, n)

	again, _, err := m.Create(ctx, name, "")
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if again != id {
		t.Fatalf("second Create with the same name returned %q, want %q", again, id)
	}

	ids, err := m.Locate(ctx, name)
	if err != nil {
		t.Fatalf("Locate: %v", err)
	}
	if !slices.Equal(ids, []string{id}) {
		t.Fatalf("Locate before destroy = %q, want [%q]", ids, id)
	}

	if err := m.Destroy(ctx, id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if k, err := m.Get(ctx, id); err == nil {
		k.Wipe()
		t.Fatal("Get after Destroy succeeded")
	} else if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNotActive) {
		t.Fatalf("Get after Destroy: %v, want ErrNotFound or ErrNotActive", err)
	} else {
		t.Logf("Get after Destroy: %v", err)
	}
	ids, err = m.Locate(ctx, name)
	if err != nil {
		t.Fatalf("Locate after destroy: %v", err)
	}
	if len(ids) != 0 {
		t.Fatalf("Locate after destroy = %q, want none", ids)
	}
	if err := m.Destroy(ctx, id); err != nil {
		t.Fatalf("second Destroy of the same id: %v", err)
	}
}

// A key left PreActive or Revoked on the real server is not served, and
// Create of its name replaces it.
func TestLabKMIPStatesAndRepair(t *testing.T) {
	m := labKMIP(t)
	ctx := context.Background()
	name := fmt.Sprintf("cryptvol/labtest/repair-%d", time.Now().UnixNano())

	// Leave a PreActive key with the name, as a Create interrupted before
	// its Activate would.
	var pre string
	err := m.run(ctx, "test create pre-active", func(ctx context.Context) error {
		var err error
		pre, err = m.createPreActive(ctx, name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Destroy(context.Background(), pre) })
	if k, err := m.Get(ctx, pre); !errors.Is(err, ErrNotActive) {
		k.Wipe()
		t.Fatalf("Get of a pre-active key: %v, want ErrNotActive", err)
	}
	// Create keeps its own new Active key and destroys the leftover, which
	// was never served.
	id, created, err := m.Create(ctx, name, "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = m.Destroy(context.Background(), id) })
	if ids, err := m.Locate(ctx, name); err != nil || !slices.Equal(ids, []string{id}) || id == pre {
		t.Fatalf("after Create: Locate = %q, %v; want only the new key %q (the pre-active %q destroyed)", ids, err, id, pre)
	}
	k, err := m.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get after repair: %v", err)
	}
	if !bytes.Equal(k.Bytes(), created.Bytes()) {
		t.Fatal("Create returned other material than Get serves for its key")
	}
	k.Wipe()
	created.Wipe()

	// Revoked but not destroyed (a Destroy interrupted after Revoke): Get
	// refuses it, and Create of the name replaces it with a fresh key.
	if err := m.run(ctx, "test revoke", func(ctx context.Context) error { return m.revoke(ctx, id) }); err != nil {
		t.Fatal(err)
	}
	if k, err := m.Get(ctx, id); !errors.Is(err, ErrNotActive) {
		k.Wipe()
		t.Fatalf("Get of a revoked key: %v, want ErrNotActive", err)
	}
	fresh, _, err := m.Create(ctx, name, "")
	if err != nil {
		t.Fatalf("Create over a revoked key: %v", err)
	}
	t.Cleanup(func() { _ = m.Destroy(context.Background(), fresh) })
	if fresh == id {
		t.Fatal("Create returned the revoked key")
	}
	ids, err := m.Locate(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{fresh}) {
		t.Fatalf("Locate = %q, want only the fresh key %q (the revoked one destroyed)", ids, fresh)
	}
}

// KMIP failover against the real server: a refusing endpoint and a silent
// one (accepts, never answers) listed before PyKMIP. Create, Get and
// Destroy are served by PyKMIP within one call's timeout each.
func TestLabKMIPFailover(t *testing.T) {
	refused := closedAddr(t)
	silent, accepted := countingSilentServer(t)
	m := labKMIPVia(t, refused+","+silent)
	ctx := context.Background()
	name := fmt.Sprintf("cryptvol/labtest/failover-%d", time.Now().UnixNano())
	id, created, err := m.Create(ctx, name, "")
	if err != nil {
		t.Fatalf("Create past a refusing and a silent endpoint: %v", err)
	}
	defer created.Wipe()
	k, err := m.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	same := bytes.Equal(k.Bytes(), created.Bytes())
	k.Wipe()
	if !same {
		t.Fatal("Get served other material than Create returned")
	}
	if err := m.Destroy(ctx, id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("the silent endpoint saw %d connections, want 1 (the connection to PyKMIP is kept)", n)
	}
}
