// Package mount owns filesystems on opened volumes: mkfs, mount with
// nodev,nosuid, unmount, and reading /proc/self/mountinfo to prove that a path
// really is the decrypted filesystem before anyone is handed it.
//
// Files: fs.go runs mkfs, mount and umount and reads the table (parsed by
// github.com/moby/sys/mountinfo); watch.go reports changes of the table
// (poll(2) on mountinfo, proc(5)).
//
// Concurrency: an FS holds no state besides its paths and Exec and is safe
// for concurrent use; callers (volume/) hold a per-volume lock, so two
// operations never race on one mountpoint.
package mount
