package keys

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/payloads"
	"github.com/ovh/kmip-go/ttlv"
	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/internal/cost"

	"github.com/cryptvol/cryptvol/internal/failpoint"
)

// link carries one KMIP request message and its answer; close ends it;
// spent says it must carry no more, even after a roundtrip that succeeded.
// conn, a TLS socket speaking TTLV, is the real one. Everything above it
// (batch, negotiate, the key lifecycle) sees only this, so tests hand the
// lifecycle a link straight to an in-memory server, without TLS or a socket
// (lifecycle_test.go), and a kmip-go upgrade touches this file.
type link interface {
	roundtrip(ctx context.Context, msg *kmip.RequestMessage) (*kmip.ResponseMessage, error)
	spent() bool
	close()
}

// conn is one KMIP connection, used synchronously: a request message, then
// its answer, on the caller's goroutine, with the socket's deadline taken
// from the call's context. kmip-go's kmipclient runs a reader and a writer
// goroutine per connection, and v0.8.1's conn.send can panic when the reader,
// on a peer close, closes the request channel that send is selecting on (Go
// picks either ready case). One call at a time is all KMIP.run allows
// anyway, so speaking TTLV over the TLS socket directly (kmip-go's ttlv
// stream and message types) leaves that race no place to happen. It also
// retires two kmipclient workarounds: its Close dereferencing a nil
// connection after a failed redial, and DialContext negotiating on its own.
type conn struct {
	sock   net.Conn
	stream ttlv.Stream
	// late is set once a call's context ended before that call could stop
	// the cancellation's SetDeadline(past) (roundtrip): it runs on a
	// goroutine of its own and may land after the next call's deadline.
	late bool
}

// maxMessage bounds a response message: cryptvol's largest is a Locate's
// list of ids.
const maxMessage = 1 << 20

func newConn(sock net.Conn) *conn {
	return &conn{sock: sock, stream: ttlv.NewStream(sock, maxMessage)}
}

// roundtrip sends msg and reads one response message, counted in ctx's cost
// tally (internal/cost). When ctx ends first, the error wraps ctx.Err(), and
// the connection must be dropped: the answer may still arrive. When ctx ends
// as the answer arrives, the answer is returned and the connection is spent.
func (c *conn) roundtrip(ctx context.Context, msg *kmip.RequestMessage) (*kmip.ResponseMessage, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.sock.SetDeadline(dl)
	} else {
		_ = c.sock.SetDeadline(time.Time{})
	}
	// A cancellation without a deadline also ends a blocked read or write.
	stop := context.AfterFunc(ctx, func() { _ = c.sock.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		// stop is false once the cancellation's goroutine has started:
		// nothing orders its SetDeadline(past) before the next call's
		// SetDeadline, so the socket carries no next call.
		if !stop() {
			c.late = true
		}
	}()
	cost.KMIP(ctx)
	var resp kmip.ResponseMessage
	err := c.stream.Roundtrip(msg, &resp)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Only ctx sets the socket's deadline, so ctx is done or about
			// to be: the socket's timer can fire a moment before the
			// context's own. Callers tell whose deadline passed from ctx.
			<-ctx.Done()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, err
	}
	return &resp, nil
}

func (c *conn) spent() bool { return c.late }

func (c *conn) close() { _ = c.sock.Close() }

