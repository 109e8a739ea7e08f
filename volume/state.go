package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// StateFile is the name of the state file inside Config.StateDir.
const StateFile = "mounts.json"

const stateVersion = 1

// state is what survives a plugin restart. Mounts is tied to the boot it was
// recorded in (a reboot unmounted everything); the journals are not, because
// an interrupted create or remove must be finished or undone whenever the
// plugin next starts.
type state struct {
	Version  int                 `json:"version"`
	BootID   string              `json:"boot_id"`
	Mounts   map[string][]string `json:"mounts"`             // volume -> sorted mount IDs
	Creating []string            `json:"creating,omitempty"` // creates begun and not finished or undone
	Removing []string            `json:"removing,omitempty"` // removes begun and not finished
}

func (s *state) clone() *state {
	c := &state{Version: s.Version, BootID: s.BootID, Mounts: make(map[string][]string, len(s.Mounts))}
	for k, v := range s.Mounts {
		c.Mounts[k] = slices.Clone(v)
	}
	c.Creating = slices.Clone(s.Creating)
	c.Removing = slices.Clone(s.Removing)
	return c
}

func addSorted(list []string, v string) []string {
	i, found := slices.BinarySearch(list, v)
	if found {
		return list
	}
	return slices.Insert(list, i, v)
}

func removeSorted(list []string, v string) []string {
	i, found := slices.BinarySearch(list, v)
	if !found {
		return list
	}
	return slices.Delete(list, i, i+1)
}

func (s *state) addMount(name, id string) { s.Mounts[name] = addSorted(s.Mounts[name], id) }

func (s *state) dropMount(name, id string) {
	ids := removeSorted(s.Mounts[name], id)
	if len(ids) == 0 {
		delete(s.Mounts, name)
		return
	}
	s.Mounts[name] = ids
}

// store holds the state in memory and on disk. Every change is written
// before it becomes visible, so what callers see is always what a restarted
// plugin would load.
type store struct {
	path string
	// rename is os.Rename; tests replace it to show a failed write leaves the
	// previous file intact.
	rename func(oldpath, newpath string) error

	mu  sync.Mutex
	cur *state
}

// loadStore reads path. A missing file is an empty state. Mount IDs recorded
// under another boot id are discarded (returned as dropped) because the reboot
// that changed the id unmounted everything.
func loadStore(path, bootID string) (st *store, dropped map[string][]string, err error) {
	st = &store{path: path, rename: os.Rename}
	cur := &state{Version: stateVersion, BootID: bootID, Mounts: map[string][]string{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.cur = cur
		return st, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("reading state file: %w", err)
	}
	var disk state
	if err := json.Unmarshal(b, &disk); err != nil {
		return nil, nil, fmt.Errorf("state file %s is not valid JSON (%v); it is written atomically, so this is damage from outside: move it away to start afresh (volumes mounted now will then be unmounted at start-up)", path, err)
	}
	if disk.Version != stateVersion {
		return nil, nil, fmt.Errorf("state file %s has version %d, this plugin understands %d", path, disk.Version, stateVersion)
	}
	for _, v := range disk.Creating {
		cur.Creating = addSorted(cur.Creating, v)
	}
	for _, v := range disk.Removing {
		cur.Removing = addSorted(cur.Removing, v)
	}
	if disk.BootID == bootID {
		for name, ids := range disk.Mounts {
			for _, id := range ids {
				cur.addMount(name, id)
			}
		}
	} else {
		dropped = disk.Mounts
	}
	st.cur = cur
	return st, dropped, nil
}

// ids returns a copy of the mount IDs recorded for name.
func (st *store) ids(name string) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.cur.Mounts[name])
}

func (st *store) snapshot() *state {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur.clone()
}

// update applies fn to a copy of the state, writes it, and only then makes
// it current: a failed write changes nothing.
func (st *store) update(fn func(*state)) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	next := st.cur.clone()
	fn(next)
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	if err := st.write(b); err != nil {
		return err
	}
	st.cur = next
	return nil
}

// write replaces the state file atomically: temp file in the same
// directory, fsync, rename, fsync of the directory so the rename itself is
// durable. A crash leaves either the old or the new file, never a mix.
func (st *store) write(b []byte) (err error) {
	dir := filepath.Dir(st.path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(st.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("writing state %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("syncing state %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing state %s: %w", tmp, err)
	}
	if err = st.rename(tmp, st.path); err != nil {
		return fmt.Errorf("replacing state file %s: %w", st.path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing state directory %s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("syncing state directory %s: %w", dir, err)
	}
	return nil
}

// readBootID returns the kernel's boot id, which changes on every boot.
func readBootID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("boot id file %s is empty", path)
	}
	return id, nil
}
