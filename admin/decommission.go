package admin

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume"
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
	// LV is the volume whose LV's key tag names the key, when the group
	// was read (decommissionvg.go).
	LV     *volume.LVRecord `json:"lv,omitempty"`
	Result string           `json:"result"` // "destroyed", "already gone", "would destroy", "would refuse: WHY", "refused: WHY", "failed"
	Error  string           `json:"error,omitempty"`
}

// decommission finds the keys a node made by their Object Group
// (keys.NodeGroup, set by the plugin at create and kept across rotations
// on any host), and revokes them for key compromise and destroys them:
// that node, whatever it still holds, can no longer open one of its
// volumes that is closed. It is run twice safely; without --yes it only
// lists. With a volume group it can read (decommissionvg.go) it shows each
// key's volume and host, and --yes leaves alone, unless --force-in-use,
// the key of a volume another host has mounted or made.
func decommission(fs *flag.FlagSet, env Env) func(args []string) int {
	return decommissionWith(fs, env, systemDeps)
}

// keyAdmin is what decommission asks of the KMIP server. Implemented by
// *keys.KMIP.
type keyAdmin interface {
	Group(ctx context.Context, group string) ([]keys.KeyInfo, error)
	Compromise(ctx context.Context, id string) (gone bool, err error)
	Close() error
}

// decomDeps are decommission's ways out: tests put fakes in.
type decomDeps struct {
	kms func(keys.Config) (keyAdmin, error)
	// lvs lists the cryptvol LVs of volume group vg, read-only (lvs).
	lvs func(ctx context.Context, vg string, shared bool) ([]lvm.LV, error)
}

var systemDeps = decomDeps{
	lvs: systemLVs,
	kms: func(c keys.Config) (keyAdmin, error) {
		quiet := logrus.New()
		quiet.SetOutput(io.Discard)
		k, err := keys.NewKMIP(c, quiet)
		if err != nil {
			return nil, err
		}
		return k, nil
	},
}

func decommissionWith(fs *flag.FlagSet, env Env, deps decomDeps) func(args []string) int {
	yes := fs.Bool("yes", false, "do it: revoke (key compromise) and destroy the keys; with a volume group given, it refuses (exit 1) the key of a volume another host has mounted (cryptvol_on_) or made (cryptvol_madeby_), and every key when the group cannot be read")
	dry := fs.Bool("dry-run", false, "list the node's keys, with each key's volume, its maker and the host that has it mounted, and what --yes would do; change nothing")
	force := fs.Bool("force-in-use", false, "with --yes, destroy also the keys of volumes another host has mounted or made (their data becomes unreadable on every host)")
	vg, shared := vgFlags(fs, env)
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
		kms, err := deps.kms(cfg())
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitUsage
		}
		defer kms.Close()
		ctx := context.Background()
		recs := readVG(ctx, deps, *vg, *shared)
		group := keys.NodeGroup(node)
		found, err := kms.Group(ctx, group)
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		results := make([]decommissionResult, 0, len(found))
		failed, refused := 0, 0
		for _, k := range found {
			r := decommissionResult{KeyInfo: k, Result: "would destroy"}
			if rec, ok := recs.byKey[k.ID]; ok {
				r.LV = &rec
			}
			why := ""
			if !*force {
				why = recs.inUseElsewhere(node, k.ID)
			}
			switch {
			case why != "" && *dry:
				r.Result = "would refuse: " + why
			case why != "":
				r.Result = "refused: " + why + "; pass --force-in-use to destroy it anyway"
				refused++
			case *yes:
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
		vgErr := ""
		if recs.err != nil {
			vgErr = recs.err.Error()
		}
		if *asJSON {
			printJSON(env.Stdout, struct {
				Node    string               `json:"node"`
				Group   string               `json:"object_group"`
				VG      string               `json:"volume_group"`
				VGError string               `json:"volume_group_error,omitempty"`
				DryRun  bool                 `json:"dry_run"`
				Keys    []decommissionResult `json:"keys"`
				Failed  int                  `json:"failed"`
				Refused int                  `json:"refused"`
			}{node, group, *vg, vgErr, *dry, results, failed, refused})
		} else {
			printDecommission(env.Stdout, node, group, recs.note(), *dry, results, failed, refused)
		}
		if failed > 0 || refused > 0 {
			return ExitFailed
		}
		return ExitOK
	}
}

func printDecommission(w io.Writer, node, group, vgNote string, dry bool, results []decommissionResult, failed, refused int) {
	fmt.Fprintf(w, "node %s: %d keys in KMIP object group %q\n%s\n", node, len(results), group, vgNote)
	if len(results) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY ID\tSTATE\tNAME\tVOLUME\tMADE BY\tMOUNTED ON\tRESULT")
		for _, r := range results {
			res := r.Result
			if r.Error != "" {
				res += ": " + r.Error
			}
			vol, by, on := "-", "-", "-"
			if r.LV != nil {
				vol, by, on = r.LV.Volume, cmp.Or(r.LV.MadeBy, "-"), cmp.Or(r.LV.MountedOn, "-")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.State, strings.Join(r.Names, ","), vol, by, on, res)
		}
		tw.Flush()
	}
	switch {
	case dry:
		fmt.Fprintln(w, "dry run: nothing changed; run again with --yes to revoke (key compromise) and destroy these keys")
	case failed > 0 || refused > 0:
		if failed > 0 {
			fmt.Fprintf(w, "%d keys could not be destroyed; run the command again to retry them\n", failed)
		}
		if refused > 0 {
			fmt.Fprintf(w, "%d keys were left alone because another host uses their volumes, or that could not be checked; move or remove those volumes first, or pass --force-in-use to destroy their keys anyway\n", refused)
		}
	default:
		fmt.Fprintf(w, "done: %s cannot open any of these volumes again\n", node)
	}
}
