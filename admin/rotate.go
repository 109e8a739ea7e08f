package admin

import (
	"flag"
	"fmt"

	"github.com/cryptvol/cryptvol/plugin"
)

// rotate asks the plugin to rotate volumes' KMIP keys, one at a time.
func rotate(fs *flag.FlagSet, env Env) func(args []string) int {
	all := fs.Bool("all", false, "rotate every volume of the plugin")
	asJSON := fs.Bool("json", false, "print one JSON document")
	socket := socketFlag(fs, env)
	return func(args []string) int {
		const name = "rotate"
		if *all == (len(args) > 0) {
			return usageError(env, name, "give the VOLUMEs to rotate, or --all (not both)")
		}
		sock, err := socket()
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		c := newPluginClient(sock, pluginTimeout)
		if *all {
			var list struct {
				Volumes []struct{ Name string }
				Err     string
			}
			if err := c.post("/VolumeDriver.List", struct{}{}, &list); err != nil || list.Err != "" {
				fmt.Fprintf(env.Stderr, "cryptvol %s: listing volumes: %v%s\n", name, err, list.Err)
				return ExitFailed
			}
			for _, v := range list.Volumes {
				args = append(args, v.Name)
			}
		}
		type result struct {
			Volume   string `json:"volume"`
			OldKeyID string `json:"old_key_id,omitempty"`
			NewKeyID string `json:"new_key_id,omitempty"`
			Error    string `json:"error,omitempty"`
		}
		results := []result{}
		failed := 0
		for _, v := range args {
			var res plugin.RotateResponse
			err := c.post(plugin.RotatePath, plugin.VolumeRequest{Name: v}, &res)
			r := result{Volume: v, OldKeyID: res.Result.OldKeyID, NewKeyID: res.Result.NewKeyID}
			switch {
			case err != nil:
				r.Error = err.Error()
			case res.Err != "":
				r.Error = res.Err
			}
			if r.Error != "" {
				failed++
			}
			results = append(results, r)
			if !*asJSON {
				if r.Error != "" {
					fmt.Fprintf(env.Stdout, "%s: FAILED: %s\n", v, r.Error)
				} else {
					fmt.Fprintf(env.Stdout, "%s: KMIP key %s replaced by %s (destroyed)\n", v, r.OldKeyID, r.NewKeyID)
				}
			}
		}
		if *asJSON {
			printJSON(env.Stdout, struct {
				Volumes []result `json:"volumes"`
				Failed  int      `json:"failed"`
			}{results, failed})
		} else if len(args) == 0 {
			fmt.Fprintln(env.Stdout, "no volumes")
		}
		if failed > 0 {
			return ExitFailed
		}
		return ExitOK
	}
}
