package keys

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

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
// several requests included): a reused connection spares each call a TLS
// handshake. The connection is opened on first use, so the plugin starts
// while the server is down, and is dropped on any transport error so the
// next call dials again: the server can come back without a plugin restart.
// Each call is bounded by Config.Timeout once it has the connection
// (waiting for it is bounded by the caller's context), and its errors start
// with "kmip <endpoints>: <operation>:". With several endpoints, a call
// that must connect tries them in turn (endpoints.go).
type KMIP struct {
	cfg      Config
	tls      *tls.Config
	versions []kmip.ProtocolVersion
	log      logrus.FieldLogger
	dial     func(ctx context.Context, endpoint string) (link, error) // dialTLS; tests dial an in-memory server
	// endpoints are Config.Endpoint's servers, in order.
	endpoints []string

	// sem is a mutex that a waiter can give up on when its context ends.
	// It guards the fields below.
	sem     chan struct{}
	conn    link // nil when not connected
	version kmip.ProtocolVersion
	downAt  time.Time // when a call last found the server unreachable
	downErr error     // that call's error; nil once a call succeeds
	// preferred is the index in endpoints of the server last connected
	// to, dialed first next time.
	preferred int
}

var _ Manager = (*KMIP)(nil)

// protocolVersions are offered in DiscoverVersions; the highest one the
// server shares is used (PyKMIP 0.10: 1.4, measured with Create, Activate,
// Get, GetAttributes, Locate, Revoke and Destroy).
var protocolVersions = []kmip.ProtocolVersion{kmip.V1_4, kmip.V1_3, kmip.V1_2, kmip.V1_1, kmip.V1_0}

// NewKMIP validates cfg and loads the certificates. It does not contact the
// server: the connection is made by the first call that needs it.
func NewKMIP(cfg Config, log logrus.FieldLogger) (*KMIP, error) {
	eps, err := ParseEndpoints(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("kmip config: Endpoint: %w", err)
	}
	cfg, tlsCfg, warnings, err := cfg.tlsConfig(eps)
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
	m := &KMIP{
		cfg:       cfg,
		tls:       tlsCfg,
		versions:  slices.Clone(protocolVersions),
		log:       log,
		endpoints: eps,
		sem:       make(chan struct{}, 1),
	}
	m.dial = m.dialTLS
	return m, nil
}

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

// Config is the configuration the client runs with, defaults filled in:
// what tenant clients copy (Tenants).
func (m *KMIP) Config() Config { return m.cfg }
