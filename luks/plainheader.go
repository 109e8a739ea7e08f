package luks

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The direct open (unlock.go, dmcreate.go) reads a header's JSON metadata
// itself only when it is exactly what Format, AddKey, KillSlot and
// SetToken write with cryptsetup 2.6, and hands everything else to
// cryptsetup. "Exactly" is checked twice: the JSON decodes into a model of
// that header field for field, and its raw bytes equal the model's
// re-encoding in json-c's compact form, keys in the order cryptsetup adds
// them (cryptsetup lib/luks2/luks2_disk_metadata.c@v2.6.1 writes the area
// with json_object_to_json_string_ext, JSON_C_TO_STRING_PLAIN |
// JSON_C_TO_STRING_NOSLASHESCAPE). The second check is what makes the
// first trustworthy: Go's decoder matches keys case-insensitively and lets
// a repeated key win, where json-c matches exactly, so a header with an
// extra "OFFSET" or a second "offset" could be read one way here and
// another by cryptsetup; any such header, any unknown field, any other
// spelling of a number or string re-encodes differently and is declined.
// Then every value must be the one cryptvol writes (checkValues), which
// also bounds the work an unlock does: 4000 stripes of 64 bytes and 1000
// PBKDF2 iterations per keyslot, whatever the disk says.
// FuzzDirectOpenAgreesWithCryptsetup (plainheader_fuzz_test.go) holds the
// direct open to cryptsetup's reading of the same image.

// The values cryptvol writes (formatArgs, addKeyArgs).
const (
	hdrSizeFormat  = 16 << 10 // luksFormat's default metadata size
	pbkdf2Iter     = 1000     // --pbkdf-force-iterations
	afStripes      = 4000     // LUKS_STRIPES, cryptsetup's only choice
	volumeKeyBytes = KeyBits / 8
	saltBytes      = 32 // LUKS_SALTSIZE
	digestBytes    = 32 // sha256's output, the digest's length
	// keyslotAreaSize is a keyslot's AF material, 4000 stripes of the
	// 64-byte key, rounded up to 4096 bytes as cryptsetup lays it out.
	keyslotAreaSize = (volumeKeyBytes*afStripes + 4095) / 4096 * 4096
	// maxKeyslotID is LUKS2_KEYSLOTS_MAX less one; tokens have as many ids.
	maxKeyslotID = 31
)

// headerJSON is the whole JSON metadata Format and the key rotation write,
// in cryptsetup's order.
type headerJSON struct {
	Keyslots orderedMap[keyslotJSON] `json:"keyslots"`
	Tokens   orderedMap[tokenJSON]   `json:"tokens"`
	Segments orderedMap[segmentJSON] `json:"segments"`
	Digests  orderedMap[digestJSON]  `json:"digests"`
	Config   struct {
		JSONSize     string `json:"json_size"`
		KeyslotsSize string `json:"keyslots_size"`
	} `json:"config"`
}

type keyslotJSON struct {
	Type    string `json:"type"`
	KeySize int    `json:"key_size"`
	AF      struct {
		Type    string `json:"type"`
		Stripes int    `json:"stripes"`
		Hash    string `json:"hash"`
	} `json:"af"`
	Area struct {
		Type       string `json:"type"`
		Offset     string `json:"offset"`
		Size       string `json:"size"`
		Encryption string `json:"encryption"`
		KeySize    int    `json:"key_size"`
	} `json:"area"`
	KDF kdfJSON `json:"kdf"`
}

type kdfJSON struct {
	Type       string `json:"type"`
	Hash       string `json:"hash"`
	Iterations int    `json:"iterations"`
	Salt       string `json:"salt"`
}

type segmentJSON struct {
	Type       string `json:"type"`
	Offset     string `json:"offset"`
	Size       string `json:"size"`
	IVTweak    string `json:"iv_tweak"`
	Encryption string `json:"encryption"`
	SectorSize int    `json:"sector_size"`
}

type digestJSON struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash"`
	Iterations int      `json:"iterations"`
	Salt       string   `json:"salt"`
	Digest     string   `json:"digest"`
}

// orderedMap is a JSON object read and written in its own key order, as
// json-c keeps it (a rotation's new keyslot follows the old one whatever
// its number). A repeated key is an error.
type orderedMap[T any] []entry[T]

