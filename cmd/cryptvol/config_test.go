package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/keys"
)

func baseEnv(t *testing.T) map[string]string {
	dir := t.TempDir()
	env := map[string]string{
		"CRYPTVOL_VG":            "vg0",
		"CRYPTVOL_KMIP_ENDPOINT": "kmip.example.com:5696",
		"CRYPTVOL_KMIP_CA":       filepath.Join(dir, "ca.pem"),
		"CRYPTVOL_KMIP_CERT":     filepath.Join(dir, "cert.pem"),
		"CRYPTVOL_KMIP_KEY":      filepath.Join(dir, "key.pem"),
	}
	for _, k := range []string{"CRYPTVOL_KMIP_CA", "CRYPTVOL_KMIP_CERT", "CRYPTVOL_KMIP_KEY"} {
		os.WriteFile(env[k], []byte("pem"), 0o600)
	}
	return env
}

func load(env map[string]string) (Config, error) {
	return LoadConfig(func(k string) string { return env[k] })
}

func TestConfigDefaults(t *testing.T) {
	env := baseEnv(t)
	c, err := load(env)
	if err != nil {
		t.Fatal(err)
	}
	if c.VG != "vg0" || c.DefaultSize != 1<<30 || c.FS != "ext4" || c.ThinPool != "" || len(c.Devices) != 0 ||
		c.MountRoot != "/mnt/volumes" || c.StateDir != "/var/lib/cryptvol" || c.Socket != "/run/docker/plugins/cryptvol.sock" ||
		!c.NoWorkqueue || c.MaxCreates != 4 || c.LogLevel != logrus.InfoLevel {
		t.Errorf("defaults: %+v", c)
	}
	if c.KMIP.ServerName != "kmip.example.com" || c.KMIP.Timeout != 10*time.Second || c.KMIP.CAFile != env["CRYPTVOL_KMIP_CA"] {
		t.Errorf("kmip defaults: %+v", c.KMIP)
	}
	if c.Audit.Path != "/var/lib/cryptvol/audit.log" || c.Audit.MaxSize != 10<<20 || c.Audit.Keep != 5 || !c.Audit.Sync ||
		c.RotateAfter != 0 || c.TenantsDir != filepath.Join(filepath.Dir(env["CRYPTVOL_KMIP_CERT"]), "tenants") || c.KMIP.Policy != "" {
		t.Errorf("audit, rotation and tenant defaults: audit %+v rotate %s tenants %s policy %q", c.Audit, c.RotateAfter, c.TenantsDir, c.KMIP.Policy)
	}
	if h, _ := os.Hostname(); keysValidNode(h) && c.Node != h {
		t.Errorf("node %q, want the host name %q", c.Node, h)
	}
	v := c.volumeConfig()
	if v.VG != "vg0" || v.DefaultSize != 1<<30 || !v.NoWorkqueue || v.MaxCreates != 4 || v.MountRoot != "/mnt/volumes" {
		t.Errorf("volume config: %+v", v)
	}
}

