package audit

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"
)

// Head is the chain's head as the log vouches for it outside the host:
// which record was last, its hash, and which records the files held then.
// Nothing in it is secret.
type Head struct {
	// Seq and Hash are the last record written and its hash.
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// First is the first record of the oldest file kept: records before it
	// were rotated away by then.
	First uint64 `json:"first"`
	// Current is the first record of the file being written to (the next
	// record's number when that file was still empty): a file of the trail
	// that starts after it comes from a later rotation.
	Current uint64 `json:"current"`
}

// Anchor keeps heads where whoever can write the trail's files cannot
// change them (package keys: objects on the KMIP server). Seal adds one;
// Heads returns every head kept for this trail, in any order.
type Anchor interface {
	Seal(ctx context.Context, h Head) error
	Heads(ctx context.Context) ([]Head, error)
}

// sealTimeout bounds one Seal, waiting for the KMIP connection included.
const sealTimeout = 2 * time.Minute

// sealer hands heads to the anchor on its own goroutine, so that a record
// never waits for the anchor: Record is called on the volume operations'
// paths, which make no KMIP round trip for the trail. When heads come
// faster than the anchor takes them only the newest waits, since it
// vouches for everything before it; a Seal that fails is logged and the
// next head covers its records.
type sealer struct {
	anchor  Anchor
	log     logrus.FieldLogger
	pending chan Head // holds at most the newest head not yet sealed
	done    chan struct{}
}

func startSealer(a Anchor, log logrus.FieldLogger) *sealer {
	s := &sealer{anchor: a, log: log, pending: make(chan Head, 1), done: make(chan struct{})}
	go s.run()
	return s
}

// submit queues h in place of any head still waiting. It runs under the
// Log's mutex, under which Close takes the sealer away before stop, so no
// submit follows stop.
func (s *sealer) submit(h Head) {
	for {
		select {
		case s.pending <- h:
			return
		default:
		}
		select {
		case <-s.pending:
		default:
		}
	}
}

// stop seals the head still waiting, if any, and returns once done.
func (s *sealer) stop() {
	close(s.pending)
	<-s.done
}

func (s *sealer) run() {
	defer close(s.done)
	for h := range s.pending {
		ctx, cancel := context.WithTimeout(context.Background(), sealTimeout)
		err := s.anchor.Seal(ctx, h)
		cancel()
		l := s.log.WithFields(logrus.Fields{"audit_seq": h.Seq, "audit_hash": h.Hash, "audit_first": h.First})
		if err != nil {
			l.WithError(err).Warn("audit: anchoring the chain's head failed; no record is lost, and the next anchor (at the next rotation of the file or start) covers these records")
			continue
		}
		l.Info("audit: chain head anchored")
	}
}
