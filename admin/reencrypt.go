package admin

import (
	"flag"
	"fmt"
	"time"

	"github.com/cryptvol/cryptvol/plugin"
)

// reencrypt asks the plugin to re-encrypt a volume's data under a new
// volume key, and waits: it takes as long as rewriting the volume does.
func reencrypt(fs *flag.FlagSet, env Env) func(args []string) int {
	asJSON := fs.Bool("json", false, "print one JSON document")
	socket := socketFlag(fs, env)
	return func(args []string) int {
		const name = "reencrypt"
		if len(args) != 1 {
			return usageError(env, name, "want exactly one VOLUME, got %d", len(args))
		}
		sock, err := socket()
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		start := time.Now()
		var res plugin.ReencryptResponse
		err = newPluginClient(sock, plugin.DefaultReencryptTimeout+time.Minute).
			post(plugin.ReencryptPath, plugin.VolumeRequest{Name: args[0]}, &res)
		if err == nil && res.Err != "" {
			err = fmt.Errorf("%s", res.Err)
		}
		took := time.Since(start).Round(time.Millisecond)
		if *asJSON {
			out := struct {
				Volume  string  `json:"volume"`
				Resumed bool    `json:"resumed"`
				Online  bool    `json:"online"`
				Seconds float64 `json:"seconds"`
				Error   string  `json:"error,omitempty"`
			}{args[0], res.Result.Resumed, res.Result.Online, took.Seconds(), ""}
			if err != nil {
				out.Error = err.Error()
			}
			printJSON(env.Stdout, out)
		} else if err == nil {
			how := "offline"
			if res.Result.Online {
				how = "online, mounted"
			}
			if res.Result.Resumed {
				how += ", an interrupted reencryption resumed"
			}
			fmt.Fprintf(env.Stdout, "%s: data re-encrypted under a new volume key (%s) in %s\n", args[0], how, took)
		}
		if err != nil {
			if !*asJSON {
				fmt.Fprintf(env.Stderr, "cryptvol %s: %s: %v\n", name, args[0], err)
			}
			return ExitFailed
		}
		return ExitOK
	}
}
