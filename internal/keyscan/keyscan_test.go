package keyscan

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A pattern is found wherever it lies in a file larger than one chunk,
// across a chunk boundary too, and not found when it is not there.
func TestFileAcrossChunks(t *testing.T) {
	pat := bytes.Repeat([]byte("k3y"), 20) // 60 bytes, like a hex key
	other := []byte("0123456789abcdef")
	for _, at := range []int{0, chunk - 30, chunk + len(pat) - 1 - 59, 2*chunk + 7, -1} {
		data := make([]byte, 3*chunk)
		if at >= 0 {
			copy(data[at:], pat)
		}
		f := filepath.Join(t.TempDir(), "disk")
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		n, hit, err := File(f, [][]byte{other, pat})
		// A find ends the read; a miss reads it all.
		if err != nil || hit != (at >= 0) || (!hit && n != int64(len(data))) {
			t.Errorf("pattern at %d: read %d, found %v, %v", at, n, hit, err)
		}
	}
}

// failingReader returns its data, then an error that is not the end.
type failingReader struct{ data []byte }

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("input/output error")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// A read that fails before the end is reported, not taken for a scan that
// found nothing.
func TestReaderReportsAFailedRead(t *testing.T) {
	n, hits, err := Reader(&failingReader{data: make([]byte, 1000)}, [][]byte{[]byte("k3y")}, false)
	if err == nil || !strings.Contains(err.Error(), "input/output error") || n != 1000 || hits[0] {
		t.Fatalf("Reader = %d, %v, %v; want 1000 bytes, no hit, the read's error", n, hits, err)
	}
}
