package admin

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/internal/version"
	"github.com/cryptvol/cryptvol/volume"
)

func TestVersionPrintsBuildAndStateFormat(t *testing.T) {
	code, stdout, stderr := runCmd(nil, "version")
	if code != ExitOK || stderr != "" {
		t.Fatalf("version: exit %d, stderr %q", code, stderr)
	}
	// go test links no stamp: the version says so rather than inventing one.
	want := "cryptvol " + version.Unknown + "\nstate format 2 (reads formats 1 to 2)\n"
	if volume.StateVersion != 2 {
		t.Fatalf("volume.StateVersion = %d: update this test's expected output", volume.StateVersion)
	}
	if stdout != want {
		t.Errorf("version printed %q, want %q", stdout, want)
	}
}

func TestVersionJSON(t *testing.T) {
	code, stdout, _ := runCmd(nil, "version", "--json")
	if code != ExitOK {
		t.Fatalf("version --json: exit %d", code)
	}
	var got versionInfo
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("version --json printed %q: %v", stdout, err)
	}
	if got.Version != version.Get() || got.StateFormat != volume.StateVersion ||
		len(got.StateFormatsRead) != volume.StateVersion || got.StateFormatsRead[0] != 1 {
		t.Errorf("version --json = %+v", got)
	}
}

func TestVersionRefusesArgumentsAndIsListed(t *testing.T) {
	code, _, stderr := runCmd(nil, "version", "extra")
	if code != ExitUsage || !strings.Contains(stderr, `takes no arguments, got "extra"`) {
		t.Errorf("version extra: exit %d, stderr %q", code, stderr)
	}
	if _, stdout, _ := runCmd(nil, "help"); !strings.Contains(stdout, "  version ") {
		t.Errorf("help does not list version:\n%s", stdout)
	}
	if code, stdout, _ := runCmd(nil, "help", "version"); code != ExitOK || !strings.Contains(stdout, "-json") {
		t.Errorf("help version: exit %d:\n%s", code, stdout)
	}
}
