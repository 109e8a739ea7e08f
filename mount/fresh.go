package mount

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Where an ext4 superblock keeps what fresh reads (the kernel's
// fs/ext4/ext4.h, struct ext4_super_block; little-endian).
const (
	ext4SuperOffset = 1024
	ext4MtimeAt     = 0x2c // s_mtime, u32: last mount time
	ext4MntCountAt  = 0x34 // s_mnt_count, u16: mounts since the last fsck
	ext4MagicAt     = 0x38 // s_magic, u16
	ext4Magic       = 0xef53
)

// fresh reports whether dev holds an ext4 filesystem that was never mounted:
// mke2fs leaves s_mnt_count and s_mtime zero, and the kernel sets both at
// every read-write mount (ext4_setup_super), so a filesystem Mkfs made and no
// one has mounted reads zero in both. dev is read through root (tests).
func (f *FS) fresh(dev string) (bool, error) {
	fd, err := os.Open(filepath.Join(f.devRoot, dev))
	if err != nil {
		return false, fmt.Errorf("reading the ext4 superblock of %s: %w", dev, err)
	}
	defer fd.Close()
	sb := make([]byte, ext4MagicAt+2)
	if _, err := fd.ReadAt(sb, ext4SuperOffset); err != nil {
		return false, fmt.Errorf("reading the ext4 superblock of %s: %w", dev, err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[ext4MagicAt:]) != ext4Magic {
		// mount will say what it is not; a fresh filesystem it is not.
		return false, nil
	}
	return le.Uint32(sb[ext4MtimeAt:]) == 0 && le.Uint16(sb[ext4MntCountAt:]) == 0, nil
}

// emptyRoot removes the lost+found directory mke2fs makes at the root of a
// new ext4 filesystem, once it is mounted for the first time, so that a new
// volume is empty as a new local volume is: dockerd copies an image's content
// and ownership into a volume only when it is empty (moby
// daemon/volumes_unix.go, copyExistingContents), and tools such as
// PostgreSQL's initdb refuse a data directory holding lost+found. e2fsck
// makes it again when it needs one (e2fsck(8), pass 3). It was a debugfs run
// at create; here it costs no program (issue 15). rmdir refuses a directory
// that is not empty, which a fresh one is.
func emptyRoot(target string) error {
	err := os.Remove(filepath.Join(target, "lost+found"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing lost+found from the new filesystem at %s: %w", target, err)
	}
	return nil
}
