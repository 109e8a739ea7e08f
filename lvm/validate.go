package lvm

import (
	"fmt"
	"path/filepath"
	"strings"
)

// maxNameLen is lvm's NAME_LEN (128) minus the terminating NUL.
const maxNameLen = 127

// maxTagLen is the longest tag lvm accepts.
const maxTagLen = 1024

// reservedLVSubstrings are the suffixes lvm gives its hidden sub-LVs; lvm
// refuses user LV names containing them.
var reservedLVSubstrings = []string{
	"_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_iorig", "_mimage", "_mlog",
	"_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig",
}

// reservedLVPrefixes are LV name prefixes lvm keeps for itself.
var reservedLVPrefixes = []string{"snapshot", "pvmove"}

func validName(kind, name string) error {
	const allowed = "letters, digits and + _ . - (not starting with '-', not \".\" or \"..\", at most 127 characters)"
	switch {
	case name == "":
		return fmt.Errorf("invalid %s name: empty; allowed: %s", kind, allowed)
	case len(name) > maxNameLen:
		return fmt.Errorf("invalid %s name %q: %d characters; allowed: %s", kind, name, len(name), allowed)
	case name == "." || name == "..":
		return fmt.Errorf("invalid %s name %q; allowed: %s", kind, name, allowed)
	case name[0] == '-':
		return fmt.Errorf("invalid %s name %q: starts with '-'; allowed: %s", kind, name, allowed)
	}
	for _, r := range name {
		if !isAlnum(r) && !strings.ContainsRune("+_.-", r) {
			return fmt.Errorf("invalid %s name %q: character %q; allowed: %s", kind, name, r, allowed)
		}
	}
	return nil
}

// ValidateVGName checks a volume group name against lvm's rules.
func ValidateVGName(name string) error { return validName("volume group", name) }

// ValidateLVName checks a logical volume name against lvm's rules, including
// the prefixes and substrings lvm reserves for its internal volumes.
func ValidateLVName(name string) error {
	if err := validName("logical volume", name); err != nil {
		return err
	}
	for _, p := range reservedLVPrefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("invalid logical volume name %q: the prefix %q is reserved by lvm", name, p)
		}
	}
	for _, s := range reservedLVSubstrings {
		if strings.Contains(name, s) {
			return fmt.Errorf("invalid logical volume name %q: %q is reserved by lvm", name, s)
		}
	}
	return nil
}

// ValidateTag checks an LV tag against lvm's rules.
func ValidateTag(tag string) error {
	const allowed = "letters, digits and _ + . - / = ! : & # (not starting with '-', at most 1024 characters)"
	switch {
	case tag == "":
		return fmt.Errorf("invalid tag: empty; allowed: %s", allowed)
	case len(tag) > maxTagLen:
		return fmt.Errorf("invalid tag %q: %d characters; allowed: %s", tag, len(tag), allowed)
	case tag[0] == '-':
		return fmt.Errorf("invalid tag %q: starts with '-'; allowed: %s", tag, allowed)
	}
	for _, r := range tag {
		if !isAlnum(r) && !strings.ContainsRune("_+.-/=!:&#", r) {
			return fmt.Errorf("invalid tag %q: character %q; allowed: %s", tag, r, allowed)
		}
	}
	return nil
}

// validateDevice accepts only clean absolute paths under /dev, so that a
// configuration typo cannot turn a regular file or a relative path into a PV.
func validateDevice(dev string) error {
	if !strings.HasPrefix(dev, "/dev/") || filepath.Clean(dev) != dev || len(dev) <= len("/dev/") {
		return fmt.Errorf("invalid device %q: must be a clean absolute path under /dev/, such as /dev/vdb", dev)
	}
	for _, r := range dev {
		if r < 0x21 || r == 0x7f {
			return fmt.Errorf("invalid device %q: contains whitespace or control characters", dev)
		}
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}
