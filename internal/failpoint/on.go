//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var mu sync.Mutex

// Here counts the point before step and, when the plan in
// CRYPTVOL_FAILPOINTS names this count, kills the process with SIGKILL.
// The files are the shim's (tests/crash_lab_test.go): plan holds
// "N before|after" (either kills here: a point lies between two steps),
// count the steps so far, calls one line per step ("fp STEP").
func Here(step string) {
	dir := os.Getenv("CRYPTVOL_FAILPOINTS")
	if dir == "" {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	plan, err := os.ReadFile(filepath.Join(dir, "plan"))
	if err != nil {
		return // not armed: the shim does the same
	}
	f := strings.Fields(string(plan))
	if len(f) != 2 {
		panic(fmt.Sprintf("failpoint: plan %q: want \"N before|after\"", plan))
	}
	at, err := strconv.Atoi(f[0])
	if err != nil {
		panic(fmt.Sprintf("failpoint: plan %q: %v", plan, err))
	}
	n := 0
	if b, err := os.ReadFile(filepath.Join(dir, "count")); err == nil {
		if n, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			panic(fmt.Sprintf("failpoint: count %q: %v", b, err))
		}
	}
	n++
	if err := os.WriteFile(filepath.Join(dir, "count"), []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
		panic(fmt.Sprintf("failpoint: %v", err))
	}
	calls, err := os.OpenFile(filepath.Join(dir, "calls"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(fmt.Sprintf("failpoint: %v", err))
	}
	fmt.Fprintf(calls, "fp %s\n", step)
	calls.Close()
	if n == at {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
