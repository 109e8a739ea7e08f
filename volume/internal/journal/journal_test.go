package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const boot = "3f1c2b9e-0d4a-4c55-9a51-6f2d7c1e8b00" // the boot id of the files in testdata

// copyFile puts testdata/name in a fresh directory as the state file.
func copyFile(t *testing.T, name string) (path string, data []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "mounts.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, b
}

// withoutWriter is b without the line Update adds for the writer, after
// checking that the line names this build.
func withoutWriter(t *testing.T, b []byte) []byte {
	t.Helper()
	line := []byte("\n  \"writer\": \"" + writer + "\",")
	if !bytes.Contains(b, line) {
		t.Fatalf("written file has no writer line %q:\n%s", line, b)
	}
	return bytes.Replace(b, line, nil, 1)
}

// testdata/v2.json was written by the store before it moved here, with
// every field set and no writer: loaded and written again it must be the
// same bytes but for the writer, or a plugin upgrade would change the file
// under an unchanged version, and a rollback to a build that writes no
// writer could not read it back.
func TestVersion2RoundTripsByteIdentically(t *testing.T) {
	path, want := copyFile(t, "v2.json")
	st, dropped, err := Load(path, boot)
	if err != nil || dropped != nil {
		t.Fatalf("Load: %v, dropped %v", err, dropped)
	}
	if err := st.Update(func(*State) {}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if got := withoutWriter(t, got); !bytes.Equal(got, want) {
		t.Fatalf("written again:\n%s\nwant:\n%s", got, want)
	}
	s := st.Snapshot()
	if s.Mounts["web"]["c1"] != 2 || len(s.Creating) != 3 || !s.Creating[1].Clone || !s.Creating[2].Legacy ||
		len(s.Removing) != 2 || !slices.Equal(s.Removing[0].KeyIDs, []string{"k-1", "k-2"}) ||
		len(s.Rotating) != 2 || s.Rotating[0].NewSlot != 1 || s.Rotating[0].NewKeyID != "k-4" {
		t.Fatalf("loaded %+v", s)
	}
}

// A version 1 file (IDs as sets, journals of bare names) is converted:
// each ID counts once, each name becomes a legacy entry; testdata's
// converted file is what the store wrote before it moved here.
func TestVersion1IsConverted(t *testing.T) {
	path, _ := copyFile(t, "v1.json")
	want, err := os.ReadFile(filepath.Join("testdata", "v1-converted.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, dropped, err := Load(path, boot)
	if err != nil || dropped != nil {
		t.Fatalf("Load: %v, dropped %v", err, dropped)
	}
	if got := st.Mounts("web"); !reflect.DeepEqual(got, map[string]int{"c1": 1, "c2": 1}) {
		t.Errorf("converted mounts of web: %v", got)
	}
	if err := st.Update(func(*State) {}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(withoutWriter(t, got), want) {
		t.Fatalf("converted file:\n%s\nwant:\n%s", got, want)
	}
}

// Mount IDs of another boot are dropped and returned; the journals stay.
func TestAnotherBootDropsMountIDs(t *testing.T) {
	path, _ := copyFile(t, "v2.json")
	st, dropped, err := Load(path, "boot-2")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dropped, map[string]map[string]int{"db": {"c2": 1}, "web": {"0123abcd": 1, "c1": 2}}) {
		t.Errorf("dropped %v", dropped)
	}
	s := st.Snapshot()
	if len(s.Mounts) != 0 || s.BootID != "boot-2" || len(s.Creating) != 3 || len(s.Removing) != 2 || len(s.Rotating) != 2 {
		t.Fatalf("after a reboot: %+v", s)
	}
}

func TestMissingFileIsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mounts.json")
	st, dropped, err := Load(path, boot)
	if err != nil || dropped != nil {
		t.Fatalf("Load: %v, dropped %v", err, dropped)
	}
	if s := st.Snapshot(); s.Version != Version || s.BootID != boot || s.Mounts == nil || len(s.Mounts) != 0 {
		t.Fatalf("empty state %+v", s)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load wrote the file: %v", err)
	}
}

func TestDamagedFileIsRefused(t *testing.T) {
	for content, want := range map[string]string{
		"{not json":                          "is not valid JSON (invalid character 'n' looking for beginning of object key string); it is written atomically, so this is damage from outside: move it away",
		`{"version": 0}`:                     "has state format 0, which no cryptvol writes (this one reads 1 to 2): it is damaged",
		`{"version": 2, "mounts": []}`:       "state file",
		`{"version": 1, "mounts": {"v": 1}}`: "(version 1): json: cannot unmarshal",
	} {
		path := filepath.Join(t.TempDir(), "mounts.json")
		os.WriteFile(path, []byte(content), 0o600)
		if _, _, err := Load(path, boot); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", content, err, want)
		}
	}
}

// A file of a newer format is refused by Load and by CheckFormat with an
// error naming both builds and both formats, and neither writes anything.
func TestNewerFormatIsRefusedNamingBothVersions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mounts.json")
	content := []byte(`{"version": 3, "writer": "cryptvol 9.9.9", "boot_id": "` + boot + `", "mounts": {}}`)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	want := "state file " + path + " has state format 3, written by cryptvol 9.9.9; this plugin is cryptvol unknown and reads state formats 1 to 2. " +
		"Nothing was changed and no volume is served: upgrade the plugin to cryptvol 9.9.9 or later (docker plugin upgrade)"
	var newer *NewerError
	if err := CheckFormat(path); !errors.As(err, &newer) || err.Error() != want {
		t.Errorf("CheckFormat: %v\nwant %s", err, want)
	}
	if _, _, err := Load(path, boot); !errors.As(err, &newer) || err.Error() != want {
		t.Errorf("Load: %v\nwant %s", err, want)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
		t.Errorf("the file changed: %s", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files beside it: %v", ents)
	}
	// Without a writer the error still names the format and says newer.
	os.WriteFile(path, []byte(`{"version": 7}`), 0o600)
	if err := CheckFormat(path); err == nil || !strings.Contains(err.Error(), "has state format 7, written by a newer cryptvol;") {
		t.Errorf("CheckFormat without writer: %v", err)
	}
	// Formats this build reads, a missing file and a damaged one are Load's.
	for _, c := range []string{`{"version": 2}`, `{"version": 1}`, "{not json", ""} {
		os.WriteFile(path, []byte(c), 0o600)
		if err := CheckFormat(path); err != nil {
			t.Errorf("CheckFormat(%q): %v", c, err)
		}
	}
	if err := CheckFormat(filepath.Join(dir, "missing.json")); err != nil {
		t.Errorf("CheckFormat(missing): %v", err)
	}
}

// A state file past MaxSize is refused unread, whatever it holds.
func TestOversizedFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mounts.json")
	b := append([]byte(`{"version": 2, "boot_id": "x", "mounts": {}, "pad": "`), bytes.Repeat([]byte("a"), MaxSize)...)
	os.WriteFile(path, append(b, '"', '}'), 0o600)
	if _, _, err := Load(path, boot); err == nil || !strings.Contains(err.Error(), "is larger than 16 MiB") {
		t.Fatalf("Load: %v", err)
	}
}

