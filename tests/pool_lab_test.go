//go:build lab

package tests

import (
	"os"
	"strings"
	"testing"
)

// Requirement: "Over-commit and fill limits refuse a create with nothing
// made and nothing left on KMIP." Through the real plugin on the lab's
// 2 GiB thin pool.
func TestLabThinPoolLimits(t *testing.T) {
	pool := os.Getenv("CRYPTVOL_LAB_POOL")
	p := newPlug(t, "CRYPTVOL_THIN_POOL="+pool, "CRYPTVOL_THIN_MAX_OVERCOMMIT=1")
	p.start("")
	p.must("create oc1 (1 GiB of a 2 GiB pool)", p.create("oc1", map[string]string{"size": "1G"}))
	t.Cleanup(func() { _ = p.remove("oc1") })
	refused := func(v, size, want string) {
		t.Helper()
		err := p.create(v, map[string]string{"size": size})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "nothing was made") {
			t.Errorf("create %s %s: %v; want a refusal naming %s", v, size, err, want)
			_ = p.remove(v)
			return
		}
		if ex, _ := lvState(t, v); ex {
			t.Errorf("the refused create of %s left its LV", v)
		}
		if n := keysNamedFor(t, v); n != 0 {
			t.Errorf("the refused create of %s left %d KMIP keys", v, n)
		}
	}
	refused("oc2", "1536M", "CRYPTVOL_THIN_MAX_OVERCOMMIT")
	got, err := p.get("oc1")
	p.must("get", err)
	if use, _ := got.Status["thin_pool_use"].(string); !strings.HasPrefix(use, "data ") {
		t.Errorf("inspect shows the pool's use as %q", use)
	}
	p.stop()

	// Any use at all is over a limit of 0.01%: oc1's header and filesystem
	// took some.
	p.env = append(p.env, "CRYPTVOL_THIN_MAX_FILL=0.01")
	p.start("")
	refused("fill1", "64M", "CRYPTVOL_THIN_MAX_FILL")
}
