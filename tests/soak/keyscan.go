package main

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// scanRoots are where the plugin, dockerd and the lab write in the guest:
// the plugin's state directory and KMIP identity, the scratch disk
// (dockerd's data root and log, the plugin's rootfs) and the guest's own
// tmpfs mounts. The rest of the guest's root is an overlay on the host's
// root (scripts/vm/initramfs-init), whose files change on the host (other
// guests' disk images under /var/tmp) and are not the guest's writes. The
// KMIP server's directory holds the keys by design and is left out; so are
// filesystems mounted below a root (the volumes' own, at the plugin's
// propagated mount): those hold what containers write.
// scannedUnder is the list of paths in key-state's summary line.
var scannedUnder = regexp.MustCompile(` under .* for `)

var scanRoots = []string{"/var/lib/cryptvol", "/etc/cryptvol", "/scratch", "/run", "/tmp"}

// scanKeys fetches the complete volumes' keys (bin/key-state, which zeroes
// them) and searches every file written since the soak began for their
// bytes. A key that cannot be fetched right then (a rotation the restarted
// plugin finished after the group was read) has the group read again, once.
func (s *Soak) scanKeys(n int, complete map[string]string) {
	files := changedFiles(scanRoots, s.KMIPDir, s.start)
	for try := 0; ; try++ {
		var ids []string
		for _, k := range complete {
			if k != "" && !slices.Contains(ids, k) {
				ids = append(ids, k)
			}
		}
		if len(ids) == 0 || len(files) == 0 {
			return
		}
		slices.Sort(ids)
		out, err := s.script("scripts/kmip/key-state", append(append(append([]string{"--scan"}, ids...), "--"), files...)...)
		var exit *exec.ExitError
		switch {
		case err == nil:
			// key-state names every path it was given; the count is enough.
			s.Log.Printf("check %d: %s", n, scannedUnder.ReplaceAllString(strings.TrimSpace(out), " "))
			return
		case errors.As(err, &exit) && exit.ExitCode() == 1:
			s.violate("check %d: key bytes on disk: %s", n, strings.TrimSpace(out))
			return
		case try == 0:
			s.Log.Printf("check %d: key scan: %v; reading the group again", n, err)
			_, complete = s.listedAndLVs()
		default:
			s.violate("check %d: key scan: %v", n, err)
			return
		}
	}
}

// changedFiles lists the regular files under roots modified at or after
// since, staying on each root's filesystem and out of skip.
func changedFiles(roots []string, skip string, since time.Time) []string {
	var out []string
	for _, root := range roots {
		var dev uint64
		if fi, err := os.Stat(root); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				dev = st.Dev
			}
		}
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				if p == skip || strings.HasPrefix(p, skip+"/") {
					return filepath.SkipDir
				}
				if fi, err := d.Info(); err == nil {
					if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Dev != dev {
						return filepath.SkipDir
					}
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			if fi, err := d.Info(); err == nil && !fi.ModTime().Before(since) {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}
