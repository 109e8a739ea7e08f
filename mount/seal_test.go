package mount

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealedDirectoryTakesNothingUntilUnsealed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "target")
	f := New()
	if err := f.Seal(dir); err != nil {
		if strings.Contains(err.Error(), "CAP_LINUX_IMMUTABLE") || strings.Contains(err.Error(), "chattr") {
			t.Skipf("this machine cannot: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Unseal(dir) })
	if err := f.Seal(dir); err != nil {
		t.Fatalf("sealing again: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o600); err == nil {
		t.Fatal("a file was written into a sealed directory")
	}
	if err := os.Remove(dir); err == nil {
		t.Fatal("a sealed directory was removed")
	}
	if err := f.Unseal(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatalf("remove after unseal: %v", err)
	}
	if err := f.Unseal(dir); err != nil {
		t.Fatalf("unseal of a missing directory: %v", err)
	}
}

func TestSealRefusesADirectorySomethingWroteTo(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "leaked"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := New().Seal(dir)
	if err == nil || !strings.Contains(err.Error(), "not empty (leaked") {
		t.Fatalf("seal of a directory with a file: %v", err)
	}
	if err := New().Seal(filepath.Join(dir, "missing", "deeper")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("seal under a missing parent: %v", err)
	}
}
