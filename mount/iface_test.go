package mount_test

import (
	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume"
)

// The lifecycle consumes this package only through volume.Filesystems.
var _ volume.Filesystems = (*mount.FS)(nil)
