package volume

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/lvm"
)

// DefaultRotateCheck is how often scheduled rotation looks for keys older
// than Config.RotateAfter.
const DefaultRotateCheck = time.Hour

// keySince is when the volume got its key: at the rotation that gave it
// (its keytime tag; rotated is true), else when the LV was created.
func keySince(lv lvm.LV) (since time.Time, rotated bool) {
	if v := tagValue(lv.Tags, tagKeyTimePrefix); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Unix(s, 0), true
		}
	}
	return lv.Created, false
}

// keyAge is how long the volume has had its key (keySince).
func (m *Manager) keyAge(lv lvm.LV) time.Duration {
	since, _ := keySince(lv)
	return m.now().Sub(since)
}

// rotateDue rotates, one at a time, every complete volume whose key is
// older than RotateAfter, and returns how many it rotated. A failure is
// logged (and in the audit trail) and retried at the next check.
func (m *Manager) rotateDue(ctx context.Context) int {
	lvs, err := m.lvm.ListLVs(ctx, TagOurs)
	if err != nil {
		m.log.WithField("op", "rotate").WithError(err).Warn("scheduled rotation: listing volumes failed; retried at the next check")
		return 0
	}
	n := 0
	for _, lv := range lvs {
		name, ok := volumeName(lv)
		if !ok || !slices.Contains(lv.Tags, TagReady) {
			continue
		}
		age := m.keyAge(lv)
		if age < m.cfg.RotateAfter {
			continue
		}
		log := m.logFor(name, "rotate").WithFields(logrus.Fields{"key_age": age.Round(time.Minute), "rotate_after": m.cfg.RotateAfter})
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := m.Rotate(rctx, name)
		cancel()
		if err != nil {
			log.WithError(err).Warn("scheduled rotation failed; retried at the next check")
			continue
		}
		log.Info("scheduled rotation: the key was older than allowed")
		n++
	}
	return n
}

// runSchedule checks for due rotations at start and then every
// RotateCheck, until ctx ends.
func (m *Manager) runSchedule(ctx context.Context) {
	every := m.cfg.RotateCheck
	if every <= 0 {
		every = DefaultRotateCheck
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		m.rotateDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
