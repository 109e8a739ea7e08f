package mount

import (
	"context"

	"github.com/cryptvol/cryptvol/internal/command"
)

// Exec runs one command with stdin and returns its stdout. A command that
// does not exit 0 must yield a *Error.
type Exec func(ctx context.Context, stdin []byte, name string, args ...string) (stdout []byte, err error)

// Error is a failed mkfs, mount or umount command; its message gives the
// whole command line, whose device and target are what a reader needs.
type Error = command.Error

// RunCommand is the default Exec (see package command).
func RunCommand(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	return command.Run(ctx, 0, stdin, name, args...)
}
