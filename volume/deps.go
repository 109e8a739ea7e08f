package volume

import (
	"context"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/mount"
)

// LVM is what the lifecycle needs from lvm2, bound to one volume group.
// Implemented by *lvm.Client.
type LVM interface {
	// VG reports the volume group's size, free space and extent size.
	VG(ctx context.Context) (lvm.VG, error)
	// PoolStatus reports a thin pool's size and data and metadata use;
	// ThinVirtualSize sums the virtual sizes of its thin volumes.
	PoolStatus(ctx context.Context, pool string) (lvm.PoolStatus, error)
	ThinVirtualSize(ctx context.Context, pool string) (uint64, error)
	// LV reports one LV of the group; a missing one wraps lvm.ErrNotFound.
	LV(ctx context.Context, name string) (lvm.LV, error)
	// ListLVs reports every LV of the group carrying tag.
	ListLVs(ctx context.Context, tag string) ([]lvm.LV, error)
	// CreateLV creates an active LV, thick or thin, with its tags; a name
	// taken wraps lvm.ErrExists.
	CreateLV(ctx context.Context, req lvm.CreateRequest) error
	// Activate makes the LV's /dev node; Deactivate takes it away so that
	// nothing can reach its blocks. Active asks the kernel (no program)
	// whether the LV's device is there now, false when it cannot tell.
	Activate(ctx context.Context, name string) error
	Deactivate(ctx context.Context, name string) error
	Active(lv lvm.LV) bool
	// RemoveLV deactivates and removes the LV; a missing one wraps
	// lvm.ErrNotFound.
	RemoveLV(ctx context.Context, name string) error
	// Rename renames the LV in one metadata commit; a taken name wraps
	// lvm.ErrExists.
	Rename(ctx context.Context, from, to string) error
	// AddTag adds one tag; DeactivateAndTag deactivates the LV and adds
	// one tag, in one program; ReplaceTags deletes the tags del (present) and adds the
	// tags add (absent) in one metadata commit.
	AddTag(ctx context.Context, name, tag string) error
	DeactivateAndTag(ctx context.Context, name, tag string) error
	ReplaceTags(ctx context.Context, name string, del, add []string) error
	// Extend grows the LV from current to size bytes.
	Extend(ctx context.Context, name string, current, size uint64) error
	// Snapshot makes name, an active thin snapshot of origin, with tags.
	Snapshot(ctx context.Context, origin, name string, tags []string) error
	// MetadataMark reads, without running a program once the group's
	// devices are known, a mark that changes with every metadata commit of
	// the group (not with activation).
	MetadataMark(ctx context.Context) (string, error)
	// MetadataLVs reports what ListLVs would, read from the metadata text
	// on the group's devices (no program once the devices are known), and
	// the mark of that text. Active is false throughout: ask Active.
	MetadataLVs(ctx context.Context, tag string) (string, []lvm.LV, error)
	// MetadataVG reports what VG would, read from the same text.
	MetadataVG(ctx context.Context) (lvm.VG, error)
}

