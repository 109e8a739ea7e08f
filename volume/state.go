package volume

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

// StateFile is the name of the state file inside Config.StateDir.
const StateFile = "mounts.json"

// StateVersion is the newest state file format this plugin reads and the one
// it writes (`cryptvol version` prints it). Version 2 counts mounts per ID
// and journals exact objects; version 1 (a set of IDs per volume, journals of
// bare names) is read and converted.
const StateVersion = 2

// state is what survives a plugin restart. Mounts is tied to the boot it was
// recorded in (a reboot unmounted everything); the journals are not, because
// an interrupted create or remove must be finished or undone whenever the
// plugin next starts.
type state struct {
	Version int    `json:"version"`
	BootID  string `json:"boot_id"`
	// Mounts counts, per volume and mount ID, the Mounts not yet matched by
	// an Unmount. dockerd reuses a mount point's ID while it is active and
	// sends one Mount per use (docker cp and export on a running container
	// mount again under the container's own ID), so a set of IDs would
	// release a volume under a running container (moby
	// daemon/volume/mounts/mounts.go, MountPoint.Setup and Cleanup).
	Mounts   map[string]map[string]int `json:"mounts"`
	Creating []journalEntry            `json:"creating,omitempty"` // creates begun and not finished or undone
	Removing []journalEntry            `json:"removing,omitempty"` // removes begun and not finished
	Rotating []rotationEntry           `json:"rotating,omitempty"` // key rotations begun and not settled (rotate.go)
}

// journalEntry names the exact objects of one create or remove, so that
// finishing or undoing it can never touch a later volume of the same name.
type journalEntry struct {
	Volume string `json:"volume"`
	// LVUUID is the LV a remove is taking apart ("" for a create, whose
	// LV, if any, is the one under its name: creates of a name are
	// serialized and journaled before anything is made).
	LVUUID string `json:"lv_uuid,omitempty"`
	// KeyName is the KMIP name, unique to this create, under which its key
	// is made; Locate by it finds a key made before its id was learnt.
	KeyName string `json:"key_name,omitempty"`
	// KeyIDs are the KMIP keys known to belong to these objects.
	KeyIDs []string `json:"key_ids,omitempty"`
	// Tenant is the tenant whose KMIP identity holds the keys ("" for
	// the plugin's own).
	Tenant string `json:"tenant,omitempty"`
	// Clone marks a create from a snapshot of another volume: its LV may
	// carry tags copied from the source's, cryptvol_ready among them, so
	// only a header of its own proves it complete (clone.go).
	Clone bool `json:"clone,omitempty"`
	// Legacy marks an entry read from a version 1 file: a bare name, so
	// only what can be proven to be that volume's is destroyed.
	Legacy bool `json:"legacy,omitempty"`
}

func (s *state) clone() *state {
	c := &state{Version: s.Version, BootID: s.BootID, Mounts: make(map[string]map[string]int, len(s.Mounts))}
	for k, v := range s.Mounts {
		c.Mounts[k] = maps.Clone(v)
	}
	c.Creating = cloneJournal(s.Creating)
	c.Removing = cloneJournal(s.Removing)
	c.Rotating = slices.Clone(s.Rotating)
	return c
}

func cloneJournal(j []journalEntry) []journalEntry {
	out := slices.Clone(j)
	for i := range out {
		out[i].KeyIDs = slices.Clone(out[i].KeyIDs)
	}
	return out
}

// addMount counts one more Mount of name under id.
func (s *state) addMount(name, id string) {
	if s.Mounts[name] == nil {
		s.Mounts[name] = map[string]int{}
	}
	s.Mounts[name][id]++
}

// dropMount counts one Unmount of name under id.
func (s *state) dropMount(name, id string) {
	ids := s.Mounts[name]
	if ids[id] > 1 {
		ids[id]--
		return
	}
	delete(ids, id)
	if len(ids) == 0 {
		delete(s.Mounts, name)
	}
}

// entries returns the journal entries of name.
func entriesOf(j []journalEntry, name string) []journalEntry {
	var out []journalEntry
	for _, e := range j {
		if e.Volume == name {
			out = append(out, e)
		}
	}
	return out
}

// withoutEntry returns j without the entry equal to e (by volume, LV UUID
// and key name, which together identify one operation).
func withoutEntry(j []journalEntry, e journalEntry) []journalEntry {
	return slices.DeleteFunc(slices.Clone(j), func(x journalEntry) bool {
		return x.Volume == e.Volume && x.LVUUID == e.LVUUID && x.KeyName == e.KeyName && x.Legacy == e.Legacy
	})
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

// diskStateV1 is the version 1 file.
type diskStateV1 struct {
	BootID   string              `json:"boot_id"`
	Mounts   map[string][]string `json:"mounts"`
	Creating []string            `json:"creating"`
	Removing []string            `json:"removing"`
}

// loadStore reads path. A missing file is an empty state. Mount IDs recorded
// under another boot id are discarded (returned as dropped) because the reboot
// that changed the id unmounted everything.
func loadStore(path, bootID string) (st *store, dropped map[string]map[string]int, err error) {
	st = &store{path: path, rename: os.Rename}
	cur := &state{Version: StateVersion, BootID: bootID, Mounts: map[string]map[string]int{}}
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
	var disk state
	switch head.Version {
	case StateVersion:
		if err := json.Unmarshal(b, &disk); err != nil {
			return nil, nil, fmt.Errorf("state file %s: %w", path, err)
		}
	case 1:
		disk, err = convertV1(b)
		if err != nil {
			return nil, nil, fmt.Errorf("state file %s (version 1): %w", path, err)
		}
	default:
		return nil, nil, fmt.Errorf("state file %s has version %d, this plugin understands 1 and %d", path, head.Version, StateVersion)
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

func convertV1(b []byte) (state, error) {
	var v1 diskStateV1
	if err := json.Unmarshal(b, &v1); err != nil {
		return state{}, err
	}
	s := state{BootID: v1.BootID, Mounts: map[string]map[string]int{}}
	for name, ids := range v1.Mounts {
		for _, id := range ids {
			s.addMount(name, id)
		}
	}
	for _, name := range v1.Creating {
		s.Creating = append(s.Creating, journalEntry{Volume: name, Legacy: true})
	}
	for _, name := range v1.Removing {
		s.Removing = append(s.Removing, journalEntry{Volume: name, Legacy: true})
	}
	return s, nil
}

// ids returns the mount IDs recorded for name, sorted.
func (st *store) ids(name string) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Sorted(maps.Keys(st.cur.Mounts[name]))
}

// rotations returns name's unsettled rotations. Mount asks it every time,
// so it reads under the lock rather than cloning the whole state.
func (st *store) rotations(name string) []rotationEntry {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []rotationEntry
	for _, e := range st.cur.Rotating {
		if e.Volume == name {
			out = append(out, e)
		}
	}
	return out
}

// mounts returns a copy of the per-ID counts of name.
func (st *store) mounts(name string) map[string]int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return maps.Clone(st.cur.Mounts[name])
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

// write replaces the state file atomically (internal/atomicfile).
func (st *store) write(b []byte) error {
	failpoint.Here("state-write")
	return atomicfile.Write(st.path, b, "state", st.rename)
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
