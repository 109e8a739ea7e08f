package volume

import (
	"strings"
	"testing"
	"time"
)

// Scheduled rotation rotates exactly the volumes whose key is older than
// RotateAfter: by the LV's creation time until a rotation records its own.
func TestScheduledRotationRotatesOldKeysOnly(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RotateAfter = 24 * time.Hour })
	h.mustCreate("old", nil)
	h.mustCreate("new", nil)
	now := time.Now()
	h.m.now = func() time.Time { return now }
	h.w.lvs["cv-old"].Created = now.Add(-48 * time.Hour)
	h.w.lvs["cv-new"].Created = now.Add(-time.Hour)
	oldKey := h.w.headers["cv-old"].h.Token.KeyID
	newKey := h.w.headers["cv-new"].h.Token.KeyID

	if n := h.m.rotateDue(h.ctx); n != 1 {
		t.Fatalf("rotated %d volumes, want 1 (only the 48 h old key)", n)
	}
	if h.w.headers["cv-old"].h.Token.KeyID == oldKey || h.w.headers["cv-new"].h.Token.KeyID != newKey {
		t.Fatal("the wrong volume was rotated")
	}
	if !strings.Contains(strings.Join(h.w.lvs["cv-old"].Tags, ","), tagKeyTimePrefix) {
		t.Errorf("the rotated volume has no key time tag: %v", h.w.lvs["cv-old"].Tags)
	}
	if n := h.m.rotateDue(h.ctx); n != 0 {
		t.Fatalf("a second check rotated %d volumes, want 0: the new key is fresh", n)
	}
	now = now.Add(25 * time.Hour)
	if n := h.m.rotateDue(h.ctx); n != 2 {
		t.Fatalf("a day later %d volumes were rotated, want both", n)
	}
	h.assertConsistent()
	tags := strings.Join(h.w.lvs["cv-old"].Tags, ",")
	if strings.Count(tags, tagKeyTimePrefix) != 1 {
		t.Errorf("tags after two rotations: %s; want one key time tag", tags)
	}
}
