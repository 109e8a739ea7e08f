package keys

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/internal/cost"
)

// env is a KMIP client wired to an in-process fake server over mutual TLS.
type env struct {
	pki    *testPKI
	fake   *fakeKMS
	server *testServer
	m      *KMIP
	logs   *bytes.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{pki: newTestPKI(t), fake: newFakeKMS(), logs: &bytes.Buffer{}}
	e.server = startServer(t, e.pki, e.fake, "127.0.0.1:0")
	e.m = e.client(t, e.pki.config(e.server.addr))
	return e
}

func (e *env) client(t *testing.T, cfg Config) *KMIP {
	t.Helper()
	log := logrus.New()
	log.SetOutput(&lockedWriter{w: e.logs})
	log.SetLevel(logrus.DebugLevel)
	m, err := NewKMIP(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// assertNoKeyBytes fails if s contains b raw, in hex or in base64.
func assertNoKeyBytes(t *testing.T, what, s string, b []byte) {
	t.Helper()
	for _, enc := range []string{string(b), hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b), fmt.Sprint(b), fmt.Sprintf("%#v", b)} {
		if strings.Contains(s, enc) {
			t.Fatalf("%s shows the key bytes: %q", what, s)
		}
	}
}

func TestCreateGetRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const name = "cryptvol/vg0/db"

	id, _, err := e.m.Create(ctx, name, "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	o := e.fake.obj(id)
	if o == nil {
		t.Fatalf("server holds no key %q", id)
	}
	if o.name != name || o.state != kmip.StateActive || o.alg != kmip.CryptographicAlgorithmAES || o.length != 256 ||
		o.usage != kmip.CryptographicUsageEncrypt|kmip.CryptographicUsageDecrypt {
		t.Fatalf("server key = name %q state %v alg %v length %d usage %v; want %q Active AES 256 encrypt|decrypt",
			o.name, o.state, o.alg, o.length, o.usage, name)
	}

	k, err := e.m.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(k.Bytes()) != 32 || !bytes.Equal(k.Bytes(), o.material) {
		t.Fatalf("Get returned %d bytes, not the server's 32-byte key", len(k.Bytes()))
	}
	k2, err := e.m.Get(ctx, id)
	if err != nil {
		t.Fatalf("second Get: %v", err)
	}
	if !bytes.Equal(k2.Bytes(), k.Bytes()) {
		t.Fatal("two Gets returned different bytes")
	}
	// Wiping one Key must not touch another.
	k2.Wipe()
	if !bytes.Equal(k.Bytes(), o.material) {
		t.Fatal("wiping one Key changed another")
	}
	k.Wipe()
	if k.Bytes() != nil {
		t.Fatal("Wipe left the bytes reachable")
	}
	assertNoKeyBytes(t, "logs", e.logs.String(), o.material)
}

// Get returns the key's names, every Name attribute the server answers, in
// the one request it always made (GetAttributes and Get batched): what
// the volume layer binds the key to its volume with, at no extra round trip.
func TestGetReturnsTheKeysNamesInItsOneRequest(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const name = "cryptvol/uuid/v1/0011223344556677"
	id, created, err := e.m.Create(ctx, name, "")
	if err != nil {
		t.Fatal(err)
	}
	created.Wipe()
	if got := created.Names(); !slices.Equal(got, []string{name}) {
		t.Errorf("Create's key has the names %q, want [%q]", got, name)
	}
	e.fake.addName(id, "second name")
	before := e.fake.msgs.Load()
	gctx, tally := cost.With(ctx)
	k, err := e.m.Get(gctx, id)
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	if got := k.Names(); !slices.Equal(got, []string{name, "second name"}) {
		t.Errorf("Get's key has the names %q, want [%q \"second name\"]", got, name)
	}
	if n, m := tally.KMIPRoundTrips(), e.fake.msgs.Load()-before; n != 1 || m != 1 {
		t.Errorf("Get took %d round trips (the server saw %d), want 1", n, m)
	}
	unnamed := e.fake.put("", kmip.StateActive, bytes.Repeat([]byte{7}, keyBytes), time.Now())
	k, err = e.m.Get(ctx, unnamed)
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	if got := k.Names(); len(got) != 0 {
		t.Errorf("a key without a name has the names %q", got)
	}
}

// Every round trip of a create is paid while the plugin holds the one KMIP
// connection, under docker's request deadline: a new name costs two requests
// (Create; Activate with the Locate that checks the name and the Get of the
// material), in an Object Group of the caller's choice too.
func TestCreateRoundTrips(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, _, err := e.m.Create(ctx, "cryptvol/vg0/warm", ""); err != nil { // connects and negotiates
		t.Fatal(err)
	}
	before := e.fake.msgs.Load()
	tctx, tally := cost.With(ctx)
	id, _, err := e.m.Create(tctx, "cryptvol/vg0/rt", NodeGroup("node1"))
	if err != nil {
		t.Fatal(err)
	}
	if n := e.fake.msgs.Load() - before; n != 2 {
		t.Fatalf("Create of a new name took %d requests, want 2", n)
	}
	// The request's cost tally (the plugin's request log) counts the same.
	if n := tally.KMIPRoundTrips(); n != 2 {
		t.Fatalf("the cost tally counted %d KMIP round trips, want 2", n)
	}
	gctx, gtally := cost.With(ctx)
	k, err := e.m.Get(gctx, id)
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	if n := gtally.KMIPRoundTrips(); n != 1 {
		t.Fatalf("Get: the cost tally counted %d KMIP round trips, want 1", n)
	}
	if o := e.fake.obj(id); o == nil || o.state != kmip.StateActive || len(e.fake.named("cryptvol/vg0/rt")) != 1 {
		t.Fatal("Create did not leave exactly one active key with the name")
	}
}

// A second Create of a name returns the first key, with its material, and
// the key it made meanwhile is destroyed.
func TestCreateIsIdempotent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id1, k1, err := e.m.Create(ctx, "cryptvol/vg0/a", "")
	if err != nil {
		t.Fatal(err)
	}
	id2, k2, err := e.m.Create(ctx, "cryptvol/vg0/a", "")
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 {
		t.Fatalf("Create twice returned %q then %q, want the same id", id1, id2)
	}
	if !bytes.Equal(k1.Bytes(), k2.Bytes()) || !bytes.Equal(k2.Bytes(), e.fake.obj(id1).material) {
		t.Fatal("the second Create did not return the kept key's material")
	}
	if n := len(e.fake.named("cryptvol/vg0/a")); n != 1 {
		t.Fatalf("server holds %d keys with the name, want 1", n)
	}
	other, _, err := e.m.Create(ctx, "cryptvol/vg0/b", "")
	if err != nil {
		t.Fatal(err)
	}
	if other == id1 {
		t.Fatal("a different name got the same key")
	}
}

