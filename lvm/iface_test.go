package lvm_test

import (
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume"
)

// The lifecycle consumes this package only through volume.LVM.
var _ volume.LVM = (*lvm.Client)(nil)
