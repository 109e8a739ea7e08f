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
	if d < time.Hour {
		return 0, errors.New("under an hour")
	}
	return d, nil
}
