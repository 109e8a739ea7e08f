//go:build lab

package tests

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/cryptvol/cryptvol/plugin"
)

func (p *plug) reencrypt(v string) (r plugin.ReencryptResponse, err error) {
	err = p.call(plugin.ReencryptPath, plugin.VolumeRequest{Name: v}, &r)
	return r, err
}

// volumeKeyDigest is the LUKS2 digest of the volume key (not the key): a
// new volume key has a new digest. The LV is activated for it if needed.
func volumeKeyDigest(t *testing.T, v string) string {
	t.Helper()
	out := luksMetadata(t, v)
	var d struct {
		Digests map[string]struct{ Digest string }
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, x := range d.Digests {
		s = append(s, x.Digest)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// `cryptvol reencrypt` through the real plugin against dm-crypt: offline
// (closed volume), online under a writer (no I/O error, the volume stays
// mounted), and resumed after an interruption (cryptsetup's own
// --init-only leaves the header as a crash before the first block would;
// the volume still mounts meanwhile). Each time: a new volume key (its
// digest changes), one keyslot, the same KMIP key, the data intact.
func TestLabReencrypt(t *testing.T) {
	p := newPlug(t)
	p.start("")
	v := "reenc1"
	p.must("create", p.create(v, nil))
	t.Cleanup(func() { _ = p.remove(v) })
	writeFile(t, p, v, "w")
	_, key := headerOf(t, v)

	d0 := volumeKeyDigest(t, v)
	r, err := p.reencrypt(v)
	p.must("reencrypt offline", err)
	if r.Result.Online || r.Result.Resumed {
		t.Errorf("offline reencryption reported %+v", r.Result)
	}
	d1 := volumeKeyDigest(t, v)
	if d1 == d0 {
		t.Error("offline reencryption left the volume key as it was")
	}
	assertDown(t, p, v)
	assertRotated(t, p, v) // one keyslot, one KMIP key, data readable

	mp, err := p.mount(v, "writer")
	p.must("mount", err)
	stop := startWriter(mp)
	r, rerr := p.reencrypt(v)
	if err := stop(); err != nil {
		t.Errorf("the writer saw an I/O error during the online reencryption: %v", err)
	}
	p.must("reencrypt online", rerr)
	if !r.Result.Online || !mappingOpen(t, v) || !mountedAt(t, filepath.Dir(mp)) {
		t.Errorf("online reencryption: %+v; the volume must stay mounted", r.Result)
	}
	p.must("unmount", p.unmount(v, "writer"))
	if volumeKeyDigest(t, v) == d1 {
		t.Error("online reencryption left the volume key as it was")
	}
	assertRotated(t, p, v)

	// An interrupted reencryption: begun by cryptsetup itself with the
	// volume's key, as a crash right after the start would leave it.
	k, err := labKeys(t).Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	lv := "/dev/" + os.Getenv("CRYPTVOL_LAB_VG") + "/cv-" + v
	run(t, "lvchange", "-ay", lv)
	_, ierr := command.Run(context.Background(), command.ProgramAndAction, k.Bytes(), "cryptsetup", "reencrypt", "--init-only",
		"--batch-mode", "--key-file", "-", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", lv)
	k.Wipe()
	run(t, "lvchange", "-an", lv)
	if ierr != nil {
		t.Fatal(ierr)
	}
	mp, err = p.mount(v, "during")
	p.must("mount while a reencryption is unfinished", err)
	readBack(t, p, mp)
	p.must("unmount", p.unmount(v, "during"))
	r, err = p.reencrypt(v)
	p.must("reencrypt resumed", err)
	if !r.Result.Resumed {
		t.Errorf("the interrupted reencryption was not resumed: %+v", r.Result)
	}
	assertDown(t, p, v)
	assertRotated(t, p, v)
}
