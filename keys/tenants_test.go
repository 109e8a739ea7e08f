package keys

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTenantsFindEachTenantsIdentity(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	cert, key := pki.clientFiles(t, "blue", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	if err := os.MkdirAll(filepath.Join(dir, "blue"), 0o700); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{cert: "cert.pem", key: "key.pem"} {
		if err := os.Rename(from, filepath.Join(dir, "blue", to)); err != nil {
			t.Fatal(err)
		}
	}
	ts := NewTenants(pki.config("kmip.invalid:5696"), dir, nil)
	defer ts.Close()
	blue, err := ts.For("blue")
	if err != nil {
		t.Fatal(err)
	}
	if blue.cfg.CertFile != filepath.Join(dir, "blue", "cert.pem") {
		t.Errorf("tenant blue uses %s", blue.cfg.CertFile)
	}
	if again, _ := ts.For("blue"); again != blue {
		t.Error("a second For made a second client (and connection) for the tenant")
	}
	if _, err := ts.For("green"); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "green", "cert.pem")) {
		t.Errorf("tenant without files: %v; want the paths it looked for", err)
	}
	for _, bad := range []string{"", "../blue", "Blue", "a/b", strings.Repeat("a", 64)} {
		if _, err := ts.For(bad); err == nil || !strings.Contains(err.Error(), "is not valid") {
			t.Errorf("tenant %q: %v", bad, err)
		}
	}
}
