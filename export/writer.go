package export

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
)

const magic = "CRYPTVOL-EXPORT\n"

// Writer writes one export: the manifest at NewWriter, then the blocks in
// increasing order, then Close writes the checksum.
type Writer struct {
	w    io.Writer
	sum  hash.Hash
	m    Manifest
	next uint64 // the lowest offset the next block may have
	done bool
}

// NewWriter checks m and writes the magic and the manifest.
func NewWriter(w io.Writer, m Manifest) (*Writer, error) {
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxManifest {
		return nil, fmt.Errorf("manifest: %d bytes (allowed: %d)", len(b), MaxManifest)
	}
	ew := &Writer{w: w, sum: sha256.New(), m: m}
	head := make([]byte, 0, len(magic)+4+len(b))
	head = append(head, magic...)
	head = binary.BigEndian.AppendUint32(head, uint32(len(b)))
	head = append(head, b...)
	return ew, ew.write(head)
}

func (w *Writer) write(b []byte) error {
	w.sum.Write(b)
	_, err := w.w.Write(b)
	return err
}

// Block writes data, the bytes at off, unless they are all zero (an
// importer writes zeros where no block came).
func (w *Writer) Block(off uint64, data []byte) error {
	switch {
	case w.done:
		return errors.New("export: block after Close")
	case len(data) == 0 || len(data) > int(w.m.BlockSize):
		return fmt.Errorf("export: a block of %d bytes (allowed: 1 to %d)", len(data), w.m.BlockSize)
	case off < w.next || off > w.m.SizeBytes || uint64(len(data)) > w.m.SizeBytes-off:
		return fmt.Errorf("export: a block at %d of %d bytes, out of order or past the volume's %d", off, len(data), w.m.SizeBytes)
	}
	w.next = off + uint64(len(data))
	if allZero(data) {
		return nil
	}
	var h [13]byte
	h[0] = 'B'
	binary.BigEndian.PutUint64(h[1:9], off)
	binary.BigEndian.PutUint32(h[9:13], uint32(len(data)))
	if err := w.write(h[:]); err != nil {
		return err
	}
	return w.write(data)
}

// Close writes the end record: the SHA-256 of everything before it.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	sum := w.sum.Sum(nil)
	_, err := w.w.Write(append([]byte{'E'}, sum...))
	return err
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
