package luks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/cryptvol/cryptvol/internal/command"
)

// KeySize is the passphrase length cryptvol uses: one AES-256 key from KMIP.
const KeySize = 32

// Cipher and KeyBits are the data cipher and volume key size of every
// volume cryptvol formats, and the only ones Header.Check accepts.
const (
	Cipher  = "aes-xts-plain64"
	KeyBits = 512
)

// headerArea is the LUKS2 metadata plus keyslot area cryptsetup lays out
// for our parameters (the data segment starts at 16 MiB). Zeroing it leaves
// no header copy and no keyslot behind.
const headerArea = 16 << 20

// maxMappingLen is device-mapper's DM_NAME_LEN (128) minus the NUL.
const maxMappingLen = 127

// maxTokenField bounds token strings so the token stays far below the LUKS2
// JSON area (12 KiB by default).
const maxTokenField = 1024

// formatArgs are the fixed luksFormat parameters. pbkdf2 at cryptsetup's
// minimum of 1000 iterations is deliberate: the passphrase is 32 random
// bytes from KMIP, so there is nothing for a slow KDF to strengthen and it
// would only add seconds to every create and mount.
var formatArgs = []string{
	"luksFormat", "--type", "luks2",
	"--cipher", Cipher, "--key-size", strconv.Itoa(KeyBits), "--sector-size", "4096",
	"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha256",
	"--batch-mode", "--key-file", "-",
}

// Cryptsetup runs cryptsetup.
type Cryptsetup struct {
	exec command.Exec
}

// Option configures a Cryptsetup.
type Option func(*Cryptsetup)

// WithExec replaces the command runner (tests use a fake).
func WithExec(e command.Exec) Option { return func(c *Cryptsetup) { c.exec = e } }

// New returns a Cryptsetup that runs the cryptsetup binary from PATH.
func New(opts ...Option) *Cryptsetup {
	c := &Cryptsetup{exec: command.Runner(command.ProgramAndAction)}
	for _, o := range opts {
		o(c)
	}
	return c
}

func (c *Cryptsetup) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	return c.exec(ctx, stdin, "cryptsetup", args...)
}

// runWithKey passes a private copy of key on stdin and zeroes the copy
// afterwards, so the caller's Wipe of its own buffer leaves nothing behind.
func (c *Cryptsetup) runWithKey(ctx context.Context, key []byte, args ...string) ([]byte, error) {
	buf := make([]byte, len(key))
	copy(buf, key)
	defer clear(buf)
	return c.run(ctx, buf, args...)
}

func exitCode(err error) int {
	var e *command.Error
	if errors.As(err, &e) {
		return e.ExitCode
	}
	return -1
}

// isLuks reports whether dev has a LUKS header (of version luks2 if typ is
// set). cryptsetup isLuks exits 1 for "no such header"; anything else
// (4: no such device) is a real error.
func (c *Cryptsetup) isLuks(ctx context.Context, dev, typ string) (bool, error) {
	args := []string{"isLuks"}
	if typ != "" {
		args = append(args, "--type", typ)
	}
	_, err := c.run(ctx, nil, append(args, dev)...)
	switch {
	case err == nil:
		return true, nil
	case exitCode(err) == 1:
		return false, nil
	default:
		return false, err
	}
}

func validateDevice(dev string) error {
	if !filepath.IsAbs(dev) || filepath.Clean(dev) != dev || dev == "/" {
		return fmt.Errorf("invalid device %q: must be a clean absolute path such as /dev/vg/lv", dev)
	}
	return nil
}

// ValidateMapping checks a dm-crypt mapping name.
func ValidateMapping(name string) error {
	const allowed = "letters, digits and _ . + - (not starting with '-', not \".\" or \"..\", at most 127 characters)"
	switch {
	case name == "":
		return fmt.Errorf("invalid mapping name: empty; allowed: %s", allowed)
	case len(name) > maxMappingLen:
		return fmt.Errorf("invalid mapping name %q: %d characters; allowed: %s", name, len(name), allowed)
	case name == "." || name == "..":
		return fmt.Errorf("invalid mapping name %q; allowed: %s", name, allowed)
	case name[0] == '-':
		return fmt.Errorf("invalid mapping name %q: starts with '-'; allowed: %s", name, allowed)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '+' || r == '-') {
			return fmt.Errorf("invalid mapping name %q: character %q; allowed: %s", name, r, allowed)
		}
	}
	return nil
}

