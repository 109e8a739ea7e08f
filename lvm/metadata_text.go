package lvm

import (
	"errors"
	"fmt"
	"hash/crc32"

	"golang.org/x/sys/unix"
)

// Reading the text a metadata area's header points at (MetadataLVs). The
// area is a circular buffer after its header's sector: a text that runs
// past the area's end goes on right after the header (lvm2
// lib/format_text/format-text.c, _vg_read_raw_area). lvm writes a new text
// after the current one and only then points the header at it, so the
// text a header points at stays in place until the commit after next; the
// checksum tells a text read across such a commit.

// initialCRC is lvm's INITIAL_CRC (lib/misc/crc.h).
const initialCRC = 0xf597a6cf

// lvmCRC is lvm's calc_crc (lib/misc/crc.c): the IEEE CRC-32, with
// INITIAL_CRC for a start and without the final inversion, which
// crc32.Update applies at both ends.
func lvmCRC(b []byte) uint32 { return ^crc32.Update(^uint32(initialCRC), crc32.IEEETable, b) }

// errTextChanged says a text did not match its header's checksum twice
// running: lvm wrote over it while it was read, or the area is damaged.
var errTextChanged = errors.New("metadata text does not match its checksum")

// readText returns the mark of vg over devices and the text of its first
// metadata area holding vg's text, checksum verified. A text that fails
// its checksum is read again once, header first: a commit (this host's or
// another's) may have moved it meanwhile.
func (r *markReader) readText(devices []string, vg string) (string, []byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for try := 0; ; try++ {
		mark, where, err := r.readLocked(devices, vg)
		if err != nil {
			return "", nil, err
		}
		text, err := readArea(where)
		if err != nil {
			r.areas, r.checked = nil, nil
			return "", nil, err
		}
		if lvmCRC(text) == where.loc.checksum {
			return mark, text, nil
		}
		if try == 1 {
			r.areas, r.checked = nil, nil
			return "", nil, fmt.Errorf("%s: metadata area at %d: %w", where.dev, where.start, errTextChanged)
		}
	}
}

// readArea reads the text at where, in one or two parts.
func readArea(where textLocation) ([]byte, error) {
	l := where.loc
	if l.size > where.size-mdaHeaderSize || l.offset < mdaHeaderSize {
		return nil, fmt.Errorf("%s: metadata area at %d: text of %d bytes at %d does not fit its %d bytes",
			where.dev, where.start, l.size, l.offset, where.size)
	}
	first, wrap := l.size, uint64(0)
	if l.offset+l.size > where.size {
		first = where.size - l.offset
		wrap = l.size - first
	}
	f, err := openDirect(where.dev)
	if err != nil {
		return nil, fmt.Errorf("reading LVM metadata text: %w", err)
	}
	defer f.Close()
	buf, err := alignedBuffer(roundSector(int(first)) + roundSector(int(wrap)))
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(buf)
	text := make([]byte, 0, l.size)
	for _, part := range []struct{ off, n uint64 }{{where.start + l.offset, first}, {where.start + mdaHeaderSize, wrap}} {
		if part.n == 0 {
			continue
		}
		b := buf[:roundSector(int(part.n))]
		if _, err := f.ReadAt(b, int64(part.off)); err != nil {
			return nil, fmt.Errorf("reading LVM metadata text: %s at %d: %w", where.dev, part.off, err)
		}
		text = append(text, b[:part.n]...)
	}
	return text, nil
}
