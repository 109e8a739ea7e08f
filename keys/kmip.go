package keys

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/payloads"
	"github.com/ovh/kmip-go/ttlv"
	"github.com/sirupsen/logrus"
)

// ErrUnavailable means the KMIP server could not be reached or did not answer
// in time. The connection has been dropped; the next call dials again.
var ErrUnavailable = errors.New("kmip server unavailable")

// keyBytes is the size of the AES-256 keys this package creates and accepts.
const keyBytes = 32

// maxNameLen bounds names and ids sent to the server.
const maxNameLen = 256

// KMIP is a Manager backed by a KMIP server over mutual TLS.
//
// It keeps one connection and runs one call at a time on it (a Create's
// several requests included): a reused connection answers a Get in 2.5-4 ms
// against PyKMIP, a new one in 8-12 ms. The connection is opened on first
// use, so the plugin starts while the server is down, and is dropped on any
// transport error so the next call dials again: the server can come back
// without a plugin restart. Each call is bounded by Config.Timeout once it
// has the connection (waiting for it is bounded by the caller's context),
// and its errors start with "kmip <endpoint>: <operation>:".
type KMIP struct {
	cfg      Config
	tls      *tls.Config
	versions []kmip.ProtocolVersion
	log      logrus.FieldLogger

	// sem is a mutex that a waiter can give up on when its context ends.
	// It guards the fields below.
	sem     chan struct{}
	conn    *conn // nil when not connected
	version kmip.ProtocolVersion
	downAt  time.Time // when a call last found the server unreachable
	downErr error     // that call's error; nil once a call succeeds
}

var _ Manager = (*KMIP)(nil)

// protocolVersions are offered in DiscoverVersions; the highest one the
// server shares is used (PyKMIP 0.10: 1.4, measured with Create, Activate,
// Get, GetAttributes, Locate, Revoke and Destroy).
var protocolVersions = []kmip.ProtocolVersion{kmip.V1_4, kmip.V1_3, kmip.V1_2, kmip.V1_1, kmip.V1_0}

// NewKMIP validates cfg and loads the certificates. It does not contact the
// server: the connection is made by the first call that needs it.
func NewKMIP(cfg Config, log logrus.FieldLogger) (*KMIP, error) {
	cfg, tlsCfg, warnings, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	log = log.WithField("kmip", cfg.Endpoint)
	for _, w := range warnings {
		log.Warn(w)
	}
	return &KMIP{
		cfg:      cfg,
		tls:      tlsCfg,
		versions: slices.Clone(protocolVersions),
		log:      log,
		sem:      make(chan struct{}, 1),
	}, nil
}

// Endpoint returns the configured host:port.
func (m *KMIP) Endpoint() string { return m.cfg.Endpoint }

// Close drops the connection, if any. The KMIP value stays usable: the next
// call dials again.
func (m *KMIP) Close() error {
	m.sem <- struct{}{}
	defer func() { <-m.sem }()
	m.drop(nil)
	return nil
}

// Check connects if needed and makes one round trip, so that start-up can log
// whether the server answers. A failure is not fatal: calls retry by
// themselves.
func (m *KMIP) Check(ctx context.Context) error {
	return m.run(ctx, "check", func(ctx context.Context) error {
		_, err := m.call(ctx, &payloads.DiscoverVersionsRequestPayload{ProtocolVersion: m.versions})
		return err
	})
}

// Create returns the id of an active AES-256 key named name, making one only
// when the server holds none.
//
// kmip-go resends a request whose connection hit EOF, and a Create interrupted
// after the server acted leaves a key behind, so keys named name may already
// exist or be duplicated. The rule, applied before and after creating: among
// the keys named name, the oldest Active one is kept (Initial Date, then id);
// if none is Active, the oldest PreActive one (a Create interrupted before
// its Activate) is activated and kept; every other key with the name (extra
// copies, or Revoked keys whose Destroy was interrupted) is destroyed.
func (m *KMIP) Create(ctx context.Context, name string) (string, error) {
	op := fmt.Sprintf("create key %q", name)
	if err := validateText("name", name); err != nil {
		return "", m.wrap(op, err)
	}
	var id string
	err := m.run(ctx, op, func(ctx context.Context) error {
		existing, err := m.adopt(ctx, name, "")
		if err != nil {
			return err
		}
		if existing != "" {
			m.log.WithFields(logrus.Fields{"op": "create", "key_id": existing, "key_name": name}).Debug("KMIP key with this name exists; reusing it")
			id = existing
			return nil
		}
		created, named, err := m.createActive(ctx, name)
		if err != nil {
			return err
		}
		// A resent Create may have made a second key; make sure exactly one
		// key carries the name before handing out its id.
		if len(named) == 1 && named[0] == created {
			id = created
		} else if id, err = m.adopt(ctx, name, created); err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("key %q made for this name is not found by Locate", created)
		}
		m.log.WithFields(logrus.Fields{"op": "create", "key_id": id, "key_name": name}).Info("created KMIP key")
		return nil
	})
	return id, err
}

