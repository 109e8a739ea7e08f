package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// settleOpen bounds how long, once the driver stops acting, a volume's
// mapping may disagree with its containers: the plugin's sweep probes
// volumes whose mount IDs are suspect at its interval, and a probe's
// unmount and close are slow under emulation. It is sized from the lab
// runs' longest settle, which the summary prints, with a wide margin: a
// settle that runs it out is a volume left open or closed under a
// container, not a slow one.
const settleOpen = 3 * time.Minute

// settleKeys bounds, at the final check, how long after a plugin restart
// with the KMIP server up the keys of interrupted removes and rotations
// may stay on the server.
const settleKeys = 3 * time.Minute

// Check is one settle check: the driver has stopped acting; it restores
// the KMIP server and the plugin, then reads the invariants. sample picks
// the volumes whose logs are read (all at the final check).
func (s *Soak) Check(n int, final bool, sample *rand.Rand) {
	t0 := time.Now()
	s.Log.Printf("check %d%s: settling", n, map[bool]string{true: " (final)"}[final])
	s.endSlow()
	if s.down.KMIP {
		s.Recover(Fault{Kind: FaultKMIPStart})
	}
	if _, ok := waitFor(pluginBack, pluginUp); !ok {
		s.violate("check %d: the plugin is not up", n)
		return
	}
	if final && s.down.Pool {
		s.Recover(Fault{Kind: FaultPoolDrain})
	}
	if final {
		// A start with the KMIP server up settles what a remove or a
		// rotation left unfinished (docs/operations.md, "Key rotation":
		// a rotation that could not finish is finished by the next start).
		s.Recover(Fault{Kind: FaultDisable})
	}
	// Mappings open iff used, polled until they agree.
	var problems []string
	took, ok := waitFor(settleOpen, func() bool {
		problems = s.openProblems()
		return len(problems) == 0
	})
	s.Log.Count("check open-iff-used")
	s.Log.Printf("check %d: mappings %s running containers after %.0fs", n, map[bool]string{true: "agree with", false: "still disagree with"}[ok], took.Seconds())
	if !ok {
		for _, p := range problems {
			s.violate("check %d: %s (after %s)", n, p, settleOpen)
		}
	}
	s.noteSettle(took)

	listed, complete := s.listedAndLVs()
	s.Log.Count("check listed-equals-lvs")
	for _, p := range CompareListed(listed, complete) {
		s.violate("check %d: %s", n, p)
	}
	s.mu.Lock()
	var certain []string
	for _, v := range s.Model.VolNames(func(_ string, v *Vol) bool { return v.Certain }) {
		certain = append(certain, v)
	}
	s.mu.Unlock()
	s.Log.Count("check nothing-lost")
	for _, p := range CompareLost(certain, listed) {
		s.violate("check %d: %s", n, p)
	}
	s.refreshModel(listed)

	s.Log.Count("check kmip-keys")
	var missing, orphans []string
	if final {
		took, _ = waitFor(settleKeys, func() bool {
			missing, orphans = s.keyProblems()
			return len(missing)+len(orphans) == 0
		})
	} else {
		missing, orphans = s.keyProblems()
	}
	for _, p := range missing {
		s.violate("check %d: %s", n, p)
	}
	for _, p := range orphans {
		if final {
			s.violate("check %d: %s (%.0fs after a plugin restart with the KMIP server up)", n, p, took.Seconds())
		} else {
			// Not yet: an interrupted remove or rotation is finished by
			// the sweeper or the next start; the final check requires it.
			s.Log.Printf("check %d: pending: %s", n, p)
			s.Log.Count("check kmip-keys pending orphan")
		}
	}

	s.Log.Count("check host-clean")
	if stray := s.hostStray(); stray != "" {
		s.violate("check %d: files on the host's disk under the plugin's mount root: %s", n, stray)
	}
	s.Log.Count("check no-key-bytes")
	s.scanKeys(n, complete)
	s.Log.Count("check audit-verify")
	if _, err := s.admin("audit", "verify", "/var/lib/cryptvol/audit.log"); err != nil {
		s.violate("check %d: cryptvol audit verify: %v", n, err)
	}
	s.Log.Count("check no-panic")
	if log, err := os.ReadFile("/scratch/dockerd.log"); err == nil {
		for _, p := range PluginPanics(string(log)) {
			s.violate("check %d: %s", n, p)
		}
	}
	s.checkLogs(n, final, sample)
	if final {
		// The reads mounted and unmounted every volume once more.
		took, ok := waitFor(settleOpen, func() bool {
			problems = s.openProblems()
			return len(problems) == 0
		})
		s.Log.Count("check open-iff-used")
		s.Log.Printf("check %d: after the reads, mappings %s running containers after %.0fs", n, map[bool]string{true: "agree with", false: "still disagree with"}[ok], took.Seconds())
		for _, p := range problems {
			s.violate("check %d: after the reads: %s (after %s)", n, p, settleOpen)
		}
		s.Log.Count("check raw-disks")
		s.handToHost(n)
	}
	s.Log.Printf("check %d done in %.0fs", n, time.Since(t0).Seconds())
}

// noteSettle keeps the longest settle, for the summary.
func (s *Soak) noteSettle(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxSettle = max(s.maxSettle, d)
}

