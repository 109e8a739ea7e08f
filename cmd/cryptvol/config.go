package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume"
	"github.com/cryptvol/cryptvol/volume/options"
)

// Config is the plugin's configuration, read from the environment so that
// `docker plugin set` can change it.
type Config struct {
	VG          string
	Devices     []string // build VG from these when it does not exist
	DefaultSize uint64
	ThinPool    string
	FS          string
	KMIP        keys.Config
	MountRoot   string
	StateDir    string
	Socket      string
	// CSISocket: also serve the Container Storage Interface on this unix
	// socket (CSI_ENDPOINT; "": not).
	CSISocket   string
	NoWorkqueue bool
	MaxCreates  int
	LogLevel    logrus.Level
	// Node names this host in the audit trail and in the KMIP Object
	// Group of its keys (keys.NodeGroup), which decommission finds.
	Node  string
	Audit audit.Options // Path "" means no trail
	// TenantsDir holds a directory per tenant with its KMIP client
	// certificate and key (cert.pem, key.pem): option tenant=NAME.
	TenantsDir string
	// RotateAfter: keys older than this are rotated by the plugin (0: never).
	RotateAfter time.Duration
	// RemoveGrace: removed volumes stay in the trash, restorable, this long
	// (0: a remove destroys at once).
	RemoveGrace time.Duration
	// MetricsAddr is host:port of the Prometheus endpoint ("": none).
	MetricsAddr string
	// Thin pool safety: fill percent and over-commit ratio limits.
	ThinMaxFill, ThinMaxOvercommit float64
	// Shared: VG is a shared volume group used by several hosts through
	// their lvmlockd (CRYPTVOL_SHARED; shared.go).
	Shared bool
	// HostID: this host's sanlock host_id in shared mode (CRYPTVOL_HOST_ID;
	// 0: lvm's own local/host_id).
	HostID int
}

// Defaults of the optional settings.
const (
	DefaultSize      = "1G"
	DefaultFS        = options.FSExt4
	DefaultMountRoot = "/mnt/volumes"
	DefaultStateDir  = "/var/lib/cryptvol"
	DefaultSocket    = "/run/docker/plugins/cryptvol.sock"
	DefaultTimeout   = "10s"
	DefaultAuditFile = "audit.log" // in the state directory
	// The KMIP identity's files, in the bundle's kmip mount (config.json).
	DefaultKMIPCA   = "/etc/cryptvol/kmip/ca.pem"
	DefaultKMIPCert = "/etc/cryptvol/kmip/client.pem"
	DefaultKMIPKey  = "/etc/cryptvol/kmip/client.key"
)

// processEnv holds the entries of config.json that the programs the plugin
// runs read, not LoadConfig: libdevmapper's DM_DISABLE_UDEV, under
// cryptsetup and lvm (docs/design.md). An upgraded plugin runs with the
// environment of its install (TestBundleEnvDefaultsAreTheCodesDefaults), so
// setProcessEnv sets them when absent.
var processEnv = map[string]string{"DM_DISABLE_UDEV": "1"}

func setProcessEnv() {
	for k, v := range processEnv {
		if _, ok := os.LookupEnv(k); !ok {
			os.Setenv(k, v)
		}
	}
}

// hostname is os.Hostname; tests replace it. A managed plugin has its own
// UTS namespace, which runc starts with the host's name (moby does not set
// one for plugins: daemon/pkg/plugin/v2/plugin_linux.go).
var hostname = os.Hostname

