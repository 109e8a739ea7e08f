package keys

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/ttlv"
)

// unavailableError marks transport failures so callers can tell "the server
// is away" (retry later) from "the server said no".
type unavailableError struct{ err error }

func (e *unavailableError) Error() string        { return e.err.Error() }
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// resultError is a failed KMIP operation as reported by the server.
type resultError struct {
	op      kmip.Operation
	reason  kmip.ResultReason
	message string
}

func (e *resultError) Error() string {
	s := fmt.Sprintf("%s failed: %s", ttlv.EnumStr(e.op), ttlv.EnumStr(e.reason))
	if e.reason == kmip.ResultReasonItemNotFound {
		s = ErrNotFound.Error() + ": " + s
	}
	if e.message != "" {
		s += ": " + e.message
	}
	return s
}

// Is maps the server's ItemNotFound to ErrNotFound.
func (e *resultError) Is(target error) bool {
	return target == ErrNotFound && e.reason == kmip.ResultReasonItemNotFound
}

func isResultError(err error) bool {
	var re *resultError
	return errors.As(err, &re)
}

func itemError(bi *kmip.ResponseBatchItem) error {
	if bi.ResultStatus == kmip.ResultStatusSuccess {
		return nil
	}
	return &resultError{op: bi.Operation, reason: bi.ResultReason, message: bi.ResultMessage}
}

// validateText checks a name or id before it is sent to the server.
func validateText(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > maxNameLen:
		return fmt.Errorf("%s is %d bytes long (at most %d allowed)", what, len(s), maxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%s %q contains the non-printable character %U (only printable characters allowed)", what, s, r)
		}
	}
	return nil
}
