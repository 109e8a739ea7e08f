//go:build lab

package tests

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// readRaw reads the whole raw LV of v (activated for it, then deactivated,
// which also drops the device's page cache).
func readRaw(t *testing.T, v string) []byte {
	t.Helper()
	lv := os.Getenv("CRYPTVOL_LAB_VG") + "/cv-" + v
	if _, err := run(t, "lvchange", "-ay", lv); err != nil {
		t.Fatal(err)
	}
	defer run(t, "lvchange", "-an", lv)
	b, err := os.ReadFile("/dev/" + lv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFileWith writes n bytes of c into mp/f in place and syncs it.
func writeFileWith(t *testing.T, p string, c byte, n int) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{c}, n), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// Requirement: "Integrity: flip a byte on the raw LV of a closed volume;
// reading that file fails with an I/O error." The file's sectors on the raw
// LV are found by rewriting it in place and comparing the raw LV before and
// after: the longest run of changed blocks is the file's data (the journal
// and inode change in a few blocks). One byte in the middle of it is
// flipped on the closed volume.
func TestLabIntegrityTurnsAChangedByteIntoAnIOError(t *testing.T) {
	p := newPlug(t)
	p.start("")
	v := "integ1"
	p.must("create", p.create(v, map[string]string{"integrity": "hmac-sha256", "size": "64M"}))
	t.Cleanup(func() { _ = p.remove(v) })
	const size = 8 << 20
	mp, err := p.mount(v, "a")
	p.must("mount", err)
	writeFileWith(t, filepath.Join(mp, "f"), 'A', size)
	p.must("unmount", p.unmount(v, "a"))
	before := readRaw(t, v)
	mp, err = p.mount(v, "a")
	p.must("mount", err)
	writeFileWith(t, filepath.Join(mp, "f"), 'B', size)
	p.must("unmount", p.unmount(v, "a"))
	after := readRaw(t, v)

	const blk = 4096
	bestStart, bestLen, start := 0, 0, -1
	for i := 0; i+blk <= len(after); i += blk {
		if !bytes.Equal(before[i:i+blk], after[i:i+blk]) {
			if start < 0 {
				start = i
			}
			if n := i + blk - start; n > bestLen {
				bestStart, bestLen = start, n
			}
		} else {
			start = -1
		}
	}
	if bestLen < size/2 {
		t.Fatalf("the longest changed run on the raw LV is %d bytes; the %d-byte file was not found", bestLen, size)
	}
	off := int64(bestStart + bestLen/2)
	lv := "/dev/" + os.Getenv("CRYPTVOL_LAB_VG") + "/cv-" + v
	if _, err := run(t, "lvchange", "-ay", lv[len("/dev/"):]); err != nil {
		t.Fatal(err)
	}
	dev, err := os.OpenFile(lv, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev.WriteAt([]byte{after[off] ^ 0xff}, off)
	dev.Sync()
	dev.Close()
	run(t, "lvchange", "-an", lv[len("/dev/"):])

	mp, err = p.mount(v, "a")
	p.must("mount after the flip", err)
	got, err := os.ReadFile(filepath.Join(mp, "f"))
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the file over the flipped byte: %d bytes, error %v; want an I/O error", len(got), err)
	}
	p.must("unmount", p.unmount(v, "a"))
}
