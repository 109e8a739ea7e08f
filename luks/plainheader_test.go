package luks

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"
)

// metadataOf reads img's header as Open does.
func metadataOf(t *testing.T, img string) (js []byte, uuid string, hdrSize uint64) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	js, uuid, hdrSize, err = readHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	return js, uuid, hdrSize
}

// The headers cryptvol itself leaves behind stay on the direct path: a
// fresh format, and a rotation's, whose new keyslot comes after the old in
// the JSON whatever its number, with the token pointed at it.
func TestHostParsePlainTakesWhatCryptvolWrites(t *testing.T) {
	ctx := context.Background()
	key := randomKey(t)
	img, _ := formatted(t, key)
	js, uuid, hdrSize := metadataOf(t, img)
	if _, err := parsePlain(js, uuid, hdrSize); err != nil {
		t.Fatalf("a fresh format: %v", err)
	}
	c := New()
	next := randomKey(t)
	for _, step := range []func() error{
		func() error { return c.AddKey(ctx, img, key, next, 1) },
		func() error { return c.SetToken(ctx, img, 0, Token{KeyID: "k2", Volume: "v1"}, 1) },
		func() error { return c.KillSlot(ctx, img, 0) },
		func() error { return c.AddKey(ctx, img, next, key, 0) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		js, uuid, hdrSize := metadataOf(t, img)
		p, err := parsePlain(js, uuid, hdrSize)
		if err != nil {
			t.Fatalf("after a rotation step: %v\n%s", err, js)
		}
		if p.slots[0].id > p.slots[len(p.slots)-1].id {
			t.Errorf("keyslots in the order %+v, want by number", p.slots)
		}
	}
	if js, _, _ := metadataOf(t, img); !bytes.Contains(js, []byte(`"keyslots":{"1":`)) {
		t.Fatalf("the rotated header does not list keyslot 1 first, so it does not test the order:\n%s", js)
	}
}

// Every value but the one cryptvol writes is cryptsetup's to read. The
// first cases come from a review: each is a value a laxer direct open would
// read, some into a table that maps the data over the header.
func TestHostParsePlainDeclinesEveryOtherValue(t *testing.T) {
	img, _ := formatted(t, randomKey(t))
	js, uuid, hdrSize := metadataOf(t, img)
	model := func() headerJSON {
		var h headerJSON
		if err := (&h).decode(js); err != nil {
			t.Fatal(err)
		}
		return h
	}
	if again, err := compactJSON(model()); err != nil || !bytes.Equal(again, js) {
		t.Fatalf("the model does not re-encode cryptsetup's JSON (%v):\n%s\n%s", err, again, js)
	}
	slot := func(h *headerJSON) *keyslotJSON { return &h.Keyslots[0].v }
	segment := func(h *headerJSON) *segmentJSON { return &h.Segments[0].v }
	digest := func(h *headerJSON) *digestJSON { return &h.Digests[0].v }
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	for name, change := range map[string]func(h *headerJSON){
		"stripes that wrap the area size": func(h *headerJSON) { slot(h).AF.Stripes = 1<<58 + 8 },
		"a billion iterations":            func(h *headerJSON) { slot(h).KDF.Iterations = 1 << 30 },
		"digest iterations":               func(h *headerJSON) { digest(h).Iterations = 1 << 30 },
		"a 1-byte digest":                 func(h *headerJSON) { digest(h).Digest = b64(1) },
		"a 16-byte keyslot salt":          func(h *headerJSON) { slot(h).KDF.Salt = b64(16) },
		"a 1-byte digest salt":            func(h *headerJSON) { digest(h).Salt = b64(1) },
		"iv_tweak":                        func(h *headerJSON) { segment(h).IVTweak = "1" },
		"data over the header":            func(h *headerJSON) { segment(h).Offset = "0" },
		"data inside the keyslots area":   func(h *headerJSON) { segment(h).Offset = "1048576" },
		"keyslots_size off 4096":          func(h *headerJSON) { h.Config.KeyslotsSize = "4161537" },
		"keyslots_size past 16 MiB":       func(h *headerJSON) { h.Config.KeyslotsSize = "33554432" },
		"json_size":                       func(h *headerJSON) { h.Config.JSONSize = "28672" },
		"area in the header":              func(h *headerJSON) { slot(h).Area.Offset = "4096" },
		"area past the keyslots area":     func(h *headerJSON) { slot(h).Area.Offset = "4096000" },
		"area offset unaligned":           func(h *headerJSON) { slot(h).Area.Offset = "33280" },
		"area too small":                  func(h *headerJSON) { slot(h).Area.Size = "4096" },
		"overlapping areas": func(h *headerJSON) {
			h.Keyslots = append(h.Keyslots, entry[keyslotJSON]{"1", h.Keyslots[0].v})
			digest(h).Keyslots = []string{"0", "1"}
		},
		"keyslot id 01":          func(h *headerJSON) { h.Keyslots[0].id = "01"; digest(h).Keyslots = []string{"01"} },
		"keyslot id 32":          func(h *headerJSON) { h.Keyslots[0].id = "32"; digest(h).Keyslots = []string{"32"} },
		"digest of no keyslot":   func(h *headerJSON) { digest(h).Keyslots = []string{} },
		"digest of keyslot 5":    func(h *headerJSON) { digest(h).Keyslots = []string{"0", "5"} },
		"digest keyslots null":   func(h *headerJSON) { digest(h).Keyslots = nil },
		"no keyslots":            func(h *headerJSON) { h.Keyslots = nil; digest(h).Keyslots = []string{} },
		"two digests":            func(h *headerJSON) { h.Digests = append(h.Digests, entry[digestJSON]{"1", *digest(h)}) },
		"two segments":           func(h *headerJSON) { h.Segments = append(h.Segments, entry[segmentJSON]{"1", *segment(h)}) },
		"segment 1":              func(h *headerJSON) { h.Segments[0].id = "1" },
		"fixed segment size":     func(h *headerJSON) { segment(h).Size = "1048576" },
		"other cipher":           func(h *headerJSON) { segment(h).Encryption = "serpent-xts-plain64" },
		"512-byte sectors":       func(h *headerJSON) { segment(h).SectorSize = 512 },
		"argon2":                 func(h *headerJSON) { slot(h).KDF.Type = "argon2id" },
		"af hash":                func(h *headerJSON) { slot(h).AF.Hash = "sha512" },
		"keyslot key size":       func(h *headerJSON) { slot(h).KeySize = 32 },
		"area key size":          func(h *headerJSON) { slot(h).Area.KeySize = 32 },
		"digest hash":            func(h *headerJSON) { digest(h).Hash = "sha1" },
		"token of another type":  func(h *headerJSON) { h.Tokens[0].v.Type = "systemd-tpm2" },
		"token of keyslot 7":     func(h *headerJSON) { h.Tokens[0].v.Keyslots = []string{"7"} },
		"token keyslots null":    func(h *headerJSON) { h.Tokens[0].v.Keyslots = nil },
		"token without a key id": func(h *headerJSON) { h.Tokens[0].v.KMIPID = "" },
	} {
		h := model()
		change(&h)
		b, err := compactJSON(h)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := parsePlain(b, uuid, hdrSize); !errors.Is(err, errNotDirect) {
			t.Errorf("%s: %v (%+v), want errNotDirect", name, err, p)
		}
	}
	// A forged uuid must not add words to the table.
	for _, u := range []string{"", uuid[:35] + " ", "00000000-0000-0000-0000-000000000000 1 allow_discards", "0000000g-0000-0000-0000-000000000000"} {
		if _, err := parsePlain(js, u, hdrSize); !errors.Is(err, errNotDirect) {
			t.Errorf("uuid %q: %v, want errNotDirect", u, err)
		}
	}
	if _, err := parsePlain(js, uuid, 2*hdrSize); !errors.Is(err, errNotDirect) {
		t.Errorf("a 32 KiB header: %v, want errNotDirect", err)
	}
}

// JSON that json-c would read differently from Go's decoder, or that is
// not in the form cryptsetup writes, is declined whatever its values.
func TestHostParsePlainDeclinesOtherSpellings(t *testing.T) {
	img, _ := formatted(t, randomKey(t))
	js, uuid, hdrSize := metadataOf(t, img)
	seg := `"offset":"4194304",`
	if !bytes.Contains(js, []byte(seg)) {
		t.Fatalf("no %s in %s", seg, js)
	}
	for name, edit := range map[string][2]string{
		// Go matches keys case-insensitively and the last one wins:
		// cryptsetup reads offset 4194304, Go's decoder would read 0.
		"a case variant after the key":  {seg, seg + `"OFFSET":"0",`},
		"a repeated key":                {seg, seg + `"offset":"0",`},
		"an escaped digit":              {`"iv_tweak":"0"`, `"iv_tweak":"\u0030"`},
		"a space":                       {seg, `"offset": "4194304",`},
		"a keyslot priority":            {`"type":"luks2",`, `"type":"luks2","priority":2,`},
		"persistent flags":              {`"config":{`, `"config":{"flags":["allow-discards"],`},
		"requirements":                  {`"config":{`, `"config":{"requirements":{"mandatory":["online-reencrypt-v2"]},`},
		"integrity":                     {`"sector_size":4096`, `"sector_size":4096,"integrity":{"type":"hmac(sha256)"}`},
		"a fractional number":           {`"stripes":4000`, `"stripes":4000.0`},
		"an exponent":                   {`"stripes":4000`, `"stripes":4e3`},
		"text after the object":         {`"}}}`, `"}}}{}`},
		"a case variant of the section": {`"segments":{`, `"SEGMENTS":{`},
	} {
		if !bytes.Contains(js, []byte(edit[0])) {
			t.Fatalf("%s: no %s in %s", name, edit[0], js)
		}
		b := bytes.Replace(js, []byte(edit[0]), []byte(edit[1]), 1)
		if p, err := parsePlain(b, uuid, hdrSize); !errors.Is(err, errNotDirect) {
			t.Errorf("%s: %v (%+v), want errNotDirect", name, err, p)
		}
	}
	if strings.Contains(string(js), " ") {
		t.Errorf("cryptsetup's JSON has a space, so the spelling test above proves nothing: %s", js)
	}
}
