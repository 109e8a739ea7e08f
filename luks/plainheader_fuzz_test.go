package luks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// diffImage is a header cryptvol wrote, with two keyslots (0 opened by
// keys[0], 1 by keys[1]), whose JSON metadata the fuzz target replaces.
type diffImage struct {
	path  string
	keys  [][]byte
	seqID uint64
	uuid  string // as cryptsetup reads it from the binary header, which stays
}

// FuzzDirectOpenAgreesWithCryptsetup holds the direct open to cryptsetup
// 2.6's reading of the same header: for JSON metadata mutated from what
// Format and a rotation write (both copies checksummed again, so the
// header is intact), the direct open either declines, or cryptsetup also
// takes the header and finds the same volume key for each passphrase, and
// the table laid out is the one its reading of the header gives. Nothing
// panics, and an unlock's allocations stay within a bound whatever the
// header says (the review's headers asked for gigabytes and hours).
// `make test` runs a bounded count of inputs; `make fuzz` runs more.
func FuzzDirectOpenAgreesWithCryptsetup(f *testing.F) {
	if _, err := exec.LookPath("cryptsetup"); err != nil || os.Geteuid() != 0 {
		f.Skip("needs cryptsetup and root")
	}
	if labBuild {
		f.Skip("runs on the host (make unit, make fuzz), not under the lab's emulation")
	}
	ctx := context.Background()
	tpl := fuzzTemplate(f)
	for _, js := range tpl.seeds {
		f.Add(js, []byte{})
		f.Add(js, []byte{7, 3, 41, 9, 12, 140})
	}
	f.Add(bytes.Replace(tpl.seeds[1], []byte(`"offset":"4194304",`), []byte(`"offset":"4194304","OFFSET":"0",`), 1), []byte{})
	img := filepath.Join(f.TempDir(), "dev.img")
	if err := os.WriteFile(img, tpl.image, 0o600); err != nil {
		f.Fatal(err)
	}
	d := &diffImage{path: img, keys: fuzzKeys(), seqID: binary.BigEndian.Uint64(tpl.image[offSeqID:])}

	f.Fuzz(func(t *testing.T, js, edits []byte) {
		js = editValues(js, edits)
		if err := d.writeJSON(js); err != nil {
			t.Skip(err) // more than the JSON area holds
		}
		if _, err := d.agree(ctx, js); err != nil {
			t.Fatal(err)
		}
	})
}

// Every header one edit away from those cryptvol writes, with every
// value editScalar has for each scalar, is read alike by the direct open
// and by cryptsetup, or declined: the fuzz target's neighbourhood walked
// whole, in every run of the unit tests.
func TestHostDirectOpenAgreesOnEverySingleEdit(t *testing.T) {
	hostCryptsetup(t)
	if raceDetector || labBuild {
		// Its unlocks take minutes under the race detector and under the
		// lab's emulation; `make fuzz` (and so `make test`) runs it on the
		// host without -race.
		t.Skip("run on the host without -race (make fuzz)")
	}
	ctx := context.Background()
	tpl := fuzzTemplate(t)
	img := filepath.Join(t.TempDir(), "dev.img")
	if err := os.WriteFile(img, tpl.image, 0o600); err != nil {
		t.Fatal(err)
	}
	d := &diffImage{path: img, keys: fuzzKeys(), seqID: binary.BigEndian.Uint64(tpl.image[offSeqID:])}
	tried, taken := 0, 0
	for _, seed := range tpl.seeds {
		seen := map[string]bool{}
		for scalar := range 256 {
			for _, c := range walkChanges {
				js := editValues(seed, []byte{byte(scalar), c})
				// The token's key id and volume name take any text and
				// reach neither the key nor the table: compared once.
				if seen[string(js)] || (!bytes.Equal(js, seed) && bytes.Equal(outsideTokens(js), outsideTokens(seed))) {
					continue
				}
				seen[string(js)] = true
				if err := d.writeJSON(js); err != nil {
					t.Fatal(err)
				}
				tried++
				ok, err := d.agree(ctx, js)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					taken++
				}
			}
		}
	}
	// Salts, digests, token fields and free keyslot offsets take other
	// values without leaving the direct path; if none did, the walk
	// would compare nothing.
	if taken < 20 {
		t.Errorf("the direct open took %d of %d edited headers: too few to compare", taken, tried)
	}
	t.Logf("%d edited headers, %d read by the direct open and compared with cryptsetup", tried, taken)
}

