package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The invariants' comparisons, on what the settle check read from docker,
// device-mapper, LVM, the KMIP server and dockerd's log. Each returns the
// problems found, one sentence each; none is a pass.

// CompareOpen: a volume's mapping is open iff a running container uses it.
// open is the names of the cryptvol-NAME mappings, used the volumes of the
// running containers.
func CompareOpen(open, used []string) []string {
	var out []string
	o, u := set(open), set(used)
	for _, v := range sorted(o) {
		if !u[v] {
			out = append(out, fmt.Sprintf("volume %s is open (mapping cryptvol-%s) and no running container uses it", v, v))
		}
	}
	for _, v := range sorted(u) {
		if !o[v] {
			out = append(out, fmt.Sprintf("volume %s is used by a running container and its mapping is not open", v))
		}
	}
	return out
}

// LV is one logical volume of the group, as lvs lists it.
type LV struct {
	Name    string
	Tags    []string
	Segtype string
}

// ParseLVs reads `lvs --noheadings --separator '|' -o lv_name,lv_tags,segtype`.
func ParseLVs(out string) []LV {
	var lvs []LV
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(l), "|")
		if len(f) != 3 || f[0] == "" {
			continue
		}
		lv := LV{Name: f[0], Segtype: f[2]}
		if f[1] != "" {
			lv.Tags = strings.Split(f[1], ",")
		}
		lvs = append(lvs, lv)
	}
	return lvs
}

// CompleteVolumes: the volumes whose LV a finished create left (cv-NAME,
// tagged cryptvol and cryptvol_ready), each with the KMIP key id its tag
// names ("" if none).
func CompleteVolumes(lvs []LV) map[string]string {
	out := map[string]string{}
	for _, lv := range lvs {
		name, ok := strings.CutPrefix(lv.Name, "cv-")
		if !ok || !slices.Contains(lv.Tags, "cryptvol") || !slices.Contains(lv.Tags, "cryptvol_ready") {
			continue
		}
		key := ""
		for _, t := range lv.Tags {
			if k, ok := strings.CutPrefix(t, "cryptvol_key_"); ok {
				key = k
			}
		}
		out[name] = key
	}
	return out
}

// CompareListed: docker volume ls of the driver equals the complete LVs.
func CompareListed(listed []string, complete map[string]string) []string {
	var out []string
	l := set(listed)
	for _, v := range sorted(l) {
		if _, ok := complete[v]; !ok {
			out = append(out, fmt.Sprintf("docker volume ls lists %s and the group has no complete LV cv-%s", v, v))
		}
	}
	for _, v := range slices.Sorted(maps.Keys(complete)) {
		if !l[v] {
			out = append(out, fmt.Sprintf("LV cv-%s is complete and docker volume ls does not list %s", v, v))
		}
	}
	return out
}

// CompareKeys: every volume's key is on the KMIP server (missing), and
// every key there is a volume's (orphans).
func CompareKeys(kmip []string, volKeys map[string]string) (missing, orphans []string) {
	k := set(kmip)
	named := map[string]bool{}
	for _, v := range slices.Sorted(maps.Keys(volKeys)) {
		id := volKeys[v]
		named[id] = true
		if id == "" {
			missing = append(missing, fmt.Sprintf("volume %s names no KMIP key", v))
		} else if !k[id] {
			missing = append(missing, fmt.Sprintf("volume %s's key %s is not on the KMIP server", v, id))
		}
	}
	for _, id := range sorted(k) {
		if !named[id] {
			orphans = append(orphans, fmt.Sprintf("KMIP key %s belongs to no volume", id))
		}
	}
	return missing, orphans
}

// CompareLost: a volume the driver is certain of (created, never the
// target of a remove or prune) is still listed.
func CompareLost(certain, listed []string) []string {
	var out []string
	l := set(listed)
	for _, v := range certain {
		if !l[v] {
			out = append(out, fmt.Sprintf("volume %s was created and never removed, and docker volume ls no longer lists it", v))
		}
	}
	return out
}

// PluginPanics: the plugin's lines of dockerd's log (plugin=ID) that tell
// of a panic.
func PluginPanics(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "plugin=") && (strings.Contains(l, "panic:") || strings.Contains(l, "goroutine ") && strings.Contains(l, "[running]")) {
			out = append(out, "the plugin panicked: "+l)
		}
	}
	return out
}

func set(xs []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		if x != "" {
			m[x] = true
		}
	}
	return m
}

func sorted(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
