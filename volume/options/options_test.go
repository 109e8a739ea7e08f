package options

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/cryptvol/cryptvol/mount"
)

func TestValidateName(t *testing.T) {
	ok := []string{"a", "A", "0", "v1", "my-vol", "my_vol", "my.vol", "a" + strings.Repeat("b", 63), "pg-data.2024"}
	for _, n := range ok {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	bad := map[string]string{
		"":                         "empty",
		".":                        "not allowed",
		"..":                       "not allowed",
		"-a":                       "starting with a letter or digit",
		"_a":                       "starting with a letter or digit",
		".hidden":                  "starting with a letter or digit",
		"a/b":                      "allowed: 1-64 characters",
		"a b":                      "allowed: 1-64 characters",
		"a\x00":                    "allowed: 1-64 characters",
		"vol\n":                    "allowed: 1-64 characters",
		"é":                        "allowed: 1-64 characters",
		strings.Repeat("a", 65):    "at most 64",
		"data_tmeta":               `"_tmeta"`,
		"x_rimage_1":               `"_rimage"`,
		"mysnapshot":               `"snapshot"`,
		"pvmove0":                  `"pvmove"`,
		"a_cdata":                  "LVM reserves",
		"a_pmspare":                "LVM reserves",
		"a_wcorig":                 "LVM reserves",
		"a_vorigin":                "LVM reserves",
		"a$(reboot)":               "not allowed",
		"a;rm":                     "not allowed",
		strings.Repeat("x", 10000): "at most 64",
	}
	for n, want := range bad {
		err := ValidateName(n)
		if err == nil {
			t.Errorf("ValidateName(%q) = nil, want error", n)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateName(%q) = %q, want it to mention %q", n, err, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	const Ki, Mi, Gi, Ti = 1 << 10, 1 << 20, 1 << 30, 1 << 40
	good := map[string]uint64{
		"512M": 512 * Mi, "512m": 512 * Mi, "512MiB": 512 * Mi, "512MB": 512 * Mi, "512Mi": 512 * Mi, "512mb": 512 * Mi,
		"10G": 10 * Gi, "1GB": Gi, "1.5G": Gi + Gi/2, "0.5G": Gi / 2, "1T": Ti, "2TiB": 2 * Ti, "64K": 64 * Ki,
		"1024": 1024, "1024B": 1024, "1b": 1, " 1G ": Gi, "1 G": Gi, "1.1G": 1181116007, // 1.1 GiB rounded up to a byte
		"0.0000001K": 1, "16777215T": 16777215 * Ti,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                      "empty",
		"   ":                   "empty",
		"0":                     "zero",
		"0G":                    "zero",
		"0.0M":                  "zero",
		"-1G":                   "not valid",
		"+1G":                   "not valid",
		"1,5G":                  "not valid",
		"1.G":                   "not valid",
		".5G":                   "not valid",
		"1GG":                   "not valid",
		"1P":                    "not valid",
		"1iB":                   "not valid",
		"G":                     "not valid",
		"1e9":                   "not valid",
		"0x10":                  "not valid",
		"NaN":                   "not valid",
		"Inf":                   "not valid",
		"16777216T":             "too large",
		"99999999999999999999":  "too large",
		strings.Repeat("9", 40): "not valid",
	}
	for in, want := range bad {
		_, err := ParseSize(in)
		if err == nil {
			t.Errorf("ParseSize(%q) = nil error, want %q", in, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSize(%q) = %q, want it to mention %q", in, err, want)
		}
		if !strings.Contains(err.Error(), "512M") && want == "not valid" {
			t.Errorf("ParseSize(%q) error %q does not show what is allowed", in, err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for in, want := range map[uint64]string{
		0: "0 B", 1023: "1023 B", 1024: "1 KiB", 64 << 20: "64 MiB", 1536 << 20: "1.5 GiB",
		1 << 30: "1 GiB", 10 << 40: "10 TiB", math.MaxUint64: "16 EiB",
	} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	thick := Defaults{Size: 1 << 30, FS: FSExt4}
	thin := Defaults{Size: 1 << 30, FS: FSExt4, ThinPool: "pool"}
	type tc struct {
		name string
		opts map[string]string
		d    Defaults
		want Options
		err  string
	}
	cases := []tc{
		{"defaults thick", nil, thick, Options{Size: 1 << 30, FS: FSExt4}, ""},
		{"defaults thin when pool", map[string]string{}, thin, Options{Size: 1 << 30, FS: FSExt4, Thin: true}, ""},
		{"size", map[string]string{"size": "512M"}, thick, Options{Size: 512 << 20, FS: FSExt4, SizeSet: true}, ""},
		{"xfs", map[string]string{"fs": "xfs", "size": "320M"}, thick, Options{Size: 320 << 20, FS: FSXFS, SizeSet: true, FSSet: true}, ""},
		{"thin false with pool", map[string]string{"thin": "false"}, thin, Options{Size: 1 << 30, FS: FSExt4, ThinSet: true}, ""},
		{"thin true with pool", map[string]string{"thin": "true"}, thin, Options{Size: 1 << 30, FS: FSExt4, Thin: true, ThinSet: true}, ""},
		{"thin false without pool", map[string]string{"thin": "false"}, thick, Options{Size: 1 << 30, FS: FSExt4, ThinSet: true}, ""},
		{"ext4 minimum", map[string]string{"size": "64M"}, thick, Options{Size: 64 << 20, FS: FSExt4, SizeSet: true}, ""},

		{"unknown option", map[string]string{"colour": "red"}, thick, Options{}, `option "colour" is not supported (allowed options: size, fs, thin, tenant, mountopts, uid, gid, mode, integrity, discard, inode_ratio, reserved_percent, inode_maxpct, from, reencrypt, readonly)`},
		{"two unknown", map[string]string{"b": "1", "a": "2", "size": "1G"}, thick, Options{}, `option "a", "b" is not supported`},
		{"case matters", map[string]string{"Size": "1G"}, thick, Options{}, `"Size" is not supported`},
		{"bad fs", map[string]string{"fs": "btrfs"}, thick, Options{}, `fs="btrfs" is not supported (allowed: ext4, xfs)`},
		{"empty fs", map[string]string{"fs": ""}, thick, Options{}, `allowed: ext4, xfs`},
		{"thin without pool", map[string]string{"thin": "true"}, thick, Options{}, "no thin pool is configured"},
		{"thin yes", map[string]string{"thin": "yes"}, thin, Options{}, "allowed: true, false"},
		{"bad size", map[string]string{"size": "lots"}, thick, Options{}, `option size: size "lots" is not valid`},
		{"too small ext4", map[string]string{"size": "63M"}, thick, Options{}, `option size="63M" is too small for ext4`},
		{"too small xfs", map[string]string{"size": "300M", "fs": "xfs"}, thick, Options{}, "at least 320 MiB"},
		{"default too small for xfs", map[string]string{"fs": "xfs"}, Defaults{Size: 256 << 20, FS: FSExt4}, Options{}, "the default size 256 MiB is too small for xfs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.opts, c.d)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want it to contain %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			if want.Root == (RootSpec{}) {
				want.Root = RootSpec{UID: -1, GID: -1}
			}
			if want.Mkfs == (mount.MkfsOptions{}) {
				want.Mkfs = mount.DefaultMkfs
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}

// checkRefusal asserts a refusal is a readable, bounded, one-line message.
func checkRefusal(t *testing.T, what string, err error) {
	t.Helper()
	msg := err.Error()
	if msg == "" {
		t.Fatalf("%s: empty error message", what)
	}
	if len(msg) > 1000 {
		t.Fatalf("%s: error message is %d bytes long", what, len(msg))
	}
	if !utf8.ValidString(msg) || strings.IndexFunc(msg, unicode.IsControl) >= 0 {
		t.Fatalf("%s: error message has control or invalid characters: %q", what, msg)
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"v1", "my-vol.2", "", ".", "..", "a_tmeta", "snapshot", strings.Repeat("a", 65), "a/b", "ü", "a\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		if err != nil {
			checkRefusal(t, "ValidateName", err)
			return
		}
		// Accepted: usable verbatim in LV, mapping and path names.
		if len(name) < 1 || len(name) > 64 || !nameRE.MatchString(name) {
			t.Fatalf("accepted malformed name %q", name)
		}
		if name == "." || name == ".." || strings.ContainsAny(name, "/\x00 \n") {
			t.Fatalf("accepted unsafe name %q", name)
		}
		// The names package volume derives: its LV and its dm-crypt mapping.
		lvName, mappingName := "cv-"+name, "cryptvol-"+name
		for _, r := range reservedSubstrings {
			if strings.Contains(lvName, r) {
				t.Fatalf("accepted %q whose LV name contains reserved %q", name, r)
			}
		}
		if len(mappingName) > 127 || len(lvName) > 127 {
			t.Fatalf("derived names too long for %q", name)
		}
	})
}

func FuzzParseOptions(f *testing.F) {
	f.Add("size", "1G", "fs", "ext4", "thin", "true", true)
	f.Add("size", "1.5GiB", "fs", "xfs", "", "", false)
	f.Add("size", "63M", "", "", "", "", false)
	f.Add("colour", "red", "", "", "", "", true)
	f.Add("thin", "true", "", "", "", "", false)
	f.Add("size", "99999999999T", "fs", "", "thin", "maybe", true)
	f.Add("size", "0.1K", "fs", "xfs", "x", "y", false)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string, pool bool) {
		opts := map[string]string{}
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}, {k3, v3}} {
			if kv[0] != "" {
				opts[kv[0]] = kv[1]
			}
		}
		d := Defaults{Size: 1 << 30, FS: FSExt4}
		if pool {
			d.ThinPool = "pool"
		}
		o, err := Parse(opts, d)
		if err != nil {
			checkRefusal(t, "Parse", err)
			return
		}
		for k := range opts {
			if k != OptSize && k != OptFS && k != OptThin {
				t.Fatalf("accepted unknown option %q", k)
			}
		}
		if o.FS != FSExt4 && o.FS != FSXFS {
			t.Fatalf("accepted filesystem %q", o.FS)
		}
		if o.Size < MinSize(o.FS) {
			t.Fatalf("accepted size %d below the %s minimum", o.Size, o.FS)
		}
		if o.Thin && !pool {
			t.Fatal("accepted a thin volume without a pool")
		}
		if v, ok := opts[OptSize]; ok {
			if n, err := ParseSize(v); err != nil || n != o.Size || !o.SizeSet {
				t.Fatalf("size %q parsed inconsistently: %d %v", v, n, err)
			}
		}
		if v, ok := opts[OptThin]; ok && (v != "true" && v != "false" || o.Thin != (v == "true")) {
			t.Fatalf("thin=%q accepted as %v", v, o.Thin)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512M", "1.5G", "1GB", "0", "-1", "1e3", "18446744073709551615", "16777216T", "1.0000000001K"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			checkRefusal(t, "ParseSize", err)
			return
		}
		if n == 0 {
			t.Fatalf("accepted zero size from %q", s)
		}
		// Formatting and re-parsing an accepted size stays within the
		// display rounding (0.1 of a unit); FormatSize goes beyond T.
		if n >= 1<<50 {
			return
		}
		if got, err := ParseSize(strings.ReplaceAll(FormatSize(n), " ", "")); err != nil {
			t.Fatalf("FormatSize(%d) = %q does not parse back: %v", n, FormatSize(n), err)
		} else if diff := float64(got) - float64(n); math.Abs(diff) > float64(n)/10+1 {
			t.Fatalf("FormatSize round trip %d -> %q -> %d", n, FormatSize(n), got)
		}
	})
}
