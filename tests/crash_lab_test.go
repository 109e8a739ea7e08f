//go:build lab

package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fault-injection shim stands in front of every program the plugin
// runs (lvm, cryptsetup, mkfs, mount, umount, dmsetup), and the plugin
// built with its failpoints (bin/cryptvol-failpoints, internal/failpoint)
// counts every step it takes without a program (a device-mapper ioctl,
// mount(2), a header or state file write, a KMIP request that changes
// something, the answer to docker) in the same files. With a plan file
// "N before|after" the N-th step kills the plugin with SIGKILL: a program
// either before it runs or after it finished (the step is done but the
// plugin never learns it), a failpoint where it stands. Without a plan the
// shim just runs the program.
//
// The shim forks nothing of its own (parameter expansion, read, printf): it
// runs in front of every program of the faults part, where every fork and
// exec costs emulated CPU.
const shimScript = `#!/bin/sh
d=${0%/*}; me=${0##*/}
for p in /usr/sbin /usr/bin /sbin /bin; do [ -x "$p/$me" ] && real=$p/$me && break; done
if [ -f "$d/plan" ]; then
	read at mode < "$d/plan"
	n=0; [ -f "$d/count" ] && read n < "$d/count"
	n=$((n + 1)); echo $n > "$d/count"
	printf '%.80s\n' "$me $*" >> "$d/calls"
	if [ "$n" = "$at" ]; then
		if [ "$mode" = before ]; then kill -9 $PPID; exit 137; fi
		"$real" "$@"; rc=$?; kill -9 $PPID; exit $rc
	fi
fi
exec "$real" "$@"
`

var shimmed = []string{"lvm", "cryptsetup", "dmsetup", "mkfs.ext4", "mkfs.xfs", "mount", "umount", "blkid", "wipefs"}

