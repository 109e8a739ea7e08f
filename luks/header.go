package luks

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The LUKS2 on-disk format (cryptsetup's docs/on-disk-format-luks2.pdf,
// section 2): a 4096-byte binary header, then the JSON metadata, together
// hdr_size bytes, stored twice: the primary copy at offset 0 and the
// secondary right after it, at hdr_size.
const (
	binHeaderSize = 4096
	offMagic      = 0   // 6 bytes
	offVersion    = 6   // u16, big-endian
	offHdrSize    = 8   // u64: binary header + JSON area
	offSeqID      = 16  // u64: both copies carry the same one when in sync
	offCsumAlg    = 72  // 32 bytes, NUL-padded
	offUUID       = 168 // 40 bytes, NUL-padded text
	uuidLen       = 40
	offHdrOffset  = 256 // u64: where this copy lives
	offCsum       = 448 // 64 bytes: the checksum, over hdr_size bytes with this field zeroed
	csumLen       = 64
)

var (
	magicPrimary   = []byte("LUKS\xba\xbe")
	magicSecondary = []byte("SKUL\xba\xbe")
)

// errFallback marks a header the reader does not vouch for; Inspect then
// asks cryptsetup, whose recovery rules (a damaged copy, differing seqids,
// other checksum algorithms) are the authority.
var errFallback = errors.New("header not readable without cryptsetup")

// readMetadata returns the JSON metadata of dev's LUKS2 header, read from the
// device itself, so that a first mount and a remove start no luksDump only
// to read these bytes. It answers only when both copies are intact
// (sha256 checksums match), say they are where they are, and carry the same
// seqid: then they are in sync and cryptsetup would use the same metadata.
// Anything else wraps errFallback. The device is read with O_DIRECT where it
// allows it, so a stale page cache cannot stand in for the disk.
func readMetadata(dev string) ([]byte, error) {
	f, err := openDirect(dev, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errFallback, err)
	}
	defer f.Close()
	js, _, _, err := readHeader(f)
	return js, err
}

// readHeader is readMetadata on an open device, returning the header's
// uuid (Open names the mapping and its key by it) and hdr_size as well.
func readHeader(f *os.File) (js []byte, uuid string, hdrSize uint64, err error) {
	// Both copies at the smallest hdr_size, cryptvol's (luksFormat's
	// default metadata size): one read; a larger header is read again.
	both, err := readBlock(f, 0, 2*minHdrSize)
	if err != nil {
		return nil, "", 0, err
	}
	hdrSize = binary.BigEndian.Uint64(both[offHdrSize:])
	if !validHdrSize(hdrSize) {
		return nil, "", 0, fmt.Errorf("%w: hdr_size %d", errFallback, hdrSize)
	}
	if hdrSize > minHdrSize {
		if both, err = readBlock(f, 0, int(2*hdrSize)); err != nil {
			return nil, "", 0, err
		}
	}
	primary, secondary := both[:hdrSize], both[hdrSize:2*hdrSize]
	if err := checkCopy(primary, magicPrimary, 0, hdrSize); err != nil {
		return nil, "", 0, fmt.Errorf("%w: primary header: %w", errFallback, err)
	}
	if err := checkCopy(secondary, magicSecondary, hdrSize, hdrSize); err != nil {
		return nil, "", 0, fmt.Errorf("%w: secondary header: %w", errFallback, err)
	}
	if p, s := binary.BigEndian.Uint64(primary[offSeqID:]), binary.BigEndian.Uint64(secondary[offSeqID:]); p != s {
		return nil, "", 0, fmt.Errorf("%w: seqid %d and %d differ", errFallback, p, s)
	}
	// The JSON text, then zeros to the end of the area: cryptsetup refuses
	// anything else there (validate_json_area in
	// lib/luks2/luks2_disk_metadata.c@v2.6.1), so this reader does too.
	js = primary[binHeaderSize:]
	i := bytes.IndexByte(js, 0)
	if i < 0 || len(bytes.TrimLeft(js[i:], "\x00")) != 0 {
		return nil, "", 0, fmt.Errorf("%w: JSON area not NUL-terminated and zero-padded", errFallback)
	}
	return bytes.Clone(js[:i]), string(bytes.TrimRight(primary[offUUID:offUUID+uuidLen], "\x00")), hdrSize, nil
}