// outsideTokens is js without its "tokens" object (cryptsetup's order puts
// "segments" after it).
func outsideTokens(js []byte) []byte {
	a := bytes.Index(js, []byte(`"tokens":`))
	b := bytes.Index(js, []byte(`,"segments":`))
	if a < 0 || b < a {
		return js
	}
	return append(bytes.Clone(js[:a]), js[b:]...)
}

// walkChanges are editScalar's changes the walk makes: every word and
// number, and three characters of a base64 value.
var walkChanges = func() []byte {
	var cs []byte
	for c := range max(len(fuzzWords), len(fuzzNumbers)) {
		cs = append(cs, byte(c))
	}
	return append(cs, 128, 150, 171)
}()

// agree reads the image both ways. It returns whether the direct open took
// the header, and an error where the two disagree.
func (d *diffImage) agree(ctx context.Context, js []byte) (bool, error) {
	ours, err := d.direct()
	if errors.Is(err, errNotDirect) || errors.Is(err, errFallback) {
		return false, nil // cryptsetup's to open: agreement by construction
	}
	if err != nil {
		return false, fmt.Errorf("the direct open failed instead of declining: %w", err)
	}
	theirs, err := d.cryptsetup(ctx)
	if err != nil {
		return true, fmt.Errorf("the direct open takes a header cryptsetup refuses (%w):\n%s", err, js)
	}
	if ours.table != theirs.table {
		return true, fmt.Errorf("table %q, cryptsetup's reading gives %q:\n%s", ours.table, theirs.table, js)
	}
	for i := range d.keys {
		if !bytes.Equal(ours.vks[i], theirs.vks[i]) {
			return true, fmt.Errorf("passphrase %d: direct open finds a key: %v, cryptsetup: %v; same key: %v:\n%s",
				i, ours.vks[i] != nil, theirs.vks[i] != nil, bytes.Equal(ours.vks[i], theirs.vks[i]), js)
		}
	}
	return true, nil
}

// editValues rewrites js, when it is JSON, with its scalars changed as
// edits say, pairs of bytes (which scalar, which change), and writes it
// back in cryptsetup's compact form. Byte-wise mutation alone seldom
// yields a header in that form, which the direct open declines at once;
// these edits give headers of the right form with other values, the ones
// whose reading must agree with cryptsetup's.
func editValues(js, edits []byte) []byte {
	if len(edits) < 2 {
		return js
	}
	var out bytes.Buffer
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	type level struct {
		object bool
		n      int // values (arrays) or keys and values (objects) so far
	}
	var stack []level
	scalar := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return js
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			switch d, closing := tok.(json.Delim); {
			case closing && (d == '}' || d == ']'):
			case top.object && top.n%2 == 1:
				out.WriteByte(':')
			case top.n > 0:
				out.WriteByte(',')
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			out.WriteRune(rune(t))
			if t == '{' || t == '[' {
				stack = append(stack, level{object: t == '{'})
				continue
			}
			stack = stack[:len(stack)-1]
		default:
			for i := 0; i+1 < len(edits); i += 2 {
				if int(edits[i]) == scalar {
					tok = editScalar(tok, edits[i+1])
				}
			}
			scalar++
			b, _ := compactJSON(tok)
			out.Write(b)
		}
		if len(stack) > 0 {
			stack[len(stack)-1].n++
		}
	}
	return out.Bytes()
}

// The values editScalar picks from: those of the header cryptvol writes
// and their near neighbours.
var (
	fuzzWords   = []string{"0", "1", "2", "31", "32", "luks2", "luks1", "pbkdf2", "argon2id", "sha256", "sha1", "raw", "crypt", "dynamic", "aes-xts-plain64", "cryptvol-kmip", "", "12288", "4096", "32768", "290816", "258048", "262144", "4194304", "4161536", "16777216", "16744448", "1048576", "4190208"}
	fuzzNumbers = []int64{0, 1, 32, 64, 512, 1000, 1001, 4000, 3999, 4096, 1 << 30, 1<<58 + 8}
)

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func editScalar(tok json.Token, c byte) json.Token {
	switch v := tok.(type) {
	case json.Number:
		return json.Number(fmt.Sprint(fuzzNumbers[int(c)%len(fuzzNumbers)]))
	case string:
		if len(v) == 44 && c >= 128 {
			// A base64 salt or digest of 32 bytes, one character changed.
			b := []byte(v)
			b[int(c-128)%42] = b64Alphabet[int(c)*7%len(b64Alphabet)]
			return string(b)
		}
		return fuzzWords[int(c)%len(fuzzWords)]
	}
	return tok
}

