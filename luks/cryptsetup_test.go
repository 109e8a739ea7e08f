package luks

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryptvol/cryptvol/internal/command"
)

// fakeCS answers cryptsetup commands from a table keyed by the joined argv
// and keeps each call's stdin: a copy for assertions and the slice itself,
// to check that Cryptsetup zeroes the key buffer it handed out.
type fakeCS struct {
	t       *testing.T
	calls   []csCall
	answers map[string]csAnswer
}

type csCall struct {
	argv   []string
	stdin  []byte // copy taken during the call
	passed []byte // the slice Cryptsetup passed
}

type csAnswer struct {
	stdout string
	code   int
	stderr string
	then   func() // what the program changed, if anything
}

func newFakeCS(t *testing.T) *fakeCS { return &fakeCS{t: t, answers: map[string]csAnswer{}} }

func (f *fakeCS) on(argv string, a csAnswer) { f.answers[argv] = a }

func (f *fakeCS) exec(_ context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	argv := append([]string{name}, args...)
	f.calls = append(f.calls, csCall{argv: argv, stdin: bytes.Clone(stdin), passed: stdin})
	a, ok := f.answers[strings.Join(argv, " ")]
	if !ok {
		f.t.Fatalf("unexpected command %q", argv)
	}
	if a.then != nil {
		a.then()
	}
	if a.code != 0 {
		return []byte(a.stdout), &command.Error{Args: argv, ExitCode: a.code, Stderr: a.stderr, Naming: command.ProgramAndAction}
	}
	return []byte(a.stdout), nil
}

func (f *fakeCS) argvs() []string {
	var out []string
	for _, c := range f.calls {
		out = append(out, strings.Join(c.argv, " "))
	}
	return out
}

// testKey contains a NUL, a newline and bytes that are not text, as random
// KMIP keys do; cryptsetup must receive exactly these 32 bytes.
var testKey = []byte("K\x00\n\xff\x01secret-key-material-0123456789")[:32]

func assertNoKey(t *testing.T, f *fakeCS, key []byte, err error) {
	t.Helper()
	for _, c := range f.calls {
		for _, a := range c.argv {
			if bytes.Contains([]byte(a), key[5:]) {
				t.Errorf("key material in argv %q", c.argv)
			}
		}
	}
	if err != nil && strings.Contains(err.Error(), string(key[5:])) {
		t.Errorf("key material in error %q", err)
	}
}

const formatCmd = "cryptsetup luksFormat --type luks2 --cipher aes-xts-plain64 --key-size 512 --sector-size 4096 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --hash sha256 --luks2-keyslots-size 4064k --batch-mode --key-file - "

