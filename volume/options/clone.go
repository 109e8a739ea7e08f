package options

import "fmt"

// cloneRefuses are the options a clone cannot take: it is its source's
// filesystem, at its source's size, with its source's format.
var cloneRefuses = []string{OptSize, OptFS, OptIntegrity, OptDiscard, OptMountOpts, OptUID, OptGID, OptMode,
	OptInodeRatio, OptReservedPercent, OptInodeMaxPct, OptThin}

// parseClone reads from, reencrypt and readonly into o.
func parseClone(opts map[string]string, o *Options) error {
	from, ok := opts[OptFrom]
	if v, has := opts[OptReadOnly]; has {
		if !ok {
			return fmt.Errorf("option readonly is only for a snapshot of another volume (with from=SOURCE)")
		}
		switch v {
		case "true":
			o.ReadOnly = true
		case "false":
		default:
			return fmt.Errorf("option readonly=%q is not valid (allowed: true, false)", truncate(v, 40))
		}
	}
	if v, has := opts[OptReencrypt]; has {
		if !ok {
			return fmt.Errorf("option reencrypt is only for a clone (with from=SOURCE)")
		}
		switch v {
		case "true":
			o.Reencrypt = true
		case "false":
		default:
			return fmt.Errorf("option reencrypt=%q is not valid (allowed: true, false)", truncate(v, 40))
		}
	}
	if !ok {
		return nil
	}
	if err := ValidateName(from); err != nil {
		return fmt.Errorf("option from: %w", err)
	}
	for _, k := range cloneRefuses {
		if _, has := opts[k]; has {
			return fmt.Errorf("option %s cannot go with from: a clone has its source's size, filesystem and format (allowed with from: tenant, the source's own, reencrypt, readonly)", k)
		}
	}
	o.From = from
	return nil
}
