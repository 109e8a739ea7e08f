package volume

import (
	"errors"
	"strings"
	"testing"
)

// A name the grammar refuses cannot name a volume: package csi answers a
// DeleteVolume of one as done and a publish of one as INVALID_ARGUMENT, by
// the kind, while docker still sees the grammar's own words.
func TestANameTheGrammarRefusesIsErrInvalidEverywhere(t *testing.T) {
	h := newHarness(t)
	bad := strings.Repeat("x", 65)
	for op, err := range map[string]error{
		"create":  h.m.Create(h.ctx, bad, nil),
		"remove":  h.m.Remove(h.ctx, bad),
		"mount":   func() error { _, err := h.m.Mount(h.ctx, bad, "c1"); return err }(),
		"unmount": h.m.Unmount(h.ctx, bad, "c1"),
	} {
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "allowed: at most 64") {
			t.Errorf("%s of a 65-character name: %v, want ErrInvalid with the grammar's words", op, err)
		}
	}
}