func TestConfigAllSet(t *testing.T) {
	env := baseEnv(t)
	for k, v := range map[string]string{
		"CRYPTVOL_DEVICES":          "/dev/vdb, /dev/vdc /dev/vdd",
		"CRYPTVOL_DEFAULT_SIZE":     "2.5GiB",
		"CRYPTVOL_THIN_POOL":        "pool",
		"CRYPTVOL_FS":               "xfs",
		"CRYPTVOL_KMIP_SERVER_NAME": "kms",
		"CRYPTVOL_KMIP_TIMEOUT":     "3s",
		"CRYPTVOL_MOUNT_ROOT":       "/srv/vols/",
		"CRYPTVOL_STATE_DIR":        "/data/state",
		"CRYPTVOL_SOCKET":           "/run/x.sock",
		"CRYPTVOL_NO_WORKQUEUE":     "false",
		"CRYPTVOL_LOG_LEVEL":        "debug",
		"CRYPTVOL_NODE":             "node-7",
		"CRYPTVOL_KMIP_POLICY":      "cryptvol",
		"CRYPTVOL_AUDIT_FILE":       "/data/audit/trail.log",
		"CRYPTVOL_AUDIT_MAX_SIZE":   "1M",
		"CRYPTVOL_AUDIT_KEEP":       "3",
		"CRYPTVOL_ROTATE_AFTER":     "90d",
		"CRYPTVOL_REMOVE_GRACE":     "3d",
		"CRYPTVOL_KMIP_TENANTS":     "/etc/tenants",
	} {
		env[k] = v
	}
	c, err := load(env)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Devices, ",") != "/dev/vdb,/dev/vdc,/dev/vdd" || c.DefaultSize != 5<<29 || c.ThinPool != "pool" || c.FS != "xfs" ||
		c.KMIP.ServerName != "kms" || c.KMIP.Timeout != 3*time.Second || c.MountRoot != "/srv/vols" || c.StateDir != "/data/state" ||
		c.Socket != "/run/x.sock" || c.NoWorkqueue || c.LogLevel != logrus.DebugLevel {
		t.Errorf("%+v", c)
	}
	if c.Node != "node-7" || c.KMIP.Group != "cryptvol-node:node-7" || c.KMIP.Policy != "cryptvol" ||
		c.Audit.Path != "/data/audit/trail.log" || c.Audit.MaxSize != 1<<20 || c.Audit.Keep != 3 || c.Audit.Host != "node-7" ||
		c.RotateAfter != 90*24*time.Hour || c.volumeConfig().RotateAfter != c.RotateAfter || c.TenantsDir != "/etc/tenants" ||
		c.volumeConfig().RemoveGrace != 72*time.Hour {
		t.Errorf("node, audit, rotation and tenant settings: node %q group %q policy %q audit %+v rotate %s tenants %s",
			c.Node, c.KMIP.Group, c.KMIP.Policy, c.Audit, c.RotateAfter, c.TenantsDir)
	}
}

