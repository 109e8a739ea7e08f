package version

import "testing"

func TestGetUnstampedIsUnknown(t *testing.T) {
	old := stamp
	t.Cleanup(func() { stamp = old })
	for _, s := range []string{"", "  ", "\n"} {
		stamp = s
		if got := Get(); got != Unknown {
			t.Errorf("stamp %q: Get() = %q, want %q", s, got, Unknown)
		}
	}
}

func TestGetReturnsTheStamp(t *testing.T) {
	old := stamp
	t.Cleanup(func() { stamp = old })
	stamp = "1498691-dirty"
	if got := Get(); got != "1498691-dirty" {
		t.Errorf("Get() = %q, want the stamp", got)
	}
}
