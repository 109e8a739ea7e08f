package admin

import (
	"flag"
	"fmt"
	"time"

	"github.com/cryptvol/cryptvol/plugin"
	"github.com/cryptvol/cryptvol/volume"
	"github.com/cryptvol/cryptvol/volume/options"
)

// trash lists the volumes removed under CRYPTVOL_REMOVE_GRACE that can
// still be restored (volume/trash.go).
func trash(fs *flag.FlagSet, env Env) func(args []string) int {
	asJSON := fs.Bool("json", false, "print one JSON document")
	socket := socketFlag(fs, env)
	return func(args []string) int {
		const name = "trash"
		if len(args) != 0 {
			return usageError(env, name, "takes no arguments, got %d", len(args))
		}
		sock, err := socket()
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		var res plugin.TrashResponse
		err = newPluginClient(sock, pluginTimeout).post(plugin.TrashPath, plugin.VolumeRequest{}, &res)
		if err == nil && res.Err != "" {
			err = fmt.Errorf("%s", res.Err)
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		list := res.Result
		if list == nil {
			list = []volume.Trashed{}
		}
		if *asJSON {
			printJSON(env.Stdout, struct {
				Trash []volume.Trashed `json:"trash"`
			}{list})
			return ExitOK
		}
		if len(list) == 0 {
			fmt.Fprintln(env.Stdout, "the trash is empty")
			return ExitOK
		}
		fmt.Fprintf(env.Stdout, "%-40s %-20s %-20s %-20s %8s  %s\n", "ID", "VOLUME", "REMOVED", "PURGED AFTER", "SIZE", "KEY")
		for _, t := range list {
			key := t.KeyID + " (deactivated)"
			if t.KeyPending {
				key = t.KeyID + " (deactivation pending: KMIP unreachable)"
			}
			fmt.Fprintf(env.Stdout, "%-40s %-20s %-20s %-20s %8s  %s\n", t.ID, t.Volume, t.RemovedAt.UTC().Format(time.DateTime), t.PurgeAt.UTC().Format(time.DateTime), options.FormatSize(t.SizeBytes), key)
		}
		return ExitOK
	}
}

// restore brings a volume back from the trash, under its name or another.
func restore(fs *flag.FlagSet, env Env) func(args []string) int {
	asJSON := fs.Bool("json", false, "print one JSON document")
	socket := socketFlag(fs, env)
	return func(args []string) int {
		const name = "restore"
		if len(args) < 1 || len(args) > 2 {
			return usageError(env, name, "want a trash ID (or the VOLUME name, when it is in the trash once) and optionally the NEWNAME to restore it as, got %d arguments", len(args))
		}
		req := plugin.VolumeRequest{Name: args[0]}
		if len(args) == 2 {
			if err := options.ValidateName(args[1]); err != nil {
				return usageError(env, name, "%v", err)
			}
			req.As = args[1]
		}
		sock, err := socket()
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		var res plugin.RestoreResponse
		err = newPluginClient(sock, pluginTimeout).post(plugin.RestorePath, req, &res)
		if err == nil && res.Err != "" {
			err = fmt.Errorf("%s", res.Err)
		}
		switch {
		case *asJSON:
			out := struct {
				volume.Restored
				Error string `json:"error,omitempty"`
			}{Restored: res.Result}
			if err != nil {
				out.Error = err.Error()
			}
			printJSON(env.Stdout, out)
		case err != nil:
			fmt.Fprintf(env.Stderr, "cryptvol %s: %s: %v\n", name, args[0], err)
		default:
			fmt.Fprintf(env.Stdout, "%s: restored from trash entry %s; KMIP key %s replaced by %s (destroyed)\n", res.Result.Volume, res.Result.ID, res.Result.OldKeyID, res.Result.NewKeyID)
		}
		if err != nil {
			return ExitFailed
		}
		return ExitOK
	}
}
