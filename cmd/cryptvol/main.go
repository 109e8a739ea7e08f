// Command cryptvol is the Docker volume plugin: each volume is an LVM
// logical volume, LUKS2-encrypted with a key held by a KMIP server, opened
// and mounted only while containers use it.
//
// Configuration comes from CRYPTVOL_* environment variables (see
// LoadConfig); a missing or bad one stops the plugin at start with one line
// naming it. Start-up: create the volume group (CRYPTVOL_DEVICES) and thin
// pool if missing, connect the KMIP client, reconcile (package volume's
// rules), then serve the VolumeDriver API on CRYPTVOL_SOCKET.
//
// SIGTERM or SIGINT stops serving and waits for requests in flight; mounted
// volumes stay mounted, because running containers still use them. The next
// start finds them in the state file.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/docker/go-connections/sockets"
	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/plugin"
	"github.com/cryptvol/cryptvol/volume"
)

// Bounds on start-up and shutdown. Creating a VG and pool and reconciling
// many volumes takes a while under emulation; a shutdown waits for requests
// in flight, which have their own deadlines.
const (
	startupTimeout = 10 * time.Minute
	drainTimeout   = 2 * time.Minute
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cryptvol: configuration: "+err.Error())
		return 1
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(cfg.LogLevel)
	log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	drv, kms, err := setup(ctx, cfg, log)
	if err != nil {
		log.WithError(err).Error("start-up failed")
		return 1
	}
	defer kms.Close()

	if err := serve(ctx, drv, cfg.Socket, log); err != nil {
		log.WithError(err).Error("serving failed")
		return 1
	}
	return 0
}

// setup builds the stack in start-up order and reconciles.
func setup(ctx context.Context, cfg Config, log logrus.FieldLogger) (*plugin.Driver, *keys.KMIP, error) {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()

	lv, err := lvm.New(cfg.VG)
	if err != nil {
		return nil, nil, fmt.Errorf("CRYPTVOL_VG: %w", err)
	}
	if len(cfg.Devices) > 0 {
		if err := lv.EnsureVG(ctx, cfg.Devices); err != nil {
			return nil, nil, fmt.Errorf("volume group %s: %w", cfg.VG, err)
		}
	} else if _, err := lv.VG(ctx); err != nil {
		if errors.Is(err, lvm.ErrNotFound) {
			return nil, nil, fmt.Errorf("volume group %s does not exist; set CRYPTVOL_DEVICES to have it created", cfg.VG)
		}
		return nil, nil, fmt.Errorf("volume group %s: %w", cfg.VG, err)
	}
	if cfg.ThinPool != "" {
		if err := lv.EnsureThinPool(ctx, cfg.ThinPool); err != nil {
			return nil, nil, fmt.Errorf("thin pool %s: %w", cfg.ThinPool, err)
		}
	}

	kms, err := keys.NewKMIP(cfg.KMIP, log)
	if err != nil {
		return nil, nil, fmt.Errorf("KMIP settings (CRYPTVOL_KMIP_*): %w", err)
	}
	// Not fatal: volumes already mounted keep working without KMIP, and
	// the client reconnects by itself once the server answers.
	if err := kms.Check(ctx); err != nil {
		log.WithError(err).Warn("KMIP server does not answer yet; creates and mounts will fail until it does")
	}

	mgr, err := volume.New(cfg.volumeConfig(), lv, luks.New(), mount.New(), kms, log)
	if err != nil {
		kms.Close()
		return nil, nil, err
	}
	start := time.Now()
	if err := mgr.Reconcile(ctx); err != nil {
		// Serving is still better than not: the volumes that could be
		// checked work, and the failures are retried by their next
		// operation or start.
		log.WithError(err).Error("start-up reconciliation could not repair everything")
	}
	log.WithField("duration", time.Since(start).Round(time.Millisecond)).Info("start-up reconciliation done")
	return plugin.New(mgr, log, plugin.Options{}), kms, nil
}

// serve answers the VolumeDriver API on socket until ctx ends, then stops
// accepting, waits for requests in flight and returns nil. It uses the
// helper's handler on its own listener instead of ServeUnix because
// ServeUnix offers no way to stop.
func serve(ctx context.Context, drv *plugin.Driver, socket string, log logrus.FieldLogger) error {
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return fmt.Errorf("CRYPTVOL_SOCKET: %w", err)
	}
	// NewUnixSocket removes a stale socket left by a killed process.
	l, err := sockets.NewUnixSocket(socket, 0)
	if err != nil {
		return fmt.Errorf("CRYPTVOL_SOCKET: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- drv.Handler().Serve(l) }()
	log.WithField("socket", socket).Info("serving the Docker VolumeDriver API")

	select {
	case err := <-errc:
		l.Close()
		return err
	case <-ctx.Done():
	}
	log.Info("stopping: no new requests; mounted volumes stay mounted for their containers")
	l.Close()
	if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
		log.WithError(err).Warn("listener ended with an error")
	}
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := drv.Wait(dctx); err != nil {
		log.Warn("requests still in flight at shutdown; the next start reconciles them")
	}
	return nil
}
