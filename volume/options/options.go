// Package options owns the grammar of what users type for a volume: its
// name, the --opt options of a create (size, fs, thin, tenant, the
// filesystem options of fsoptions.go and the clone options of clone.go),
// and sizes. It checks everything that needs no volume group, KMIP server
// or other volume, so that a refusal comes before anything is made, in a
// message that says what is allowed; package volume decides what the
// parsed options make.
//
// Concurrency: every function is pure (no state, no I/O), safe to call
// from any goroutine. The fuzz targets in options_test.go hold it to that
// grammar beyond the committed corpus in testdata/fuzz.
package options

import (
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strings"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/mount"
)

// Filesystems cryptvol can make, and the smallest volume each fits in. The
// LUKS2 header takes 4 MiB of the LV (16 MiB on volumes made before
// luks.keyslotsArea, which these minimums still allow for); xfsprogs 6
// refuses filesystems under 300 MiB, so xfs needs 320 MiB of LV.
const (
	FSExt4 = "ext4"
	FSXFS  = "xfs"
)

var minSize = map[string]uint64{
	FSExt4: 64 << 20,
	FSXFS:  320 << 20,
}

// MinSize returns the smallest size accepted for a volume with filesystem fs
// (0 for an unsupported filesystem).
func MinSize(fs string) uint64 { return minSize[fs] }

// Option names accepted by Parse.
const (
	OptSize      = "size"
	OptFS        = "fs"
	OptThin      = "thin"
	OptTenant    = "tenant"
	OptMountOpts = "mountopts"
	OptUID       = "uid"
	OptGID       = "gid"
	OptMode      = "mode"
	OptIntegrity = "integrity"
	OptDiscard   = "discard"
	// mkfs choices (mount.MkfsOptions)
	OptInodeRatio      = "inode_ratio"
	OptReservedPercent = "reserved_percent"
	OptInodeMaxPct     = "inode_maxpct"
	// a clone of another volume (clone.go)
	OptFrom      = "from"
	OptReencrypt = "reencrypt"
	OptReadOnly  = "readonly"
)

var allowedOptions = []string{OptSize, OptFS, OptThin, OptTenant, OptMountOpts, OptUID, OptGID, OptMode, OptIntegrity, OptDiscard,
	OptInodeRatio, OptReservedPercent, OptInodeMaxPct, OptFrom, OptReencrypt, OptReadOnly}

// maxNameLen keeps "cv-"+name and "cryptvol-"+name far below LVM's and
// device-mapper's 127-byte limits.
const maxNameLen = 64

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// reservedSubstrings are refused by lvm2 anywhere in an LV name (see
// lvm2's apply_lvname_restrictions); refusing them here gives a clear error
// instead of a failed lvcreate.
var reservedSubstrings = []string{
	"_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_iorig", "_mimage", "_mlog",
	"_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin",
	"_wcorig", "snapshot", "pvmove",
}

// ValidateName checks a docker volume name before it reaches any command.
func ValidateName(name string) error {
	if name == "" {
		return errors.New("volume name is empty (allowed: 1-64 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)")
	}
	if name == "." || name == ".." {
		return fmt.Errorf("volume name %q is not allowed", name)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("volume name %q is %d characters long (allowed: at most %d)", truncate(name, 80), len(name), maxNameLen)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("volume name %q is not allowed (allowed: 1-64 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)", name)
	}
	for _, s := range reservedSubstrings {
		if strings.Contains(name, s) {
			return fmt.Errorf("volume name %q contains %q, which LVM reserves (not allowed anywhere in a name: %s)",
				name, s, strings.Join(reservedSubstrings, " "))
		}
	}
	return nil
}

// Options is a parsed, validated set of volume options. The *Set fields say
// which options the user gave explicitly: an existing volume is compared only
// on those.
type Options struct {
	Size uint64 // bytes, before rounding to the VG's extent size
	FS   string // FSExt4 or FSXFS
	Thin bool
	// Tenant names the tenant whose own KMIP identity holds the key ("":
	// the plugin's identity).
	Tenant string
	// MountOpts are mount options from mount.AllowedOptions (fsoptions.go).
	MountOpts []string
	// Root is the owner and mode of the new filesystem's root directory.
	Root RootSpec
	// Integrity is "" or luks.IntegrityHMACSHA256 (fsoptions.go).
	Integrity string
	// Discard passes discards through to the LV (fsoptions.go).
	Discard bool
	// Mkfs are the mkfs choices (fsoptions.go).
	Mkfs mount.MkfsOptions
	// From names the volume this one is a clone of; Reencrypt gives the
	// clone a volume key of its own (volume/clone.go).
	From      string
	Reencrypt bool
	ReadOnly  bool // a read-only snapshot: opened --readonly, mounted ro
	SizeSet   bool
	FSSet     bool
	ThinSet   bool
	TenantSet bool
}

// Defaults are the configured values for options the user leaves out.
type Defaults struct {
	Size     uint64
	FS       string
	ThinPool string // "" when no thin pool is configured: thin volumes are refused
}