// fuzzKeys are the template's passphrases: fixed, so that every fuzz
// worker process opens the same template.
func fuzzKeys() [][]byte {
	var keys [][]byte
	for _, label := range []string{"keyslot 0", "keyslot 1"} {
		k := sha256.Sum256([]byte(label))
		keys = append(keys, k[:KeySize])
	}
	return keys
}

// template is the image the fuzz target rewrites the JSON of, and the
// metadata cryptsetup wrote on it: after luksFormat, after luksAddKey of
// keyslot 1, and after the token moved to keyslot 1 and keyslot 0 was
// killed (the image keeps the material of both).
type template struct {
	image []byte
	seeds [][]byte
}

// fuzzTemplate makes the template once and keeps it in a directory every
// worker process of one fuzz run reads (each runs this setup again, and a
// luksFormat of its own would give it other salts and keys than the seed
// corpus the coordinator hands it).
func fuzzTemplate(f testing.TB) *template {
	dir := filepath.Join(os.TempDir(), "cryptvol-luks-fuzz-template")
	if _, err := os.Stat(filepath.Join(dir, "image")); err != nil {
		makeTemplate(f, dir)
	}
	tpl := &template{}
	var err error
	if tpl.image, err = os.ReadFile(filepath.Join(dir, "image")); err != nil {
		f.Fatal(err)
	}
	for i := range 3 {
		js, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("seed%d.json", i)))
		if err != nil {
			f.Fatal(err)
		}
		tpl.seeds = append(tpl.seeds, js)
	}
	return tpl
}

func makeTemplate(f testing.TB, dir string) {
	ctx := context.Background()
	tmp, err := os.MkdirTemp(os.TempDir(), "cryptvol-luks-fuzz-template.*")
	if err != nil {
		f.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	img, keys, c := filepath.Join(tmp, "image"), fuzzKeys(), New()
	if err := os.WriteFile(img, make([]byte, 5<<20), 0o600); err != nil {
		f.Fatal(err)
	}
	seed := func(i int) {
		b, err := os.ReadFile(img)
		if err != nil {
			f.Fatal(err)
		}
		js := b[binHeaderSize:hdrSizeFormat]
		if err := os.WriteFile(filepath.Join(tmp, fmt.Sprintf("seed%d.json", i)), js[:bytes.IndexByte(js, 0)], 0o600); err != nil {
			f.Fatal(err)
		}
	}
	if err := c.Format(ctx, img, keys[0], Token{KeyID: "k1", Volume: "v1"}); err != nil {
		f.Fatal(err)
	}
	seed(0)
	if err := c.AddKey(ctx, img, keys[0], keys[1], 1); err != nil {
		f.Fatal(err)
	}
	seed(1)
	image, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	if err := c.SetToken(ctx, img, 0, Token{KeyID: "k2", Volume: "v1"}, 1); err != nil {
		f.Fatal(err)
	}
	if err := c.KillSlot(ctx, img, 0); err != nil {
		f.Fatal(err)
	}
	seed(2)
	if err := os.WriteFile(img, image, 0o600); err != nil {
		f.Fatal(err)
	}
	// Another process may have made it meanwhile: either is the template.
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, os.ErrExist) && !os.IsExist(err) {
		if _, serr := os.Stat(filepath.Join(dir, "image")); serr != nil {
			f.Fatal(err)
		}
	}
}

