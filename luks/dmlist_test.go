package luks

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

// encodeNameList lays out names as the kernel's DM_LIST_DEVICES does
// (drivers/md/dm-ioctl.c list_devices@v6.1): each record 8-aligned, with
// event_nr and flags after the name.
func encodeNameList(names []string) []byte {
	var b []byte
	last := -1
	for i, n := range names {
		off := len(b)
		if last >= 0 {
			binary.NativeEndian.PutUint32(b[last+8:], uint32(off-last))
		}
		rec := make([]byte, (12+len(n)+1+7)&^7+8)
		binary.NativeEndian.PutUint64(rec, uint64(253<<8|i+1))
		copy(rec[12:], n)
		b = append(b, rec...)
		last = off
	}
	return b
}

func TestParseNameList(t *testing.T) {
	for _, names := range [][]string{nil, {"cryptvol-v1"}, {"labvg-cv--v1", "cryptvol-v1", "x", strings.Repeat("n", 127)}} {
		got, err := parseNameList(encodeNameList(names))
		if err != nil || !slices.Equal(got, names) {
			t.Errorf("parseNameList(%q) = %q, %v", names, got, err)
		}
	}
	good := encodeNameList([]string{"cryptvol-v1", "cryptvol-v2"})
	next := func(b []byte, v uint32) []byte { binary.NativeEndian.PutUint32(b[8:], v); return b }
	for what, data := range map[string][]byte{
		"shorter than a record":      good[:11],
		"cut in the second record":   good[:len(good)-12],
		"next past the end":          next(slices.Clone(good), uint32(len(good))),
		"next inside the header":     next(slices.Clone(good), 12),
		"device 0":                   append(make([]byte, 8), good[8:]...),
		"empty name":                 encodeNameList([]string{""}),
		"name of 128 bytes":          encodeNameList([]string{strings.Repeat("n", 128)}),
		"name without its NUL":       []byte("\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00abc"),
		"second record cut at start": append(next(slices.Clone(good[:24]), 24), 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
	} {
		if got, err := parseNameList(data); err == nil {
			t.Errorf("%s: parseNameList = %q, want an error", what, got)
		}
	}
}

// Whatever the answer, parseNameList returns names device-mapper can have
// or an error, and reads back what encodeNameList writes.
func FuzzParseNameList(f *testing.F) {
	f.Add(encodeNameList([]string{"cryptvol-v1", "labvg-cv--v1"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		names, err := parseNameList(data)
		if err != nil {
			return
		}
		for _, n := range names {
			if n == "" || len(n) >= dmNameLen || strings.ContainsRune(n, 0) {
				t.Fatalf("parseNameList gave name %q", n)
			}
		}
		if again, err := parseNameList(encodeNameList(names)); err != nil || !slices.Equal(again, names) {
			t.Fatalf("re-encoded %q read back as %q, %v", names, again, err)
		}
	})
}
