package luks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"github.com/cryptvol/cryptvol/internal/command"
)

// headerArea covers the LUKS2 metadata plus keyslot area of every volume
// cryptvol has formatted: 16 MiB, cryptsetup's default, before keyslotsArea
// (the data segment then started at 16 MiB), 4 MiB since. Zeroing it leaves
// no header copy and no keyslot behind.
const headerArea = 16 << 20

// keyslotsArea is the LUKS2 keyslots area luksFormat lays out: with the two
// 16 KiB metadata copies, the data segment starts at 4 MiB instead of
// cryptsetup's default 16 MiB. luksFormat zeroes the whole header area and
// fills the keyslots area with random bytes, so the default costs every
// create 32 MiB of writes, 16 MiB of them random, and 16 MiB of thin pool
// per thin volume. 4 MiB still holds what the key lifecycle needs at once:
// a keyslot of a 512-bit volume key is 256 KiB (4000 anti-forensic
// stripes), a rotation holds two, and an online `cryptsetup reencrypt` adds
// keyslots for the new volume key and sizes its resilience data to the
// space left (cryptsetup-reencrypt(8), --hotzone-size).
const keyslotsArea = "4064k"

// formatArgs are the fixed luksFormat parameters. pbkdf2 at cryptsetup's
// minimum of 1000 iterations is deliberate: the passphrase is 32 random
// bytes from KMIP, so there is nothing for a slow KDF to strengthen and it
// would only add seconds to every create and mount.
var formatArgs = []string{
	"luksFormat", "--type", "luks2",
	"--cipher", Cipher, "--key-size", strconv.Itoa(KeyBits), "--sector-size", "4096",
	"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha256",
	"--luks2-keyslots-size", keyslotsArea,
	"--batch-mode", "--key-file", "-",
}

// tokenJSON is the on-disk form of Token inside the LUKS2 header.
type tokenJSON struct {
	Type     string   `json:"type"`
	Keyslots []string `json:"keyslots"`
	KMIPID   string   `json:"kmip_id"`
	Volume   string   `json:"volume"`
}

// Integrity protections Format offers (cryptsetup-luksFormat(8),
// --integrity): an HMAC-SHA-256 per 4 KiB sector kept by dm-integrity, so
// that a changed byte on the device reads back as an I/O error instead of
// garbage. Its key is part of the volume key: 512 bits for AES-XTS and 256
// for the HMAC. --key-size stays the cipher's: cryptsetup adds the HMAC's
// itself (a --key-size of 768 reached the kernel as a 768-bit XTS key,
// "Key size in XTS mode must be 256 or 512 bits", in the lab), and the
// keyslot then records the 768 bits of both.
const (
	IntegrityHMACSHA256 = "hmac-sha256"
	integrityKeyBits    = 256
)

// FormatOptions are Format's choices beyond the fixed parameters.
type FormatOptions struct {
	// Integrity is "" or IntegrityHMACSHA256. luksFormat then writes every
	// sector once, to give it a valid tag: a format costs a full write of
	// the device (make bench measures it).
	Integrity string
}

// Format writes a LUKS2 header protected by key (the passphrase, on stdin)
// and cryptvol's token. It refuses a device that already has a LUKS header
// of any version: formatting would destroy the only way to its data.
func (c *Cryptsetup) Format(ctx context.Context, dev string, key []byte, token Token, opts ...FormatOptions) error {
	var o FormatOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Integrity != "" && o.Integrity != IntegrityHMACSHA256 {
		return fmt.Errorf("format %s: integrity %q is not supported (allowed: %s)", dev, o.Integrity, IntegrityHMACSHA256)
	}
	if err := validateDevice(dev); err != nil {
		return err
	}
	if err := validateKey(key); err != nil {
		return fmt.Errorf("format %s: %w", dev, err)
	}
	if err := validateToken(token); err != nil {
		return fmt.Errorf("format %s: %w", dev, err)
	}
	// A fresh format puts the passphrase in keyslot 0, which the token names.
	tj, err := json.Marshal(tokenJSON{Type: TokenType, Keyslots: []string{"0"}, KMIPID: token.KeyID, Volume: token.Volume})
	if err != nil {
		return fmt.Errorf("format %s: encode token: %w", dev, err)
	}

	has := false
	if !noMagic(dev) {
		has, err = c.isLuks(ctx, dev, "")
	}
	if err != nil {
		return fmt.Errorf("format %s: check for an existing header: %w", dev, err)
	}
	if has {
		return fmt.Errorf("format %s: %w", dev, ErrHasHeader)
	}
	args := slices.Clone(formatArgs)
	if o.Integrity != "" {
		args = append(args, "--integrity", o.Integrity)
	}
	if _, err := c.runWithKey(ctx, key, append(args, dev)...); err != nil {
		return fmt.Errorf("format %s: %w", dev, err)
	}
	if _, err := c.run(ctx, tj, "token", "import", "--json-file", "-", dev); err != nil {
		// Without the token the volume would not say which key opens it;
		// leave no half-made header that a retry would refuse to replace.
		// The cleanup must run even when ctx is what made the import fail.
		cctx, cancel := command.CleanupContext(ctx)
		defer cancel()
		if derr := c.destroyHeader(cctx, dev); derr != nil {
			return fmt.Errorf("format %s: import token: %w; removing the new header also failed: %w", dev, err, derr)
		}
		return fmt.Errorf("format %s: import token (the new header was removed): %w", dev, err)
	}
	return nil
}

// destroyHeader erases the header (Erase: wiped whole when intact, else its
// keyslots dropped by cryptsetup), so the volume key is gone even if
// zeroing fails, then zeroes cryptvol's header area whatever the header
// says, so that the device no longer looks like LUKS.
func (c *Cryptsetup) destroyHeader(ctx context.Context, dev string) error {
	eraseErr := c.Erase(ctx, dev)
	if errors.Is(eraseErr, ErrNotLUKS) {
		eraseErr = nil
	}
	return errors.Join(eraseErr, zeroHeader(dev))
}

func zeroHeader(dev string) (err error) {
	// No O_CREATE: a missing device must not become a new regular file.
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("zero LUKS header: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("zero LUKS header of %s: %w", dev, cerr)
		}
	}()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("zero LUKS header of %s: %w", dev, err)
	}
	if err := zeroRange(f, 0, min(size, headerArea)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("zero LUKS header of %s: %w", dev, err)
	}
	return nil
}
