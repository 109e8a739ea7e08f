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

// dmTree is a /dev/mapper and a /sys/dev/block of one mapping, and a
// Cryptsetup whose stat and ioctl are the test's.
type dmTree struct {
	c       *Cryptsetup
	node    string
	removed []string
	ran     []string
	gone    bool // device-mapper has no cryptvol-v any more
}

func newDMTree(t *testing.T, name, uuid, slaveUUID string, removeErr error) *dmTree {
	t.Helper()
	root := t.TempDir()
	d := &dmTree{}
	mapper := filepath.Join(root, "mapper")
	os.MkdirAll(mapper, 0o755)
	d.node = filepath.Join(mapper, "cryptvol-v")
	os.WriteFile(d.node, nil, 0o600)
	sys := filepath.Join(root, "sys", "253:3")
	os.MkdirAll(filepath.Join(sys, "dm"), 0o755)
	os.WriteFile(filepath.Join(sys, "dm", "name"), []byte(name+"\n"), 0o644)
	os.WriteFile(filepath.Join(sys, "dm", "uuid"), []byte(uuid+"\n"), 0o644)
	os.MkdirAll(filepath.Join(sys, "slaves", "dm-2", "dm"), 0o755)
	os.WriteFile(filepath.Join(sys, "slaves", "dm-2", "dm", "uuid"), []byte(slaveUUID+"\n"), 0o644)
	d.c = New(WithExec(func(ctx context.Context, stdin []byte, prog string, args ...string) ([]byte, error) {
		d.ran = append(d.ran, prog+" "+strings.Join(args, " "))
		if len(args) > 0 && args[0] == "close" {
			d.gone = true // cryptsetup removes it
		}
		return nil, nil
	}))
	// device-mapper's name table: cryptvol-v, live, until removed.
	d.c.dmStatus = func(name string) (dmInfo, error) {
		if d.gone || name != "cryptvol-v" {
			return dmInfo{}, unix.ENXIO
		}
		return dmInfo{dev: unix.Mkdev(253, 3), flags: dmActivePresentFlag, uuid: uuid}, nil
	}
	d.c.devMapper, d.c.sysDevBlock = mapper, filepath.Join(root, "sys")
	d.c.devNumber = func(path string) (uint64, error) {
		if _, err := os.Stat(path); err != nil {
			return 0, err
		}
		return unix.Mkdev(253, 3), nil
	}
	d.c.dmRemove = func(name string) error {
		d.removed = append(d.removed, name)
		if removeErr == nil || errors.Is(removeErr, unix.ENXIO) {
			os.RemoveAll(sys) // the kernel forgets the device
			d.gone = true
		}
		return removeErr
	}
	return d
}

const lvUUID = "LVM-abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd"

// A plain LUKS2 mapping is closed with the ioctl and its node removed; no
// program runs.
func TestCloseRemovesAPlainMappingDirectly(t *testing.T) {
	d := newDMTree(t, "cryptvol-v", "CRYPT-LUKS2-0123456789abcdef0123456789abcdef-cryptvol-v", lvUUID, nil)
	if err := d.c.Close(context.Background(), "cryptvol-v"); err != nil {
		t.Fatal(err)
	}
	if len(d.removed) != 1 || d.removed[0] != "cryptvol-v" || len(d.ran) != 0 {
		t.Fatalf("removed %v, ran %v; want one ioctl and no program", d.removed, d.ran)
	}
	if _, err := os.Stat(d.node); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("node left behind: %v", err)
	}
}

// Whatever is not a plain LUKS2 mapping cryptsetup made goes to cryptsetup,
// with nothing removed first.
func TestCloseLeavesOtherMappingsToCryptsetup(t *testing.T) {
	for _, c := range []struct{ what, name, uuid, slave string }{
		{"a node of another device now", "othervg-lv", "LVM-x", lvUUID},
		{"not cryptsetup's", "cryptvol-v", "LVM-abc", lvUUID},
		{"LUKS1", "cryptvol-v", "CRYPT-LUKS1-0123-cryptvol-v", lvUUID},
		{"dm-integrity underneath", "cryptvol-v", "CRYPT-LUKS2-0123-cryptvol-v", "CRYPT-SUBDEV-0123-cryptvol-v_dif"},
	} {
		d := newDMTree(t, c.name, c.uuid, c.slave, nil)
		if err := d.c.Close(context.Background(), "cryptvol-v"); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if len(d.removed) != 0 || len(d.ran) != 1 || d.ran[0] != "cryptsetup close cryptvol-v" {
			t.Errorf("%s: removed %v, ran %v; want cryptsetup close only", c.what, d.removed, d.ran)
		}
	}
	// No node at all: cryptsetup decides (its "not active" is a close).
	d := newDMTree(t, "cryptvol-v", "CRYPT-LUKS2-0123-cryptvol-v", lvUUID, nil)
	os.Remove(d.node)
	if err := d.c.Close(context.Background(), "cryptvol-v"); err != nil || len(d.ran) != 1 || len(d.removed) != 0 {
		t.Fatalf("no node: %v, ran %v, removed %v", err, d.ran, d.removed)
	}
}