// A Create resent after EOF makes two keys; the caller must get one id and
// the server must keep one key.
func TestCreateDestroysDuplicates(t *testing.T) {
	e := newEnv(t)
	e.fake.duplicateCreate = true
	id, _, err := e.m.Create(context.Background(), "cryptvol/vg0/dup", "")
	if err != nil {
		t.Fatal(err)
	}
	left := e.fake.named("cryptvol/vg0/dup")
	if len(left) != 1 || left[0].id != id || left[0].state != kmip.StateActive {
		t.Fatalf("after Create: server holds %d keys with the name (want exactly the returned Active key %q)", len(left), id)
	}
	if !strings.Contains(e.logs.String(), "destroying extra KMIP key") {
		t.Fatalf("the destroyed duplicate was not logged; logs:\n%s", e.logs)
	}
}

func TestCreateKeepsOldestActiveKey(t *testing.T) {
	e := newEnv(t)
	const name = "cryptvol/vg0/many"
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	newer := e.fake.put(name, kmip.StateActive, bytes.Repeat([]byte{1}, 32), base.Add(2*time.Hour))
	oldest := e.fake.put(name, kmip.StateActive, bytes.Repeat([]byte{2}, 32), base)
	pre := e.fake.put(name, kmip.StatePreActive, bytes.Repeat([]byte{3}, 32), base.Add(time.Hour))
	revoked := e.fake.put(name, kmip.StateDeactivated, bytes.Repeat([]byte{4}, 32), base.Add(3*time.Hour))

	id, _, err := e.m.Create(context.Background(), name, "")
	if err != nil {
		t.Fatal(err)
	}
	if id != oldest {
		t.Fatalf("Create returned %q, want the oldest Active key %q", id, oldest)
	}
	for _, gone := range []string{newer, pre, revoked} {
		if e.fake.obj(gone) != nil {
			t.Errorf("extra key %q still on the server", gone)
		}
	}
	if n := len(e.fake.named(name)); n != 1 {
		t.Errorf("%d keys carry the name after Create, want 1 (the key Create made is destroyed)", n)
	}
}

