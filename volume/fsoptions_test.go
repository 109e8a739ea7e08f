package volume

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseFSOptions(t *testing.T) {
	d := Defaults{Size: 1 << 30, FS: FSExt4}
	for _, c := range []struct {
		opts map[string]string
		err  string
	}{
		{map[string]string{"mountopts": "noatime, lazytime,commit=30"}, ""},
		{map[string]string{"mountopts": "discard"}, `mount option "discard" is not allowed on ext4 (allowed: noatime,`},
		{map[string]string{"mountopts": "suid"}, `"suid" is not allowed`},
		{map[string]string{"mountopts": "commit=0"}, `"commit=0" is not allowed`},
		{map[string]string{"mountopts": "largeio"}, `"largeio" is not allowed on ext4`},
		{map[string]string{"fs": "xfs", "size": "320M", "mountopts": "largeio,noatime"}, ""},
		{map[string]string{"fs": "xfs", "size": "320M", "mountopts": "data=journal"}, `"data=journal" is not allowed on xfs`},
		{map[string]string{"uid": "1000", "gid": "0", "mode": "0750"}, ""},
		{map[string]string{"uid": "-1"}, `option uid="-1" is not valid (allowed: a number from 0 to 2147483647)`},
		{map[string]string{"gid": "root"}, `option gid="root" is not valid`},
		{map[string]string{"mode": "0999"}, `option mode="0999" is not valid (allowed: octal permissions such as 755, 0750 or 1777)`},
		{map[string]string{"mode": "7"}, `option mode="7" is not valid`},
		{map[string]string{"inode_ratio": "8192", "reserved_percent": "1"}, ""},
		{map[string]string{"inode_ratio": "1000"}, "option inode_ratio 1000 is not allowed (allowed: a power of two from 1024 to 67108864"},
		{map[string]string{"reserved_percent": "x"}, `option reserved_percent="x" is not a whole number`},
		{map[string]string{"inode_maxpct": "5"}, "inode_maxpct is an xfs choice, not ext4's"},
		{map[string]string{"fs": "xfs", "size": "320M", "inode_maxpct": "5"}, ""},
		{map[string]string{"fs": "xfs", "size": "320M", "reserved_percent": "0"}, "are ext4 choices, not xfs's"},
	} {
		o, err := ParseOptions(c.opts, d)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%v: %v", c.opts, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%v: %v; want %q", c.opts, err, c.err)
		case c.err == "" && c.opts["mode"] == "0750" && (o.Root.Mode != 0o750 || o.Root.UID != 1000 || o.Root.GID != 0):
			t.Errorf("%v: root %+v", c.opts, o.Root)
		}
	}
}

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
