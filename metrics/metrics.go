// Package metrics exposes cryptvol's Prometheus metrics on
// CRYPTVOL_METRICS_ADDR: Docker requests by call and outcome with their
// latency, KMIP calls and their latency, every lifecycle event (volume
// operations, repairs at start-up, key operations) by outcome, the number
// of volumes and mounted volumes, each volume's filesystem usage, and the
// thin pool's data and metadata use.
// It uses the Prometheus client library and its text exposition.
//
// The counters are fed by two hooks: Request (the plugin's per-call
// accounting, plugin.Options.Observe) and Record (the lifecycle's audit
// events, volume.Config.Audit, beside the trail through audit.Tee). The
// gauges are read at scrape time from functions the caller gives, which
// answer from the plugin's in-memory view (and one lvs for the pool).
//
// Concurrency: a Metrics is safe for concurrent use.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
)

// Sources answer the gauges at scrape time; an error leaves the gauge out
// of that scrape.
type Sources struct {
	// Volumes counts the volumes and those mounted.
	Volumes func(ctx context.Context) (total, mounted int, err error)
	// Pool reports the thin pool's data and metadata use in percent; nil
	// when there is no pool.
	Pool func(ctx context.Context) (data, meta float64, err error)
	// Usage reports each volume's filesystem usage that is known, by name:
	// measured for a mounted volume, as of its last close for another.
	Usage func(ctx context.Context) (map[string]Usage, error)
	// Trash counts the volumes in the trash (volume/trash.go) and the
	// bytes their LVs hold, which count against the group and pool like
	// any volume's.
	Trash func(ctx context.Context) (volumes int, bytes uint64, err error)
}

// Usage is one volume's filesystem usage at At, as df reports it.
type Usage struct {
	Used, Avail, InodesUsed, InodesFree uint64
	At                                  time.Time
}

// Metrics holds the collectors and their registry.
type Metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	requestDur *prometheus.HistogramVec
	events     *prometheus.CounterVec
	kmipDur    *prometheus.HistogramVec
}

// New registers the collectors, the Go runtime's and the process's.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cryptvol_requests_total", Help: "Docker VolumeDriver, CSI (call csi.METHOD) and admin requests served, by call and result (ok, error).",
		}, []string{"call", "result"}),
		requestDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cryptvol_request_duration_seconds", Help: "Time to answer a Docker VolumeDriver, CSI or admin request, by call.",
			Buckets: []float64{.001, .005, .02, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"call"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cryptvol_events_total",
			Help: "Lifecycle events as in the audit trail (key.create, volume.mount, volume.repair, ...), by result.",
		}, []string{"op", "result"}),
		kmipDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cryptvol_kmip_call_duration_seconds", Help: "KMIP calls (create, get, destroy, locate) and their latency.",
			Buckets: []float64{.005, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"call", "result"}),
	}
	m.reg.MustRegister(m.requests, m.requestDur, m.events, m.kmipDur,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	if src.Volumes != nil {
		m.reg.MustRegister(&volumeCollector{src: src})
	}
	return m
}

// Request counts one plugin request (plugin.Options.Observe).
func (m *Metrics) Request(call string, took time.Duration, err error) {
	m.requests.WithLabelValues(call, result(err)).Inc()
	m.requestDur.WithLabelValues(call).Observe(took.Seconds())
}

// Record counts one lifecycle event (an audit.Sink).
func (m *Metrics) Record(e audit.Event) {
	m.events.WithLabelValues(e.Op, result(e.Err)).Inc()
	if call, ok := strings.CutPrefix(e.Op, "key."); ok && e.Took > 0 {
		m.kmipDur.WithLabelValues(call, result(e.Err)).Observe(e.Took.Seconds())
	}
}

var _ audit.Sink = (*Metrics)(nil)

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Serve listens on addr and serves /metrics until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr string, log logrus.FieldLogger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.WithField("addr", l.Addr().String()).Info("serving Prometheus metrics at /metrics")
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// volumeCollector reads the gauges at scrape time.
type volumeCollector struct{ src Sources }

var (
	volumesDesc = prometheus.NewDesc("cryptvol_volumes", "Volumes (complete LVs tagged cryptvol).", nil, nil)
	mountedDesc = prometheus.NewDesc("cryptvol_volumes_mounted", "Volumes mounted for containers.", nil, nil)
	poolDesc    = prometheus.NewDesc("cryptvol_thin_pool_used_percent", "Thin pool use, by part (data, metadata).", []string{"part"}, nil)
	// One series per volume, as kubelet's volume stats have: a volume's
	// name is a label value bounded by the number of volumes.
	usedDesc       = prometheus.NewDesc("cryptvol_volume_used_bytes", "Bytes in use in the volume's filesystem (df's Used).", []string{"volume"}, nil)
	availDesc      = prometheus.NewDesc("cryptvol_volume_available_bytes", "Bytes a container may still write (df's Available).", []string{"volume"}, nil)
	inodesDesc     = prometheus.NewDesc("cryptvol_volume_inodes", "Inodes of the volume's filesystem, by state (used, free).", []string{"volume", "state"}, nil)
	trashDesc      = prometheus.NewDesc("cryptvol_trash_volumes", "Removed volumes kept restorable in the trash (CRYPTVOL_REMOVE_GRACE).", nil, nil)
	trashBytesDesc = prometheus.NewDesc("cryptvol_trash_bytes", "Bytes of LV size the trash holds (virtual size for thin volumes).", nil, nil)
	usageAt        = prometheus.NewDesc("cryptvol_volume_usage_timestamp_seconds", "When the volume's usage was measured: now while mounted, else its last close.", []string{"volume"}, nil)
)

func (c *volumeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- volumesDesc
	ch <- mountedDesc
	ch <- poolDesc
	ch <- usedDesc
	ch <- availDesc
	ch <- inodesDesc
	ch <- usageAt
	ch <- trashDesc
	ch <- trashBytesDesc
}

func (c *volumeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if total, mounted, err := c.src.Volumes(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(volumesDesc, prometheus.GaugeValue, float64(total))
		ch <- prometheus.MustNewConstMetric(mountedDesc, prometheus.GaugeValue, float64(mounted))
	}
	if c.src.Usage != nil {
		if us, err := c.src.Usage(ctx); err == nil {
			for name, u := range us {
				ch <- prometheus.MustNewConstMetric(usedDesc, prometheus.GaugeValue, float64(u.Used), name)
				ch <- prometheus.MustNewConstMetric(availDesc, prometheus.GaugeValue, float64(u.Avail), name)
				ch <- prometheus.MustNewConstMetric(inodesDesc, prometheus.GaugeValue, float64(u.InodesUsed), name, "used")
				ch <- prometheus.MustNewConstMetric(inodesDesc, prometheus.GaugeValue, float64(u.InodesFree), name, "free")
				ch <- prometheus.MustNewConstMetric(usageAt, prometheus.GaugeValue, float64(u.At.Unix()), name)
			}
		}
	}
	if c.src.Trash != nil {
		if n, b, err := c.src.Trash(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(trashDesc, prometheus.GaugeValue, float64(n))
			ch <- prometheus.MustNewConstMetric(trashBytesDesc, prometheus.GaugeValue, float64(b))
		}
	}
	if c.src.Pool == nil {
		return
	}
	if data, meta, err := c.src.Pool(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, data, "data")
		ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, meta, "metadata")
	}
}
