package keys

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// ParseEndpoints splits a Config.Endpoint list, "host:port" or several
// separated by commas, and checks each. Every error names the entry at
// fault and what is allowed.
func ParseEndpoints(list string) ([]string, error) {
	const want = "host:port, or several separated by commas, e.g. kmip-a:5696,kmip-b:5696"
	if strings.TrimSpace(list) == "" {
		return nil, fmt.Errorf("no KMIP endpoint given (want %s)", want)
	}
	var eps []string
	for _, ep := range strings.Split(list, ",") {
		ep = strings.TrimSpace(ep)
		host, port, err := net.SplitHostPort(ep)
		if err != nil || host == "" {
			return nil, fmt.Errorf("KMIP endpoint %q is not host:port (want %s)", ep, want)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("KMIP endpoint %q: port %q is not a number from 1 to 65535", ep, port)
		}
		for _, seen := range eps {
			if seen == ep {
				return nil, fmt.Errorf("KMIP endpoint %q is listed twice", ep)
			}
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// errShareTimeout is the cause of an endpoint's connection attempt ending
// at the end of its share of the call's time (connect).
var errShareTimeout = errors.New("endpoint's share of the call time")

// connect dials the endpoints until one negotiates a protocol version:
// first the one last connected to, then the others in their configured
// order. With several, each attempt gets an equal share of the time the
// call has left, so a server that accepts connections and never answers
// cannot use up a call that the next server could serve; one that refuses
// at once leaves its share to the rest. The caller holds sem.
func (m *KMIP) connect(ctx context.Context) error {
	n := len(m.endpoints)
	var errs endpointsError
	for i := 0; i < n; i++ {
		idx := (m.preferred + i) % n
		ep := m.endpoints[idx]
		actx, cancel := shareOf(ctx, n-i)
		err := m.connectTo(actx, ep)
		cancel()
		if err == nil {
			if idx != m.preferred {
				m.log.WithFields(logrus.Fields{"endpoint": ep, "previous": m.endpoints[m.preferred]}).Warn("KMIP failover: connected to another endpoint than the last one")
			}
			m.preferred = idx
			return nil
		}
		if n == 1 {
			return err
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		if ctx.Err() != nil {
			break
		}
	}
	return &unavailableError{errs}
}

// endpointsError is every endpoint's failure, each naming its endpoint, in
// one line (the docker CLI shows errors as one), unwrapping to each.
type endpointsError []error

func (e endpointsError) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return "no KMIP endpoint answered: " + strings.Join(msgs, "; ")
}

func (e endpointsError) Unwrap() []error { return e }

// shareOf bounds ctx to 1/k of the time it has left (k > 1; ctx itself
// when k is 1 or ctx has no deadline).
func shareOf(ctx context.Context, k int) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if k <= 1 || !ok {
		return ctx, func() {}
	}
	return context.WithDeadlineCause(ctx, time.Now().Add(time.Until(dl)/time.Duration(k)), errShareTimeout)
}
