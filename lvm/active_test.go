package lvm

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Active answers from the node's device number and that device's dm uuid:
// only the LV's own device is the LV.
func TestActive(t *testing.T) {
	c, err := New("cvhost")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	c.sysfs = filepath.Join(root, "sys")
	c.devRoot = root
	nodes := map[string]uint64{}
	c.devNumber = func(path string) (uint64, error) {
		if n, ok := nodes[path]; ok {
			return n, nil
		}
		return 0, os.ErrNotExist
	}
	dm := func(minor uint32, uuid string) {
		d := filepath.Join(c.sysfs, "dev", "block", "253:"+string(rune('0'+minor)), "dm")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "uuid"), []byte(uuid+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const (
		vgID  = "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56"
		lvID  = "Qr12St-34Uv-56Wx-78Yz-90Ab-12Cd-34Ef56"
		lvHex = "Qr12St34Uv56Wx78Yz90Ab12Cd34Ef56"
	)
	lv := LV{Name: "cv-v1", UUID: lvID}
	node := filepath.Join(root, "dev", "cvhost", "cv-v1")

	if c.Active(lv) {
		t.Fatal("an LV without a node is active")
	}
	nodes[node] = unix.Mkdev(253, 1)
	if c.Active(lv) {
		t.Fatal("a node whose device sysfs does not know is active")
	}
	dm(1, "CRYPT-LUKS2-0123-cryptvol-v1") // a stale link to another device
	if c.Active(lv) {
		t.Fatal("a node of another device is the LV")
	}
	dm(2, "LVM-"+vgID+lvHex+"-tpool") // a layer of the LV, not the LV
	nodes[node] = unix.Mkdev(253, 2)
	if c.Active(lv) {
		t.Fatal("a layer device is the LV")
	}
	dm(3, "LVM-"+vgID+lvHex)
	nodes[node] = unix.Mkdev(253, 3)
	if !c.Active(lv) {
		t.Fatal("the LV's own device is not seen as active")
	}
	if c.Active(LV{Name: "cv-v1"}) {
		t.Fatal("an LV without a uuid (not listed) was taken as active")
	}
}
