package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestASecondPluginOnTheGroupIsRefusedNamingTheFirst(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lvm", "cryptvol-vg0.lock")
	first, err := tryLock(p, "the CSI plugin, pid 7")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tryLock(p, "the VolumeDriver plugin, pid 9")
	if err == nil || !strings.Contains(err.Error(), "the CSI plugin, pid 7") || !strings.Contains(err.Error(), "CRYPTVOL_VG") {
		t.Fatalf("second lock: %v", err)
	}
	first.Close() // as the first process's death does
	second, err := tryLock(p, "the VolumeDriver plugin, pid 9")
	if err != nil {
		t.Fatalf("after the first let go: %v", err)
	}
	second.Close()
}
