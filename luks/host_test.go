package luks

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cryptvol/cryptvol/internal/command"
)

// These tests run the real cryptsetup on image files. Formatting, dumping,
// token import and erasing need no device-mapper, so they run on any
// machine with cryptsetup where we are root.
func hostCryptsetup(t *testing.T) {
	t.Helper()
	if labBuild {
		// `make unit` runs them on the host; under the lab's emulation
		// they would only cost the main part minutes.
		t.Skip("a host test: make unit runs it")
	}
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("cryptsetup not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func imageFile(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dev.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func randomKey(t testing.TB) []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	// Make sure bytes that text handling would mangle are present.
	k[0], k[1] = 0, '\n'
	// PBKDF2's HMAC pads a short passphrase with zero bytes, so a key ending
	// in 0 unlocks with its last byte cut off too (RFC 2104, section 2:
	// keys shorter than the block are zero-padded), and the check below
	// that a truncated key is refused would fail by chance. A nonzero last
	// byte keeps it meaningful.
	k[KeySize-1] |= 1
	return k
}

// testPassphrase asks cryptsetup whether key unlocks a keyslot of dev.
func testPassphrase(t *testing.T, dev string, key []byte) error {
	t.Helper()
	_, err := command.Run(context.Background(), command.ProgramAndAction, key, "cryptsetup", "open", "--test-passphrase", "--key-file", "-", dev)
	return err
}

func TestHostFormatInspectErase(t *testing.T) {
	hostCryptsetup(t)
	ctx := context.Background()
	cs := New()
	dev := imageFile(t, 32<<20)
	key := randomKey(t)

	if _, err := cs.Inspect(ctx, dev); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("Inspect of a blank device: %v, want ErrNotLUKS", err)
	}
	if err := cs.Erase(ctx, dev); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("Erase of a blank device: %v, want ErrNotLUKS", err)
	}
	if err := cs.Format(ctx, dev, key, Token{KeyID: "17", Volume: "data"}); err != nil {
		t.Fatal(err)
	}
	h, err := cs.Inspect(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Version: 2, Cipher: "aes-xts-plain64", KeyBits: 512, SectorSize: 4096, Keyslots: 1, Token: &Token{KeyID: "17", Volume: "data"}}
	if h.Version != want.Version || h.Cipher != want.Cipher || h.KeyBits != want.KeyBits || h.SectorSize != want.SectorSize ||
		h.Keyslots != want.Keyslots || h.Token == nil || *h.Token != *want.Token {
		t.Fatalf("Header = %+v (token %+v), want %+v", h, h.Token, want)
	}
	if _, err := h.Check("data", "17"); err != nil {
		t.Fatal(err)
	}
	if err := testPassphrase(t, dev, key); err != nil {
		t.Fatalf("the 32 key bytes do not unlock the header: %v", err)
	}
	wrong := bytes.Clone(key)
	wrong[31] ^= 1
	if err := testPassphrase(t, dev, wrong); err == nil {
		t.Fatal("a different key unlocks the header")
	}
	if err := testPassphrase(t, dev, key[:31]); err == nil {
		t.Fatal("a truncated key unlocks the header: the passphrase is not all 32 bytes")
	}

	// Format must never replace a header, whatever the key or token.
	if err := cs.Format(ctx, dev, randomKey(t), Token{KeyID: "99", Volume: "other"}); !errors.Is(err, ErrHasHeader) {
		t.Fatalf("second Format: %v, want ErrHasHeader", err)
	}
	if h2, err := cs.Inspect(ctx, dev); err != nil || h2.Token == nil || h2.Token.KeyID != "17" {
		t.Fatalf("header changed by a refused Format: %+v, %v", h2, err)
	}
	if err := testPassphrase(t, dev, key); err != nil {
		t.Fatalf("original key no longer works after a refused Format: %v", err)
	}

	// A header luksFormat just wrote is intact: Erase wipes it whole
	// (wipe.go), and cryptsetup itself then finds no header at all.
	if err := cs.Erase(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Inspect(ctx, dev); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("Inspect after Erase: %v, want ErrNotLUKS", err)
	}
	if is, err := cs.isLuks(ctx, dev, ""); err != nil || is {
		t.Fatalf("cryptsetup isLuks after Erase = %v, %v; want no header", is, err)
	}
	if err := testPassphrase(t, dev, key); err == nil {
		t.Fatal("the key still unlocks the device after Erase")
	}
	if err := cs.Erase(ctx, dev); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("second Erase: %v, want ErrNotLUKS", err)
	}
}

func TestHostInspectLUKS1(t *testing.T) {
	hostCryptsetup(t)
	dev := imageFile(t, 8<<20)
	if _, err := command.Run(context.Background(), command.ProgramAndAction, randomKey(t), "cryptsetup", "luksFormat", "--type", "luks1",
		"--pbkdf-force-iterations", "1000", "--batch-mode", "--key-file", "-", dev); err != nil {
		t.Fatal(err)
	}
	if _, err := New().Inspect(context.Background(), dev); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("Inspect of LUKS1: %v, want ErrNotLUKS", err)
	}
	if err := New().Format(context.Background(), dev, randomKey(t), Token{KeyID: "1", Volume: "v"}); !errors.Is(err, ErrHasHeader) {
		t.Fatalf("Format over LUKS1: %v, want ErrHasHeader", err)
	}
}

func TestHostInspectMissingDevice(t *testing.T) {
	hostCryptsetup(t)
	_, err := New().Inspect(context.Background(), filepath.Join(t.TempDir(), "none"))
	var e *command.Error
	if err == nil || errors.Is(err, ErrNotLUKS) || !errors.As(err, &e) || e.ExitCode != 4 {
		t.Fatalf("Inspect of a missing device: %v, want a cryptsetup error with exit code 4", err)
	}
}

func TestHostTokenImportFailureLeavesNoHeader(t *testing.T) {
	hostCryptsetup(t)
	ctx := context.Background()
	dev := imageFile(t, 32<<20)
	failToken := func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
		if args[0] == "token" {
			return nil, &command.Error{Args: append([]string{name}, args...), ExitCode: 1, Stderr: "Failed to import token from file.\n", Naming: command.ProgramAndAction}
		}
		return command.Run(ctx, command.ProgramAndAction, stdin, name, args...)
	}
	key := randomKey(t)
	if err := New(WithExec(failToken)).Format(ctx, dev, key, Token{KeyID: "5", Volume: "v"}); err == nil {
		t.Fatal("Format succeeded although the token import failed")
	}
	if _, err := New().Inspect(ctx, dev); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("after a failed Format: %v, want no LUKS header left", err)
	}
	// A retry must be able to format the device again.
	if err := New().Format(ctx, dev, key, Token{KeyID: "5", Volume: "v"}); err != nil {
		t.Fatalf("retry after a failed Format: %v", err)
	}
}
