// Package keys owns volume keys: the Manager interface the lifecycle uses and
// its KMIP implementation. Key bytes live only in memory (Key) and on the KMIP
// server; they are never logged, formatted into errors or written to disk.
//
// The KMIP implementation, one concern a file: kmip.go (the KMIP type, one
// call at a time on one connection, timeouts, panics), conn.go (the link
// interface, the TLS connection and TTLV exchange behind it: everything
// that touches kmip-go's wire code; lifecycle_test.go drives the lifecycle
// over an in-memory link instead), endpoints.go (the endpoint list and
// failover between its servers), lifecycle.go (create, get, destroy),
// locate.go (Locate, the duplicate-key rule, Names), group.go (a node's
// Object Group, listing a group and revoking keys for compromise: node
// decommission), tenants.go (a client per tenant identity), material.go (checking
// and wiping key bytes), errors.go (what the server said versus the server
// being away).
//
// Concurrency: a KMIP value is safe for concurrent use; calls queue for its
// single connection (see KMIP).
package keys

import (
	"context"
	"errors"
	"slices"
)

var (
	// ErrNotFound means the key id is unknown to the server.
	ErrNotFound = errors.New("key not found")
	// ErrNotActive means the key exists but is not in the Active state.
	ErrNotActive = errors.New("key is not active")
)

// Manager creates, fetches and destroys volume keys.
type Manager interface {
	// Create returns the id and material of an active 256-bit AES key named
	// name, in KMIP Object Group group ("": the client's own, Config.Group);
	// the caller wipes the key. Exactly one key keeps the name: if
	// another already carries it, the oldest Active one is returned and the
	// others (the new one too) are destroyed.
	Create(ctx context.Context, name, group string) (id string, key *Key, err error)
	// Get fetches the key material of an active key, with the names the
	// server holds for it (Key.Names) from the same request: what binds
	// the key to its volume, whose header and tags only say which key to
	// fetch (volume/binding.go).
	Get(ctx context.Context, id string) (*Key, error)
	// Destroy revokes and destroys the key. Unknown ids succeed.
	Destroy(ctx context.Context, id string) error
	// Deactivate revokes the key (reason: cessation of operation), which
	// moves an Active key to Deactivated for good: KMIP has no way back
	// to Active (KMIP 1.4 specification, 4.19 Activate, 4.20 Revoke).
	// A key already Deactivated succeeds; an unknown id wraps ErrNotFound.
	Deactivate(ctx context.Context, id string) error
	// GetDeactivated is Get for a key that is Deactivated (or still
	// Active): what a restore from the trash needs to move a volume onto
	// a new key. Keys in any other state wrap ErrNotActive.
	GetDeactivated(ctx context.Context, id string) (*Key, error)
	// Locate returns the ids of all keys named name (used for recovery only).
	Locate(ctx context.Context, name string) ([]string, error)
}

// Key holds key bytes in memory, and the key's names on the server. Call
// Wipe when done.
type Key struct {
	b     []byte
	names []string
}

// NewKey takes ownership of b, the material of a key named names.
func NewKey(b []byte, names ...string) *Key { return &Key{b: b, names: names} }

// Bytes returns the key material; valid until Wipe.
func (k *Key) Bytes() []byte { return k.b }

// Names returns the key's Name attributes as the server gave them with the
// material; names are not secret and outlive Wipe.
func (k *Key) Names() []string { return slices.Clone(k.names) }

// Wipe zeroes the key material.
func (k *Key) Wipe() {
	if k == nil {
		return
	}
	clear(k.b)
	k.b = nil
}

// String never reveals key material, so a stray %v cannot leak it.
func (k *Key) String() string { return "[key redacted]" }

// GoString never reveals key material.
func (k *Key) GoString() string { return "[key redacted]" }