// Every bad or missing setting gives one line that names it.
func TestConfigErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		env  string
		val  string // "" deletes
		want string
	}{
		{"CRYPTVOL_VG", "", "CRYPTVOL_VG is required"},
		{"CRYPTVOL_VG", "bad/vg", "CRYPTVOL_VG: invalid volume group name"},
		{"CRYPTVOL_DEVICES", "vdb", `CRYPTVOL_DEVICES: "vdb" is not a block device path`},
		{"CRYPTVOL_DEVICES", "/dev/../etc/passwd", "CRYPTVOL_DEVICES"},
		{"CRYPTVOL_DEFAULT_SIZE", "huge", `CRYPTVOL_DEFAULT_SIZE: size "huge" is not valid`},
		{"CRYPTVOL_DEFAULT_SIZE", "32M", "CRYPTVOL_DEFAULT_SIZE=32M is below the ext4 minimum of 64 MiB"},
		{"CRYPTVOL_FS", "btrfs", `CRYPTVOL_FS="btrfs" is not supported (allowed: ext4, xfs)`},
		{"CRYPTVOL_THIN_POOL", "my_tmeta", "CRYPTVOL_THIN_POOL"},
		{"CRYPTVOL_KMIP_ENDPOINT", "", "CRYPTVOL_KMIP_ENDPOINT is required"},
		{"CRYPTVOL_KMIP_ENDPOINT", "kmip.example.com", "CRYPTVOL_KMIP_ENDPOINT=\"kmip.example.com\": KMIP endpoint \"kmip.example.com\" is not host:port"},
		{"CRYPTVOL_KMIP_ENDPOINT", ":5696", "is not host:port"},
		{"CRYPTVOL_KMIP_ENDPOINT", "h:99999", `port "99999" is not a number from 1 to 65535`},
		{"CRYPTVOL_KMIP_ENDPOINT", "a:5696,,b:5696", `KMIP endpoint "" is not host:port`},
		{"CRYPTVOL_KMIP_ENDPOINT", "a:5696,b", `KMIP endpoint "b" is not host:port`},
		{"CRYPTVOL_KMIP_ENDPOINT", "a:5696, a:5696", `KMIP endpoint "a:5696" is listed twice`},
		{"CRYPTVOL_KMIP_CA", "", "CRYPTVOL_KMIP_CA=/etc/cryptvol/kmip/ca.pem: no such file or directory (want the path of the PEM CA certificate that signed the KMIP server's certificate)"},
		{"CRYPTVOL_KMIP_CERT", "/nonexistent/cert.pem", "CRYPTVOL_KMIP_CERT=/nonexistent/cert.pem: no such file or directory"},
		{"CRYPTVOL_KMIP_KEY", "/", "CRYPTVOL_KMIP_KEY=/ is a directory"},
		{"CRYPTVOL_KMIP_TIMEOUT", "10", `CRYPTVOL_KMIP_TIMEOUT="10" is not a positive duration`},
		{"CRYPTVOL_KMIP_TIMEOUT", "-1s", "CRYPTVOL_KMIP_TIMEOUT"},
		{"CRYPTVOL_MOUNT_ROOT", "mnt", `CRYPTVOL_MOUNT_ROOT="mnt" is not an absolute path`},
		{"CRYPTVOL_STATE_DIR", "./state", "CRYPTVOL_STATE_DIR"},
		{"CRYPTVOL_SOCKET", "cryptvol.sock", "CRYPTVOL_SOCKET"},
		{"CRYPTVOL_NO_WORKQUEUE", "maybe", `CRYPTVOL_NO_WORKQUEUE="maybe" is not valid (allowed: true, false)`},
		{"CRYPTVOL_LOG_LEVEL", "loud", `CRYPTVOL_LOG_LEVEL="loud" is not valid`},
		{"CRYPTVOL_MAX_CREATES", "0", `CRYPTVOL_MAX_CREATES="0" is not valid (allowed: a whole number from 1 to 64)`},
		{"CRYPTVOL_MAX_CREATES", "many", `CRYPTVOL_MAX_CREATES="many" is not valid`},
		{"CRYPTVOL_MAX_CREATES", "65", `CRYPTVOL_MAX_CREATES="65"`},
		{"CRYPTVOL_THIN_MAX_FILL", "0", `CRYPTVOL_THIN_MAX_FILL="0" is not valid`},
		{"CRYPTVOL_THIN_MAX_FILL", "101", `CRYPTVOL_THIN_MAX_FILL="101"`},
		{"CRYPTVOL_THIN_MAX_OVERCOMMIT", "lots", `CRYPTVOL_THIN_MAX_OVERCOMMIT="lots" is not valid (allowed: off, or how many times`},
		{"CRYPTVOL_METRICS_ADDR", "9633", `CRYPTVOL_METRICS_ADDR="9633" is not host:port`},
		{"CRYPTVOL_ROTATE_AFTER", "5m", `CRYPTVOL_ROTATE_AFTER="5m" is not valid (allowed: off, or an age of at least 1h`},
		{"CRYPTVOL_ROTATE_AFTER", "xd", `CRYPTVOL_ROTATE_AFTER="xd"`},
		{"CRYPTVOL_REMOVE_GRACE", "30s", `CRYPTVOL_REMOVE_GRACE="30s" is not valid (allowed: off, or a time of at least 1m such as 72h or 3d)`},
		{"CRYPTVOL_NODE", "bad node", `CRYPTVOL_NODE: node name "bad node" is not valid`},
		{"CRYPTVOL_AUDIT_FILE", "audit.log", `CRYPTVOL_AUDIT_FILE="audit.log" is not valid (allowed: an absolute path, or off)`},
		{"CRYPTVOL_AUDIT_MAX_SIZE", "1K", `CRYPTVOL_AUDIT_MAX_SIZE="1K" is not valid`},
		{"CRYPTVOL_AUDIT_KEEP", "0", `CRYPTVOL_AUDIT_KEEP="0" is not valid`},
		{"CRYPTVOL_KMIP_TENANTS", "tenants", `CRYPTVOL_KMIP_TENANTS="tenants" is not an absolute path`},
	}
	for _, c := range cases {
		env := baseEnv(t)
		if c.val == "" {
			delete(env, c.env)
		} else {
			env[c.env] = c.val
		}
		_, err := load(env)
		if err == nil {
			t.Errorf("%s=%q accepted", c.env, c.val)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s=%q: error %q, want one line containing %q", c.env, c.val, err, c.want)
		}
	}
	// xfs raises the floor for the default size.
	env := baseEnv(t)
	env["CRYPTVOL_FS"] = "xfs"
	if _, err := load(env); err != nil {
		t.Errorf("xfs with the 1G default: %v", err)
	}
	env["CRYPTVOL_DEFAULT_SIZE"] = "256M"
	if _, err := load(env); err == nil || !strings.Contains(err.Error(), "xfs minimum of 320 MiB") {
		t.Errorf("xfs with 256M default: %v", err)
	}
}

