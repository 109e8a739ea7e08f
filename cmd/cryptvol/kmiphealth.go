package main

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/keys"
)

// kmipHealth is the outcome of the latest KMIP check, shown in every
// volume's Status ("kmip") and logged when it changes. The check runs in
// the background so that a KMIP server that accepts and never answers
// cannot hold up start-up.
type kmipHealth struct {
	mu    sync.Mutex
	state string
}

// How often the server is checked: soon again while it fails, rarely once
// it answers (every create and mount talks to it anyway).
const (
	kmipRecheckFailing = 10 * time.Second
	kmipRecheckOK      = 5 * time.Minute
)

func (h *kmipHealth) status() map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == "" {
		return map[string]any{"kmip": "not checked yet"}
	}
	return map[string]any{"kmip": h.state}
}

// set records s and reports whether it changed.
func (h *kmipHealth) set(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := h.state != s
	h.state = s
	return changed
}

// watch checks the server until ctx ends.
func (h *kmipHealth) watch(ctx context.Context, kms *keys.KMIP, log logrus.FieldLogger) {
	for {
		err := kms.Check(ctx)
		next := kmipRecheckOK
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			next = kmipRecheckFailing
			if h.set("unreachable: " + err.Error()) {
				log.WithError(err).Warn("KMIP server does not answer; creates and mounts fail until it does")
			}
		default:
			if h.set("reachable") {
				log.Info("KMIP server answers")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}