// Parse validates docker volume options against the defaults. It checks
// everything that does not depend on the volume group's free space (that
// is checked by volume's Create).
func Parse(opts map[string]string, d Defaults) (Options, error) {
	o := Options{Size: d.Size, FS: d.FS, Thin: d.ThinPool != ""}
	var unknown []string
	for k := range opts {
		switch k {
		case OptSize, OptFS, OptThin, OptTenant, OptMountOpts, OptUID, OptGID, OptMode, OptIntegrity, OptDiscard,
			OptInodeRatio, OptReservedPercent, OptInodeMaxPct, OptFrom, OptReencrypt, OptReadOnly:
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		for i, k := range unknown {
			unknown[i] = fmt.Sprintf("%q", truncate(k, 40))
		}
		return Options{}, fmt.Errorf("option %s is not supported (allowed options: %s)",
			strings.Join(unknown, ", "), strings.Join(allowedOptions, ", "))
	}
	if v, ok := opts[OptFS]; ok {
		if v != FSExt4 && v != FSXFS {
			return Options{}, fmt.Errorf("option fs=%q is not supported (allowed: %s, %s)", truncate(v, 40), FSExt4, FSXFS)
		}
		o.FS, o.FSSet = v, true
	}
	if v, ok := opts[OptThin]; ok {
		switch v {
		case "true":
			if d.ThinPool == "" {
				return Options{}, errors.New("option thin=true is not possible: no thin pool is configured (CRYPTVOL_THIN_POOL), so volumes are thick (allowed: thin=false)")
			}
			o.Thin = true
		case "false":
			o.Thin = false
		default:
			return Options{}, fmt.Errorf("option thin=%q is not valid (allowed: true, false)", truncate(v, 40))
		}
		o.ThinSet = true
	}
	if err := parseFSOptions(opts, &o); err != nil {
		return Options{}, err
	}
	if err := parseClone(opts, &o); err != nil {
		return Options{}, err
	}
	if v, ok := opts[OptTenant]; ok {
		if err := keys.ValidateTenant(v); err != nil {
			return Options{}, fmt.Errorf("option tenant: %w", err)
		}
		o.Tenant, o.TenantSet = v, true
	}
	if v, ok := opts[OptSize]; ok {
		n, err := ParseSize(v)
		if err != nil {
			return Options{}, fmt.Errorf("option size: %w", err)
		}
		o.Size, o.SizeSet = n, true
	}
	if min := minSize[o.FS]; o.Size < min {
		what := fmt.Sprintf("option size=%q", opts[OptSize])
		if !o.SizeSet {
			what = "the default size " + FormatSize(o.Size)
		}
		return Options{}, fmt.Errorf("%s is too small for %s: LUKS2 and the filesystem need at least %s (allowed: %s or more)",
			what, o.FS, FormatSize(min), FormatSize(min))
	}
	return o, nil
}

// maxSizeInput bounds the text ParseSize looks at; no real size needs more.
const maxSizeInput = 32

var sizeRE = regexp.MustCompile(`^([0-9]+)(?:\.([0-9]+))?\s*([KkMmGgTt]i?[Bb]?|[Bb])?$`)

var unitShift = map[byte]uint{'k': 10, 'm': 20, 'g': 30, 't': 40}

// ParseSize parses a size such as 512M, 10G, 1.5G, 512MiB or 1GB. Units are
// binary whatever their spelling (1GB = 1 GiB), because that is what LVM
// means by them; a bare number is bytes. Fractions are rounded up to a byte.
func ParseSize(s string) (uint64, error) {
	const allowed = "allowed: a number with an optional fraction and a unit K, M, G or T (binary; optional i/B suffix), e.g. 512M, 10G, 1.5G, 512MiB"
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("size is empty (%s)", allowed)
	}
	if len(t) > maxSizeInput {
		return 0, fmt.Errorf("size %q is not valid (%s)", truncate(t, maxSizeInput), allowed)
	}
	m := sizeRE.FindStringSubmatch(t)
	if m == nil {
		return 0, fmt.Errorf("size %q is not valid (%s)", t, allowed)
	}
	num := m[1]
	if m[2] != "" {
		num += "." + m[2]
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q is not valid (%s)", t, allowed)
	}
	if u := m[3]; u != "" && u != "B" && u != "b" {
		shift := unitShift[strings.ToLower(u[:1])[0]]
		r.Mul(r, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), shift)))
	}
	// Round up to whole bytes.
	q, rem := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if rem.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if q.Sign() == 0 {
		return 0, fmt.Errorf("size %q is zero (%s)", t, allowed)
	}
	if !q.IsUint64() {
		return 0, fmt.Errorf("size %q is too large", t)
	}
	return q.Uint64(), nil
}

// FormatSize renders bytes for humans in binary units, e.g. "1.5 GiB".
func FormatSize(b uint64) string {
	const units = "KMGTPE"
	if b < 1024 {
		return fmt.Sprintf("%d B", b)
	}
	v := float64(b)
	i := -1
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := fmt.Sprintf("%.1f", v)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string(units[i]) + "iB"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
