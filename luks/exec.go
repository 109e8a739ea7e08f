package luks

import (
	"context"

	"github.com/cryptvol/cryptvol/internal/command"
)

// Exec runs one command with stdin and returns its stdout. A command that
// does not exit 0 must yield a *Error, because Cryptsetup reads the exit
// code from it (cryptsetup exits 1 for "not LUKS", 4 for "not active").
type Exec func(ctx context.Context, stdin []byte, name string, args ...string) (stdout []byte, err error)

// Error is a failed cryptsetup command; its message names "cryptsetup
// ACTION". It never holds stdin, which is where keys travel.
type Error = command.Error

// RunCommand is the default Exec (see package command: LC_ALL=C, the
// environment inherited, keys passed on stdin without a copy, typed errors).
func RunCommand(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	return command.Run(ctx, 2, stdin, name, args...)
}
