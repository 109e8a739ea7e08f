package command

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/internal/cost"
)

func TestRun(t *testing.T) {
	t.Setenv("CRYPTVOL_TEST_MARK", "passed-through")
	t.Setenv("LC_ALL", "de_DE.UTF-8")
	out, err := Run(context.Background(), ProgramAndAction, []byte("in"), "sh", "-c", `cat; echo " $LC_ALL $CRYPTVOL_TEST_MARK"`)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "in C passed-through\n" {
		t.Fatalf("stdout = %q", out)
	}

	_, err = Run(context.Background(), ProgramAndAction, nil, "sh", "-c", "echo '  boom  ' >&2; echo '  again' >&2; exit 5")
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != 5 || e.Stderr != "  boom  \n  again\n" ||
		!reflect.DeepEqual(e.Args, []string{"sh", "-c", "echo '  boom  ' >&2; echo '  again' >&2; exit 5"}) {
		t.Fatalf("err = %#v", err)
	}
	if err.Error() != "sh -c: exit code 5: boom; again" {
		t.Fatalf("message = %q", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = Run(ctx, ProgramAndAction, nil, "sleep", "10")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &e) || e.ExitCode != -1 {
		t.Fatalf("err = %v, want a *Error wrapping DeadlineExceeded", err)
	}

	_, err = Run(context.Background(), ProgramAndAction, nil, "/nonexistent/program", "x")
	if !errors.As(err, &e) || e.ExitCode != -1 || err.Error() != "/nonexistent/program x: exit code -1: fork/exec /nonexistent/program: no such file or directory" {
		t.Fatalf("missing program: %v", err)
	}
}

func TestErrorMessageNaming(t *testing.T) {
	e := &Error{Args: []string{"mount", "-t", "ext4", "/dev/mapper/cryptvol-a", "/mnt/a"}, ExitCode: 32, Stderr: "mount: /mnt/a: wrong fs type.\n"}
	if got := e.Error(); got != "mount -t ext4 /dev/mapper/cryptvol-a /mnt/a: exit code 32: mount: /mnt/a: wrong fs type." {
		t.Fatalf("whole argv: %q", got)
	}
	e = &Error{Args: []string{"lvm", "lvcreate", "-n", "cv-a"}, ExitCode: 5, Naming: ProgramAndAction}
	if got := e.Error(); got != "lvm lvcreate: exit code 5" {
		t.Fatalf("two words, no stderr: %q", got)
	}
}

// Every start is counted in the request's tally, failed ones too: a
// program that fails still cost its start.
func TestRunCountsProgramStarts(t *testing.T) {
	ctx, tally := cost.With(context.Background())
	if _, err := Run(ctx, WholeArgv, nil, "true"); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, WholeArgv, nil, "false"); err == nil {
		t.Fatal("false succeeded")
	}
	if got := tally.ByProgram(); got != "false 1, true 1" {
		t.Errorf("tally = %q, want false 1, true 1", got)
	}
}

// A program whose context ends gets SIGTERM, not SIGKILL: one that blocks
// it (lvm holding a VG lock) finishes its work; one that does not exit
// within the grace is killed.
func TestRunTerminatesGently(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, WholeArgv, nil, "sleep", "10")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("sleep 10 under a 100 ms deadline: %v after %s", err, time.Since(start))
	}
	if !strings.Contains(err.Error(), "terminated") {
		t.Errorf("not ended by SIGTERM: %v", err)
	}

	// TERM ignored, as lvm's blocked signals are while it commits: the
	// work completes (its output is there); the call still reports the
	// deadline, which callers treat as "may have happened" (they register
	// the undo before the step runs).
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	out, err := Run(ctx2, WholeArgv, nil, "sh", "-c", `trap "" TERM; sleep 0.5; echo committed`)
	if strings.TrimSpace(string(out)) != "committed" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a program that defers SIGTERM: output %q, %v; want it to finish and the deadline reported", out, err)
	}

	// Beyond the grace it is killed.
	old := termGrace
	termGrace = 200 * time.Millisecond
	t.Cleanup(func() { termGrace = old })
	ctx3, cancel3 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel3()
	start = time.Now()
	_, err = Run(ctx3, WholeArgv, nil, "sh", "-c", `trap "" TERM; sleep 10`)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("a program ignoring SIGTERM past the grace: %v after %s", err, time.Since(start))
	}
}
