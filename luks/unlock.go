package luks

import (
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"strconv"
	"strings"

	"golang.org/x/crypto/xts"
)

// Unlocking a LUKS2 keyslot without cryptsetup (issue 15): `cryptsetup
// open` was the one program left in a first mount, a process start and
// thirteen libraries loaded before the kernel's part. Open does its work
// itself for the header Format writes and nothing else: one segment of
// aes-xts-plain64, pbkdf2 keyslots and digest over sha256, an AF of luks1
// type, no requirements and no persistent flags. Any other header is left
// to cryptsetup (errNotDirect). The steps are those of cryptsetup's
// docs/on-disk-format-luks2.pdf, sections 3.2 to 3.4, and of the LUKS1
// specification's anti-forensic merge (section 2.4), which LUKS2 keeps.
//
// A derived or volume key lives only in byte slices that are zeroed when
// done. Go's HMAC and AES keep their own copies of a key inside their state,
// which the garbage collector frees without zeroing: what Go allows.

// sectorSize is the unit of a keyslot area's encryption (LUKS2: 512-byte
// sectors numbered from the area's start, the plain64 IV).
const sectorSize = 512

// plainJSON is the part of the JSON metadata an unlock needs.
type plainJSON struct {
	Keyslots map[string]struct {
		Type     string `json:"type"`
		KeySize  int    `json:"key_size"`
		Priority *int   `json:"priority"`
		Area     struct {
			Type       string `json:"type"`
			Offset     string `json:"offset"`
			Size       string `json:"size"`
			Encryption string `json:"encryption"`
			KeySize    int    `json:"key_size"`
		} `json:"area"`
		KDF kdfJSON `json:"kdf"`
		AF  struct {
			Type    string `json:"type"`
			Stripes int    `json:"stripes"`
			Hash    string `json:"hash"`
		} `json:"af"`
	} `json:"keyslots"`
	Segments map[string]struct {
		Type       string          `json:"type"`
		Offset     string          `json:"offset"`
		Size       string          `json:"size"`
		IVTweak    string          `json:"iv_tweak"`
		Encryption string          `json:"encryption"`
		SectorSize int             `json:"sector_size"`
		Integrity  json.RawMessage `json:"integrity"`
		Flags      []string        `json:"flags"`
	} `json:"segments"`
	Digests map[string]struct {
		kdfJSON
		Keyslots []string `json:"keyslots"`
		Segments []string `json:"segments"`
		Digest   string   `json:"digest"`
	} `json:"digests"`
	Config struct {
		Flags        []string        `json:"flags"`
		Requirements json.RawMessage `json:"requirements"`
	} `json:"config"`
}

type kdfJSON struct {
	Type       string `json:"type"`
	Hash       string `json:"hash"`
	Iterations int    `json:"iterations"`
	Salt       string `json:"salt"`
}

// keyslot is one passphrase keyslot an unlock may try.
type keyslot struct {
	id             string
	offset, length int64 // of the AF material, inside the keyslot area
	areaKeySize    int
	kdf            kdfJSON
	stripes        int
}

// plainHeader is a header Open can activate itself.
type plainHeader struct {
	uuid       string
	digestID   string
	digest     kdfJSON
	want       []byte // the digest of the volume key
	keySize    int    // volume key, bytes
	slots      []keyslot
	offset     uint64 // data segment, bytes
	ivTweak    uint64
	sectorSize int
}

