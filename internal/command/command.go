// Package command runs the external programs that lvm/, luks/ and mount/
// own, the one way all three need: LC_ALL=C so that messages can be matched,
// the rest of the environment inherited (DM_DISABLE_UDEV and LVM_SYSTEM_DIR
// are how a host without udev, such as the lab, configures libdevmapper and
// lvm), stdin taken from the caller's slice without a copy, and a failure
// returned as an *Error that carries the exit code and stderr. It also owns
// the one deadline every undo step runs under (CleanupContext), in volume/
// as in luks/. Everything here is safe for concurrent use.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/cryptvol/cryptvol/internal/cost"
)

// Exec runs one program with stdin and returns its stdout. A program that
// does not exit 0 yields an *Error: lvm/, luks/ and mount/ read its exit
// code and stderr to tell "not found" or "not active" from real failures.
// Tests hand those packages a fake Exec.
type Exec func(ctx context.Context, stdin []byte, name string, args ...string) (stdout []byte, err error)

// Naming says how an Error names its command.
type Naming int

const (
	// WholeArgv names every word: mount's device and target are what the
	// reader needs.
	WholeArgv Naming = iota
	// ProgramAndAction names the program and its first argument ("lvm
	// lvcreate", "cryptsetup open"); the rest is flags.
	ProgramAndAction
)

// Error is a failed command. It never holds stdin, which is where keys travel.
type Error struct {
	Args     []string // full argv, starting with the program
	ExitCode int      // -1 when the command did not exit by itself (not started, killed)
	Stderr   string
	Err      error
	Naming   Naming
}

func (e *Error) Error() string {
	words := e.Args
	if e.Naming == ProgramAndAction && len(words) > 2 {
		words = words[:2]
	}
	msg := fmt.Sprintf("%s: exit code %d", strings.Join(words, " "), e.ExitCode)
	if s := OneLine(e.Stderr); s != "" {
		msg += ": " + s
	} else if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// OneLine trims text (stderr) and folds its lines so that an error stays one
// log line.
func OneLine(s string) string {
	var parts []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// termGrace is how long a program has to exit after SIGTERM, once its
// context ended, before it is killed.
var termGrace = time.Minute

// CleanupTimeout bounds undoing what a failed operation made.
const CleanupTimeout = time.Minute

// CleanupContext gives undo steps their own deadline: they must run even
// when ctx has ended, which is often why they run.
func CleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
}

// Runner returns the Exec that runs programs for real, its errors named as
// n says.
func Runner(n Naming) Exec {
	return func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
		return Run(ctx, n, stdin, name, args...)
	}
}

// Run runs name with args and returns its stdout; a failure is an *Error
// named as n says. stdin is handed over through a bytes.Reader, whose
// WriteTo writes the caller's slice straight into the pipe, so no copy of a
// key is left behind in a buffer the caller cannot zero. When ctx ends
// first, the program gets SIGTERM and termGrace to exit, and
// errors.Is(err, ctx.Err()) holds, even when the program still finished its
// work: callers treat such a step as possibly done. The start is counted in
// ctx's cost tally, if any.
func Run(ctx context.Context, n Naming, stdin []byte, name string, args ...string) ([]byte, error) {
	cost.Program(ctx, name)
	cmd := exec.CommandContext(ctx, name, args...)
	// When ctx ends, SIGTERM, never SIGKILL at once. A killed lvcreate or
	// lvremove can leave the thin pool suspended, and then every I/O to the
	// pool's volumes, and every program touching them, waits in the kernel
	// for good: in the lab, concurrent creates whose request deadlines
	// killed programs left the plugin unanswering and the guest idle
	// until its volume group was removed. lvm blocks all signals while
	// it holds a VG write lock (lvm2 lib/misc/lvm-signal.c,
	// block_signals), so it finishes its change and then exits;
	// cryptsetup stops at its own safe points. Only after termGrace
	// does Wait kill it (exec.Cmd.WaitDelay).
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = termGrace
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	e := &Error{Args: append([]string{name}, args...), ExitCode: -1, Stderr: stderr.String(), Err: err, Naming: n}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		e.ExitCode = ee.ExitCode()
	}
	if ctx.Err() != nil {
		e.Err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return stdout.Bytes(), e
}
