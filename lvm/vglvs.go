package lvm

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"time"
)

// MetadataLVs returns what `lvs @tag` reports of the group (every LV when
// tag is ""), taken from the metadata text on the group's devices without
// running lvm, and the mark (MetadataMark) of that text. Activation is not
// metadata: Active is false in every LV, and Active(lv) asks the kernel
// (for an LV with a device node: not a pool).
//
// Why: every lvm command is a program start that reads and checks this same
// text, a cost that grows with the number of volumes in the group, and the
// view of volumes (volume/lvview.go) must re-list after every commit, its
// own included. The text is the one lvm itself would read: the current one
// a metadata area's header points at, its checksum verified, so a text
// a commit is overwriting is never taken for the group's.
//
// Any error (a text this reader does not understand included) means:
// ask lvs. It runs no program once the group's devices are known.
func (c *Client) MetadataLVs(ctx context.Context, tag string) (string, []LV, error) {
	if tag != "" {
		if err := ValidateTag(tag); err != nil {
			return "", nil, err
		}
	}
	mark, g, err := c.currentGroup(ctx, true)
	if err != nil {
		return "", nil, err
	}
	lvs, err := lvsFromGroup(g.section, g.extent, c.vg, tag)
	if err != nil {
		return "", nil, fmt.Errorf("volume group %s: %w", c.vg, err)
	}
	return mark, lvs, nil
}

// lvsFromText reads the visible LVs of group vg carrying tag (all when tag
// is "") from its metadata text, as lvs reports them (lib/report): lvs
// without -a leaves out LVs without the VISIBLE status (a thin pool's
// _tdata and _tmeta, the _pmspare); lv_size is the LV's extents (summed
// over its segments; a thin LV's virtual extents) times the group's
// extent_size, which is in 512-byte sectors; lv_tags come sorted;
// pool_lv is a thin segment's thin_pool; a pool has no lv_path.
func lvsFromText(text []byte, vg, tag string) ([]LV, error) {
	g, extent, err := groupOf(text, vg)
	if err != nil {
		return nil, err
	}
	return lvsFromGroup(g, extent, vg, tag)
}

// lvsFromGroup is lvsFromText on the group's parsed section.
func lvsFromGroup(g *cfgSection, extent uint64, vg, tag string) ([]LV, error) {
	section := g.sub("logical_volumes")
	if section == nil {
		return nil, nil // lvm writes no logical_volumes section for a group without LVs
	}
	var lvs []LV
	for _, s := range section.subs {
		lv, visible, err := lvFromText(s, vg, extent)
		if err != nil {
			return nil, fmt.Errorf("metadata text: LV %s: %w", s.name, err)
		}
		if visible && (tag == "" || slices.Contains(lv.Tags, tag)) {
			lvs = append(lvs, lv)
		}
	}
	// lvs sorts its rows by group, then LV name (report/lvs_sort).
	slices.SortFunc(lvs, func(a, b LV) int { return strings.Compare(a.Name, b.Name) })
	return lvs, nil
}

func lvFromText(s *cfgSection, vg string, extent uint64) (LV, bool, error) {
	// The names are lvm's own (hidden sub-LVs included, which
	// ValidateLVName refuses to users); only one that could not be a
	// path element is not.
	if s.name == "" || strings.ContainsAny(s.name, "/\x00") {
		return LV{}, false, fmt.Errorf("LV name %q", s.name)
	}
	status, err := s.strs("status")
	if err != nil {
		return LV{}, false, err
	}
	id, ok := s.str("id")
	if !ok {
		return LV{}, false, errors.New("no id")
	}
	lv := LV{Name: s.name, VG: vg, Path: "/dev/" + vg + "/" + s.name, UUID: id}
	if lv.Tags, err = s.strs("tags"); err != nil {
		return LV{}, false, err
	}
	slices.Sort(lv.Tags)
	if _, ok := s.values["creation_time"]; ok {
		sec, err := s.num("creation_time")
		if err != nil || sec > 1<<62 {
			return LV{}, false, fmt.Errorf("bad creation_time: %v", err)
		}
		lv.Created = time.Unix(int64(sec), 0)
	}
	var extents uint64
	segments := 0
	for _, seg := range s.subs {
		if !strings.HasPrefix(seg.name, "segment") {
			continue
		}
		segments++
		n, err := seg.num("extent_count")
		if err != nil {
			return LV{}, false, err
		}
		if extents += n; extents < n {
			return LV{}, false, errors.New("extent_count overflows")
		}
		typ, _ := seg.str("type")
		if strings.HasSuffix(typ, "-pool") {
			lv.Path = "" // a pool (thin-pool, cache-pool, vdo-pool) has no device node, and lvs no lv_path
		}
		if typ == "thin" && lv.Pool == "" {
			if lv.Pool, ok = seg.str("thin_pool"); !ok {
				return LV{}, false, errors.New("thin segment without thin_pool")
			}
		}
	}
	if want, err := s.num("segment_count"); err != nil || want != uint64(segments) {
		return LV{}, false, fmt.Errorf("segment_count says %d, found %d segments (%v)", want, segments, err)
	}
	hi, sectors := bits.Mul64(extents, extent)
	if hi != 0 || sectors > 1<<54 {
		return LV{}, false, errors.New("size overflows")
	}
	lv.Size = sectors * 512
	return lv, slices.Contains(status, "VISIBLE"), nil
}

