package main

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/metrics"
	"github.com/cryptvol/cryptvol/volume"
)

var errNotReady = errors.New("start-up is not done")

// startMetrics serves the Prometheus metrics on CRYPTVOL_METRICS_ADDR, if
// set, until ctx ends. The volume gauges wait for the manager; the pool
// gauges read lvs at each scrape. A listener that cannot open is logged and
// leaves the plugin serving volumes without metrics.
func startMetrics(ctx context.Context, cfg Config, mgr *atomic.Pointer[volume.Manager], log logrus.FieldLogger) *metrics.Metrics {
	if cfg.MetricsAddr == "" {
		return nil
	}
	src := metrics.Sources{Volumes: func(ctx context.Context) (int, int, error) {
		m := mgr.Load()
		if m == nil {
			return 0, 0, errNotReady
		}
		return m.Counts(ctx)
	}, Usage: func(ctx context.Context) (map[string]metrics.Usage, error) {
		m := mgr.Load()
		if m == nil {
			return nil, errNotReady
		}
		us, err := m.Usages(ctx)
		if err != nil {
			return nil, err
		}
		out := make(map[string]metrics.Usage, len(us))
		for name, u := range us {
			out[name] = metrics.Usage{Used: u.Used, Avail: u.Avail, InodesUsed: u.InodesUsed(), InodesFree: u.InodesFree, At: u.At}
		}
		return out, nil
	}, Trash: func(ctx context.Context) (int, uint64, error) {
		m := mgr.Load()
		if m == nil {
			return 0, 0, errNotReady
		}
		list, err := m.Trash(ctx)
		var b uint64
		for _, t := range list {
			b += t.SizeBytes
		}
		return len(list), b, err
	}}
	if cfg.ThinPool != "" {
		if lv, err := lvm.New(cfg.VG); err == nil {
			src.Pool = func(ctx context.Context) (float64, float64, error) { return lv.PoolUse(ctx, cfg.ThinPool) }
		}
	}
	met := metrics.New(src)
	go func() {
		if err := met.Serve(ctx, cfg.MetricsAddr, log); err != nil {
			log.WithError(err).WithField("addr", cfg.MetricsAddr).Error("not serving metrics (CRYPTVOL_METRICS_ADDR)")
		}
	}()
	return met
}