// Get returns the material of the key with id if it is an Active AES-256
// key. PyKMIP's Get also serves PreActive and Revoked keys, so the state is
// fetched in the same batch and checked here.
func (m *KMIP) Get(ctx context.Context, id string) (*Key, error) {
	op := fmt.Sprintf("get key %q", id)
	if err := validateText("key id", id); err != nil {
		return nil, m.wrap(op, err)
	}
	var key *Key
	err := m.run(ctx, op, func(ctx context.Context) error {
		items, err := m.batch(ctx,
			&payloads.GetAttributesRequestPayload{UniqueIdentifier: id, AttributeName: []kmip.AttributeName{kmip.AttributeNameState}},
			&payloads.GetRequestPayload{UniqueIdentifier: id},
		)
		if err != nil {
			return err
		}
		// Whatever happens below, no copy of the material outlives this call
		// except the one handed to the caller.
		got, getErr := result[*payloads.GetResponsePayload](&items[1])
		defer wipeGetResponse(got)

		attrs, err := result[*payloads.GetAttributesResponsePayload](&items[0])
		if err != nil {
			return err
		}
		state, err := stateOf(attrs)
		if err != nil {
			return err
		}
		if state != kmip.StateActive {
			return fmt.Errorf("%w (state %s)", ErrNotActive, ttlv.EnumStr(state))
		}
		if getErr != nil {
			return getErr
		}
		b, err := symmetricKeyMaterial(got)
		if err != nil {
			return err
		}
		key = NewKey(b)
		return nil
	})
	return key, err
}

// Destroy revokes the key (reason: cessation of operation) if it is Active,
// then destroys it. A key that is unknown or already gone counts as
// destroyed, so an interrupted Destroy can simply be repeated.
func (m *KMIP) Destroy(ctx context.Context, id string) error {
	op := fmt.Sprintf("destroy key %q", id)
	if err := validateText("key id", id); err != nil {
		return m.wrap(op, err)
	}
	return m.run(ctx, op, func(ctx context.Context) error {
		gone, err := m.destroy(ctx, id)
		if err != nil {
			return err
		}
		l := m.log.WithFields(logrus.Fields{"op": "destroy", "key_id": id})
		if gone {
			l.Debug("KMIP key already gone")
		} else {
			l.Info("destroyed KMIP key")
		}
		return nil
	})
}

// Locate returns the ids of all objects named name, in the server's order.
// It is slow on a full server (PyKMIP: 210 ms at 500 objects): volumes store
// their key id and Locate serves recovery only.
func (m *KMIP) Locate(ctx context.Context, name string) ([]string, error) {
	op := fmt.Sprintf("locate keys named %q", name)
	if err := validateText("name", name); err != nil {
		return nil, m.wrap(op, err)
	}
	var ids []string
	err := m.run(ctx, op, func(ctx context.Context) error {
		var err error
		ids, err = m.locate(ctx, name, false)
		return err
	})
	return ids, err
}

