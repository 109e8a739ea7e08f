package options

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/mount"
)

// RootSpec is the owner and mode a new volume's root directory gets
// (options uid, gid, mode): what an image's directory would otherwise have
// to give it, for a service that does not run as root.
type RootSpec struct {
	UID, GID int         // -1: root's default (0)
	Mode     os.FileMode // 0: the filesystem's default (0755)
}

// Asked says whether any of it was asked for.
func (r RootSpec) Asked() bool { return r.UID >= 0 || r.GID >= 0 || r.Mode != 0 }

// maxID is the largest uid or gid accepted: Linux's are 32-bit, and
// 4294967295 means "no change" to chown(2).
const maxID = 1<<31 - 1

// parseFSOptions reads mountopts, uid, gid and mode into o, whose FS is
// already set.
func parseFSOptions(opts map[string]string, o *Options) error {
	o.Root = RootSpec{UID: -1, GID: -1}
	o.Mkfs = mount.DefaultMkfs
	for _, f := range []struct {
		name string
		dst  *int
	}{{OptInodeRatio, &o.Mkfs.InodeRatio}, {OptReservedPercent, &o.Mkfs.ReservedPercent}, {OptInodeMaxPct, &o.Mkfs.InodeMaxPct}} {
		v, ok := opts[f.name]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("option %s=%q is not a whole number", f.name, truncate(v, 40))
		}
		*f.dst = n
	}
	if err := o.Mkfs.Validate(o.FS); err != nil {
		return fmt.Errorf("option %w", err)
	}
	if v, ok := opts[OptMountOpts]; ok {
		for _, m := range strings.Split(v, ",") {
			if m = strings.TrimSpace(m); m != "" {
				o.MountOpts = append(o.MountOpts, m)
			}
		}
		if err := mount.ValidateOptions(o.FS, o.MountOpts); err != nil {
			return fmt.Errorf("option mountopts: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{OptUID, &o.Root.UID}, {OptGID, &o.Root.GID}} {
		v, ok := opts[f.name]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxID {
			return fmt.Errorf("option %s=%q is not valid (allowed: a number from 0 to %d)", f.name, truncate(v, 40), maxID)
		}
		*f.dst = n
	}
	if v, ok := opts[OptDiscard]; ok {
		switch v {
		case "true":
			o.Discard = true
		case "false":
		default:
			return fmt.Errorf("option discard=%q is not valid (allowed: true, false)", truncate(v, 40))
		}
	}
	if v, ok := opts[OptIntegrity]; ok {
		if o.Discard {
			return fmt.Errorf("options integrity and discard=true cannot go together: dm-integrity takes no discards")
		}
		if v != luks.IntegrityHMACSHA256 {
			return fmt.Errorf("option integrity=%q is not supported (allowed: %s)", truncate(v, 40), luks.IntegrityHMACSHA256)
		}
		o.Integrity = v
	}
	if v, ok := opts[OptMode]; ok {
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n == 0 || n > 0o7777 || len(v) < 3 {
			return fmt.Errorf("option mode=%q is not valid (allowed: octal permissions such as 755, 0750 or 1777)", truncate(v, 40))
		}
		o.Root.Mode = os.FileMode(n&0o777) | modeBits(n)
	}
	return nil
}

// modeBits turns the octal set-id and sticky bits into Go's.
func modeBits(n uint64) os.FileMode {
	var m os.FileMode
	if n&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}
