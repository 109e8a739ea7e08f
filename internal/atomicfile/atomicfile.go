// Package atomicfile replaces small files so that a crash leaves either the
// old content or the new, never a mix: the plugin's state file
// (volume/internal/journal) and the record of the volume group's devices
// (cmd/cryptvol/devices.go). It keeps no state; writers of one path
// serialise themselves.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data: a temporary file (mode 0600) in the same
// directory, fsync, rename, then fsync of the directory so that the rename
// itself is durable. rename is os.Rename; tests pass one that fails to show
// the old file survives. A failed write removes its temporary file. what
// names the file in errors ("state": "replacing state file ...").
func Write(path string, data []byte, what string, rename func(oldpath, newpath string) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", what, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s %s: %w", what, tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("syncing %s %s: %w", what, tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s %s: %w", what, tmp, err)
	}
	if err = rename(tmp, path); err != nil {
		return fmt.Errorf("replacing %s file %s: %w", what, path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s directory %s: %w", what, dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("syncing %s directory %s: %w", what, dir, err)
	}
	return nil
}
