// Command mount-watch prints every mount and unmount in a process's mount
// namespace as it happens, one line each, for the trace of a `docker run` in
// `make bench` (scripts/bench/run-guest, part trace), which sets these lines
// beside dockerd's and the plugin's log on one timeline.
//
//	mount-watch [PID]     PID's namespace (default: its own); runs until SIGTERM or SIGINT
//
// Each line is "UNIX_SECONDS +|- MOUNT_POINT FSTYPE SOURCE", the time with
// microseconds, "+" for a mount and "-" for an unmount. The kernel marks
// /proc/PID/mountinfo readable with POLLPRI whenever the namespace's mount
// table changes (proc(5), /proc/pid/mounts), so nothing is polled by the
// clock; the table is read again at each mark and compared by mount ID.
// A mount and unmount that both happen between two reads are not seen.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

func main() {
	pid := "self"
	switch len(os.Args) {
	case 1:
	case 2:
		if _, err := strconv.Atoi(os.Args[1]); err != nil {
			fmt.Fprintf(os.Stderr, "mount-watch: %q is not a process ID\n", os.Args[1])
			os.Exit(2)
		}
		pid = os.Args[1]
	default:
		fmt.Fprintln(os.Stderr, "usage: mount-watch [PID]")
		os.Exit(2)
	}
	if err := watch("/proc/" + pid + "/mountinfo"); err != nil {
		fmt.Fprintln(os.Stderr, "mount-watch:", err)
		os.Exit(1)
	}
}

type mount struct{ point, fstype, source string }

func read(path string) (map[int]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	infos, err := mountinfo.GetMountsFromReader(f, nil)
	if err != nil {
		return nil, err
	}
	m := make(map[int]mount, len(infos))
	for _, i := range infos {
		m[i.ID] = mount{i.Mountpoint, i.FSType, i.Source}
	}
	return m, nil
}

func watch(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	out := bufio.NewWriter(os.Stdout)
	before, err := read(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s start %d mounts\n", stamp(time.Now()), len(before))
	out.Flush()
	fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLPRI}}
	for {
		select {
		case <-stop:
			return out.Flush()
		default:
		}
		// A bounded wait, so that a signal is seen within a tenth of a second.
		n, err := unix.Poll(fds, 100)
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			return err
		}
		now := time.Now()
		// The mark is cleared by reading the file from its descriptor.
		if _, err := f.Seek(0, 0); err != nil {
			return err
		}
		if _, err := f.Read(make([]byte, 1)); err != nil {
			return err
		}
		after, err := read(path)
		if err != nil {
			return err
		}
		for id, m := range after {
			if _, ok := before[id]; !ok {
				fmt.Fprintf(out, "%s + %s %s %s\n", stamp(now), m.point, m.fstype, m.source)
			}
		}
		for id, m := range before {
			if _, ok := after[id]; !ok {
				fmt.Fprintf(out, "%s - %s %s %s\n", stamp(now), m.point, m.fstype, m.source)
			}
		}
		if err := out.Flush(); err != nil {
			return err
		}
		before = after
	}
}

func stamp(t time.Time) string {
	return fmt.Sprintf("%d.%06d", t.Unix(), t.Nanosecond()/1000)
}
