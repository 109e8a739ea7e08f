package volume

import (
	"strings"
	"testing"
)

// Reencrypt gives the volume a new volume key, mounted (online) or not,
// keeping its KMIP key; an interrupted one is resumed; a rotation waits
// for it to finish.
func TestReencrypt(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v", nil)
	key := h.w.headers["cv-v"].h.Token.KeyID
	r, err := h.m.Reencrypt(h.ctx, "v")
	if err != nil || r.Online || r.Resumed || h.w.headers["cv-v"].reencrypted != 1 {
		t.Fatalf("offline reencrypt: %+v, %v (reencryptions %d)", r, err, h.w.headers["cv-v"].reencrypted)
	}
	h.assertDown("v")
	h.runContainer("v", "c1")
	if r, err := h.m.Reencrypt(h.ctx, "v"); err != nil || !r.Online {
		t.Fatalf("online reencrypt: %+v, %v", r, err)
	}
	h.assertUp("v")
	h.stopContainer("v", "c1")

	h.w.headers["cv-v"].h.Reencrypting = true // a crash in the middle of one
	if _, err := h.m.Rotate(h.ctx, "v"); err == nil || !strings.Contains(err.Error(), "run cryptvol reencrypt first") {
		t.Errorf("rotate during an unfinished reencryption: %v", err)
	}
	h.mustMount("v", "c2") // an interrupted reencryption still opens
	h.mustUnmount("v", "c2")
	if r, err := h.m.Reencrypt(h.ctx, "v"); err != nil || !r.Resumed {
		t.Fatalf("resumed reencrypt: %+v, %v", r, err)
	}
	if h.w.headers["cv-v"].h.Token.KeyID != key || h.w.headers["cv-v"].reencrypted != 3 {
		t.Errorf("after three reencryptions: key %s (was %s), %d done", h.w.headers["cv-v"].h.Token.KeyID, key, h.w.headers["cv-v"].reencrypted)
	}
	h.assertConsistent()
	if _, err := h.m.Rotate(h.ctx, "v"); err != nil {
		t.Errorf("rotate after reencryption: %v", err)
	}
	h.assertConsistent()
}
