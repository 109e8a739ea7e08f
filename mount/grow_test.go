package mount

import (
	"context"
	"reflect"
	"testing"
)

// Grow runs resize2fs on an ext4 device and xfs_growfs on an xfs mount
// point, and checks its input first.
func TestGrow(t *testing.T) {
	fm := newFakeMounts(t, "")
	fm.run = func([]string) error { return nil }
	f := fm.fs()
	ctx := context.Background()
	if err := f.Grow(ctx, "/dev/mapper/cryptvol-a", "/mnt/volumes/a", "ext4"); err != nil {
		t.Fatal(err)
	}
	if err := f.Grow(ctx, "/dev/mapper/cryptvol-b", "/mnt/volumes/b", "xfs"); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"resize2fs", "/dev/mapper/cryptvol-a"}, {"xfs_growfs", "/mnt/volumes/b"}}
	if !reflect.DeepEqual(fm.calls, want) {
		t.Fatalf("calls = %q, want %q", fm.calls, want)
	}
	for _, c := range [][3]string{{"/dev/x", "/mnt/x", "btrfs"}, {"dev/x", "/mnt/x", "ext4"}, {"/dev/x", "mnt", "xfs"}} {
		if err := f.Grow(ctx, c[0], c[1], c[2]); err == nil {
			t.Errorf("Grow(%q) accepted bad input", c)
		}
	}
	if len(fm.calls) != 2 {
		t.Fatalf("bad input reached a command: %q", fm.calls[2:])
	}
}

// Mkfs passes the mkfs choices, each only to its filesystem, and refuses
// one out of range or for the other filesystem before running anything.
func TestMkfsChoices(t *testing.T) {
	fm := newFakeMounts(t, "")
	fm.run = func([]string) error { return nil }
	f := fm.fs()
	ctx := context.Background()
	ext4 := DefaultMkfs
	ext4.InodeRatio, ext4.ReservedPercent = 4096, 0
	xfs := DefaultMkfs
	xfs.InodeMaxPct = 5
	if err := f.Mkfs(ctx, "/dev/mapper/cryptvol-a", "ext4", ext4); err != nil {
		t.Fatal(err)
	}
	if err := f.Mkfs(ctx, "/dev/mapper/cryptvol-b", "xfs", xfs); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"mkfs.ext4", "-q", "-F", "-E", "lazy_journal_init=1", "-i", "4096", "-m", "0", "/dev/mapper/cryptvol-a"},
		{"mkfs.xfs", "-q", "-f", "-i", "maxpct=5", "/dev/mapper/cryptvol-b"},
	}
	if !reflect.DeepEqual(fm.calls, want) {
		t.Fatalf("calls = %q, want %q", fm.calls, want)
	}
	bad := []MkfsOptions{
		{InodeRatio: 3000, ReservedPercent: -1, InodeMaxPct: -1},
		{ReservedPercent: 60, InodeMaxPct: -1},
	}
	for _, o := range bad {
		if err := f.Mkfs(ctx, "/dev/x", "ext4", o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if err := f.Mkfs(ctx, "/dev/x", "xfs", ext4); err == nil {
		t.Error("ext4 choices accepted for xfs")
	}
	if len(fm.calls) != 2 {
		t.Fatalf("refused choices reached a command: %q", fm.calls[2:])
	}
}