// run executes one Manager call: it waits for the connection for as long as
// the caller's context allows (a queue of calls is not a slow server), then
// bounds the call itself by the configured timeout, and names the endpoint
// and the operation in any error. Calls that waited while another found the
// server unreachable fail at once with that error instead of each paying
// the timeout again, so an outage fails a queue of calls in one timeout.
func (m *KMIP) run(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	began := time.Now()
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return m.wrap(op, &unavailableError{fmt.Errorf("waiting for the connection (other calls ahead): %w", ctx.Err())})
	}
	defer func() { <-m.sem }()
	if m.conn == nil && m.downErr != nil && m.downAt.After(began) {
		return m.wrap(op, &unavailableError{fmt.Errorf("server unreachable %s ago: %w", time.Since(m.downAt).Round(time.Millisecond), m.downErr)})
	}
	cctx, cancel := context.WithTimeoutCause(ctx, m.cfg.Timeout, errCallTimeout)
	defer cancel()
	err := m.guard(cctx, fn)
	switch {
	case err == nil:
		m.downErr = nil
	case ctx.Err() != nil:
		// The caller gave up (its request's deadline passed while the
		// server was still working): that says nothing about the server,
		// so the calls queued behind this one still try.
	case errors.Is(err, ErrUnavailable):
		m.downAt, m.downErr = time.Now(), err
	}
	if err != nil {
		return m.wrap(op, err)
	}
	return nil
}

// guard runs fn and turns a panic inside the KMIP code (decoding an
// unexpected answer, a library bug) into an error that drops the
// connection. Unrecovered, it would skip the undo of a half-done create or
// mount, or kill the plugin at start-up. The caller holds sem, so dropping
// the connection races no other call.
func (m *KMIP) guard(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &unavailableError{fmt.Errorf("KMIP client failed (%v); connection dropped", r)}
			m.drop(err)
		}
	}()
	return fn(ctx)
}

func (m *KMIP) wrap(op string, err error) error {
	return fmt.Errorf("kmip %s: %s: %w", m.cfg.Endpoint, op, err)
}

// unavailableError marks transport failures so callers can tell "the server
// is away" (retry later) from "the server said no".
type unavailableError struct{ err error }

func (e *unavailableError) Error() string        { return e.err.Error() }
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// resultError is a failed KMIP operation as reported by the server.
type resultError struct {
	op      kmip.Operation
	reason  kmip.ResultReason
	message string
}

func (e *resultError) Error() string {
	s := fmt.Sprintf("%s failed: %s", ttlv.EnumStr(e.op), ttlv.EnumStr(e.reason))
	if e.reason == kmip.ResultReasonItemNotFound {
		s = ErrNotFound.Error() + ": " + s
	}
	if e.message != "" {
		s += ": " + e.message
	}
	return s
}

// Is maps the server's ItemNotFound to ErrNotFound.
func (e *resultError) Is(target error) bool {
	return target == ErrNotFound && e.reason == kmip.ResultReasonItemNotFound
}

func isResultError(err error) bool {
	var re *resultError
	return errors.As(err, &re)
}

func itemError(bi *kmip.ResponseBatchItem) error {
	if bi.ResultStatus == kmip.ResultStatusSuccess {
		return nil
	}
	return &resultError{op: bi.Operation, reason: bi.ResultReason, message: bi.ResultMessage}
}

// result returns the typed payload of a successful batch item.
func result[T kmip.OperationPayload](bi *kmip.ResponseBatchItem) (T, error) {
	var zero T
	if err := itemError(bi); err != nil {
		return zero, err
	}
	pl, ok := bi.ResponsePayload.(T)
	if !ok {
		return zero, fmt.Errorf("%s: unexpected response payload %T", ttlv.EnumStr(bi.Operation), bi.ResponsePayload)
	}
	return pl, nil
}

func callT[T kmip.OperationPayload](ctx context.Context, m *KMIP, pl kmip.OperationPayload) (T, error) {
	items, err := m.batch(ctx, pl)
	if err != nil {
		var zero T
		return zero, err
	}
	return result[T](&items[0])
}

// locate lists the ids of objects named name; keysOnly restricts it to
// symmetric keys.
func (m *KMIP) locate(ctx context.Context, name string, keysOnly bool) ([]string, error) {
	resp, err := callT[*payloads.LocateResponsePayload](ctx, m, locateRequest(name, keysOnly))
	if err != nil {
		return nil, err
	}
	return resp.UniqueIdentifier, nil
}

func locateRequest(name string, keysOnly bool) *payloads.LocateRequestPayload {
	attrs := []kmip.Attribute{{
		AttributeName:  kmip.AttributeNameName,
		AttributeValue: kmip.Name{NameValue: name, NameType: kmip.NameTypeUninterpretedTextString},
	}}
	if keysOnly {
		attrs = append(attrs, kmip.Attribute{AttributeName: kmip.AttributeNameObjectType, AttributeValue: kmip.ObjectTypeSymmetricKey})
	}
	return &payloads.LocateRequestPayload{Attribute: attrs}
}

