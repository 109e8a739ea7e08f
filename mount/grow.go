package mount

import (
	"context"
	"fmt"
)

// Grow makes the mounted filesystem on dev, mounted at target, fill its
// device: resize2fs for ext4 (online growth of a mounted ext4), xfs_growfs
// for xfs (which only grows mounted filesystems). Both do nothing when the
// filesystem already fills the device, so a grow can be repeated
// (resize2fs(8), xfs_growfs(8)).
func (f *FS) Grow(ctx context.Context, dev, target, fstype string) error {
	if err := ValidateFSType(fstype); err != nil {
		return err
	}
	if err := validatePath("device", dev); err != nil {
		return err
	}
	if err := validatePath("mount point", target); err != nil {
		return err
	}
	var err error
	switch fstype {
	case "ext4":
		_, err = f.exec(ctx, nil, "resize2fs", dev)
	case "xfs":
		_, err = f.exec(ctx, nil, "xfs_growfs", target)
	}
	if err != nil {
		return fmt.Errorf("grow the %s filesystem on %s: %w", fstype, dev, err)
	}
	return nil
}