func TestFormat(t *testing.T) {
	f := newFakeCS(t)
	f.on("cryptsetup isLuks /dev/vg/cv-v1", csAnswer{code: 1})
	f.on(formatCmd+"/dev/vg/cv-v1", csAnswer{})
	f.on("cryptsetup token import --json-file - /dev/vg/cv-v1", csAnswer{})
	key := bytes.Clone(testKey)
	err := New(WithExec(f.exec)).Format(context.Background(), "/dev/vg/cv-v1", key, Token{KeyID: "42", Volume: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 3 {
		t.Fatalf("calls = %q", f.argvs())
	}
	if f.calls[0].stdin != nil {
		t.Errorf("isLuks got stdin")
	}
	if !bytes.Equal(f.calls[1].stdin, testKey) {
		t.Errorf("luksFormat stdin = %q, want exactly the key", f.calls[1].stdin)
	}
	if !bytes.Equal(f.calls[1].passed, make([]byte, 32)) {
		t.Errorf("the key buffer given to cryptsetup was not zeroed afterwards")
	}
	if !bytes.Equal(key, testKey) {
		t.Errorf("Format modified the caller's key")
	}
	if got := string(f.calls[2].stdin); got != `{"type":"cryptvol-kmip","keyslots":["0"],"kmip_id":"42","volume":"v1"}` {
		t.Errorf("token JSON = %s", got)
	}
	assertNoKey(t, f, testKey, nil)
}

func TestFormatRefusesExistingHeader(t *testing.T) {
	f := newFakeCS(t)
	f.on("cryptsetup isLuks /dev/vg/cv-v1", csAnswer{})
	err := New(WithExec(f.exec)).Format(context.Background(), "/dev/vg/cv-v1", testKey, Token{KeyID: "42", Volume: "v1"})
	if !errors.Is(err, ErrHasHeader) || !strings.Contains(err.Error(), "/dev/vg/cv-v1") {
		t.Fatalf("err = %v, want ErrHasHeader naming the device", err)
	}
	if len(f.calls) != 1 {
		t.Fatalf("ran %q after finding a header", f.argvs())
	}
}

func TestFormatStopsWhenIsLuksFails(t *testing.T) {
	f := newFakeCS(t)
	f.on("cryptsetup isLuks /dev/vg/cv-v1", csAnswer{code: 4, stderr: "Device /dev/vg/cv-v1 does not exist or access denied.\n"})
	err := New(WithExec(f.exec)).Format(context.Background(), "/dev/vg/cv-v1", testKey, Token{KeyID: "42", Volume: "v1"})
	var e *command.Error
	if err == nil || errors.Is(err, ErrHasHeader) || !errors.As(err, &e) || e.ExitCode != 4 {
		t.Fatalf("err = %v", err)
	}
	if len(f.calls) != 1 {
		t.Fatalf("ran %q after isLuks failed", f.argvs())
	}
}

func TestFormatTokenFailureRemovesHeader(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "dev")
	content := bytes.Repeat([]byte{0xaa}, 20<<20)
	if err := os.WriteFile(dev, content, 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFakeCS(t)
	f.on("cryptsetup isLuks "+dev, csAnswer{code: 1})
	f.on(formatCmd+dev, csAnswer{})
	f.on("cryptsetup token import --json-file - "+dev, csAnswer{code: 1, stderr: "Failed to import token from file.\n"})
	f.on("cryptsetup luksErase --batch-mode "+dev, csAnswer{})
	err := New(WithExec(f.exec)).Format(context.Background(), dev, testKey, Token{KeyID: "42", Volume: "v1"})
	var e *command.Error
	if err == nil || !errors.As(err, &e) || e.ExitCode != 1 || !strings.Contains(err.Error(), "Failed to import token") {
		t.Fatalf("err = %v, want the token import failure", err)
	}
	if got := f.argvs(); got[len(got)-1] != "cryptsetup luksErase --batch-mode "+dev {
		t.Fatalf("calls = %q, want luksErase last", got)
	}
	got, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:16<<20], make([]byte, 16<<20)) {
		t.Error("header area not zeroed")
	}
	if !bytes.Equal(got[16<<20:], content[16<<20:]) {
		t.Error("data past the header area was touched")
	}
}

func TestFormatReportsFailedCleanup(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "missing")
	f := newFakeCS(t)
	f.on("cryptsetup isLuks "+dev, csAnswer{code: 1})
	f.on(formatCmd+dev, csAnswer{})
	f.on("cryptsetup token import --json-file - "+dev, csAnswer{code: 1, stderr: "Failed to import token from file.\n"})
	f.on("cryptsetup luksErase --batch-mode "+dev, csAnswer{})
	err := New(WithExec(f.exec)).Format(context.Background(), dev, testKey, Token{KeyID: "42", Volume: "v1"})
	if err == nil || !strings.Contains(err.Error(), "removing the new header also failed") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
	if _, serr := os.Stat(dev); !errors.Is(serr, os.ErrNotExist) {
		t.Fatal("cleanup created a file where the device was expected")
	}
}

