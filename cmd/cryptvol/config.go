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

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume"
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
	NoWorkqueue bool
	MaxCreates  int
	LogLevel    logrus.Level
}

// Defaults of the optional settings.
const (
	DefaultSize      = "1G"
	DefaultFS        = volume.FSExt4
	DefaultMountRoot = "/mnt/volumes"
	DefaultStateDir  = "/var/lib/cryptvol"
	DefaultSocket    = "/run/docker/plugins/cryptvol.sock"
	DefaultTimeout   = "10s"
)

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
	if volume.MinSize(c.FS) == 0 {
		return c, fmt.Errorf("CRYPTVOL_FS=%q is not supported (allowed: %s, %s)", c.FS, volume.FSExt4, volume.FSXFS)
	}

	size := get("CRYPTVOL_DEFAULT_SIZE", DefaultSize)
	n, err := volume.ParseSize(size)
	if err != nil {
		return c, fmt.Errorf("CRYPTVOL_DEFAULT_SIZE: %w", err)
	}
	if min := volume.MinSize(c.FS); n < min {
		return c, fmt.Errorf("CRYPTVOL_DEFAULT_SIZE=%s is below the %s minimum of %s", size, c.FS, volume.FormatSize(min))
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
		env, what string
		dst       *string
	}{
		{"CRYPTVOL_KMIP_CA", "the PEM CA certificate that signed the KMIP server's certificate", &c.KMIP.CAFile},
		{"CRYPTVOL_KMIP_CERT", "the PEM client certificate", &c.KMIP.CertFile},
		{"CRYPTVOL_KMIP_KEY", "the PEM private key of the client certificate", &c.KMIP.KeyFile},
	} {
		p := get(f.env, "")
		if p == "" {
			return c, fmt.Errorf("%s is required: path of %s", f.env, f.what)
		}
		if fi, err := os.Stat(p); err != nil {
			return c, fmt.Errorf("%s=%s: %v", f.env, p, unwrapPath(err))
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

	nwq := get("CRYPTVOL_NO_WORKQUEUE", "true")
	c.NoWorkqueue, err = strconv.ParseBool(nwq)
	if err != nil {
		return c, fmt.Errorf("CRYPTVOL_NO_WORKQUEUE=%q is not valid (allowed: true, false)", nwq)
	}

	mc := get("CRYPTVOL_MAX_CREATES", strconv.Itoa(volume.DefaultMaxCreates))
	if c.MaxCreates, err = strconv.Atoi(mc); err != nil || c.MaxCreates < 1 || c.MaxCreates > 64 {
		return c, fmt.Errorf("CRYPTVOL_MAX_CREATES=%q is not valid (allowed: a whole number from 1 to 64)", mc)
	}

	lvl := get("CRYPTVOL_LOG_LEVEL", "info")
	c.LogLevel, err = logrus.ParseLevel(lvl)
	if err != nil {
		return c, fmt.Errorf("CRYPTVOL_LOG_LEVEL=%q is not valid (allowed: panic, fatal, error, warn, info, debug, trace)", lvl)
	}
	return c, nil
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
	}
}
