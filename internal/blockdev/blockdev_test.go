package blockdev

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNumberRefusesWhatIsNoBlockDevice(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := Number(f); err == nil || !strings.Contains(err.Error(), "is not a block device") {
		t.Fatalf("a regular file: %v", err)
	}
	if _, err := Number(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing node: %v, want not exist", err)
	}
}
