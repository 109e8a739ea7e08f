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

// Status says when and how a volume got its key, which `cryptvol report`
// reads: the create's time until a rotation, then the rotation's; and the
// integrity algorithm of a volume made with one.
func TestStatusSaysWhenTheKeyCameAndHow(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v", nil)
	h.mustCreate("i", map[string]string{"integrity": "hmac-sha256"})
	get := func(name string) map[string]any {
		t.Helper()
		v, err := h.m.Get(h.ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return v.Status
	}
	s := get("v")
	v, err := h.m.Get(h.ctx, "v")
	if err != nil || s[StatusKeyFrom] != "create" || s[StatusKeySince] != v.CreatedAt.UTC().Format(time.RFC3339) || s[StatusIntegrity] != nil {
		t.Fatalf("after create: %v (%v)", s, err)
	}
	if a := get("i")[StatusIntegrity]; a != "hmac-sha256" {
		t.Fatalf("integrity volume's status shows %v", a)
	}
	later := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	h.m.now = func() time.Time { return later }
	if _, err := h.m.Rotate(h.ctx, "v"); err != nil {
		t.Fatal(err)
	}
	s = get("v")
	if s[StatusKeyFrom] != "rotation" || s[StatusKeySince] != later.UTC().Format(time.RFC3339) {
		t.Fatalf("after a rotation: %v, want key_since %s", s, later.UTC().Format(time.RFC3339))
	}
}
