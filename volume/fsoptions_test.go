package volume

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A create with mount options and a root owner and mode: the options are
// used at every mount, the root directory is as asked; a create again
// with other mount options is refused.
func TestCreateWithFSOptions(t *testing.T) {
	h := newHarness(t)
	uid := os.Getuid() // chown to another user needs root; the owner is what is checked
	h.mustCreate("v", map[string]string{"mountopts": "noatime,lazytime", "uid": strconv.Itoa(uid), "gid": strconv.Itoa(os.Getgid()), "mode": "0750"})
	mp := h.mustMount("v", "c1")
	if got := h.w.mountOpt[filepath.Dir(mp)]; got != "noatime,lazytime" {
		t.Errorf("mounted with %q, want noatime,lazytime", got)
	}
	h.mustUnmount("v", "c1")
	if err := h.m.Create(h.ctx, "v", map[string]string{"mountopts": "noatime"}); err == nil ||
		!strings.Contains(err.Error(), `mountopts is "noatime,lazytime", requested "noatime"`) {
		t.Errorf("create again with other mount options: %v", err)
	}
	h.assertConsistent()
}

// integrity=hmac-sha256 formats with dm-integrity and marks the LV; such a
// volume mounts as usual, and resize and reencrypt refuse it.
func TestIntegrityVolume(t *testing.T) {
	h := newHarness(t)
	if err := h.m.Create(h.ctx, "x", map[string]string{"integrity": "crc32"}); err == nil ||
		!strings.Contains(err.Error(), `option integrity="crc32" is not supported (allowed: hmac-sha256)`) {
		t.Errorf("integrity=crc32: %v", err)
	}
	h.mustCreate("v", map[string]string{"integrity": "hmac-sha256"})
	if hd := h.w.headers["cv-v"]; hd.h.Integrity != "hmac(sha256)" {
		t.Fatalf("header integrity %q", hd.h.Integrity)
	}
	h.mustMount("v", "c1")
	h.mustUnmount("v", "c1")
	if _, err := h.m.Resize(h.ctx, "v", "2G"); err == nil || !strings.Contains(err.Error(), "integrity protection") {
		t.Errorf("resize: %v", err)
	}
	if _, err := h.m.Reencrypt(h.ctx, "v"); err == nil || !strings.Contains(err.Error(), "integrity protection") {
		t.Errorf("reencrypt: %v", err)
	}
	if _, err := h.m.Rotate(h.ctx, "v"); err != nil {
		t.Errorf("rotate of an integrity volume: %v", err)
	}
	h.assertConsistent()
}

// discard=true opens with --allow-discards and mounts with discard; not
// with integrity; not by mountopts.
func TestDiscardVolume(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("d", map[string]string{"discard": "true"})
	mp := h.mustMount("d", "c1")
	if !h.w.openOpts[mappingPrefix+"d"].AllowDiscards || h.w.mountOpt[filepath.Dir(mp)] != "discard" {
		t.Errorf("open options %+v, mount options %q; want discards allowed and mounted with discard", h.w.openOpts[mappingPrefix+"d"], h.w.mountOpt[filepath.Dir(mp)])
	}
	h.mustUnmount("d", "c1")
	h.mustCreate("n", nil)
	mp = h.mustMount("n", "c1")
	if h.w.openOpts[mappingPrefix+"n"].AllowDiscards || h.w.mountOpt[filepath.Dir(mp)] != "" {
		t.Errorf("a volume without discard=true: open %+v, mount %q", h.w.openOpts[mappingPrefix+"n"], h.w.mountOpt[filepath.Dir(mp)])
	}
	h.mustUnmount("n", "c1")
	for opts, want := range map[string]map[string]string{
		"cannot go together":            {"discard": "true", "integrity": "hmac-sha256"},
		`mount option "discard" is not`: {"mountopts": "discard"},
		`option discard="yes" is not`:   {"discard": "yes"},
	} {
		if err := h.m.Create(h.ctx, "x", want); err == nil || !strings.Contains(err.Error(), opts) {
			t.Errorf("%v: %v; want %q", want, err, opts)
		}
	}
}