type entry[T any] struct {
	id string
	v  T
}

func (o *orderedMap[T]) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("want an object, have %.20q", b)
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		id := t.(string) // the decoder allows only strings as keys
		if _, dup := o.get(id); dup {
			return fmt.Errorf("key %q twice", id)
		}
		var v T
		if err := dec.Decode(&v); err != nil {
			return err
		}
		*o = append(*o, entry[T]{id, v})
	}
	_, err := dec.Token()
	return err
}

func (o orderedMap[T]) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, e := range o {
		if i > 0 {
			b = append(b, ',')
		}
		k, err := compactJSON(e.id)
		if err != nil {
			return nil, err
		}
		v, err := compactJSON(e.v)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

func (o orderedMap[T]) get(id string) (T, bool) {
	for _, e := range o {
		if e.id == id {
			return e.v, true
		}
	}
	var zero T
	return zero, false
}

// compactJSON encodes v as json-c does for the text cryptvol writes: no
// spaces, and <, > and & as themselves.
func compactJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// parsePlain reads js, the JSON metadata of a header of hdrSize bytes
// whose binary part carries uuid (readHeader), as a header Open activates
// itself, or wraps errNotDirect naming what it does not take.
func parsePlain(js []byte, uuid string, hdrSize uint64) (*plainHeader, error) {
	notPlain := func(why string, a ...any) (*plainHeader, error) {
		return nil, fmt.Errorf("%w: %s", errNotDirect, fmt.Sprintf(why, a...))
	}
	var h headerJSON
	if err := h.decode(js); err != nil {
		return notPlain("metadata: %v", err)
	}
	if again, err := compactJSON(h); err != nil || !bytes.Equal(again, js) {
		return notPlain("metadata not in the form cryptvol writes (%d bytes; as written by cryptsetup, %d)", len(js), len(again))
	}
	// The uuid and digest id go into the table's text and the key's name:
	// a header that any disk writer can forge must not add words to it.
	if !validUUID(uuid) {
		return notPlain("uuid %q", uuid)
	}
	if hdrSize != hdrSizeFormat {
		return notPlain("hdr_size %d, cryptvol writes %d", hdrSize, hdrSizeFormat)
	}
	return h.plain(uuid)
}

func (h *headerJSON) decode(js []byte) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(h)
}

