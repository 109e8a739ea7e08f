package admin

import (
	"flag"
	"fmt"
	"path/filepath"

	"github.com/cryptvol/cryptvol/audit"
)

// auditVerify checks a trail: the current file and the rotated ones beside
// it, as one chain.
func auditVerify(fs *flag.FlagSet, env Env) func(args []string) int {
	asJSON := fs.Bool("json", false, "print one JSON document")
	def := env.Getenv("CRYPTVOL_AUDIT_FILE")
	if def == "" || def == "off" {
		def = "/var/lib/cryptvol/audit.log"
	}
	return func(args []string) int {
		const name = "audit verify"
		if len(args) > 1 {
			return usageError(env, name, "want at most one FILE (the current audit file; its rotated files FILE.1, FILE.2, ... are read with it), got %d", len(args))
		}
		path := def
		if len(args) == 1 {
			path = args[0]
		}
		path, _ = filepath.Abs(path)
		files, err := audit.Files(path)
		if err == nil && len(files) == 0 {
			err = fmt.Errorf("no audit file at %s (nor rotated ones beside it)", path)
		}
		var rep *audit.Report
		if err == nil {
			rep, err = audit.Verify(files)
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		if *asJSON {
			printJSON(env.Stdout, rep)
		} else {
			for _, p := range rep.Problems {
				fmt.Fprintf(env.Stdout, "%s:%d: %s\n", p.File, p.Line, p.What)
			}
			fmt.Fprintf(env.Stdout, "%d records in %d files, sequence %d to %d, last hash %s\n", rep.Records, len(rep.Files), rep.FirstSeq, rep.LastSeq, rep.LastHash)
			switch {
			case !rep.OK():
				fmt.Fprintf(env.Stdout, "BROKEN: %d problems\n", len(rep.Problems))
			case rep.FirstSeq > 1:
				fmt.Fprintf(env.Stdout, "ok: the chain is unbroken; records before %d were rotated away\n", rep.FirstSeq)
			default:
				fmt.Fprintln(env.Stdout, "ok: the chain is unbroken from the first record")
			}
			fmt.Fprintln(env.Stdout, "(lines cut off the end are only seen by comparing the last hash with the plugin's log)")
		}
		if !rep.OK() {
			return ExitFailed
		}
		return ExitOK
	}
}