// The kernel's answers: busy is ErrBusy (the node stays), gone is closed,
// and an ioctl that answers 0 with the device still listed is no close.
func TestCloseDirectKernelAnswers(t *testing.T) {
	d := newDMTree(t, "cryptvol-v", "CRYPT-LUKS2-0123-cryptvol-v", lvUUID, unix.EBUSY)
	if err := d.c.Close(context.Background(), "cryptvol-v"); !errors.Is(err, ErrBusy) {
		t.Fatalf("open mapping: %v, want ErrBusy", err)
	}
	if _, err := os.Stat(d.node); err != nil {
		t.Fatalf("the node of a busy mapping was removed: %v", err)
	}
	d = newDMTree(t, "cryptvol-v", "CRYPT-LUKS2-0123-cryptvol-v", lvUUID, unix.ENXIO)
	if err := d.c.Close(context.Background(), "cryptvol-v"); err != nil || len(d.ran) != 0 {
		t.Fatalf("mapping removed meanwhile: %v, ran %v; want closed, no program", err, d.ran)
	}
	d = newDMTree(t, "cryptvol-v", "CRYPT-LUKS2-0123-cryptvol-v", lvUUID, nil)
	d.c.dmRemove = func(string) error { return nil } // answers, removes nothing
	if err := d.c.Close(context.Background(), "cryptvol-v"); err == nil || !strings.Contains(err.Error(), "still lists the device") {
		t.Fatalf("ioctl answered but the device stayed: %v", err)
	}
	if _, err := os.Stat(d.node); err != nil {
		t.Fatalf("the node of a mapping still there was removed: %v", err)
	}
	d = newDMTree(t, "cryptvol-v", "CRYPT-LUKS2-0123-cryptvol-v", lvUUID, unix.EPERM)
	if err := d.c.Close(context.Background(), "cryptvol-v"); err == nil || !strings.Contains(err.Error(), "DM_DEV_REMOVE") {
		t.Fatalf("ioctl refused: %v", err)
	}
}

// A device an open left without a live table (cut off between
// DM_DEV_CREATE and the resume) has no node and no sysfs entry: Close
// removes it by its name when its uuid is a LUKS2 mapping's of that name,
// runs no program (cryptsetup's close calls it "not active" and leaves the
// name taken), and refuses any other.
func TestCloseRemovesATablelessDeviceAnOpenLeft(t *testing.T) {
	const uuid = "CRYPT-LUKS2-0123456789abcdef0123456789abcdef-cryptvol-v1"
	for _, c := range []struct {
		what  string
		flags uint32
	}{{"no table", 0}, {"a table loaded, never made live", 1 << 6}} {
		f := newFakeCS(t)
		dm := &fakeDM{devs: map[string]dmInfo{"cryptvol-v1": {dev: unix.Mkdev(253, 9), flags: c.flags, uuid: uuid}}}
		cs := dm.wire(New(WithExec(f.exec)))
		cs.devMapper = t.TempDir()
		if err := cs.Close(context.Background(), "cryptvol-v1"); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if len(dm.devs) != 0 || len(f.calls) != 0 {
			t.Errorf("%s: left %v, ran %q; want it removed with no program", c.what, dm.devs, f.argvs())
		}
	}
	for _, other := range []string{
		"",
		"LVM-abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd",
		"CRYPT-LUKS2-0123456789abcdef0123456789abcdef-cryptvol-v2",  // another mapping's
		"CRYPT-LUKS2-0123456789ABCDEF0123456789abcdef-cryptvol-v1",  // not as written
		"CRYPT-LUKS2-0123456789abcdef0123456789abcde-cryptvol-v1",   // 31 digits
		"CRYPT-PLAIN-0123456789abcdef0123456789abcdef-cryptvol-v1",  // not LUKS2
		"CRYPT-LUKS2-0123456789abcdef0123456789abcdefx-cryptvol-v1", // 33
	} {
		f := newFakeCS(t)
		dm := &fakeDM{devs: map[string]dmInfo{"cryptvol-v1": {uuid: other}}}
		err := dm.wire(New(WithExec(f.exec))).Close(context.Background(), "cryptvol-v1")
		if err == nil || !strings.Contains(err.Error(), "left alone") || len(dm.devs) != 1 || len(f.calls) != 0 {
			t.Errorf("uuid %q: err %v, left %v, ran %q; want it refused and kept", other, err, dm.devs, f.argvs())
		}
	}
	// Held (a table loaded and opened meanwhile): ErrBusy, kept.
	dm := &fakeDM{devs: map[string]dmInfo{"cryptvol-v1": {uuid: uuid}}}
	cs := dm.wire(New(WithExec(newFakeCS(t).exec)))
	cs.dmRemove = func(string) error { return unix.EBUSY }
	if err := cs.Close(context.Background(), "cryptvol-v1"); !errors.Is(err, ErrBusy) || len(dm.devs) != 1 {
		t.Errorf("busy: %v, left %v; want ErrBusy and the device kept", err, dm.devs)
	}
	// An ioctl that answers 0 and removes nothing is no close.
	cs.dmRemove = func(string) error { return nil }
	if err := cs.Close(context.Background(), "cryptvol-v1"); err == nil || !strings.Contains(err.Error(), "still has the device") {
		t.Errorf("remove that removed nothing: %v", err)
	}
}
