package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Format is the version this package writes and the only one it reads.
const Format = 1

// MaxManifest bounds a manifest's JSON.
const MaxManifest = 64 << 10

// MaxSize bounds a volume's size in a manifest (16 TiB).
const MaxSize = 16 << 40

// Manifest says what an export holds.
type Manifest struct {
	Format    int    `json:"format"`
	Volume    string `json:"volume"`
	SizeBytes uint64 `json:"size_bytes"`
	// BlockSize is the largest block the stream carries, a power of two
	// from 4 KiB to 1 MiB that divides SizeBytes.
	BlockSize uint32 `json:"block_size"`
	FS        string `json:"fs"`
	Thin      bool   `json:"thin"`
	Cipher    string `json:"cipher"`
	// Integrity is the dm-integrity algorithm the volume was formatted
	// with, "" for none.
	Integrity string `json:"integrity,omitempty"`
	// KeyID and KeyName are the KMIP key that opens the exported header
	// (its LUKS token names the same id) and its name, which binds it to
	// Volume in the group of VGUUID (volume/binding.go).
	KeyID   string    `json:"kmip_key_id"`
	KeyName string    `json:"kmip_key_name"`
	VGUUID  string    `json:"vg_uuid"`
	Tenant  string    `json:"tenant,omitempty"`
	Created time.Time `json:"created_at"`
	Writer  string    `json:"writer"`
}

// check says what is wrong with m, if anything.
func (m Manifest) check() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if m.Format != Format {
		bad("format %d (this cryptvol reads format %d)", m.Format, Format)
	}
	if m.BlockSize < 4096 || m.BlockSize > 1<<20 || m.BlockSize&(m.BlockSize-1) != 0 {
		bad("block_size %d (allowed: a power of two from 4096 to 1048576)", m.BlockSize)
	}
	if m.SizeBytes == 0 || m.SizeBytes > MaxSize || (m.BlockSize != 0 && m.SizeBytes%uint64(m.BlockSize) != 0) {
		bad("size_bytes %d (allowed: a multiple of block_size up to %d)", m.SizeBytes, uint64(MaxSize))
	}
	for _, f := range []struct{ name, v string }{{"volume", m.Volume}, {"fs", m.FS}, {"cipher", m.Cipher},
		{"kmip_key_id", m.KeyID}, {"kmip_key_name", m.KeyName}, {"vg_uuid", m.VGUUID}, {"writer", m.Writer}} {
		if f.v == "" || len(f.v) > 256 || !printable(f.v) {
			bad("%s %q (allowed: 1 to 256 printable characters)", f.name, clip(f.v))
		}
	}
	for _, f := range []struct{ name, v string }{{"tenant", m.Tenant}, {"integrity", m.Integrity}} {
		if len(f.v) > 256 || !printable(f.v) {
			bad("%s %q (allowed: up to 256 printable characters)", f.name, clip(f.v))
		}
	}
	return errors.Join(errs...)
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// parseManifest reads a manifest strictly: one JSON object, no unknown
// field, nothing after it, every field checked.
func parseManifest(b []byte) (Manifest, error) {
	var m Manifest
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		return m, fmt.Errorf("manifest: %w", err)
	}
	if d.More() {
		return m, errors.New("manifest: more than one JSON value")
	}
	if err := m.check(); err != nil {
		return m, fmt.Errorf("manifest: %w", err)
	}
	return m, nil
}
