package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/cryptvol/cryptvol/internal/atomicfile"
	"github.com/cryptvol/cryptvol/internal/failpoint"
	"github.com/cryptvol/cryptvol/internal/version"
)

// MaxSize bounds the state file read at start: the file is untrusted input,
// and one entry per volume and mount ID stays far below it.
const MaxSize = 16 << 20

// writer is what Update records as the file's Writer.
var writer = "cryptvol " + version.Get()

// NewerError is a state file of a format newer than Version: written by a
// later build, which may journal what this one cannot finish. Nothing is
// read from it and nothing is written, and waiting does not change it, so
// the plugin refuses to start rather than retrying.
type NewerError struct {
	Path    string
	Version int    // the file's format
	Writer  string // the build that wrote it, if it said
}

func (e *NewerError) Error() string {
	w := e.Writer
	if w == "" {
		w = "a newer cryptvol"
	}
	return fmt.Sprintf("state file %s has state format %d, written by %s; this plugin is cryptvol %s and reads state formats 1 to %d. "+
		"Nothing was changed and no volume is served: upgrade the plugin to %s or later (docker plugin upgrade)", e.Path, e.Version, w, version.Get(), Version, w)
}

// head is the part of the file every format shares.
type head struct {
	Version int    `json:"version"`
	Writer  string `json:"writer"`
}

// read returns path's bytes, refusing a file larger than MaxSize.
func read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("state file %s is larger than %d MiB; it is never that large, so this is damage from outside: move it away to start afresh", path, MaxSize>>20)
	}
	return b, nil
}

// CheckFormat returns a *NewerError when path holds a format newer than
// Version, and nil otherwise (a missing or unreadable file is Load's to
// report). It writes nothing, so start-up asks it before anything else.
func CheckFormat(path string) error {
	b, err := read(path)
	if err != nil {
		return nil
	}
	var h head
	if json.Unmarshal(b, &h) == nil && h.Version > Version {
		return &NewerError{Path: path, Version: h.Version, Writer: h.Writer}
	}
	return nil
}

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
	b, err := read(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.cur = cur
		return st, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("reading state file: %w", err)
	}
	var h head
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, nil, fmt.Errorf("state file %s is not valid JSON (%v); it is written atomically, so this is damage from outside: move it away to start afresh (volumes mounted now will then be unmounted at start-up)", path, err)
	}
	var disk State
	switch h.Version {
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
		if h.Version > Version {
			return nil, nil, &NewerError{Path: path, Version: h.Version, Writer: h.Writer}
		}
		return nil, nil, fmt.Errorf("state file %s has state format %d, which no cryptvol writes (this one reads 1 to %d): it is damaged; move it away to start afresh", path, h.Version, Version)
	}
	cur.Creating = disk.Creating
	cur.Removing = disk.Removing
	cur.Rotating = disk.Rotating
	cur.Trashing = disk.Trashing
	cur.Restoring = disk.Restoring
	cur.Usage = disk.Usage
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

// Usage returns name's filesystem usage as recorded at its last close.
func (st *Store) Usage(name string) (Usage, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	u, ok := st.cur.Usage[name]
	return u, ok
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
	next.Version, next.Writer = Version, writer
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
