// Package lvm owns every call to lvm2: it runs `lvm` with LC_ALL=C, reads
// --reportformat json, and returns a typed *command.Error carrying stderr and the exit
// code. A Client is bound to one volume group; nothing else in cryptvol runs lvm.
//
// Files: client.go queries and changes LVs; report.go parses lvs JSON;
// setup.go makes the VG and thin pool at start-up; validate.go checks names,
// tags and sizes before any command runs; shared.go is what a shared group
// (lvmlockd) adds: exclusive activation, its lockspace, its errors;
// metadata.go reads the group's metadata mark from its devices (no
// program), which tells whether any metadata commit happened since an
// earlier read; metadata_text.go reads the text the mark points at,
// vgtext.go parses lvm's config syntax, and vglvs.go takes the LVs from it
// as lvs reports them.
//
// Concurrency: a Client holds its VG name, Exec and the group's device list
// (under a mutex) and is safe for concurrent use; lvm2 serializes metadata changes with its own VG
// lock (lvm.conf locking_dir), and callers (volume/) hold a per-volume lock.
package lvm

import (
	"errors"
	"time"
)

// ErrNotFound is returned (wrapped) when a VG or LV does not exist.
var ErrNotFound = errors.New("not found")

// LV is one logical volume as reported by `lvs`.
type LV struct {
	Name    string    // lv_name
	VG      string    // vg_name
	Path    string    // /dev/<vg>/<lv>
	Size    uint64    // bytes
	Tags    []string  // lv_tags split on ','
	Active  bool      // lv_active == "active"
	Pool    string    // pool_lv; non-empty for thin volumes
	Created time.Time // lv_time
	// UUID (lv_uuid) tells this LV from a later one of the same name; the
	// journal of a remove names it.
	UUID string
}

// VG is the volume group as reported by `vgs`.
type VG struct {
	Name       string
	Size       uint64 // bytes
	Free       uint64 // bytes
	ExtentSize uint64 // bytes
	// UUID (vg_uuid) is unique across hosts, unlike the name; it goes into
	// KMIP key names so that two hosts' volume groups of one name never
	// share a key name.
	UUID string
	// LockType (vg_lock_type) is "" for a local group, "sanlock" or "dlm"
	// for a shared one (shared.go).
	LockType string
}

// CreateRequest describes a new LV. Pool empty means thick.
type CreateRequest struct {
	Name string
	Size uint64 // bytes; rounded up to the extent size by lvm
	Pool string // thin pool LV name in the same VG, or ""
	Tags []string
}