// parsePlain reads js (the metadata readMetadata returns, which also
// carries the uuid: see headerUUID) as a header Open activates itself, or
// wraps errNotDirect naming what it does not take.
func parsePlain(js []byte, uuid string) (*plainHeader, error) {
	var d plainJSON
	if err := json.Unmarshal(js, &d); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotDirect, err)
	}
	notPlain := func(why string, a ...any) (*plainHeader, error) {
		return nil, fmt.Errorf("%w: %s", errNotDirect, fmt.Sprintf(why, a...))
	}
	if len(d.Config.Flags) > 0 {
		return notPlain("persistent flags %v", d.Config.Flags)
	}
	if r := string(d.Config.Requirements); r != "" && r != "null" && r != "{}" {
		return notPlain("requirements %s", r)
	}
	seg, ok := d.Segments["0"]
	switch {
	case len(d.Segments) != 1 || !ok:
		return notPlain("%d segments", len(d.Segments))
	case seg.Type != "crypt" || seg.Encryption != Cipher || seg.Size != "dynamic" || len(seg.Flags) > 0:
		return notPlain("segment of type %q, %q, size %q, flags %v", seg.Type, seg.Encryption, seg.Size, seg.Flags)
	case len(seg.Integrity) > 0 && string(seg.Integrity) != "null":
		return notPlain("integrity")
	case seg.SectorSize != 512 && seg.SectorSize != 1024 && seg.SectorSize != 2048 && seg.SectorSize != 4096:
		return notPlain("sector size %d", seg.SectorSize)
	}
	// The uuid and digest id go into the table's text and the key's name:
	// a header that any disk writer can forge must not add words to it.
	if !validUUID(uuid) {
		return notPlain("uuid %q", uuid)
	}
	p := &plainHeader{uuid: uuid, sectorSize: seg.SectorSize}
	var err error
	if p.offset, err = strconv.ParseUint(seg.Offset, 10, 64); err != nil || p.offset%sectorSize != 0 {
		return notPlain("segment offset %q", seg.Offset)
	}
	if p.ivTweak, err = strconv.ParseUint(seg.IVTweak, 10, 64); err != nil {
		return notPlain("iv_tweak %q", seg.IVTweak)
	}
	if len(d.Digests) != 1 {
		return notPlain("%d digests", len(d.Digests))
	}
	for id, dg := range d.Digests {
		if dg.Type != "pbkdf2" || dg.Hash != "sha256" || dg.Iterations < 1 || len(dg.Segments) != 1 || dg.Segments[0] != "0" {
			return notPlain("digest %s of type %q over %q", id, dg.Type, dg.Hash)
		}
		if p.want, err = base64.StdEncoding.DecodeString(dg.Digest); err != nil || len(p.want) == 0 {
			return notPlain("digest %s value", id)
		}
		if _, err := strconv.ParseUint(id, 10, 8); err != nil {
			return notPlain("digest id %q", id)
		}
		p.digestID, p.digest = id, dg.kdfJSON
		for _, sid := range dg.Keyslots {
			ks, ok := d.Keyslots[sid]
			if !ok || ks.Type != "luks2" {
				continue
			}
			if ks.Priority != nil && *ks.Priority == 0 {
				continue // "ignore": cryptsetup tries it only when named
			}
			a := ks.Area
			if a.Type != "raw" || a.Encryption != "aes-xts-plain64" || a.KeySize != 64 ||
				ks.KDF.Type != "pbkdf2" || ks.KDF.Hash != "sha256" || ks.KDF.Iterations < 1 ||
				ks.AF.Type != "luks1" || ks.AF.Hash != "sha256" || ks.AF.Stripes < 1 || ks.KeySize < 1 || ks.KeySize > 256 {
				return notPlain("keyslot %s: area %q %q, kdf %q, af %q", sid, a.Type, a.Encryption, ks.KDF.Type, ks.AF.Type)
			}
			if p.keySize != 0 && p.keySize != ks.KeySize {
				return notPlain("keyslots of different key sizes")
			}
			p.keySize = ks.KeySize
			off, err1 := strconv.ParseInt(a.Offset, 10, 64)
			size, err2 := strconv.ParseInt(a.Size, 10, 64)
			n := int64(ks.KeySize) * int64(ks.AF.Stripes)
			n = (n + sectorSize - 1) / sectorSize * sectorSize
			if err1 != nil || err2 != nil || off%sectorSize != 0 || n > size {
				return notPlain("keyslot %s area %q+%q", sid, a.Offset, a.Size)
			}
			p.slots = append(p.slots, keyslot{id: sid, offset: off, length: n, areaKeySize: a.KeySize, kdf: ks.KDF, stripes: ks.AF.Stripes})
		}
	}
	if p.keySize != 64 || len(p.slots) == 0 {
		return notPlain("volume key of %d bytes in %d keyslots", p.keySize, len(p.slots))
	}
	// cryptsetup's order: keyslots by number (sortedIDs), as it tries them.
	order := map[string]int{}
	for i, id := range sortedIDs(d.Keyslots) {
		order[id] = i
	}
	for i := 1; i < len(p.slots); i++ {
		for j := i; j > 0 && order[p.slots[j].id] < order[p.slots[j-1].id]; j-- {
			p.slots[j], p.slots[j-1] = p.slots[j-1], p.slots[j]
		}
	}
	return p, nil
}

// validUUID accepts the form libuuid writes and cryptsetup records:
// 8-4-4-4-12 hex digits.
func validUUID(u string) bool {
	if len(u) != 36 {
		return false
	}
	for i, r := range u {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdefABCDEF", r):
			return false
		}
	}
	return true
}

// errNoKeyslot says no keyslot took the passphrase.
var errNoKeyslot = errors.New("no keyslot opens with this key")

