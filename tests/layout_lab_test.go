//go:build lab

package tests

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/mount"
)

// A volume made by a cryptvol that handed containers its filesystem's root
// has its files there. Its next first mount moves them into the data
// directory, on real ext4 and xfs: the same files at the same place under
// the path a container gets, the root's owner and mode on the data
// directory; and a move a crash interrupted (some entries already in the
// stage) is finished, nothing lost.
func TestLabOlderLayoutMovesIntoData(t *testing.T) {
	for _, c := range []struct{ fs, size string }{{"ext4", "64M"}, {"xfs", "320M"}} {
		t.Run(c.fs, func(t *testing.T) {
			s := newStack(t)
			v := "lab-old-" + c.fs
			s.create(v, map[string]string{"fs": c.fs, "size": c.size, "uid": "999", "mode": "0750"})
			s.asOlderLayout(v, c.fs, func(root string) {
				write(t, filepath.Join(root, "a"), "1")
				write(t, filepath.Join(root, "data"), "a file named data")
				write(t, filepath.Join(root, "dir", "b"), "2")
				// A move a crash cut short: "moved" is in the stage already.
				write(t, filepath.Join(root, ".cryptvol-data.new", "moved"), "3")
			})
			p := s.mount(v, "a")
			for name, want := range map[string]string{"a": "1", "data": "a file named data", "dir/b": "2", "moved": "3"} {
				if b, err := os.ReadFile(filepath.Join(p, name)); err != nil || string(b) != want {
					t.Errorf("%s after the move: %q, %v; want %q", name, b, err, want)
				}
			}
			entries, err := os.ReadDir(filepath.Dir(p))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			want := []string{mount.LayoutMarker, mount.DataDir}
			if c.fs == "ext4" {
				want = append(want, "lost+found")
			}
			if !slices.Equal(names, want) {
				t.Errorf("root after the move: %q, want %q", names, want)
			}
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o750 {
				t.Errorf("data directory: %v, %v; want the root's mode 0750", fi, err)
			}
			s.unmount(v, "a")
			s.assertDown(v, p)
			// Mounted again: the layout is there and nothing moves.
			p = s.mount(v, "b")
			if b, err := os.ReadFile(filepath.Join(p, "a")); err != nil || string(b) != "1" {
				t.Errorf("after a second mount: %q, %v", b, err)
			}
			s.unmount(v, "b")
		})
	}
}

// asOlderLayout opens the closed volume v directly, as an older cryptvol
// left it, lets fill write at its filesystem's root, and closes it again.
// A volume never mounted through the plugin has no layout yet.
func (s *stack) asOlderLayout(v, fstype string, fill func(root string)) {
	t := s.t
	t.Helper()
	got, err := s.mgr.Get(ctx(t), v)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.keys.Get(ctx(t), keyID(t, got))
	if err != nil {
		t.Fatal(err)
	}
	dev, mapping := s.lv(v).Path, "cryptvol-"+v
	err = s.crypt.Open(ctx(t), dev, mapping, k.Bytes(), luks.OpenOptions{})
	k.Wipe()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := s.fs.Mount(ctx(t), "/dev/mapper/"+mapping, root, fstype); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, mount.DataDir)); !os.IsNotExist(err) {
		t.Fatalf("a volume never mounted through the plugin has a data directory already: %v", err)
	}
	fill(root)
	if err := s.fs.Unmount(ctx(t), root); err != nil {
		t.Fatal(err)
	}
	if err := s.crypt.Close(ctx(t), mapping); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
