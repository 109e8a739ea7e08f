// Command cryptvol is the Docker volume plugin: each volume is an LVM
// logical volume, LUKS2-encrypted with a key held by a KMIP server, opened
// and mounted only while containers use it. Run with arguments, it is the
// administrators' command line instead (package admin: `cryptvol help`).
//
// Configuration comes from CRYPTVOL_* environment variables (see
// LoadConfig); a missing or bad one stops the plugin at start with one line
// naming it. Start-up: listen on CRYPTVOL_SOCKET at once, then create the
// volume group (CRYPTVOL_DEVICES) and thin pool if missing, start the KMIP
// client (its reachability is checked in the background and shown in every
// volume's Status), reconcile (package volume's rules) and only then answer
// requests that need the volumes; then sweep in the background.
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docker/go-connections/sockets"
	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/admin"
	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/csi"
	"github.com/cryptvol/cryptvol/internal/version"
	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/metrics"
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

// processStart is when the process began (package initialization, before
// main): the "ready" line reports start-up from here, which is what a
// restarted plugin makes dockerd wait for (`make bench`, scale part).
var processStart = time.Now()

// logTime is the plugin log's time stamp: RFC 3339 with microseconds.
const logTime = "2006-01-02T15:04:05.000000Z07:00"

func main() {
	os.Exit(run())
}

func run() int {
	// With arguments, the binary is the administrators' command line.
	if len(os.Args) > 1 {
		return admin.Main(os.Args[1:], admin.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	}
	setProcessEnv()
	cfg, err := LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cryptvol: configuration: "+err.Error())
		return 1
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(cfg.LogLevel)
	// Microseconds, so that a request's lines can be set beside dockerd's
	// (RFC 3339 with nanoseconds) and the kernel's mount events on one
	// timeline (make bench: the trace of each docker run).
	log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: logTime})
	// The build first, so that a log read after an upgrade says which
	// plugin wrote what follows.
	log.WithFields(logrus.Fields{"version": version.Get(), "state_format": volume.StateVersion}).Info("cryptvol starting")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// The socket first: dockerd gives a starting plugin ~12.5 s to listen
	// (plugin/start.go); requests wait for start-up within their deadline.
	l, err := listen(cfg.Socket)
	if err != nil {
		log.WithError(err).Error("start-up failed")
		return 1
	}
	health := &kmipHealth{}
	var mgr atomic.Pointer[volume.Manager]
	opts := plugin.Options{Status: health.status, Global: cfg.Shared}
	met := startMetrics(ctx, cfg, &mgr, log)
	if met != nil {
		opts.Observe = met.Request
	}
	drv := plugin.NewStarting(log, opts)
	l = plugin.WatchAttach(l, 10*time.Second, func() {
		if m := mgr.Load(); m != nil {
			m.DockerAttached()
		}
	})
	var csiSrv *csi.Server
	var csiFailed <-chan error
	var csiDone <-chan struct{}
	if cfg.CSISocket != "" {
		if csiSrv, csiFailed, csiDone, err = startCSI(ctx, cfg, met, log); err != nil {
			log.WithError(err).Error("start-up failed")
			return 1
		}
	}
	kmsc := make(chan *keys.KMIP, 1)
	go func() {
		m, kms := startUp(ctx, cfg, drv, csiSrv, health, met, log)
		kmsc <- kms
		if m != nil {
			mgr.Store(m)
			m.Run(ctx)
		}
	}()

	err = serve(ctx, drv, l, csiFailed, log)
	stop()
	if csiDone != nil {
		select {
		case <-csiDone:
		case <-time.After(drainTimeout):
			log.Warn("CSI calls still in flight at shutdown; the next start reconciles them")
		}
	}
	if kms := <-kmsc; kms != nil {
		kms.Close()
	}
	if err != nil {
		log.WithError(err).Error("serving failed")
		return 1
	}
	return 0
}