// Crypt is what the lifecycle needs from cryptsetup. Implemented by *luks.Cryptsetup.
type Crypt interface {
	// Format refuses a device that already has a header (luks.ErrHasHeader),
	// formats LUKS2 aes-xts-plain64/512-bit/4096-byte sectors with key as the
	// passphrase, and writes token.
	Format(ctx context.Context, dev string, key []byte, token luks.Token, opts ...luks.FormatOptions) error
	// Inspect reads dev's header; a device without one wraps luks.ErrNotLUKS.
	Inspect(ctx context.Context, dev string) (luks.Header, error)
	// Open maps dev to /dev/mapper/MAPPING with key as the passphrase.
	Open(ctx context.Context, dev, mapping string, key []byte, opts luks.OpenOptions) error
	// Close removes the mapping: one not open succeeds, one still held
	// wraps luks.ErrBusy.
	Close(ctx context.Context, mapping string) error
	// IsOpen reports whether the mapping exists; Mappings lists every
	// device-mapper name at once (an error: ask IsOpen instead).
	IsOpen(ctx context.Context, mapping string) (bool, error)
	Mappings(ctx context.Context) (map[string]bool, error)
	// MappingOf returns nil when mapping is the LUKS2 mapping of dev, else
	// an error wrapping luks.ErrNotThisMapping.
	MappingOf(ctx context.Context, mapping, dev string) error
	// Erase destroys every keyslot (luksErase): the data is unreadable
	// with any key from then on.
	Erase(ctx context.Context, dev string) error
	// AddKey adds keyslot slot for passphrase newKey, authorized by
	// existing; SetToken points cryptvol's token (LUKS2 token tokenID) at
	// token's key and keyslot slot; KillSlot destroys a keyslot. A key
	// rotation's steps (rotate.go).
	AddKey(ctx context.Context, dev string, existing, newKey []byte, slot int) error
	SetToken(ctx context.Context, dev string, tokenID int, token luks.Token, slot int) error
	KillSlot(ctx context.Context, dev string, slot int) error
	// OpensSlot reports whether key opens keyslot slot (that one only).
	OpensSlot(ctx context.Context, dev string, key []byte, slot int) (bool, error)
	// Reencrypt re-encrypts the data under a new volume key, with key as
	// the passphrase before and after; resumable (reencrypt.go).
	Reencrypt(ctx context.Context, dev string, key []byte, o luks.ReencryptOptions) error
	// Resize makes an open mapping fill its grown device.
	Resize(ctx context.Context, mapping string, key []byte) error
}

// Filesystems makes and mounts filesystems. Implemented by *mount.FS.
type Filesystems interface {
	// Mkfs makes a filesystem on dev.
	Mkfs(ctx context.Context, dev, fstype string, opts ...mount.MkfsOptions) error
	// Mount mounts dev on target nodev,nosuid with the extra options and
	// succeeds only when the mount table shows dev there.
	Mount(ctx context.Context, dev, target, fstype string, extra ...string) error
	// Data returns the data directory of the filesystem on dev mounted at
	// target, the path a container is given, once proven a directory of
	// that filesystem; create makes or finishes its layout (mount/layout.go),
	// which only a caller that just opened the mapping may ask. A
	// filesystem of the older layout without create: mount.ErrOldLayout.
	Data(target, dev string, create bool) (string, error)
	// Shared reports whether root is a mount point and, if so, whether its
	// propagation is shared, with mountinfo's optional fields.
	Shared(root string) (mounted, shared bool, fields string, err error)
	// Unmount unmounts target; nothing mounted there succeeds.
	Unmount(ctx context.Context, target string) error
	// MountedDevice returns the source device mounted at target ("" if none),
	// read from /proc/self/mountinfo; a device-mapper device is named
	// /dev/mapper/NAME however it was mounted.
	MountedDevice(target string) (string, error)
	// MountedUnder returns the device mounted at each mount point directly
	// inside root, by the mount point's name, from one read of the table.
	MountedUnder(root string) (map[string]string, error)
	// Usage returns the space and inodes of the filesystem mounted at
	// target (statfs(2)); of the directory's own filesystem if nothing is.
	Usage(target string) (mount.Usage, error)
	// Grow makes the filesystem on dev, mounted at target, fill dev.
	Grow(ctx context.Context, dev, target, fstype string) error
	// Freeze blocks writes to the filesystem at target and makes it
	// consistent on its device; Thaw lets them go on.
	Freeze(target string) error
	Thaw(target string) error
	// OpenDevice opens the block device dev for an export's reads, or for
	// an import's writes, exclusively (nothing else may hold it).
	OpenDevice(dev string, write bool) (mount.Device, error)
	// WatchMounts calls changed after each change of the mount table
	// MountedDevice reads, until ctx ends (nil) or watching fails.
	WatchMounts(ctx context.Context, changed func()) error
}

// Keys is the key manager. Implemented by *keys.KMIP.
type Keys = keys.Manager
