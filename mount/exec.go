package mount

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Exec runs one command with stdin and returns its stdout. A command that
// does not exit 0 must yield a *Error.
type Exec func(ctx context.Context, stdin []byte, name string, args ...string) (stdout []byte, err error)

// Error is a failed mkfs, mount or umount command.
type Error struct {
	Args     []string // full argv, starting with the program
	ExitCode int      // -1 when the command did not exit by itself (not started, killed)
	Stderr   string
	Err      error
}

func (e *Error) Error() string {
	cmd := strings.Join(e.Args, " ")
	msg := fmt.Sprintf("%s: exit code %d", cmd, e.ExitCode)
	if s := oneLine(e.Stderr); s != "" {
		msg += ": " + s
	} else if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// oneLine trims stderr and folds its lines so that an error stays one log line.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// RunCommand is the default Exec. It runs with LC_ALL=C so that messages
// are the same everywhere; the rest of the environment is inherited.
func RunCommand(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
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
	e := &Error{Args: append([]string{name}, args...), ExitCode: -1, Stderr: stderr.String(), Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		e.ExitCode = ee.ExitCode()
	}
	if ctx.Err() != nil {
		// Let callers see errors.Is(err, context.DeadlineExceeded).
		e.Err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return stdout.Bytes(), e
}
