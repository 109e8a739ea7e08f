package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// groupLockDir holds the lock files: the host's /run/lock/lvm, which both
// bundles bind from the host (config.json, mount lvm-lock) and which lvm2
// creates, so the VolumeDriver plugin, the CSI plugin and a plugin run by
// hand all see the same files.
var groupLockDir = "/run/lock/lvm"

// One plugin process serves a volume group on a host. Two would each take
// the other's creates in progress for half-made volumes and undo them
// (volume/doc.go, reconciliation rule 3), and their sweepers would close
// each other's mounts. The lock is held for the life of the process (the
// kernel drops it when the process dies, SIGKILL included).
var groupLock struct {
	sync.Mutex
	f *os.File
}

// lockGroup takes this process's lock on vg, once; what holds it already is
// named in the error, which start-up reports and retries.
func lockGroup(vg, what string) error {
	groupLock.Lock()
	defer groupLock.Unlock()
	if groupLock.f != nil {
		return nil
	}
	f, err := tryLock(filepath.Join(groupLockDir, "cryptvol-"+vg+".lock"), what)
	if err != nil {
		return err
	}
	groupLock.f = f
	return nil
}

// tryLock takes an exclusive flock on path without waiting and writes what
// into it for whoever finds it held.
func tryLock(path, what string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock for the volume group: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock for the volume group: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := make([]byte, 200)
		n, _ := f.ReadAt(holder, 0)
		f.Close()
		return nil, fmt.Errorf("another cryptvol plugin on this host serves this volume group (%s holds %s: %w); give each plugin a volume group of its own (CRYPTVOL_VG)",
			strings.TrimSpace(string(holder[:n])), path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(what+"\n"), 0)
	}
	return f, nil
}