// noMagic reports whether dev certainly has no LUKS header: no LUKS magic
// at offset 0 (LUKS1 and a LUKS2 primary) nor a LUKS2 secondary magic at any
// of the offsets where cryptsetup looks for one (16 KiB to 4 MiB, the
// possible hdr_size values). Without a magic cryptsetup sees no header, so
// Format can skip `cryptsetup isLuks` on the fresh LV it is given; a magic
// anywhere, or a device that cannot be read, is left to isLuks.
func noMagic(dev string) bool {
	f, err := openDirect(dev, os.O_RDONLY)
	if err != nil {
		return false
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return false
	}
	for off := int64(0); off <= maxHdrSize; off = max(off*2, minHdrSize) {
		if off+binHeaderSize > size {
			break
		}
		b, err := readBlock(f, off, binHeaderSize)
		if err != nil {
			return false
		}
		if bytes.HasPrefix(b, magicPrimary) || bytes.HasPrefix(b, magicSecondary) {
			return false
		}
	}
	return true
}

// The format allows hdr_size from minHdrSize to maxHdrSize, powers of two.
const (
	minHdrSize = 16 << 10
	maxHdrSize = 4 << 20
)

func validHdrSize(n uint64) bool {
	return n >= minHdrSize && n <= maxHdrSize && n&(n-1) == 0
}

// checkCopy verifies one copy of the header: magic, version 2, hdr_size
// and hdr_offset as expected, and its sha256 checksum.
func checkCopy(b, magic []byte, offset, hdrSize uint64) error {
	switch {
	case !bytes.Equal(b[offMagic:offMagic+len(magic)], magic):
		return errors.New("no LUKS2 magic")
	case binary.BigEndian.Uint16(b[offVersion:]) != 2:
		return fmt.Errorf("version %d", binary.BigEndian.Uint16(b[offVersion:]))
	case binary.BigEndian.Uint64(b[offHdrSize:]) != hdrSize:
		return errors.New("hdr_size differs between the copies")
	case binary.BigEndian.Uint64(b[offHdrOffset:]) != offset:
		return fmt.Errorf("hdr_offset %d, expected %d", binary.BigEndian.Uint64(b[offHdrOffset:]), offset)
	}
	if alg := string(bytes.TrimRight(b[offCsumAlg:offCsumAlg+32], "\x00")); alg != "sha256" {
		return fmt.Errorf("checksum algorithm %q", alg)
	}
	stored := bytes.Clone(b[offCsum : offCsum+csumLen])
	h := sha256.New()
	h.Write(b[:offCsum])
	h.Write(make([]byte, csumLen))
	h.Write(b[offCsum+csumLen:])
	want := make([]byte, csumLen)
	copy(want, h.Sum(nil))
	if !bytes.Equal(stored, want) {
		return errors.New("checksum mismatch")
	}
	return nil
}

// openDirect opens dev with flag and O_DIRECT, or without O_DIRECT where
// the file does not support it (tests' regular files on tmpfs).
func openDirect(dev string, flag int) (*os.File, error) {
	f, err := os.OpenFile(dev, flag|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		f, err = os.OpenFile(dev, flag, 0)
	}
	return f, err
}

// readBlock reads n bytes at off into a page-aligned buffer (O_DIRECT needs
// one; an anonymous mapping is page-aligned).
func readBlock(f *os.File, off int64, n int) ([]byte, error) {
	buf, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errFallback, err)
	}
	defer unix.Munmap(buf)
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", errFallback, f.Name(), err)
	}
	return bytes.Clone(buf), nil
}
