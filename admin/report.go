package admin

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/volume"
	"github.com/cryptvol/cryptvol/volume/options"
)

// now is time.Now; tests replace it.
var now = time.Now

// reportVolume is one volume's line of `cryptvol report`, from its Status
// (volume/info.go) as the plugin's List gives it.
type reportVolume struct {
	Name     string `json:"name"`
	KeyID    string `json:"kmip_key_id"`
	KeySince string `json:"key_since"`        // RFC 3339
	KeyFrom  string `json:"key_from"`         // "create" or "rotation"
	KeyAgeH  int64  `json:"key_age_hours"`    // whole hours
	Overdue  bool   `json:"overdue"`          // older than rotate_after
	Tenant   string `json:"tenant,omitempty"` // its own KMIP identity's
	// Group is the key's KMIP Object Group as the server has it, the node
	// group `cryptvol decommission NODE` acts on (keys.NodeGroup), and
	// Node that node; empty when it could not be read (see KeyGroups).
	Group     string `json:"kmip_group,omitempty"`
	Node      string `json:"node,omitempty"`
	Integrity string `json:"integrity,omitempty"` // dm-integrity algorithm
	Mounted   bool   `json:"mounted"`             // decrypted and mounted here now
	Path      string `json:"path,omitempty"`      // where, while mounted
	On        string `json:"mounted_on,omitempty"`
	Problem   string `json:"problem,omitempty"` // what could not be read
}

// reportDoc is the JSON document of `cryptvol report --json`.
type reportDoc struct {
	Generated   string         `json:"generated"`
	RotateAfter string         `json:"rotate_after"` // "off" or the limit
	Volumes     []reportVolume `json:"volumes"`
	Overdue     int            `json:"overdue"`
	// KeyGroups says why keys' groups are missing: "not asked" (no KMIP
	// endpoint, or --no-kmip), the error, or the keys this identity may
	// not read (a tenant's); "" when every group was read.
	KeyGroups string `json:"kmip_groups_note,omitempty"`
	Audit     struct {
		File    string        `json:"file"`
		OK      bool          `json:"ok"`
		Error   string        `json:"error,omitempty"`
		Summary *audit.Report `json:"report,omitempty"`
	} `json:"audit"`
	OK bool `json:"ok"`
}

// report is the compliance report: each volume's KMIP key (id, since when
// and how it came, its age against the rotation limit), tenant, integrity,
// and whether it is decrypted now and where; then whether the audit trail
// verifies, as `cryptvol audit verify` checks it. Exit 1 when a key is
// older than --rotate-after or the trail does not verify.
func report(fs *flag.FlagSet, env Env) func(args []string) int {
	asJSON := fs.Bool("json", false, "print one JSON document")
	ra := env.Getenv("CRYPTVOL_ROTATE_AFTER")
	if ra == "" {
		ra = "off"
	}
	rotateAfter := fs.String("rotate-after", ra, "`AGE` past which a key is overdue: off, days (90d) or a duration (720h) (default $CRYPTVOL_ROTATE_AFTER, else off)")
	auditFile := fs.String("audit", "", "the audit `FILE` to verify (default $CRYPTVOL_AUDIT_FILE, else /var/lib/cryptvol/audit.log)")
	socket := socketFlag(fs, env)
	check, def, kmipOn := trailFlags(fs, env)
	return func(args []string) int {
		const name = "report"
		if len(args) > 0 {
			return usageError(env, name, "takes no arguments, got %q", args[0])
		}
		limit, err := options.ParseAge(*rotateAfter)
		if err != nil {
			return usageError(env, name, "--rotate-after=%q is not valid (allowed: off, or an age of at least 1h such as 90d or 720h)", *rotateAfter)
		}
		sock, err := socket()
		if err != nil {
			fmt.Fprintf(env.Stderr, "cryptvol %s: %v\n", name, err)
			return ExitFailed
		}
		var list struct {
			Volumes []struct {
				Name       string
				Mountpoint string
				Status     map[string]any
			}
			Err string
		}
		if err := newPluginClient(sock, pluginTimeout).post("/VolumeDriver.List", struct{}{}, &list); err != nil || list.Err != "" {
			fmt.Fprintf(env.Stderr, "cryptvol %s: listing volumes: %v%s\n", name, err, list.Err)
			return ExitFailed
		}
		t := now()
		doc := reportDoc{Generated: t.UTC().Format(time.RFC3339), RotateAfter: *rotateAfter, Volumes: []reportVolume{}}
		for _, v := range list.Volumes {
			r := reportVolume{Name: v.Name, Path: v.Mountpoint}
			str := func(k string) string { s, _ := v.Status[k].(string); return s }
			r.KeyID, r.KeySince, r.KeyFrom = str(volume.StatusKeyID), str(volume.StatusKeySince), str(volume.StatusKeyFrom)
			r.Tenant, r.Integrity, r.On = str(volume.StatusTenant), str(volume.StatusIntegrity), str(volume.StatusMountedOn)
			r.Mounted, _ = v.Status[volume.StatusMounted].(bool)
			if since, err := time.Parse(time.RFC3339, r.KeySince); err != nil {
				// A plugin that does not say when the key came cannot be
				// vouched for: counted as overdue.
				r.Problem, r.Overdue = "the plugin's Status has no key_since (a build older than this command?)", true
			} else {
				age := t.Sub(since)
				r.KeyAgeH = int64(age / time.Hour)
				r.Overdue = limit > 0 && age > limit
			}
			if r.Overdue {
				doc.Overdue++
			}
			doc.Volumes = append(doc.Volumes, r)
		}
		sort.Slice(doc.Volumes, func(i, j int) bool { return doc.Volumes[i].Name < doc.Volumes[j].Name })
		doc.KeyGroups = fillGroups(doc.Volumes, kmipOn)
		doc.Audit.File = *auditFile
		if doc.Audit.File == "" {
			doc.Audit.File = def
		}
		rep, _, err := check(doc.Audit.File)
		switch {
		case err != nil:
			doc.Audit.Error = err.Error()
		case rep.Anchors.Error != "":
			doc.Audit.Summary, doc.Audit.Error = rep, "anchors not checked: "+rep.Anchors.Error
		default:
			doc.Audit.Summary, doc.Audit.OK = rep, rep.OK()
		}
		doc.OK = doc.Overdue == 0 && doc.Audit.OK
		if *asJSON {
			printJSON(env.Stdout, doc)
		} else {
			printCompliance(env.Stdout, doc)
		}
		if !doc.OK {
			return ExitFailed
		}
		return ExitOK
	}
}

