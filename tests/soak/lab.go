package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Lab is the guest the soak runs in: the repository (for its scripts and
// bin/cryptvol), the volume group and its thin pool, and the KMIP server's
// directory.
type Lab struct {
	Repo    string
	VG      string
	Pool    string
	KMIPDir string
	Marker  string
	// HostScan is where the final check leaves the marker for the lab
	// runner (scripts/vm/run, host-scan), which looks for it on the data
	// disks' images once the guest has stopped: read in the guest, every
	// block goes through emulated virtio.
	HostScan string
}

// cmdTimeout bounds one command: longer than docker's own deadline for a
// plugin request, so a timeout here is the command hanging, not a slow
// plugin.
const cmdTimeout = 4 * time.Minute

// run runs a command and returns its stdout, and an error with its stderr.
func run(name string, args ...string) (string, error) {
	return runIn(nil, name, args...)
}

// runIn runs a command with stdin.
func runIn(stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	err := c.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s", cmdTimeout)
	}
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, firstLines(msg, 3))
	}
	return out.String(), nil
}

func firstLines(s string, n int) string {
	ls := strings.SplitN(s, "\n", n+1)
	if len(ls) > n {
		ls = ls[:n]
	}
	return strings.Join(ls, " | ")
}

func docker(args ...string) (string, error) { return run("docker", args...) }

func (l *Lab) script(rel string, args ...string) (string, error) {
	return run(filepath.Join(l.Repo, rel), args...)
}

// admin runs the plugin's admin command line (bin/cryptvol, which talks to
// the plugin over its socket).
func (l *Lab) admin(args ...string) (string, error) {
	return run(filepath.Join(l.Repo, "bin/cryptvol"), args...)
}

// pluginUp: dockerd answers, the plugin is enabled and answers a list.
func pluginUp() bool {
	out, err := docker("plugin", "inspect", "cryptvol", "--format", "{{.Enabled}}")
	if err != nil || strings.TrimSpace(out) != "true" {
		return false
	}
	_, err = docker("volume", "ls", "-q")
	return err == nil
}

// waitFor polls cond until it holds or d has passed; it returns how long
// it took, and whether it held.
func waitFor(d time.Duration, cond func() bool) (time.Duration, bool) {
	t0 := time.Now()
	for {
		if cond() {
			return time.Since(t0), true
		}
		if time.Since(t0) > d {
			return time.Since(t0), false
		}
		time.Sleep(2 * time.Second)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