func validateKey(key []byte) error {
	if len(key) != KeySize {
		// The length is not secret; the bytes never appear in errors.
		return fmt.Errorf("invalid key: %d bytes, want %d", len(key), KeySize)
	}
	return nil
}

func validateToken(tok Token) error {
	for _, f := range []struct{ name, val string }{{"key id", tok.KeyID}, {"volume", tok.Volume}} {
		switch {
		case f.val == "":
			return fmt.Errorf("invalid token: empty %s", f.name)
		case len(f.val) > maxTokenField:
			return fmt.Errorf("invalid token: %s is %d bytes, at most %d allowed", f.name, len(f.val), maxTokenField)
		case !utf8.ValidString(f.val):
			// encoding/json would silently replace invalid bytes, recording
			// a different key id than the one given.
			return fmt.Errorf("invalid token: %s %q is not valid UTF-8", f.name, f.val)
		}
	}
	return nil
}

// tokenJSON is the on-disk form of Token inside the LUKS2 header.
type tokenJSON struct {
	Type     string   `json:"type"`
	Keyslots []string `json:"keyslots"`
	KMIPID   string   `json:"kmip_id"`
	Volume   string   `json:"volume"`
}

// Format writes a LUKS2 header protected by key (the passphrase, on stdin)
// and cryptvol's token. It refuses a device that already has a LUKS header
// of any version: formatting would destroy the only way to its data.
func (c *Cryptsetup) Format(ctx context.Context, dev string, key []byte, token Token) error {
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

	has, err := c.isLuks(ctx, dev, "")
	if err != nil {
		return fmt.Errorf("format %s: check for an existing header: %w", dev, err)
	}
	if has {
		return fmt.Errorf("format %s: %w", dev, ErrHasHeader)
	}
	if _, err := c.runWithKey(ctx, key, append(slices.Clone(formatArgs), dev)...); err != nil {
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

// destroyHeader erases the keyslots with cryptsetup, so the volume key is
// gone even if zeroing fails, then zeroes the header area so that the device
// no longer looks like LUKS.
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
	n := min(size, headerArea)
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < n; {
		w, err := f.WriteAt(zeros[:min(n-off, int64(len(zeros)))], off)
		if err != nil {
			return fmt.Errorf("zero LUKS header of %s: %w", dev, err)
		}
		off += int64(w)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("zero LUKS header of %s: %w", dev, err)
	}
	return nil
}

// dumpJSON is the part of `luksDump --dump-json-metadata` that Inspect reads.
// Keyslot key_size is in bytes; offsets and sizes are decimal strings.
type dumpJSON struct {
	Keyslots map[string]struct {
		Type    string `json:"type"`
		KeySize int    `json:"key_size"`
	} `json:"keyslots"`
	Tokens   map[string]json.RawMessage `json:"tokens"`
	Segments map[string]struct {
		Type       string `json:"type"`
		Encryption string `json:"encryption"`
		SectorSize int    `json:"sector_size"`
	} `json:"segments"`
}

// sortedIDs orders LUKS2 object ids ("0", "1", ... "10") numerically.
func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, aerr := strconv.Atoi(ids[i])
		b, berr := strconv.Atoi(ids[j])
		if aerr != nil || berr != nil {
			return ids[i] < ids[j]
		}
		return a < b
	})
	return ids
}

func parseDump(out []byte) (Header, error) {
	var d dumpJSON
	if err := json.Unmarshal(out, &d); err != nil {
		return Header{}, fmt.Errorf("parse luksDump JSON: %w", err)
	}
	segs := sortedIDs(d.Segments)
	if len(segs) == 0 {
		return Header{}, errors.New("LUKS2 header has no data segment")
	}
	seg := d.Segments[segs[0]]
	h := Header{Version: 2, Cipher: seg.Encryption, SectorSize: seg.SectorSize, Keyslots: len(d.Keyslots)}
	// Every keyslot protects the same volume key, so the first tells its
	// size. With no keyslot left (after Erase) the size is unknown: 0.
	if ks := sortedIDs(d.Keyslots); len(ks) > 0 {
		h.KeyBits = d.Keyslots[ks[0]].KeySize * 8
	}
	for _, id := range sortedIDs(d.Tokens) {
		var tj tokenJSON
		if err := json.Unmarshal(d.Tokens[id], &tj); err != nil {
			return Header{}, fmt.Errorf("parse LUKS2 token %s: %w", id, err)
		}
		if tj.Type == TokenType {
			h.Token = &Token{KeyID: tj.KMIPID, Volume: tj.Volume}
			break
		}
	}
	return h, nil
}

