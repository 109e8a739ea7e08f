package volume

import (
	"context"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
)

// LVM is what the lifecycle needs from lvm2, bound to one volume group.
// Implemented by *lvm.Client.
type LVM interface {
	VG(ctx context.Context) (lvm.VG, error)
	// PoolFree returns the free bytes of a thin pool (size - data used).
	PoolFree(ctx context.Context, pool string) (uint64, error)
	LV(ctx context.Context, name string) (lvm.LV, error) // wraps lvm.ErrNotFound
	ListLVs(ctx context.Context, tag string) ([]lvm.LV, error)
	CreateLV(ctx context.Context, req lvm.CreateRequest) (lvm.LV, error)
	Activate(ctx context.Context, name string) error
	Deactivate(ctx context.Context, name string) error
	RemoveLV(ctx context.Context, name string) error // wraps lvm.ErrNotFound
	AddTag(ctx context.Context, name, tag string) error
}

// Crypt is what the lifecycle needs from cryptsetup. Implemented by *luks.Cryptsetup.
type Crypt interface {
	// Format refuses a device that already has a header (luks.ErrHasHeader),
	// formats LUKS2 aes-xts-plain64/512-bit/4096-byte sectors with key as the
	// passphrase, and writes token.
	Format(ctx context.Context, dev string, key []byte, token luks.Token) error
	Inspect(ctx context.Context, dev string) (luks.Header, error) // wraps luks.ErrNotLUKS
	Open(ctx context.Context, dev, mapping string, key []byte, opts luks.OpenOptions) error
	Close(ctx context.Context, mapping string) error // closing a mapping that is not open succeeds
	IsOpen(ctx context.Context, mapping string) (bool, error)
	Erase(ctx context.Context, dev string) error // luksErase: destroys all keyslots
}

// Filesystems makes and mounts filesystems. Implemented by *mount.FS.
type Filesystems interface {
	// Mkfs makes a filesystem whose root is empty, as a new local volume is
	// (ext4 without lost+found).
	Mkfs(ctx context.Context, dev, fstype string) error
	Mount(ctx context.Context, dev, target, fstype string) error // nodev,nosuid
	Unmount(ctx context.Context, target string) error            // not mounted succeeds
	// MountedDevice returns the source device mounted at target ("" if none),
	// read from /proc/self/mountinfo; a device-mapper device is named
	// /dev/mapper/NAME however it was mounted.
	MountedDevice(target string) (string, error)
	// WatchMounts calls changed after each change of the mount table
	// MountedDevice reads, until ctx ends (nil) or watching fails.
	WatchMounts(ctx context.Context, changed func()) error
}

// Keys is the key manager. Implemented by *keys.KMIP.
type Keys = keys.Manager
