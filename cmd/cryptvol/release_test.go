package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// goTool is the go command of the toolchain running this test.
func goTool(t *testing.T) string {
	t.Helper()
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// buildStamped builds cryptvol as the Makefile does, with version stamped.
func buildStamped(t *testing.T, version string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cryptvol")
	cmd := exec.Command(goTool(t), "build", "-trimpath", "-ldflags",
		"-s -w -X github.com/cryptvol/cryptvol/internal/version.stamp="+version, "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The Makefile's -X names the variable internal/version reads: a typo there
// links silently and every build says "unknown".
func TestStampedBinaryPrintsItsVersion(t *testing.T) {
	bin := buildStamped(t, "v9.8.7-3-gabcdef0-dirty")
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("cryptvol version: %v", err)
	}
	if want := "cryptvol v9.8.7-3-gabcdef0-dirty\nstate format 2 (reads formats 1 to 2)\n"; string(out) != want {
		t.Errorf("cryptvol version printed %q, want %q", out, want)
	}
}

// goModRequires reads go.mod's require lines: module path to version, and
// whether each is a direct requirement.
func goModRequires(t *testing.T) (map[string]string, map[string]bool) {
	t.Helper()
	f, err := os.Open("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	versions, direct := map[string]string{}, map[string]bool{}
	block := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "require (":
			block = true
			continue
		case block && line == ")":
			block = false
			continue
		case strings.HasPrefix(line, "require "):
			line = strings.TrimPrefix(line, "require ")
		case !block:
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		versions[fields[0]] = fields[1]
		direct[fields[0]] = !strings.Contains(line, "// indirect")
	}
	return versions, direct
}

// make release's inventory lists every module go.mod requires that the
// binary links, at go.mod's version, and nothing go.mod does not require: a
// user auditing the release reads the same list the build used.
func TestReleaseInventoryListsGoModModules(t *testing.T) {
	bin := buildStamped(t, "inventory-test")
	pkgs := filepath.Join(t.TempDir(), "debian-packages")
	if err := os.WriteFile(pkgs, []byte("lvm2 2.03.16-2 amd64\ncryptsetup-bin 2:2.6.1-4~deb12u2 amd64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("../../scripts/release/inventory", bin, pkgs)
	// The script runs `go version -m`: the toolchain this test runs under.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(goTool(t))+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/release/inventory: %v\n%s", err, out)
	}
	inv := string(out)
	listed := map[string]string{}
	section := ""
	for _, line := range strings.Split(inv, "\n") {
		if strings.HasPrefix(line, "== ") {
			section = line
			continue
		}
		if f := strings.Fields(line); strings.Contains(section, "Go modules") && len(f) >= 2 {
			listed[f[0]] = f[1]
		}
	}

	// What the binary links, by the go command's own account.
	linked := exec.Command(goTool(t), "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}{{end}}{{end}}", ".")
	linked.Env = append(os.Environ(), "CGO_ENABLED=0")
	lo, err := linked.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	versions, direct := goModRequires(t)
	for _, m := range strings.Fields(string(lo)) {
		if got, want := listed[m], versions[m]; got != want {
			t.Errorf("inventory lists %s at %q; go.mod requires %q", m, got, want)
		}
	}
	for m, v := range listed {
		if versions[m] != v {
			t.Errorf("inventory lists %s %s, which go.mod does not require", m, v)
		}
	}
	for m := range direct {
		if direct[m] && listed[m] == "" {
			t.Errorf("inventory lacks %s, a direct requirement of go.mod", m)
		}
	}
	if len(listed) == 0 {
		t.Fatalf("no Go modules in the inventory:\n%s", inv)
	}
	for _, want := range []string{"cryptvol plugin inventory-test\n", "lvm2 2.03.16-2 amd64\n", "cryptsetup-bin 2:2.6.1-4~deb12u2 amd64\n"} {
		if !strings.Contains(inv, want) {
			t.Errorf("inventory lacks %q:\n%s", want, inv)
		}
	}
}
