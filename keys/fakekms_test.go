package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/kmipserver"
	"github.com/ovh/kmip-go/payloads"
)

func TestMain(m *testing.M) {
	// kmipserver logs every connection through slog's default logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

// fakeKMS is an in-memory KMIP key store that behaves like PyKMIP 0.10 where
// it matters here: ids "1", "2", ...; Get serves keys in any state; Destroy
// refuses Active keys; Revoke for a reason other than compromise needs an
// Active key; Locate returns the newest first; destroyed objects are deleted.
type fakeKMS struct {
	mu      sync.Mutex
	objs    map[string]*fakeObj
	next    int
	clock   time.Time
	ops     map[kmip.Operation]int
	msgs    atomic.Int32 // request messages (round trips), DiscoverVersions included
	conns   atomic.Int32
	lastReq *kmip.RequestMessage

	// Fault injection.
	duplicateCreate bool                   // every Create makes two keys, as a request resent after EOF would
	resentAnswer    bool                   // Activate and Revoke act, then fail as a resent request would
	failActivate    bool                   // Activate fails
	failDestroyOnce atomic.Bool            // the next Destroy fails without acting
	delay           atomic.Int64           // nanoseconds to stall each request
	beforeAnswer    atomic.Pointer[func()] // run once, on the next request, before it is answered
	versions        []kmip.ProtocolVersion // nil: kmip-go's default (1.0-1.4)
}

type fakeObj struct {
	id       string
	name     string
	more     []string // further Name attributes, after name
	state    kmip.State
	alg      kmip.CryptographicAlgorithm
	length   int32
	usage    kmip.CryptographicUsageMask
	material []byte
	initial  time.Time
	groups   []string // Object Group attributes
	policy   string   // Operation Policy Name
	// opaque is an Opaque Object's value (Register); nil for keys.
	opaque []byte
}

func (o *fakeObj) objectType() kmip.ObjectType {
	if o.opaque != nil {
		return kmip.ObjectTypeOpaqueObject
	}
	return kmip.ObjectTypeSymmetricKey
}

func newFakeKMS() *fakeKMS {
	return &fakeKMS{
		objs:  map[string]*fakeObj{},
		ops:   map[kmip.Operation]int{},
		clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// put stores a key directly, bypassing the protocol.
func (f *fakeKMS) put(name string, state kmip.State, material []byte, initial time.Time) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	id := strconv.Itoa(f.next)
	f.objs[id] = &fakeObj{id: id, name: name, state: state, alg: kmip.CryptographicAlgorithmAES,
		length: int32(len(material) * 8), material: material, initial: initial}
	return id
}

// addName gives the key id one more Name attribute.
func (f *fakeKMS) addName(id, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs[id].more = append(f.objs[id].more, name)
}

func ptr[T any](v T) *T { return &v }

func (f *fakeKMS) obj(id string) *fakeObj {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.objs[id]; ok {
		c := *o
		return &c
	}
	return nil
}

func (f *fakeKMS) named(name string) []*fakeObj {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fakeObj
	for _, o := range f.objs {
		if o.name == name {
			c := *o
			out = append(out, &c)
		}
	}
	return out
}

func (f *fakeKMS) count(op kmip.Operation) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops[op]
}

func (f *fakeKMS) totalOps() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.ops {
		n += c
	}
	return n
}

func (f *fakeKMS) lookup(id string) (*fakeObj, error) {
	o, ok := f.objs[id]
	if !ok {
		return nil, kmipserver.Errorf(kmip.ResultReasonItemNotFound, "Could not locate object: %s", id)
	}
	return o, nil
}

func (f *fakeKMS) newKey(name string, alg kmip.CryptographicAlgorithm, length int32, usage kmip.CryptographicUsageMask) string {
	f.next++
	f.clock = f.clock.Add(time.Second)
	id := strconv.Itoa(f.next)
	b := make([]byte, length/8)
	_, _ = rand.Read(b)
	f.objs[id] = &fakeObj{id: id, name: name, state: kmip.StatePreActive, alg: alg, length: length, usage: usage, material: b, initial: f.clock}
	return id
}