func keysValidNode(n string) bool { return keys.ValidateNode(n) == nil }

// Without CRYPTVOL_NODE the host name stands for the node; one that cannot
// is refused, saying to set CRYPTVOL_NODE.
func TestConfigNodeFromHostname(t *testing.T) {
	defer func(h func() (string, error)) { hostname = h }(hostname)
	hostname = func() (string, error) { return "web-3.example", nil }
	c, err := load(baseEnv(t))
	if err != nil || c.Node != "web-3.example" || c.Audit.Host != "web-3.example" {
		t.Fatalf("node %q, %v", c.Node, err)
	}
	hostname = func() (string, error) { return "", nil }
	if _, err := load(baseEnv(t)); err == nil || !strings.Contains(err.Error(), "set CRYPTVOL_NODE") {
		t.Fatalf("empty host name: %v", err)
	}
	env := baseEnv(t)
	env["CRYPTVOL_NODE"], env["CRYPTVOL_AUDIT_FILE"] = "n1", "off"
	if c, err := load(env); err != nil || c.Audit.Path != "" {
		t.Fatalf("audit off: %+v, %v", c.Audit, err)
	}
}

// Shared mode: CRYPTVOL_SHARED, off by default; with a thin pool or devices
// to create the group from it is refused, saying why.
func TestConfigShared(t *testing.T) {
	env := baseEnv(t)
	if c, err := load(env); err != nil || c.Shared || c.volumeConfig().Shared {
		t.Fatalf("default: shared %v, %v", c.Shared, err)
	}
	env["CRYPTVOL_SHARED"] = "true"
	env["CRYPTVOL_NODE"] = "node1"
	c, err := load(env)
	if err != nil || !c.Shared || !c.volumeConfig().Shared || c.volumeConfig().Node != "node1" {
		t.Fatalf("shared: %+v, %v", c.volumeConfig(), err)
	}
	if c.HostID != 0 {
		t.Errorf("host id %d without CRYPTVOL_HOST_ID", c.HostID)
	}
	env["CRYPTVOL_HOST_ID"] = "12"
	if c, err := load(env); err != nil || c.HostID != 12 {
		t.Errorf("CRYPTVOL_HOST_ID=12: %d, %v", c.HostID, err)
	}
	for _, bad := range []string{"0", "2001", "x", "-1"} {
		env["CRYPTVOL_HOST_ID"] = bad
		if _, err := load(env); err == nil || !strings.Contains(err.Error(), "from 1 to 2000") {
			t.Errorf("CRYPTVOL_HOST_ID=%s: %v", bad, err)
		}
	}
	e := baseEnv(t)
	e["CRYPTVOL_HOST_ID"] = "3"
	if _, err := load(e); err == nil || !strings.Contains(err.Error(), "only used with CRYPTVOL_SHARED=true") {
		t.Errorf("CRYPTVOL_HOST_ID without shared mode: %v", err)
	}
	for k, v := range map[string]string{
		"CRYPTVOL_THIN_POOL": "pool", "CRYPTVOL_DEVICES": "/dev/sdb", "CRYPTVOL_SHARED": "yes",
	} {
		e := baseEnv(t)
		e["CRYPTVOL_SHARED"] = "true"
		e[k] = v
		_, err := load(e)
		want := map[string]string{"CRYPTVOL_THIN_POOL": "thin pool on one host at a time",
			"CRYPTVOL_DEVICES": "vgcreate --shared vg0", "CRYPTVOL_SHARED": `"yes" is not valid (allowed: true, false)`}[k]
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%s: %v, want %q", k, v, err, want)
		}
	}
}

