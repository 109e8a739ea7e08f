package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/audit"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// The exposition shows requests, events, KMIP latency and the gauges as
// their sources give them; a source that fails leaves its gauge out.
func TestMetricsExposition(t *testing.T) {
	poolErr := error(nil)
	m := New(Sources{
		Volumes: func(context.Context) (int, int, error) { return 7, 2, nil },
		Pool:    func(context.Context) (float64, float64, error) { return 41.5, 3.25, poolErr },
		Usage: func(context.Context) (map[string]Usage, error) {
			return map[string]Usage{"db": {Used: 1048576, Avail: 2097152, InodesUsed: 12, InodesFree: 500, At: time.Unix(1796600000, 0)}}, nil
		},
		Trash: func(context.Context) (int, uint64, error) { return 2, 3 << 30, nil },
	})
	m.Request("mount", 120*time.Millisecond, nil)
	m.Request("mount", time.Second, errors.New("x"))
	m.Record(audit.Event{Op: "key.get", KeyID: "9", Took: 130 * time.Millisecond})
	m.Record(audit.Event{Op: "volume.repair", Err: errors.New("lvs failed")})
	out := scrape(t, m)
	for _, want := range []string{
		`cryptvol_requests_total{call="mount",result="ok"} 1`,
		`cryptvol_requests_total{call="mount",result="error"} 1`,
		`cryptvol_request_duration_seconds_count{call="mount"} 2`,
		`cryptvol_events_total{op="key.get",result="ok"} 1`,
		`cryptvol_events_total{op="volume.repair",result="error"} 1`,
		`cryptvol_kmip_call_duration_seconds_bucket{call="get",result="ok",le="0.25"} 1`,
		`cryptvol_kmip_call_duration_seconds_bucket{call="get",result="ok",le="0.1"} 0`,
		"cryptvol_volumes 7", "cryptvol_volumes_mounted 2",
		`cryptvol_thin_pool_used_percent{part="data"} 41.5`, `cryptvol_thin_pool_used_percent{part="metadata"} 3.25`,
		`cryptvol_volume_used_bytes{volume="db"} 1.048576e+06`, `cryptvol_volume_available_bytes{volume="db"} 2.097152e+06`,
		`cryptvol_volume_inodes{state="used",volume="db"} 12`, `cryptvol_volume_inodes{state="free",volume="db"} 500`,
		`cryptvol_volume_usage_timestamp_seconds{volume="db"} 1.7966e+09`,
		"cryptvol_trash_volumes 2", "cryptvol_trash_bytes 3.221225472e+09",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("exposition lacks %q", want)
		}
	}
	poolErr = errors.New("inactive")
	if out := scrape(t, m); strings.Contains(out, "cryptvol_thin_pool_used_percent{") {
		t.Error("a failing pool source still produced the gauge")
	}
}