func (f *fakeKMS) executor() *kmipserver.BatchExecutor {
	exec := kmipserver.NewBatchExecutor()
	if f.versions != nil {
		exec.SetSupportedProtocolVersions(f.versions...)
	}
	exec.Use(func(next kmipserver.Next, ctx context.Context, msg *kmip.RequestMessage) (*kmip.ResponseMessage, error) {
		if d := time.Duration(f.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		// As PyKMIP does (services/server/engine.py), a request stamped later
		// than the server's clock is refused; this server's clock is a second
		// behind the client's, as two hosts' clocks may be (the lab pair's
		// were). The Time Stamp is optional in a request.
		if ts := msg.Header.TimeStamp; ts != nil && ts.After(time.Now().Add(-time.Second).Truncate(time.Second)) {
			return nil, kmipserver.Errorf(kmip.ResultReasonInvalidMessage, "Future request rejected by server.")
		}
		if hook := f.beforeAnswer.Swap(nil); hook != nil {
			(*hook)()
		}
		f.msgs.Add(1)
		f.mu.Lock()
		f.lastReq = msg
		for _, bi := range msg.BatchItem {
			f.ops[bi.Operation]++
		}
		f.mu.Unlock()
		return next(ctx, msg)
	})

	exec.Route(kmip.OperationCreate, kmipserver.HandleFunc(func(_ context.Context, req *payloads.CreateRequestPayload) (*payloads.CreateResponsePayload, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if req.ObjectType != kmip.ObjectTypeSymmetricKey {
			return nil, kmipserver.Errorf(kmip.ResultReasonInvalidField, "only symmetric keys")
		}
		var name string
		var alg kmip.CryptographicAlgorithm
		var length int32
		var usage kmip.CryptographicUsageMask
		var groups []string
		var policy string
		for _, a := range req.TemplateAttribute.Attribute {
			switch a.AttributeName {
			case kmip.AttributeNameObjectGroup:
				groups = append(groups, a.AttributeValue.(string))
				continue
			case kmip.AttributeNameOperationPolicyName:
				policy = a.AttributeValue.(string)
				continue
			}
			switch v := a.AttributeValue.(type) {
			case kmip.Name:
				name = v.NameValue
			case kmip.CryptographicAlgorithm:
				alg = v
			case int32:
				length = v
			case kmip.CryptographicUsageMask:
				usage = v
			}
		}
		if alg == 0 || length == 0 || usage == 0 {
			return nil, kmipserver.Errorf(kmip.ResultReasonInvalidField, "algorithm, length and usage mask are required")
		}
		if f.duplicateCreate {
			// The first copy is the one whose answer was lost.
			f.newKey(name, alg, length, usage)
		}
		id := f.newKey(name, alg, length, usage)
		f.objs[id].groups, f.objs[id].policy = groups, policy
		return &payloads.CreateResponsePayload{ObjectType: kmip.ObjectTypeSymmetricKey, UniqueIdentifier: id}, nil
	}))

	// Register takes Opaque Objects only (audit anchors), as PyKMIP does
	// with their Name and Object Group attributes.
	exec.Route(kmip.OperationRegister, kmipserver.HandleFunc(func(_ context.Context, req *payloads.RegisterRequestPayload) (*payloads.RegisterResponsePayload, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		o, ok := req.Object.(*kmip.OpaqueObject)
		if !ok || req.ObjectType != kmip.ObjectTypeOpaqueObject {
			return nil, kmipserver.Errorf(kmip.ResultReasonInvalidField, "only opaque objects")
		}
		f.next++
		f.clock = f.clock.Add(time.Second)
		obj := &fakeObj{id: strconv.Itoa(f.next), opaque: slices.Clone(o.OpaqueDataValue), initial: f.clock}
		if obj.opaque == nil {
			obj.opaque = []byte{}
		}
		for _, a := range req.TemplateAttribute.Attribute {
			switch v := a.AttributeValue.(type) {
			case kmip.Name:
				obj.name = v.NameValue
			case string:
				if a.AttributeName == kmip.AttributeNameObjectGroup {
					obj.groups = append(obj.groups, v)
				}
			}
		}
		f.objs[obj.id] = obj
		return &payloads.RegisterResponsePayload{UniqueIdentifier: obj.id}, nil
	}))

	exec.Route(kmip.OperationActivate, kmipserver.HandleFunc(func(_ context.Context, req *payloads.ActivateRequestPayload) (*payloads.ActivateResponsePayload, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if req.UniqueIdentifier == "" {
			return nil, kmipserver.Errorf(kmip.ResultReasonInvalidField, "no id")
		}
		o, err := f.lookup(req.UniqueIdentifier)
		if err != nil {
			return nil, err
		}
		if f.failActivate {
			return nil, kmipserver.Errorf(kmip.ResultReasonGeneralFailure, "activation failure injected by the test")
		}
		if o.state != kmip.StatePreActive {
			return nil, kmipserver.Errorf(kmip.ResultReasonIllegalOperation, "object is not pre-active")
		}
		o.state = kmip.StateActive
		if f.resentAnswer {
			return nil, kmipserver.Errorf(kmip.ResultReasonIllegalOperation, "object is not pre-active")
		}
		return &payloads.ActivateResponsePayload{UniqueIdentifier: o.id}, nil
	}))

	exec.Route(kmip.OperationGet, kmipserver.HandleFunc(func(_ context.Context, req *payloads.GetRequestPayload) (*payloads.GetResponsePayload, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		o, err := f.lookup(req.UniqueIdentifier)
		if err != nil {
			return nil, err
		}
		if o.opaque != nil {
			return &payloads.GetResponsePayload{ObjectType: kmip.ObjectTypeOpaqueObject, UniqueIdentifier: o.id,
				Object: &kmip.OpaqueObject{OpaqueDataType: 0x80000000, OpaqueDataValue: slices.Clone(o.opaque)}}, nil
		}
		b := slices.Clone(o.material)
		return &payloads.GetResponsePayload{
			ObjectType:       kmip.ObjectTypeSymmetricKey,
			UniqueIdentifier: o.id,
			Object: &kmip.SymmetricKey{KeyBlock: kmip.KeyBlock{
				KeyFormatType:          kmip.KeyFormatTypeRaw,
				KeyValue:               &kmip.KeyValue{Plain: &kmip.PlainKeyValue{KeyMaterial: kmip.KeyMaterial{Bytes: &b}}},
				CryptographicAlgorithm: o.alg,
				CryptographicLength:    o.length,
			}},
		}, nil
	}))

	exec.Route(kmip.OperationGetAttributes, kmipserver.HandleFunc(func(_ context.Context, req *payloads.GetAttributesRequestPayload) (*payloads.GetAttributesResponsePayload, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		o, err := f.lookup(req.UniqueIdentifier)
		if err != nil {
			return nil, err
		}
		resp := &payloads.GetAttributesResponsePayload{UniqueIdentifier: o.id}
		for _, n := range req.AttributeName {
			switch n {
			case kmip.AttributeNameState:
				resp.Attribute = append(resp.Attribute, kmip.Attribute{AttributeName: n, AttributeValue: o.state})
			case kmip.AttributeNameInitialDate:
				resp.Attribute = append(resp.Attribute, kmip.Attribute{AttributeName: n, AttributeValue: o.initial})
			case kmip.AttributeNameObjectGroup:
				for i, g := range o.groups {
					resp.Attribute = append(resp.Attribute, kmip.Attribute{AttributeName: n, AttributeIndex: ptr(int32(i)), AttributeValue: g})
				}
			case kmip.AttributeNameName:
				// As PyKMIP: one Attribute per name, each with its index;
				// none for a key without a name.
				var names []string
				if o.name != "" {
					names = append(names, o.name)
				}
				for i, name := range append(names, o.more...) {
					resp.Attribute = append(resp.Attribute, kmip.Attribute{AttributeName: n, AttributeIndex: ptr(int32(i)),
						AttributeValue: kmip.Name{NameValue: name, NameType: kmip.NameTypeUninterpretedTextString}})
				}
			}
		}
		return resp, nil
	}))

	exec.Route(kmip.OperationLocate, kmipserver.HandleFunc(func(_ context.Context, req *payloads.LocateRequestPayload) (*payloads.LocateResponsePayload, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var found []*fakeObj
	objects:
		for _, o := range f.objs {
			for _, a := range req.Attribute {
				switch v := a.AttributeValue.(type) {
				case kmip.Name:
					if v.NameValue != o.name {
						continue objects
					}
				case kmip.ObjectType:
					if v != o.objectType() {
						continue objects
					}
				case string:
					if a.AttributeName != kmip.AttributeNameObjectGroup || !slices.Contains(o.groups, v) {
						continue objects
					}
				default:
					return nil, kmipserver.Errorf(kmip.ResultReasonInvalidField, "unsupported locate attribute %s", a.AttributeName)
				}
			}
			found = append(found, o)
		}
		slices.SortFunc(found, func(a, b *fakeObj) int { return b.initial.Compare(a.initial) })
		resp := &payloads.LocateResponsePayload{}
		for _, o := range found {
			resp.UniqueIdentifier = append(resp.UniqueIdentifier, o.id)
		}
		return resp, nil
	}))

	exec.Route(kmip.OperationRevoke, kmipserver.HandleFunc(func(_ context.Context, req *payloads.RevokeRequestPayload) (*payloads.RevokeResponsePayload, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		o, err := f.lookup(req.UniqueIdentifier)
		if err != nil {
			return nil, err
		}
		if req.RevocationReason.RevocationReasonCode == kmip.RevocationReasonCodeKeyCompromise {
			o.state = kmip.StateCompromised
		} else if o.state != kmip.StateActive {
			return nil, kmipserver.Errorf(kmip.ResultReasonIllegalOperation, "The object is not active and cannot be revoked with reason other than KEY_COMPROMISE")
		} else {
			o.state = kmip.StateDeactivated
			if f.resentAnswer {
				return nil, kmipserver.Errorf(kmip.ResultReasonIllegalOperation, "The object is not active and cannot be revoked with reason other than KEY_COMPROMISE")
			}
		}
		return &payloads.RevokeResponsePayload{UniqueIdentifier: o.id}, nil
	}))

	exec.Route(kmip.OperationDestroy, kmipserver.HandleFunc(func(_ context.Context, req *payloads.DestroyRequestPayload) (*payloads.DestroyResponsePayload, error) {
		if f.failDestroyOnce.CompareAndSwap(true, false) {
			return nil, kmipserver.Errorf(kmip.ResultReasonGeneralFailure, "destroy failure injected by the test")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		o, err := f.lookup(req.UniqueIdentifier)
		if err != nil {
			return nil, err
		}
		if o.state == kmip.StateActive {
			return nil, kmipserver.Errorf(kmip.ResultReasonPermissionDenied, "Object is active and cannot be destroyed.")
		}
		clear(o.material)
		delete(f.objs, o.id)
		return &payloads.DestroyResponsePayload{UniqueIdentifier: o.id}, nil
	}))
	return exec
}

// testPKI is a throwaway EC P-256 CA with a server and a client certificate,
// written as PEM files like an operator would provide them.
type testPKI struct {
	dir        string
	caFile     string
	certFile   string
	keyFile    string
	serverCert tls.Certificate
	pool       *x509.CertPool
	ca         *x509.Certificate
	caKey      *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{dir: dir}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, p.caKey.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)

	srvDER, srvKey := p.issue(t, "localhost", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	p.serverCert = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}

	p.certFile, p.keyFile = p.clientFiles(t, "client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	return p
}

func (p *testPKI) issue(t *testing.T, cn string, eku []x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  eku,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, p.ca, k.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, k
}

func (p *testPKI) clientFiles(t *testing.T, base string, eku []x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	der, k := p.issue(t, "cryptvol", eku)
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, base+".pem", "CERTIFICATE", der), p.write(t, base+".key", "PRIVATE KEY", kder)
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testServer runs fake on addr ("127.0.0.1:0" for any port) behind mutual
// TLS that requires a client certificate from pki's CA.
type testServer struct {
	addr string
	srv  *kmipserver.Server
	once sync.Once
}

func startServer(t *testing.T, pki *testPKI, fake *fakeKMS, addr string) *testServer {
	t.Helper()
	var ln net.Listener
	var err error
	// A restarted server may find the port briefly busy.
	for range 50 {
		ln, err = tls.Listen("tcp", addr, &tls.Config{
			Certificates: []tls.Certificate{pki.serverCert},
			ClientCAs:    pki.pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS12,
		})
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String()}
	s.srv = kmipserver.NewServer(ln, fake.executor()).WithConnectHook(func(ctx context.Context) (context.Context, error) {
		fake.conns.Add(1)
		return ctx, nil
	})
	go func() {
		if err := s.srv.Serve(); err != nil && !errors.Is(err, kmipserver.ErrShutdown) {
			t.Errorf("kmip test server: %v", err)
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) stop() { s.once.Do(func() { _ = s.srv.Shutdown() }) }

func (p *testPKI) config(addr string) Config {
	return Config{Endpoint: addr, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile, Timeout: 5 * time.Second}
}
