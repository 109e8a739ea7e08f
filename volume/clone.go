package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume/options"
)

// cloneSource checks the source of a clone, whose lock the caller holds:
// a complete thin volume with no rotation or reencryption under way.
func (m *Manager) cloneSource(ctx context.Context, name, from string) (lvm.LV, error) {
	src, err := m.completeLV(ctx, from)
	switch {
	case err != nil:
		return src, fmt.Errorf("volume %q: option from: %w", name, err)
	case src.Pool == "":
		return src, fmt.Errorf("volume %q: option from: %q is a thick volume; clones are thin snapshots, of thin volumes only", name, from)
	case len(m.st.Rotations(from)) > 0:
		return src, fmt.Errorf("volume %q: option from: %q has a key rotation under way; try again once it is settled", name, from)
	}
	return src, nil
}

// cloneTenant gives the clone o its source's (src) tenant. A clone starts with
// its source's volume key: under another identity, revoking the source
// tenant's keys would leave that tenant's data readable through the clone.
// So it is the source's tenant's, whatever snapshot or clone makes it, and
// another tenant is refused before anything is made.
func (m *Manager) cloneTenant(name string, src lvm.LV, o *options.Options) error {
	srcTenant := tenantOf(src)
	if o.TenantSet && o.Tenant != srcTenant {
		allowed := "leave tenant out"
		if srcTenant != "" {
			allowed += ", or tenant=" + srcTenant
		}
		return fmt.Errorf("volume %q: option tenant=%q: a clone belongs to its source's tenant, and %q has %s (allowed: %s); nothing was made",
			name, o.Tenant, o.From, tenantDesc(srcTenant), allowed)
	}
	o.Tenant = srcTenant
	if _, err := m.keysFor(o.Tenant); err != nil {
		return fmt.Errorf("volume %q: the tenant of %q: %w", name, o.From, err)
	}
	return nil
}

// cloneTags are the clone's LV tags: ours, with the source's filesystem
// and format, and the clone's own key and tenant.
func cloneTags(src lvm.LV, keyID, tenant string, readOnly bool) []string {
	tags := []string{TagOurs}
	for _, t := range src.Tags {
		for _, p := range []string{tagFSPrefix, tagMountOptsPrefix, tagIntegrityPrefix} {
			if strings.HasPrefix(t, p) {
				tags = append(tags, t)
			}
		}
		if t == tagDiscard {
			tags = append(tags, t)
		}
	}
	if keyIDTagRE.MatchString(keyID) {
		tags = append(tags, tagKeyPrefix+keyID)
	}
	if tenant != "" {
		tags = append(tags, tagTenantPrefix+tenant)
	}
	if readOnly {
		tags = append(tags, tagReadOnly)
	}
	return tags
}

// tagReadOnly marks a read-only snapshot (cryptvol snapshot, readonly=true):
// opened --readonly and mounted ro, so no container can change it.
const tagReadOnly = "cryptvol_readonly"

// snapshotSource takes the thin snapshot, the source's filesystem frozen
// for it when the source is mounted here, so that the clone holds every
// write that returned before. The freeze lasts one lvcreate.
func (m *Manager) snapshotSource(ctx context.Context, name string, src lvm.LV, tags []string, log logrus.FieldLogger) error {
	from, _ := volumeName(src)
	if ok, _, err := m.mountedHere(from); err != nil {
		return err
	} else if ok {
		target := m.mountpoint(from)
		if err := m.fs.Freeze(target); err != nil {
			return err
		}
		defer func() {
			if err := m.fs.Thaw(target); err != nil {
				log.WithError(err).Error("could not thaw the clone's source; its writers wait until it is thawed (fsfreeze -u)")
			}
		}()
	}
	if err := m.lvm.Snapshot(ctx, src.Name, lvName(name), tags); err != nil {
		return err
	}
	// A snapshot may carry the origin's tags too (lvcreate keeps some): the
	// clone has exactly its own.
	lv, err := m.lvm.LV(ctx, lvName(name))
	if err != nil {
		return err
	}
	var del, add []string
	for _, t := range lv.Tags {
		if !slices.Contains(tags, t) {
			del = append(del, t)
		}
	}
	for _, t := range tags {
		if !slices.Contains(lv.Tags, t) {
			add = append(add, t)
		}
	}
	return m.lvm.ReplaceTags(ctx, lvName(name), del, add)
}

