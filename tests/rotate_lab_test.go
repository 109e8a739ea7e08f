//go:build lab

package tests

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/plugin"
	"github.com/cryptvol/cryptvol/volume"
)

// rotate asks the plugin process to rotate v's key.
func (p *plug) rotate(v string) error {
	return p.call(plugin.RotatePath, plugin.VolumeRequest{Name: v}, nil)
}

// luksMetadata is the volume's LUKS2 JSON metadata as cryptsetup itself
// reads it (the LV activated for it if needed, and put back).
func luksMetadata(t *testing.T, v string) []byte {
	t.Helper()
	lv := os.Getenv("CRYPTVOL_LAB_VG") + "/cv-" + v
	if _, active := lvState(t, v); !active {
		if _, err := run(t, "lvchange", "-ay", lv); err != nil {
			t.Fatal(err)
		}
		defer run(t, "lvchange", "-an", lv)
	}
	out, err := run(t, "cryptsetup", "luksDump", "--dump-json-metadata", "/dev/"+lv)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(out)
}

// headerOf reads the volume's LUKS2 keyslot count and token key id.
func headerOf(t *testing.T, v string) (slots int, tokenKey string) {
	t.Helper()
	out := luksMetadata(t, v)
	var d struct {
		Keyslots map[string]any
		Tokens   map[string]struct {
			Type   string
			KMIPID string `json:"kmip_id"`
		}
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	for _, tk := range d.Tokens {
		if tk.Type == "cryptvol-kmip" {
			tokenKey = tk.KMIPID
		}
	}
	return len(d.Keyslots), tokenKey
}

// keysNamedFor counts the KMIP keys whose name is one of volume v's
// (cryptvol/VG_UUID/v/NONCE): after a rotation, exactly one.
func keysNamedFor(t *testing.T, v string) int {
	t.Helper()
	names, err := labKeys(t).Names(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ns := range names {
		for _, name := range ns {
			if strings.Contains(name, "/"+v+"/") {
				n++
			}
		}
	}
	return n
}

// assertRotated: one keyslot, opened by the one KMIP key the token names;
// the tag names it too; the data is there.
func assertRotated(t *testing.T, p *plug, v string) {
	t.Helper()
	slots, key := headerOf(t, v)
	if slots != 1 {
		t.Errorf("%s: %d keyslots after rotation, want 1", v, slots)
	}
	if n := keysNamedFor(t, v); n != 1 {
		t.Errorf("%s: %d KMIP keys carry its name, want exactly 1", v, n)
	}
	got, err := p.get(v)
	p.must("get", err)
	if got.Status[volume.StatusKeyID] != key {
		t.Errorf("%s: inspect shows key %v, the token %s", v, got.Status[volume.StatusKeyID], key)
	}
	mp, err := p.mount(v, "check")
	p.must("mount after rotation", err)
	readBack(t, p, mp)
	p.must("unmount", p.unmount(v, "check"))
}

// Key rotation through the real plugin process against LVM, cryptsetup and
// PyKMIP: unmounted (the LV is left inactive) and mounted under a writer
// (the writes go on); each time the old key is gone from KMIP, one keyslot
// remains, and the volume mounts with the new key.
func TestLabRotateKey(t *testing.T) {
	p := newPlug(t)
	p.start("")
	v := "rot1"
	p.must("create", p.create(v, nil))
	t.Cleanup(func() { _ = p.remove(v) })
	writeFile(t, p, v, "w")
	_, old := headerOf(t, v)

	p.must("rotate unmounted", p.rotate(v))
	assertDown(t, p, v)
	assertRotated(t, p, v)
	if k, err := labKeys(t).Get(context.Background(), old); err == nil {
		k.Wipe()
		t.Errorf("the old key %s is still served by KMIP", old)
	} else if !errors.Is(err, keys.ErrNotFound) && !errors.Is(err, keys.ErrNotActive) {
		t.Errorf("old key %s: %v", old, err)
	}

	mp, err := p.mount(v, "writer")
	p.must("mount", err)
	stop := startWriter(mp)
	_, before := headerOf(t, v)
	rerr := p.rotate(v)
	if err := stop(); err != nil {
		t.Errorf("the writer saw an I/O error during the rotation: %v", err)
	}
	p.must("rotate mounted", rerr)
	if !mappingOpen(t, v) || !mountedAt(t, filepath.Dir(mp)) {
		t.Error("the rotation took a mounted volume down")
	}
	if _, after := headerOf(t, v); after == before {
		t.Error("the token still names the old key")
	}
	p.must("unmount", p.unmount(v, "writer"))
	assertDown(t, p, v)
	assertRotated(t, p, v)
}

// Scheduled key rotation (CRYPTVOL_ROTATE_AFTER) in the real plugin: a
// volume whose key time tag says 2001 is rotated at start, the one made now
// is not, and the rotated one gets a fresh key time.
func TestLabScheduledRotation(t *testing.T) {
	p := newPlug(t, "CRYPTVOL_ROTATE_AFTER=24h")
	p.start("")
	t.Cleanup(p.stop)
	for _, v := range []string{"sched-old", "sched-new"} {
		p.must("create", p.create(v, nil))
		t.Cleanup(func() { _ = p.remove(v) })
	}
	writeFile(t, p, "sched-old", "w")
	_, oldKey := headerOf(t, "sched-old")
	_, newKey := headerOf(t, "sched-new")
	lv := os.Getenv("CRYPTVOL_LAB_VG") + "/cv-sched-old"
	if _, err := run(t, "lvchange", "--addtag", "cryptvol_keytime_1000000000", lv); err != nil {
		t.Fatal(err)
	}
	p.stop()
	p.start("") // the schedule checks at start
	// Polled in the plugin's audit trail, whose volume.rotate record is
	// written once the rotation is over, the LV put back as it was: a poll
	// that activated and deactivated the LV itself (headerOf) pulled the
	// device from under the rotation, and one of inspect's key id saw the
	// tag change before the rotation's last steps, racing them.
	trail := filepath.Join(p.dir, "state", "audit.log")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if b, err := os.ReadFile(trail); err == nil &&
			strings.Contains(string(b), `"op":"volume.rotate","volume":"sched-old","key_id":`) &&
			strings.Contains(string(b), `"detail":"replaces key `+oldKey+`","result":"ok"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 2001 key was not rotated within 3 minutes; log:\n%s", p.logTail())
		}
		time.Sleep(2 * time.Second)
	}
	assertRotated(t, p, "sched-old")
	if _, k := headerOf(t, "sched-new"); k != newKey {
		t.Error("a key made minutes ago was rotated")
	}
	out, err := run(t, "lvs", "--noheadings", "-o", "lv_tags", lv)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "cryptvol_keytime_1000000000") || !strings.Contains(out, "cryptvol_keytime_") {
		t.Errorf("tags after the scheduled rotation: %s; want one fresh key time", out)
	}
}

// startWriter writes lines into mp/log, syncing every 16, until the
// returned stop is called; stop returns the first write or sync error.
func startWriter(mp string) (stop func() error) {
	quit, werr := make(chan struct{}), make(chan error, 1)
	go func() {
		f, err := os.Create(filepath.Join(mp, "log"))
		if err != nil {
			werr <- err
			return
		}
		defer f.Close()
		for i := 0; ; i++ {
			select {
			case <-quit:
				werr <- f.Sync()
				return
			default:
			}
			if _, err := f.WriteString("line\n"); err != nil {
				werr <- err
				return
			}
			if i%16 == 0 {
				if err := f.Sync(); err != nil {
					werr <- err
					return
				}
			}
		}
	}()
	return func() error { close(quit); return <-werr }
}
