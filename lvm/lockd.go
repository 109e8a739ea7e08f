package lvm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// lvm decides that lvmlockd is running by the existence of its pidfile,
// /run/lvmlockd.pid (fixed when lvm2 is built, lib/locking/lvmlockd.c,
// lvmlockd_init), before it ever tries lvmlockd's socket; without the file
// every command says "lvmlockd process is not running" and takes no lock.
// The managed plugin binds the host's /run/lvm, where the socket is, but its
// /run is its own, so the pidfile is not there (seen in the lab pair: the
// socket answered from inside the plugin, lvm did not try it). Variables so
// that tests can point them elsewhere.
var (
	lockdPidfile = "/run/lvmlockd.pid"
	lockdSocket  = "/run/lvm/lvmlockd.socket"
)

// markLockd makes lvm's pidfile test for lvmlockd pass when lvmlockd's
// socket is there and the pidfile is missing, which means this process's
// /run is not the host's: the file is made empty (lvm only tests that it
// exists). A host whose lvmlockd runs has its pidfile, and is left alone;
// with no socket nothing is made, and lvm then says lvmlockd is not running.
// The socket is not tried: lvmlockd logs "client recv bad message" for a
// connection that sends nothing (seen in the lab), and the lock start that
// follows talks to it anyway.
func markLockd() error {
	if _, err := os.Stat(lockdPidfile); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if fi, err := os.Stat(lockdSocket); err != nil || fi.Mode()&fs.ModeSocket == 0 {
		return nil
	}
	f, err := os.OpenFile(lockdPidfile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lvmlockd's socket is at %s, but %s, by which lvm tells that it runs, cannot be made: %w", lockdSocket, lockdPidfile, err)
	}
	return f.Close()
}
