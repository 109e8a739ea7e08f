//go:build lab

// Package kmiplab starts, for lab tests, the PyKMIP server of a site with
// roles: scripts/kmip/dev-server in its groups mode (a "cryptvol" operation
// policy; node identities own their keys, the admin identity may find,
// revoke and destroy every key but fetch none). It gives plain paths, not
// keys.Config, so that package keys' own tests can use it.
//
// Concurrency: each Start is its own server; tests that start one must not
// run in parallel with another (fixed ports).
package kmiplab

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Port is the groups server's port; its group service listens on Port+1.
const Port = "5697"

// Server describes a running groups-mode server.
type Server struct {
	Endpoint, CAFile, ServerName, Policy string
	dir                                  string
}

// Identity returns the certificate and key files of an identity: "client"
// (CN cryptvol, a node), "node-b", "tenant-a", "tenant-b" (nodes) or
// "admin".
func (s *Server) Identity(name string) (certFile, keyFile string) {
	switch name {
	case "client":
		return filepath.Join(s.dir, "client.pem"), filepath.Join(s.dir, "client.key")
	case "tenant-a", "tenant-b":
		return filepath.Join(s.TenantsDir(), name, "cert.pem"), filepath.Join(s.TenantsDir(), name, "key.pem")
	}
	return filepath.Join(s.dir, name+".pem"), filepath.Join(s.dir, name+".key")
}

// TenantsDir holds the tenants' identities as the plugin's option tenant
// expects them: TENANT/cert.pem and TENANT/key.pem.
func (s *Server) TenantsDir() string { return filepath.Join(s.dir, "tenants") }

// Dir is the server's directory (its log is server.log).
func (s *Server) Dir() string { return s.dir }

// Start starts a groups-mode server for the test and stops it when the test
// ends. It skips the test where PyKMIP is not installed.
func Start(t *testing.T) *Server {
	t.Helper()
	if _, err := os.Stat("/usr/bin/pykmip-server"); err != nil {
		t.Skip("PyKMIP is not installed here")
	}
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "..", "scripts", "kmip", "dev-server")
	if _, err := os.Stat(script); err != nil {
		// A test binary run from the repository: the source path may be
		// trimmed; find the script from the working directory instead.
		for _, rel := range []string{"scripts/kmip/dev-server", "../scripts/kmip/dev-server", "../../scripts/kmip/dev-server"} {
			if _, err := os.Stat(rel); err == nil {
				script, _ = filepath.Abs(rel)
				break
			}
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(script, "start", dir, Port)
	cmd.Env = append(os.Environ(), "KMIP_GROUPS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s start: %v\n%s", script, err, out)
	}
	t.Cleanup(func() { _ = exec.Command(script, "stop", dir).Run() })
	s := &Server{dir: dir}
	f, err := os.Open(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		switch k {
		case "CRYPTVOL_KMIP_ENDPOINT":
			s.Endpoint = v
		case "CRYPTVOL_KMIP_CA":
			s.CAFile = v
		case "CRYPTVOL_KMIP_SERVER_NAME":
			s.ServerName = v
		case "CRYPTVOL_KMIP_POLICY":
			s.Policy = v
		}
	}
	if s.Endpoint == "" || s.Policy == "" {
		t.Fatalf("%s/env lacks the endpoint or the policy", dir)
	}
	return s
}
