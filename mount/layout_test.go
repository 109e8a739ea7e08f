package mount

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// devOf is the device number of the filesystem holding path: the layout
// tests run on a temporary directory, whose filesystem stands in for the
// volume's.
func devOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Sys().(*syscall.Stat_t).Dev)
}

// tree lists every path under root with its kind and, for files, content.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			dst, _ := os.Readlink(p)
			out = append(out, rel+" -> "+dst)
		case fi.IsDir():
			out = append(out, rel+"/")
		default:
			b, _ := os.ReadFile(p)
			out = append(out, rel+" = "+string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// oldLayout makes a root as a cryptvol without the data directory left
// it: the container's files at the root, one of them named "data".
func oldLayout(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range map[string]string{"a": "1", "data": "a file named data", ".hidden": "h", "dir/b": "2", "dir/sub/c": "3"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("dir/b", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	// chown(2) clears the set-group-ID bit: the mode goes last.
	if err := os.Chown(root, 999, 998); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	return root
}

// A new filesystem gets an empty data directory with the root's owner and
// mode (options uid, gid, mode); ext4's lost+found stays at the root, which
// no container sees. Without create, a filesystem lacking the layout is
// refused, never handed out as it is.
func TestLayoutOfANewFilesystem(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(root, 999, 999); err != nil {
		t.Fatal(err)
	}
	f := New()
	dev := devOf(t, root)
	if _, err := f.data(root, dev, false); !errors.Is(err, ErrOldLayout) {
		t.Fatalf("without create: %v, want ErrOldLayout", err)
	}
	p, err := f.data(root, dev, true)
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(root, DataDir) {
		t.Fatalf("path %q", p)
	}
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 || fi.Sys().(*syscall.Stat_t).Uid != 999 {
		t.Fatalf("data directory: %v, %v", fi, err)
	}
	if entries, _ := os.ReadDir(p); len(entries) != 0 {
		t.Fatalf("a new volume's data directory is not empty: %v", entries)
	}
	if got := tree(t, root); !slices.Equal(got, []string{"./", LayoutMarker + " = ", DataDir + "/", "lost+found/"}) {
		t.Fatalf("root: %q", got)
	}
	if p2, err := f.data(root, dev, false); err != nil || p2 != p {
		t.Fatalf("second call: %q, %v", p2, err)
	}
}

// A filesystem of the older layout keeps everything a container saw: each
// entry at the same place under the data directory, whose owner and mode
// are the old root's, a container's own "data" included.
func TestLayoutMovesTheOlderLayoutIntoData(t *testing.T) {
	root := oldLayout(t)
	want := tree(t, root)
	f := New()
	p, err := f.data(root, devOf(t, root), true)
	if err != nil {
		t.Fatal(err)
	}
	if got := tree(t, p); !slices.Equal(got, want) {
		t.Fatalf("data directory:\n%q\nwant what the root was:\n%q", got, want)
	}
	fi, _ := os.Lstat(p)
	if fi.Mode()&(os.ModePerm|os.ModeSetgid) != 0o750|os.ModeSetgid || fi.Sys().(*syscall.Stat_t).Gid != 998 {
		t.Fatalf("data directory mode %v gid %d, want the old root's", fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid)
	}
}

// A crash (or a failed system call) between any two steps of the move
// leaves a state that the next first mount finishes, with nothing lost and
// nothing handed out half-moved.
func TestLayoutFinishesAfterACrashAtEveryStep(t *testing.T) {
	ref := oldLayout(t)
	want := tree(t, ref)
	crashed := errors.New("crash")
	defer func() { crashPoint = func() error { return nil } }()
	for k := 0; ; k++ {
		root := oldLayout(t)
		n := 0
		crashPoint = func() error {
			if n == k {
				return crashed
			}
			n++
			return nil
		}
		f := New()
		dev := devOf(t, root)
		_, err := f.data(root, dev, true)
		if err == nil {
			if k < 3 {
				t.Fatalf("no crash point was reached (%d steps)", k)
			}
			break // k is past the last step
		}
		if !errors.Is(err, crashed) {
			t.Fatalf("step %d: %v", k, err)
		}
		if p, err := f.data(root, dev, false); err == nil {
			t.Fatalf("step %d: half-moved layout handed out as %s", k, p)
		}
		crashPoint = func() error { return nil }
		p, err := f.data(root, dev, true)
		if err != nil {
			t.Fatalf("after a crash at step %d: %v", k, err)
		}
		if got := tree(t, p); !slices.Equal(got, want) {
			t.Fatalf("after a crash at step %d:\n%q\nwant\n%q", k, got, want)
		}
	}
}

// What the root holds is untrusted: a data directory that is a link, or a
// marker beside neither a data directory nor a stage, is refused, as is a
// directory that is not the volume's filesystem.
func TestLayoutRefusesWhatItDidNotMake(t *testing.T) {
	f := New()
	t.Run("data is a link", func(t *testing.T) {
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, LayoutMarker), nil, 0o400)
		os.Symlink("/etc", filepath.Join(root, DataDir))
		if _, err := f.data(root, devOf(t, root), true); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("marker only", func(t *testing.T) {
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, LayoutMarker), nil, 0o400)
		os.WriteFile(filepath.Join(root, "x"), nil, 0o400)
		if _, err := f.data(root, devOf(t, root), true); err == nil || !strings.Contains(err.Error(), "damage") {
			t.Fatalf("err = %v", err)
		}
		if got := tree(t, root); !slices.Equal(got, []string{"./", LayoutMarker + " = ", "x = "}) {
			t.Fatalf("changed: %q", got)
		}
	})
	t.Run("another filesystem", func(t *testing.T) {
		root := t.TempDir()
		if _, err := f.data(root, devOf(t, root)+1, true); err == nil || !strings.Contains(err.Error(), "not the volume's filesystem") {
			t.Fatalf("err = %v", err)
		}
		if entries, _ := os.ReadDir(root); len(entries) != 0 {
			t.Fatalf("made %v", entries)
		}
	})
	t.Run("the root is a link", func(t *testing.T) {
		dir := t.TempDir()
		os.Symlink(t.TempDir(), filepath.Join(dir, "v"))
		if _, err := f.data(filepath.Join(dir, "v"), devOf(t, dir), true); err == nil {
			t.Fatal("followed a link")
		}
	})
}
