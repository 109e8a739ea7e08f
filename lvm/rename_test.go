package lvm

import (
	"context"
	"errors"
	"testing"
)

// Rename runs one lvrename naming the group, the old and the new name; a
// taken name is ErrExists; an invalid name runs nothing.
func TestRename(t *testing.T) {
	f := newFake(t)
	f.on("lvm lvrename cvhost cv-a cv-a+1765000000000", answer{})
	c := f.client(t)
	if err := c.Rename(context.Background(), "cv-a", "cv-a+1765000000000"); err != nil {
		t.Fatal(err)
	}
	f.on("lvm lvrename cvhost cv-a+1 cv-a", answer{code: 5, stderr: "  Logical Volume \"cv-a\" already exists in volume group \"cvhost\"\n"})
	if err := c.Rename(context.Background(), "cv-a+1", "cv-a"); !errors.Is(err, ErrExists) {
		t.Errorf("rename onto a taken name: %v, want ErrExists", err)
	}
	if err := c.Rename(context.Background(), "cv-a", "cv a"); err == nil || len(f.calls) != 2 {
		t.Errorf("rename to an invalid name: %v after %d programs, want an error and none run", err, len(f.calls)-2)
	}
}