// A Create interrupted between Create and Activate leaves a PreActive key,
// which was never served (Get refuses it): the next Create's new Active key
// is kept and the leftover destroyed.
func TestCreateReplacesLeftoverPreActiveKey(t *testing.T) {
	e := newEnv(t)
	pre := e.fake.put("cryptvol/vg0/half", kmip.StatePreActive, bytes.Repeat([]byte{7}, 32), time.Now())
	id, k, err := e.m.Create(context.Background(), "cryptvol/vg0/half", "")
	if err != nil {
		t.Fatal(err)
	}
	left := e.fake.named("cryptvol/vg0/half")
	if id == pre || len(left) != 1 || left[0].id != id || left[0].state != kmip.StateActive {
		t.Fatalf("Create returned %q; the server holds %d keys with the name; want one, Active, not the leftover %q", id, len(left), pre)
	}
	if !bytes.Equal(k.Bytes(), left[0].material) {
		t.Fatal("Create did not return the kept key's material")
	}
}

// A Destroy interrupted after Revoke leaves a Deactivated key: Create of the
// name finishes destroying it and makes a fresh key.
func TestCreateReplacesRevokedKey(t *testing.T) {
	e := newEnv(t)
	old := e.fake.put("cryptvol/vg0/old", kmip.StateDeactivated, bytes.Repeat([]byte{7}, 32), time.Now())
	id, _, err := e.m.Create(context.Background(), "cryptvol/vg0/old", "")
	if err != nil {
		t.Fatal(err)
	}
	if id == old {
		t.Fatal("Create returned a revoked key")
	}
	if e.fake.obj(old) != nil {
		t.Fatal("revoked key was not destroyed")
	}
	if o := e.fake.obj(id); o == nil || o.state != kmip.StateActive {
		t.Fatal("Create did not make an active key")
	}
}

func TestCreateActivateFailureDestroysKey(t *testing.T) {
	e := newEnv(t)
	e.fake.failActivate = true
	id, _, err := e.m.Create(context.Background(), "cryptvol/vg0/noact", "")
	if err == nil {
		t.Fatalf("Create succeeded (id %q) although Activate failed", id)
	}
	if !strings.Contains(err.Error(), "activation failure injected") || !strings.Contains(err.Error(), e.server.addr) {
		t.Fatalf("error %q does not give the Activate failure and the endpoint", err)
	}
	if left := e.fake.named("cryptvol/vg0/noact"); len(left) != 0 {
		t.Fatalf("server still holds %d keys with the name after the failed Create", len(left))
	}
}