// takeOverHeader makes the snapshot's header the clone's: a keyslot for
// the clone's key (the source's key on stdin beside it), the token naming
// the clone and its key, the source's keyslots killed. Until the token is
// replaced the header names the source, whose key is then never destroyed
// with the clone (header.keyIDs).
func (m *Manager) takeOverHeader(ctx context.Context, name, from string, src lvm.LV, dev, keyID string, key []byte) error {
	h, err := m.crypt.Inspect(ctx, dev)
	if err != nil {
		return err
	}
	srcKeyID, err := h.Check(from, tagValue(src.Tags, tagKeyPrefix))
	if err != nil {
		return fmt.Errorf("the source's header: %w", err)
	}
	if h.Reencrypting {
		return fmt.Errorf("%q has a reencryption under way; clone it once it is done", from)
	}
	srcKey, err := m.keyGet(ctx, from, tenantOf(src), srcKeyID)
	if err != nil {
		return err
	}
	defer srcKey.Wipe()
	return m.takeOver(ctx, dev, h, srcKey.Bytes(), keyID, key, name)
}

// makeClone makes the clone's LV: a thin snapshot of the source, whose
// header then becomes the clone's (takeOverHeader), and, with
// reencrypt=true, a volume key of its own (an offline reencryption). The
// LV is left active. The undo, for every step, is the create's: the LV
// removed and the clone's key destroyed; the source is never touched
// except for the moment its filesystem is frozen.
func (m *Manager) makeClone(ctx context.Context, rb *rollback, name string, o options.Options, src lvm.LV, keyID string, key []byte, log logrus.FieldLogger) error {
	rb.at("thin snapshot of " + o.From)
	rb.add("remove LV", func(ctx context.Context) error {
		if err := m.lvm.RemoveLV(ctx, lvName(name)); err != nil && !errors.Is(err, lvm.ErrNotFound) {
			return err
		}
		return nil
	})
	if err := m.snapshotSource(ctx, name, src, cloneTags(src, keyID, o.Tenant, o.ReadOnly), log); err != nil {
		return err
	}
	dev := m.devPath(lvm.LV{Name: lvName(name)})
	rb.at("a keyslot for the clone's key")
	if err := m.takeOverHeader(ctx, name, o.From, src, dev, keyID, key); err != nil {
		return err
	}
	if o.Reencrypt {
		rb.at("reencryption under a volume key of its own")
		if err := m.crypt.Reencrypt(ctx, dev, key, luks.ReencryptOptions{}); err != nil {
			return err
		}
	}
	if o.ReadOnly {
		return m.layoutWhileWritable(ctx, rb, name, src, dev, key)
	}
	return nil
}

// layoutWhileWritable gives a read-only snapshot its data directory
// (mount/layout.go) at its create, the one time it is writable: opened
// read-only, a snapshot of a source never mounted (no data directory yet)
// or of the older layout (files at the root) could not get one, and a
// container must never be given the root. Opened, mounted at its own
// mountpoint (xfs with nouuid: the source may be mounted), laid out,
// unmounted and closed; the create's undo covers a failure.
func (m *Manager) layoutWhileWritable(ctx context.Context, rb *rollback, name string, src lvm.LV, dev string, key []byte) error {
	rb.at("opening the snapshot to give it its data directory")
	opts := m.openOptions(src.Tags)
	opts.ReadOnly = false
	rb.add("close mapping", func(ctx context.Context) error { return m.closeUnheld(ctx, mappingName(name)) })
	if err := m.crypt.Open(ctx, dev, mappingName(name), key, opts); err != nil {
		return err
	}
	target := m.mountpoint(name)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	rb.add("unmount", func(ctx context.Context) error { return m.fs.Unmount(ctx, target) })
	fstype := tagValue(src.Tags, tagFSPrefix)
	var extra []string
	if fstype == options.FSXFS {
		extra = append(extra, mount.NoUUID)
	}
	if err := m.fs.Mount(ctx, mapperPath(name), target, fstype, extra...); err != nil {
		return err
	}
	if _, err := m.fs.Data(target, mapperPath(name), true); err != nil {
		return err
	}
	if err := m.fs.Unmount(ctx, target); err != nil {
		return err
	}
	if err := m.closeUnheld(ctx, mappingName(name)); err != nil {
		return err
	}
	_ = os.Remove(target)
	return nil
}

// lockBoth takes the locks of a clone and its source in name order, so
// that two creates that each clone the other's name cannot deadlock.
func (m *Manager) lockBoth(a, b string) (unlock func()) {
	if b == "" || a == b {
		return m.lock(a)
	}
	if b < a {
		a, b = b, a
	}
	ua := m.lock(a)
	ub := m.lock(b)
	return func() { ub(); ua() }
}

// cloneComplete says whether a clone's LV is finished: its header names
// the clone and its key alone opens it (one keyslot, the tag's key). A
// snapshot fresh from its source carries the source's tags, cryptvol_ready
// among them (lvm may copy them), so the tag alone proves nothing.
func (m *Manager) cloneComplete(ctx context.Context, name string, lv lvm.LV) bool {
	h, err := m.readHeader(ctx, name, &lv)
	if err != nil || !h.isLUKS || h.Token == nil {
		return false
	}
	return h.Token.Volume == name && h.Keyslots == 1 && h.Token.KeyID == tagValue(lv.Tags, tagKeyPrefix)
}
