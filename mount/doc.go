// Package mount owns filesystems on opened volumes: mkfs, mount with
// nodev,nosuid, unmount, and reading /proc/self/mountinfo to prove that a path
// really is the decrypted filesystem before anyone is handed it.
//
// Files: fs.go runs mkfs, mounts and unmounts and reads the table (parsed
// by github.com/moby/sys/mountinfo); syscall.go mounts and unmounts with
// mount(2) and umount2(2), no program; layout.go owns the data directory
// inside a volume's filesystem that containers are given, and moves a
// filesystem of the older layout into it; propagation.go reads whether the
// plugin's propagated mount is shared; watch.go reports changes of the
// table (poll(2) on mountinfo, proc(5)).
//
// Concurrency: an FS holds no state besides its paths, Exec and system calls and is safe
// for concurrent use; callers (volume/) hold a per-volume lock, so two
// operations never race on one mountpoint.
package mount
