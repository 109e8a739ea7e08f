package export

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func testManifest() Manifest {
	return Manifest{Format: Format, Volume: "db", SizeBytes: 64 << 10, BlockSize: 4096, FS: "ext4", Thin: true,
		Cipher: "aes-xts-plain64", KeyID: "17", KeyName: "cryptvol/Vg0uuid/db/0123456789abcdef", VGUUID: "Vg0uuid",
		Created: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC), Writer: "cryptvol test"}
}

// volumeBytes is a 64 KiB volume: random blocks, with blocks of zeros
// between them.
func volumeBytes() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 64<<10)
	for i := 0; i < len(b); i += 4096 {
		if (i/4096)%3 != 1 {
			for j := i; j < i+4096; j++ {
				b[j] = byte(r.UintN(256))
			}
		}
	}
	return b
}

func export(t testing.TB, m Manifest, vol []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, m)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(vol); off += int(m.BlockSize) {
		if err := w.Block(uint64(off), vol[off:off+int(m.BlockSize)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// readAll returns the volume a stream describes, zeros where no block came.
func readAll(stream []byte) (Manifest, []byte, error) {
	r, err := NewReader(bytes.NewReader(stream))
	if err != nil {
		return Manifest{}, nil, err
	}
	vol := make([]byte, r.Manifest().SizeBytes)
	for {
		off, data, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Manifest(), vol, nil
		}
		if err != nil {
			return r.Manifest(), nil, err
		}
		copy(vol[off:], data)
	}
}

// A volume goes through a stream and back byte for byte, with its blocks
// of zeros left out of the stream.
func TestRoundTripLeavesZerosOut(t *testing.T) {
	vol := volumeBytes()
	stream := export(t, testManifest(), vol)
	m, got, err := readAll(stream)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, vol) || m != testManifest() {
		t.Fatal("the volume read back differs from the one written")
	}
	if blocks := 16 - 5; len(stream) > 1024+blocks*(4096+13) {
		t.Errorf("the stream is %d bytes: its 5 blocks of zeros were not left out", len(stream))
	}
}

// Every single flipped byte and every cut of the stream is refused, never
// read as a volume.
func TestEveryFlippedByteAndCutIsRefused(t *testing.T) {
	m := testManifest()
	m.SizeBytes, m.BlockSize = 16<<10, 4096
	vol := volumeBytes()[:16<<10]
	stream := export(t, m, vol)
	for i := range stream {
		bad := bytes.Clone(stream)
		bad[i] ^= 0x40
		if _, _, err := readAll(bad); err == nil {
			t.Fatalf("a stream with byte %d of %d flipped was read without error", i, len(stream))
		}
	}
	for n := 0; n < len(stream); n++ {
		if _, _, err := readAll(stream[:n]); err == nil {
			t.Fatalf("a stream cut to %d of %d bytes was read without error", n, len(stream))
		}
	}
	if _, _, err := readAll(append(bytes.Clone(stream), 0)); err == nil || !strings.Contains(err.Error(), "after the end record") {
		t.Fatalf("a byte after the end record: %v", err)
	}
	data := len(stream) - 33 - 4096 + 100 // a byte inside the last block's data
	bad := bytes.Clone(stream)
	bad[data] ^= 1
	if _, _, err := readAll(bad); !errors.Is(err, ErrChecksum) {
		t.Errorf("a flipped data byte: %v, want ErrChecksum", err)
	}
}

// A Writer refuses what a Reader would: a bad manifest, blocks out of
// order, overlapping, too large or past the end.
func TestWriterRefusesWhatReaderWould(t *testing.T) {
	for name, mutate := range map[string]func(*Manifest){
		"format":     func(m *Manifest) { m.Format = 2 },
		"block size": func(m *Manifest) { m.BlockSize = 3000 },
		"size":       func(m *Manifest) { m.SizeBytes = 4097 },
		"no key":     func(m *Manifest) { m.KeyID = "" },
		"control":    func(m *Manifest) { m.Volume = "d\nb" },
	} {
		m := testManifest()
		mutate(&m)
		if _, err := NewWriter(io.Discard, m); err == nil {
			t.Errorf("%s: NewWriter took manifest %+v", name, m)
		}
	}
	w, err := NewWriter(io.Discard, testManifest())
	if err != nil {
		t.Fatal(err)
	}
	one := bytes.Repeat([]byte{1}, 4096)
	if err := w.Block(8192, one); err != nil {
		t.Fatal(err)
	}
	for name, try := range map[string]func() error{
		"before the last": func() error { return w.Block(4096, one) },
		"overlapping":     func() error { return w.Block(8192+100, one) },
		"too large":       func() error { return w.Block(16384, make([]byte, 8192)) },
		"past the end":    func() error { return w.Block(64<<10-100, one) },
		"empty":           func() error { return w.Block(20480, nil) },
	} {
		if err := try(); err == nil {
			t.Errorf("Block %s was written", name)
		}
	}
}

// Whatever the bytes, a Reader does not panic, bounds what it allocates by
// the manifest's block size, and what it accepts is a valid manifest with
// ordered blocks inside the volume.
func FuzzReader(f *testing.F) {
	m := testManifest()
	m.SizeBytes = 16 << 10
	f.Add(export(f, m, volumeBytes()[:16<<10]))
	f.Add([]byte(magic))
	f.Add(append([]byte(magic), 0, 0, 0, 2, '{', '}'))
	f.Fuzz(func(t *testing.T, stream []byte) {
		r, err := NewReader(bytes.NewReader(stream))
		if err != nil {
			return
		}
		if err := r.Manifest().check(); err != nil {
			t.Fatalf("accepted a manifest that does not check: %v", err)
		}
		var next uint64
		for {
			off, data, err := r.Next()
			if err != nil {
				return
			}
			if off < next || off+uint64(len(data)) > r.Manifest().SizeBytes || len(data) > int(r.Manifest().BlockSize) {
				t.Fatalf("accepted a block at %d of %d bytes after %d in a volume of %d", off, len(data), next, r.Manifest().SizeBytes)
			}
			next = off + uint64(len(data))
		}
	})
}
