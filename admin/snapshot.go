package admin

import (
	"flag"
	"fmt"

	"github.com/cryptvol/cryptvol/volume/options"
)

// snapshot asks the plugin for a read-only point-in-time copy of a volume:
// the Docker create of a clone (from=VOLUME, readonly=true), which dockerd
// then lists like any other volume.
func snapshot(fs *flag.FlagSet, env Env) func(args []string) int {
	socket := socketFlag(fs, env)
	return func(args []string) int {
		const name = "snapshot"
		if len(args) != 2 {
			return usageError(env, name, "want the VOLUME to copy and the NAME of the snapshot, got %d arguments", len(args))
		}
		for _, n := range args {
			if err := options.ValidateName(n); err != nil {
				return usageError(env, name, "%v", err)
			}
		}
		sock, err := socket()
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		var res struct{ Err string }
		err = newPluginClient(sock, pluginTimeout).post("/VolumeDriver.Create",
			map[string]any{"Name": args[1], "Opts": map[string]string{options.OptFrom: args[0], options.OptReadOnly: "true"}}, &res)
		if err == nil && res.Err != "" {
			err = fmt.Errorf("%s", res.Err)
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		fmt.Fprintf(env.Stdout, "%s: a read-only snapshot of %s, with a KMIP key of its own (its data key is %s's)\n", args[1], args[0], args[0])
		return ExitOK
	}
}
