package luks

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// headerImage lays out a LUKS2 header as the on-disk format describes it:
// both copies of binary header plus JSON area, hdr_size each, checksummed.
// edit may change a copy before its checksum is computed.
func headerImage(t *testing.T, js string, hdrSize int, edit func(copyNo int, b []byte)) []byte {
	t.Helper()
	img := make([]byte, 2*hdrSize+1<<20) // and some data area
	for i, magic := range [][]byte{magicPrimary, magicSecondary} {
		b := img[i*hdrSize : (i+1)*hdrSize]
		copy(b[offMagic:], magic)
		binary.BigEndian.PutUint16(b[offVersion:], 2)
		binary.BigEndian.PutUint64(b[offHdrSize:], uint64(hdrSize))
		binary.BigEndian.PutUint64(b[offSeqID:], 7)
		copy(b[offCsumAlg:], "sha256")
		binary.BigEndian.PutUint64(b[offHdrOffset:], uint64(i*hdrSize))
		copy(b[binHeaderSize:], js)
		if edit != nil {
			edit(i, b)
		}
		clear(b[offCsum : offCsum+csumLen])
		sum := sha256.Sum256(b)
		copy(b[offCsum:], sum[:])
	}
	return img
}

func writeImage(t *testing.T, img []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dev")
	if err := os.WriteFile(p, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A header whose two copies are intact and in sync is read from the device:
// Inspect starts no program (luksDump would be a program start in every
// first mount and remove), and reads what luksDump would have printed.
func TestInspectReadsIntactHeaderWithoutAProgram(t *testing.T) {
	for _, c := range []struct {
		fixture string
		hdrSize int
		want    Header
	}{
		{"luksdump-token.json", 16 << 10, Header{Version: 2, Cipher: "aes-xts-plain64", KeyBits: 512, SectorSize: 4096, Keyslots: 1, SlotIDs: []int{0}, Token: &Token{KeyID: "42", Volume: "v1"}}},
		{"luksdump-erased.json", 16 << 10, Header{Version: 2, Cipher: "aes-xts-plain64", SectorSize: 4096, Token: &Token{KeyID: "42", Volume: "v1"}}},
		{"luksdump-token.json", 64 << 10, Header{Version: 2, Cipher: "aes-xts-plain64", KeyBits: 512, SectorSize: 4096, Keyslots: 1, SlotIDs: []int{0}, Token: &Token{KeyID: "42", Volume: "v1"}}},
	} {
		dev := writeImage(t, headerImage(t, fixture(t, c.fixture), c.hdrSize, nil))
		f := newFakeCS(t) // any program fails the test
		h, err := New(WithExec(f.exec)).Inspect(context.Background(), dev)
		if err != nil {
			t.Fatalf("%s: %v", c.fixture, err)
		}
		if !reflect.DeepEqual(h, c.want) {
			t.Errorf("%s: Header = %+v (token %+v), want %+v", c.fixture, h, h.Token, c.want)
		}
	}
}

// Whatever the reader cannot vouch for goes to cryptsetup, which recovers a
// damaged copy, picks the newer of two, and knows LUKS1: here luksDump
// answers with another token, and that must be what Inspect returns.
func TestInspectAsksCryptsetupUnlessBothCopiesAgree(t *testing.T) {
	js := fixture(t, "luksdump-token.json")
	for _, c := range []struct {
		what string
		img  []byte
	}{
		{"secondary copy's JSON changed after its checksum", func() []byte {
			img := headerImage(t, js, 16<<10, nil)
			img[16<<10+binHeaderSize] = ' '
			return img
		}()},
		{"primary checksum wrong", func() []byte {
			img := headerImage(t, js, 16<<10, nil)
			img[offCsum] ^= 1
			return img
		}()},
		{"seqids differ (an interrupted metadata write)", headerImage(t, js, 16<<10, func(i int, b []byte) {
			if i == 1 {
				binary.BigEndian.PutUint64(b[offSeqID:], 8)
			}
		})},
		{"LUKS1", headerImage(t, js, 16<<10, func(_ int, b []byte) { binary.BigEndian.PutUint16(b[offVersion:], 1) })},
		{"sha512 checksums", headerImage(t, js, 16<<10, func(_ int, b []byte) { copy(b[offCsumAlg:], "sha512") })},
		{"hdr_size not a power of two", headerImage(t, js, 16<<10, func(_ int, b []byte) {
			binary.BigEndian.PutUint64(b[offHdrSize:], 20<<10)
		})},
		{"secondary copy says it is elsewhere", headerImage(t, js, 16<<10, func(i int, b []byte) {
			if i == 1 {
				binary.BigEndian.PutUint64(b[offHdrOffset:], 32<<10)
			}
		})},
		// cryptsetup refuses a JSON area with anything but zeros after the
		// text (validate_json_area, lib/luks2/luks2_disk_metadata.c@v2.6.1).
		{"a byte after the JSON text", headerImage(t, js, 16<<10, func(_ int, b []byte) { b[len(b)-1] = '}' })},
		{"no NUL after the JSON text", headerImage(t, js, 16<<10, func(_ int, b []byte) {
			for i := binHeaderSize + len(js); i < len(b); i++ {
				b[i] = ' '
			}
		})},
		{"no header at all", make([]byte, 1<<20)},
		{"device shorter than two copies", headerImage(t, js, 16<<10, nil)[:20<<10]},
	} {
		dev := writeImage(t, c.img)
		f := newFakeCS(t)
		f.on("cryptsetup luksDump --dump-json-metadata "+dev, csAnswer{stdout: fixture(t, "luksdump-notoken.json")})
		h, err := New(WithExec(f.exec)).Inspect(context.Background(), dev)
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if h.Token != nil || len(f.calls) != 1 {
			t.Errorf("%s: Inspect = %+v after %q; want luksDump's answer (no token)", c.what, h, f.argvs())
		}
	}
}

func TestInspectMissingDeviceAsksCryptsetup(t *testing.T) {
	f := newFakeCS(t)
	dev := filepath.Join(t.TempDir(), "gone")
	f.on("cryptsetup luksDump --dump-json-metadata "+dev, csAnswer{code: 4, stderr: "Device " + dev + " does not exist or access denied.\n"})
	f.on("cryptsetup isLuks --type luks2 "+dev, csAnswer{code: 4})
	if _, err := New(WithExec(f.exec)).Inspect(context.Background(), dev); err == nil {
		t.Fatal("Inspect of a missing device succeeded")
	}
}

// Format asks `cryptsetup isLuks` only when a LUKS magic is somewhere a
// header could start: a fresh LV (lvcreate wipes signatures) has none, and a
// device without one has no header for cryptsetup either.
func TestFormatSkipsIsLuksOnlyWithoutAnyMagic(t *testing.T) {
	for _, c := range []struct {
		what   string
		magic  []byte
		at     int
		isLuks bool
	}{
		{"blank device", nil, 0, false},
		{"LUKS magic at 0", magicPrimary, 0, true},
		{"secondary magic at 16 KiB", magicSecondary, 16 << 10, true},
		{"secondary magic at 4 MiB", magicSecondary, 4 << 20, true},
		{"magic where no header starts", magicSecondary, 20 << 10, false},
	} {
		img := make([]byte, 8<<20)
		copy(img[c.at:], c.magic)
		dev := writeImage(t, img)
		f := newFakeCS(t)
		f.on("cryptsetup isLuks "+dev, csAnswer{code: 1})
		f.on(formatCmd+dev, csAnswer{})
		f.on("cryptsetup token import --json-file - "+dev, csAnswer{})
		if err := New(WithExec(f.exec)).Format(context.Background(), dev, testKey, Token{KeyID: "42", Volume: "v1"}); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		asked := slices.Contains(f.argvs(), "cryptsetup isLuks "+dev)
		if asked != c.isLuks || len(f.calls) != 2+map[bool]int{true: 1}[c.isLuks] {
			t.Errorf("%s: ran %q; isLuks wanted: %v", c.what, f.argvs(), c.isLuks)
		}
	}
}
