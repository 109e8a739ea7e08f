package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

// parseLine decodes one line of the trail strictly: the line must be
// byte for byte the encoding Record writes of what it decodes to. Go's
// decoder alone takes fields it does not know, the last of duplicated
// ones and any letter case of a name (encoding/json, Unmarshal), and the
// hash covers the re-encoded record, so without this a field added to a
// line, or one written twice, would pass unseen.
func parseLine(line []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(line, &r); err != nil || r.Hash == "" {
		return Record{}, errors.New("not an audit record")
	}
	want, err := r.line()
	if err != nil {
		return Record{}, fmt.Errorf("record %d cannot be encoded: %w", r.Seq, err)
	}
	want = want[:len(want)-1]
	if !bytes.Equal(line, want) {
		at := 0
		for at < len(line) && at < len(want) && line[at] == want[at] {
			at++
		}
		return r, fmt.Errorf("record %d is not written as the plugin writes it (from byte %d on): only the fields %s may appear, once each, in that order, in lower case and without spaces; the line has a field added, repeated, renamed or moved", r.Seq, at+1, fieldList)
	}
	return r, nil
}

// fieldList names Record's JSON fields in their order, for errors.
const fieldList = "seq, time, host, op, volume, tenant, key_id, mount_id, detail, result, error, prev, hash"
