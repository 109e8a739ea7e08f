package keys

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"time"
)

// DefaultTimeout bounds every KMIP call when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Config says where the KMIP server is and how to authenticate to it (mutual
// TLS: the server's CA, our client certificate and key, all PEM files).
type Config struct {
	// Endpoint is host:port of the KMIP server, e.g. "127.0.0.1:5696", or
	// several separated by commas: servers of one cluster that hold the
	// same keys, tried in order (connect in endpoints.go).
	Endpoint string
	// CAFile holds the CA certificate(s) the server's certificate must chain to.
	CAFile string
	// CertFile and KeyFile are the client certificate and its private key.
	// KMIP servers such as PyKMIP give keys to the certificate's CN, so the
	// same certificate must be used for the life of the volumes.
	CertFile string
	KeyFile  string
	// ServerName is the name (or IP) the server certificate must carry;
	// empty means the host part of the endpoint dialed.
	ServerName string
	// Timeout bounds each Manager call, including dialing; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Group, when set, is the Object Group attribute of every key Create
	// makes (NodeGroup(node)): what decommission finds a node's keys by.
	Group string
	// Policy, when set, is the Operation Policy Name of every key Create
	// makes: the server's rules for who may do what with the key (PyKMIP:
	// a policy file whose groups give an admin Locate, Revoke and Destroy
	// but not Get; docs/operations.md, "Decommission a node").
	Policy string
}

// tlsConfig validates cfg, whose Endpoint list parsed to eps, and builds the
// mutual-TLS client configuration. It returns cfg with defaults filled in.
// Every error names the setting at fault.
func (cfg Config) tlsConfig(eps []string) (Config, *tls.Config, []string, error) {
	var warnings []string
	if cfg.ServerName == "" && len(eps) == 1 {
		cfg.ServerName, _, _ = net.SplitHostPort(eps[0])
	}
	for _, f := range []struct{ what, v string }{{"Group", cfg.Group}, {"Policy", cfg.Policy}} {
		if f.v != "" {
			if err := validateText(f.what, f.v); err != nil {
				return cfg, nil, nil, fmt.Errorf("kmip config: %w", err)
			}
		}
	}
	switch {
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultTimeout
	case cfg.Timeout < 0:
		return cfg, nil, nil, fmt.Errorf("kmip config: Timeout %s is negative (want a positive duration, e.g. 10s)", cfg.Timeout)
	}

	if cfg.CAFile == "" {
		return cfg, nil, nil, errors.New("kmip config: CAFile is empty (want the PEM file of the CA that signed the KMIP server's certificate)")
	}
	caPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return cfg, nil, nil, fmt.Errorf("kmip config: CAFile: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return cfg, nil, nil, fmt.Errorf("kmip config: CAFile %q holds no PEM certificate", cfg.CAFile)
	}

	if cfg.CertFile == "" {
		return cfg, nil, nil, errors.New("kmip config: CertFile is empty (want the PEM client certificate)")
	}
	if cfg.KeyFile == "" {
		return cfg, nil, nil, errors.New("kmip config: KeyFile is empty (want the PEM private key of the client certificate)")
	}
	if _, err := os.Stat(cfg.CertFile); err != nil {
		return cfg, nil, nil, fmt.Errorf("kmip config: CertFile: %w", err)
	}
	if _, err := os.Stat(cfg.KeyFile); err != nil {
		return cfg, nil, nil, fmt.Errorf("kmip config: KeyFile: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return cfg, nil, nil, fmt.Errorf("kmip config: CertFile %q / KeyFile %q: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return cfg, nil, nil, fmt.Errorf("kmip config: CertFile %q: %w", cfg.CertFile, err)
		}
	}
	// A certificate restricted to other uses is refused by every conforming
	// server; one without the extension at all is refused by PyKMIP.
	switch {
	case len(leaf.ExtKeyUsage) == 0:
		warnings = append(warnings, fmt.Sprintf("client certificate %q has no extendedKeyUsage; PyKMIP refuses such certificates (want clientAuth)", cfg.CertFile))
	case !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny):
		return cfg, nil, nil, fmt.Errorf("kmip config: CertFile %q: certificate is not valid for TLS client authentication (extendedKeyUsage lacks clientAuth)", cfg.CertFile)
	}
	now := time.Now()
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		warnings = append(warnings, fmt.Sprintf("client certificate %q is only valid from %s to %s", cfg.CertFile,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339)))
	}

	return cfg, &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
		ServerName:   cfg.ServerName,
	}, warnings, nil
}