// LoadConfig reads the CRYPTVOL_* settings through getenv. Its error is one
// line that names the setting at fault and says what is allowed.
func LoadConfig(getenv func(string) string) (Config, error) {
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	var c Config

	c.VG = get("CRYPTVOL_VG", "")
	if c.VG == "" {
		return c, fmt.Errorf("CRYPTVOL_VG is required: the LVM volume group that holds the volumes")
	}
	if err := lvm.ValidateVGName(c.VG); err != nil {
		return c, fmt.Errorf("CRYPTVOL_VG: %w", err)
	}

	for _, d := range strings.FieldsFunc(getenv("CRYPTVOL_DEVICES"), func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n'
	}) {
		if !strings.HasPrefix(d, "/dev/") || filepath.Clean(d) != d {
			return c, fmt.Errorf("CRYPTVOL_DEVICES: %q is not a block device path (allowed: /dev/... paths separated by commas or spaces)", d)
		}
		c.Devices = append(c.Devices, d)
	}

	c.FS = get("CRYPTVOL_FS", DefaultFS)
	if options.MinSize(c.FS) == 0 {
		return c, fmt.Errorf("CRYPTVOL_FS=%q is not supported (allowed: %s, %s)", c.FS, options.FSExt4, options.FSXFS)
	}

	size := get("CRYPTVOL_DEFAULT_SIZE", DefaultSize)
	n, err := options.ParseSize(size)
	if err != nil {
		return c, fmt.Errorf("CRYPTVOL_DEFAULT_SIZE: %w", err)
	}
	if min := options.MinSize(c.FS); n < min {
		return c, fmt.Errorf("CRYPTVOL_DEFAULT_SIZE=%s is below the %s minimum of %s", size, c.FS, options.FormatSize(min))
	}
	c.DefaultSize = n

	c.ThinPool = get("CRYPTVOL_THIN_POOL", "")
	if c.ThinPool != "" {
		if err := lvm.ValidateLVName(c.ThinPool); err != nil {
			return c, fmt.Errorf("CRYPTVOL_THIN_POOL: %w", err)
		}
	}

	c.KMIP.Endpoint = get("CRYPTVOL_KMIP_ENDPOINT", "")
	if c.KMIP.Endpoint == "" {
		return c, fmt.Errorf("CRYPTVOL_KMIP_ENDPOINT is required: host:port of the KMIP server, e.g. kmip.example.com:5696, or several separated by commas, tried in order")
	}
	endpoints, err := keys.ParseEndpoints(c.KMIP.Endpoint)
	if err != nil {
		return c, fmt.Errorf("CRYPTVOL_KMIP_ENDPOINT=%q: %w", c.KMIP.Endpoint, err)
	}
	// One endpoint: its host is the name its certificate must carry.
	// Several: each its own host, unless CRYPTVOL_KMIP_SERVER_NAME says.
	host := ""
	if len(endpoints) == 1 {
		host, _, _ = net.SplitHostPort(endpoints[0])
	}
	for _, f := range []struct {
		env, def, what string
		dst            *string
	}{
		{"CRYPTVOL_KMIP_CA", DefaultKMIPCA, "the PEM CA certificate that signed the KMIP server's certificate", &c.KMIP.CAFile},
		{"CRYPTVOL_KMIP_CERT", DefaultKMIPCert, "the PEM client certificate", &c.KMIP.CertFile},
		{"CRYPTVOL_KMIP_KEY", DefaultKMIPKey, "the PEM private key of the client certificate", &c.KMIP.KeyFile},
	} {
		p := get(f.env, f.def)
		if fi, err := os.Stat(p); err != nil {
			return c, fmt.Errorf("%s=%s: %v (want the path of %s)", f.env, p, unwrapPath(err), f.what)
		} else if fi.IsDir() {
			return c, fmt.Errorf("%s=%s is a directory, want %s", f.env, p, f.what)
		}
		*f.dst = p
	}
	c.KMIP.ServerName = get("CRYPTVOL_KMIP_SERVER_NAME", host)
	c.KMIP.Timeout, err = time.ParseDuration(get("CRYPTVOL_KMIP_TIMEOUT", DefaultTimeout))
	if err != nil || c.KMIP.Timeout <= 0 {
		return c, fmt.Errorf("CRYPTVOL_KMIP_TIMEOUT=%q is not a positive duration (e.g. 10s, 1m)", getenv("CRYPTVOL_KMIP_TIMEOUT"))
	}

	for _, f := range []struct {
		env, def string
		dst      *string
	}{
		{"CRYPTVOL_MOUNT_ROOT", DefaultMountRoot, &c.MountRoot},
		{"CRYPTVOL_STATE_DIR", DefaultStateDir, &c.StateDir},
		{"CRYPTVOL_SOCKET", DefaultSocket, &c.Socket},
	} {
		p := get(f.env, f.def)
		if !filepath.IsAbs(p) {
			return c, fmt.Errorf("%s=%q is not an absolute path", f.env, p)
		}
		*f.dst = filepath.Clean(p)
	}

	if c.CSISocket, err = csiSocket(getenv); err != nil {
		return c, err
	}

	nwq := get("CRYPTVOL_NO_WORKQUEUE", "true")
	c.NoWorkqueue, err = strconv.ParseBool(nwq)
	if err != nil {
		return c, fmt.Errorf("CRYPTVOL_NO_WORKQUEUE=%q is not valid (allowed: true, false)", nwq)
	}

	mc := get("CRYPTVOL_MAX_CREATES", strconv.Itoa(volume.DefaultMaxCreates))
	if c.MaxCreates, err = strconv.Atoi(mc); err != nil || c.MaxCreates < 1 || c.MaxCreates > 64 {
		return c, fmt.Errorf("CRYPTVOL_MAX_CREATES=%q is not valid (allowed: a whole number from 1 to 64)", mc)
	}

	if err := c.loadShared(get); err != nil {
		return c, err
	}
	if err := c.loadNodeAndAudit(get); err != nil {
		return c, err
	}

	fill := get("CRYPTVOL_THIN_MAX_FILL", strconv.Itoa(volume.DefaultThinMaxFill))
	if c.ThinMaxFill, err = strconv.ParseFloat(fill, 64); err != nil || c.ThinMaxFill <= 0 || c.ThinMaxFill > 100 {
		return c, fmt.Errorf("CRYPTVOL_THIN_MAX_FILL=%q is not valid (allowed: a percent above 0 and at most 100; 100 turns the check off)", fill)
	}
	oc := get("CRYPTVOL_THIN_MAX_OVERCOMMIT", "off")
	if oc != "off" {
		if c.ThinMaxOvercommit, err = strconv.ParseFloat(oc, 64); err != nil || c.ThinMaxOvercommit <= 0 || c.ThinMaxOvercommit > 1000 {
			return c, fmt.Errorf("CRYPTVOL_THIN_MAX_OVERCOMMIT=%q is not valid (allowed: off, or how many times the pool's size its thin volumes may add up to, e.g. 2 or 1.5)", oc)
		}
	}

	if c.MetricsAddr = get("CRYPTVOL_METRICS_ADDR", ""); c.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil || port == "" {
			return c, fmt.Errorf("CRYPTVOL_METRICS_ADDR=%q is not host:port (e.g. 127.0.0.1:9633; empty: no metrics)", c.MetricsAddr)
		}
	}

	lvl := get("CRYPTVOL_LOG_LEVEL", "info")
	c.LogLevel, err = logrus.ParseLevel(lvl)
	if err != nil {
		return c, fmt.Errorf("CRYPTVOL_LOG_LEVEL=%q is not valid (allowed: panic, fatal, error, warn, info, debug, trace)", lvl)
	}
	return c, nil
}