// openProblems compares the open mappings with the volumes of running
// containers, as docker says.
func (s *Soak) openProblems() []string {
	ids, err := docker("ps", "-q", "--filter", "status=running")
	if err != nil {
		return []string{fmt.Sprintf("docker ps: %v", err)}
	}
	var used []string
	if f := strings.Fields(ids); len(f) > 0 {
		out, err := docker(append([]string{"inspect", "--format", `{{range .Mounts}}{{.Driver}} {{.Name}};{{end}}`}, f...)...)
		if err != nil {
			return []string{fmt.Sprintf("docker inspect: %v", err)}
		}
		for _, m := range strings.FieldsFunc(out, func(r rune) bool { return r == ';' || r == '\n' }) {
			if d, name, ok := strings.Cut(strings.TrimSpace(m), " "); ok && strings.HasPrefix(d, "cryptvol") {
				used = append(used, name)
			}
		}
	}
	out, err := run("dmsetup", "ls")
	if err != nil && !strings.Contains(err.Error(), "No devices found") {
		return []string{fmt.Sprintf("dmsetup ls: %v", err)}
	}
	var open []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			if v, ok := strings.CutPrefix(f[0], "cryptvol-"); ok {
				open = append(open, v)
			}
		}
	}
	return CompareOpen(open, used)
}

// listedAndLVs: docker volume ls of the driver, and the group's complete
// volumes with their key ids.
func (s *Soak) listedAndLVs() ([]string, map[string]string) {
	out, err := docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}")
	if err != nil {
		s.violate("docker volume ls: %v", err)
	}
	var listed []string
	for _, l := range strings.Split(out, "\n") {
		if d, name, ok := strings.Cut(l, " "); ok && strings.HasPrefix(d, "cryptvol") {
			listed = append(listed, name)
		}
	}
	lvs, err := run("lvs", "--noheadings", "--separator", "|", "-o", "lv_name,lv_tags,segtype", s.VG)
	if err != nil {
		s.violate("lvs: %v", err)
	}
	s.lvs = ParseLVs(lvs)
	return listed, CompleteVolumes(s.lvs)
}

// refreshModel takes the volumes and containers from docker: what faults
// left uncertain is now known.
func (s *Soak) refreshModel(listed []string) {
	lvOf := map[string]LV{}
	for _, lv := range s.lvs {
		lvOf[strings.TrimPrefix(lv.Name, "cv-")] = lv
	}
	ctrs, _ := docker("ps", "-a", "--format", "{{.Names}} {{.State}}")
	s.mu.Lock()
	defer s.mu.Unlock()
	l := set(listed)
	for _, v := range s.Model.VolNames(nil) {
		if !l[v] {
			s.Model.DropVol(v)
		}
	}
	for _, v := range listed {
		if s.Model.Vols[v] == nil {
			lv := lvOf[v]
			s.Model.Vols[v] = &Vol{Thin: lv.Segtype == "thin", FS: fsOfTags(lv.Tags),
				ReadOnly: slices.Contains(lv.Tags, "cryptvol_readonly")}
		}
	}
	state := map[string]string{}
	for _, l := range strings.Split(ctrs, "\n") {
		if name, st, ok := strings.Cut(l, " "); ok {
			state[name] = st
		}
	}
	for _, c := range s.Model.CtrNames(nil) {
		st, ok := state[c]
		if !ok {
			delete(s.Model.Ctrs, c)
			continue
		}
		s.Model.Ctrs[c].Running = st == "running" || st == "restarting"
	}
}

// keyProblems compares the symmetric keys on the KMIP server with the
// complete volumes' keys.
func (s *Soak) keyProblems() (missing, orphans []string) {
	out, err := s.script("scripts/kmip/key-state", "--keys")
	if err != nil {
		return []string{fmt.Sprintf("key-state --keys: %v", err)}, nil
	}
	_, complete := s.listedAndLVs()
	return CompareKeys(strings.Fields(out), complete)
}

// hostStray: anything but directories on the host's disk under dockerd's
// side of the plugin's propagated mount (-xdev: the volumes' own
// filesystems mounted there are not the host's disk).
func (s *Soak) hostStray() string {
	prop, err := propagatedMount()
	if err != nil {
		return "(" + err.Error() + ")"
	}
	out, err := run("find", prop, "-xdev", "-mindepth", "1", "!", "-type", "d")
	if err != nil {
		return fmt.Sprintf("(find: %v)", err)
	}
	return strings.Join(strings.Fields(out), " ")
}

// propagatedMount is dockerd's side of the plugin's propagated mount.
func propagatedMount() (string, error) {
	root, err := docker("info", "--format", "{{.DockerRootDir}}")
	if err != nil {
		return "", fmt.Errorf("docker info: %v", err)
	}
	id, err := docker("plugin", "inspect", "cryptvol", "--format", "{{.Id}}")
	if err != nil {
		return "", fmt.Errorf("docker plugin inspect: %v", err)
	}
	return strings.TrimSpace(root) + "/plugins/" + strings.TrimSpace(id) + "/propagated-mount", nil
}

// handToHost leaves the marker for the lab runner's scan of the disk
// images, which fails the run if it finds it.
func (s *Soak) handToHost(n int) {
	f, err := os.OpenFile(s.HostScan, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		_, err = fmt.Fprintln(f, s.Marker)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		s.violate("check %d: handing the raw-disk scan to the host: %v", n, err)
		return
	}
	s.Log.Printf("check %d: the raw disks are scanned for the marker by the host once the guest stops (%s)", n, s.HostScan)
}

var writerFile = regexp.MustCompile(`^w[0-9]+-[0-9a-f]{8}$`)

func fsOfTags(tags []string) string {
	if slices.Contains(tags, "cryptvol_fs_xfs") {
		return "xfs"
	}
	return "ext4"
}
