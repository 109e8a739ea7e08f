package admin

import (
	"context"
	"flag"
	"fmt"

	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume"
)

// What decommission learns from the volume group, when it runs on a host
// that sees it: which LV's key tag (cryptvol_key_ID) names each key it
// found, which node made that volume (cryptvol_madeby_) and which host has
// it mounted (cryptvol_on_), read with the plugin's own settings
// (CRYPTVOL_VG, CRYPTVOL_SHARED) and `lvs` only: nothing in the group
// changes. In a shared group every host sees every volume, and a key in
// NODE's Object Group may open a volume another host uses: its LV says
// another node made it, or another host has it mounted. Destroying that
// key makes the volume unreadable on every host, so --yes refuses it
// unless --force-in-use.
// The tags are what hosts recorded, not locks (volume/shared.go): a host
// that died keeps its cryptvol_on_ record.

// vgFlags declares the volume group flags, defaulting to the plugin's
// variables.
func vgFlags(fs *flag.FlagSet, env Env) (vg *string, shared *bool) {
	vg = fs.String("vg", env.Getenv("CRYPTVOL_VG"), "volume `group` to read (lvs, read-only) for which volume each key opens and which host has it mounted; empty: not read (default $CRYPTVOL_VG)")
	shared = fs.Bool("shared", env.Getenv("CRYPTVOL_SHARED") == "true", "the group is a shared one, read through lvmlockd (default: $CRYPTVOL_SHARED is true)")
	return vg, shared
}

// vgRecords is what the group showed: the records of cryptvol LVs by the
// key id their tag names, or why there are none.
type vgRecords struct {
	vg    string
	err   error // the group was given but could not be read
	byKey map[string]volume.LVRecord
}

func readVG(ctx context.Context, deps decomDeps, vg string, shared bool) vgRecords {
	r := vgRecords{vg: vg}
	if vg == "" {
		return r
	}
	lvs, err := deps.lvs(ctx, vg, shared)
	if err != nil {
		r.err = err
		return r
	}
	r.byKey = map[string]volume.LVRecord{}
	for _, lv := range lvs {
		if rec, ok := volume.RecordOf(lv); ok && rec.KeyID != "" {
			r.byKey[rec.KeyID] = rec
		}
	}
	return r
}

// note says, for the output's head, what the group showed.
func (r vgRecords) note() string {
	switch {
	case r.vg == "":
		return "no volume group given (--vg, $CRYPTVOL_VG): which volume each key opens, and which host has it mounted, is not shown"
	case r.err != nil:
		return fmt.Sprintf("volume group %s could not be read, so which volume each key opens is not shown: %v", r.vg, r.err)
	}
	return fmt.Sprintf("volume group %s: %d cryptvol volumes name a key", r.vg, len(r.byKey))
}

// inUseElsewhere says why destroying key id would take a volume from a
// host other than node, or "" when nothing says so.
func (r vgRecords) inUseElsewhere(node, id string) string {
	if r.vg != "" && r.err != nil {
		return fmt.Sprintf("volume group %s could not be read, so whether another host uses this key's volume is unknown", r.vg)
	}
	rec, ok := r.byKey[id]
	if !ok {
		return ""
	}
	var why string
	if rec.MadeBy != "" && rec.MadeBy != node {
		why = fmt.Sprintf("volume %q was made by %s", rec.Volume, rec.MadeBy)
	}
	if rec.MountedOn != "" && rec.MountedOn != node {
		if why == "" {
			why = fmt.Sprintf("volume %q is mounted on %s", rec.Volume, rec.MountedOn)
		} else {
			why += fmt.Sprintf(" and is mounted on %s", rec.MountedOn)
		}
	}
	return why
}

// systemLVs lists the cryptvol LVs of vg with lvs.
func systemLVs(ctx context.Context, vg string, shared bool) ([]lvm.LV, error) {
	var opts []lvm.Option
	if shared {
		opts = append(opts, lvm.WithShared(0))
	}
	c, err := lvm.New(vg, opts...)
	if err != nil {
		return nil, err
	}
	return c.ListLVs(ctx, volume.TagOurs)
}
