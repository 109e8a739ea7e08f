//go:build lab

package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// mountOptionsAt reads the options the kernel shows for the mount of the
// volume whose data directory (what a Mount returns) is mp.
func mountOptionsAt(t *testing.T, mp string) string {
	t.Helper()
	mp = filepath.Dir(mp)
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

// Filesystem options: mount options from the allow-list are used at every
// mount, and the root directory gets the owner and mode asked for, on ext4
// and xfs; the data directory a container gets has the owner and mode asked
// for; an option off the list is refused with nothing made.
func TestLabFSOptions(t *testing.T) {
	p := newPlug(t)
	p.start("")
	for _, c := range []struct {
		v, fs, size, mountopts, want string
		mkfs                         map[string]string
		check                        []string // a program whose output must match the last word (a regexp)
	}{
		{"opt4", "ext4", "64M", "noatime,lazytime", "noatime", map[string]string{"reserved_percent": "0", "inode_ratio": "65536"},
			[]string{"sh", "-c", "tune2fs -l /dev/mapper/cryptvol-opt4 | grep -E '^(Reserved block count|Inode count):'", `(?m)^Reserved block count:\s+0$`}},
		{"optx", "xfs", "320M", "noatime,largeio", "noatime", map[string]string{"inode_maxpct": "5"},
			[]string{"xfs_info", "MOUNTPOINT", `imaxpct=5\b`}},
	} {
		opts := map[string]string{"fs": c.fs, "size": c.size, "mountopts": c.mountopts, "uid": "1234", "gid": "2345", "mode": "0750"}
		for k, v := range c.mkfs {
			opts[k] = v
		}
		p.must("create "+c.v, p.create(c.v, opts))
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
			t.Errorf("%s: data directory %d:%d %v; want 1234:2345 0750", c.fs, st.Uid, st.Gid, fi.Mode().Perm())
		}
		args := append([]string(nil), c.check[:len(c.check)-1]...)
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "MOUNTPOINT", filepath.Dir(mp))
		}
		if out, err := run(t, args[0], args[1:]...); err != nil || !regexp.MustCompile(c.check[len(c.check)-1]).MatchString(out) {
			t.Errorf("%s: mkfs choices %v not applied: %s (%v)", c.fs, c.mkfs, out, err)
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
		if f := strings.Fields(l); len(f) > 5 && f[4] == filepath.Dir(mp) && strings.Contains(l, "discard") {
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
