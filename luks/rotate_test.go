package luks

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/internal/command"
)

// A rotation's header steps against the real cryptsetup on an image: a
// keyslot added for a new passphrase (both passphrases on stdin), the token
// pointed at it, the old keyslot killed: the new key alone opens the
// header, which Check accepts under the new key id.
func TestHostRotationSteps(t *testing.T) {
	hostCryptsetup(t)
	ctx := context.Background()
	cs := New()
	dev := imageFile(t, 32<<20)
	oldKey, newKey := randomKey(t), randomKey(t)
	if err := cs.Format(ctx, dev, oldKey, Token{KeyID: "1", Volume: "v"}); err != nil {
		t.Fatal(err)
	}
	h, err := cs.Inspect(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := h.FreeSlot()
	if err != nil || slot != 1 || !slices.Equal(h.SlotIDs, []int{0}) {
		t.Fatalf("fresh header: slots %v, free %d (%v); want [0] and 1", h.SlotIDs, slot, err)
	}
	if err := cs.AddKey(ctx, dev, newKey, newKey, slot); err == nil {
		t.Fatal("a keyslot was added with a passphrase that opens none")
	}
	if err := cs.AddKey(ctx, dev, oldKey, newKey, slot); err != nil {
		t.Fatal(err)
	}
	for _, k := range [][]byte{oldKey, newKey} {
		if err := testPassphrase(t, dev, k); err != nil {
			t.Fatalf("after AddKey a passphrase no longer opens the header: %v", err)
		}
	}
	if err := testPassphrase(t, dev, append(newKey[:16:16], oldKey[16:]...)); err == nil {
		t.Fatal("a mix of the two keys opens the header: the passphrases were not read as two 32-byte keys")
	}
	if err := cs.SetToken(ctx, dev, h.TokenID, Token{KeyID: "2", Volume: "v"}, slot); err != nil {
		t.Fatal(err)
	}
	if err := cs.KillSlot(ctx, dev, 0); err != nil {
		t.Fatal(err)
	}
	h, err = cs.Inspect(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := h.Check("v", "2"); err != nil || id != "2" || !slices.Equal(h.SlotIDs, []int{1}) {
		t.Fatalf("after rotation: key id %q (%v), slots %v; want 2 and [1]", id, err, h.SlotIDs)
	}
	if err := testPassphrase(t, dev, oldKey); err == nil {
		t.Fatal("the old key still opens the header")
	}
	if err := testPassphrase(t, dev, newKey); err != nil {
		t.Fatalf("the new key does not open the header: %v", err)
	}
}

// AddKey hands cryptsetup both keys on stdin, old then new, from a buffer
// it zeroes; neither is in argv.
func TestAddKeyPassesBothKeysOnStdinOnly(t *testing.T) {
	f := newFakeCS(t)
	f.on("cryptsetup luksAddKey --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --hash sha256 --batch-mode --key-file - --keyfile-size 32 --new-keyfile - --new-keyfile-size 32 --new-key-slot 3 /dev/vg/cv-a", csAnswer{})
	cs := New(WithExec(f.exec))
	newKey := bytes.Repeat([]byte{7}, 32)
	err := cs.AddKey(context.Background(), "/dev/vg/cv-a", testKey, newKey, 3)
	if err != nil {
		t.Fatal(err)
	}
	assertNoKey(t, f, testKey, err)
	assertNoKey(t, f, newKey, err)
	if c := f.calls[0]; !bytes.Equal(c.stdin, append(bytes.Clone(testKey), newKey...)) {
		t.Errorf("stdin = %q, want the old key then the new one", c.stdin)
	} else if !bytes.Equal(c.passed, make([]byte, 64)) {
		t.Error("the buffer holding both keys was not zeroed")
	}
	if err := cs.AddKey(context.Background(), "/dev/vg/cv-a", testKey[:16], newKey, 3); err == nil || len(f.calls) != 1 {
		t.Errorf("a 16-byte key: %v, %d calls", err, len(f.calls))
	}
	if err := cs.AddKey(context.Background(), "/dev/vg/cv-a", testKey, newKey, 32); err == nil || len(f.calls) != 1 {
		t.Errorf("keyslot 32: %v", err)
	}
}

// Reencryption against the real cryptsetup on an image (offline): begun and
// interrupted (--init-only stands for a crash before the first block), the
// header says so and still accepts the key; resumed, it finishes with one
// keyslot, the token moved with it, and a new volume key (the digest
// changes).
func TestHostReencryptResumes(t *testing.T) {
	hostCryptsetup(t)
	ctx := context.Background()
	cs := New()
	dev := imageFile(t, 40<<20)
	key := randomKey(t)
	if err := cs.Format(ctx, dev, key, Token{KeyID: "1", Volume: "v"}); err != nil {
		t.Fatal(err)
	}
	digest := func() string {
		out, err := command.Run(ctx, command.ProgramAndAction, nil, "cryptsetup", "luksDump", "--dump-json-metadata", dev)
		if err != nil {
			t.Fatal(err)
		}
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
	before := digest()
	if _, err := command.Run(ctx, command.ProgramAndAction, key, "cryptsetup", append(slices.Clone(reencryptArgs), "--init-only", dev)...); err != nil {
		t.Fatal(err)
	}
	h, err := cs.Inspect(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Reencrypting {
		t.Fatal("an interrupted reencryption is not seen in the header")
	}
	if _, err := h.Check("v", "1"); err != nil {
		t.Fatalf("Check refuses a header whose reencryption was interrupted: %v", err)
	}
	if err := cs.Reencrypt(ctx, dev, key, ReencryptOptions{Resume: true, ForceOffline: true}); err != nil {
		t.Fatal(err)
	}
	h, err = cs.Inspect(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	if h.Reencrypting || h.Keyslots != 1 || h.Token == nil || h.Token.KeyID != "1" {
		t.Fatalf("after resume: %+v", h)
	}
	if err := testPassphrase(t, dev, key); err != nil {
		t.Fatalf("the key no longer opens the header: %v", err)
	}
	if digest() == before {
		t.Error("the volume key digest did not change: the data was not reencrypted under a new key")
	}
}

// Reencrypt passes the key on stdin only, and resumes with --resume-only.
func TestReencryptArgv(t *testing.T) {
	f := newFakeCS(t)
	base := "cryptsetup reencrypt --batch-mode --key-file - --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --hash sha256"
	f.on(base+" /dev/vg/cv-a", csAnswer{})
	f.on(base+" --resume-only /dev/vg/cv-a", csAnswer{})
	cs := New(WithExec(f.exec))
	for _, resume := range []bool{false, true} {
		err := cs.Reencrypt(context.Background(), "/dev/vg/cv-a", testKey, ReencryptOptions{Resume: resume})
		if err != nil {
			t.Fatal(err)
		}
		assertNoKey(t, f, testKey, err)
	}
	if !bytes.Equal(f.calls[0].stdin, testKey) || !bytes.Equal(f.calls[0].passed, make([]byte, 32)) {
		t.Error("the key was not passed on stdin from a buffer zeroed afterwards")
	}
}
