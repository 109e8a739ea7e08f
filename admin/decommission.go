package admin

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/keys"
)

// kmipFlags declares the KMIP connection flags, defaulting to the plugin's
// CRYPTVOL_KMIP_* variables, and returns a function that builds the config.
func kmipFlags(fs *flag.FlagSet, env Env) func() keys.Config {
	var c keys.Config
	fs.StringVar(&c.Endpoint, "kmip-endpoint", env.Getenv("CRYPTVOL_KMIP_ENDPOINT"), "KMIP server `host:port`, or several separated by commas (default $CRYPTVOL_KMIP_ENDPOINT)")
	fs.StringVar(&c.CAFile, "kmip-ca", env.Getenv("CRYPTVOL_KMIP_CA"), "PEM `file` of the CA of the KMIP server's certificate (default $CRYPTVOL_KMIP_CA)")
	fs.StringVar(&c.CertFile, "kmip-cert", env.Getenv("CRYPTVOL_KMIP_CERT"), "PEM client certificate `file` of an identity allowed to do this (default $CRYPTVOL_KMIP_CERT)")
	fs.StringVar(&c.KeyFile, "kmip-key", env.Getenv("CRYPTVOL_KMIP_KEY"), "PEM private key `file` of that certificate (default $CRYPTVOL_KMIP_KEY)")
	fs.StringVar(&c.ServerName, "kmip-server-name", env.Getenv("CRYPTVOL_KMIP_SERVER_NAME"), "`name` the server's certificate must carry (default: the endpoint's host)")
	timeout := 30 * time.Second
	if d, err := time.ParseDuration(env.Getenv("CRYPTVOL_KMIP_TIMEOUT")); err == nil && d > 0 {
		timeout = d
	}
	fs.DurationVar(&c.Timeout, "kmip-timeout", timeout, "bound on each KMIP request")
	return func() keys.Config { return c }
}

// decommissionResult is one key's outcome, and the JSON output's element.
type decommissionResult struct {
	keys.KeyInfo
	Result string `json:"result"` // "destroyed", "already gone", "would destroy", "failed"
	Error  string `json:"error,omitempty"`
}

// decommission finds the keys a node made by their Object Group
// (keys.NodeGroup, set by the plugin at create), and revokes them for key
// compromise and destroys them: that node, whatever it still holds, can no
// longer open one of its volumes that is closed. It is run twice safely;
// without --yes it only lists.
func decommission(fs *flag.FlagSet, env Env) func(args []string) int {
	yes := fs.Bool("yes", false, "do it: revoke (key compromise) and destroy the keys")
	dry := fs.Bool("dry-run", false, "list the node's keys and change nothing")
	asJSON := fs.Bool("json", false, "print one JSON document")
	cfg := kmipFlags(fs, env)
	return func(args []string) int {
		const name = "decommission"
		if len(args) != 1 {
			return usageError(env, name, "want exactly one NODE (the CRYPTVOL_NODE, or host name, of the node), got %d arguments", len(args))
		}
		node := args[0]
		if err := keys.ValidateNode(node); err != nil {
			return usageError(env, name, "%v", err)
		}
		if *yes == *dry {
			return usageError(env, name, "it destroys keys for good: pass --yes to do it, or --dry-run to list what it would destroy")
		}
		quiet := logrus.New()
		quiet.SetOutput(io.Discard)
		kms, err := keys.NewKMIP(cfg(), quiet)
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitUsage
		}
		defer kms.Close()
		ctx := context.Background()
		group := keys.NodeGroup(node)
		found, err := kms.Group(ctx, group)
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		results := make([]decommissionResult, 0, len(found))
		failed := 0
		for _, k := range found {
			r := decommissionResult{KeyInfo: k, Result: "would destroy"}
			if *yes {
				switch gone, err := kms.Compromise(ctx, k.ID); {
				case err != nil:
					r.Result, r.Error = "failed", err.Error()
					failed++
				case gone:
					r.Result = "already gone"
				default:
					r.Result = "destroyed"
				}
			}
			results = append(results, r)
		}
		if *asJSON {
			printJSON(env.Stdout, struct {
				Node   string               `json:"node"`
				Group  string               `json:"object_group"`
				DryRun bool                 `json:"dry_run"`
				Keys   []decommissionResult `json:"keys"`
				Failed int                  `json:"failed"`
			}{node, group, *dry, results, failed})
		} else {
			printDecommission(env.Stdout, node, group, *dry, results, failed)
		}
		if failed > 0 {
			return ExitFailed
		}
		return ExitOK
	}
}

func printDecommission(w io.Writer, node, group string, dry bool, results []decommissionResult, failed int) {
	fmt.Fprintf(w, "node %s: %d keys in KMIP object group %q\n", node, len(results), group)
	if len(results) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY ID\tSTATE\tNAME\tRESULT")
		for _, r := range results {
			res := r.Result
			if r.Error != "" {
				res += ": " + r.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.State, strings.Join(r.Names, ","), res)
		}
		tw.Flush()
	}
	switch {
	case dry:
		fmt.Fprintln(w, "dry run: nothing changed; run again with --yes to revoke (key compromise) and destroy these keys")
	case failed > 0:
		fmt.Fprintf(w, "%d keys could not be destroyed; run the command again to retry them\n", failed)
	default:
		fmt.Fprintf(w, "done: %s cannot open any of these volumes again\n", node)
	}
}