// kmip-go resends a request after EOF. When the first Activate or Revoke
// was carried out but its answer lost, the resent one fails although the
// key is where we want it: that must not fail Create or Destroy.
func TestResentActivateAndRevokeAreHarmless(t *testing.T) {
	e := newEnv(t)
	e.fake.resentAnswer = true
	ctx := context.Background()
	id, _, err := e.m.Create(ctx, "cryptvol/vg0/resent", "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if o := e.fake.obj(id); o == nil || o.state != kmip.StateActive {
		t.Fatal("Create did not leave its key active")
	}
	if err := e.m.Destroy(ctx, id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if e.fake.obj(id) != nil {
		t.Fatal("key survived Destroy")
	}
}

func TestGetRefusesKeysThatAreNotActive(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, st := range []kmip.State{kmip.StatePreActive, kmip.StateDeactivated, kmip.StateCompromised} {
		material := bytes.Repeat([]byte{0xA5}, 32)
		id := e.fake.put("cryptvol/vg0/s", st, material, time.Now())
		k, err := e.m.Get(ctx, id)
		if !errors.Is(err, ErrNotActive) {
			t.Fatalf("Get of a %v key = (%v, %v), want ErrNotActive", st, k, err)
		}
		if k != nil {
			t.Fatalf("Get of a %v key returned a key", st)
		}
		assertNoKeyBytes(t, "error", err.Error(), material)
	}
}

func TestGetAfterDestroyFails(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _, err := e.m.Create(ctx, "cryptvol/vg0/gone", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Destroy(ctx, id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if e.fake.obj(id) != nil {
		t.Fatal("key still on the server after Destroy")
	}
	_, err = e.m.Get(ctx, id)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Destroy: %v, want ErrNotFound", err)
	}
	want := fmt.Sprintf("kmip %s: get key %q: key not found", e.server.addr, id)
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q does not start with %q", err, want)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Fatal("a server's ItemNotFound reported as ErrUnavailable")
	}
}

func TestGetRejectsUnusableMaterial(t *testing.T) {
	e := newEnv(t)
	short := bytes.Repeat([]byte{0x5A}, 16)
	id := e.fake.put("cryptvol/vg0/short", kmip.StateActive, short, time.Now())
	k, err := e.m.Get(context.Background(), id)
	if err == nil || k != nil {
		t.Fatal("Get accepted a 16-byte key")
	}
	if !strings.Contains(err.Error(), "16 bytes, want 32") {
		t.Fatalf("error %q does not say the length is wrong", err)
	}
	assertNoKeyBytes(t, "error", err.Error(), short)

	id = e.fake.put("cryptvol/vg0/tdes", kmip.StateActive, bytes.Repeat([]byte{0x5B}, 32), time.Now())
	e.fake.mu.Lock()
	e.fake.objs[id].alg = kmip.CryptographicAlgorithm3DES
	e.fake.mu.Unlock()
	if k, err := e.m.Get(context.Background(), id); err == nil || k != nil || !strings.Contains(err.Error(), "want AES") {
		t.Fatalf("Get of a 3DES key = %v, want an error naming the algorithm", err)
	}
}

// Destroy takes one round trip whatever the key's state: Revoke and Destroy
// share a request, and a Revoke the key does not need fails harmlessly.
func TestDestroy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// Connected first: the connection's version negotiation is a round
	// trip of its own.
	if _, err := e.m.Locate(ctx, "cryptvol/vg0/none"); err != nil {
		t.Fatal(err)
	}
	destroy := func(what, id string) {
		t.Helper()
		before := e.fake.msgs.Load()
		if err := e.m.Destroy(ctx, id); err != nil {
			t.Fatalf("Destroy of %s: %v", what, err)
		}
		if n := e.fake.msgs.Load() - before; n != 1 {
			t.Errorf("Destroy of %s: %d round trips, want 1", what, n)
		}
		if e.fake.obj(id) != nil {
			t.Errorf("%s (key %q) survived Destroy", what, id)
		}
	}
	destroy("an unknown id", "4242")
	// Interrupted earlier after Revoke: still destroyed.
	destroy("a revoked key", e.fake.put("cryptvol/vg0/r", kmip.StateDeactivated, bytes.Repeat([]byte{1}, 32), time.Now()))
	destroy("a pre-active key", e.fake.put("cryptvol/vg0/p", kmip.StatePreActive, bytes.Repeat([]byte{1}, 32), time.Now()))
	id, _, err := e.m.Create(ctx, "cryptvol/vg0/d", "")
	if err != nil {
		t.Fatal(err)
	}
	destroy("an active key", id)
	destroy("a destroyed key", id)
}

// A server that keeps destroyed objects, or answers the pair in a way the
// batch does not settle, gets the step-by-step path: read the State, revoke
// only an Active key, destroy.
func TestDestroyFallsBackToSteps(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _, err := e.m.Create(ctx, "cryptvol/vg0/f", "")
	if err != nil {
		t.Fatal(err)
	}
	e.fake.failDestroyOnce.Store(true)
	if err := e.m.Destroy(ctx, id); err != nil {
		t.Fatalf("Destroy with a failed batched Destroy: %v", err)
	}
	if e.fake.obj(id) != nil {
		t.Fatal("key survived Destroy")
	}
	if n := e.fake.count(kmip.OperationGetAttributes); n != 1 {
		t.Errorf("the fallback read the State %d times, want 1", n)
	}
}

func TestLocate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.fake.put("cryptvol/vg0/x", kmip.StateActive, bytes.Repeat([]byte{1}, 32), time.Now())
	b := e.fake.put("cryptvol/vg0/x", kmip.StateDeactivated, bytes.Repeat([]byte{1}, 32), time.Now().Add(time.Second))
	e.fake.put("cryptvol/vg0/y", kmip.StateActive, bytes.Repeat([]byte{1}, 32), time.Now())
	ids, err := e.m.Locate(ctx, "cryptvol/vg0/x")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{a, b}) {
		t.Fatalf("Locate = %q, want %q", ids, []string{a, b})
	}
	ids, err = e.m.Locate(ctx, "cryptvol/vg0/none")
	if err != nil || len(ids) != 0 {
		t.Fatalf("Locate of an unused name = %q, %v; want none", ids, err)
	}
}

