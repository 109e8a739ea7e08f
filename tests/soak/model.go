package main

import (
	"fmt"
	"maps"
	"slices"
)

// Model is what the driver believes of the volumes and containers it made:
// the chooser draws its targets from it, and a settle check replaces the
// uncertain parts with what docker says.
type Model struct {
	Vols  map[string]*Vol
	Ctrs  map[string]*Ctr
	Files map[string]string // a file docker cp put in a volume ("VOL/NAME") -> its content
}

// Vol is one volume of the plugin.
type Vol struct {
	Thin     bool
	FS       string
	ReadOnly bool // a snapshot
	// Certain: a create that docker answered with success and no remove
	// or prune since. A certain volume missing from docker volume ls is a
	// lost volume.
	Certain bool
}

// Ctr is one writer container.
type Ctr struct {
	Vol     string
	Running bool
	Restart bool
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{Vols: map[string]*Vol{}, Ctrs: map[string]*Ctr{}, Files: map[string]string{}}
}

// VolNames is the volumes' names, sorted, so that a seeded choice among
// them does not depend on map order.
func (m *Model) VolNames(keep func(string, *Vol) bool) []string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(m.Vols)) {
		if keep == nil || keep(n, m.Vols[n]) {
			out = append(out, n)
		}
	}
	return out
}

// CtrNames is the containers' names, sorted.
func (m *Model) CtrNames(keep func(string, *Ctr) bool) []string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(m.Ctrs)) {
		if keep == nil || keep(n, m.Ctrs[n]) {
			out = append(out, n)
		}
	}
	return out
}

// Used: a container of the model has the volume, running or not (docker
// refuses to remove it either way).
func (m *Model) Used(vol string) bool {
	for _, c := range m.Ctrs {
		if c.Vol == vol {
			return true
		}
	}
	return false
}

// FilesOf is the names (sorted) of the files docker cp put in a volume.
func (m *Model) FilesOf(vol string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m.Files)) {
		if len(k) > len(vol) && k[:len(vol)] == vol && k[len(vol)] == '/' {
			out = append(out, k[len(vol)+1:])
		}
	}
	return out
}

// DropVol forgets a volume and the files put in it.
func (m *Model) DropVol(vol string) {
	delete(m.Vols, vol)
	for _, f := range m.FilesOf(vol) {
		delete(m.Files, vol+"/"+f)
	}
}

// cpContent is what docker cp puts in a volume for operation o.
func cpContent(o Op, marker string) string {
	return fmt.Sprintf("copied in by operation %d %s\n", o.Seq, marker)
}

// applyOK updates the model for an operation docker answered with success
// (a burst's operations are applied one by one).
func applyOK(m *Model, o Op, marker string) {
	switch o.Kind {
	case OpCreate:
		m.Vols[o.Vol] = &Vol{Thin: !slices.Contains(o.Opts, "thin=false"), FS: fsOf(o.Opts), Certain: true}
	case OpRunWriter:
		if slices.Contains(o.Opts, "auto") {
			m.Vols[o.Vol] = &Vol{Thin: true, FS: "ext4", Certain: true}
		}
		m.Ctrs[o.Ctr] = &Ctr{Vol: o.Vol, Running: true, Restart: slices.Contains(o.Opts, "restart")}
	case OpStart, OpStop, OpKill:
		// A burst may have removed the container meanwhile.
		if c := m.Ctrs[o.Ctr]; c != nil {
			c.Running = o.Kind == OpStart
		}
	case OpRmContainer:
		delete(m.Ctrs, o.Ctr)
	case OpCpIn:
		if c := m.Ctrs[o.Ctr]; c != nil && m.Vols[c.Vol] != nil {
			m.Files[c.Vol+"/"+o.File] = cpContent(o, marker)
		}
	case OpVolumeRm:
		m.DropVol(o.Vol)
	case OpPrune:
		for _, v := range m.VolNames(nil) {
			if !m.Used(v) {
				m.DropVol(v)
			}
		}
	case OpSnapshot, OpClone:
		src := m.Vols[o.Src]
		if src == nil {
			return
		}
		m.Vols[o.Vol] = &Vol{Thin: true, FS: src.FS, ReadOnly: o.Kind == OpSnapshot, Certain: true}
		for _, f := range m.FilesOf(o.Src) {
			m.Files[o.Vol+"/"+f] = m.Files[o.Src+"/"+f]
		}
	}
}

func fsOf(opts []string) string {
	if slices.Contains(opts, "fs=xfs") {
		return "xfs"
	}
	return "ext4"
}
