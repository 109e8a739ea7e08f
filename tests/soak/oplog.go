package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"
)

// OpLog prints every operation, fault and check as it happens and keeps
// the last lines, which a failure prints again; it counts them by kind.
type OpLog struct {
	mu     sync.Mutex
	out    io.Writer
	keep   int
	ring   []string
	next   int
	counts map[string]int
	start  time.Time
}

// NewOpLog keeps the last keep lines.
func NewOpLog(out io.Writer, keep int) *OpLog {
	return &OpLog{out: out, keep: keep, counts: map[string]int{}, start: time.Now()}
}

// Printf prints a line, after the seconds since the log began, and keeps
// it.
func (l *OpLog) Printf(format string, a ...any) {
	s := fmt.Sprintf("%5.0fs ", time.Since(l.start).Seconds()) + fmt.Sprintf(format, a...)
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.out, s)
	if len(l.ring) < l.keep {
		l.ring = append(l.ring, s)
	} else {
		l.ring[l.next] = s
	}
	l.next = (l.next + 1) % l.keep
}

// Count adds one to a counter ("op create ok", "fault kill-plugin").
func (l *OpLog) Count(what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[what]++
}

// Last is the kept lines, oldest first.
func (l *OpLog) Last() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ring) < l.keep {
		return slices.Clone(l.ring)
	}
	return append(slices.Clone(l.ring[l.next:]), l.ring[:l.next]...)
}

// Counts is the counters, sorted by name.
func (l *OpLog) Counts() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, k := range slices.Sorted(maps.Keys(l.counts)) {
		out = append(out, fmt.Sprintf("%s: %d", k, l.counts[k]))
	}
	return out
}
