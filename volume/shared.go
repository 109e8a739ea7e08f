package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/lvm"
)

// Shared mode (Config.Shared): the volume group is on devices every host of
// a cluster sees, locked through each host's lvmlockd (lvm/shared.go). What
// it changes here:
//
//   - LVM activates a volume's LV exclusively (lvchange -aey), so a volume
//     is decrypted and mounted on at most one host; a Mount elsewhere fails
//     with ErrInUseElsewhere, naming the host the LV's tags record.
//   - The host that mounts a volume records itself on the LV
//     (cryptvol_on_NODE) after activating it and takes the record away
//     after deactivating it, for inspect on every host. The record is
//     information, never a lock: a host that died keeps its record until
//     another host mounts the volume.
//   - What a host makes carries cryptvol_madeby_NODE. Reconciliation, a
//     Create of the name and a journal's undo touch a half-made volume only
//     when this host made it: another host's may be a create in progress.
//     Active volumes are only ever this host's (activation is per host), so
//     the rules about them stay as they are.
//   - The group is never created here and thin pools are not offered: LVM
//     activates a thin pool exclusively, so its thin volumes could be used
//     on one host only (cmd/cryptvol refuses the combination).
const (
	tagMadeByPrefix = "cryptvol_madeby_"
	tagOnPrefix     = "cryptvol_on_"
)

// ErrInUseElsewhere is returned (wrapped) by Mount, Remove and the admin
// operations when another host has the volume active.
var ErrInUseElsewhere = errors.New("in use on another host")

// StatusMountedOn names, in shared mode, the host that recorded itself as
// having the volume mounted ("" when none did).
const StatusMountedOn = "mounted_on"

// madeHere reports whether this host may treat lv as its own half-made
// volume: always outside shared mode.
func (m *Manager) madeHere(lv lvm.LV) bool {
	return !m.cfg.Shared || tagValue(lv.Tags, tagMadeByPrefix) == m.cfg.Node
}

// sharedCreateTags are the tags a new LV gets in shared mode.
func (m *Manager) sharedCreateTags() []string {
	if !m.cfg.Shared {
		return nil
	}
	return []string{tagMadeByPrefix + m.cfg.Node}
}

// elsewhere turns an activation refused for another host's lock into
// ErrInUseElsewhere, naming that host when the LV records it.
func (m *Manager) elsewhere(name string, lv lvm.LV, err error) error {
	if !errors.Is(err, lvm.ErrHeldElsewhere) {
		return err
	}
	if on := tagValue(lv.Tags, tagOnPrefix); on != "" && on != m.cfg.Node {
		return fmt.Errorf("volume %q is %w (mounted on %s): %w", name, ErrInUseElsewhere, on, err)
	}
	return fmt.Errorf("volume %q is %w: %w", name, ErrInUseElsewhere, err)
}

// halfMadeElsewhere refuses to touch a half-made LV another host made.
func (m *Manager) halfMadeElsewhere(name string, lv lvm.LV) error {
	if m.madeHere(lv) {
		return nil
	}
	by := tagValue(lv.Tags, tagMadeByPrefix)
	if by == "" {
		by = "a host that did not record itself"
	}
	return fmt.Errorf("volume %q is being created by %s (its LV is not complete yet); try again later, or remove it from there", name, by)
}

// recordMountedHere puts this host's record on a volume it has just
// activated, replacing any other host's (stale: the lock proves it).
func (m *Manager) recordMountedHere(ctx context.Context, name string, lv lvm.LV) error {
	if !m.cfg.Shared {
		return nil
	}
	var del []string
	for _, t := range lv.Tags {
		if strings.HasPrefix(t, tagOnPrefix) && t != tagOnPrefix+m.cfg.Node {
			del = append(del, t)
		}
	}
	var add []string
	if ours := tagOnPrefix + m.cfg.Node; !slices.Contains(lv.Tags, ours) {
		add = []string{ours}
	}
	if err := m.lvm.ReplaceTags(ctx, lvName(name), del, add); err != nil {
		return fmt.Errorf("recording this host on the LV: %w", err)
	}
	return nil
}

// clearMountedHere takes this host's record off a volume it has just
// deactivated. A failure is logged, not returned: the volume is down, and
// the record is only what inspect shows.
func (m *Manager) clearMountedHere(ctx context.Context, name string, log logrus.FieldLogger) {
	if !m.cfg.Shared {
		return
	}
	if err := m.lvm.ReplaceTags(ctx, lvName(name), []string{tagOnPrefix + m.cfg.Node}, nil); err != nil {
		log.WithError(err).Warn("could not take this host's mount record off the LV; inspect may name this host until the volume is mounted again")
	}
}
