package luks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// dumpJSON is the part of the LUKS2 JSON metadata that Inspect reads, as
// `luksDump --dump-json-metadata` prints it and as it is stored on disk.
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
		Integrity  *struct {
			Type string `json:"type"`
		} `json:"integrity"`
	} `json:"segments"`
	Config struct {
		Requirements struct {
			Mandatory []string `json:"mandatory"`
		} `json:"requirements"`
	} `json:"config"`
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
	if seg.Integrity != nil {
		h.Integrity = seg.Integrity.Type
	}
	// Every keyslot protects the same volume key, so the first tells its
	// size. With no keyslot left (after Erase) the size is unknown: 0.
	ks := sortedIDs(d.Keyslots)
	// A reencryption adds a keyslot of type "reencrypt" (key_size 1): the
	// volume key's size is a passphrase keyslot's.
	for _, id := range ks {
		if d.Keyslots[id].Type == "luks2" {
			h.KeyBits = d.Keyslots[id].KeySize * 8
			break
		}
	}
	for _, r := range d.Config.Requirements.Mandatory {
		if strings.HasPrefix(r, "online-reencrypt") {
			h.Reencrypting = true
		}
	}
	for _, id := range ks {
		n, err := strconv.Atoi(id)
		if err != nil {
			return Header{}, fmt.Errorf("LUKS2 keyslot id %q is not a number", id)
		}
		h.SlotIDs = append(h.SlotIDs, n)
	}
	for _, id := range sortedIDs(d.Tokens) {
		var tj tokenJSON
		if err := json.Unmarshal(d.Tokens[id], &tj); err != nil {
			return Header{}, fmt.Errorf("parse LUKS2 token %s: %w", id, err)
		}
		if tj.Type == TokenType {
			h.Token = &Token{KeyID: tj.KMIPID, Volume: tj.Volume}
			h.TokenID, _ = strconv.Atoi(id)
			break
		}
	}
	return h, nil
}

// Inspect reads the LUKS2 header of dev: from the device itself when both
// copies of the header are intact and in sync (header.go), otherwise from
// `cryptsetup luksDump`. A device without a header, or with a LUKS1 header,
// wraps ErrNotLUKS.
func (c *Cryptsetup) Inspect(ctx context.Context, dev string) (Header, error) {
	if err := validateDevice(dev); err != nil {
		return Header{}, err
	}
	if err := ctx.Err(); err != nil {
		return Header{}, fmt.Errorf("inspect %s: %w", dev, err)
	}
	if js, err := readMetadata(dev); err == nil {
		if h, err := parseDump(js); err == nil {
			return h, nil
		}
	}
	return c.dump(ctx, dev)
}

// dump is Inspect through `cryptsetup luksDump --dump-json-metadata`.
func (c *Cryptsetup) dump(ctx context.Context, dev string) (Header, error) {
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
