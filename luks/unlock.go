package luks

import (
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"os"

	"golang.org/x/crypto/xts"
)

// Unlocking a LUKS2 keyslot without cryptsetup: `cryptsetup open` in a
// first mount would be a process start and thirteen libraries loaded
// before the kernel's part. Open does this work itself for the header
// Format writes and nothing else (plainheader.go says exactly which); any
// other header is left to cryptsetup (errNotDirect). The steps are those
// of cryptsetup's docs/on-disk-format-luks2.pdf, sections 3.2 to 3.4, and
// of the LUKS1 specification's anti-forensic merge (section 2.4), which
// LUKS2 keeps.
//
// A derived or volume key lives only in byte slices that are zeroed when
// done. Go's HMAC and AES keep their own copies of a key inside their state,
// which the garbage collector frees without zeroing: what Go allows.

// sectorSize is the unit of a keyslot area's encryption (LUKS2: 512-byte
// sectors numbered from the area's start, the plain64 IV).
const sectorSize = 512

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
	sectorSize int
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
// block's length. afMerge calls it once per stripe, 3,999 times an
// unlock, so it allocates nothing: no hasher, no sum
// (TestAFMergeKeepsItsResult pins the result).
func diffuse(b []byte) {
	var in [4 + sha256.Size]byte
	for i := 0; i*sha256.Size < len(b); i++ {
		blk := b[i*sha256.Size : min((i+1)*sha256.Size, len(b))]
		binary.BigEndian.PutUint32(in[:4], uint32(i))
		n := copy(in[4:], blk)
		sum := sha256.Sum256(in[:4+n])
		copy(blk, sum[:])
		clear(sum[:])
	}
	clear(in[:])
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