func TestNamesAndIDsAreValidatedBeforeSending(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	bad := []string{"", strings.Repeat("n", 257), "a\nb", "tab\there", "nul\x00", "bad utf8 \xff"}
	for _, s := range bad {
		if _, _, err := e.m.Create(ctx, s, ""); err == nil {
			t.Errorf("Create(%q) succeeded", s)
		} else if !strings.Contains(err.Error(), e.server.addr) || !strings.Contains(err.Error(), "name") {
			t.Errorf("Create(%q) error %q names neither the endpoint nor the name", s, err)
		}
		if _, err := e.m.Locate(ctx, s); err == nil {
			t.Errorf("Locate(%q) succeeded", s)
		}
		if _, err := e.m.Get(ctx, s); err == nil {
			t.Errorf("Get(%q) succeeded", s)
		}
		if err := e.m.Destroy(ctx, s); err == nil {
			t.Errorf("Destroy(%q) succeeded", s)
		}
	}
	if n := e.fake.totalOps(); n != 0 {
		t.Fatalf("invalid input reached the server (%d operations)", n)
	}
	if _, _, err := e.m.Create(ctx, strings.Repeat("n", 256), ""); err != nil {
		t.Fatalf("a 256-byte name was refused: %v", err)
	}
}

// One connection serves every call, including concurrent ones.
func TestConnectionIsReusedAndSerialized(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _, err := e.m.Create(ctx, "cryptvol/vg0/c", "")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			k, err := e.m.Get(ctx, id)
			if err != nil {
				errs <- err
				return
			}
			k.Wipe()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Get: %v", err)
	}
	if n := e.fake.conns.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1 reused connection", n)
	}
}

// A queue of calls is not a slow server: a call waiting behind others for
// the one connection is bounded by its caller's context, not by the
// per-call timeout (50 concurrent creates under load failed that way).
func TestQueuedCallsWaitLongerThanTheCallTimeout(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _, err := e.m.Create(ctx, "cryptvol/vg0/q", "")
	if err != nil {
		t.Fatal(err)
	}
	m := e.client(t, Config{Endpoint: e.server.addr, CAFile: e.pki.caFile, CertFile: e.pki.certFile, KeyFile: e.pki.keyFile, Timeout: time.Second})
	e.fake.delay.Store(int64(200 * time.Millisecond)) // 10 queued Gets: the last waits ~1.8s
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			k, err := m.Get(ctx, id)
			if err != nil {
				errs <- err
				return
			}
			k.Wipe()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("queued Get: %v", err)
	}
}

// A call whose caller gives up (docker's request deadline passing while a
// busy server works) is not a server outage: the calls queued behind it
// still run, and its error blames the deadline, not the server's timeout
// (tests/faults_lab_test.go TestLabConcurrentDistinctVolumes).
func TestCallerDeadlineDoesNotFailTheQueue(t *testing.T) {
	e := newEnv(t)
	id, _, err := e.m.Create(context.Background(), "cryptvol/vg0/d", "")
	if err != nil {
		t.Fatal(err)
	}
	e.fake.delay.Store(int64(300 * time.Millisecond))
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	first := make(chan error, 1)
	go func() { _, err := e.m.Get(short, id); first <- err }()
	time.Sleep(30 * time.Millisecond) // the first call holds the connection
	k, err := e.m.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get queued behind a call whose caller gave up: %v", err)
	}
	k.Wipe()
	err = <-first
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "deadline passed before the server answered") ||
		strings.Contains(err.Error(), "timeout "+e.m.cfg.Timeout.String()) {
		t.Fatalf("the call whose caller gave up: %v", err)
	}
}

// When the server is unreachable, the calls queued behind the one that
// found out fail with its error instead of each waiting a timeout more.
func TestQueuedCallsFailTogetherWhenTheServerIsSilent(t *testing.T) {
	pki := newTestPKI(t)
	ln := silentServer(t)
	e := &env{pki: pki, fake: newFakeKMS(), logs: &bytes.Buffer{}}
	cfg := pki.config(ln.Addr().String())
	cfg.Timeout = 500 * time.Millisecond
	m := e.client(t, cfg)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := m.Get(context.Background(), "1")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	d := time.Since(start)
	for err := range errs {
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), ln.Addr().String()) {
			t.Errorf("queued Get against a silent server: %v", err)
		}
	}
	// About one timeout for the queue (room for a loaded machine), not ten (5s).
	if d > 5*cfg.Timeout {
		t.Errorf("10 queued calls took %s to fail; the timeout is %s", d, cfg.Timeout)
	}
}

