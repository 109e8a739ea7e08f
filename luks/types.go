// Package luks owns every call to cryptsetup, the reading of LUKS2
// headers, and the device-mapper ioctls that open and close a plain LUKS2
// mapping without a program: LUKS2 format with explicit parameters, header
// inspection, open with verification, close, header erase and cryptvol's
// token. Keys travel to cryptsetup on stdin only, and to the kernel in a
// logon key of the opening thread's keyring, revoked once the table is
// loaded.
//
// Files: cryptsetup.go runs cryptsetup (open, close, erase); plainheader.go
// reads the JSON metadata of exactly the header Format and a rotation
// write, and unlock.go unlocks its keyslots (pbkdf2, AES-XTS, the
// anti-forensic merge, the digest check), and dmcreate.go makes its
// dm-crypt mapping with the table cryptsetup would load, both leaving any
// other header to cryptsetup open; dmremove.go closes such a mapping;
// dmioctl.go issues the device-mapper ioctls; owner.go tells whether a
// mapping is a device's own LUKS2 mapping (MappingOf); wipe.go
// erases an intact header without it, writing zeros over the whole header
// area; mapped.go
// tells whether a mapping exists from sysfs, without a program; format.go
// writes a header and its token and undoes a half-made one; inspect.go reads
// the header's JSON metadata, from header.go (the LUKS2 on-disk format read
// from the device when both copies are intact and agree, and whether a
// device shows any LUKS magic) or else from luksDump; verify.go is what
// cryptvol accepts (Header.Check); validate.go checks names, devices, keys
// and tokens; rotate.go adds a keyslot for a new passphrase, points the
// token at it and kills a keyslot (key rotation); reencrypt.go re-encrypts
// the data under a new volume key.
//
// Concurrency: a Cryptsetup holds no state besides its Exec, paths and
// ioctl functions and is safe for concurrent use. Neither cryptsetup nor
// the direct paths serialize two operations on one device or mapping;
// callers (volume/) hold a per-volume lock.
package luks

import "errors"

var (
	// ErrNotLUKS means the device carries no LUKS header.
	ErrNotLUKS = errors.New("no LUKS header")
	// ErrHasHeader means Format found an existing header and refused.
	ErrHasHeader = errors.New("device already has a LUKS header")
	// ErrBusy means Close found the mapping still held open: a filesystem
	// on it is mounted somewhere (a container's mount namespace keeps it
	// after the plugin's own mount is gone). cryptsetup(8), RETURN CODES: 5.
	ErrBusy = errors.New("mapping is in use")
)

// TokenType is the LUKS2 token type cryptvol writes.
const TokenType = "cryptvol-kmip"

// Token is cryptvol's LUKS2 token: it records which KMIP key unlocks the volume.
type Token struct {
	KeyID  string // KMIP unique identifier
	Volume string // docker volume name
}

// Header is what Inspect reads from a LUKS2 header (luksDump --dump-json-metadata).
type Header struct {
	Version    int    // 2 for LUKS2
	Cipher     string // segment 0 encryption, e.g. "aes-xts-plain64"
	KeyBits    int    // volume key size in bits (from the keyslot's key_size*8)
	SectorSize int    // segment 0 sector_size
	Keyslots   int    // number of keyslots in use
	SlotIDs    []int  // the keyslots in use, in order (rotation picks a free one)
	Token      *Token // cryptvol's token, nil if absent
	TokenID    int    // the LUKS2 token id of Token (valid when Token is set)
	// Reencrypting says a reencryption of the data was begun and not
	// finished (the header requires online-reencrypt): it is resumed.
	Reencrypting bool
	// Integrity is segment 0's integrity type as LUKS2 records it
	// ("hmac(sha256)"), "" for none.
	Integrity string
}

// OpenOptions tunes the dm-crypt mapping.
type OpenOptions struct {
	// NoWorkqueue adds --perf-no_read_workqueue --perf-no_write_workqueue.
	NoWorkqueue bool
	// AllowDiscards passes discards through to the device
	// (--allow-discards; cryptsetup-open(8) says what that reveals).
	AllowDiscards bool
	// ReadOnly maps the device read-only (--readonly).
	ReadOnly bool
}
