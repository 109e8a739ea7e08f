package lvm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The metadata mark: where each physical volume's metadata area says the
// volume group's current metadata text is, and its checksum, read from the
// devices themselves without running lvm. lvm2 writes every metadata commit
// (lvcreate, lvremove, lvchange --addtag, vgextend; not activation) as new
// text at a new place in the circular area with a new checksum, and then
// points the area's header at it, so the mark changes with every commit of
// the group, on this host or another one sharing the devices. The on-disk
// layout is lvm2's lib/format_text/layout.h (label_header, pv_header,
// mda_header, raw_locn; all little-endian).

const (
	sectorSize     = 512
	labelScan      = 4 // the label is in one of the first four sectors
	mdaHeaderSize  = 512
	labelID        = "LABELONE"
	labelType      = "LVM2 001"
	mdaMagic       = " LVM2 x[5A%r0N*>"
	pvHeaderUUIDSz = 32
)

// ErrNoMetadata says no device given holds the group's current metadata:
// the caller must learn the group's devices again.
var ErrNoMetadata = errors.New("no device holds the volume group's metadata")

// markReader reads marks, remembering what does not change between
// commits so that a read costs one sector per metadata area (Get reads the
// mark every time): each device's metadata areas, from its label (only
// pvcreate and pvremove rewrite a label), and, per area, the last text
// location whose first sector was checked to begin "VG {". The header read
// on every call is what a commit changes (the text moves, its checksum
// changes); an area pointing at the location already checked points at the
// same text. Any error, and ErrNoMetadata, forget it all, so the next read
// starts from the labels again.
//
// Concurrency: mu is held across a read.
type markReader struct {
	mu      sync.Mutex
	areas   map[string][]uint64 // device -> its metadata areas' offsets
	checked map[string]rawLocn  // "device:offset" -> a location of vg's text
}

// read returns the mark of volume group vg over devices: for each device
// whose metadata area holds vg's text, "device:offset:size:checksum".
// Devices that are not (or no longer) in vg add nothing; none at all is
// ErrNoMetadata.
func (r *markReader) read(devices []string, vg string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mark, _, err := r.readLocked(devices, vg)
	return mark, err
}

// textLocation is where one metadata area says vg's current text is.
type textLocation struct {
	dev   string
	start uint64 // the area's offset on dev
	size  uint64 // the area's size, its header's sector included
	loc   rawLocn
}

// readLocked is read, with r.mu held; it also returns where the first
// area holding vg's text says the text is.
func (r *markReader) readLocked(devices []string, vg string) (mark string, first textLocation, err error) {
	defer func() {
		if err != nil {
			r.areas, r.checked = nil, nil
		}
	}()
	if r.areas == nil {
		r.areas, r.checked = map[string][]uint64{}, map[string]rawLocn{}
	}
	var parts []string
	var all []textLocation
	for _, dev := range devices {
		locs, err := r.deviceMark(dev, vg)
		if err != nil {
			return "", textLocation{}, err
		}
		for _, l := range locs {
			parts = append(parts, fmt.Sprintf("%s:%d:%d:%d:%08x", dev, l.start, l.loc.offset, l.loc.size, l.loc.checksum))
		}
		all = append(all, locs...)
	}
	if len(parts) == 0 {
		return "", textLocation{}, fmt.Errorf("volume group %s on %s: %w", vg, strings.Join(devices, ","), ErrNoMetadata)
	}
	return strings.Join(parts, " "), all[0], nil
}

// deviceMark reads one device's metadata area headers (and its label, the
// first time) and returns where those holding vg's text say it is.
func (r *markReader) deviceMark(dev, vg string) ([]textLocation, error) {
	f, err := openDirect(dev)
	if err != nil {
		return nil, fmt.Errorf("reading LVM metadata mark: %w", err)
	}
	defer f.Close()
	buf, err := alignedBuffer(4096)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(buf)
	read := func(off int64, n int) ([]byte, error) {
		b := buf[:roundSector(n)]
		if _, err := f.ReadAt(b, off); err != nil {
			return nil, fmt.Errorf("reading LVM metadata mark: %s at %d: %w", dev, off, err)
		}
		return b[:n], nil
	}
	mdas, ok := r.areas[dev]
	if !ok {
		head, err := read(0, labelScan*sectorSize)
		if err != nil {
			return nil, err
		}
		if mdas, err = metadataAreas(head); err != nil {
			return nil, fmt.Errorf("%s: %w", dev, err)
		}
		r.areas[dev] = mdas
	}
	var marks []textLocation
	for _, start := range mdas {
		h, err := read(int64(start), mdaHeaderSize)
		if err != nil {
			return nil, err
		}
		size, loc, err := rawLocation(h)
		if err != nil {
			return nil, fmt.Errorf("%s: metadata area at %d: %w", dev, start, err)
		}
		key := fmt.Sprintf("%s:%d", dev, start)
		if loc.size == 0 || loc.flags&1 != 0 { // empty, or RAW_LOCN_IGNORED
			delete(r.checked, key)
			continue
		}
		if loc.offset >= size || loc.offset%sectorSize != 0 {
			return nil, fmt.Errorf("%s: metadata area at %d: text offset %d outside its %d bytes", dev, start, loc.offset, size)
		}
		if r.checked[key] != loc {
			text, err := read(int64(start+loc.offset), int(min(sectorSize, size-loc.offset)))
			if err != nil {
				return nil, err
			}
			// The text starts "VGNAME {": an area of another group, or
			// of a PV taken out of ours, is not ours to follow.
			if !bytes.HasPrefix(text, []byte(vg+" {")) {
				delete(r.checked, key)
				continue
			}
			r.checked[key] = loc
		}
		marks = append(marks, textLocation{dev: dev, start: start, size: size, loc: loc})
	}
	return marks, nil
}

