package options

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ParseAge reads a key age as CRYPTVOL_ROTATE_AFTER and `cryptvol report
// --rotate-after` take it: "off" (0: no limit), a number of days ("90d",
// up to 36500) or a Go duration ("720h") of at least an hour.
func ParseAge(s string) (time.Duration, error) {
	return parseSpan(s, time.Hour, "under an hour")
}

// ParseGrace reads CRYPTVOL_REMOVE_GRACE: "off" (0: a remove destroys at
// once), a number of days ("3d") or a Go duration ("72h") of at least a
// minute, the sweeper's scale (volume.DefaultSweepInterval).
func ParseGrace(s string) (time.Duration, error) {
	return parseSpan(s, time.Minute, "under a minute")
}

func parseSpan(s string, least time.Duration, tooShort string) (time.Duration, error) {
	if s == "off" {
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 36500 {
			return 0, errors.New("bad number of days")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, err
		}
	}
	if d < least {
		return 0, errors.New(tooShort)
	}
	return d, nil
}
