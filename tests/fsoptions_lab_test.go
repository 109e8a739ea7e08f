//go:build lab

package tests

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// mountOptionsAt reads the options the kernel shows for the mount at mp.
func mountOptionsAt(t *testing.T, mp string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && f[4] == mp {
			return f[5]
		}
	}
	return ""
}

// Issue 14's options: mount options from the allow-list are used at every
// mount, and the root directory gets the owner and mode asked for, on ext4
// and xfs; an option off the list is refused with nothing made.
func TestLabFSOptions(t *testing.T) {
	p := newPlug(t)
	p.start("")
	for _, c := range []struct{ v, fs, size, mountopts, want string }{
		{"opt4", "ext4", "64M", "noatime,lazytime", "noatime"},
		{"optx", "xfs", "320M", "noatime,largeio", "noatime"},
	} {
		p.must("create "+c.v, p.create(c.v, map[string]string{"fs": c.fs, "size": c.size, "mountopts": c.mountopts,
			"uid": "1234", "gid": "2345", "mode": "0750"}))
		t.Cleanup(func() { _ = p.remove(c.v) })
		mp, err := p.mount(c.v, "a")
		p.must("mount", err)
		if opts := mountOptionsAt(t, mp); !strings.Contains(opts, c.want) || !strings.Contains(opts, "nosuid") || !strings.Contains(opts, "nodev") {
			t.Errorf("%s: mounted with %q; want %s besides nodev,nosuid", c.fs, opts, c.want)
		}
		fi, err := os.Stat(mp)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 1234 || st.Gid != 2345 || fi.Mode().Perm() != 0o750 {
			t.Errorf("%s: root directory %d:%d %v; want 1234:2345 0750", c.fs, st.Uid, st.Gid, fi.Mode().Perm())
		}
		p.must("unmount", p.unmount(c.v, "a"))
		assertDown(t, p, c.v)
	}
	// discard=true: the mapping passes discards (dm-crypt's allow_discards)
	// and the filesystem is mounted with discard.
	p.must("create optd", p.create("optd", map[string]string{"discard": "true"}))
	t.Cleanup(func() { _ = p.remove("optd") })
	mp, err := p.mount("optd", "a")
	p.must("mount", err)
	table, err := run(t, "dmsetup", "table", "cryptvol-optd")
	if err != nil || !strings.Contains(table, "allow_discards") {
		t.Errorf("dm-crypt table of a discard=true volume lacks allow_discards (%v)", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	found := false
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[4] == mp && strings.Contains(l, "discard") {
			found = true
		}
	}
	if !found {
		t.Error("a discard=true volume is not mounted with discard")
	}
	p.must("unmount", p.unmount("optd", "a"))

	err = p.create("optbad", map[string]string{"mountopts": "discard"})
	if err == nil || !strings.Contains(err.Error(), `mount option "discard" is not allowed on ext4`) {
		t.Errorf("mountopts=discard: %v", err)
	}
	if ex, _ := lvState(t, "optbad"); ex {
		t.Error("the refused create left an LV")
	}
}
