package volume

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
)

// rollback collects the undo steps of an operation as its steps complete.
// finish runs them in reverse unless the operation succeeded; it is meant to
// be deferred with a pointer to the operation's named error, and it also
// catches a panic (turned into that error) so that a half-done create or
// mount is undone whatever ended it.
type rollback struct {
	op    string // "create", "mount": named in errors and logs
	name  string // volume
	step  string // the step running now, named in the error
	steps []undoStep
	log   logrus.FieldLogger
	// times are when each step began, for the debug line finish writes
	// on success: what each step cost, where a request's time goes
	// (make bench shows it on a docker run's timeline).
	times []stepTime
}

// stepTime is when a named step began.
type stepTime struct {
	step  string
	began time.Time
}

// undoStep is one action that reverses a completed step.
type undoStep struct {
	what string
	fn   func(context.Context) error
}

// at names the step about to run.
func (r *rollback) at(step string) {
	r.step = step
	r.times = append(r.times, stepTime{step, time.Now()})
}

// timings says how long each step took, in order: "mount 61.2ms, ...".
func (r *rollback) timings(end time.Time) string {
	parts := make([]string, len(r.times))
	for i, t := range r.times {
		next := end
		if i+1 < len(r.times) {
			next = r.times[i+1].began
		}
		parts[i] = fmt.Sprintf("%s %s", t.step, next.Sub(t.began).Round(100*time.Microsecond))
	}
	return strings.Join(parts, ", ")
}

// add registers an undo, run after every undo added later.
func (r *rollback) add(what string, fn func(context.Context) error) {
	r.steps = append(r.steps, undoStep{what, fn})
}

// replaceLast swaps the most recent undo for a more precise one.
func (r *rollback) replaceLast(what string, fn func(context.Context) error) {
	r.steps[len(r.steps)-1] = undoStep{what, fn}
}

// finish is deferred: with *errp nil and no panic it does nothing. Otherwise
// it wraps the error with the failed step, runs every undo under its own
// deadline (the request's may be what ran out), and returns what could not
// be undone.
func (r *rollback) finish(ctx context.Context, errp *error, recovered any) (failed []string) {
	if recovered != nil {
		*errp = fmt.Errorf("internal error: %v", recovered)
		r.log.WithField("panic", fmt.Sprint(recovered)).Error(r.op + " panicked; undoing its steps")
	}
	if *errp == nil {
		if len(r.times) > 0 {
			r.log.WithField("steps", r.timings(time.Now())).Debug(r.op + " steps")
		}
		return nil
	}
	*errp = fmt.Errorf("volume %q: %s failed at %s: %w", r.name, r.op, r.step, *errp)
	cctx, cancel := command.CleanupContext(ctx)
	defer cancel()
	for i := len(r.steps) - 1; i >= 0; i-- {
		if uerr := r.steps[i].fn(cctx); uerr != nil {
			r.log.WithError(uerr).WithField("undo", r.steps[i].what).Error("undo of a failed " + r.op + " failed")
			failed = append(failed, r.steps[i].what+": "+uerr.Error())
		}
	}
	return failed
}

// createLV runs lvcreate with its undo, registered before it runs: a
// timed-out lvcreate may still have made the LV. lvremove deactivates the
// LV itself; the mapping is closed first (the undo runs in reverse), as in
// destroy.
func (m *Manager) createLV(ctx context.Context, rb *rollback, req lvm.CreateRequest) error {
	rb.add("remove LV", func(ctx context.Context) error {
		if err := m.lvm.RemoveLV(ctx, req.Name); err != nil && !errors.Is(err, lvm.ErrNotFound) {
			return err
		}
		return nil
	})
	return m.lvm.CreateLV(ctx, req)
}

// endCreate ends a create's steps (Create's, Import's): a failure or
// panic is undone (rollback.go), and the journal entry e is cleared once
// the undo completed or, with clear, once the create succeeded.
func (m *Manager) endCreate(ctx context.Context, rb *rollback, err error, recovered any, e journal.Entry, clear bool, log logrus.FieldLogger) error {
	failed := rb.finish(ctx, &err, recovered)
	switch {
	case err == nil && !clear:
		return nil
	case err != nil && len(failed) > 0:
		return fmt.Errorf("%w (cleanup incomplete, it will be retried at the next create of this name or plugin start: %s)", err, strings.Join(failed, "; "))
	}
	if jerr := m.st.Update(func(s *journal.State) { s.Creating = journal.Without(s.Creating, e) }); jerr != nil {
		log.WithError(jerr).Warn("the create's journal entry could not be cleared; the next start drops it")
	}
	return err
}