// openDirect opens dev for reading with O_DIRECT: another host sharing the
// device writes behind this host's page cache.
func openDirect(dev string) (*os.File, error) {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		// tmpfs has no O_DIRECT; only a regular file (a test's image) may
		// be read through the cache, never a shared device.
		if fi, serr := os.Stat(dev); serr == nil && fi.Mode().IsRegular() {
			f, err = os.Open(dev)
		}
	}
	return f, err
}

// metadataAreas finds the LVM2 label in the first sectors and returns the
// absolute offsets of the PV's metadata areas.
func metadataAreas(head []byte) ([]uint64, error) {
	le := binary.LittleEndian
	for s := 0; s < labelScan; s++ {
		l := head[s*sectorSize : (s+1)*sectorSize]
		if string(l[0:8]) != labelID || string(l[24:32]) != labelType {
			continue
		}
		// label_header: id[8] sector u64 crc u32 offset u32 type[8]; the
		// pv_header follows at offset from the label's start.
		p := l[le.Uint32(l[20:24]):]
		p = p[pvHeaderUUIDSz+8:] // uuid, device_size
		// Two lists of {offset u64, size u64}, each ended by a zero pair:
		// data areas, then metadata areas.
		var mdas []uint64
		for list := 0; list < 2; list++ {
			for {
				if len(p) < 16 {
					return nil, errors.New("LVM2 label: area lists run past the label sector")
				}
				off, size := le.Uint64(p[0:8]), le.Uint64(p[8:16])
				p = p[16:]
				if off == 0 && size == 0 {
					break
				}
				if list == 1 {
					mdas = append(mdas, off)
				}
			}
		}
		return mdas, nil
	}
	return nil, errors.New("no LVM2 label in the first four sectors (not a physical volume)")
}

type rawLocn struct {
	offset, size uint64
	checksum     uint32
	flags        uint32
}

// rawLocation checks an mda_header's magic and returns the area's size and
// its first raw_locn (where the current metadata text is).
func rawLocation(h []byte) (uint64, rawLocn, error) {
	le := binary.LittleEndian
	// mda_header: checksum u32, magic[16], version u32, start u64, size u64,
	// then raw_locn {offset u64, size u64, checksum u32, flags u32}...
	if string(h[4:20]) != mdaMagic {
		return 0, rawLocn{}, errors.New("no LVM2 metadata area header (bad magic)")
	}
	size := le.Uint64(h[32:40])
	r := h[40:64]
	return size, rawLocn{le.Uint64(r[0:8]), le.Uint64(r[8:16]), le.Uint32(r[16:20]), le.Uint32(r[20:24])}, nil
}

func roundSector(n int) int { return (n + sectorSize - 1) / sectorSize * sectorSize }

// alignedBuffer returns page-aligned memory, as O_DIRECT reads need.
func alignedBuffer(n int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil, fmt.Errorf("reading LVM metadata mark: buffer: %w", err)
	}
	return b, nil
}

// MetadataMark returns the group's metadata mark (see readMark): equal
// marks mean no metadata commit happened between the two reads. It runs
// no program once the group's devices are known (one `pvs` at first use,
// and again when none of the known devices holds the group's metadata).
func (c *Client) MetadataMark(ctx context.Context) (string, error) {
	c.mu.Lock()
	devs := c.pvs
	c.mu.Unlock()
	if devs != nil {
		mark, err := c.marks.read(devs, c.vg)
		if err == nil {
			return mark, nil
		}
		if !errors.Is(err, ErrNoMetadata) {
			return "", err
		}
	}
	devs, err := c.physicalVolumes(ctx)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.pvs = devs
	c.mu.Unlock()
	return c.marks.read(devs, c.vg)
}

// learnDevices keeps devs, the group's devices as a report just named
// them, for MetadataMark. A device lvm cannot find ("[unknown]", or no
// name) holds no metadata to read: then nothing is kept, and MetadataMark
// asks pvs when it needs the devices.
func (c *Client) learnDevices(devs []string) {
	for _, d := range devs {
		if !strings.HasPrefix(d, "/") {
			return
		}
	}
	c.mu.Lock()
	c.pvs = devs
	c.mu.Unlock()
}

// physicalVolumes lists the group's devices as lvm names them.
func (c *Client) physicalVolumes(ctx context.Context) ([]string, error) {
	out, err := c.run(ctx, "pvs", "-o", "pv_name,vg_name", "--reportformat", "json", "--select", "vg_name="+c.vg)
	if err != nil {
		return nil, fmt.Errorf("volume group %s: listing its physical volumes: %w", c.vg, err)
	}
	rows, err := parseReport[struct {
		PV string `json:"pv_name"`
		VG string `json:"vg_name"`
	}](out, "pv")
	if err != nil {
		return nil, err
	}
	var devs []string
	for _, r := range rows {
		if r.VG == c.vg {
			devs = append(devs, r.PV)
		}
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("volume group %s: %w: pvs reported no physical volumes", c.vg, ErrNotFound)
	}
	return devs, nil
}