// keyGroups reads keys' Object Groups from the KMIP server; tests replace
// it.
var keyGroups = func(cfg keys.Config, ids []string) (map[string]string, error) {
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	kms, err := keys.NewKMIP(cfg, quiet)
	if err != nil {
		return nil, err
	}
	defer kms.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return kms.ObjectGroups(ctx, ids)
}

// fillGroups sets each volume's KMIP Object Group and node, read from the
// server (one batched request), and returns what kept any from being read.
func fillGroups(vols []reportVolume, kmipOn func() (keys.Config, bool)) string {
	cfg, on := kmipOn()
	if !on {
		return "not asked (no KMIP endpoint, or --no-kmip)"
	}
	var ids []string
	for _, v := range vols {
		if v.KeyID != "" {
			ids = append(ids, v.KeyID)
		}
	}
	groups, err := keyGroups(cfg, ids)
	if err != nil {
		return "not read: " + err.Error()
	}
	var unread []string
	for i := range vols {
		g, ok := groups[vols[i].KeyID]
		if !ok {
			unread = append(unread, vols[i].Name)
			continue
		}
		vols[i].Group = g
		vols[i].Node, _ = strings.CutPrefix(g, keys.NodeGroup(""))
		if vols[i].Node == g {
			vols[i].Node = ""
		}
	}
	if len(unread) > 0 {
		return "this KMIP identity may not read the keys of " + strings.Join(unread, ", ") + " (a tenant's keys are its own identity's)"
	}
	return ""
}

// printCompliance prints the report for people: one line per volume, then
// the trail's verdict and the overall one.
func printCompliance(w io.Writer, doc reportDoc) {
	fmt.Fprintf(w, "cryptvol report at %s, keys overdue after: %s\n", doc.Generated, doc.RotateAfter)
	for _, v := range doc.Volumes {
		state := "closed"
		if v.Mounted {
			state = "open at " + v.Path
		}
		if v.On != "" {
			state += " (mounted on " + v.On + ")"
		}
		extra := ""
		if v.Tenant != "" {
			extra += ", tenant " + v.Tenant
		}
		if v.Integrity != "" {
			extra += ", integrity " + v.Integrity
		}
		if v.Group != "" {
			extra += ", KMIP group " + v.Group
		}
		due := ""
		if v.Overdue {
			due = " OVERDUE"
		}
		if v.Problem != "" {
			due += " (" + v.Problem + ")"
		}
		fmt.Fprintf(w, "%s: key %s since %s by %s, %s old%s%s; %s\n", v.Name, v.KeyID, v.KeySince, v.KeyFrom, hours(v.KeyAgeH), due, extra, state)
	}
	if doc.KeyGroups != "" {
		fmt.Fprintf(w, "KMIP groups: %s\n", doc.KeyGroups)
	}
	switch a := doc.Audit; {
	case a.Error != "":
		fmt.Fprintf(w, "audit trail %s: NOT VERIFIED: %s\n", a.File, a.Error)
	case !a.OK:
		fmt.Fprintf(w, "audit trail %s: BROKEN: %d problems (cryptvol audit verify says which)\n", a.File, len(a.Summary.Problems))
	default:
		anchored := "not checked against KMIP anchors"
		if a.Summary.Anchors.Checked {
			anchored = "agrees with " + strconv.Itoa(a.Summary.Anchors.Matched) + " anchors"
		}
		fmt.Fprintf(w, "audit trail %s: ok, %d records, %s\n", a.File, a.Summary.Records, anchored)
	}
	if doc.OK {
		fmt.Fprintf(w, "ok: %d volumes, no key overdue, the trail verifies\n", len(doc.Volumes))
	} else {
		fmt.Fprintf(w, "NOT OK: %d keys overdue, trail verified: %v\n", doc.Overdue, doc.Audit.OK)
	}
}

// hours says an age in days and hours.
func hours(h int64) string {
	if h < 24 {
		return strconv.FormatInt(h, 10) + "h"
	}
	return fmt.Sprintf("%dd%dh", h/24, h%24)
}