func TestServerDownFailsWithinTimeoutNamingEndpoint(t *testing.T) {
	pki := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now

	e := &env{pki: pki, fake: newFakeKMS(), logs: &bytes.Buffer{}}
	cfg := pki.config(addr)
	cfg.Timeout = 2 * time.Second
	m := e.client(t, cfg) // construction must not need the server
	start := time.Now()
	_, _, err = m.Create(context.Background(), "cryptvol/vg0/down", "")
	if err == nil {
		t.Fatal("Create succeeded with no server")
	}
	if d := time.Since(start); d > cfg.Timeout+time.Second {
		t.Fatalf("Create took %s to fail, timeout is %s", d, cfg.Timeout)
	}
	if !strings.HasPrefix(err.Error(), "kmip "+addr+": create key") || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %q should start with the endpoint and be ErrUnavailable", err)
	}
	t.Logf("error: %v", err)
}

// silentServer accepts connections and never answers, like a hung process
// or a black-holing firewall.
func silentServer(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	return ln
}

// A server that accepts the connection but never answers (a hung process,
// a black-holing firewall) costs one timeout, not a hang.
func TestSilentServerTimesOut(t *testing.T) {
	pki := newTestPKI(t)
	ln := silentServer(t)
	e := &env{pki: pki, fake: newFakeKMS(), logs: &bytes.Buffer{}}
	cfg := pki.config(ln.Addr().String())
	cfg.Timeout = 300 * time.Millisecond
	m := e.client(t, cfg)
	start := time.Now()
	_, err := m.Get(context.Background(), "1")
	d := time.Since(start)
	if err == nil {
		t.Fatal("Get succeeded against a silent server")
	}
	if d > 2*time.Second {
		t.Fatalf("Get took %s, timeout is %s", d, cfg.Timeout)
	}
	if !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "timeout 300ms") || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %q should name the endpoint and the timeout", err)
	}
	t.Logf("error after %s: %v", d, err)
}

// The server goes away and comes back: the same client recovers without
// being recreated.
func TestReconnectAfterServerRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _, err := e.m.Create(ctx, "cryptvol/vg0/r", "")
	if err != nil {
		t.Fatal(err)
	}
	// Straight after the stop: the request may be sent while the peer is
	// closing, which raced kmipclient's send against its reader closing the
	// request channel (ovh/kmip-go v0.8.1, found by -race). The synchronous
	// conn has no such channel.
	e.server.stop()
	if _, err := e.m.Get(ctx, id); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), e.server.addr) {
		t.Fatalf("Get with the server down = %v, want ErrUnavailable naming %s", err, e.server.addr)
	} else {
		t.Logf("server down: %v", err)
	}
	if _, err := e.m.Get(ctx, id); err == nil {
		t.Fatal("Get succeeded with the server still down")
	}
	e.server = startServer(t, e.pki, e.fake, e.server.addr)
	k, err := e.m.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get after the server came back: %v", err)
	}
	k.Wipe()
}

// A request that times out drops the connection, so a late answer can never
// be read as the answer to the next request.
func TestSlowAnswerDropsConnection(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	idA, _, err := e.m.Create(ctx, "cryptvol/vg0/a", "")
	if err != nil {
		t.Fatal(err)
	}
	idB, _, err := e.m.Create(ctx, "cryptvol/vg0/b", "")
	if err != nil {
		t.Fatal(err)
	}
	// The timeout bounds the reconnect after the slow answer too (TLS
	// and version negotiation), which a loaded machine makes slow: so
	// 2 s, with the server 2.5 times slower than it.
	slow := e.client(t, Config{Endpoint: e.server.addr, CAFile: e.pki.caFile, CertFile: e.pki.certFile, KeyFile: e.pki.keyFile, Timeout: 2 * time.Second})
	if k, err := slow.Get(ctx, idA); err != nil {
		t.Fatal(err)
	} else {
		k.Wipe()
	}
	e.fake.delay.Store(int64(5 * time.Second))
	if _, err := slow.Get(ctx, idA); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get of a slow server: %v, want ErrUnavailable", err)
	}
	e.fake.delay.Store(0)
	k, err := slow.Get(ctx, idB)
	if err != nil {
		t.Fatalf("Get after the slow answer: %v", err)
	}
	defer k.Wipe()
	if !bytes.Equal(k.Bytes(), e.fake.obj(idB).material) {
		t.Fatal("Get returned another key's bytes (a stale answer was read)")
	}
}

