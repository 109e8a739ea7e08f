package lvm

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sameLVs compares what lvs reported with what the metadata text gave,
// field by field: times as instants (lvs prints them in its zone).
func sameLVs(t *testing.T, what string, want, got []LV) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d LVs from the text, lvs reported %d:\n text %+v\n lvs  %+v", what, len(got), len(want), got, want)
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.Name != w.Name || g.VG != w.VG || g.Path != w.Path || g.Size != w.Size || !slices.Equal(g.Tags, w.Tags) ||
			g.Active != w.Active || g.Pool != w.Pool || !g.Created.Equal(w.Created) || g.UUID != w.UUID {
			t.Errorf("%s: LV %d:\n text %+v\n lvs  %+v", what, i, g, w)
		}
	}
}

// capturedText is the metadata text lvm 2.03.16 wrote (testdata/README).
func capturedText(t *testing.T) []byte {
	t.Helper()
	text, err := os.ReadFile("testdata/vg-text.txt")
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// lvsReport parses a captured lvs report as the Client does.
func lvsReport(t *testing.T, file, vg string) []LV {
	t.Helper()
	out, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(vg, WithExec(func(context.Context, []byte, string, ...string) ([]byte, error) { return out, nil }))
	if err != nil {
		t.Fatal(err)
	}
	lvs, err := c.lvs(context.Background(), vg)
	if err != nil {
		t.Fatal(err)
	}
	return lvs
}

// The text lvm 2.03.16 wrote for a group restored from a crafted file
// (testdata/README: a thin pool with its hidden LVs, thin LVs, a thin
// snapshot, a thick LV of two segments, a hidden LV carrying the tag, an
// untagged LV, names and tags with every character lvm allows), read as
// lvs read it: the same LVs, field by field.
func TestLVsFromTextMatchLvs(t *testing.T) {
	text := capturedText(t)
	for _, c := range []struct{ tag, report string }{{"", "lvs-text-all.json"}, {"cryptvol", "lvs-text-tag.json"}} {
		got, err := lvsFromText(text, "cvx", c.tag)
		if err != nil {
			t.Fatal(err)
		}
		sameLVs(t, "tag "+c.tag, lvsReport(t, c.report, "cvx"), got)
	}
	if _, err := lvsFromText(text, "othervg", ""); err == nil || !strings.Contains(err.Error(), `want one section "othervg"`) {
		t.Fatalf("text of another group: %v", err)
	}
}

func TestLVsFromTextRefusesWhatIsNotLvms(t *testing.T) {
	good := "vg {\nid = \"x\"\nextent_size = 8192\nlogical_volumes {\n%s\n}\n}\ncontents = \"Text Format Volume Group\"\n"
	lv := func(body string) []byte { return []byte(strings.Replace(good, "%s", body, 1)) }
	for _, c := range []struct {
		name, text, want string
	}{
		{"unterminated string", "vg {\nid = \"x\n", "unterminated string"},
		{"section not closed", "vg {\nid = \"x\"\n", `section "vg" not closed`},
		{"stray brace", "}\n", "want a key"},
		{"no value", "vg {\nid = \n}", "want a value"},
		{"list without commas", "vg {\nstatus = [\"a\" \"b\"]\n}", "want ',' or ']'"},
		{"deep nesting", strings.Repeat("a {\n", 20) + strings.Repeat("}\n", 20), "nested deeper"},
		{"no extent size", "vg {\nid = \"x\"\n}", "no number extent_size"},
		{"two groups", "vg {\nextent_size = 1\n}\nvg2 {\n}\n", "found 2 sections"},
		{"LV without id", string(lv("a {\nstatus = [\"VISIBLE\"]\nsegment_count = 0\n}")), "no id"},
		{"segment count wrong", string(lv("a {\nid = \"u\"\nstatus = [\"VISIBLE\"]\nsegment_count = 2\nsegment1 {\nextent_count = 1\n}\n}")), "segment_count says 2"},
		{"thin without pool", string(lv("a {\nid = \"u\"\nsegment_count = 1\nsegment1 {\nextent_count = 1\ntype = \"thin\"\n}\n}")), "without thin_pool"},
		{"tags not strings", string(lv("a {\nid = \"u\"\ntags = [1]\nsegment_count = 0\n}")), "not a string"},
		{"size overflows", string(lv("a {\nid = \"u\"\nsegment_count = 1\nsegment1 {\nextent_count = 18446744073709551615\n}\n}")), "overflows"},
	} {
		_, err := lvsFromText([]byte(c.text), "vg", "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	// A group without LVs has no logical_volumes section.
	if lvs, err := lvsFromText([]byte("vg {\nextent_size = 8192 # 4 MiB\n}\n"), "vg", ""); err != nil || lvs != nil {
		t.Fatalf("group without LVs: %v, %v", lvs, err)
	}
}

// lvm's checksum of the captured text is the one its header carried
// (0x223b5ebe, read from the device it was captured from).
func TestLvmCRC(t *testing.T) {
	text := capturedText(t)
	if got := lvmCRC(text); got != 0x223b5ebe {
		t.Fatalf("lvmCRC = %08x, want 223b5ebe", got)
	}
}

// textImage writes a PV whose one metadata area (at 4096, areaSize bytes)
// holds text at offset, wrapping past the area's end as lvm does, with
// checksum sum.
func textImage(t *testing.T, text []byte, areaSize, offset uint64, sum uint32) string {
	t.Helper()
	b := make([]byte, 4096+areaSize+4096)
	pvLayout(b, 4096+areaSize, areaSize, offset, uint64(len(text)), sum, 0)
	area := b[4096 : 4096+areaSize]
	n := copy(area[offset:], text)
	copy(area[512:], text[n:])
	return writeImage(t, b)
}

// The text is read whole wherever the header says it is, wrapped past the
// area's end included, and only with its checksum.
func TestReadTextFollowsTheHeader(t *testing.T) {
	text := capturedText(t)
	sum := lvmCRC(text)
	want := lvsReport(t, "lvs-text-tag.json", "cvx")
	for _, c := range []struct {
		name             string
		areaSize, offset uint64
	}{{"at the area's start", 16384, 512}, {"in one piece", 16384, 4608}, {"wrapped", 16384, 16384 - 1024}, {"close to the area's end", 16384, 16384 - 4608}} {
		if c.name == "close to the area's end" {
			c.offset = c.areaSize - uint64(len(text))
			c.offset -= c.offset % 512
		}
		dev := textImage(t, text, c.areaSize, c.offset, sum)
		var r markReader
		mark, got, err := r.readText([]string{dev}, "cvx")
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if string(got) != string(text) {
			t.Fatalf("%s: read %d bytes, not the text", c.name, len(got))
		}
		if m, err := r.read([]string{dev}, "cvx"); err != nil || m != mark {
			t.Fatalf("%s: mark %q with the text, %q alone (%v)", c.name, mark, m, err)
		}
		lvs, err := lvsFromText(got, "cvx", "cryptvol")
		if err != nil {
			t.Fatal(err)
		}
		sameLVs(t, c.name, want, lvs)
	}
	// A text that does not match its checksum (lvm wrote over it while it
	// was read, twice running) is refused, and the reader starts over.
	bad := textImage(t, text, 16384, 512, sum^1)
	var r markReader
	if _, _, err := r.readText([]string{bad}, "cvx"); !errors.Is(err, errTextChanged) {
		t.Fatalf("checksum mismatch: %v, want errTextChanged", err)
	}
	if r.areas != nil {
		t.Fatal("after a checksum mismatch the reader still remembers the labels")
	}
	// A header whose text cannot fit its area is not read.
	huge := textImage(t, text, 16384, 512, sum)
	b, _ := os.ReadFile(huge)
	binary.LittleEndian.PutUint64(b[4096+48:], 20000)
	os.WriteFile(huge, b, 0o600)
	if _, _, err := new(markReader).readText([]string{huge}, "cvx"); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("text larger than its area: %v", err)
	}
}

// The group read from the captured text is the one vgs reported for it:
// 63 extents of 4 MiB, 25 allocated (the pool's 16 + 1 + the _pmspare's 1,
// the thick LV's 2 + 3, the hidden LV's 1, the plain LV's 1), the rest
// free; thin LVs allocate nothing of their own.
func TestVGFromText(t *testing.T) {
	text := capturedText(t)
	vg, err := vgFromText(text, "cvx")
	if err != nil {
		t.Fatal(err)
	}
	want := VG{Name: "cvx", Size: 63 << 22, Free: (63 - 25) << 22, ExtentSize: 4 << 20, UUID: "EQz3xd-UWL1-kgpK-K87T-ThsP-Rn1z-HKsJcW"}
	if vg != want {
		t.Fatalf("VG = %+v, want %+v", vg, want)
	}
	raid := strings.Replace(string(text), `type = "thin-pool"`, `type = "raid1"`, 1)
	if _, err := vgFromText([]byte(raid), "cvx"); err == nil || !strings.Contains(err.Error(), `segment type "raid1"`) {
		t.Fatalf("a segment type whose allocation is not read here: %v", err)
	}
}

// With the group's devices known (a start asks VG first), an existing pool
// is found in the metadata text, and so is an LV of that name that is no
// pool; only a name the text lacks goes to lvs.
func TestEnsureThinPoolReadsTheText(t *testing.T) {
	text := capturedText(t)
	dev := textImage(t, text, 16384, 512, lvmCRC(text))
	client := func(f *fakeLVM) *Client {
		c, err := New("cvx", WithExec(f.exec))
		if err != nil {
			t.Fatal(err)
		}
		c.learnDevices([]string{dev})
		return c
	}
	f := newFake(t)
	if err := client(f).EnsureThinPool(context.Background(), "pool0"); err != nil || len(f.calls) != 0 {
		t.Fatalf("existing pool: err = %v, calls = %q", err, f.calls)
	}
	if err := client(f).EnsureThinPool(context.Background(), "cv-thick"); err == nil || !strings.Contains(err.Error(), `"striped" volume, not a thin pool`) || len(f.calls) != 0 {
		t.Fatalf("an LV that is no pool: err = %v, calls = %q", err, f.calls)
	}
	f.on(poolCmd+"cvx/pool1", answer{code: 5, stderr: "  Failed to find logical volume \"cvx/pool1\"\n"})
	f.on("lvm lvcreate --type thin-pool -l 90%FREE -n pool1 -y cvx", answer{})
	if err := client(f).EnsureThinPool(context.Background(), "pool1"); err != nil || len(f.calls) != 2 {
		t.Fatalf("a pool the text lacks: err = %v, calls = %q", err, f.calls)
	}
}

// vgsCvx is vgsCmd for group cvx.
var vgsCvx = strings.TrimSuffix(vgsCmd, "cvhost") + "cvx"

// groupImage is a device image holding group cvx's captured metadata text,
// with a Client of cvx over a fake lvm that answers nothing.
func groupImage(t *testing.T) (dev string, f *fakeLVM, c *Client) {
	t.Helper()
	text := capturedText(t)
	dev = textImage(t, text, 16384, 512, lvmCRC(text))
	f = newFake(t)
	c, err := New("cvx", WithExec(f.exec))
	if err != nil {
		t.Fatal(err)
	}
	return dev, f, c
}

// notAPV is a file of zeros: no LVM label, no group's text.
func notAPV(t *testing.T) string {
	t.Helper()
	plain := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(plain, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	return plain
}

// A start with CRYPTVOL_DEVICES set finds the group on them without vgs,
// and MetadataMark then reads them; devices that are not the group's go to
// vgs as before.
func TestEnsureVGFindsTheGroupOnItsDevices(t *testing.T) {
	dev, f, c := groupImage(t)
	if err := c.EnsureVG(context.Background(), []string{dev}); err != nil || len(f.calls) != 0 {
		t.Fatalf("the group on its device: err = %v, calls = %q", err, f.calls)
	}
	if _, err := c.MetadataMark(context.Background()); err != nil || len(f.calls) != 0 {
		t.Fatalf("mark after EnsureVG: err = %v, calls = %q", err, f.calls)
	}

	plain := notAPV(t)
	f = newFake(t)
	f.on(vgsCvx, answer{stdout: strings.ReplaceAll(fixture(t, "vgs.json"), "cvhost", "cvx")})
	c, _ = New("cvx", WithExec(f.exec))
	if err := c.EnsureVG(context.Background(), []string{plain}); err != nil || len(f.calls) != 1 {
		t.Fatalf("a device without the group: err = %v, calls = %q", err, f.calls)
	}
}

// A restart without CRYPTVOL_DEVICES hands CheckVG the devices the last
// start learned: the group is found on them with no program, and Devices
// names them. A stale list (a device no longer the group's, or gone) costs
// one vgs, whose devices Devices then names for the next start.
func TestCheckVGTrustsKnownDevicesOnlyWhenTheyHoldTheGroup(t *testing.T) {
	dev, f, c := groupImage(t)
	if err := c.CheckVG(context.Background(), []string{dev}); err != nil || len(f.calls) != 0 {
		t.Fatalf("known devices holding the group: err = %v, calls = %q", err, f.calls)
	}
	if got := c.Devices(); len(got) != 1 || got[0] != dev {
		t.Fatalf("Devices = %q, want [%s]", got, dev)
	}

	plain := notAPV(t)
	for _, known := range [][]string{nil, {plain}, {filepath.Join(t.TempDir(), "gone")}} {
		f = newFake(t)
		f.on(vgsCvx, answer{stdout: strings.ReplaceAll(fixture(t, "vgs.json"), "cvhost", "cvx")})
		c, _ = New("cvx", WithExec(f.exec))
		if err := c.CheckVG(context.Background(), known); err != nil || len(f.calls) != 1 {
			t.Fatalf("known %q: err = %v, calls = %q", known, err, f.calls)
		}
		if got := c.Devices(); len(got) == 0 || slices.Contains(got, plain) {
			t.Fatalf("known %q: Devices after vgs = %q, want the devices vgs named", known, got)
		}
	}

	f = newFake(t)
	f.on(vgsCvx, answer{code: 5, stderr: "  Volume group \"cvx\" not found\n"})
	c, _ = New("cvx", WithExec(f.exec))
	if err := c.CheckVG(context.Background(), []string{plain}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no such group: err = %v, want ErrNotFound", err)
	}
}

// The metadata text is parsed once per mark: the group check, the pool
// check and the listing of a start share one parse, and a commit (new text,
// new checksum: a new mark) is parsed afresh and seen.
func TestMetadataTextParsedOncePerMark(t *testing.T) {
	text := capturedText(t)
	dev := textImage(t, text, 16384, 512, lvmCRC(text))
	c, err := New("cvx", WithExec(newFake(t).exec))
	if err != nil {
		t.Fatal(err)
	}
	c.learnDevices([]string{dev})
	if _, err := c.MetadataVG(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := c.parsed
	mark, lvs, err := c.MetadataLVs(context.Background(), "")
	if err != nil || c.parsed != first || mark != first.mark {
		t.Fatalf("the same text was parsed again (err %v)", err)
	}
	if typ, err := c.textSegtype(context.Background(), "pool0"); err != nil || typ != "thin-pool" || c.parsed != first {
		t.Fatalf("textSegtype = %q, %v, or parsed again", typ, err)
	}

	// A commit: the text gains an LV's worth of change (here, one LV's
	// name), written at another offset with its own checksum.
	changed := []byte(strings.Replace(string(text), "cv-thick", "cv-thack", 1))
	if string(changed) == string(text) {
		t.Fatal("the captured text has no cv-thick")
	}
	img := textImage(t, changed, 16384, 4608, lvmCRC(changed))
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dev, b, 0o600); err != nil {
		t.Fatal(err)
	}
	mark2, lvs2, err := c.MetadataLVs(context.Background(), "")
	if err != nil || mark2 == mark || c.parsed == first {
		t.Fatalf("after a commit: mark %q (was %q), err %v, parsed anew %v", mark2, mark, err, c.parsed != first)
	}
	names := func(l []LV) (n []string) {
		for _, lv := range l {
			n = append(n, lv.Name)
		}
		return n
	}
	if !slices.Contains(names(lvs), "cv-thick") || !slices.Contains(names(lvs2), "cv-thack") || slices.Contains(names(lvs2), "cv-thick") {
		t.Fatalf("before %q, after %q", names(lvs), names(lvs2))
	}
}