// startUp runs setup until it succeeds or ctx ends, handing the manager to
// the driver. A failure (no volume group yet, KMIP settings) is logged and
// answered to every request meanwhile, and retried.
func startUp(ctx context.Context, cfg Config, drv *plugin.Driver, csiSrv *csi.Server, health *kmipHealth, met *metrics.Metrics, log logrus.FieldLogger) (*volume.Manager, *keys.KMIP) {
	wait := 5 * time.Second
	for {
		mgr, kms, err := setup(ctx, cfg, health, met, log)
		if err == nil {
			drv.Start(mgr)
			if csiSrv != nil {
				csiSrv.Start(mgr)
			}
			log.WithField("duration", time.Since(processStart).Round(time.Millisecond)).Info("ready: serving volumes")
			return mgr, kms
		}
		if csiSrv != nil {
			csiSrv.StartFailed(err)
		}
		var newer *volume.NewerStateError
		if errors.As(err, &newer) {
			drv.StartRefused(err)
			log.WithError(err).Error("start-up refused")
			return nil, nil
		}
		drv.StartFailed(err)
		log.WithError(err).WithField("retry_in", wait).Error("start-up failed")
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// setup builds the stack in start-up order and reconciles.
func setup(ctx context.Context, cfg Config, health *kmipHealth, met *metrics.Metrics, log logrus.FieldLogger) (*volume.Manager, *keys.KMIP, error) {
	sctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	// Before anything that writes: a state file of a newer format means a
	// newer build ran here, and this one must leave its disk as it found
	// it (docs/operations.md, "Upgrade and roll back").
	if err := volume.CheckStateFormat(cfg.StateDir); err != nil {
		return nil, nil, err
	}

	var lvmOpts []lvm.Option
	if cfg.Shared {
		lvmOpts = append(lvmOpts, lvm.WithShared(cfg.HostID))
	}
	lv, err := lvm.New(cfg.VG, lvmOpts...)
	if err != nil {
		return nil, nil, fmt.Errorf("CRYPTVOL_VG: %w", err)
	}
	var known []string
	if !cfg.Shared {
		known = readKnownDevices(cfg.StateDir, cfg.VG, log)
	}
	if cfg.Shared {
		if err := sharedGroup(sctx, lv, cfg.VG, cfg.Node); err != nil {
			return nil, nil, err
		}
	} else if len(cfg.Devices) > 0 {
		if err := lv.EnsureVG(sctx, cfg.Devices); err != nil {
			return nil, nil, fmt.Errorf("volume group %s: %w", cfg.VG, err)
		}
	} else if err := lv.CheckVG(sctx, known); err != nil {
		if errors.Is(err, lvm.ErrNotFound) {
			return nil, nil, fmt.Errorf("volume group %s does not exist; set CRYPTVOL_DEVICES to have it created", cfg.VG)
		}
		return nil, nil, fmt.Errorf("volume group %s: %w", cfg.VG, err)
	}

	// Before reconciliation, which undoes what it takes for half-made
	// volumes: the group's checks above only read it or make it, and in a
	// shared group they refuse a host that takes another's name first.
	what := fmt.Sprintf("the VolumeDriver plugin, pid %d in its PID namespace", os.Getpid())
	if cfg.CSISocket != "" {
		what = fmt.Sprintf("the CSI plugin, pid %d in its PID namespace", os.Getpid())
	}
	if err := lockGroup(cfg.VG, what); err != nil {
		return nil, nil, fmt.Errorf("CRYPTVOL_VG=%s: %w", cfg.VG, err)
	}

	kms, err := keys.NewKMIP(cfg.KMIP, log)
	if err != nil {
		return nil, nil, fmt.Errorf("KMIP settings (CRYPTVOL_KMIP_*): %w", err)
	}
	// In the background: volumes already mounted keep working without
	// KMIP, and the client reconnects by itself once the server answers.
	go health.watch(ctx, kms, log)

	vcfg := cfg.volumeConfig()
	tenants := keys.NewTenants(kms.Config(), cfg.TenantsDir, log)
	vcfg.TenantKeys = func(tenant string) (volume.Keys, error) {
		k, err := tenants.For(tenant)
		if err != nil {
			return nil, err
		}
		return k, nil
	}
	var trail *audit.Log
	if cfg.Audit.Path != "" {
		// The trail's head goes to the KMIP server when the log opens and
		// at each rotation of the file, in the background: never on a
		// volume operation's path (package audit, anchor.go).
		aopts := cfg.Audit
		if aopts.Anchor, err = keys.NewAuditAnchor(kms, cfg.Node); err != nil {
			kms.Close()
			return nil, nil, fmt.Errorf("CRYPTVOL_NODE: %w", err)
		}
		if trail, err = audit.Open(aopts, log); err != nil {
			kms.Close()
			return nil, nil, fmt.Errorf("CRYPTVOL_AUDIT_FILE: %w", err)
		}
		trail.Record(audit.Event{Op: "plugin.start",
			Detail: fmt.Sprintf("cryptvol %s, state format %d, volume group %s", version.Get(), volume.StateVersion, cfg.VG)})
	}
	// The trail and the metrics take the lifecycle's events.
	var sinks []audit.Sink
	if trail != nil {
		sinks = append(sinks, trail)
	}
	if met != nil {
		sinks = append(sinks, met)
	}
	if len(sinks) > 0 {
		vcfg.Audit = audit.Tee(sinks...)
	}
	mgr, err := volume.New(vcfg, lv, luks.New(), mount.New(), kms, log)
	if err != nil {
		kms.Close()
		trail.Close()
		return nil, nil, err
	}
	// The thin pool is checked (made, on a first start) beside the
	// reconciliation, which neither needs it nor changes it: every lvm
	// command reads the group's metadata whatever it reports, so its
	// cost grows with the number of volumes, and the two run one after
	// the other would both stand between a restart and answering
	// requests. lvm's own locking orders a pool's lvcreate with
	// reconciliation's commands. Nothing is served until both are done.
	pool := make(chan error, 1)
	go func() {
		if cfg.ThinPool == "" {
			pool <- nil
			return
		}
		pool <- lv.EnsureThinPool(sctx, cfg.ThinPool)
	}()
	start := time.Now()
	if err := mgr.Reconcile(sctx); err != nil {
		// Serving is still better than not: the volumes that could be
		// checked work, and the failures are retried by the sweeper, their
		// next operation or the next start.
		log.WithError(err).Error("start-up reconciliation could not repair everything")
	}
	log.WithField("duration", time.Since(start).Round(time.Millisecond)).Info("start-up reconciliation done")
	if err := <-pool; err != nil {
		kms.Close()
		trail.Close()
		return nil, nil, fmt.Errorf("thin pool %s: %w", cfg.ThinPool, err)
	}
	if !cfg.Shared {
		saveKnownDevices(cfg.StateDir, cfg.VG, known, lv.Devices(), log)
	}
	return mgr, kms, nil
}

// listen opens the plugin socket. NewUnixSocket removes a stale socket left
// by a killed process.
func listen(socket string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return nil, fmt.Errorf("CRYPTVOL_SOCKET: %w", err)
	}
	l, err := sockets.NewUnixSocket(socket, 0)
	if err != nil {
		return nil, fmt.Errorf("CRYPTVOL_SOCKET: %w", err)
	}
	return l, nil
}

// serve answers the VolumeDriver API on l until ctx ends (or the CSI
// server, if any, fails: csiFailed), then stops accepting, waits for
// requests in flight and returns nil. It uses the
// helper's handler on its own listener instead of ServeUnix because
// ServeUnix offers no way to stop.
func serve(ctx context.Context, drv *plugin.Driver, l net.Listener, csiFailed <-chan error, log logrus.FieldLogger) error {
	errc := make(chan error, 1)
	go func() { errc <- drv.Handler().Serve(l) }()
	log.WithField("socket", l.Addr().String()).Info("serving the Docker VolumeDriver API")

	select {
	case err := <-errc:
		l.Close()
		return err
	case err := <-csiFailed:
		l.Close()
		return fmt.Errorf("serving CSI: %w", err)
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
