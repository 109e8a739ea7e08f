package options

import (
	"testing"
	"time"
)

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"off": 0, "90d": 90 * 24 * time.Hour, "1d": 24 * time.Hour, "720h": 720 * time.Hour, "1h": time.Hour} {
		if got, err := ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "-1d", "36501d", "59m", "d", "90", "1.5d", "off ", "OFF"} {
		if got, err := ParseAge(in); err == nil {
			t.Errorf("ParseAge(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseGrace(t *testing.T) {
	for in, want := range map[string]time.Duration{"off": 0, "3d": 72 * time.Hour, "72h": 72 * time.Hour, "1m": time.Minute, "90s": 90 * time.Second} {
		if got, err := ParseGrace(in); err != nil || got != want {
			t.Errorf("ParseGrace(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0s", "59s", "-1h", "0d", "36501d", "72", "3 d", "Off"} {
		if got, err := ParseGrace(in); err == nil {
			t.Errorf("ParseGrace(%q) = %v, want an error", in, got)
		}
	}
}
