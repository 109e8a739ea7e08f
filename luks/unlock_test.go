package luks

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The hand-written PBKDF2 (it takes the password as bytes, to be zeroed)
// gives what the standard library's does, for key lengths below, at and
// past one hash block.
func TestPBKDF2MatchesStandardLibrary(t *testing.T) {
	for _, n := range []int{16, 32, 64, 100} {
		for _, iter := range []int{1, 2, 1000} {
			pw, salt := []byte("pass\x00word"), []byte("salt of some length")
			want, err := pbkdf2.Key(sha256.New, string(pw), salt, iter, n)
			if err != nil {
				t.Fatal(err)
			}
			if got := pbkdf2SHA256(pw, salt, iter, n); !bytes.Equal(got, want) {
				t.Errorf("keyLen %d, %d iterations: %x, want %x", n, iter, got, want)
			}
		}
	}
}

// formatted is an image file with a LUKS2 header as Format writes it and
// the volume key cryptsetup itself reports for it.
func formatted(t *testing.T, key []byte) (img string, vk []byte) {
	t.Helper()
	hostCryptsetup(t)
	img = imageFile(t, 32<<20)
	if err := New().Format(context.Background(), img, key, Token{KeyID: "k1", Volume: "v1"}); err != nil {
		t.Fatal(err)
	}
	return img, dumpedVolumeKey(t, img, key)
}

func dumpedVolumeKey(t *testing.T, img string, key []byte) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "vk")
	cmd := exec.Command("cryptsetup", "luksDump", "--dump-volume-key", "--volume-key-file", out, "--batch-mode", "--key-file", "-", img)
	cmd.Stdin = bytes.NewReader(key)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("luksDump --dump-volume-key: %v: %s", err, b)
	}
	vk, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return vk
}

func plainOf(t *testing.T, img string) (*plainHeader, *os.File) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	js, uuid, hdrSize, err := readHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parsePlain(js, uuid, hdrSize)
	if err != nil {
		t.Fatal(err)
	}
	return p, f
}

// Open's own unlock finds the volume key cryptsetup finds, in whichever
// keyslot the passphrase opens (a rotation leaves two), and no key for a
// passphrase no keyslot takes.
func TestHostUnlockFindsCryptsetupsVolumeKey(t *testing.T) {
	key := randomKey(t)
	img, want := formatted(t, key)
	p, f := plainOf(t, img)
	if got, err := p.unlock(f, key); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("unlock: %v; key matches cryptsetup's: %v", err, bytes.Equal(got, want))
	}
	wrong := bytes.Clone(key)
	wrong[5] ^= 1
	if got, err := p.unlock(f, wrong); !errors.Is(err, errNoKeyslot) || got != nil {
		t.Fatalf("unlock with a wrong passphrase: %v, %d bytes", err, len(got))
	}
	if _, err := p.unlock(f, key[:KeySize-1]); !errors.Is(err, errNoKeyslot) {
		t.Fatalf("unlock with a cut passphrase: %v", err)
	}

	ctx := context.Background()
	next := randomKey(t)
	if err := New().AddKey(ctx, img, key, next, 3); err != nil {
		t.Fatal(err)
	}
	p, f = plainOf(t, img)
	if len(p.slots) != 2 || p.slots[0].id != "0" || p.slots[1].id != "3" {
		t.Fatalf("keyslots %+v, want 0 then 3", p.slots)
	}
	for _, k := range [][]byte{key, next} {
		if got, err := p.unlock(f, k); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("unlock after AddKey: %v", err)
		}
	}
	if err := New().KillSlot(ctx, img, 0); err != nil {
		t.Fatal(err)
	}
	p, f = plainOf(t, img)
	if _, err := p.unlock(f, key); !errors.Is(err, errNoKeyslot) {
		t.Fatalf("the killed keyslot's passphrase: %v", err)
	}
	if got, err := p.unlock(f, next); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("unlock after KillSlot: %v", err)
	}
}

// The table is cryptsetup 2.6's for this header: the key by its keyring
// name, the data offset in 512-byte sectors, the optional arguments in
// cryptsetup's order, and a length of whole encryption sectors.
func TestHostActivationTable(t *testing.T) {
	img, _ := formatted(t, randomKey(t))
	p, _ := plainOf(t, img)
	dashless := strings.ReplaceAll(p.uuid, "-", "")
	for _, c := range []struct {
		opts OpenOptions
		tail string
	}{
		{OpenOptions{}, " 1 sector_size:4096"},
		{OpenOptions{NoWorkqueue: true}, " 3 no_read_workqueue no_write_workqueue sector_size:4096"},
		{OpenOptions{NoWorkqueue: true, AllowDiscards: true, ReadOnly: true}, " 4 allow_discards no_read_workqueue no_write_workqueue sector_size:4096"},
	} {
		// 512 bytes past the last whole 4096-byte sector are left out.
		a, err := p.activation("cryptvol-v1", 64<<20+4096+512, 253, 7, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		want := "aes-xts-plain64 :64:logon:cryptsetup:" + p.uuid + "-d0 0 253:7 8192" + c.tail
		if string(a.params) != want {
			t.Errorf("params %q, want %q", a.params, want)
		}
		if a.length != (60<<20+4096)/512 || a.uuid != "CRYPT-LUKS2-"+dashless+"-cryptvol-v1" || a.readOnly != c.opts.ReadOnly {
			t.Errorf("activation %+v", a)
		}
	}
	if _, err := p.activation("v", 4<<20, 253, 7, OpenOptions{}); err == nil {
		t.Error("a device that ends where the data starts was accepted")
	}
}
