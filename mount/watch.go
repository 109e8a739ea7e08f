package mount

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// WatchMounts calls changed after each change of the mount table that
// FS reads (a mount or unmount in this mount namespace, including one
// propagated from the host), until ctx ends. It returns nil when ctx ends,
// or the error that stopped it from watching.
//
// proc(5), /proc/[pid]/mountinfo: "a change in this file causes poll(2) to
// mark the file descriptor as having a priority event (POLLPRI)". The
// kernel reports each change once per open file, so changes that come
// while changed runs are reported by the next poll and none is lost.
// changed is called from WatchMounts' goroutine, one call at a time.
func (f *FS) WatchMounts(ctx context.Context, changed func()) error {
	// A raw descriptor: os.Open would register it with Go's netpoller,
	// whose epoll wakes on the same change and, by polling first, takes
	// the one report of it (the kernel keeps one "seen" event per open
	// file, fs/proc_namespace.c mounts_poll).
	table, err := unix.Open(f.mountinfo, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("watching the mount table: open %s: %w", f.mountinfo, err)
	}
	defer unix.Close(table)
	// A pipe wakes the poll when ctx ends: its read end reports POLLHUP
	// once the write end is closed.
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("watching the mount table: pipe: %w", err)
	}
	defer unix.Close(p[0])
	stop := context.AfterFunc(ctx, func() { unix.Close(p[1]) })
	defer func() {
		if stop() {
			unix.Close(p[1])
		}
	}()
	fds := []unix.PollFd{
		{Fd: int32(table), Events: unix.POLLPRI},
		{Fd: int32(p[0]), Events: unix.POLLIN},
	}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("watching the mount table: poll %s: %w", f.mountinfo, err)
		}
		if fds[1].Revents != 0 || ctx.Err() != nil {
			return nil
		}
		if fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			changed()
		}
	}
}
