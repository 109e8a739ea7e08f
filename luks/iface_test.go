package luks_test

import (
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/volume"
)

// The lifecycle consumes this package only through volume.Crypt.
var _ volume.Crypt = (*luks.Cryptsetup)(nil)
