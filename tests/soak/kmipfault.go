package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// setDown changes what the faults left broken, under the lock.
func (s *Soak) setDown(f func(*Down)) {
	s.mu.Lock()
	f(&s.down)
	s.mu.Unlock()
}

// signalKMIP sends sig to the KMIP dev server's process group (its pid
// file, as scripts/kmip/dev-server writes it).
func (s *Soak) signalKMIP(sig string) error {
	b, err := os.ReadFile(filepath.Join(s.KMIPDir, "server.pid"))
	if err != nil {
		return fmt.Errorf("the KMIP server's pid: %w", err)
	}
	_, err = run("kill", "-"+sig, "--", "-"+strings.TrimSpace(string(b)))
	return err
}

// startSlow makes the KMIP server answer late for d: it is stopped for
// 0.3 to 4 s at a time (past the plugin's KMIP timeout now and then) and
// runs for 0.3 s between. Operations go on meanwhile; endSlow, which a
// check calls, ends it early. A second kmip-slow while one runs extends
// nothing: the first one's time holds.
func (s *Soak) startSlow(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slowing != nil {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	s.slowing, s.slowDone = stop, done
	go func() {
		defer close(done)
		end := time.After(d)
		for {
			if err := s.signalKMIP("STOP"); err != nil {
				s.Log.Printf("kmip-slow: %v", err)
			}
			pause := time.Duration(300+rand.IntN(3700)) * time.Millisecond
			var over bool
			select {
			case <-time.After(pause):
			case <-stop:
				over = true
			case <-end:
				over = true
			}
			if err := s.signalKMIP("CONT"); err != nil {
				s.Log.Printf("kmip-slow: %v", err)
			}
			if over {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		s.mu.Lock()
		if s.slowing == stop {
			s.slowing, s.slowDone = nil, nil
		}
		s.mu.Unlock()
		s.Log.Printf("kmip-slow over")
	}()
}

// endSlow ends a running kmip-slow and waits until the server runs again.
func (s *Soak) endSlow() {
	s.mu.Lock()
	stop, done := s.slowing, s.slowDone
	s.mu.Unlock()
	if stop == nil {
		return
	}
	select {
	case <-stop:
	default:
		close(stop)
	}
	<-done
}