// A failed write leaves the file and the state as they were, and no
// temporary file behind.
func TestFailedWriteChangesNothing(t *testing.T) {
	path, want := copyFile(t, "v2.json")
	st, _, err := Load(path, boot)
	if err != nil {
		t.Fatal(err)
	}
	before := st.Snapshot()
	st.Rename = func(string, string) error { return errors.New("disk full") }
	err = st.Update(func(s *State) {
		s.AddMount("web", "c9")
		s.Removing[0].KeyIDs[0] = "changed"
		s.Rotating = nil
	})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Update with a failing rename: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Error("a failed write changed the file")
	}
	if after := st.Snapshot(); !reflect.DeepEqual(after, before) {
		t.Errorf("a failed write changed the state: %+v", after)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("files left in the directory: %v", entries)
	}
}

func TestMountCounts(t *testing.T) {
	st, _, err := Load(filepath.Join(t.TempDir(), "mounts.json"), boot)
	if err != nil {
		t.Fatal(err)
	}
	st.Update(func(s *State) { s.AddMount("v", "b"); s.AddMount("v", "a"); s.AddMount("v", "a") })
	if ids := st.IDs("v"); !slices.Equal(ids, []string{"a", "b"}) || st.Mounts("v")["a"] != 2 {
		t.Fatalf("ids %v, counts %v", ids, st.Mounts("v"))
	}
	st.Update(func(s *State) { s.DropMount("v", "a"); s.DropMount("v", "b") })
	if got := st.Mounts("v"); !reflect.DeepEqual(got, map[string]int{"a": 1}) {
		t.Fatalf("after two unmounts: %v", got)
	}
	st.Update(func(s *State) { s.DropMount("v", "a") })
	if _, ok := st.Snapshot().Mounts["v"]; ok {
		t.Fatal("a volume with no mounts left is still listed")
	}
}