func TestFormatValidatesBeforeRunning(t *testing.T) {
	cases := []struct {
		dev string
		key []byte
		tok Token
	}{
		{"/dev/vg/lv", testKey[:31], Token{KeyID: "1", Volume: "v"}},
		{"/dev/vg/lv", append(bytes.Clone(testKey), 0), Token{KeyID: "1", Volume: "v"}},
		{"/dev/vg/lv", nil, Token{KeyID: "1", Volume: "v"}},
		{"dev/vg/lv", testKey, Token{KeyID: "1", Volume: "v"}},
		{"/dev/vg/../lv", testKey, Token{KeyID: "1", Volume: "v"}},
		{"/dev/vg/lv", testKey, Token{KeyID: "", Volume: "v"}},
		{"/dev/vg/lv", testKey, Token{KeyID: "1", Volume: ""}},
		{"/dev/vg/lv", testKey, Token{KeyID: "\xff\xfe", Volume: "v"}},
		{"/dev/vg/lv", testKey, Token{KeyID: strings.Repeat("1", 1025), Volume: "v"}},
	}
	for _, c := range cases {
		f := newFakeCS(t)
		err := New(WithExec(f.exec)).Format(context.Background(), c.dev, c.key, c.tok)
		if err == nil {
			t.Errorf("Format(%q, %d-byte key, %+v) accepted bad input", c.dev, len(c.key), c.tok)
		}
		if len(f.calls) != 0 {
			t.Errorf("ran %q before validating", f.argvs())
		}
		assertNoKey(t, f, testKey, err)
	}
}

