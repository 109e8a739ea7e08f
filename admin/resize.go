package admin

import (
	"flag"
	"fmt"

	"github.com/cryptvol/cryptvol/plugin"
	"github.com/cryptvol/cryptvol/volume"
	"github.com/cryptvol/cryptvol/volume/options"
)

// resize asks the plugin to grow a volume, mounted or not.
func resize(fs *flag.FlagSet, env Env) func(args []string) int {
	asJSON := fs.Bool("json", false, "print one JSON document")
	socket := socketFlag(fs, env)
	return func(args []string) int {
		const name = "resize"
		if len(args) != 2 {
			return usageError(env, name, "want VOLUME and its new SIZE (e.g. 20G), got %d arguments", len(args))
		}
		if _, err := options.ParseSize(args[1]); err != nil {
			return usageError(env, name, "%v", err)
		}
		sock, err := socket()
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		var res plugin.ResizeResponse
		err = newPluginClient(sock, pluginTimeout).post(plugin.ResizePath, plugin.VolumeRequest{Name: args[0], Size: args[1]}, &res)
		if err == nil && res.Err != "" {
			err = fmt.Errorf("%s", res.Err)
		}
		switch {
		case *asJSON:
			out := struct {
				volume.Resized
				Error string `json:"error,omitempty"`
			}{Resized: res.Result}
			if err != nil {
				out.Error = err.Error()
			}
			printJSON(env.Stdout, out)
		case err != nil:
			fmt.Fprintf(env.Stderr, "cryptvol %s: %s: %v\n", name, args[0], err)
		default:
			how := "closed"
			if res.Result.Online {
				how = "mounted, online"
			}
			fmt.Fprintf(env.Stdout, "%s: grown from %s to %s (%s)\n", args[0], options.FormatSize(res.Result.OldBytes), options.FormatSize(res.Result.NewBytes), how)
		}
		if err != nil {
			return ExitFailed
		}
		return ExitOK
	}
}
