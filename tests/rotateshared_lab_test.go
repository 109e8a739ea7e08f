//go:build lab

package tests

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/volume"
)

// killedAtAddKey is cryptsetup for a plugin that dies as it is about to
// add a rotation's keyslot: the panic stands for the SIGKILL, after the
// rotation was journaled and its key made.
type killedAtAddKey struct{ *luks.Cryptsetup }

func (killedAtAddKey) AddKey(context.Context, string, []byte, []byte, int) error {
	panic("killed before luksAddKey")
}

// Two hosts rotate one volume (two managers on the lab's group, each with
// its own state, as the hosts of a shared group have): node B's rotation dies before adding its
// keyslot; node A's rotation then takes the same keyslot number. When B
// comes back and settles its journal, it proves its key opens that keyslot
// before finishing, finds it does not, and undoes its rotation: the volume
// keeps A's key, mounts on B with its data, and B's key is destroyed.
func TestLabRotationSettledByAnotherHostKeepsTheKeyThatOpens(t *testing.T) {
	a, b := newStack(t), newStack(t)
	a.create("rs", nil)
	p := a.mount("rs", "a")
	must(t, os.WriteFile(filepath.Join(p, "f"), []byte("before the rotations"), 0o644))
	a.unmount("rs", "a")

	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	dying, err := volume.New(b.cfg, b.lvm, killedAtAddKey{b.crypt}, b.fs, b.keys, log)
	must(t, err)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("node B's rotation did not reach luksAddKey")
			}
		}()
		_, _ = dying.Rotate(ctx(t), "rs")
	}()
	if _, err := a.mgr.Rotate(ctx(t), "rs"); err != nil {
		t.Fatalf("node A's rotation: %v", err)
	}
	slots, tokenKey := headerOf(t, "rs")
	if slots != 1 {
		t.Fatalf("after node A's rotation: %d keyslots", slots)
	}

	b.restart() // settles B's journal
	p, err = b.mgr.Mount(ctx(t), "rs", "b")
	if err != nil {
		t.Fatalf("node B, settling its stopped rotation, left a volume it cannot mount: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(p, "f")); string(got) != "before the rotations" {
		t.Errorf("the volume holds %q", got)
	}
	b.unmount("rs", "b")
	if _, now := headerOf(t, "rs"); now != tokenKey {
		t.Errorf("the token names %s, want node A's key %s", now, tokenKey)
	}
	if n := keysNamedFor(t, "rs"); n != 1 {
		t.Errorf("%d KMIP keys are named for the volume, want node A's alone", n)
	}
}
