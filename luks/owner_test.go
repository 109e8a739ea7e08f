package luks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// ownerTree is a /dev/mapper node cryptvol-v of device 253:5 over
// whatever stack, and the LV image (253:3) whose header it should map.
type ownerTree struct {
	c    *Cryptsetup
	sys  string
	dev  string
	uuid string
}

func newOwnerTree(t *testing.T) *ownerTree {
	t.Helper()
	img, _ := formatted(t, randomKey(t))
	_, uuid, _ := metadataOf(t, img)
	root := t.TempDir()
	o := &ownerTree{sys: filepath.Join(root, "sys"), dev: img, uuid: uuid}
	mapper := filepath.Join(root, "mapper")
	os.MkdirAll(mapper, 0o755)
	os.WriteFile(filepath.Join(mapper, "cryptvol-v"), nil, 0o600)
	o.c = New(WithExec(func(ctx context.Context, stdin []byte, prog string, args ...string) ([]byte, error) {
		t.Errorf("ran %s %v: the header is intact, no program is needed", prog, args)
		return nil, errors.New("no program here")
	}))
	o.c.devMapper, o.c.sysDevBlock = mapper, o.sys
	o.c.devNumber = func(path string) (uint64, error) {
		switch path {
		case filepath.Join(mapper, "cryptvol-v"):
			return unix.Mkdev(253, 5), nil
		case img:
			return unix.Mkdev(253, 3), nil
		}
		return 0, os.ErrNotExist
	}
	return o
}

// device writes sysfs's view of device num: its dm name and uuid, and the
// devices under it.
func (o *ownerTree) device(num, name, uuid string, slaves ...string) {
	d := filepath.Join(o.sys, num)
	os.MkdirAll(filepath.Join(d, "dm"), 0o755)
	os.MkdirAll(filepath.Join(d, "slaves"), 0o755)
	os.WriteFile(filepath.Join(d, "dev"), []byte(num+"\n"), 0o644)
	if name != "" {
		os.WriteFile(filepath.Join(d, "dm", "name"), []byte(name+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "dm", "uuid"), []byte(uuid+"\n"), 0o644)
	}
	for _, s := range slaves {
		os.Symlink(filepath.Join("..", "..", s), filepath.Join(d, "slaves", "dm-"+strings.ReplaceAll(s, ":", "-")))
	}
}

// A held mapping is the volume's only when the kernel's name, cryptsetup's
// uuid for this header and the device underneath all say so.
func TestHostMappingOf(t *testing.T) {
	o := newOwnerTree(t)
	luksUUID := "CRYPT-LUKS2-" + strings.ReplaceAll(o.uuid, "-", "") + "-cryptvol-v"
	o.device("253:3", "labvg-cv--v", lvUUID)
	o.device("253:4", "labvg-cv--other", lvUUID+"x")
	for _, c := range []struct {
		what  string
		build func()
		ok    bool
	}{
		{"the volume's mapping", func() { o.device("253:5", "cryptvol-v", luksUUID, "253:3") }, true},
		{"with integrity underneath", func() {
			o.device("253:6", "cryptvol-v_dif", "CRYPT-SUBDEV-x-cryptvol-v_dif", "253:3")
			o.device("253:5", "cryptvol-v", luksUUID, "253:6")
		}, true},
		{"a mapping of another LV", func() { o.device("253:5", "cryptvol-v", luksUUID, "253:4") }, false},
		{"another header's mapping", func() {
			o.device("253:5", "cryptvol-v", "CRYPT-LUKS2-00000000000000000000000000000000-cryptvol-v", "253:3")
		}, false},
		{"a linear device of that name", func() { o.device("253:5", "cryptvol-v", "", "253:3") }, false},
		{"a node left by a device since renamed", func() { o.device("253:5", "other", luksUUID, "253:3") }, false},
		{"stacked on two devices", func() { o.device("253:5", "cryptvol-v", luksUUID, "253:3", "253:4") }, false},
	} {
		os.RemoveAll(filepath.Join(o.sys, "253:5"))
		os.RemoveAll(filepath.Join(o.sys, "253:6"))
		c.build()
		err := o.c.MappingOf(context.Background(), "cryptvol-v", o.dev)
		if c.ok && err != nil {
			t.Errorf("%s: %v, want nil", c.what, err)
		}
		if !c.ok && !errors.Is(err, ErrNotThisMapping) {
			t.Errorf("%s: %v, want ErrNotThisMapping", c.what, err)
		}
	}
}
