package volume

import (
	"strings"
	"testing"
)

// Thin-pool safety: a create over the fill or over-commit limit is refused
// before anything is made, naming the numbers and the setting; inspect
// shows the pool's use as last read.
func TestThinPoolLimitsRefuseCreatesBeforeAnythingIsMade(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ThinPool = "pool"; c.ThinMaxOvercommit = 1.5 })
	h.mustCreate("a", map[string]string{"size": "4G"})
	v, _ := h.m.Get(h.ctx, "a")
	if use, _ := v.Status[StatusPoolUse].(string); !strings.HasPrefix(use, "data 50.00%, metadata 0.00% (read at ") {
		t.Errorf("inspect shows pool use %q", use)
	}
	nothingMade := func(name string) {
		t.Helper()
		if _, ok := h.w.lvs[lvPrefix+name]; ok || len(h.w.keys) != 1 {
			t.Errorf("a refused create made something: LV %v, %d keys", ok, len(h.w.keys))
		}
	}
	err := h.m.Create(h.ctx, "b", map[string]string{"size": "3G"})
	if err == nil || !strings.Contains(err.Error(), "already backs 4 GiB of thin volumes; 3 GiB more would exceed 1.5 times its size, 6 GiB (CRYPTVOL_THIN_MAX_OVERCOMMIT)") {
		t.Errorf("over-commit: %v", err)
	}
	nothingMade("b")
	h.mustCreate("c", map[string]string{"size": "1G"})
	if err := h.m.Remove(h.ctx, "c"); err != nil {
		t.Fatal(err)
	}

	h.w.poolFree = 100 << 20 // 97.6% of the data used
	err = h.m.Create(h.ctx, "d", nil)
	if err == nil || !strings.Contains(err.Error(), "is 97.56% full (data) and 0.00% (metadata), at or over the 95% limit (CRYPTVOL_THIN_MAX_FILL)") {
		t.Errorf("data fill: %v", err)
	}
	nothingMade("d")
	h.w.poolFree, h.w.poolMeta = 2<<30, 96
	if err := h.m.Create(h.ctx, "e", nil); err == nil || !strings.Contains(err.Error(), "96.00% (metadata)") {
		t.Errorf("metadata fill: %v", err)
	}
	nothingMade("e")
}
