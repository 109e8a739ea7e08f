package mount

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestHostWatchMountsSeesMountAndUnmount mounts and unmounts a tmpfs (root
// needed; skipped where mount(2) is not allowed) and expects a call for each,
// and none while nothing changes.
func TestHostWatchMountsSeesMountAndUnmount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- New().WatchMounts(ctx, func() { calls <- struct{}{} }) }()
	time.Sleep(200 * time.Millisecond) // let it open the table before the first change

	select {
	case <-calls:
		t.Fatal("called with no change to the mount table")
	case <-time.After(300 * time.Millisecond):
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "watch", dir).CombinedOutput(); err != nil {
		cancel()
		t.Skipf("mount not allowed here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	waitCall(t, calls, "mount")
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	waitCall(t, calls, "unmount")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WatchMounts after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WatchMounts did not return after its context ended")
	}
}

func TestWatchMountsMissingTable(t *testing.T) {
	err := New(WithMountInfo(filepath.Join(t.TempDir(), "none"))).WatchMounts(context.Background(), func() {})
	if err == nil {
		t.Fatal("WatchMounts of a missing table: no error")
	}
}

func waitCall(t *testing.T, calls <-chan struct{}, after string) {
	t.Helper()
	select {
	case <-calls:
		for len(calls) > 0 { // one change may be reported with the next
			<-calls
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no call within 10 s after a %s", after)
	}
}