func TestNegotiatesOlderProtocolVersion(t *testing.T) {
	pki := newTestPKI(t)
	fake := newFakeKMS()
	fake.versions = []kmip.ProtocolVersion{kmip.V1_0, kmip.V1_1, kmip.V1_2}
	srv := startServer(t, pki, fake, "127.0.0.1:0")
	e := &env{pki: pki, fake: fake, logs: &bytes.Buffer{}}
	m := e.client(t, pki.config(srv.addr))
	if err := m.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	id, _, err := m.Create(context.Background(), "cryptvol/vg0/v12", "")
	if err != nil {
		t.Fatalf("Create against a KMIP 1.2 server: %v", err)
	}
	if got := fake.lastReq.Header.ProtocolVersion; got != kmip.V1_2 {
		t.Fatalf("requests use version %v, want 1.2", got)
	}
	k, err := m.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
}

func TestConfigValidation(t *testing.T) {
	pki := newTestPKI(t)
	serverOnlyCert, serverOnlyKey := pki.clientFiles(t, "serveronly", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	garbage := filepath.Join(pki.dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := pki.config("127.0.0.1:5696")
	good.Timeout = 0
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no endpoint", func(c *Config) { c.Endpoint = "" }, "Endpoint: no KMIP endpoint given"},
		{"no port", func(c *Config) { c.Endpoint = "127.0.0.1" }, "endpoint \"127.0.0.1\" is not host:port"},
		{"bad port", func(c *Config) { c.Endpoint = "kms:99999" }, "port \"99999\""},
		{"no host", func(c *Config) { c.Endpoint = ":5696" }, "endpoint \":5696\" is not host:port"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "Timeout -1s is negative"},
		{"no CA", func(c *Config) { c.CAFile = "" }, "CAFile is empty"},
		{"missing CA", func(c *Config) { c.CAFile = "/nonexistent/ca.pem" }, "CAFile: open /nonexistent/ca.pem"},
		{"CA not PEM", func(c *Config) { c.CAFile = garbage }, "holds no PEM certificate"},
		{"no cert", func(c *Config) { c.CertFile = "" }, "CertFile is empty"},
		{"no key", func(c *Config) { c.KeyFile = "" }, "KeyFile is empty"},
		{"missing cert", func(c *Config) { c.CertFile = "/nonexistent/c.pem" }, "CertFile: stat /nonexistent/c.pem"},
		{"missing key", func(c *Config) { c.KeyFile = "/nonexistent/c.key" }, "KeyFile: stat /nonexistent/c.key"},
		{"key does not match cert", func(c *Config) { c.KeyFile = serverOnlyKey }, "CertFile"},
		{"cert not for clients", func(c *Config) { c.CertFile, c.KeyFile = serverOnlyCert, serverOnlyKey }, "lacks clientAuth"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			m, err := NewKMIP(cfg, nil)
			if err == nil {
				t.Fatalf("NewKMIP accepted %+v", cfg)
			}
			if m != nil {
				t.Fatal("NewKMIP returned a client with an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}

	m, err := NewKMIP(good, nil)
	if err != nil {
		t.Fatalf("NewKMIP with a good config: %v", err)
	}
	if m.cfg.Timeout != DefaultTimeout || m.cfg.ServerName != "127.0.0.1" {
		t.Fatalf("defaults: timeout %s, server name %q; want %s and the endpoint's host", m.cfg.Timeout, m.cfg.ServerName, DefaultTimeout)
	}
	if m.tls.MinVersion != tls.VersionTLS12 || len(m.tls.Certificates) != 1 || m.tls.RootCAs == nil {
		t.Fatal("TLS config lacks the TLS 1.2 minimum, the client certificate or the CA pool")
	}
}

// A server whose certificate does not match ServerName is refused.
func TestServerNameIsVerified(t *testing.T) {
	e := newEnv(t)
	cfg := e.pki.config(e.server.addr)
	cfg.ServerName = "kms.example.org"
	m := e.client(t, cfg)
	_, err := m.Get(context.Background(), "1")
	if err == nil || !strings.Contains(err.Error(), "kms.example.org") {
		t.Fatalf("Get with a mismatched server name = %v, want a certificate error naming it", err)
	}
	t.Logf("error: %v", err)
	if e.fake.totalOps() != 0 {
		t.Fatal("request reached a server whose certificate did not match")
	}
}

func TestKeyFormattingNeverShowsBytes(t *testing.T) {
	b := []byte("0123456789abcdef0123456789ABCDEF")
	key := NewKey(slices.Clone(b))
	outs := []string{
		fmt.Sprintf("%v %+v %#v", key, key, key),
		fmt.Sprintf("%s %x %X %q %d", key, key, key, key, key),
		fmt.Sprintf("%v %+v %#v %s %x", *key, *key, *key, *key, *key),
		fmt.Sprint(key, *key), fmt.Sprintln(key),
	}
	var wrapped error = fmt.Errorf("with %v", key)
	outs = append(outs, wrapped.Error())
	log := logrus.New()
	var buf bytes.Buffer
	log.SetOutput(&buf)
	log.WithField("key", key).Info("text")
	log.SetFormatter(&logrus.JSONFormatter{})
	log.WithField("key", key).WithField("kv", *key).Info("json")
	outs = append(outs, buf.String())
	for _, s := range outs {
		assertNoKeyBytes(t, "formatted key", s, b)
		if !strings.Contains(s, "redacted") {
			t.Errorf("%q does not say the key is redacted", s)
		}
	}
	if !bytes.Equal(key.Bytes(), b) {
		t.Fatal("formatting changed the key")
	}
}

// A panic inside the KMIP client (kmip-go v0.8.1's send can panic on a
// channel its reader closed when the peer hung up) is an error of that
// call, the connection is dropped, and the next call dials afresh.
func TestClientPanicBecomesErrorAndDropsConnection(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _, err := e.m.Create(ctx, "cryptvol/vg0/p", "")
	if err != nil {
		t.Fatal(err)
	}
	err = e.m.run(ctx, "get", func(context.Context) error { panic("send on closed channel") })
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "send on closed channel") || !strings.Contains(err.Error(), e.server.addr) {
		t.Fatalf("err = %v, want ErrUnavailable naming the panic and the endpoint", err)
	}
	if e.m.conn != nil {
		t.Fatal("connection kept after a panic inside the client")
	}
	k, err := e.m.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get after the panic: %v", err)
	}
	k.Wipe()
}

func TestNamesListsEveryKeysNames(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, _, err := e.m.Create(ctx, "cryptvol/uuid/v1/0011223344556677", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := e.m.Create(ctx, "cryptvol/uuid/v2/8899aabbccddeeff", "")
	if err != nil {
		t.Fatal(err)
	}
	names, err := e.m.Names(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names[a], []string{"cryptvol/uuid/v1/0011223344556677"}) || !slices.Equal(names[b], []string{"cryptvol/uuid/v2/8899aabbccddeeff"}) || len(names) != 2 {
		t.Fatalf("names = %v", names)
	}
	if err := e.m.Destroy(ctx, a); err != nil {
		t.Fatal(err)
	}
	if names, err = e.m.Names(ctx); err != nil || len(names) != 1 || names[b] == nil {
		t.Fatalf("after destroy: %v, %v", names, err)
	}
}

// A server restarted while the connection sat idle: the next read-only
// call (the Get of a mount) redials once and succeeds, rather than failing
// the container's start with the old socket's EOF. A call that changes
// the server is not sent twice.
func TestIdleConnectionClosedByARestartIsRedialedForReads(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _, err := e.m.Create(ctx, "cryptvol/vg0/r", "")
	if err != nil {
		t.Fatal(err)
	}
	e.server.stop()
	e.server = startServer(t, e.pki, e.fake, e.server.addr)
	k, err := e.m.Get(ctx, id)
	if err != nil {
		t.Fatalf("the first Get after a restart: %v", err)
	}
	k.Wipe()
	e.server.stop()
	e.server = startServer(t, e.pki, e.fake, e.server.addr)
	before := e.fake.conns.Load()
	if _, _, err := e.m.Create(ctx, "cryptvol/vg0/r2", ""); err == nil {
		t.Logf("a Create after a restart succeeded on a new connection")
	} else if got := e.fake.conns.Load() - before; got != 0 {
		t.Fatalf("a Create that failed on the old connection dialed %d new ones: a change is never resent", got)
	}
}
