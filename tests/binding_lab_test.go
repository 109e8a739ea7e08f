//go:build lab

package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/luks"
)

// The storage names the key a volume is opened with (its LUKS token and
// LV tag), and whoever can write the storage can rewrite both: volume X's
// header, data and key tag copied onto volume Y, with the token edited to
// name Y (token import needs no passphrase), would open X's data as Y. The
// KMIP key's name binds it to its volume: Mount of Y refuses X's key,
// naming Y, the key and the name it found, and opens no mapping.
func TestLabSwappedVolumeIsRefused(t *testing.T) {
	s := newStack(t)
	x, y := "lab-bind-x", "lab-bind-y"
	s.create(x, map[string]string{"size": "64M"})
	s.create(y, map[string]string{"size": "64M"})
	xv, err := s.mgr.Get(ctx(t), x)
	must(t, err)
	yv, err := s.mgr.Get(ctx(t), y)
	must(t, err)
	xKey, yKey := keyID(t, xv), keyID(t, yv)
	// After the copy nothing names Y's own key: the removes at the end
	// cannot find it.
	t.Cleanup(func() {
		if err := s.keys.Destroy(context.Background(), yKey); err != nil {
			t.Errorf("cleanup: destroy %s's key %s: %v", y, yKey, err)
		}
	})
	names, err := s.keys.Names(ctx(t))
	must(t, err)
	if len(names[xKey]) != 1 {
		t.Fatalf("%s's key %s has the names %q, want one", x, xKey, names[xKey])
	}
	xName := names[xKey][0]

	p := s.mount(x, "a")
	write(t, filepath.Join(p, "owner"), x)
	s.unmount(x, "a")

	for _, v := range []string{x, y} {
		must(t, s.lvm.Activate(ctx(t), "cv-"+v))
	}
	xDev, yDev := s.lv(x).Path, s.lv(y).Path
	mustRun(t, "dd", "if="+xDev, "of="+yDev, "bs=1M", "oflag=direct", "conv=fsync", "status=none")
	h, err := s.crypt.Inspect(ctx(t), yDev)
	must(t, err)
	if h.Token == nil || h.Token.KeyID != xKey || len(h.SlotIDs) != 1 {
		t.Fatalf("%s's copied header: token %+v, keyslots %v; want %s's key in one keyslot", y, h.Token, h.SlotIDs, x)
	}
	must(t, s.crypt.SetToken(ctx(t), yDev, h.TokenID, luks.Token{KeyID: xKey, Volume: y}, h.SlotIDs[0]))
	mustRun(t, "lvchange", "--deltag", "cryptvol_key_"+yKey, "--addtag", "cryptvol_key_"+xKey, os.Getenv("CRYPTVOL_LAB_VG")+"/cv-"+y)

	yp, err := s.mgr.Mount(ctx(t), y, "a")
	if err == nil {
		got, rerr := os.ReadFile(filepath.Join(yp, "owner"))
		t.Fatalf("Mount of %s with %s's header, data and key tag succeeded; its file owner holds %q (%v)", y, x, got, rerr)
	}
	for _, want := range []string{`"` + y + `"`, xKey, xName} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Mount of %s: %v; want an error naming %s", y, err, want)
		}
	}
	if s.open(y) || s.open(x) {
		t.Errorf("a dm-crypt mapping is open after the refused Mount (%s: %v, %s: %v)", y, s.open(y), x, s.open(x))
	}
}