// textSegtype returns the type of LV name's first segment in the metadata
// text ("" when the text has no such LV), reading the text only when the
// group's devices are already known: never a program.
func (c *Client) textSegtype(ctx context.Context, name string) (string, error) {
	_, g, err := c.currentGroup(ctx, false)
	if err != nil {
		return "", err
	}
	lv := g.section.sub("logical_volumes").subOrNil(name)
	if lv == nil {
		return "", nil
	}
	seg := lv.sub("segment1")
	if seg == nil {
		return "", fmt.Errorf("metadata text: LV %s has no segment1", name)
	}
	typ, ok := seg.str("type")
	if !ok || typ == "" {
		return "", fmt.Errorf("metadata text: LV %s: segment1 has no type", name)
	}
	return typ, nil
}

// parsedGroup is the group's section of one metadata text, parsed, and the
// group's extent size in 512-byte sectors. Nothing changes it once made:
// readers share it without a lock.
type parsedGroup struct {
	mark    string
	section *cfgSection
	extent  uint64
}

// currentGroup returns the group's current metadata text, parsed, and its
// mark. A text is parsed once: while the mark (one sector per metadata
// area) is unchanged, so is the text, and the last parse answers: a start
// needs the same text for the group check, the thin pool check and
// reconciliation, and at 1,000 volumes the text is hundreds of KB. learn is
// as for currentText.
func (c *Client) currentGroup(ctx context.Context, learn bool) (string, *parsedGroup, error) {
	c.mu.Lock()
	devs, last := c.pvs, c.parsed
	c.mu.Unlock()
	if devs != nil && last != nil {
		if mark, err := c.marks.read(devs, c.vg); err == nil && mark == last.mark {
			return mark, last, nil
		}
	}
	mark, text, err := c.currentText(ctx, learn)
	if err != nil {
		return "", nil, err
	}
	g, extent, err := groupOf(text, c.vg)
	if err != nil {
		return "", nil, err
	}
	p := &parsedGroup{mark: mark, section: g, extent: extent}
	c.mu.Lock()
	c.parsed = p
	c.mu.Unlock()
	return mark, p, nil
}

// currentText reads the group's current metadata text and its mark from the
// group's devices. With learn, devices not known yet are learned first
// (MetadataMark: one pvs); without it, that is an error: no program runs.
func (c *Client) currentText(ctx context.Context, learn bool) (string, []byte, error) {
	c.mu.Lock()
	devs := c.pvs
	c.mu.Unlock()
	if devs == nil {
		if !learn {
			return "", nil, errors.New("the group's devices are not known yet")
		}
		if _, err := c.MetadataMark(ctx); err != nil {
			return "", nil, err
		}
		c.mu.Lock()
		devs = c.pvs
		c.mu.Unlock()
	}
	return c.marks.readText(devs, c.vg)
}

// groupOf parses a metadata text and returns group vg's section, which
// must be the text's only one, and its extent size in 512-byte sectors.
func groupOf(text []byte, vg string) (*cfgSection, uint64, error) {
	top, err := parseConfig(text)
	if err != nil {
		return nil, 0, err
	}
	g := top.sub(vg)
	if g == nil || len(top.subs) != 1 {
		return nil, 0, fmt.Errorf("metadata text: want one section %q, found %d sections", vg, len(top.subs))
	}
	extent, err := g.num("extent_size")
	if err != nil {
		return nil, 0, fmt.Errorf("metadata text: %w", err)
	}
	if extent == 0 {
		return nil, 0, errors.New("metadata text: extent_size 0")
	}
	return g, extent, nil
}
