package volume

import (
	"strconv"
	"testing"
	"time"
)

// A mounted volume's Status carries its filesystem's usage as statfs gives
// it; a closed one carries the figures of its last close with their time,
// across a restart; the host's filesystem under an empty mountpoint never
// shows; a new volume of a removed one's name starts without figures.
func TestUsageInStatusWhileMountedAndAfterClose(t *testing.T) {
	h := newHarness(t)
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	h.m.now = func() time.Time { return t0 }
	h.mustCreate("v1", map[string]string{"size": "256M"})
	status := func() map[string]any {
		t.Helper()
		v, err := h.m.Get(h.ctx, "v1")
		if err != nil {
			t.Fatal(err)
		}
		return v.Status
	}
	if s := status(); s[StatusUsedBytes] != nil || s[StatusUsageAt] != nil {
		t.Fatalf("a volume never mounted shows usage: %v", s)
	}

	h.runContainer("v1", "c1")
	h.w.mu.Lock()
	size := h.w.fsSize["cv-v1"]
	h.w.fsUsed["cv-v1"] = 100 << 20
	h.w.mu.Unlock()
	s := status()
	if s[StatusUsedBytes] != "104857600" || s[StatusFreeBytes] != itoa(size-100<<20) || s[StatusUsageAt] != "2026-12-07T12:00:00Z" ||
		s[StatusInodesFree] != itoa((size-100<<20)>>14) || s[StatusInodesUsed] != itoa(size>>14-(size-100<<20)>>14) {
		t.Fatalf("mounted: %v (fs size %d)", s, size)
	}
	us, err := h.m.Usages(h.ctx)
	if err != nil || !us["v1"].Live || us["v1"].Used != 100<<20 {
		t.Fatalf("Usages while mounted: %+v, %v", us, err)
	}

	h.w.mu.Lock()
	h.w.fsUsed["cv-v1"] = 120 << 20
	h.w.mu.Unlock()
	h.m.now = func() time.Time { return t0.Add(time.Hour) }
	h.stopContainer("v1", "c1")
	h.m.now = func() time.Time { return t0.Add(2 * time.Hour) }
	h.restart()
	s = status()
	if s[StatusMounted] != false || s[StatusUsedBytes] != "125829120" || s[StatusUsageAt] != "2026-12-07T13:00:00Z" {
		t.Fatalf("closed, after a restart: %v", s)
	}
	us, err = h.m.Usages(h.ctx)
	if err != nil || us["v1"].Live || us["v1"].Used != 120<<20 || !us["v1"].At.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Usages while closed: %+v, %v", us, err)
	}
	if u := readState(t, h).Usage["v1"]; u.Used != 120<<20 || u.Size != size {
		t.Fatalf("state file's usage %+v", u)
	}

	if err := h.m.Remove(h.ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := readState(t, h).Usage["v1"]; ok {
		t.Fatal("a removed volume's usage stays in the state file")
	}
	h.mustCreate("v1", nil)
	if s := status(); s[StatusUsedBytes] != nil {
		t.Fatalf("a new volume of the name shows the old one's usage: %v", s)
	}
	h.assertConsistent()
}

// Unmounts that leave the volume mounted record nothing, and a last
// unmount of a volume the table does not show mounted records no figures
// of the directory under its mountpoint (the host's filesystem).
func TestUsageIsRecordedOnlyAtALastUnmountOfAMountedVolume(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("v1", nil)
	h.runContainer("v1", "c1")
	h.mustMount("v1", "c2")
	h.mustUnmount("v1", "c2")
	if _, ok := readState(t, h).Usage["v1"]; ok {
		t.Fatal("usage recorded while a container still holds the volume")
	}
	// The plugin's mount gone from under it (a restart in a new namespace).
	h.containerGone("v1")
	h.w.mu.Lock()
	delete(h.w.mounts, h.m.mountpoint("v1"))
	h.w.mu.Unlock()
	h.mustUnmount("v1", "c1")
	if u, ok := readState(t, h).Usage["v1"]; ok {
		t.Fatalf("usage recorded from an empty mountpoint: %+v", u)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