// plain checks every value of h against what cryptvol writes and lays out
// the header for the unlock.
func (h *headerJSON) plain(uuid string) (*plainHeader, error) {
	notPlain := func(why string, a ...any) (*plainHeader, error) {
		return nil, fmt.Errorf("%w: %s", errNotDirect, fmt.Sprintf(why, a...))
	}
	// Layout: two metadata copies, the keyslots area, then the data.
	ksSize, ok := decimal(h.Config.KeyslotsSize)
	if h.Config.JSONSize != strconv.Itoa(hdrSizeFormat-binHeaderSize) || !ok ||
		ksSize == 0 || ksSize%4096 != 0 || 2*hdrSizeFormat+ksSize > headerArea {
		return notPlain("config json_size %q, keyslots_size %q", h.Config.JSONSize, h.Config.KeyslotsSize)
	}
	areaStart, dataStart := uint64(2*hdrSizeFormat), 2*hdrSizeFormat+ksSize

	seg, ok := h.Segments.get("0")
	if len(h.Segments) != 1 || !ok {
		return notPlain("%d segments", len(h.Segments))
	}
	if seg.Type != "crypt" || seg.Offset != strconv.FormatUint(dataStart, 10) || seg.Size != "dynamic" ||
		seg.IVTweak != "0" || seg.Encryption != Cipher || seg.SectorSize != 4096 {
		return notPlain("segment %+v (want crypt at %d, dynamic, iv_tweak 0, %s, 4096-byte sectors)", seg, dataStart, Cipher)
	}

	p := &plainHeader{uuid: uuid, sectorSize: seg.SectorSize, offset: dataStart, keySize: volumeKeyBytes}
	var used [][2]uint64
	for _, e := range h.Keyslots {
		ks := e.v
		off, ok := decimal(ks.Area.Offset)
		if !validID(e.id) || ks.Type != "luks2" || ks.KeySize != volumeKeyBytes ||
			ks.AF.Type != "luks1" || ks.AF.Stripes != afStripes || ks.AF.Hash != "sha256" ||
			ks.Area.Type != "raw" || ks.Area.Encryption != Cipher || ks.Area.KeySize != volumeKeyBytes ||
			!validKDF(ks.KDF) {
			return notPlain("keyslot %q: %+v", e.id, ks)
		}
		end := off + keyslotAreaSize
		if !ok || ks.Area.Size != strconv.Itoa(keyslotAreaSize) || off%4096 != 0 || off < areaStart || end > dataStart {
			return notPlain("keyslot %s area %s+%s outside the keyslots area %d-%d", e.id, ks.Area.Offset, ks.Area.Size, areaStart, dataStart)
		}
		for _, u := range used {
			if off < u[1] && u[0] < end {
				return notPlain("keyslot %s area overlaps another", e.id)
			}
		}
		used = append(used, [2]uint64{off, end})
		p.slots = append(p.slots, keyslot{id: e.id, offset: int64(off), length: keyslotAreaSize, areaKeySize: volumeKeyBytes, kdf: ks.KDF, stripes: afStripes})
	}
	if len(p.slots) == 0 {
		return notPlain("no keyslot")
	}

	if len(h.Digests) != 1 {
		return notPlain("%d digests", len(h.Digests))
	}
	dg := h.Digests[0]
	var err error
	p.digestID, p.digest = dg.id, kdfJSON{Type: dg.v.Type, Hash: dg.v.Hash, Iterations: dg.v.Iterations, Salt: dg.v.Salt}
	p.want, err = base64.StdEncoding.Strict().DecodeString(dg.v.Digest)
	if !validID(dg.id) || !validKDF(p.digest) || err != nil || len(p.want) != digestBytes ||
		!slices.Equal(dg.v.Segments, []string{"0"}) || !sameIDs(dg.v.Keyslots, h.Keyslots) {
		return notPlain("digest %q: %+v", dg.id, dg.v)
	}

	for _, e := range h.Tokens {
		t := e.v
		if !validID(e.id) || t.Type != TokenType || t.Keyslots == nil || validateToken(Token{KeyID: t.KMIPID, Volume: t.Volume}) != nil {
			return notPlain("token %q of type %q", e.id, t.Type)
		}
		for i, id := range t.Keyslots {
			if _, ok := h.Keyslots.get(id); !ok || slices.Contains(t.Keyslots[:i], id) {
				return notPlain("token %s names keyslots %q", e.id, t.Keyslots)
			}
		}
	}

	// cryptsetup's order: keyslots by number, as it tries them.
	slices.SortFunc(p.slots, func(a, b keyslot) int { return mustAtoi(a.id) - mustAtoi(b.id) })
	return p, nil
}

// validKDF accepts the PBKDF2 cryptvol's keyslots and digest use.
func validKDF(k kdfJSON) bool {
	salt, err := base64.StdEncoding.Strict().DecodeString(k.Salt)
	return k.Type == "pbkdf2" && k.Hash == "sha256" && k.Iterations == pbkdf2Iter && err == nil && len(salt) == saltBytes
}

// validID accepts a LUKS2 object id as cryptsetup writes one: a number
// from 0 to 31 without leading zeros.
func validID(id string) bool {
	n, err := strconv.Atoi(id)
	return err == nil && n >= 0 && n <= maxKeyslotID && strconv.Itoa(n) == id
}

func mustAtoi(id string) int {
	n, _ := strconv.Atoi(id)
	return n
}

// decimal parses a byte count as cryptsetup writes it: digits, no sign,
// no leading zeros, below 2^53 (json-c's and cryptsetup's safe range).
func decimal(s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n < 1<<53 && strconv.FormatUint(n, 10) == s
}

// sameIDs says whether ids names each keyslot of ks exactly once.
func sameIDs(ids []string, ks orderedMap[keyslotJSON]) bool {
	if len(ids) != len(ks) {
		return false
	}
	for i, id := range ids {
		if _, ok := ks.get(id); !ok || slices.Contains(ids[:i], id) {
			return false
		}
	}
	return true
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
