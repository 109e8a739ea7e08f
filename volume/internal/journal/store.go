package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/cryptvol/cryptvol/internal/atomicfile"
	"github.com/cryptvol/cryptvol/internal/failpoint"
)

// Store holds the state in memory and on disk. Every change is written
// before it becomes visible, so what callers see is always what a restarted
// plugin would load.
type Store struct {
	path string
	// Rename is os.Rename; tests replace it, before the first Update, to
	// show a failed write leaves the previous file intact.
	Rename func(oldpath, newpath string) error

	mu  sync.Mutex
	cur *State
}

// stateV1 is the version 1 file.
type stateV1 struct {
	BootID   string              `json:"boot_id"`
	Mounts   map[string][]string `json:"mounts"`
	Creating []string            `json:"creating"`
	Removing []string            `json:"removing"`
}

// Load reads path. A missing file is an empty state. Mount IDs recorded
// under another boot id are discarded (returned as dropped) because the
// reboot that changed the id unmounted everything.
func Load(path, bootID string) (st *Store, dropped map[string]map[string]int, err error) {
	st = &Store{path: path, Rename: os.Rename}
	cur := &State{Version: Version, BootID: bootID, Mounts: map[string]map[string]int{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.cur = cur
		return st, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("reading state file: %w", err)
	}
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, nil, fmt.Errorf("state file %s is not valid JSON (%v); it is written atomically, so this is damage from outside: move it away to start afresh (volumes mounted now will then be unmounted at start-up)", path, err)
	}
	var disk State
	switch head.Version {
	case Version:
		if err := json.Unmarshal(b, &disk); err != nil {
			return nil, nil, fmt.Errorf("state file %s: %w", path, err)
		}
	case 1:
		disk, err = convertV1(b)
		if err != nil {
			return nil, nil, fmt.Errorf("state file %s (version 1): %w", path, err)
		}
	default:
		return nil, nil, fmt.Errorf("state file %s has version %d, this plugin understands 1 and %d", path, head.Version, Version)
	}
	cur.Creating = disk.Creating
	cur.Removing = disk.Removing
	cur.Rotating = disk.Rotating
	if disk.BootID == bootID {
		for name, ids := range disk.Mounts {
			for id, n := range ids {
				if n > 0 {
					if cur.Mounts[name] == nil {
						cur.Mounts[name] = map[string]int{}
					}
					cur.Mounts[name][id] = n
				}
			}
		}
	} else {
		dropped = disk.Mounts
	}
	st.cur = cur
	return st, dropped, nil
}

func convertV1(b []byte) (State, error) {
	var v1 stateV1
	if err := json.Unmarshal(b, &v1); err != nil {
		return State{}, err
	}
	s := State{BootID: v1.BootID, Mounts: map[string]map[string]int{}}
	for name, ids := range v1.Mounts {
		for _, id := range ids {
			s.AddMount(name, id)
		}
	}
	for _, name := range v1.Creating {
		s.Creating = append(s.Creating, Entry{Volume: name, Legacy: true})
	}
	for _, name := range v1.Removing {
		s.Removing = append(s.Removing, Entry{Volume: name, Legacy: true})
	}
	return s, nil
}

// IDs returns the mount IDs recorded for name, sorted.
func (st *Store) IDs(name string) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Sorted(maps.Keys(st.cur.Mounts[name]))
}

// Rotations returns name's unsettled rotations. Mount asks it every time,
// so it reads under the lock rather than cloning the whole state.
func (st *Store) Rotations(name string) []Rotation {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []Rotation
	for _, e := range st.cur.Rotating {
		if e.Volume == name {
			out = append(out, e)
		}
	}
	return out
}

// Mounts returns a copy of the per-ID counts of name.
func (st *Store) Mounts(name string) map[string]int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return maps.Clone(st.cur.Mounts[name])
}

// Snapshot returns a copy of the whole state.
func (st *Store) Snapshot() *State {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur.Clone()
}

// Update applies fn to a copy of the state, writes it, and only then makes
// it current: a failed write changes nothing.
func (st *Store) Update(fn func(*State)) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	next := st.cur.Clone()
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

// write replaces the state file atomically (internal/atomicfile).
func (st *Store) write(b []byte) error {
	failpoint.Here("state-write")
	return atomicfile.Write(st.path, b, "state", st.Rename)
}

// ReadBootID returns the kernel's boot id, which changes on every boot.
func ReadBootID(path string) (string, error) {
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
