package luks

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

// volumeImage is a device as luksFormat leaves it with the fixture's
// layout: both header copies, the keyslots area up to the data segment at
// 16 MiB filled with 0xaa (the wrapped key would be there), and a MiB of
// data filled with 0xdd after it.
func volumeImage(t *testing.T, js string, edit func(copyNo int, b []byte)) []byte {
	t.Helper()
	const hdrSize, data = 16 << 10, 16 << 20
	hdr := headerImage(t, js, hdrSize, edit)
	img := make([]byte, data+1<<20)
	copy(img, hdr[:2*hdrSize])
	fill(img[2*hdrSize:data], 0xaa)
	fill(img[data:], 0xdd)
	return img
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// An intact header is wiped whole without a program: nothing is left of
// the header copies or the keyslots area, the data after it is untouched,
// and the device no longer looks like LUKS to anyone.
func TestEraseWipesAnIntactHeaderWithoutAProgram(t *testing.T) {
	dev := writeImage(t, volumeImage(t, fixture(t, "luksdump-token.json"), nil))
	f := newFakeCS(t) // any program fails the test
	if err := New(WithExec(f.exec)).Erase(context.Background(), dev); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.IndexFunc(img[:16<<20], func(r rune) bool { return r != 0 }); i >= 0 {
		t.Errorf("byte %d of the header area is not zero after Erase", i)
	}
	if bytes.Count(img[16<<20:], []byte{0xdd}) != 1<<20 {
		t.Error("Erase wrote into the data segment")
	}
	if !noMagic(dev) {
		t.Error("a LUKS magic is left after Erase")
	}
}

// Whatever the reader cannot vouch for, or whose layout does not add up, is
// left to `cryptsetup erase` with nothing written by Erase itself.
func TestEraseLeavesOtherHeadersToCryptsetup(t *testing.T) {
	js := fixture(t, "luksdump-token.json")
	for _, c := range []struct {
		what string
		img  []byte
	}{
		{"seqids differ (an interrupted metadata write)", volumeImage(t, js, func(i int, b []byte) {
			if i == 1 {
				binary.BigEndian.PutUint64(b[offSeqID:], 8)
			}
		})},
		{"a keyslot area past the keyslots area", volumeImage(t, strings.Replace(js, `"offset":"32768"`, `"offset":"16777216"`, 1), nil)},
		{"the data segment inside the header area", volumeImage(t, strings.Replace(js, `"offset":"16777216"`, `"offset":"1048576"`, 1), nil)},
		{"a device shorter than the header area", volumeImage(t, js, nil)[:8<<20]},
		{"a keyslots area of part of a sector", volumeImage(t, strings.Replace(js, `"keyslots_size":"16744448"`, `"keyslots_size":"16744449"`, 1), nil)},
	} {
		if !strings.Contains(js, `"offset":"32768"`) || !strings.Contains(js, `"offset":"16777216"`) || !strings.Contains(js, `"keyslots_size":"16744448"`) {
			t.Fatal("fixture changed: the edits above no longer apply")
		}
		dev := writeImage(t, c.img)
		f := newFakeCS(t)
		f.on("cryptsetup luksErase --batch-mode "+dev, csAnswer{})
		if err := New(WithExec(f.exec)).Erase(context.Background(), dev); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if got := f.argvs(); len(got) != 1 {
			t.Errorf("%s: ran %q, want luksErase", c.what, got)
		}
		if img, _ := os.ReadFile(dev); !bytes.Equal(img, c.img) {
			t.Errorf("%s: Erase wrote to the device before leaving it to cryptsetup", c.what)
		}
	}
}
