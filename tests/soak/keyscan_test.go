package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// Only files changed since the start are listed, and nothing under the
// skipped directory.
func TestChangedFilesSinceTheStart(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a", "kmip", "a/b"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	old := filepath.Join(root, "a/old")
	os.WriteFile(old, []byte("x"), 0o644)
	since := time.Now().Add(-time.Minute)
	os.Chtimes(old, since.Add(-time.Hour), since.Add(-time.Hour))
	for _, f := range []string{"a/new", "a/b/new2", "kmip/db"} {
		os.WriteFile(filepath.Join(root, f), []byte("x"), 0o644)
	}
	got := changedFiles([]string{root}, filepath.Join(root, "kmip"), since)
	want := []string{filepath.Join(root, "a/b/new2"), filepath.Join(root, "a/new")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("changed files %v, want %v", got, want)
	}
}