// writeJSON puts js into both copies of the header and checksums them.
func (d *diffImage) writeJSON(js []byte) error {
	if len(js) >= hdrSizeFormat-binHeaderSize {
		return fmt.Errorf("%d bytes of JSON", len(js))
	}
	f, err := os.OpenFile(d.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for i, magic := range [][]byte{magicPrimary, magicSecondary} {
		b := make([]byte, hdrSizeFormat)
		if _, err := f.ReadAt(b[:binHeaderSize], int64(i*hdrSizeFormat)); err != nil {
			return err
		}
		copy(b[offMagic:], magic)
		binary.BigEndian.PutUint64(b[offSeqID:], d.seqID)
		copy(b[binHeaderSize:], js)
		clear(b[offCsum : offCsum+csumLen])
		sum := sha256.Sum256(b)
		copy(b[offCsum:], sum[:])
		if _, err := f.WriteAt(b, int64(i*hdrSizeFormat)); err != nil {
			return err
		}
	}
	return nil
}

// reading is what one side makes of the header: the table's text for a
// device 253:7 of the image's size, and the volume key each passphrase
// opens (nil: none).
type reading struct {
	table string
	vks   [][]byte
}

// maxUnlockAlloc bounds what the direct path allocates to read a header
// and try two passphrases: the two keyslots' material and copies of it.
const maxUnlockAlloc = 16 << 20

func (d *diffImage) direct() (*reading, error) {
	f, err := os.Open(d.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	js, uuid, hdrSize, err := readHeader(f)
	if err != nil {
		return nil, err
	}
	p, err := parsePlain(js, uuid, hdrSize)
	if err != nil {
		return nil, err
	}
	a, err := p.activation("m", 5<<20, 253, 7, OpenOptions{})
	if err != nil {
		return nil, err
	}
	r := &reading{table: string(a.params)}
	for _, k := range d.keys {
		vk, err := p.unlock(f, k)
		if err != nil && !errors.Is(err, errNoKeyslot) {
			return nil, err
		}
		r.vks = append(r.vks, vk)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > maxUnlockAlloc {
		return nil, fmt.Errorf("the direct path allocated %d bytes, more than %d", n, maxUnlockAlloc)
	}
	return r, nil
}

// cryptsetup reads the header with cryptsetup: its JSON as cryptsetup
// parsed it, and the volume key for each passphrase.
func (d *diffImage) cryptsetup(ctx context.Context) (*reading, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "cryptsetup", "luksDump", "--dump-json-metadata", d.path).Output()
	if err != nil {
		return nil, fmt.Errorf("luksDump: %w", err)
	}
	var h struct {
		Keyslots map[string]struct {
			KeySize int `json:"key_size"`
		} `json:"keyslots"`
		Segments map[string]struct {
			Offset     string `json:"offset"`
			IVTweak    string `json:"iv_tweak"`
			Encryption string `json:"encryption"`
			SectorSize int    `json:"sector_size"`
		} `json:"segments"`
		Digests map[string]json.RawMessage `json:"digests"`
	}
	if err := json.Unmarshal(out, &h); err != nil {
		return nil, err
	}
	if d.uuid == "" {
		uuid, err := exec.CommandContext(ctx, "cryptsetup", "luksUUID", d.path).Output()
		if err != nil {
			return nil, fmt.Errorf("luksUUID: %w", err)
		}
		d.uuid = string(bytes.TrimSpace(uuid))
	}
	seg, keySize, digest := h.Segments["0"], 0, ""
	for _, ks := range h.Keyslots {
		keySize = ks.KeySize
	}
	for id := range h.Digests {
		digest = id
	}
	var offset uint64
	fmt.Sscan(seg.Offset, &offset)
	r := &reading{table: fmt.Sprintf("%s :%d:logon:cryptsetup:%s-d%s %s 253:7 %d 1 sector_size:%d",
		seg.Encryption, keySize, d.uuid, digest, seg.IVTweak, offset/512, seg.SectorSize)}
	if len(h.Segments) != 1 || len(h.Digests) != 1 {
		r.table = fmt.Sprintf("%d segments, %d digests", len(h.Segments), len(h.Digests))
	}
	for _, k := range d.keys {
		vkFile := filepath.Join(filepath.Dir(d.path), "vk")
		cmd := exec.CommandContext(ctx, "cryptsetup", "luksDump", "--dump-volume-key", "--volume-key-file", vkFile, "--batch-mode", "--key-file", "-", d.path)
		cmd.Stdin = bytes.NewReader(k)
		if err := cmd.Run(); err != nil {
			r.vks = append(r.vks, nil)
			continue
		}
		vk, err := os.ReadFile(vkFile)
		os.Remove(vkFile)
		if err != nil {
			return nil, err
		}
		r.vks = append(r.vks, vk)
	}
	return r, nil
}
