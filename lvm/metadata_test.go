package lvm

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pvLayout lays out in b, as lvm2 does (lib/format_text/layout.h), a PV's
// label in sector 1, naming a data area at dataStart and one metadata area
// at 4096 of areaSize bytes, and that area's header, whose raw_locn points
// at textSize bytes at textOff.
func pvLayout(b []byte, dataStart, areaSize, textOff, textSize uint64, checksum, flags uint32) {
	le := binary.LittleEndian
	l := b[512:1024]
	copy(l[0:8], labelID)
	le.PutUint64(l[8:16], 1)
	le.PutUint32(l[20:24], 32)
	copy(l[24:32], labelType)
	p := l[32:]
	copy(p[0:32], strings.Repeat("u", 32))
	le.PutUint64(p[32:40], 1<<30)
	areas := []uint64{dataStart, 0, 0, 0, 4096, areaSize, 0, 0} // data area, end; metadata area, end
	for i, v := range areas {
		le.PutUint64(p[40+8*i:], v)
	}
	h := b[4096:4608]
	copy(h[4:20], mdaMagic)
	le.PutUint32(h[20:24], 1)
	le.PutUint64(h[24:32], 4096)
	le.PutUint64(h[32:40], areaSize)
	le.PutUint64(h[40:48], textOff)
	le.PutUint64(h[48:56], textSize)
	le.PutUint32(h[56:60], checksum)
	le.PutUint32(h[60:64], flags)
}

// writeImage writes b to a file of the test's and returns its path.
func writeImage(t *testing.T, b []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pv")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// pvImage writes a physical volume's first 8 KiB: one metadata area at
// 4096 whose raw_locn points at text beginning "VG {".
func pvImage(t *testing.T, vg string, textOff, textSize uint64, checksum, flags uint32) string {
	t.Helper()
	b := make([]byte, 8192)
	pvLayout(b, 1<<20, 4096, textOff, textSize, checksum, flags)
	if textSize > 0 && textOff+4096 < uint64(len(b)) {
		copy(b[4096+textOff:], vg+" {\nid = \"x\"\nseqno = 7\n")
	}
	return writeImage(t, b)
}

// readMark reads a mark with nothing remembered.
func readMark(devices []string, vg string) (string, error) {
	return new(markReader).read(devices, vg)
}

func TestMetadataMarkFollowsTheCurrentText(t *testing.T) {
	a := pvImage(t, "cryptvg", 512, 900, 0xabcd, 0)
	m1, err := readMark([]string{a}, "cryptvg")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := readMark([]string{a}, "cryptvg"); again != m1 {
		t.Fatalf("same bytes, two marks: %q %q", m1, again)
	}
	// A commit: new text at the next place, with another checksum.
	b := pvImage(t, "cryptvg", 1536, 910, 0x1234, 0)
	m2, err := readMark([]string{b}, "cryptvg")
	if err != nil || m2 == m1 {
		t.Fatalf("marks before and after a commit: %q, %q (%v)", m1, m2, err)
	}
	// Two devices of the group: both areas count.
	both, err := readMark([]string{a, b}, "cryptvg")
	if err != nil || !strings.Contains(both, "4096:512:900:0000abcd") || !strings.Contains(both, "4096:1536:910:00001234") {
		t.Fatalf("mark over two devices: %q, %v", both, err)
	}
}

func TestMetadataMarkIgnoresWhatIsNotTheGroups(t *testing.T) {
	other := pvImage(t, "othervg", 512, 900, 1, 0)
	if _, err := readMark([]string{other}, "cryptvg"); !errors.Is(err, ErrNoMetadata) {
		t.Fatalf("a PV of another group: %v, want ErrNoMetadata", err)
	}
	ignored := pvImage(t, "cryptvg", 512, 900, 1, 1) // RAW_LOCN_IGNORED
	if _, err := readMark([]string{ignored}, "cryptvg"); !errors.Is(err, ErrNoMetadata) {
		t.Fatalf("an ignored metadata area: %v, want ErrNoMetadata", err)
	}
	empty := pvImage(t, "cryptvg", 0, 0, 0, 0) // an orphan PV's area
	if _, err := readMark([]string{empty}, "cryptvg"); !errors.Is(err, ErrNoMetadata) {
		t.Fatalf("an empty metadata area: %v, want ErrNoMetadata", err)
	}
	bad := pvImage(t, "cryptvg", 8192, 900, 1, 0) // points past the area
	if _, err := readMark([]string{bad}, "cryptvg"); err == nil || !strings.Contains(err.Error(), "outside its 4096 bytes") {
		t.Fatalf("a text offset past the area: %v", err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(plain, make([]byte, 8192), 0o600)
	if _, err := readMark([]string{plain}, "cryptvg"); err == nil || !strings.Contains(err.Error(), "no LVM2 label") {
		t.Fatalf("not a PV: %v", err)
	}
}

// One reader over a device's life (a mark read costs one sector per
// metadata area once the label and the text are known): commits move the
// mark, the label is read once, and an error forgets what was remembered.
func TestMarkReaderRemembersOnlyWhatCommitsDoNotChange(t *testing.T) {
	var r markReader
	dev := pvImage(t, "cryptvg", 512, 900, 0xabcd, 0)
	read := func() (string, error) { return r.read([]string{dev}, "cryptvg") }
	copyOver := func(src string) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dev, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m1, err := read()
	if err != nil {
		t.Fatal(err)
	}
	// A commit: the text moves and its first sector is read again; text
	// of another group at the new place is not followed.
	copyOver(pvImage(t, "othervg", 1536, 910, 0x1234, 0))
	if _, err := read(); !errors.Is(err, ErrNoMetadata) {
		t.Fatalf("another group's text at a new place: %v, want ErrNoMetadata", err)
	}
	copyOver(pvImage(t, "cryptvg", 1536, 910, 0x1234, 0))
	m2, err := read()
	if err != nil || m2 == m1 || !strings.Contains(m2, "4096:1536:910:00001234") {
		t.Fatalf("after a commit: %q, %v (before %q)", m2, err, m1)
	}
	// The label is not read again while reads succeed: a wiped label goes
	// unnoticed until an error makes the reader start over.
	b, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	clear(b[512:1024])
	if err := os.WriteFile(dev, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if again, err := read(); err != nil || again != m2 {
		t.Fatalf("label wiped, header unchanged: %q, %v; want %q", again, err, m2)
	}
	clear(b[4096+4 : 4096+20]) // the metadata area header's magic
	if err := os.WriteFile(dev, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := read(); err == nil || !strings.Contains(err.Error(), "bad magic") {
		t.Fatalf("damaged area header: %v", err)
	}
	if _, err := read(); err == nil || !strings.Contains(err.Error(), "no LVM2 label") {
		t.Fatalf("after an error the label is read again: %v, want no LVM2 label", err)
	}
}
