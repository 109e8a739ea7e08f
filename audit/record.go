package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Event is what a caller records.
type Event struct {
	// Op names what happened: "key.create", "key.get", "key.destroy",
	// "key.locate", "volume.create", "volume.mount", "volume.unmount",
	// "volume.remove", "volume.repair".
	Op      string
	Volume  string
	Tenant  string // whose KMIP identity holds the key; "" the plugin's
	KeyID   string
	MountID string
	// Detail says more where Op alone does not (a repair's rule).
	Detail string
	// Err is the operation's error; nil means it succeeded.
	Err error
	// Took is how long the operation took, when measured (metrics use it;
	// the trail does not: a record is about what happened, not how fast).
	Took time.Duration
}

// Sink takes events: the trail (*Log), metrics, or several (Tee).
type Sink interface {
	Record(Event)
}

// Tee sends every event to each sink, in order.
func Tee(sinks ...Sink) Sink { return tee(sinks) }

type tee []Sink

func (t tee) Record(e Event) {
	for _, s := range t {
		s.Record(e)
	}
}

// Record is one line of the trail. Its field order is its JSON order, and
// the hash is computed over the JSON of the record with Hash empty, so the
// encoding is the canonical form.
type Record struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Op      string    `json:"op"`
	Volume  string    `json:"volume,omitempty"`
	Tenant  string    `json:"tenant,omitempty"`
	KeyID   string    `json:"key_id,omitempty"`
	MountID string    `json:"mount_id,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	Result  string    `json:"result"` // "ok" or "error"
	Error   string    `json:"error,omitempty"`
	// Prev is the previous record's Hash ("" for the first record of a
	// trail).
	Prev string `json:"prev"`
	Hash string `json:"hash"`
}

// Results.
const (
	ResultOK    = "ok"
	ResultError = "error"
)

// sum is the record's hash: hex SHA-256 of its JSON with Hash empty.
func (r Record) sum() (string, error) {
	r.Hash = ""
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// line is the record as written: its JSON and a newline.
func (r Record) line() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