// batch sends payloads in one request message on the connection, dialing
// first if there is none. Any transport or protocol error drops the
// connection. Failures of single operations are left in the batch items.
// The caller holds sem.
func (m *KMIP) batch(ctx context.Context, pls ...kmip.OperationPayload) ([]kmip.ResponseBatchItem, error) {
	reused := m.conn != nil
	if !reused {
		if err := m.connect(ctx); err != nil {
			return nil, err
		}
	}
	msg := m.message(pls)
	step := changingStep(pls)
	if step != "" {
		failpoint.Here(step)
	}
	resp, err := m.conn.roundtrip(ctx, &msg)
	if err != nil && reused && step == "" && ctx.Err() == nil && closedByPeer(err) {
		// The server closed the connection while it sat idle (a restart,
		// an idle timeout): the request never reached a live session, and
		// it changes nothing, so it goes once more on a new connection.
		// A request that changes the server is not resent: whether the
		// server acted on it is unknown, and the callers' journals settle
		// that (volume/doc.go).
		m.drop(err)
		if cerr := m.connect(ctx); cerr != nil {
			return nil, cerr
		}
		msg = m.message(pls) // the new connection may speak another version
		resp, err = m.conn.roundtrip(ctx, &msg)
	}
	if err != nil {
		m.drop(err)
		return nil, m.transportError(ctx, "request", err)
	}
	if m.conn.spent() {
		// The answer is whole and serves this call; the socket may yet
		// get a deadline in the past, so the next call dials its own.
		m.drop(errLateCancel)
	}
	items := resp.BatchItem
	switch {
	case len(items) == 1 && len(pls) > 1 && items[0].Operation == 0:
		// A message-level error: the server rejected the whole request.
		return nil, itemError(&items[0])
	case len(items) > len(pls) || len(items) == 0 || int(resp.Header.BatchCount) != len(items):
		err := fmt.Errorf("server answered %d batch items (header says %d) to a request of %d", len(items), resp.Header.BatchCount, len(pls))
		m.drop(err)
		return nil, &unavailableError{err}
	case len(items) < len(pls):
		if itemError(&items[len(items)-1]) == nil {
			err := fmt.Errorf("server answered %d batch items to a request of %d", len(items), len(pls))
			m.drop(err)
			return nil, &unavailableError{err}
		}
		// The server stopped at a failed item; the rest were not run.
		for _, pl := range pls[len(items):] {
			items = append(items, kmip.ResponseBatchItem{
				Operation:     pl.Operation(),
				ResultStatus:  kmip.ResultStatusOperationFailed,
				ResultReason:  kmip.ResultReasonOperationCanceledByRequester,
				ResultMessage: "not run: the server stopped the batch at an earlier failure",
			})
		}
	}
	return items, nil
}

// message is the request message of pls for the connection's protocol
// version, with the batch options every request carries.
func (m *KMIP) message(pls []kmip.OperationPayload) kmip.RequestMessage {
	msg := request(m.version, pls...)
	// PyKMIP's default is Stop, and then it answers with fewer items than
	// asked (a Get of an unknown id batched after GetAttributes returns one
	// item, not two), which kmip-go's Batch rejects as a count mismatch.
	msg.Header.BatchErrorContinuationOption = kmip.BatchErrorContinuationOptionContinue
	// In the order given: an Activate or Revoke goes before the Locate or
	// Destroy that depends on it. (KMIP 1.x, Batch Order Option; PyKMIP
	// runs items in order whatever this says.)
	ordered := true
	msg.Header.BatchOrderOption = &ordered
	return msg
}

// closedByPeer: the connection's other end is gone (EOF, reset, broken
// pipe), as a reused connection finds after the server restarted.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// changingStep names a request that changes what the server holds, for
// the failpoint before it ("kmip-create", "kmip-activate-locate-get"), and
// is "" for one that only reads.
func changingStep(pls []kmip.OperationPayload) string {
	changes := false
	var ops []string
	for _, pl := range pls {
		op := pl.Operation()
		switch op {
		case kmip.OperationCreate, kmip.OperationRegister, kmip.OperationReKey, kmip.OperationAddAttribute,
			kmip.OperationModifyAttribute, kmip.OperationDeleteAttribute, kmip.OperationActivate,
			kmip.OperationRevoke, kmip.OperationDestroy, kmip.OperationArchive, kmip.OperationRecover:
			changes = true
		}
		ops = append(ops, strings.ToLower(ttlv.EnumStr(op)))
	}
	if !changes {
		return ""
	}
	return "kmip-" + strings.Join(ops, "-")
}

// call is batch for a single operation, with its failure turned into an
// error.
func (m *KMIP) call(ctx context.Context, pl kmip.OperationPayload) (kmip.OperationPayload, error) {
	items, err := m.batch(ctx, pl)
	if err != nil {
		return nil, err
	}
	if err := itemError(&items[0]); err != nil {
		return nil, err
	}
	return items[0].ResponsePayload, nil
}

// connectTo dials endpoint and negotiates the protocol version.
func (m *KMIP) connectTo(ctx context.Context, endpoint string) error {
	l, err := m.dial(ctx, endpoint)
	if err != nil {
		return m.transportError(ctx, "connect", err)
	}
	m.conn = l
	v, err := m.negotiate(ctx)
	if err != nil {
		m.drop(nil)
		return err
	}
	m.version = v
	m.log.WithFields(logrus.Fields{"endpoint": endpoint, "protocol": fmt.Sprintf("%d.%d", v.ProtocolVersionMajor, v.ProtocolVersionMinor)}).Info("connected to KMIP server")
	return nil
}

