package export

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// ErrChecksum means the stream's end record does not match what came
// before it: the file was changed or damaged.
var ErrChecksum = errors.New("export: the checksum does not match the file: it was changed or damaged")

// Reader reads one export: its manifest at NewReader, then its blocks.
type Reader struct {
	r    io.Reader
	sum  hash.Hash
	m    Manifest
	next uint64
	buf  []byte
	done bool
}

// NewReader reads and checks the magic and the manifest.
func NewReader(r io.Reader) (*Reader, error) {
	er := &Reader{r: r, sum: sha256.New()}
	head := make([]byte, len(magic)+4)
	if err := er.read(head); err != nil {
		return nil, fmt.Errorf("export: not a cryptvol export (too short: %w)", err)
	}
	if !bytes.Equal(head[:len(magic)], []byte(magic)) {
		return nil, errors.New("export: not a cryptvol export (no CRYPTVOL-EXPORT header)")
	}
	n := binary.BigEndian.Uint32(head[len(magic):])
	if n == 0 || n > MaxManifest {
		return nil, fmt.Errorf("export: a manifest of %d bytes (allowed: 1 to %d)", n, MaxManifest)
	}
	b := make([]byte, n)
	if err := er.read(b); err != nil {
		return nil, fmt.Errorf("export: the manifest is cut short: %w", err)
	}
	m, err := parseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	er.m, er.buf = m, make([]byte, m.BlockSize)
	return er, nil
}

// read fills b, counting it into the checksum; a short stream is
// io.ErrUnexpectedEOF.
func (r *Reader) read(b []byte) error {
	if _, err := io.ReadFull(r.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	r.sum.Write(b)
	return nil
}

// Manifest is what the stream says it holds; not to be trusted before
// Next has returned io.EOF.
func (r *Reader) Manifest() Manifest { return r.m }

// Next returns the next block: its offset and bytes, valid until the next
// call. At the end record it checks the checksum and that nothing follows,
// and returns io.EOF; ErrChecksum or another error otherwise.
func (r *Reader) Next() (off uint64, data []byte, err error) {
	if r.done {
		return 0, nil, io.EOF
	}
	var t [1]byte
	if _, err := io.ReadFull(r.r, t[:]); err != nil {
		return 0, nil, fmt.Errorf("export: the file is cut short (no end record): %w", io.ErrUnexpectedEOF)
	}
	switch t[0] {
	case 'E':
		want := r.sum.Sum(nil)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(r.r, got); err != nil {
			return 0, nil, fmt.Errorf("export: the end record is cut short: %w", io.ErrUnexpectedEOF)
		}
		if !bytes.Equal(got, want) {
			return 0, nil, ErrChecksum
		}
		if n, _ := r.r.Read(make([]byte, 1)); n > 0 {
			return 0, nil, errors.New("export: bytes after the end record")
		}
		r.done = true
		return 0, nil, io.EOF
	case 'B':
	default:
		return 0, nil, fmt.Errorf("export: a record of type %q (allowed: 'B', 'E')", t[0])
	}
	r.sum.Write(t[:])
	var h [12]byte
	if err := r.read(h[:]); err != nil {
		return 0, nil, fmt.Errorf("export: a block record is cut short: %w", err)
	}
	off = binary.BigEndian.Uint64(h[:8])
	n := binary.BigEndian.Uint32(h[8:])
	switch {
	case n == 0 || n > r.m.BlockSize:
		return 0, nil, fmt.Errorf("export: a block of %d bytes (allowed: 1 to %d)", n, r.m.BlockSize)
	case off < r.next || off > r.m.SizeBytes || uint64(n) > r.m.SizeBytes-off:
		return 0, nil, fmt.Errorf("export: a block at %d of %d bytes, out of order or past the volume's %d bytes", off, n, r.m.SizeBytes)
	}
	data = r.buf[:n]
	if err := r.read(data); err != nil {
		return 0, nil, fmt.Errorf("export: a block is cut short: %w", err)
	}
	r.next = off + uint64(n)
	return off, data, nil
}