func installShim(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "shim"), []byte(shimScript), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range shimmed {
		if err := os.Symlink("shim", filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
}

// plan arms the shim (at > 0) or only counts (at == 0); disarm removes it.
func plan(t *testing.T, dir string, at int, mode string) {
	t.Helper()
	os.Remove(filepath.Join(dir, "count"))
	os.Remove(filepath.Join(dir, "calls"))
	if err := os.WriteFile(filepath.Join(dir, "plan"), []byte(fmt.Sprintf("%d %s\n", at, mode)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// disarm stops the shim and returns the programs run since plan, one
// "program args" line each.
func disarm(t *testing.T, dir string) []string {
	t.Helper()
	os.Remove(filepath.Join(dir, "plan"))
	b, err := os.ReadFile(filepath.Join(dir, "calls"))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// readOnly tells the programs that only look: a crash just before one of
// them leaves the same state as a crash just before the next program.
func readOnly(call string) bool {
	f := strings.Fields(call)
	if len(f) < 2 {
		return f[0] == "blkid"
	}
	switch f[0] + " " + f[1] {
	case "lvm lvs", "lvm vgs", "lvm pvs", "lvm version", "cryptsetup luksDump", "cryptsetup isLuks",
		"cryptsetup status", "dmsetup info", "dmsetup ls", "dmsetup status", "dmsetup table":
		return true
	}
	return f[0] == "blkid"
}

const crashPattern = "written before the crash"

type crashCase struct {
	op string
	// prepare brings the volume to the state the operation starts from
	// (plugin unarmed). For mount and unmount the volume survives each
	// point (verify leaves it closed, data intact), so prepare makes it
	// only when it is missing: creating and removing it at every point
	// would double the test's time under emulation for no extra coverage.
	prepare func(t *testing.T, p *plug, v string)
	// keep: the volume outlives verify and is removed after the case.
	keep bool
	// do is the operation that gets killed; retry repeats it after restart.
	// unanswered: it is the plugin's own work (a sweep), with no answer
	// to docker as its last step.
	do         func(p *plug, v string) error
	unanswered bool
	retry      func(p *plug, v string) error
	// verify checks the state a successful retry must leave, data included.
	verify func(t *testing.T, p *plug, v string)
	// cleanup takes the volume away after verify (nil: a remove; an
	// operation that leaves nothing gives an empty one).
	cleanup func(t *testing.T, p *plug, v string)
}

func (c crashCase) clean(t *testing.T, p *plug, v string) {
	t.Helper()
	if c.cleanup != nil {
		c.cleanup(t, p, v)
		return
	}
	p.must("cleanup", p.remove(v))
}

func writeFile(t *testing.T, p *plug, v, id string) {
	t.Helper()
	mp, err := p.mount(v, id)
	p.must("mount "+v, err)
	p.must("write", os.WriteFile(filepath.Join(mp, "f"), []byte(crashPattern), 0o644))
	p.must("unmount "+v, p.unmount(v, id))
}

func readBack(t *testing.T, p *plug, mp string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mp, "f"))
	if err != nil || string(b) != crashPattern {
		t.Errorf("data written before the crash: got %q, %v", b, err)
	}
}

// ensureWithData creates v and writes the pattern into it unless v exists
// (from the previous crash point, which verified its data).
func ensureWithData(t *testing.T, p *plug, v string) {
	t.Helper()
	if _, err := p.get(v); err == nil {
		return
	}
	p.must("create", p.create(v, nil))
	writeFile(t, p, v, "before")
}

var crashCases = []crashCase{
	{
		op:      "create",
		prepare: func(t *testing.T, p *plug, v string) {},
		do:      func(p *plug, v string) error { return p.create(v, map[string]string{"size": "64M"}) },
		retry:   func(p *plug, v string) error { return p.create(v, map[string]string{"size": "64M"}) },
		verify: func(t *testing.T, p *plug, v string) {
			assertDown(t, p, v)
			writeFile(t, p, v, "after")
		},
	},
	{
		op:      "mount",
		keep:    true,
		prepare: ensureWithData,
		do:      func(p *plug, v string) error { _, err := p.mount(v, "c1"); return err },
		retry:   func(p *plug, v string) error { _, err := p.mount(v, "c1"); return err },
		verify: func(t *testing.T, p *plug, v string) {
			mp := filepath.Join(p.dir, "mnt", v)
			if !mappingOpen(t, v) || !mountedAt(t, mp) {
				t.Errorf("%s: not mounted after the retried mount", v)
			}
			readBack(t, p, filepath.Join(mp, "data"))
			p.must("unmount", p.unmount(v, "c1"))
			assertDown(t, p, v)
		},
	},
	{
		op:   "unmount",
		keep: true,
		prepare: func(t *testing.T, p *plug, v string) {
			ensureWithData(t, p, v)
			_, err := p.mount(v, "c1")
			p.must("mount", err)
		},
		do:    func(p *plug, v string) error { return p.unmount(v, "c1") },
		retry: func(p *plug, v string) error { return p.unmount(v, "c1") },
		verify: func(t *testing.T, p *plug, v string) {
			assertDown(t, p, v)
			mp, err := p.mount(v, "c2")
			p.must("mount", err)
			readBack(t, p, mp)
			p.must("unmount", p.unmount(v, "c2"))
		},
	},
	{
		op:      "rotate",
		keep:    true,
		prepare: ensureWithData,
		do:      func(p *plug, v string) error { return p.rotate(v) },
		retry:   func(p *plug, v string) error { return p.rotate(v) },
		verify: func(t *testing.T, p *plug, v string) {
			assertDown(t, p, v)
			assertRotated(t, p, v)
		},
	},
	{
		op:      "remove",
		prepare: func(t *testing.T, p *plug, v string) { p.must("create", p.create(v, nil)) },
		do:      func(p *plug, v string) error { return p.remove(v) },
		retry: func(p *plug, v string) error {
			if _, err := p.get(v); err != nil {
				return nil // finished by reconciliation: the volume is gone
			}
			return p.remove(v)
		},
		verify:  func(t *testing.T, p *plug, v string) { assertGone(t, p, v) },
		cleanup: func(*testing.T, *plug, string) {},
	},
}

// TestLabKillAtEveryStep runs each of Create, Mount, Unmount, Rotate and
// Remove in the real plugin process (its failpoints build), SIGKILLs it at
// every step that changes something (before each such program and at each
// failpoint, the last being the answer not yet sent), restarts it
// (start-up reconciliation), retries the operation and checks: no orphan
// LV, mapping, mount or KMIP key; data written before the crash intact;
// the volume works.
func TestLabKillAtEveryStep(t *testing.T) {
	needFaults(t)
	p, shim := newFaultsPlug(t)
	killAtEveryStep(t, p, shim, "cc", crashCases)
}

// newFaultsPlug is the plugin's failpoints build behind the shim, started.
func newFaultsPlug(t *testing.T, env ...string) (*plug, string) {
	p := newPlug(t, env...)
	shim := filepath.Join(p.dir, "shim")
	installShim(t, shim)
	p.bin = "../bin/cryptvol-failpoints"
	p.env = append(p.env, "CRYPTVOL_FAILPOINTS="+shim)
	p.shimDir = shim
	p.start(shim)
	return p, shim
}

// killAtEveryStep runs each case without a crash to count its steps, then
// once per crash point, and reports how many recovered.
func killAtEveryStep(t *testing.T, p *plug, shim, prefix string, cases []crashCase) {
	total, held := 0, 0
	var report []string
	for ci, c := range cases {
		// Count the programs an uninterrupted run of the operation runs.
		v := fmt.Sprintf("%s%d", prefix, ci)
		c.prepare(t, p, v)
		plan(t, shim, 0, "count")
		p.must(c.op+" without crash", c.do(p, v))
		calls := disarm(t, shim)
		c.verify(t, p, v)
		if !c.keep {
			c.clean(t, p, v)
		}
		if len(calls) == 0 || (!c.unanswered && calls[len(calls)-1] != "fp answer") {
			t.Fatalf("%s took steps %q; want at least its answer, last (is bin/cryptvol-failpoints a failpoints build?)", c.op, calls)
		}
		fmt.Printf("%s takes %d steps: %s\n", c.op, len(calls), strings.Join(calls, "; "))
		ok, points := 0, 0
		for k := 1; k <= len(calls); k++ {
			// Crash points: before each program that changes something and at each failpoint, the last of
			// which is the answer (the work is done, the plugin dies before answering). Killing the plugin
			// after a program is the same state as killing it at the next step, so those are not repeated.
			var modes []string
			if !readOnly(calls[k-1]) {
				modes = append(modes, "before")
			}
			for _, mode := range modes {
				total++
				points++
				prog := strings.Fields(calls[k-1])
				name := fmt.Sprintf("%s/%02d-%s-%s", c.op, k, mode, strings.Join(prog[:min(2, len(prog))], "_"))
				if t.Run(name, func(t *testing.T) {
					outer := p.t
					p.t = t
					defer func() { p.t = outer }()
					c.prepare(t, p, v)
					plan(t, shim, k, mode)
					_ = c.do(p, v)
					disarm(t, shim)
					if !p.waitDead() {
						t.Fatalf("plugin was not killed at step %d", k)
					}
					p.start(shim) // start-up reconciliation
					assertCoherent(t, p, v)
					if err := c.retry(p, v); err != nil {
						t.Fatalf("retry after the crash: %v\nplugin log:\n%s", err, p.logTail())
					}
					c.verify(t, p, v)
					if c.keep {
						return
					}
					c.clean(t, p, v)
					assertGone(t, p, v)
				}) {
					held++
					ok++
				} else {
					fmt.Printf("crash point %s: NOT recovered\n", name)
					if c.keep && p.cmd != nil {
						// Start the next point from a fresh volume, not from this failure's leftovers.
						_ = p.unmount(v, "c1")
						_ = p.remove(v)
					}
				}
			}
		}
		if c.keep {
			if _, err := p.get(v); err == nil {
				c.clean(t, p, v)
			}
			assertGone(t, p, v)
		}
		report = append(report, fmt.Sprintf("%s %d/%d", c.op, ok, points))
	}
	fmt.Printf("crash points (kill -9 before each changing program and at each failpoint): %d/%d recovered with no orphans and data intact (%s)\n",
		held, total, strings.Join(report, ", "))
}