type candidate struct {
	id      string
	state   kmip.State
	initial time.Time
}

// adopt applies Create's rule (see Create) to the keys named name and
// returns the id to use, or "" when there is none. justCreated is the id of
// a key this call has just made and activated: if it is the only one, no
// further round trip is needed.
func (m *KMIP) adopt(ctx context.Context, name, justCreated string) (string, error) {
	ids, err := m.locate(ctx, name, true)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", nil
	}
	if len(ids) == 1 && ids[0] == justCreated {
		return justCreated, nil
	}
	var cands []candidate
	for _, id := range ids {
		resp, err := callT[*payloads.GetAttributesResponsePayload](ctx, m, &payloads.GetAttributesRequestPayload{
			UniqueIdentifier: id,
			AttributeName:    []kmip.AttributeName{kmip.AttributeNameState, kmip.AttributeNameInitialDate},
		})
		if errors.Is(err, ErrNotFound) {
			continue // destroyed since Locate
		}
		if err != nil {
			return "", fmt.Errorf("attributes of key %q: %w", id, err)
		}
		c := candidate{id: id}
		if c.state, err = stateOf(resp); err != nil {
			return "", fmt.Errorf("key %q: %w", id, err)
		}
		for _, a := range resp.Attribute {
			if t, ok := a.AttributeValue.(time.Time); ok && a.AttributeName == kmip.AttributeNameInitialDate {
				c.initial = t
			}
		}
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := a.initial.Compare(b.initial); c != 0 {
			return c
		}
		return compareIDs(a.id, b.id)
	})

	keep := -1
	for i, c := range cands {
		if c.state == kmip.StateActive {
			keep = i
			break
		}
	}
	if keep < 0 {
		for i, c := range cands {
			if c.state == kmip.StatePreActive {
				if _, err := callT[*payloads.ActivateResponsePayload](ctx, m, &payloads.ActivateRequestPayload{UniqueIdentifier: c.id}); err != nil {
					return "", fmt.Errorf("activate pre-active key %q left by an interrupted create: %w", c.id, err)
				}
				m.log.WithFields(logrus.Fields{"op": "create", "key_id": c.id, "key_name": name}).Warn("activated pre-active KMIP key left by an interrupted create")
				keep = i
				break
			}
		}
	}
	var errs []error
	for i, c := range cands {
		if i == keep {
			continue
		}
		l := m.log.WithFields(logrus.Fields{"op": "create", "key_id": c.id, "key_name": name, "state": ttlv.EnumStr(c.state)})
		if keep >= 0 {
			l = l.WithField("kept_key_id", cands[keep].id)
		}
		l.Warn("destroying extra KMIP key with the same name")
		if _, err := m.destroy(ctx, c.id); err != nil {
			errs = append(errs, fmt.Errorf("destroy extra key %q: %w", c.id, err))
		}
	}
	// Until the extras are gone the name is ambiguous; the caller retries.
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	if keep < 0 {
		return "", nil
	}
	return cands[keep].id, nil
}

// compareIDs orders ids numerically when both are decimal numbers (PyKMIP
// hands out "1", "2", ...), else as strings.
func compareIDs(a, b string) int {
	if isDigits(a) && isDigits(b) {
		if c := cmp.Compare(len(a), len(b)); c != 0 {
			return c
		}
	}
	return cmp.Compare(a, b)
}

