package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// The devices a start learned come back to the next start of the same
// group, and only to it; an unreadable record is no record (vgs decides);
// an unchanged list is not rewritten.
func TestKnownDevicesRoundTrip(t *testing.T) {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	dir := t.TempDir()
	if got := readKnownDevices(dir, "cvx", log); got != nil {
		t.Fatalf("first start: %q, want none", got)
	}
	devs := []string{"/dev/vdb", "/dev/vdc"}
	saveKnownDevices(dir, "cvx", nil, devs, log)
	if got := readKnownDevices(dir, "cvx", log); !slices.Equal(got, devs) {
		t.Fatalf("after saving: %q, want %q", got, devs)
	}
	if got := readKnownDevices(dir, "other", log); got != nil {
		t.Fatalf("another group got %q", got)
	}

	path := filepath.Join(dir, devicesFile)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path, old, old)
	saveKnownDevices(dir, "cvx", devs, devs, log)
	saveKnownDevices(dir, "cvx", devs, nil, log) // nothing learned: the record stays
	if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(old) {
		t.Fatalf("an unchanged list was rewritten (%v)", err)
	}
	saveKnownDevices(dir, "cvx", devs, []string{"/dev/vdd"}, log)
	if got := readKnownDevices(dir, "cvx", log); !slices.Equal(got, []string{"/dev/vdd"}) {
		t.Fatalf("after the group moved: %q", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v, want 0600", fi.Mode().Perm())
	}

	os.WriteFile(path, []byte(`{"vg":"cvx","devices":`), 0o600)
	if got := readKnownDevices(dir, "cvx", log); got != nil {
		t.Fatalf("a torn record gave %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left in the state directory: %v", entries)
	}
}
