// Package mount owns filesystems on opened volumes: mkfs, mount with
// nodev,nosuid, unmount, and reading /proc/self/mountinfo to prove that a path
// really is the decrypted filesystem before anyone is handed it.
package mount
