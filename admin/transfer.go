package admin

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryptvol/cryptvol/export"
	"github.com/cryptvol/cryptvol/plugin"
	"github.com/cryptvol/cryptvol/volume/options"
)

// transferTimeout bounds an export or import: the plugin's own bound on
// work that reads or writes a whole volume, and a margin.
const transferTimeout = plugin.DefaultReencryptTimeout + time.Minute

// exportCmd writes a volume's export (package export) to a file or stdout,
// reading it back through export.Reader as it goes: a stream the plugin
// cut short, or that does not check, leaves no file and exits 1.
func exportCmd(fs *flag.FlagSet, env Env) func(args []string) int {
	out := fs.String("o", "", "write the export to `FILE` (made new, mode 0600); default: standard output, which must not be a terminal")
	socket := socketFlag(fs, env)
	return func(args []string) int {
		const name = "export"
		if len(args) != 1 {
			return usageError(env, name, "want the VOLUME to export, got %d arguments", len(args))
		}
		if err := options.ValidateName(args[0]); err != nil {
			return usageError(env, name, "%v", err)
		}
		if *out == "" {
			if f, ok := env.Stdout.(*os.File); ok && isTerminal(f) {
				return usageError(env, name, "standard output is a terminal; give -o FILE or redirect it")
			}
			return runExport(env, socket, args[0], env.Stdout)
		}
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		code := runExport(env, socket, args[0], f)
		if code == ExitOK {
			if err := errors.Join(f.Sync(), f.Close()); err != nil {
				fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
				code = ExitFailed
			}
		} else {
			f.Close()
		}
		if code != ExitOK {
			// Only a complete, checked export is left behind.
			os.Remove(*out)
		}
		return code
	}
}

// runExport asks the plugin for the export of vol and copies it to w,
// checking it on the way.
func runExport(env Env, socket func() (string, error), vol string, w io.Writer) int {
	const name = "export"
	sock, err := socket()
	if err != nil {
		fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
		return ExitFailed
	}
	body, _ := json.Marshal(plugin.VolumeRequest{Name: vol})
	resp, err := newPluginClient(sock, transferTimeout).http.Post("http://plugin"+plugin.ExportPath, "application/json", strings.NewReader(string(body)))
	if err != nil {
		fmt.Fprintf(env.Stderr, "cryptvol %s: the plugin did not answer: %v\n", name, err)
		return ExitFailed
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/octet-stream" {
		var e struct{ Err string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Err == "" {
			e.Err = fmt.Sprintf("the plugin answered %s with %q (an older plugin without export?)", resp.Status, strings.TrimSpace(string(b)))
		}
		fmt.Fprintf(env.Stderr, "cryptvol %s: %s: %s\n", name, vol, e.Err)
		return ExitFailed
	}
	// What goes to w is read back as it goes: only a stream that reaches
	// its checksum counts.
	pr, pw := io.Pipe()
	checked := make(chan error, 1)
	var man export.Manifest
	go func() {
		rd, err := export.NewReader(pr)
		if err == nil {
			man = rd.Manifest()
			for err == nil {
				_, _, err = rd.Next()
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		io.Copy(io.Discard, pr)
		checked <- err
	}()
	n, err := io.Copy(io.MultiWriter(w, pw), resp.Body)
	pw.CloseWithError(err)
	if cerr := <-checked; err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "cryptvol %s: %s: the export is not complete (%d bytes received): %v\n", name, vol, n, err)
		return ExitFailed
	}
	fmt.Fprintf(env.Stderr, "%s: exported, %d bytes for a volume of %s, opened by KMIP key %s (%s)\n", vol, n, options.FormatSize(man.SizeBytes), man.KeyID, man.KeyName)
	return ExitOK
}

// importCmd makes a volume from an export file (or stdin), through the
// plugin.
func importCmd(fs *flag.FlagSet, env Env) func(args []string) int {
	reencrypt := fs.Bool("reencrypt", false, "also re-encrypt the data under a new volume key (it reads and writes the whole volume)")
	asJSON := fs.Bool("json", false, "print one JSON document")
	socket := socketFlag(fs, env)
	return func(args []string) int {
		const name = "import"
		if len(args) != 2 {
			return usageError(env, name, "want the export FILE (- for standard input) and the NAME of the new volume, got %d arguments", len(args))
		}
		if err := options.ValidateName(args[1]); err != nil {
			return usageError(env, name, "%v", err)
		}
		var in io.Reader = os.Stdin
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
				return ExitFailed
			}
			defer f.Close()
			in = f
		}
		sock, err := socket()
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		q := url.Values{"name": {args[1]}, "reencrypt": {fmt.Sprint(*reencrypt)}}
		var res plugin.ImportResponse
		resp, err := newPluginClient(sock, transferTimeout).http.Post("http://plugin"+plugin.ImportPath+"?"+q.Encode(), "application/octet-stream", io.NopCloser(in))
		if err == nil {
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if json.Unmarshal(b, &res) != nil {
				err = fmt.Errorf("the plugin answered %s with %q (an older plugin without import?)", resp.Status, strings.TrimSpace(string(b)))
			} else if res.Err != "" {
				err = errors.New(res.Err)
			}
		}
		switch {
		case *asJSON:
			printJSON(env.Stdout, struct {
				Result any    `json:"result,omitempty"`
				Error  string `json:"error,omitempty"`
			}{res.Result, errString(err)})
		case err != nil:
			fmt.Fprintf(env.Stderr, "cryptvol %s: %s: %v\n", name, args[1], err)
		default:
			r := res.Result
			how := ""
			if r.Reencrypted {
				how = ", re-encrypted under a new volume key"
			}
			fmt.Fprintf(env.Stdout, "%s: imported from %s's export (%s)%s; KMIP key %s of its own (%s's key %s untouched)\n",
				r.Volume, r.From, options.FormatSize(r.SizeBytes), how, r.NewKeyID, r.From, r.OldKeyID)
		}
		if err != nil {
			return ExitFailed
		}
		return ExitOK
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// isTerminal says whether f is a terminal, where an export's bytes would
// make no sense.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