// `docker plugin upgrade` replaces the bundle's config.json but keeps the
// environment dockerd recorded at install (Settings.Env: moby
// plugin/backend_linux.go@v26.1.5, Upgrade, keeps PluginObj.Settings), so
// an entry a later config.json adds or changes never reaches an upgraded
// plugin. Every default config.json gives must therefore be the code's own:
// unset and set to config.json's value, each entry loads the same Config.
func TestBundleEnvDefaultsAreTheCodesDefaults(t *testing.T) {
	b, err := os.ReadFile("../../config.json")
	if err != nil {
		t.Fatal(err)
	}
	var bundle struct {
		Env []struct {
			Name  string
			Value string
		}
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatal(err)
	}
	kmipFiles := map[string]string{"CRYPTVOL_KMIP_CA": DefaultKMIPCA, "CRYPTVOL_KMIP_CERT": DefaultKMIPCert, "CRYPTVOL_KMIP_KEY": DefaultKMIPKey}
	base := baseEnv(t)
	n := 0
	for _, e := range bundle.Env {
		if !strings.HasPrefix(e.Name, "CRYPTVOL_") {
			// PATH is dockerd's to set (moby plugin/v2/plugin_linux.go@v26.1.5, InitSpec).
			if v, ok := processEnv[e.Name]; e.Name != "PATH" && (!ok || v != e.Value) {
				t.Errorf("%s=%q: not in processEnv with that value (%q)", e.Name, e.Value, v)
			}
			continue
		}
		n++
		if def, ok := kmipFiles[e.Name]; ok {
			// Files that exist only in a plugin's mount: compare the names.
			if e.Value != def {
				t.Errorf("%s: config.json gives %q, the code's default is %q", e.Name, e.Value, def)
			}
			continue
		}
		unset, set := maps.Clone(base), maps.Clone(base)
		delete(unset, e.Name)
		set[e.Name] = e.Value
		for k, v := range map[string]string{"CRYPTVOL_VG": "vg0", "CRYPTVOL_KMIP_ENDPOINT": "kmip.example.com:5696"} {
			if k == e.Name {
				// Required: nothing to default; both ways must fail alike.
				unset[k], set[k] = "", e.Value
				continue
			}
			unset[k], set[k] = v, v
		}
		cu, erru := load(unset)
		cs, errs := load(set)
		if fmt.Sprint(erru) != fmt.Sprint(errs) || !reflect.DeepEqual(cu, cs) {
			t.Errorf("%s: unset and config.json's %q load different settings:\n%+v (%v)\n%+v (%v)", e.Name, e.Value, cu, erru, cs, errs)
		}
	}
	if n < 20 {
		t.Fatalf("read %d CRYPTVOL_ entries from config.json", n)
	}
}

func TestConfigCSIEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"":                                  "",
		"unix:///run/docker/plugins/c.sock": "/run/docker/plugins/c.sock",
		"/run/csi.sock":                     "/run/csi.sock",
	} {
		env := baseEnv(t)
		env["CSI_ENDPOINT"] = in
		c, err := load(env)
		if err != nil || c.CSISocket != want {
			t.Errorf("CSI_ENDPOINT=%q: socket %q, %v; want %q", in, c.CSISocket, err, want)
		}
	}
	for _, bad := range []string{"tcp://127.0.0.1:10000", "unix://relative.sock", "unix:///run/../x.sock"} {
		env := baseEnv(t)
		env["CSI_ENDPOINT"] = bad
		if _, err := load(env); err == nil || !strings.Contains(err.Error(), "CSI_ENDPOINT") || !strings.Contains(err.Error(), "allowed") {
			t.Errorf("CSI_ENDPOINT=%q: %v", bad, err)
		}
	}
}
