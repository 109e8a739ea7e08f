package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/cryptvol/cryptvol/plugin"
)

// pluginTimeout bounds one request to the plugin: a little over the
// plugin's own deadline for a device operation (plugin.DefaultLongTimeout),
// so that its own error arrives first. A reencryption has its own.
const pluginTimeout = plugin.DefaultLongTimeout + 10*time.Second

// socketFlag declares --socket. Without it: $CRYPTVOL_SOCKET, else the one
// managed plugin socket named cryptvol.sock under /run/docker/plugins
// (dockerd gives a managed plugin the directory /run/docker/plugins/ID).
func socketFlag(fs *flag.FlagSet, env Env) func() (string, error) {
	s := fs.String("socket", env.Getenv("CRYPTVOL_SOCKET"), "the plugin's `socket` (default: $CRYPTVOL_SOCKET, else /run/docker/plugins/*/cryptvol.sock)")
	return func() (string, error) {
		if *s != "" {
			return *s, nil
		}
		found, _ := filepath.Glob("/run/docker/plugins/*/cryptvol.sock")
		if more, _ := filepath.Glob("/run/docker/plugins/cryptvol.sock"); len(more) > 0 {
			found = append(found, more...)
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
			return "", fmt.Errorf("no cryptvol plugin socket under /run/docker/plugins (is the plugin enabled?); give --socket")
		}
		return "", fmt.Errorf("several cryptvol plugin sockets (%s); choose one with --socket", strings.Join(found, ", "))
	}
}

// pluginClient posts JSON to the plugin's socket.
type pluginClient struct {
	http *http.Client
}

func newPluginClient(socket string, timeout time.Duration) *pluginClient {
	return &pluginClient{http: &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}}
}

func (c *pluginClient) post(path string, req, res any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	resp, err := c.http.Post("http://plugin"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("the plugin did not answer: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, res); err != nil {
		return fmt.Errorf("the plugin answered %s with %q (an older plugin without this request?)", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}