func isDigits(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// createActive creates a key named name and activates it; named lists the
// keys that carry the name after the activation (nil when that could not be
// read). PyKMIP rejects an Activate batched without an explicit id, so the
// Create goes alone; the Activate, with the new id, shares its request with
// the Locate that Create's rule needs afterwards, which saves a round trip
// per volume create. If Activate fails the new key is destroyed.
func (m *KMIP) createActive(ctx context.Context, name string) (id string, named []string, err error) {
	id, err = m.createKey(ctx, name)
	if err != nil {
		return "", nil, err
	}
	items, err := m.batch(ctx, &payloads.ActivateRequestPayload{UniqueIdentifier: id}, locateRequest(name, true))
	if err == nil {
		_, err = result[*payloads.ActivateResponsePayload](&items[0])
		if loc, lerr := result[*payloads.LocateResponsePayload](&items[1]); lerr == nil {
			named = loc.UniqueIdentifier
		}
	}
	if err != nil {
		// kmip-go resends after EOF: a resent Activate of a key the first
		// one activated fails, yet the key is fine.
		if isResultError(err) {
			if st, serr := m.state(ctx, id); serr == nil && st == kmip.StateActive {
				return id, named, nil
			}
		}
		err = fmt.Errorf("activate new key %q: %w", id, err)
		if _, derr := m.destroy(ctx, id); derr != nil {
			return "", nil, errors.Join(err, fmt.Errorf("destroy the unactivated key %q: %w", id, derr))
		}
		m.log.WithFields(logrus.Fields{"op": "create", "key_id": id, "key_name": name}).Warn("destroyed new KMIP key that failed to activate")
		return "", nil, err
	}
	return id, named, nil
}

// createKey creates a PreActive AES-256 key named name.
func (m *KMIP) createKey(ctx context.Context, name string) (string, error) {
	resp, err := callT[*payloads.CreateResponsePayload](ctx, m, &payloads.CreateRequestPayload{
		ObjectType: kmip.ObjectTypeSymmetricKey,
		TemplateAttribute: kmip.TemplateAttribute{Attribute: []kmip.Attribute{
			{AttributeName: kmip.AttributeNameCryptographicAlgorithm, AttributeValue: kmip.CryptographicAlgorithmAES},
			{AttributeName: kmip.AttributeNameCryptographicLength, AttributeValue: int32(keyBytes * 8)},
			{AttributeName: kmip.AttributeNameCryptographicUsageMask, AttributeValue: kmip.CryptographicUsageEncrypt | kmip.CryptographicUsageDecrypt},
			{AttributeName: kmip.AttributeNameName, AttributeValue: kmip.Name{NameValue: name, NameType: kmip.NameTypeUninterpretedTextString}},
		}},
	})
	if err != nil {
		return "", err
	}
	id := resp.UniqueIdentifier
	if err := validateText("key id returned by Create", id); err != nil {
		return "", err
	}
	return id, nil
}

// destroy is Destroy without locking: revoke if Active, then destroy. An
// unknown id succeeds with gone set. The caller holds sem.
func (m *KMIP) destroy(ctx context.Context, id string) (gone bool, err error) {
	state, err := m.state(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	switch state {
	case kmip.StateDestroyed, kmip.StateDestroyedCompromised:
		return true, nil
	case kmip.StateActive:
		// Servers refuse to destroy an Active key (PyKMIP: PermissionDenied).
		_, err := callT[*payloads.RevokeResponsePayload](ctx, m, &payloads.RevokeRequestPayload{
			UniqueIdentifier: id,
			RevocationReason: kmip.RevocationReason{RevocationReasonCode: kmip.RevocationReasonCodeCessationOfOperation},
		})
		if errors.Is(err, ErrNotFound) {
			return true, nil
		}
		// As for Activate: a resent Revoke fails on the key the first one
		// revoked.
		if isResultError(err) {
			if st, serr := m.state(ctx, id); serr == nil && st != kmip.StateActive {
				err = nil
			}
		}
		if err != nil {
			return false, fmt.Errorf("revoke: %w", err)
		}
	}
	_, err = callT[*payloads.DestroyResponsePayload](ctx, m, &payloads.DestroyRequestPayload{UniqueIdentifier: id})
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	return false, err
}

// state fetches the State attribute of id.
func (m *KMIP) state(ctx context.Context, id string) (kmip.State, error) {
	attrs, err := callT[*payloads.GetAttributesResponsePayload](ctx, m, &payloads.GetAttributesRequestPayload{
		UniqueIdentifier: id,
		AttributeName:    []kmip.AttributeName{kmip.AttributeNameState},
	})
	if err != nil {
		return 0, err
	}
	return stateOf(attrs)
}

func stateOf(resp *payloads.GetAttributesResponsePayload) (kmip.State, error) {
	for _, a := range resp.Attribute {
		if a.AttributeName != kmip.AttributeNameState {
			continue
		}
		if s, ok := a.AttributeValue.(kmip.State); ok {
			return s, nil
		}
		return 0, fmt.Errorf("State attribute has unexpected type %T", a.AttributeValue)
	}
	return 0, errors.New("server returned no State attribute")
}

// symmetricKeyMaterial checks that got is a plain AES-256 key and returns
// its 32 bytes. The slice is the decoder's own copy; the caller owns it.
func symmetricKeyMaterial(got *payloads.GetResponsePayload) ([]byte, error) {
	sk, ok := got.Object.(*kmip.SymmetricKey)
	if !ok || got.ObjectType != kmip.ObjectTypeSymmetricKey {
		return nil, fmt.Errorf("object is a %s, not a symmetric key", ttlv.EnumStr(got.ObjectType))
	}
	kb := &sk.KeyBlock
	if kb.KeyWrappingData != nil || (kb.KeyValue != nil && kb.KeyValue.Wrapped != nil) {
		return nil, errors.New("key material is wrapped; want it plain")
	}
	if kb.CryptographicAlgorithm != kmip.CryptographicAlgorithmAES {
		return nil, fmt.Errorf("key algorithm is %s, want AES", ttlv.EnumStr(kb.CryptographicAlgorithm))
	}
	b, err := sk.KeyMaterial()
	if err != nil {
		return nil, fmt.Errorf("key material: %w", err)
	}
	if len(b) != keyBytes {
		return nil, fmt.Errorf("key material is %d bytes, want %d", len(b), keyBytes)
	}
	// Detach the slice so that wiping the response leaves it intact.
	if mat := kb.KeyValue.Plain; mat != nil {
		mat.KeyMaterial.Bytes = nil
		mat.KeyMaterial.TransparentSymmetricKey = nil
	}
	return b, nil
}

// wipeGetResponse zeroes the key material still referenced by a Get
// response. kmip-go's receive buffer and the TLS record buffers hold copies
// this package cannot reach.
func wipeGetResponse(got *payloads.GetResponsePayload) {
	if got == nil {
		return
	}
	var kb *kmip.KeyBlock
	switch o := got.Object.(type) {
	case *kmip.SymmetricKey:
		kb = &o.KeyBlock
	case *kmip.SecretData:
		kb = &o.KeyBlock
	default:
		return
	}
	if kb.KeyValue == nil {
		return
	}
	if kb.KeyValue.Wrapped != nil {
		clear(*kb.KeyValue.Wrapped)
	}
	if p := kb.KeyValue.Plain; p != nil {
		if p.KeyMaterial.Bytes != nil {
			clear(*p.KeyMaterial.Bytes)
		}
		if t := p.KeyMaterial.TransparentSymmetricKey; t != nil {
			clear(t.Key)
		}
	}
}

// validateText checks a name or id before it is sent to the server.
func validateText(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > maxNameLen:
		return fmt.Errorf("%s is %d bytes long (at most %d allowed)", what, len(s), maxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%s %q contains the non-printable character %U (only printable characters allowed)", what, s, r)
		}
	}
	return nil
}

// Names returns the name of every symmetric key this client's identity can
// see, by id: one Locate, then every key's Name attributes in one batched
// request. For finding the keys of a volume name, whose key names are
// unique per create (cryptvol/VG_UUID/NAME/NONCE), where Locate by name
// cannot help.
func (m *KMIP) Names(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	err := m.run(ctx, "list key names", func(ctx context.Context) error {
		loc, err := callT[*payloads.LocateResponsePayload](ctx, m, &payloads.LocateRequestPayload{Attribute: []kmip.Attribute{
			{AttributeName: kmip.AttributeNameObjectType, AttributeValue: kmip.ObjectTypeSymmetricKey},
		}})
		if err != nil || len(loc.UniqueIdentifier) == 0 {
			return err
		}
		pls := make([]kmip.OperationPayload, 0, len(loc.UniqueIdentifier))
		for _, id := range loc.UniqueIdentifier {
			pls = append(pls, &payloads.GetAttributesRequestPayload{UniqueIdentifier: id, AttributeName: []kmip.AttributeName{kmip.AttributeNameName}})
		}
		items, err := m.batch(ctx, pls...)
		if err != nil {
			return err
		}
		for i := range items {
			attrs, err := result[*payloads.GetAttributesResponsePayload](&items[i])
			if err != nil {
				continue // destroyed between Locate and GetAttributes
			}
			for _, a := range attrs.Attribute {
				if n, ok := a.AttributeValue.(kmip.Name); ok {
					out[attrs.UniqueIdentifier] = append(out[attrs.UniqueIdentifier], n.NameValue)
				}
			}
		}
		return nil
	})
	return out, err
}
