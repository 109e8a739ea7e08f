//go:build !failpoints

package failpoint

import (
	"os"
	"path/filepath"
	"testing"
)

// The plugin as shipped counts nothing and kills nothing, whatever its
// environment says.
func TestHereDoesNothingInAPluginBuild(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plan"), []byte("1 before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CRYPTVOL_FAILPOINTS", dir)
	Here("dm-create")
	if _, err := os.Stat(filepath.Join(dir, "count")); !os.IsNotExist(err) {
		t.Fatalf("a plugin build counted a failpoint: %v", err)
	}
}
