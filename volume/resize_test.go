package volume

import (
	"fmt"
	"strings"
	"testing"
)

// grown says whether the volume's LV is size bytes and its filesystem
// spans all of it.
func grown(h *harness, name string, size uint64) error {
	lv := h.w.lvs[lvPrefix+name]
	if lv.Size != size || h.w.fsSize[lvPrefix+name] != size {
		return fmt.Errorf("%s: LV %d bytes, filesystem %d bytes; want both %d", name, lv.Size, h.w.fsSize[lvPrefix+name], size)
	}
	return nil
}

// Resize grows the LV, the mapping and the filesystem, closed or mounted; a
// closed volume ends closed, a mounted one stays up; inspect shows the size.
func TestResizeGrowsClosedAndMountedVolumes(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v", map[string]string{"size": "256M"})
	r, err := h.m.Resize(h.ctx, "v", "512M")
	if err != nil || r.OldBytes != 256<<20 || r.NewBytes != 512<<20 || r.Online {
		t.Fatalf("resize closed: %+v, %v", r, err)
	}
	if err := grown(h, "v", 512<<20); err != nil {
		t.Error(err)
	}
	h.assertDown("v")
	v, _ := h.m.Get(h.ctx, "v")
	if v.Status[StatusSize] != "512 MiB" {
		t.Errorf("inspect shows %v", v.Status[StatusSize])
	}

	h.runContainer("v", "c1")
	if r, err := h.m.Resize(h.ctx, "v", "1G"); err != nil || !r.Online {
		t.Fatalf("resize mounted: %+v, %v", r, err)
	}
	if err := grown(h, "v", 1<<30); err != nil {
		t.Error(err)
	}
	h.assertUp("v")
	h.stopContainer("v", "c1")
	h.assertConsistent()
}

func TestResizeRefusesShrinkingAndTooMuch(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v", map[string]string{"size": "256M"})
	before := len(h.w.calls)
	for size, want := range map[string]string{
		"128M": "volume \"v\" is 256 MiB; shrinking to 128 MiB is not supported (allowed: 256 MiB or more)",
		"100T": "has",
		"lots": `size "lots" is not valid`,
	} {
		if _, err := h.m.Resize(h.ctx, "v", size); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resize to %s: %v; want %q", size, err, want)
		}
	}
	for _, c := range h.w.calls[before:] {
		if strings.HasPrefix(c, "lvm.Extend") || strings.HasPrefix(c, "crypt.") || strings.HasPrefix(c, "fs.") {
			t.Errorf("a refused resize ran %s", c)
		}
	}
	if err := grown(h, "v", 256<<20); err != nil {
		t.Error(err)
	}
}
