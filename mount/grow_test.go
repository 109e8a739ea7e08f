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
