//go:build lab

package tests

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cryptvol/cryptvol/internal/keyscan"
	"github.com/sirupsen/logrus"
)

// runDir holds the state directories, mount roots and logs of every plugin
// process the tests start. It lives until the end of the run so that the
// secret scan can read it.
var runDir string

// TestMain runs the tests, then proves that no key they used reached disk,
// /run or the plugin's logs.
func TestMain(m *testing.M) {
	var err error
	if runDir, err = os.MkdirTemp("", "cryptvol-tests-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := m.Run()
	if code == 0 && len(seenKeys) > 0 {
		if err := scanForKeys([]string{runDir, "/run", "/var/lib/cryptvol"}); err != nil {
			fmt.Fprintln(os.Stderr, "secret scan:", err)
			code = 1
		}
	}
	wipeSeenKeys()
	os.RemoveAll(runDir)
	os.Exit(code)
}

var (
	seenMu   sync.Mutex
	seenKeys = map[string][]byte{} // KMIP key id -> key bytes, in this process only
)

// rememberKey keeps a copy of a volume's key for the end-of-run scan.
func rememberKey(t *testing.T, id string) {
	t.Helper()
	k, err := labKeys(t).Get(ctx(t), id)
	if err != nil {
		t.Fatalf("KMIP get %s: %v", id, err)
	}
	defer k.Wipe()
	seenMu.Lock()
	seenKeys[id] = append([]byte(nil), k.Bytes()...)
	seenMu.Unlock()
}

func wipeSeenKeys() {
	seenMu.Lock()
	defer seenMu.Unlock()
	for id, b := range seenKeys {
		clear(b)
		delete(seenKeys, id)
	}
}

// scanForKeys reads every regular file under roots and fails if one holds a
// remembered key raw, in hex (either case) or in base64.
func scanForKeys(roots []string) error {
	var pats [][]byte
	for _, b := range seenKeys {
		pats = append(pats, keyscan.Patterns(b)...)
	}
	defer func() {
		for _, p := range pats {
			clear(p)
		}
	}()
	files, bytesRead := 0, int64(0)
	var found []string
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil // vanished or unreadable pseudo-files are not storage
			}
			n, hit, err := keyscan.File(path, pats)
			if err != nil {
				return nil // vanished or unreadable pseudo-files are not storage
			}
			files++
			bytesRead += n
			if hit {
				found = append(found, path)
			}
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	fmt.Printf("secret scan: %d keys, %d files, %d bytes under %v: %d hits\n", len(seenKeys), files, bytesRead, roots, len(found))
	if len(found) > 0 {
		return fmt.Errorf("key material found in %v", found)
	}
	return nil
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}
