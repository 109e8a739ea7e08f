package keys

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/sirupsen/logrus"
)

// Tenants hands out one KMIP client per tenant: the base configuration's
// servers, CA, group and policy, with the tenant's own client certificate,
// DIR/TENANT/cert.pem and DIR/TENANT/key.pem. A KMIP server gives each key
// to the identity that made it (PyKMIP: the certificate's CN), so one
// tenant's identity cannot fetch another's keys. A client is made on the
// tenant's first use and kept: its connection is reused like the main
// client's.
//
// Concurrency: safe for concurrent use.
type Tenants struct {
	base Config
	dir  string
	log  logrus.FieldLogger

	mu      sync.Mutex
	clients map[string]*KMIP
}

// NewTenants prepares tenant clients under dir; nothing is read until For.
func NewTenants(base Config, dir string, log logrus.FieldLogger) *Tenants {
	return &Tenants{base: base, dir: dir, log: log, clients: map[string]*KMIP{}}
}

// Dir is where the tenants' identities are looked for.
func (t *Tenants) Dir() string { return t.dir }

// For returns the tenant's client. An error says which files are missing
// or wrong, so that a create for the tenant is refused before anything is
// made.
func (t *Tenants) For(tenant string) (*KMIP, error) {
	if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.clients[tenant]; ok {
		return c, nil
	}
	cfg := t.base
	cfg.CertFile = filepath.Join(t.dir, tenant, "cert.pem")
	cfg.KeyFile = filepath.Join(t.dir, tenant, "key.pem")
	for _, f := range []string{cfg.CertFile, cfg.KeyFile} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("tenant %q has no KMIP identity here: want its client certificate and key as %s and %s (%v)", tenant, cfg.CertFile, cfg.KeyFile, err)
		}
	}
	var log logrus.FieldLogger = t.log
	if log != nil {
		log = log.WithField("tenant", tenant)
	}
	c, err := NewKMIP(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("tenant %q: %w", tenant, err)
	}
	t.clients[tenant] = c
	return c, nil
}

// Close drops every tenant client's connection.
func (t *Tenants) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.clients {
		c.Close()
	}
}

// ValidateTenant checks a tenant name (the volume option tenant=NAME): it
// names a directory and goes into an LVM tag.
func ValidateTenant(tenant string) error {
	if !tenantRE.MatchString(tenant) {
		return fmt.Errorf("tenant %q is not valid (allowed: 1-63 characters from a-z 0-9 _ . -, starting with a letter or digit)", tenant)
	}
	return nil
}

var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
