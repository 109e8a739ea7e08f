package mount

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Usage reports what df reports for the same filesystem: compared with
// df -B1 on the test's own temporary directory.
func TestUsageAgreesWithDf(t *testing.T) {
	dir := t.TempDir()
	u, err := New().Usage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Size == 0 || u.Used > u.Size || u.Avail > u.Size {
		t.Fatalf("usage %+v", u)
	}
	out, err := exec.Command("df", "-B1", "--output=size,used,avail,itotal", dir).Output()
	if err != nil {
		t.Skipf("df: %v", err)
	}
	f := strings.Fields(strings.Split(strings.TrimSpace(string(out)), "\n")[1])
	want := make([]uint64, len(f))
	for i, s := range f {
		want[i], _ = strconv.ParseUint(s, 10, 64)
	}
	// Used and Avail move between the two reads when other tests write;
	// the size and the inode count do not.
	if u.Size != want[0] || u.Inodes != want[3] {
		t.Errorf("size %d inodes %d; df says %v", u.Size, u.Inodes, want)
	}
	near := func(a, b uint64) bool { return max(a, b)-min(a, b) <= u.Size/100 }
	if !near(u.Used, want[1]) || !near(u.Avail, want[2]) {
		t.Errorf("used %d avail %d; df says %v", u.Used, u.Avail, want)
	}
}

func TestUsageComputesFromStatfs(t *testing.T) {
	old := statfs
	t.Cleanup(func() { statfs = old })
	statfs = func(path string, st *unix.Statfs_t) error {
		if path != "/mnt/v" {
			return unix.ENOENT
		}
		*st = unix.Statfs_t{Bsize: 4096, Frsize: 1024, Blocks: 1000, Bfree: 300, Bavail: 250, Files: 64, Ffree: 60}
		return nil
	}
	u, err := New().Usage("/mnt/v")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Usage{Size: 1024000, Used: 716800, Avail: 256000, Inodes: 64, InodesFree: 60}); u != want {
		t.Errorf("usage %+v, want %+v", u, want)
	}
	if _, err := New().Usage("/elsewhere"); !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "statfs /elsewhere") {
		t.Errorf("error %v", err)
	}
}
