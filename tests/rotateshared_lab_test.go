//go:build lab

package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/internal/kmiplab"
	"github.com/cryptvol/cryptvol/luks"
)

// killedAtAddKey is cryptsetup for a plugin that dies as it is about to
// add a rotation's keyslot: the panic stands for the SIGKILL, after the
// rotation was journaled and its key made.
type killedAtAddKey struct{ *luks.Cryptsetup }

func (killedAtAddKey) AddKey(context.Context, string, []byte, []byte, int) error {
	panic("killed before luksAddKey")
}

// Two hosts rotate one volume: node B's rotation dies before adding its
// keyslot; node A's rotation then takes the same keyslot number. When B
// comes back and settles its journal, it proves its key opens that keyslot
// before finishing, finds it does not, and undoes its rotation: the volume
// keeps A's key, mounts on B with its data, and B's key is destroyed.
func TestLabRotationSettledByAnotherHostKeepsTheKeyThatOpens(t *testing.T) {
	if os.Getenv("CRYPTVOL_LAB_VG") == "" {
		t.Skip("CRYPTVOL_LAB_VG is set only inside the lab guest")
	}
	srv := kmiplab.Start(t)
	stateB := t.TempDir()
	a := newNode(t, srv, "client", "lab-node-ra")
	b := newNodeAt(t, srv, "client", "lab-node-rb", stateB, killedAtAddKey{luks.New()})
	a.create(t, "rs")
	p, err := a.mgr.Mount(ctx(t), "rs", "a")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(p, "f"), []byte("before the rotations"), 0o644))
	must(t, a.mgr.Unmount(ctx(t), "rs", "a"))

	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("node B's rotation did not reach luksAddKey")
			}
		}()
		_, _ = b.mgr.Rotate(ctx(t), "rs")
	}()
	if _, err := a.mgr.Rotate(ctx(t), "rs"); err != nil {
		t.Fatalf("node A's rotation: %v", err)
	}
	slots, tokenKey := headerOf(t, "rs")
	if slots != 1 {
		t.Fatalf("after node A's rotation: %d keyslots", slots)
	}

	b = newNodeAt(t, srv, "client", "lab-node-rb", stateB, luks.New())
	p, err = b.mgr.Mount(ctx(t), "rs", "b")
	if err != nil {
		t.Fatalf("node B, settling its stopped rotation, left a volume it cannot mount: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(p, "f")); string(got) != "before the rotations" {
		t.Errorf("the volume holds %q", got)
	}
	must(t, b.mgr.Unmount(ctx(t), "rs", "b"))
	if _, now := headerOf(t, "rs"); now != tokenKey {
		t.Errorf("the token names %s, want node A's key %s", now, tokenKey)
	}
	names, err := kmipAs(t, srv, "client").Names(ctx(t))
	must(t, err)
	n := 0
	for _, ns := range names {
		for _, name := range ns {
			if strings.Contains(name, "/rs/") {
				n++
			}
		}
	}
	if n != 1 {
		t.Errorf("%d KMIP keys are named for the volume, want node A's alone: %v", n, names)
	}
}