// loadNodeAndAudit reads CRYPTVOL_NODE, CRYPTVOL_KMIP_POLICY and the
// CRYPTVOL_AUDIT_* settings; StateDir is already set.
func (c *Config) loadNodeAndAudit(get func(name, def string) string) error {
	c.Node = get("CRYPTVOL_NODE", "")
	if c.Node == "" {
		h, err := hostname()
		if err == nil {
			err = keys.ValidateNode(h)
		}
		if err != nil {
			return fmt.Errorf("CRYPTVOL_NODE is not set and the host name cannot stand for it (%v); set CRYPTVOL_NODE to this host's name", err)
		}
		c.Node = h
	} else if err := keys.ValidateNode(c.Node); err != nil {
		return fmt.Errorf("CRYPTVOL_NODE: %w", err)
	}
	c.KMIP.Group = keys.NodeGroup(c.Node)
	c.KMIP.Policy = get("CRYPTVOL_KMIP_POLICY", "")
	c.TenantsDir = get("CRYPTVOL_KMIP_TENANTS", filepath.Join(filepath.Dir(c.KMIP.CertFile), "tenants"))
	if !filepath.IsAbs(c.TenantsDir) {
		return fmt.Errorf("CRYPTVOL_KMIP_TENANTS=%q is not an absolute path (a directory holding TENANT/cert.pem and TENANT/key.pem)", c.TenantsDir)
	}

	c.Audit = audit.Options{Host: c.Node, Sync: true}
	switch p := get("CRYPTVOL_AUDIT_FILE", filepath.Join(c.StateDir, DefaultAuditFile)); {
	case p == "off":
	case !filepath.IsAbs(p):
		return fmt.Errorf("CRYPTVOL_AUDIT_FILE=%q is not valid (allowed: an absolute path, or off)", p)
	default:
		c.Audit.Path = filepath.Clean(p)
	}
	ms := get("CRYPTVOL_AUDIT_MAX_SIZE", "10M")
	n, err := options.ParseSize(ms)
	if err != nil || n < 4096 || n > 1<<40 {
		return fmt.Errorf("CRYPTVOL_AUDIT_MAX_SIZE=%q is not valid (allowed: a size from 4K to 1T, e.g. 10M)", ms)
	}
	c.Audit.MaxSize = int64(n)
	ra := get("CRYPTVOL_ROTATE_AFTER", "off")
	if c.RotateAfter, err = options.ParseAge(ra); err != nil {
		return fmt.Errorf("CRYPTVOL_ROTATE_AFTER=%q is not valid (allowed: off, or an age of at least 1h such as 90d or 720h)", ra)
	}
	rg := get("CRYPTVOL_REMOVE_GRACE", "off")
	if c.RemoveGrace, err = options.ParseGrace(rg); err != nil {
		return fmt.Errorf("CRYPTVOL_REMOVE_GRACE=%q is not valid (allowed: off, or a time of at least 1m such as 72h or 3d)", rg)
	}
	keep := get("CRYPTVOL_AUDIT_KEEP", strconv.Itoa(audit.DefaultKeep))
	if c.Audit.Keep, err = strconv.Atoi(keep); err != nil || c.Audit.Keep < 1 || c.Audit.Keep > 1000 {
		return fmt.Errorf("CRYPTVOL_AUDIT_KEEP=%q is not valid (allowed: a whole number of rotated files from 1 to 1000)", keep)
	}
	return nil
}

// unwrapPath drops the *PathError's repetition of the path.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// volumeConfig is the lifecycle's part of c.
func (c Config) volumeConfig() volume.Config {
	return volume.Config{
		VG: c.VG, DefaultFS: c.FS, ThinPool: c.ThinPool, MountRoot: c.MountRoot, StateDir: c.StateDir,
		DefaultSize: c.DefaultSize, NoWorkqueue: c.NoWorkqueue, MaxCreates: c.MaxCreates,
		RotateAfter: c.RotateAfter, RemoveGrace: c.RemoveGrace, ThinMaxFill: c.ThinMaxFill, ThinMaxOvercommit: c.ThinMaxOvercommit,
		Shared: c.Shared, Node: c.Node,
	}
}
