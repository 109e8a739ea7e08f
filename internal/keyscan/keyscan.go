// Package keyscan searches bytes for a key's own bytes, for the lab's tests:
// the Go lab tests' scan of state directories and logs (tests/) and the
// key-state tool's --scan (tests/keystate). It owns the forms a key is
// looked for in and the chunked read that finds a form across chunk
// boundaries without holding a large file or disk whole. No state; safe for
// concurrent use.
package keyscan

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
)

// Patterns returns the forms key is looked for in: raw, hex (either case),
// base64 and URL-safe base64 without padding. They hold key material: the
// caller clears them when done.
func Patterns(key []byte) [][]byte {
	h := []byte(hex.EncodeToString(key))
	return [][]byte{bytes.Clone(key), h, bytes.ToUpper(h),
		[]byte(base64.StdEncoding.EncodeToString(key)), []byte(base64.RawURLEncoding.EncodeToString(key))}
}

// overlap is how much of a chunk's end is searched again with the next one,
// so patterns must be shorter; chunk is what one read takes.
const (
	overlap = 4 << 10
	chunk   = 8 << 20
)

// Reader reads r once, in chunks that overlap by 4 KiB (patterns must be
// shorter), and reports the bytes read and which patterns occur; with first
// it stops at the first hit. A read that fails before the end is an error:
// a scan cut short has not shown that a pattern is absent.
func Reader(r io.Reader, pats [][]byte, first bool) (int64, []bool, error) {
	hits := make([]bool, len(pats))
	buf := make([]byte, chunk)
	defer clear(buf)
	keep, total, left := 0, int64(0), len(pats)
	for {
		n, err := io.ReadFull(r, buf[keep:])
		total += int64(n)
		win := buf[:keep+n]
		for i, p := range pats {
			if !hits[i] && bytes.Contains(win, p) {
				hits[i] = true
				left--
				if first || left == 0 {
					return total, hits, nil
				}
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, hits, nil
		}
		if err != nil {
			return total, hits, err
		}
		keep = min(overlap, len(win))
		copy(buf, win[len(win)-keep:])
	}
}

// File reads the file at path (a block device too) until one of pats is
// found or it ends, and reports the bytes read and whether one was found.
func File(path string, pats [][]byte) (int64, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	n, hits, err := Reader(f, pats, true)
	if err != nil {
		return n, false, fmt.Errorf("read %s: %w", path, err)
	}
	return n, slices.Contains(hits, true), nil
}
