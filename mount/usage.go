package mount

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Usage is a mounted filesystem's space and inodes, as statfs(2) reports
// them and df(1) prints them: Used is what df calls Used (blocks less free
// blocks) and Avail what it calls Available (free to unprivileged users,
// without the blocks ext4 reserves for root).
type Usage struct {
	Size, Used, Avail  uint64 // bytes
	Inodes, InodesFree uint64
}

// InodesUsed is Inodes less InodesFree, as df -i prints IUsed.
func (u Usage) InodesUsed() uint64 { return u.Inodes - min(u.InodesFree, u.Inodes) }

// statfs is statfs(2); tests replace it.
var statfs = unix.Statfs

// Usage returns the usage of the filesystem mounted at target: one system
// call, no program, so Status and a metrics scrape can ask it every time.
func (f *FS) Usage(target string) (Usage, error) {
	var st unix.Statfs_t
	if err := statfs(target, &st); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", target, err)
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return Usage{
		Size:       st.Blocks * bs,
		Used:       (st.Blocks - min(st.Bfree, st.Blocks)) * bs,
		Avail:      st.Bavail * bs,
		Inodes:     st.Files,
		InodesFree: st.Ffree,
	}, nil
}
