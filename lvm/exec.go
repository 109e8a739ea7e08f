package lvm

import (
	"context"

	"github.com/cryptvol/cryptvol/internal/command"
)

// Exec runs one command with stdin and returns its stdout. A command that
// does not exit 0 must yield a *Error, because the Client reads the exit
// code and stderr from it to tell "not found" from real failures.
type Exec func(ctx context.Context, stdin []byte, name string, args ...string) (stdout []byte, err error)

// Error is a failed lvm command; its message names "lvm SUBCOMMAND".
type Error = command.Error

// RunCommand is the default Exec (see package command: LC_ALL=C, the
// environment inherited, typed errors).
func RunCommand(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	return command.Run(ctx, 2, stdin, name, args...)
}
