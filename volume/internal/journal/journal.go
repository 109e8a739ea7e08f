// Package journal owns the plugin's state file (volume.StateFile): its
// format, versions 1 and 2 and the conversion of the first, the boot id its
// mount counts are tied to, and its atomic replacement (internal/atomicfile,
// after the failpoint "state-write"). Package volume decides what goes in
// it, and when: which mounts to count, which creates, removes and key
// rotations to journal, and how to finish or undo them.
//
// Concurrency: a Store is safe for concurrent use; its mutex is held only
// while it reads or replaces its own state, never across a caller's work.
// A State handed out (Snapshot, or to Update's fn) is the caller's alone.
package journal

import (
	"maps"
	"slices"
	"time"
)

// Version 2 counts mounts per ID and journals exact objects; version 1 (a
// set of IDs per volume, journals of bare names) is read and converted.
const Version = 2

// State is what survives a plugin restart. Mounts is tied to the boot it was
// recorded in (a reboot unmounted everything); the journals are not, because
// an interrupted create or remove must be finished or undone whenever the
// plugin next starts.
type State struct {
	Version int `json:"version"`
	// Writer is the build that last wrote the file ("cryptvol VERSION",
	// internal/version), so that a build which finds a format newer than
	// it knows can name the one to go back to (NewerError). Readers of
	// either version ignore it when absent.
	Writer string `json:"writer,omitempty"`
	BootID string `json:"boot_id"`
	// Mounts counts, per volume and mount ID, the Mounts not yet matched by
	// an Unmount. dockerd reuses a mount point's ID while it is active and
	// sends one Mount per use (docker cp and export on a running container
	// mount again under the container's own ID), so a set of IDs would
	// release a volume under a running container (moby
	// daemon/volume/mounts/mounts.go, MountPoint.Setup and Cleanup).
	Mounts   map[string]map[string]int `json:"mounts"`
	Creating []Entry                   `json:"creating,omitempty"` // creates begun and not finished or undone
	Removing []Entry                   `json:"removing,omitempty"` // removes begun and not finished
	Rotating []Rotation                `json:"rotating,omitempty"` // key rotations begun and not settled (volume/rotate.go)
	// Trashing journals removes into the trash (volume/trash.go) whose
	// rename or key deactivation is not done: Volume is the trash id
	// (NAME+MILLIS), LVUUID the LV, KeyIDs the keys to deactivate.
	// Restoring journals restores from it (volume/untrash.go). Readers
	// that predate them ignore both.
	Trashing  []Entry   `json:"trashing,omitempty"`
	Restoring []Restore `json:"restoring,omitempty"`
	// Usage is each volume's filesystem usage as measured at its last
	// close (volume/usage.go), so that Status and the metrics have figures
	// for a closed volume too. Readers that predate it ignore it.
	Usage map[string]Usage `json:"usage,omitempty"`
}

// Usage is a filesystem's space and inodes at a moment, in bytes and
// counts as df reports them.
type Usage struct {
	Size       uint64    `json:"size"`
	Used       uint64    `json:"used"`
	Avail      uint64    `json:"avail"`
	Inodes     uint64    `json:"inodes"`
	InodesFree uint64    `json:"inodes_free"`
	At         time.Time `json:"at"`
}

// Entry names the exact objects of one create or remove, so that
// finishing or undoing it can never touch a later volume of the same name.
type Entry struct {
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
	// only a header of its own proves it complete (volume/clone.go).
	Clone bool `json:"clone,omitempty"`
	// Legacy marks an entry read from a version 1 file: a bare name, so
	// only what can be proven to be that volume's is destroyed.
	Legacy bool `json:"legacy,omitempty"`
}

