package admin

import (
	"flag"
	"fmt"

	"github.com/cryptvol/cryptvol/internal/version"
	"github.com/cryptvol/cryptvol/volume"
)

// versionInfo is what `cryptvol version --json` prints: the build and the
// state file formats it reads, which is what decides whether this binary can
// take over a state directory another build wrote.
type versionInfo struct {
	Version     string `json:"version"`
	StateFormat int    `json:"state_format"`
	// StateFormatsRead are the formats the plugin reads at start (older ones
	// are converted to StateFormat); a newer one is refused.
	StateFormatsRead []int `json:"state_formats_read"`
}

func currentVersion() versionInfo {
	read := make([]int, 0, volume.StateVersion)
	for v := 1; v <= volume.StateVersion; v++ {
		read = append(read, v)
	}
	return versionInfo{Version: version.Get(), StateFormat: volume.StateVersion, StateFormatsRead: read}
}

// versionCmd prints the build's version and its state format. It takes no
// arguments and needs neither the plugin nor the KMIP server, so it answers on
// any host, the binary read out of an installed plugin's rootfs included.
func versionCmd(fs *flag.FlagSet, env Env) func([]string) int {
	asJSON := fs.Bool("json", false, "print one JSON document")
	return func(args []string) int {
		if len(args) != 0 {
			return usageError(env, "version", "takes no arguments, got %q", args[0])
		}
		v := currentVersion()
		if *asJSON {
			printJSON(env.Stdout, v)
			return ExitOK
		}
		fmt.Fprintf(env.Stdout, "cryptvol %s\nstate format %d (reads formats %d to %d)\n",
			v.Version, v.StateFormat, v.StateFormatsRead[0], v.StateFormat)
		return ExitOK
	}
}
