package lvm

import (
	"errors"
	"fmt"
	"strconv"
)

// The text a metadata area holds is lvm2's config syntax (libdm's
// libdm-config.c, which writes and reads it): sections "name { ... }",
// assignments "key = value" where a value is a number, a quoted string
// (backslash escapes the next character) or a list "[v, v]", and comments
// from '#' to the end of the line. This is a reader of that syntax only,
// enough to take the group's LVs from it (vglvs.go); what the values mean
// is lvm2's lib/format_text/import_vsn1.c.

// cfgSection is one section: its assignments by key and its subsections
// in the order written.
type cfgSection struct {
	name   string
	values map[string]cfgValue
	subs   []*cfgSection
}

// cfgValue is a number, a string or a list of values.
type cfgValue struct {
	isList bool
	isStr  bool
	str    string // a string, or a number's digits
	list   []cfgValue
}

// maxCfgDepth bounds nesting: lvm's own texts go four deep (group,
// logical_volumes, LV, segment); a deeper text is not lvm's.
const maxCfgDepth = 16

type cfgParser struct {
	text []byte
	pos  int
}

// parseConfig reads a whole text into its top-level section.
func parseConfig(text []byte) (*cfgSection, error) {
	p := &cfgParser{text: text}
	top := &cfgSection{values: map[string]cfgValue{}}
	if err := p.body(top, 0); err != nil {
		return nil, fmt.Errorf("LVM metadata text at byte %d: %w", p.pos, err)
	}
	return top, nil
}

// Token kinds: punctuation is its own byte; words and strings are these.
const (
	tokEOF  = 0
	tokWord = 'w'
	tokStr  = 's'
)

// next returns the next token's kind and, for words and strings, its text.
func (p *cfgParser) next() (byte, string, error) {
	for p.pos < len(p.text) {
		c := p.text[p.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0:
			p.pos++
		case c == '#':
			for p.pos < len(p.text) && p.text[p.pos] != '\n' {
				p.pos++
			}
		case c == '{' || c == '}' || c == '[' || c == ']' || c == '=' || c == ',':
			p.pos++
			return c, "", nil
		case c == '"' || c == '\'':
			return p.quoted(c)
		default:
			start := p.pos
			for p.pos < len(p.text) && !isCfgDelim(p.text[p.pos]) {
				p.pos++
			}
			return tokWord, string(p.text[start:p.pos]), nil
		}
	}
	return tokEOF, "", nil
}

func isCfgDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', 0, '#', '{', '}', '[', ']', '=', ',', '"', '\'':
		return true
	}
	return false
}

func (p *cfgParser) quoted(q byte) (byte, string, error) {
	p.pos++ // the opening quote
	var s []byte
	for p.pos < len(p.text) {
		c := p.text[p.pos]
		p.pos++
		switch {
		case c == q:
			return tokStr, string(s), nil
		case c == '\\' && p.pos < len(p.text):
			s = append(s, p.text[p.pos])
			p.pos++
		default:
			s = append(s, c)
		}
	}
	return 0, "", errors.New("unterminated string")
}

// body reads assignments and subsections into s until its closing brace
// (depth > 0) or the end of the text (depth 0).
func (p *cfgParser) body(s *cfgSection, depth int) error {
	for {
		kind, word, err := p.next()
		if err != nil {
			return err
		}
		switch {
		case kind == tokEOF && depth == 0:
			return nil
		case kind == tokEOF:
			return fmt.Errorf("section %q not closed", s.name)
		case kind == '}' && depth > 0:
			return nil
		case kind != tokWord:
			return fmt.Errorf("want a key or a section name, found %q", kind)
		}
		kind, _, err = p.next()
		if err != nil {
			return err
		}
		switch kind {
		case '=':
			v, err := p.value(false)
			if err != nil {
				return fmt.Errorf("%s: %w", word, err)
			}
			s.values[word] = v
		case '{':
			if depth+1 >= maxCfgDepth {
				return fmt.Errorf("sections nested deeper than %d", maxCfgDepth)
			}
			sub := &cfgSection{name: word, values: map[string]cfgValue{}}
			if err := p.body(sub, depth+1); err != nil {
				return err
			}
			s.subs = append(s.subs, sub)
		default:
			return fmt.Errorf("%s: want '=' or '{' after it", word)
		}
	}
}

// value reads a number, a string or (outside a list) a list.
func (p *cfgParser) value(inList bool) (cfgValue, error) {
	kind, word, err := p.next()
	if err != nil {
		return cfgValue{}, err
	}
	switch {
	case kind == tokStr:
		return cfgValue{isStr: true, str: word}, nil
	case kind == tokWord:
		return cfgValue{str: word}, nil
	case kind == '[' && !inList:
		v := cfgValue{isList: true}
		for first := true; ; first = false {
			// Peek for the list's end: "[]" and a trailing "]".
			save := p.pos
			k, _, err := p.next()
			if err != nil {
				return cfgValue{}, err
			}
			if k == ']' {
				return v, nil
			}
			if !first {
				if k != ',' {
					return cfgValue{}, errors.New("list: want ',' or ']'")
				}
			} else {
				p.pos = save
			}
			item, err := p.value(true)
			if err != nil {
				return cfgValue{}, err
			}
			v.list = append(v.list, item)
		}
	}
	return cfgValue{}, fmt.Errorf("want a value, found %q", kind)
}

// sub returns the first subsection called name, or nil.
func (s *cfgSection) sub(name string) *cfgSection {
	for _, c := range s.subs {
		if c.name == name {
			return c
		}
	}
	return nil
}

// subOrNil is sub on a section that may be nil (a group without LVs has
// no logical_volumes).
func (s *cfgSection) subOrNil(name string) *cfgSection {
	if s == nil {
		return nil
	}
	return s.sub(name)
}

// str returns the string assigned to key; ok is false when key is missing
// or not a string.
func (s *cfgSection) str(key string) (string, bool) {
	v, ok := s.values[key]
	if !ok || !v.isStr {
		return "", false
	}
	return v.str, true
}

// num returns the unsigned number assigned to key, or an error naming it.
func (s *cfgSection) num(key string) (uint64, error) {
	v, ok := s.values[key]
	if !ok || v.isStr || v.isList {
		return 0, fmt.Errorf("section %s: no number %s", s.name, key)
	}
	n, err := strconv.ParseUint(v.str, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("section %s: %s = %q is not a number", s.name, key, v.str)
	}
	return n, nil
}

// strs returns the strings of the list assigned to key (nil when key is
// missing), or an error when it is not a list of strings.
func (s *cfgSection) strs(key string) ([]string, error) {
	v, ok := s.values[key]
	if !ok {
		return nil, nil
	}
	if !v.isList {
		return nil, fmt.Errorf("section %s: %s is not a list", s.name, key)
	}
	out := make([]string, 0, len(v.list))
	for _, e := range v.list {
		if !e.isStr {
			return nil, fmt.Errorf("section %s: %s holds %q, not a string", s.name, key, e.str)
		}
		out = append(out, e.str)
	}
	return out, nil
}