// Inspect reads the LUKS2 header of dev. A device without a header, or with
// a LUKS1 header, wraps ErrNotLUKS.
func (c *Cryptsetup) Inspect(ctx context.Context, dev string) (Header, error) {
	if err := validateDevice(dev); err != nil {
		return Header{}, err
	}
	out, err := c.run(ctx, nil, "luksDump", "--dump-json-metadata", dev)
	if err != nil {
		// luksDump fails alike for "no header", "LUKS1" and real I/O
		// problems; isLuks tells them apart.
		if is2, lerr := c.isLuks(ctx, dev, "luks2"); lerr == nil && !is2 {
			return Header{}, fmt.Errorf("inspect %s: %w", dev, ErrNotLUKS)
		}
		return Header{}, fmt.Errorf("inspect %s: %w", dev, err)
	}
	h, err := parseDump(out)
	if err != nil {
		return Header{}, fmt.Errorf("inspect %s: %w", dev, err)
	}
	return h, nil
}

// Open maps dev to /dev/mapper/<mapping> with key as the passphrase. The
// caller verifies the header (Inspect) first; cryptsetup itself refuses a
// wrong key or a non-LUKS2 device.
func (c *Cryptsetup) Open(ctx context.Context, dev, mapping string, key []byte, opts OpenOptions) error {
	if err := validateDevice(dev); err != nil {
		return err
	}
	if err := ValidateMapping(mapping); err != nil {
		return err
	}
	if err := validateKey(key); err != nil {
		return fmt.Errorf("open %s as %s: %w", dev, mapping, err)
	}
	args := []string{"open", "--type", "luks2", "--key-file", "-"}
	if opts.NoWorkqueue {
		// Bypass dm-crypt's kcryptd queues: lower latency on fast devices.
		args = append(args, "--perf-no_read_workqueue", "--perf-no_write_workqueue")
	}
	if _, err := c.runWithKey(ctx, key, append(args, dev, mapping)...); err != nil {
		return fmt.Errorf("open %s as %s: %w", dev, mapping, err)
	}
	return nil
}

// IsOpen reports whether the mapping exists. cryptsetup status exits 0 for
// an active mapping and 4 for an inactive one.
func (c *Cryptsetup) IsOpen(ctx context.Context, mapping string) (bool, error) {
	if err := ValidateMapping(mapping); err != nil {
		return false, err
	}
	_, err := c.run(ctx, nil, "status", mapping)
	switch {
	case err == nil:
		return true, nil
	case exitCode(err) == 4:
		return false, nil
	default:
		return false, fmt.Errorf("status of mapping %s: %w", mapping, err)
	}
}

// Close removes the mapping. A mapping that is not open is already closed
// (cryptsetup close exits 4, "Device ... is not active"), which makes Close
// safe to retry; asking cryptsetup status first would cost a program run
// per close for the same answer.
func (c *Cryptsetup) Close(ctx context.Context, mapping string) error {
	if err := ValidateMapping(mapping); err != nil {
		return err
	}
	if _, err := c.run(ctx, nil, "close", mapping); err != nil {
		switch exitCode(err) {
		case 4:
			return nil
		case 5:
			return fmt.Errorf("close mapping %s: %w: %w", mapping, ErrBusy, err)
		}
		return fmt.Errorf("close mapping %s: %w", mapping, err)
	}
	return nil
}

// Erase destroys every keyslot of dev's LUKS header, making its data
// unrecoverable even to a holder of the passphrase. A device without a
// header wraps ErrNotLUKS.
func (c *Cryptsetup) Erase(ctx context.Context, dev string) error {
	if err := validateDevice(dev); err != nil {
		return err
	}
	if _, err := c.run(ctx, nil, "luksErase", "--batch-mode", dev); err != nil {
		if is, lerr := c.isLuks(ctx, dev, ""); lerr == nil && !is {
			return fmt.Errorf("erase %s: %w", dev, ErrNotLUKS)
		}
		return fmt.Errorf("erase %s: %w", dev, err)
	}
	return nil
}
