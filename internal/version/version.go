// Package version holds the version the build stamps into cryptvol (the
// output of `git describe --always --dirty`), so that the plugin's log, its
// audit trail, `cryptvol version` and the bundle's config.json name the same
// build. The Makefile stamps it with
//
//	go build -ldflags '-X github.com/cryptvol/cryptvol/internal/version.stamp=VERSION'
//
// A plain `go build` leaves it unstamped, and the version is "unknown".
package version

import "strings"

// stamp is set at link time; a variable, because -X sets only variables.
var stamp string

// Unknown is the version of a build nobody stamped.
const Unknown = "unknown"

// Get returns the stamped version, or Unknown.
func Get() string {
	if v := strings.TrimSpace(stamp); v != "" {
		return v
	}
	return Unknown
}
