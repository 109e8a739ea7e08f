//go:build lab

package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An open cut off after DM_DEV_CREATE (the plugin SIGKILLed there, or a
// cryptsetup killed with its cancelled request) leaves the mapping's name
// taken by a device without a table, which has no block device and no
// sysfs entry. The plugin started after such a kill closes it before
// answering, and a Mount that meets one closes it and opens the volume: in
// both cases the volume is closed after its last Unmount, and nothing is
// left decrypted or unmountable.
func TestLabTablelessMappingLeftByAKillIsClosed(t *testing.T) {
	const v = "lab-tableless"
	p, _ := mountedWithFile(t, v)
	p.must("unmount", p.unmount(v, "c1"))
	if mappingOpen(t, v) {
		t.Fatal("the mapping is open after the last unmount")
	}
	uuid, err := run(t, "cryptsetup", "luksUUID", "/dev/"+os.Getenv("CRYPTVOL_LAB_VG")+"/cv-"+v)
	if err != nil {
		t.Fatalf("cryptsetup luksUUID: %v: %s", err, uuid)
	}
	dmUUID := "CRYPT-LUKS2-" + strings.ReplaceAll(strings.TrimSpace(uuid), "-", "") + "-cryptvol-" + v
	tableless := func() {
		t.Helper()
		mustRun(t, "dmsetup", "create", "--noudevsync", "--notable", "-u", dmUUID, "cryptvol-"+v)
		t.Cleanup(func() { _, _ = run(t, "dmsetup", "remove", "--noudevsync", "cryptvol-"+v) })
		if !mappingOpen(t, v) {
			t.Fatal("dmsetup made no device")
		}
	}

	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.waitDead()
	tableless()
	p.start("")
	if mappingOpen(t, v) {
		t.Fatalf("the plugin started and left the tableless cryptvol-%s; log:\n%s", v, p.logTail())
	}

	tableless()
	mp, err := p.mount(v, "c2")
	p.must("mount over a tableless device of its mapping's name", err)
	if b, err := os.ReadFile(filepath.Join(mp, "kept")); err != nil || string(b) != "volume" {
		t.Fatalf("after the mount, kept = %q, %v", b, err)
	}
	p.must("unmount", p.unmount(v, "c2"))
	if mappingOpen(t, v) {
		t.Fatal("the mapping is open after the last unmount")
	}
	p.must("remove", p.remove(v))
}