func fixture(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInspectParsesRealDumps(t *testing.T) {
	for _, c := range []struct {
		fixture string
		want    Header
	}{
		{"luksdump-token.json", Header{Version: 2, Cipher: "aes-xts-plain64", KeyBits: 512, SectorSize: 4096, Keyslots: 1, SlotIDs: []int{0}, Token: &Token{KeyID: "42", Volume: "v1"}}},
		{"luksdump-notoken.json", Header{Version: 2, Cipher: "aes-xts-plain64", KeyBits: 512, SectorSize: 4096, Keyslots: 1, SlotIDs: []int{0}}},
		{"luksdump-erased.json", Header{Version: 2, Cipher: "aes-xts-plain64", KeyBits: 0, SectorSize: 4096, Keyslots: 0, Token: &Token{KeyID: "42", Volume: "v1"}}},
	} {
		f := newFakeCS(t)
		f.on("cryptsetup luksDump --dump-json-metadata /dev/vg/cv-v1", csAnswer{stdout: fixture(t, c.fixture)})
		h, err := New(WithExec(f.exec)).Inspect(context.Background(), "/dev/vg/cv-v1")
		if err != nil {
			t.Fatalf("%s: %v", c.fixture, err)
		}
		if !reflect.DeepEqual(h, c.want) {
			t.Errorf("%s: Header = %+v (token %+v), want %+v", c.fixture, h, h.Token, c.want)
		}
	}
}

func TestInspectFindsOurTokenAmongOthers(t *testing.T) {
	dump := `{"keyslots":{"1":{"type":"luks2","key_size":32},"0":{"type":"luks2","key_size":64}},
	"tokens":{"0":{"type":"systemd-tpm2","keyslots":["1"]},"10":{"type":"cryptvol-kmip","keyslots":["0"],"kmip_id":"later","volume":"v"},
	"2":{"type":"cryptvol-kmip","keyslots":["0"],"kmip_id":"first","volume":"v"}},
	"segments":{"0":{"type":"crypt","offset":"16777216","size":"dynamic","encryption":"aes-xts-plain64","sector_size":512}}}`
	f := newFakeCS(t)
	f.on("cryptsetup luksDump --dump-json-metadata /dev/x", csAnswer{stdout: dump})
	h, err := New(WithExec(f.exec)).Inspect(context.Background(), "/dev/x")
	if err != nil {
		t.Fatal(err)
	}
	if h.Token == nil || h.Token.KeyID != "first" || h.KeyBits != 512 || h.Keyslots != 2 || h.SectorSize != 512 {
		t.Fatalf("Header = %+v, token %+v", h, h.Token)
	}
}

func TestInspectNotLUKS(t *testing.T) {
	for _, stderr := range []string{
		"Device /dev/x is not a valid LUKS device.\n",             // no header
		"Dump operation is not supported for this device type.\n", // LUKS1
	} {
		f := newFakeCS(t)
		f.on("cryptsetup luksDump --dump-json-metadata /dev/x", csAnswer{code: 1, stderr: stderr})
		f.on("cryptsetup isLuks --type luks2 /dev/x", csAnswer{code: 1})
		_, err := New(WithExec(f.exec)).Inspect(context.Background(), "/dev/x")
		if !errors.Is(err, ErrNotLUKS) || !strings.Contains(err.Error(), "/dev/x") {
			t.Errorf("stderr %q: err = %v, want ErrNotLUKS naming the device", stderr, err)
		}
	}
}

func TestInspectDeviceErrorIsNotNotLUKS(t *testing.T) {
	f := newFakeCS(t)
	f.on("cryptsetup luksDump --dump-json-metadata /dev/x", csAnswer{code: 4, stderr: "Device /dev/x does not exist or access denied.\n"})
	f.on("cryptsetup isLuks --type luks2 /dev/x", csAnswer{code: 4, stderr: "Device /dev/x does not exist or access denied.\n"})
	_, err := New(WithExec(f.exec)).Inspect(context.Background(), "/dev/x")
	var e *command.Error
	if err == nil || errors.Is(err, ErrNotLUKS) || !errors.As(err, &e) || e.ExitCode != 4 || e.Args[1] != "luksDump" {
		t.Fatalf("err = %v", err)
	}
	if err.Error() != "inspect /dev/x: cryptsetup luksDump: exit code 4: Device /dev/x does not exist or access denied." {
		t.Errorf("message = %q", err)
	}
}

func TestOpen(t *testing.T) {
	for _, c := range []struct {
		opts OpenOptions
		argv string
	}{
		{OpenOptions{}, "cryptsetup open --type luks2 --key-file - /dev/vg/cv-v1 cryptvol-v1"},
		{OpenOptions{NoWorkqueue: true}, "cryptsetup open --type luks2 --key-file - --perf-no_read_workqueue --perf-no_write_workqueue /dev/vg/cv-v1 cryptvol-v1"},
	} {
		f := newFakeCS(t)
		f.on(c.argv, csAnswer{})
		if err := New(WithExec(f.exec)).Open(context.Background(), "/dev/vg/cv-v1", "cryptvol-v1", testKey, c.opts); err != nil {
			t.Fatal(err)
		}
		if len(f.calls) != 1 || !bytes.Equal(f.calls[0].stdin, testKey) {
			t.Fatalf("calls = %q, stdin %q", f.argvs(), f.calls[0].stdin)
		}
		if !bytes.Equal(f.calls[0].passed, make([]byte, 32)) {
			t.Error("key buffer not zeroed after open")
		}
		assertNoKey(t, f, testKey, nil)
	}
}

func TestOpenWrongKey(t *testing.T) {
	f := newFakeCS(t)
	f.on("cryptsetup open --type luks2 --key-file - /dev/vg/cv-v1 cryptvol-v1", csAnswer{code: 2, stderr: "No key available with this passphrase.\n"})
	err := New(WithExec(f.exec)).Open(context.Background(), "/dev/vg/cv-v1", "cryptvol-v1", testKey, OpenOptions{})
	var e *command.Error
	if !errors.As(err, &e) || e.ExitCode != 2 || !strings.Contains(err.Error(), "No key available") || !strings.Contains(err.Error(), "cryptvol-v1") {
		t.Fatalf("err = %v", err)
	}
	assertNoKey(t, f, testKey, err)
}

func TestOpenValidatesBeforeRunning(t *testing.T) {
	for _, c := range []struct{ dev, mapping string }{
		{"/dev/vg/lv", ""}, {"/dev/vg/lv", "a/b"}, {"/dev/vg/lv", "-x"}, {"/dev/vg/lv", ".."},
		{"/dev/vg/lv", "a b"}, {"/dev/vg/lv", strings.Repeat("m", 128)}, {"vg/lv", "ok"},
	} {
		f := newFakeCS(t)
		if err := New(WithExec(f.exec)).Open(context.Background(), c.dev, c.mapping, testKey, OpenOptions{}); err == nil {
			t.Errorf("Open(%q, %q) accepted bad input", c.dev, c.mapping)
		}
		if len(f.calls) != 0 {
			t.Errorf("ran %q", f.argvs())
		}
	}
	f := newFakeCS(t)
	err := New(WithExec(f.exec)).Open(context.Background(), "/dev/vg/lv", "ok", testKey[:16], OpenOptions{})
	if err == nil || len(f.calls) != 0 || !strings.Contains(err.Error(), "16 bytes, want 32") {
		t.Errorf("short key: err = %v, calls %q", err, f.argvs())
	}
	if err := ValidateMapping("cryptvol-" + strings.Repeat("a", 64)); err != nil {
		t.Errorf("longest cryptvol mapping refused: %v", err)
	}
}

// fakeDM is device-mapper's name table for a Cryptsetup under test.
type fakeDM struct {
	devs map[string]dmInfo
	err  error // every ioctl's answer, when set
}

func (d *fakeDM) wire(c *Cryptsetup) *Cryptsetup {
	c.dmStatus = func(name string) (dmInfo, error) {
		if d.err != nil {
			return dmInfo{}, d.err
		}
		i, ok := d.devs[name]
		if !ok {
			return dmInfo{}, unix.ENXIO
		}
		return i, nil
	}
	c.dmList = func() ([]string, error) {
		if d.err != nil {
			return nil, d.err
		}
		return slices.Collect(maps.Keys(d.devs)), nil
	}
	c.dmRemove = func(name string) error {
		if _, ok := d.devs[name]; !ok {
			return unix.ENXIO
		}
		delete(d.devs, name)
		return nil
	}
	return c
}

const v1UUID = "CRYPT-LUKS2-0123456789abcdef0123456789abcdef-cryptvol-v1"

// IsOpen and Mappings ask device-mapper's name table, tableless devices
// included, and start no program.
func TestIsOpen(t *testing.T) {
	f := newFakeCS(t)
	dm := &fakeDM{devs: map[string]dmInfo{
		"labvg-cv--v1": {flags: dmActivePresentFlag},
		"cryptvol-v1":  {flags: dmActivePresentFlag, uuid: v1UUID},
		"cryptvol-v10": {uuid: "CRYPT-LUKS2-0123456789abcdef0123456789abcdef-cryptvol-v10"}, // an open cut off
	}}
	c := dm.wire(New(WithExec(f.exec)))
	for _, tc := range []struct {
		mapping string
		want    bool
	}{{"cryptvol-v1", true}, {"cryptvol-v10", true}, {"cryptvol-v2", false}, {"cryptvol-v", false}} {
		got, err := c.IsOpen(context.Background(), tc.mapping)
		if err != nil || got != tc.want {
			t.Errorf("IsOpen(%s) = %v, %v; want %v", tc.mapping, got, err, tc.want)
		}
	}
	names, err := c.Mappings(context.Background())
	if want := map[string]bool{"labvg-cv--v1": true, "cryptvol-v1": true, "cryptvol-v10": true}; err != nil || !reflect.DeepEqual(names, want) {
		t.Errorf("Mappings = %v, %v; want %v", names, err, want)
	}
	if len(f.calls) != 0 {
		t.Errorf("IsOpen or Mappings ran %q", f.argvs())
	}
	if _, err := c.IsOpen(context.Background(), "../x"); err == nil {
		t.Error("a bad mapping name was accepted")
	}
	// device-mapper that cannot be asked: an error naming the mapping,
	// never "closed".
	dm.err = unix.EACCES
	if got, err := c.IsOpen(context.Background(), "cryptvol-v2"); err == nil || !strings.Contains(err.Error(), "cryptvol-v2") {
		t.Errorf("IsOpen without device-mapper = %v, %v; want an error naming the mapping", got, err)
	}
	if names, err := c.Mappings(context.Background()); err == nil {
		t.Errorf("Mappings without device-mapper = %v, want an error", names)
	}
}

func TestClose(t *testing.T) {
	// Not open: nothing to do, and no program.
	f := newFakeCS(t)
	if err := (&fakeDM{}).wire(New(WithExec(f.exec))).Close(context.Background(), "cryptvol-v1"); err != nil || len(f.calls) != 0 {
		t.Fatalf("err = %v, calls %q", err, f.argvs())
	}
	// Open, and not a mapping the direct path takes (no node here):
	// closed by cryptsetup, one program run.
	dm := &fakeDM{devs: map[string]dmInfo{"cryptvol-v1": {flags: dmActivePresentFlag, uuid: v1UUID}}}
	f = newFakeCS(t)
	f.on("cryptsetup close cryptvol-v1", csAnswer{then: func() { delete(dm.devs, "cryptvol-v1") }})
	if err := dm.wire(New(WithExec(f.exec))).Close(context.Background(), "cryptvol-v1"); err != nil || len(f.calls) != 1 {
		t.Fatalf("err = %v, calls %q", err, f.argvs())
	}
	// cryptsetup's "not active" while device-mapper still has the name is
	// no close.
	dm = &fakeDM{devs: map[string]dmInfo{"cryptvol-v1": {flags: dmActivePresentFlag, uuid: "LVM-x"}}}
	f = newFakeCS(t)
	f.on("cryptsetup close cryptvol-v1", csAnswer{code: 4, stderr: "Device cryptvol-v1 is not active.\n"})
	if err := dm.wire(New(WithExec(f.exec))).Close(context.Background(), "cryptvol-v1"); err == nil || !strings.Contains(err.Error(), "still has a device") {
		t.Fatalf("exit 4 with the device still there: err = %v", err)
	}
	// Busy: an error naming the mapping.
	dm = &fakeDM{devs: map[string]dmInfo{"cryptvol-v1": {flags: dmActivePresentFlag, uuid: v1UUID}}}
	f = newFakeCS(t)
	f.on("cryptsetup close cryptvol-v1", csAnswer{code: 5, stderr: "Device cryptvol-v1 is still in use.\n"})
	err := dm.wire(New(WithExec(f.exec))).Close(context.Background(), "cryptvol-v1")
	if err == nil || !strings.Contains(err.Error(), "still in use") || !strings.Contains(err.Error(), "cryptvol-v1") {
		t.Fatalf("err = %v", err)
	}
	// The lifecycle tells "something still holds it" from other failures.
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("busy close: %v does not wrap ErrBusy", err)
	}
	f = newFakeCS(t)
	f.on("cryptsetup close cryptvol-v1", csAnswer{code: 1, stderr: "Wrong parameters.\n"})
	if err := dm.wire(New(WithExec(f.exec))).Close(context.Background(), "cryptvol-v1"); err == nil || errors.Is(err, ErrBusy) {
		t.Fatalf("exit 1 close: %v, want an error that is not ErrBusy", err)
	}
}

func TestErase(t *testing.T) {
	f := newFakeCS(t)
	f.on("cryptsetup luksErase --batch-mode /dev/vg/cv-v1", csAnswer{})
	if err := New(WithExec(f.exec)).Erase(context.Background(), "/dev/vg/cv-v1"); err != nil {
		t.Fatal(err)
	}
	f = newFakeCS(t)
	f.on("cryptsetup luksErase --batch-mode /dev/vg/cv-v1", csAnswer{code: 1, stderr: "Device /dev/vg/cv-v1 is not a valid LUKS device.\n"})
	f.on("cryptsetup isLuks /dev/vg/cv-v1", csAnswer{code: 1})
	if err := New(WithExec(f.exec)).Erase(context.Background(), "/dev/vg/cv-v1"); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("err = %v, want ErrNotLUKS", err)
	}
	if err := New(WithExec(newFakeCS(t).exec)).Erase(context.Background(), "relative"); err == nil {
		t.Fatal("relative device accepted")
	}
}
