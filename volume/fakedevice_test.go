package volume

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/mount"
)

// The fake world keeps an LV's header and filesystem as state, not bytes.
// Its device, opened, reads as that state serialized at offset 0 (JSON,
// then zeros to the LV's size), and a device written and closed takes on
// the state its first bytes say: so an export carries exactly what the
// header and filesystem were, and an import makes them again.

// lvImage is what the fake's device bytes carry of an LV.
type lvImage struct {
	Header   *luks.Header     `json:"header,omitempty"`
	Slots    map[int][32]byte `json:"slots,omitempty"`
	Reencs   int              `json:"reencrypted,omitempty"`
	FS       string           `json:"fs,omitempty"`
	FSSize   uint64           `json:"fs_size,omitempty"`
	FSUsed   uint64           `json:"fs_used,omitempty"`
	FSUUID   string           `json:"fs_uuid,omitempty"`
	Layout   bool             `json:"layout,omitempty"`
	Contents string           `json:"contents,omitempty"`
}

type fakeDevice struct {
	s      *session
	lv     string
	size   int64
	image  []byte           // reading: the serialized state
	blocks map[int64][]byte // writing: what was written, by offset
	write  bool
}

func (f fakeFS) OpenDevice(dev string, write bool) (mount.Device, error) {
	done, err := f.s.enter("fs.OpenDevice", dev)
	if err != nil {
		return nil, err
	}
	defer done()
	w := f.s.w
	name, err := w.activeLV(dev)
	if err != nil {
		return nil, err
	}
	if write && w.lvOpen(name) {
		return nil, fmt.Errorf("opening %s: device or resource busy", dev)
	}
	d := &fakeDevice{s: f.s, lv: name, size: int64(w.lvs[name].Size), write: write, blocks: map[int64][]byte{}}
	if !write {
		img := lvImage{FS: w.fsMade[name], FSSize: w.fsSize[name], FSUsed: w.fsUsed[name], FSUUID: w.fsUUID[name],
			Layout: w.layout[name], Contents: w.contents[name]}
		if hd, ok := w.headers[name]; ok {
			h := hd.h
			img.Header, img.Slots, img.Reencs = &h, hd.slots, hd.reencrypted
		}
		if d.image, err = json.Marshal(img); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *fakeDevice) ReadAt(p []byte, off int64) (int, error) {
	if off >= d.size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > d.size-off {
		n = int(d.size - off)
	}
	clear(p[:n])
	if off < int64(len(d.image)) {
		copy(p[:n], d.image[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *fakeDevice) WriteAt(p []byte, off int64) (int, error) {
	if !d.write {
		return 0, errors.New("device opened read-only")
	}
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, fmt.Errorf("write at %d of %d bytes past the device's %d", off, len(p), d.size)
	}
	d.blocks[off] = bytes.Clone(p)
	return len(p), nil
}

func (d *fakeDevice) Sync() error { return nil }

// Close of a written device gives the LV the state its first bytes say.
func (d *fakeDevice) Close() error {
	if !d.write {
		return nil
	}
	done, err := d.s.enter("fs.CloseDevice", d.lv)
	if err != nil {
		return err
	}
	defer done()
	var head []byte
	for off := int64(0); ; {
		b, ok := d.blocks[off]
		if !ok {
			break
		}
		head = append(head, b...)
		off += int64(len(b))
	}
	head, _, _ = bytes.Cut(head, []byte{0})
	var img lvImage
	if json.Unmarshal(head, &img) != nil {
		return nil // not an image: the LV holds bytes the fake cannot read as a header
	}
	w := d.s.w
	if img.Header != nil {
		w.headers[d.lv] = &fakeHeader{h: *img.Header, slots: img.Slots, reencrypted: img.Reencs}
	}
	w.fsMade[d.lv], w.fsSize[d.lv], w.fsUsed[d.lv], w.fsUUID[d.lv] = img.FS, img.FSSize, img.FSUsed, img.FSUUID
	w.layout[d.lv], w.contents[d.lv] = img.Layout, img.Contents
	return nil
}
