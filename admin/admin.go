// Package admin is cryptvol's command line for administrators: the cryptvol
// binary run with a subcommand, on a host or on any machine with the KMIP
// credentials it needs, instead of as the plugin. Key-only work
// (decommission) talks to the KMIP server directly; work on a volume's
// device (rotate, reencrypt, resize, snapshot, trash, restore, export, import) goes to the plugin over its socket (plugin/admin.go), so
// that Docker's requests and the administrator's take the same locks; the
// audit trail is read from its files.
//
// Output is for terminals and, with --json, for scripts: one JSON document
// on stdout. Exit codes: 0 done, 1 failed or found a problem, 2 the command
// line was wrong (the message says what is allowed).
//
// Files: admin.go (dispatch, help, flags), pluginclient.go (the plugin's
// socket), rotate.go, reencrypt.go, resize.go, snapshot.go, trash.go
// (trash and restore), transfer.go (export and import),
// decommission.go (and decommissionvg.go: what the volume group says about
// each key), auditcmd.go, version.go.
//
// Concurrency: Main runs one command and returns; nothing is shared.
package admin

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailed  = 1
	ExitUsage   = 2
	usageHeader = `usage: cryptvol COMMAND [OPTIONS] [ARGS]

Run without a command, cryptvol is the Docker volume plugin (configured by
CRYPTVOL_* variables). The commands are for administrators:

`
)

// Env is what a command reads from its surroundings.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// command is a subcommand: its flags are declared by setup, which returns
// the function that runs it once the flags are parsed.
type command struct {
	name, args, summary string
	setup               func(fs *flag.FlagSet, env Env) func(args []string) int
}

func commands() []command {
	return []command{
		{"rotate", "VOLUME...|--all", "replace volumes' KMIP keys (their LUKS passphrases) with new ones, mounted or not, through the plugin", rotate},
		{"resize", "VOLUME SIZE", "grow a volume (LV, mapping, filesystem), mounted or not; shrinking is refused", resize},
		{"snapshot", "VOLUME NAME", "make NAME a read-only point-in-time copy of VOLUME (a clone opened and mounted read-only)", snapshot},
		{"reencrypt", "VOLUME", "re-encrypt a volume's data under a new volume key (a suspected leak of it), online if mounted", reencrypt},
		{"trash", "", "list the volumes removed under CRYPTVOL_REMOVE_GRACE that can still be restored, with their remove and purge times", trash},
		{"restore", "ID [NEWNAME]", "bring a volume back from the trash (ID as trash lists it, or the volume's name if it is there once), as NEWNAME or its own name, on a new KMIP key", restore},
		{"export", "VOLUME", "write a volume's export: its LUKS2 header and ciphertext (never plaintext) and a manifest naming its KMIP key, to -o FILE or standard output", exportCmd},
		{"import", "FILE NAME", "make volume NAME from an export (FILE or - for standard input) on any host whose KMIP identity may fetch its key; it gets a key of its own", importCmd},
		{"decommission", "NODE", "revoke (key compromise) and destroy on the KMIP server the keys of every volume NODE created", decommission},
		{"audit verify", "[FILE]", "check an audit trail: its lines, its hash chain and the heads anchored on the KMIP server", auditVerify},
		{"report", "", "compliance report: every volume's key, its age against the rotation limit, tenant, integrity, where it is open, and whether the audit trail verifies", report},
		{"version", "", "print this build's version and the state file format it reads and writes", versionCmd},
	}
}

// Main runs the command args names and returns the exit code.
func Main(args []string, env Env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c, _, ok := find(args[1:]); ok {
				fmt.Fprint(env.Stdout, c.help(env))
				return ExitOK
			}
		}
		fmt.Fprint(env.Stdout, help())
		return ExitOK
	}
	c, rest, ok := find(args)
	if !ok {
		fmt.Fprintf(env.Stderr, "cryptvol: unknown command %q\n\n%s", strings.Join(args[:min(2, len(args))], " "), help())
		return ExitUsage
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := c.setup(fs, env)
	// Flags may come before, between or after the arguments.
	var pos []string
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(env.Stdout, c.help(env))
				return ExitOK
			}
			return usageError(env, c.name, "%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	return run(pos)
}

// find matches a command name at the start of args.
func find(args []string) (command, []string, bool) {
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, args[len(words):], true
		}
	}
	return command{}, nil, false
}

func help() string {
	var b strings.Builder
	b.WriteString(usageHeader)
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-26s %s\n", c.name+" "+c.args, c.summary)
	}
	b.WriteString("\nRun 'cryptvol help COMMAND' for a command's options. Exit codes: 0 done, 1 failed, 2 usage.\n")
	return b.String()
}

func (c command) help(env Env) string {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.setup(fs, env)
	var b strings.Builder
	fmt.Fprintf(&b, "usage: cryptvol %s [OPTIONS] %s\n\n%s.\n\nOptions:\n", c.name, c.args, strings.ToUpper(c.summary[:1])+c.summary[1:])
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// usageError prints a command-line error and returns ExitUsage.
func usageError(env Env, cmd, format string, a ...any) int {
	fmt.Fprintf(env.Stderr, "cryptvol %s: %s (see 'cryptvol help %s')\n", cmd, fmt.Sprintf(format, a...), cmd)
	return ExitUsage
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