func TestJournalHelpers(t *testing.T) {
	a := Entry{Volume: "v", KeyName: "k1"}
	b := Entry{Volume: "v", LVUUID: "u", KeyIDs: []string{"x"}}
	c := Entry{Volume: "w", KeyName: "k2"}
	j := []Entry{a, b, c}
	if got := EntriesOf(j, "v"); len(got) != 2 || got[0].KeyName != "k1" {
		t.Errorf("EntriesOf: %+v", got)
	}
	// Key ids and tenant do not identify an entry; volume, LV, key name and legacy do.
	if got := Without(j, Entry{Volume: "v", LVUUID: "u"}); len(got) != 2 || got[1].Volume != "w" || len(j) != 3 {
		t.Errorf("Without: %+v (input now %+v)", got, j)
	}
	if got := Without(j, Entry{Volume: "v", KeyName: "k1", Legacy: true}); len(got) != 3 {
		t.Errorf("Without of a legacy entry removed %+v", got)
	}
	r := []Rotation{{Volume: "v", NewKeyName: "n1"}, {Volume: "v", NewKeyName: "n2"}}
	if got := WithoutRotation(r, Rotation{Volume: "v", NewKeyName: "n1", NewSlot: 3}); len(got) != 1 || got[0].NewKeyName != "n2" || len(r) != 2 {
		t.Errorf("WithoutRotation: %+v", got)
	}
}

func TestReadBootID(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "boot_id")
	os.WriteFile(p, []byte("abc-123\n"), 0o644)
	if id, err := ReadBootID(p); err != nil || id != "abc-123" {
		t.Errorf("ReadBootID = %q, %v", id, err)
	}
	os.WriteFile(p, []byte(" \n"), 0o644)
	if _, err := ReadBootID(p); err == nil || err.Error() != "boot id file "+p+" is empty" {
		t.Errorf("empty boot id file: %v", err)
	}
	if _, err := ReadBootID(filepath.Join(dir, "none")); err == nil || !strings.HasPrefix(err.Error(), "reading boot id: ") {
		t.Errorf("missing boot id file: %v", err)
	}
}

// The trash's journals survive a write, a load and a reboot like the other
// journals, and Clone copies them.
func TestTrashJournalsPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mounts.json")
	st, _, err := Load(path, boot)
	if err != nil {
		t.Fatal(err)
	}
	tr := Entry{Volume: "web+1765000000000", LVUUID: "u1", KeyIDs: []string{"k-1"}, Tenant: "t"}
	rs := Restore{Rotation: Rotation{Volume: "web+1765000000000", LVUUID: "u1", OldKeyID: "k-1", NewKeyName: "n", NewSlot: 1}, Target: "web2"}
	if err := st.Update(func(s *State) { s.Trashing = append(s.Trashing, tr); s.Restoring = append(s.Restoring, rs) }); err != nil {
		t.Fatal(err)
	}
	again, _, err := Load(path, "boot-2")
	if err != nil {
		t.Fatal(err)
	}
	s := again.Snapshot()
	if !reflect.DeepEqual(s.Trashing, []Entry{tr}) || !reflect.DeepEqual(s.Restoring, []Restore{rs}) {
		t.Fatalf("after a reboot: trashing %+v restoring %+v", s.Trashing, s.Restoring)
	}
	s.Trashing[0].KeyIDs[0] = "changed"
	if again.Snapshot().Trashing[0].KeyIDs[0] != "k-1" {
		t.Error("a snapshot's trash entry shares its key ids with the store")
	}
	if b, _ := os.ReadFile(path); !bytes.Contains(b, []byte(`"target": "web2"`)) || !bytes.Contains(b, []byte(`"new_key_name": "n"`)) {
		t.Errorf("a restore's entry is not written flat:\n%s", b)
	}
	if got := WithoutRestore(s.Restoring, rs); len(got) != 0 {
		t.Errorf("WithoutRestore left %+v", got)
	}
}
