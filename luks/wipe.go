package luks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cryptvol/cryptvol/internal/failpoint"
)

// areaJSON is the part of the LUKS2 JSON metadata that says how far the
// header reaches (on-disk-format-luks2.pdf, sections 2 and 3.8): both copies
// of binary header and JSON area (json_size each, after a 4096-byte binary
// header), then the keyslots area (keyslots_size bytes), where every
// keyslot's area lies and which the data segment follows. Sizes and offsets
// are decimal strings.
type areaJSON struct {
	Keyslots map[string]struct {
		Area struct {
			Offset string `json:"offset"`
			Size   string `json:"size"`
		} `json:"area"`
	} `json:"keyslots"`
	Segments map[string]struct {
		Offset string `json:"offset"`
	} `json:"segments"`
	Config struct {
		JSONSize     string `json:"json_size"`
		KeyslotsSize string `json:"keyslots_size"`
	} `json:"config"`
}

// maxHeaderArea bounds what wipeHeader writes: cryptsetup's largest
// --luks2-keyslots-size is 128 MiB, plus both header copies at most 4 MiB
// each. A header claiming more is not one cryptvol made.
const maxHeaderArea = 128<<20 + 2*maxHdrSize

// headerBounds returns, from dev's metadata, where the two header copies
// end (and the keyslots area starts) and where the header area ends,
// checked against itself: every keyslot's area inside the keyslots area,
// every data segment after it.
func headerBounds(js []byte) (copies, end int64, err error) {
	var a areaJSON
	if err := json.Unmarshal(js, &a); err != nil {
		return 0, 0, fmt.Errorf("%w: parse metadata: %w", errFallback, err)
	}
	num := func(what, s string) (int64, error) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: %s %q is not a byte count", errFallback, what, s)
		}
		return n, nil
	}
	jsonSize, err := num("json_size", a.Config.JSONSize)
	if err != nil {
		return 0, 0, err
	}
	slotsSize, err := num("keyslots_size", a.Config.KeyslotsSize)
	if err != nil {
		return 0, 0, err
	}
	start := 2 * (binHeaderSize + jsonSize)
	end = start + slotsSize
	if !validHdrSize(uint64(binHeaderSize+jsonSize)) || end > maxHeaderArea {
		return 0, 0, fmt.Errorf("%w: header area of %d bytes", errFallback, end)
	}
	// cryptsetup refuses a keyslots area that is not 4096-aligned
	// (LUKS2 on-disk format, 3.2), and wipeHeader's direct writes need
	// whole sectors.
	if slotsSize%4096 != 0 {
		return 0, 0, fmt.Errorf("%w: keyslots_size %d is not a multiple of 4096", errFallback, slotsSize)
	}
	for id, k := range a.Keyslots {
		off, err := num("keyslot "+id+" area offset", k.Area.Offset)
		if err != nil {
			return 0, 0, err
		}
		size, err := num("keyslot "+id+" area size", k.Area.Size)
		if err != nil {
			return 0, 0, err
		}
		if off < start || off+size > end {
			return 0, 0, fmt.Errorf("%w: keyslot %s area [%d, %d) outside the keyslots area [%d, %d)", errFallback, id, off, off+size, start, end)
		}
	}
	for id, s := range a.Segments {
		off, err := num("segment "+id+" offset", s.Offset)
		if err != nil {
			return 0, 0, err
		}
		if off < end {
			return 0, 0, fmt.Errorf("%w: segment %s at %d, inside the header area (%d bytes)", errFallback, id, off, end)
		}
	}
	return start, end, nil
}

// wipeHeader overwrites dev's whole LUKS2 header area with zeros: the
// keyslots area first (the wrapped volume key is there), then both header
// copies, then flushes the device. Afterwards dev has no LUKS header, and
// nothing on it, passphrase or not, yields the volume key. It works only on
// a header readMetadata vouches for (both copies intact and in sync), whose
// area it then knows exactly; anything else wraps errFallback, having
// written nothing. dev is opened O_EXCL: the kernel refuses (EBUSY) while a
// mapping or a mount holds it, so an open volume is never wiped under its
// mapping (open(2): O_EXCL on a block device).
//
// Why not `cryptsetup erase`: it is one more program start per remove, and
// it leaves the binary headers and the JSON metadata in place, keyslots
// dropped and their areas overwritten; this leaves nothing of the header.
func wipeHeader(dev string) error {
	js, err := readMetadata(dev)
	if err != nil {
		return err
	}
	copies, end, err := headerBounds(js)
	if err != nil {
		return err
	}
	// O_DIRECT: the zeros go to the device as they are written, not
	// through 4 MiB of page cache for the Sync to write back.
	f, err := openDirect(dev, os.O_WRONLY|unix.O_EXCL)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%w: %s is open (a mapping or a mount holds it): %w", ErrBusy, dev, err)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if size < end {
		return fmt.Errorf("%w: device of %d bytes, header area %d", errFallback, size, end)
	}
	if err := zeroRange(f, copies, end); err != nil {
		return err
	}
	if err := zeroRange(f, 0, copies); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("flushing %s: %w", dev, err)
	}
	return f.Close()
}

// zeroRange writes zeros over [from, to) of f, a MiB at a time, from
// page-aligned memory (an anonymous mapping, zeroed by the kernel), as
// O_DIRECT needs.
func zeroRange(f *os.File, from, to int64) error {
	if to <= from {
		return nil
	}
	buf, err := unix.Mmap(-1, 0, int(min(to-from, 1<<20)), unix.PROT_READ, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("wiping the LUKS header of %s: buffer: %w", f.Name(), err)
	}
	defer unix.Munmap(buf)
	failpoint.Here("header-wipe")
	for off := from; off < to; {
		n := min(int64(len(buf)), to-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("wiping the LUKS header of %s: %w", f.Name(), err)
		}
		off += n
	}
	return nil
}
