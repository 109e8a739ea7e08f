package admin

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/keys"
)

// auditAnchor reaches the heads the plugin of node anchored on the KMIP
// server; tests replace it.
var auditAnchor = func(cfg keys.Config, node string) (audit.Anchor, func(), error) {
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	kms, err := keys.NewKMIP(cfg, quiet)
	if err != nil {
		return nil, nil, err
	}
	a, err := keys.NewAuditAnchor(kms, node)
	if err != nil {
		kms.Close()
		return nil, nil, err
	}
	return a, func() { kms.Close() }, nil
}

// trailFlags declares what checking a trail needs (--node, the KMIP flags,
// --no-kmip) and returns the check: the trail at path (its default when
// "") as one chain with its rotated files, against the heads its plugin
// anchored on the KMIP server when one is configured. err is a trail that
// could not be read or a KMIP server that could not be reached; a trail
// read and found broken is a Report that is not OK.
// kmipOn gives the KMIP configuration when the server is to be asked (an
// endpoint and no --no-kmip).
func trailFlags(fs *flag.FlagSet, env Env) (check func(path string) (*audit.Report, string, error), def string, kmipOn func() (keys.Config, bool)) {
	noKMIP := fs.Bool("no-kmip", false, "check the files alone, without the heads anchored on the KMIP server")
	node := env.Getenv("CRYPTVOL_NODE")
	if node == "" {
		node, _ = os.Hostname()
	}
	fs.StringVar(&node, "node", node, "`NODE` whose anchors to read: the plugin's CRYPTVOL_NODE (default $CRYPTVOL_NODE, else the host name)")
	cfg := kmipFlags(fs, env)
	def = env.Getenv("CRYPTVOL_AUDIT_FILE")
	if def == "" || def == "off" {
		def = "/var/lib/cryptvol/audit.log"
	}
	kmipOn = func() (keys.Config, bool) { return cfg(), !*noKMIP && cfg().Endpoint != "" }
	return func(path string) (*audit.Report, string, error) {
		if path == "" {
			path = def
		}
		path, _ = filepath.Abs(path)
		var anchor audit.Anchor
		if c, on := kmipOn(); on {
			a, closeFn, err := auditAnchor(c, node)
			if err != nil {
				return nil, node, err
			}
			defer closeFn()
			anchor = a
		}
		files, err := audit.Files(path)
		if err == nil && len(files) == 0 {
			err = fmt.Errorf("no audit file at %s (nor rotated ones beside it)", path)
		}
		if err != nil {
			return nil, node, err
		}
		rep, err := audit.Verify(context.Background(), files, anchor)
		return rep, node, err
	}, def, kmipOn
}

// auditVerify checks a trail (trailFlags).
func auditVerify(fs *flag.FlagSet, env Env) func(args []string) int {
	asJSON := fs.Bool("json", false, "print one JSON document")
	check, _, _ := trailFlags(fs, env)
	return func(args []string) int {
		const name = "audit verify"
		if len(args) > 1 {
			return usageError(env, name, "want at most one FILE (the current audit file; its rotated files FILE.1, FILE.2, ... are read with it), got %d", len(args))
		}
		path := ""
		if len(args) == 1 {
			path = args[0]
		}
		rep, node, err := check(path)
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		if *asJSON {
			printJSON(env.Stdout, rep)
		} else {
			printReport(env.Stdout, rep, node)
		}
		if !rep.OK() || rep.Anchors.Error != "" {
			return ExitFailed
		}
		return ExitOK
	}
}

// printReport says what the check found and what it vouches for.
func printReport(w io.Writer, rep *audit.Report, node string) {
	for _, p := range rep.Problems {
		if p.Line == 0 {
			fmt.Fprintf(w, "%s: %s\n", p.File, p.What)
		} else {
			fmt.Fprintf(w, "%s:%d: %s\n", p.File, p.Line, p.What)
		}
	}
	fmt.Fprintf(w, "%d records in %d files, sequence %d to %d, last hash %s\n", rep.Records, len(rep.Files), rep.FirstSeq, rep.LastSeq, rep.LastHash)
	switch rep.Beginning {
	case audit.BeginFirst:
		fmt.Fprintln(w, "beginning: the trail begins at record 1")
	case audit.BeginVouched:
		fmt.Fprintf(w, "beginning: records before %d were rotated away; the anchor of record %d vouches that the files kept records from %d on\n", rep.FirstSeq, rep.VouchedBy, rep.FirstSeq)
	default:
		fmt.Fprintf(w, "beginning MISSING: the first record is %d, and nothing vouches for where the trail begins (older files rotated away, or removed)\n", rep.FirstSeq)
	}
	a := rep.Anchors
	switch {
	case a.Error != "":
		fmt.Fprintf(w, "anchors NOT CHECKED: %s\n", a.Error)
	case !a.Checked:
		fmt.Fprintln(w, "anchors not checked (no KMIP endpoint, or --no-kmip): a trail rewritten with recomputed hashes, or cut off at the end, passes")
	case a.Heads == 0:
		fmt.Fprintf(w, "anchors: the KMIP server holds none for node %s\n", node)
	default:
		fmt.Fprintf(w, "anchors: %d held for node %s, %d match records in the files, the latest is record %d", a.Heads, node, a.Matched, a.LatestSeq)
		if a.LatestSeq < rep.LastSeq {
			fmt.Fprintf(w, "; records %d to %d are not anchored yet", a.LatestSeq+1, rep.LastSeq)
		}
		fmt.Fprintln(w)
	}
	if rep.OK() {
		fmt.Fprintln(w, "ok: the chain is unbroken and agrees with every anchor read")
	} else {
		fmt.Fprintf(w, "BROKEN: %d problems\n", len(rep.Problems))
	}
}
