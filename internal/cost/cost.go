// Package cost counts what one request costs beyond the kernel's own work:
// the programs it started (lvm, cryptsetup, mount...) and the KMIP round
// trips it made. Under emulation, and on a busy host, these counts are what
// a container start pays for, and unlike times they do not depend on the
// machine, so `make bench` prints them per VolumeDriver call.
//
// A Tally rides in the request's context (With); internal/command and keys
// add to whatever tally their context carries, and count nothing without
// one. Concurrency: a Tally is safe for concurrent use; a request's work may
// run on several goroutines.
package cost

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Tally is the cost of one request so far.
type Tally struct {
	mu       sync.Mutex
	programs map[string]int
	kmip     int
}

type key struct{}

// With returns ctx carrying a new Tally, and the Tally.
func With(ctx context.Context) (context.Context, *Tally) {
	t := &Tally{programs: map[string]int{}}
	return context.WithValue(ctx, key{}, t), t
}

func from(ctx context.Context) *Tally {
	t, _ := ctx.Value(key{}).(*Tally)
	return t
}

// Program counts one program started under ctx, by its base name.
func Program(ctx context.Context, name string) {
	if t := from(ctx); t != nil {
		t.mu.Lock()
		t.programs[filepath.Base(name)]++
		t.mu.Unlock()
	}
}

// KMIP counts one KMIP request message sent and answered (or not) under ctx.
func KMIP(ctx context.Context) {
	if t := from(ctx); t != nil {
		t.mu.Lock()
		t.kmip++
		t.mu.Unlock()
	}
}

// Programs is the number of programs started.
func (t *Tally) Programs() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.programs {
		n += c
	}
	return n
}

// KMIPRoundTrips is the number of KMIP request messages sent.
func (t *Tally) KMIPRoundTrips() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.kmip
}

// ByProgram says which programs ran and how often, by name: "cryptsetup 1,
// lvm 2"; "" when none ran.
func (t *Tally) ByProgram() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.programs))
	for n := range t.programs {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, t.programs[n]))
	}
	return strings.Join(parts, ", ")
}
