//go:build lab

package tests

import (
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cryptvol/cryptvol/plugin"
	"github.com/cryptvol/cryptvol/volume"
	"github.com/cryptvol/cryptvol/volume/options"
)

func (p *plug) resize(v, size string) (r plugin.ResizeResponse, err error) {
	err = p.call(plugin.ResizePath, plugin.VolumeRequest{Name: v, Size: size}, &r)
	return r, err
}

// fsBytes is the size of the filesystem mounted at mp, as df sees it.
func fsBytes(t *testing.T, mp string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(mp, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * uint64(st.Bsize)
}

// Requirement: "Grow a mounted volume under a writing container; grow an
// unmounted one; both keep their data and show the new size." Through the
// real plugin, for ext4 and xfs; shrinking is refused and changes nothing.
func TestLabResize(t *testing.T) {
	p := newPlug(t)
	p.start("")
	for _, c := range []struct{ fs, v, size, closed, mounted string }{
		{"ext4", "grow4", "64M", "128M", "192M"},
		{"xfs", "growx", "320M", "384M", "448M"},
	} {
		p.must("create", p.create(c.v, map[string]string{"fs": c.fs, "size": c.size}))
		t.Cleanup(func() { _ = p.remove(c.v) })
		mp, err := p.mount(c.v, "w")
		p.must("mount", err)
		before := fsBytes(t, mp)
		p.must("unmount", p.unmount(c.v, "w"))
		writeFile(t, p, c.v, "w")

		if _, err := p.resize(c.v, c.closed); err != nil {
			t.Fatalf("%s: resize closed: %v", c.fs, err)
		}
		assertDown(t, p, c.v)
		got, err := p.get(c.v)
		p.must("get", err)
		if want, _ := options.ParseSize(c.closed); got.Status[volume.StatusSizeBytes] != strconv.FormatUint(want, 10) {
			t.Errorf("%s: inspect shows %v bytes after growing to %s", c.fs, got.Status[volume.StatusSizeBytes], c.closed)
		}
		mp, err = p.mount(c.v, "w")
		p.must("mount", err)
		afterClosed := fsBytes(t, mp)
		if afterClosed <= before {
			t.Errorf("%s: the filesystem is %d bytes after growing closed, was %d", c.fs, afterClosed, before)
		}
		readBack(t, p, mp)

		stop := startWriter(mp)
		r, rerr := p.resize(c.v, c.mounted)
		if err := stop(); err != nil {
			t.Errorf("%s: the writer saw an error during the online grow: %v", c.fs, err)
		}
		if rerr != nil || !r.Result.Online {
			t.Fatalf("%s: resize mounted: %+v, %v", c.fs, r.Result, rerr)
		}
		if now := fsBytes(t, mp); now <= afterClosed {
			t.Errorf("%s: the mounted filesystem is %d bytes after growing, was %d", c.fs, now, afterClosed)
		}
		readBack(t, p, mp)
		if _, err := p.resize(c.v, c.size); err == nil || !strings.Contains(err.Error(), "shrinking") {
			t.Errorf("%s: shrinking: %v; want a refusal", c.fs, err)
		}
		p.must("unmount", p.unmount(c.v, "w"))
		assertDown(t, p, c.v)
	}
}
