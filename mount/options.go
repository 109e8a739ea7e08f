package mount

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Mount options a volume may ask for (--opt mountopts), on top of the
// nodev,nosuid every volume gets. What is left out is left out on purpose:
// discard would tell an observer of the encrypted device which blocks are
// free; suid and dev undo nodev,nosuid; ro breaks dockerd's copy
// of an image's content into a new volume; the rest of mount(8)'s list
// names devices, users or security labels a volume has no business setting.
var (
	commonOptions = []string{"noatime", "nodiratime", "relatime", "strictatime", "lazytime", "sync", "dirsync", "noexec"}
	fsOptions     = map[string][]string{
		"ext4": {"data=ordered", "data=journal", "data=writeback", "commit=N", "nodelalloc", "journal_checksum"},
		"xfs":  {"wsync", "logbufs=N", "largeio"},
	}
	numberArg = regexp.MustCompile(`^[1-9][0-9]{0,4}$`)
)

// AllowedOptions lists the mount options fstype allows ("N": a number).
func AllowedOptions(fstype string) []string {
	return append(slices.Clone(commonOptions), fsOptions[fstype]...)
}

// Discard is the mount option of a volume made with discard=true: the
// filesystem discards freed blocks as it frees them. Not on the list users
// choose from: it takes the volume option, which also opens the mapping
// with --allow-discards.
const Discard = "discard"

// ReadOnly is the mount option of a read-only snapshot (cryptvol snapshot):
// like discard, set by the lifecycle, never chosen in mountopts.
const ReadOnly = "ro"

// NoUUID lets an xfs clone or snapshot mount while its source, which has
// the same filesystem UUID, is mounted, and the other way round (xfs(5),
// nouuid): the lifecycle mounts every xfs volume with it
// (volume/fsoptions.go). Never chosen in mountopts.
const NoUUID = "nouuid"

// ValidateOptions checks each option against fstype's allow-list and says,
// for one that is not on it, what is.
func ValidateOptions(fstype string, opts []string) error {
	return validate(fstype, opts, AllowedOptions(fstype))
}

// validate checks opts against allowed ("N": a number).
func validate(fstype string, opts, allowed []string) error {
	for _, o := range opts {
		ok := slices.Contains(allowed, o)
		if k, v, has := strings.Cut(o, "="); has && !ok {
			ok = numberArg.MatchString(v) && slices.Contains(allowed, k+"=N")
		}
		if !ok {
			return fmt.Errorf("mount option %q is not allowed on %s (allowed: %s)", o, fstype, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// MkfsOptions are the mkfs choices a volume may make: ext4's bytes per
// inode (-i: many small files want more inodes) and reserved blocks
// percentage (-m: root's share, useless to most containers), xfs's
// inode space limit (-i maxpct). A negative number means mkfs's default.
type MkfsOptions struct {
	InodeRatio      int // ext4; 0: default
	ReservedPercent int // ext4; -1: default (5)
	InodeMaxPct     int // xfs; -1: default
}

// DefaultMkfs is every choice left to mkfs.
var DefaultMkfs = MkfsOptions{ReservedPercent: -1, InodeMaxPct: -1}

// Validate says which choice does not fit fstype or its range.
func (o MkfsOptions) Validate(fstype string) error {
	switch {
	case fstype != "ext4" && (o.InodeRatio > 0 || o.ReservedPercent >= 0):
		return fmt.Errorf("inode_ratio and reserved_percent are ext4 choices, not %s's", fstype)
	case fstype != "xfs" && o.InodeMaxPct >= 0:
		return fmt.Errorf("inode_maxpct is an xfs choice, not %s's", fstype)
	case o.InodeRatio != 0 && (o.InodeRatio < 1024 || o.InodeRatio > 1<<26 || o.InodeRatio&(o.InodeRatio-1) != 0):
		return fmt.Errorf("inode_ratio %d is not allowed (allowed: a power of two from 1024 to 67108864 bytes per inode)", o.InodeRatio)
	case o.ReservedPercent > 50:
		return fmt.Errorf("reserved_percent %d is not allowed (allowed: 0 to 50)", o.ReservedPercent)
	case o.InodeMaxPct > 100:
		return fmt.Errorf("inode_maxpct %d is not allowed (allowed: 0 to 100)", o.InodeMaxPct)
	}
	return nil
}
