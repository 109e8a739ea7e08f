package volume

import "errors"

// Kinds of failure that callers other than docker tell apart: package csi
// answers them with gRPC codes (INVALID_ARGUMENT, ALREADY_EXISTS,
// RESOURCE_EXHAUSTED). The error's text is unchanged, so what docker shows
// is the same; errors.Is tells the kind.
var (
	// ErrInvalid: a name, option or size the grammar refuses
	// (volume/options). Nothing was made.
	ErrInvalid = errors.New("invalid volume name or option")
	// ErrExists: the volume exists with options other than those asked.
	ErrExists = errors.New("volume exists with different options")
	// ErrNoSpace: the volume group or thin pool cannot give the size.
	// Nothing was made.
	ErrNoSpace = errors.New("not enough space")
)

// kindError is err, also matching kind.
type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }

// ofKind marks err (if not nil) as being of kind.
func ofKind(kind, err error) error {
	if err == nil {
		return nil
	}
	return kindError{err: err, kind: kind}
}
