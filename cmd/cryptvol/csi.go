package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/go-connections/sockets"
	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/csi"
	"github.com/cryptvol/cryptvol/internal/version"
	"github.com/cryptvol/cryptvol/metrics"
)

// CSIName is the name GetPluginInfo gives: the CSI bundle's (make
// plugin-csi, scripts/plugin/config-csi.json).
const CSIName = "cryptvol-csi"

// csiSocket reads CSI_ENDPOINT, the variable CSI drivers conventionally
// listen on ("unix:///path" or "/path"): "" when unset, which serves no
// CSI.
func csiSocket(getenv func(string) string) (string, error) {
	e := strings.TrimSpace(getenv("CSI_ENDPOINT"))
	if e == "" {
		return "", nil
	}
	p := strings.TrimPrefix(e, "unix://")
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return "", fmt.Errorf("CSI_ENDPOINT=%q is not a unix socket path (allowed: unix:///absolute/path or /absolute/path)", e)
	}
	return p, nil
}

// startCSI listens on the CSI socket and serves the CSI services until ctx
// ends; the server answers once start-up hands it the manager. failed
// carries the error of a server that stopped on its own; done closes when
// the server has stopped and the calls in flight have ended. Docker dials
// this socket within about 12.5 s of starting the plugin, as it does the
// VolumeDriver's (plugin/start.go), so it opens before start-up.
func startCSI(ctx context.Context, cfg Config, met *metrics.Metrics, log logrus.FieldLogger) (srv *csi.Server, failed <-chan error, done <-chan struct{}, err error) {
	if err := os.MkdirAll(filepath.Dir(cfg.CSISocket), 0o755); err != nil {
		return nil, nil, nil, fmt.Errorf("CSI_ENDPOINT: %w", err)
	}
	l, err := sockets.NewUnixSocket(cfg.CSISocket, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CSI_ENDPOINT: %w", err)
	}
	o := csi.Options{Name: CSIName, Version: version.Get(), Node: cfg.Node}
	if met != nil {
		o.Observe = func(call string, took time.Duration, err error) { met.Request("csi."+call, took, err) }
	}
	srv = csi.New(log.WithField("api", "csi"), o)
	f, d := make(chan error, 1), make(chan struct{})
	go func() {
		if err := srv.Serve(ctx, l); err != nil {
			f <- err
		}
		close(d)
	}()
	log.WithField("socket", cfg.CSISocket).Info("serving the Container Storage Interface")
	return srv, f, d, nil
}