// Rotation journals one key rotation by its exact objects: the LV (by
// UUID), the key being replaced, the new key's name (unique to this
// rotation, like a create's) and id once known, and the keyslot chosen for
// it. Whether the new keyslot exists in the header, opened by the new key,
// decides how a rotation a crash interrupted is settled: absent, or taken
// by another rotation, it never took effect and is undone; present and
// opened by the new key, it is finished (volume/rotate.go).
type Rotation struct {
	Volume     string `json:"volume"`
	LVUUID     string `json:"lv_uuid"`
	Tenant     string `json:"tenant,omitempty"`
	OldKeyID   string `json:"old_key_id"`
	NewKeyName string `json:"new_key_name"`
	NewKeyID   string `json:"new_key_id,omitempty"`
	NewSlot    int    `json:"new_slot"`
}

// Restore journals one restore from the trash: a key rotation of the
// trashed LV (Volume is the trash id) onto a new key named for Target, the
// name it comes back under; the old key is Deactivated. Its keyslot
// decides, as a rotation's does, whether it is finished or undone.
type Restore struct {
	Rotation
	Target string `json:"target"`
}

// Clone returns a deep copy: Update's fn changes one, so that a failed
// write leaves the current state as it was.
func (s *State) Clone() *State {
	c := &State{Version: s.Version, Writer: s.Writer, BootID: s.BootID, Mounts: make(map[string]map[string]int, len(s.Mounts))}
	for k, v := range s.Mounts {
		c.Mounts[k] = maps.Clone(v)
	}
	c.Creating = cloneEntries(s.Creating)
	c.Removing = cloneEntries(s.Removing)
	c.Rotating = slices.Clone(s.Rotating)
	c.Trashing = cloneEntries(s.Trashing)
	c.Restoring = slices.Clone(s.Restoring)
	c.Usage = maps.Clone(s.Usage)
	return c
}

func cloneEntries(j []Entry) []Entry {
	out := slices.Clone(j)
	for i := range out {
		out[i].KeyIDs = slices.Clone(out[i].KeyIDs)
	}
	return out
}

// AddMount counts one more Mount of name under id.
func (s *State) AddMount(name, id string) {
	if s.Mounts[name] == nil {
		s.Mounts[name] = map[string]int{}
	}
	s.Mounts[name][id]++
}

// DropMount counts one Unmount of name under id.
func (s *State) DropMount(name, id string) {
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

// BeginCreate journals a create; the new volume shows no usage figures of
// an earlier one of its name.
func (s *State) BeginCreate(e Entry) {
	s.Creating = append(s.Creating, e)
	delete(s.Usage, e.Volume)
}

// SetUsage records name's usage; Forget drops everything recorded of name
// but its journal entries (a removed volume).
func (s *State) SetUsage(name string, u Usage) {
	if s.Usage == nil {
		s.Usage = map[string]Usage{}
	}
	s.Usage[name] = u
}

func (s *State) Forget(name string) {
	delete(s.Mounts, name)
	delete(s.Usage, name)
}

// EntriesOf returns the entries of j for volume name.
func EntriesOf(j []Entry, name string) []Entry {
	var out []Entry
	for _, e := range j {
		if e.Volume == name {
			out = append(out, e)
		}
	}
	return out
}

// Without returns j without the entry equal to e (by volume, LV UUID
// and key name, which together identify one operation).
func Without(j []Entry, e Entry) []Entry {
	return slices.DeleteFunc(slices.Clone(j), func(x Entry) bool {
		return x.Volume == e.Volume && x.LVUUID == e.LVUUID && x.KeyName == e.KeyName && x.Legacy == e.Legacy
	})
}

// WithoutRestore returns j without e (by its rotation's new key name).
func WithoutRestore(j []Restore, e Restore) []Restore {
	return slices.DeleteFunc(slices.Clone(j), func(x Restore) bool { return x.NewKeyName == e.NewKeyName })
}

// WithoutRotation returns j without e's rotation (by volume and new key
// name, unique to one rotation).
func WithoutRotation(j []Rotation, e Rotation) []Rotation {
	return slices.DeleteFunc(slices.Clone(j), func(x Rotation) bool {
		return x.Volume == e.Volume && x.NewKeyName == e.NewKeyName
	})
}