// dialTLS is the real dial: mutual TLS to endpoint, whose certificate must
// carry Config.ServerName, or else the endpoint's host.
func (m *KMIP) dialTLS(ctx context.Context, endpoint string) (link, error) {
	tc := m.tls.Clone()
	if tc.ServerName == "" {
		tc.ServerName, _, _ = net.SplitHostPort(endpoint)
	}
	d := tls.Dialer{Config: tc}
	sock, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return nil, err
	}
	return newConn(sock), nil
}

// request is a request message without the header's Time Stamp, which KMIP
// 1.x makes optional in a request: kmip-go stamps the client's clock, and
// PyKMIP (services/server/engine.py) refuses a stamp later than its own
// clock ("Future request rejected by server"), to the second, so a host
// whose clock is ahead of the server's by less than a second has requests
// refused at random (seen in the lab's pair of hosts, whose clocks are set
// to the second at boot).
func request(v kmip.ProtocolVersion, pls ...kmip.OperationPayload) kmip.RequestMessage {
	msg := kmip.NewRequestMessage(v, pls...)
	msg.Header.TimeStamp = nil
	return msg
}

// negotiate asks the server which of our protocol versions it speaks and
// picks the highest; a server without DiscoverVersions gets 1.0.
func (m *KMIP) negotiate(ctx context.Context) (kmip.ProtocolVersion, error) {
	msg := request(kmip.V1_1, &payloads.DiscoverVersionsRequestPayload{ProtocolVersion: m.versions})
	resp, err := m.conn.roundtrip(ctx, &msg)
	if err != nil {
		return kmip.ProtocolVersion{}, m.transportError(ctx, "negotiate protocol version", err)
	}
	if len(resp.BatchItem) != 1 {
		return kmip.ProtocolVersion{}, &unavailableError{fmt.Errorf("negotiate protocol version: server answered %d batch items to 1", len(resp.BatchItem))}
	}
	bi := &resp.BatchItem[0]
	if bi.ResultStatus == kmip.ResultStatusOperationFailed && bi.ResultReason == kmip.ResultReasonOperationNotSupported && slices.Contains(m.versions, kmip.V1_0) {
		return kmip.V1_0, nil
	}
	pl, err := result[*payloads.DiscoverVersionsResponsePayload](bi)
	if err != nil {
		return kmip.ProtocolVersion{}, fmt.Errorf("negotiate protocol version: %w", err)
	}
	// The highest common version: servers do not all list theirs best
	// first (kmip-go's own server lists them in ascending order).
	var best *kmip.ProtocolVersion
	for _, v := range pl.ProtocolVersion {
		if slices.Contains(m.versions, v) && (best == nil || ttlv.CompareVersions(v, *best) > 0) {
			best = &v
		}
	}
	if best != nil {
		return *best, nil
	}
	return kmip.ProtocolVersion{}, fmt.Errorf("negotiate protocol version: no common version (server offers %v, we speak %v)", pl.ProtocolVersion, m.versions)
}

// drop forgets the connection so that the next call dials a fresh one: an
// answer that arrives late can never be read as the next request's.
func (m *KMIP) drop(cause error) {
	if m.conn != nil {
		m.conn.close()
	}
	m.conn = nil
	if cause != nil {
		m.log.WithError(cause).Warn("dropped KMIP connection; the next call dials again")
	}
}

// errLateCancel is why a connection whose call's context ended as its
// answer arrived is dropped.
var errLateCancel = errors.New("a call's context ended as its answer arrived; its cancellation may still set the socket's deadline")

// errCallTimeout is the cause of a call's context when Config.Timeout, not
// the caller's own deadline, ended it.
var errCallTimeout = errors.New("kmip call timeout")

func (m *KMIP) transportError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		switch context.Cause(ctx) {
		case errCallTimeout:
			err = fmt.Errorf("no answer in time (timeout %s): %w", m.cfg.Timeout, err)
		case errShareTimeout:
			err = fmt.Errorf("no answer in its share of the %s timeout (%d endpoints): %w", m.cfg.Timeout, len(m.endpoints), err)
		default:
			err = fmt.Errorf("the request's own deadline passed before the server answered: %w", err)
		}
	}
	return &unavailableError{fmt.Errorf("%s: %w", what, err)}
}
