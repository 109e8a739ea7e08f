//go:build failpoints

package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// The failpoints build counts each point in the shim's files and kills
// its process at the planned one, and only there.
func TestHereCountsAndKillsAtThePlannedStep(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		Here("first")
		Here("second")
		Here("third")
		os.Exit(0)
	}
	dir := t.TempDir()
	// The shim counted one program before.
	os.WriteFile(filepath.Join(dir, "count"), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "plan"), []byte("3 before\n"), 0o644)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHereCountsAndKillsAtThePlannedStep$")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", "CRYPTVOL_FAILPOINTS="+dir)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL at the second point", err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	count, _ := os.ReadFile(filepath.Join(dir, "count"))
	if string(calls) != "fp first\nfp second\n" || string(count) != "3\n" {
		t.Fatalf("calls %q, count %q; want two points counted after the program, the kill at the second", calls, count)
	}
	// Without a plan: nothing counted, nothing killed.
	os.Remove(filepath.Join(dir, "plan"))
	os.Remove(filepath.Join(dir, "calls"))
	again := exec.Command(os.Args[0], "-test.run", "^TestHereCountsAndKillsAtThePlannedStep$")
	again.Env = cmd.Env
	if err := again.Run(); err != nil {
		t.Fatalf("unarmed child: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "calls")); !os.IsNotExist(err) {
		t.Fatalf("unarmed, a point was counted: %v", err)
	}
}