// unlock returns the volume key that passphrase opens in one of p's
// keyslots, read from f; the caller zeroes it.
func (p *plainHeader) unlock(f *os.File, passphrase []byte) ([]byte, error) {
	for _, ks := range p.slots {
		vk, err := p.unlockSlot(f, ks, passphrase)
		if err != nil {
			return nil, err
		}
		if vk != nil {
			return vk, nil
		}
	}
	return nil, errNoKeyslot
}

// unlockSlot returns the volume key of one keyslot, nil when the passphrase
// is not this keyslot's (the digest disagrees).
func (p *plainHeader) unlockSlot(f *os.File, ks keyslot, passphrase []byte) ([]byte, error) {
	salt, err := base64.StdEncoding.DecodeString(ks.kdf.Salt)
	if err != nil {
		return nil, fmt.Errorf("keyslot %s salt: %w", ks.id, err)
	}
	material, err := readBlock(f, ks.offset, int(ks.length))
	if err != nil {
		return nil, fmt.Errorf("keyslot %s: %w", ks.id, err)
	}
	defer clear(material)
	derived := pbkdf2SHA256(passphrase, salt, ks.kdf.Iterations, ks.areaKeySize)
	c, err := xts.NewCipher(aes.NewCipher, derived)
	clear(derived)
	if err != nil {
		return nil, fmt.Errorf("keyslot %s: %w", ks.id, err)
	}
	for s := 0; s < len(material)/sectorSize; s++ {
		b := material[s*sectorSize : (s+1)*sectorSize]
		c.Decrypt(b, b, uint64(s))
	}
	vk := afMerge(material[:p.keySize*ks.stripes], p.keySize, ks.stripes)
	ok, err := p.check(vk)
	if err != nil || !ok {
		clear(vk)
		return nil, err
	}
	return vk, nil
}

// check compares vk's digest with the header's.
func (p *plainHeader) check(vk []byte) (bool, error) {
	salt, err := base64.StdEncoding.DecodeString(p.digest.Salt)
	if err != nil {
		return false, fmt.Errorf("digest %s salt: %w", p.digestID, err)
	}
	got := pbkdf2SHA256(vk, salt, p.digest.Iterations, len(p.want))
	return subtle.ConstantTimeCompare(got, p.want) == 1, nil
}

// afMerge undoes the anti-forensic split: stripes blocks of n bytes, each
// but the last XORed into a buffer that is then diffused, the last XORed
// in to give the key.
func afMerge(material []byte, n, stripes int) []byte {
	buf := make([]byte, n)
	for i := 0; i < stripes-1; i++ {
		subtle.XORBytes(buf, buf, material[i*n:(i+1)*n])
		diffuse(buf)
	}
	subtle.XORBytes(buf, buf, material[(stripes-1)*n:stripes*n])
	return buf
}

// diffuse replaces each sha256-sized block i of b (the last may be
// shorter) with the hash of i (big-endian u32) and the block, cut to the
// block's length.
func diffuse(b []byte) {
	var iv [4]byte
	h := sha256.New()
	for i := 0; i*sha256.Size < len(b); i++ {
		blk := b[i*sha256.Size : min((i+1)*sha256.Size, len(b))]
		binary.BigEndian.PutUint32(iv[:], uint32(i))
		h.Reset()
		h.Write(iv[:])
		h.Write(blk)
		sum := h.Sum(nil)
		copy(blk, sum)
		clear(sum)
	}
}

// pbkdf2SHA256 is RFC 8018's PBKDF2 with HMAC-SHA-256. The standard
// library's takes the password as a string, a copy nothing can zero.
func pbkdf2SHA256(password, salt []byte, iter, keyLen int) []byte {
	prf := hmac.New(sha256.New, password)
	out := make([]byte, 0, (keyLen+sha256.Size-1)/sha256.Size*sha256.Size)
	u := make([]byte, sha256.Size)
	t := make([]byte, sha256.Size)
	var ctr [4]byte
	for block := uint32(1); len(out) < keyLen; block++ {
		binary.BigEndian.PutUint32(ctr[:], block)
		prf.Reset()
		prf.Write(salt)
		prf.Write(ctr[:])
		u = sum(prf, u)
		copy(t, u)
		for n := 1; n < iter; n++ {
			prf.Reset()
			prf.Write(u)
			u = sum(prf, u)
			subtle.XORBytes(t, t, u)
		}
		out = append(out, t...)
	}
	clear(u)
	clear(t)
	clear(out[keyLen:cap(out)])
	return out[:keyLen]
}

func sum(h hash.Hash, into []byte) []byte { return h.Sum(into[:0]) }
