package volume

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/options"
)

// Volume is what Get and List report. Status never holds key material.
type Volume struct {
	Name       string
	Mountpoint string // set only while the decrypted filesystem is verified mounted
	CreatedAt  time.Time
	Status     map[string]any
}

// Status keys, as shown by `docker volume inspect`.
const (
	StatusSize = "size"
	// StatusSizeBytes is a decimal string: docker decodes Status numbers
	// as float64, which `docker volume inspect --format` prints as
	// 1.073741824e+09 and which cannot hold every size exactly.
	StatusSizeBytes  = "size_bytes"
	StatusFS         = "fs"
	StatusCipher     = "cipher"
	StatusProvision  = "provisioning" // "thin" or "thick"
	StatusThinPool   = "thin_pool"
	StatusKeyID      = "kmip_key_id"
	StatusMounted    = "mounted"
	StatusMountCount = "mount_count"
	StatusLV         = "lv"
	StatusTenant     = "tenant" // only for a volume made with option tenant
	StatusPoolUse    = "thin_pool_use"
	// StatusPending says why a volume no container holds is still up
	// (the kernel still holds it, or its teardown failed and is retried).
	StatusPending = "pending"
	// StatusPropagation says, only while it is so, that the plugin's
	// propagated mount is not shared with the host (propagation.go).
	StatusPropagation = "propagation"
	// StatusKeySince is when the volume got its current KMIP key (RFC
	// 3339), and StatusKeyFrom how: "create" or "rotation" (schedule.go).
	StatusKeySince = "key_since"
	StatusKeyFrom  = "key_from"
	// StatusIntegrity is the dm-integrity algorithm of a volume made with
	// option integrity (fsoptions.go).
	StatusIntegrity = "integrity"
)

// Counts returns how many complete volumes there are and how many of them
// are mounted for containers, as List sees them (the metrics' gauges).
func (m *Manager) Counts(ctx context.Context) (total, mounted int, err error) {
	lvs, err := m.viewVolumes(ctx)
	if err != nil {
		return 0, 0, err
	}
	mounts, err := m.fs.MountedUnder(m.cfg.MountRoot)
	if err != nil {
		return 0, 0, fmt.Errorf("reading mounts: %w", err)
	}
	for name := range lvs {
		if mounts[name] == mapperPath(name) {
			mounted++
		}
	}
	return len(lvs), mounted, nil
}

// List returns every complete volume. LVM is the source of truth: a volume
// exists exactly when an LV tagged TagOurs and TagReady does. It is read
// through the view (lvview.go), and the mounts from one read of the table.
func (m *Manager) List(ctx context.Context) ([]Volume, error) {
	lvs, err := m.viewVolumes(ctx)
	if err != nil {
		return nil, err
	}
	mounts, err := m.fs.MountedUnder(m.cfg.MountRoot)
	if err != nil {
		return nil, fmt.Errorf("listing volumes: reading mounts: %w", err)
	}
	vols := make([]Volume, 0, len(lvs))
	for name, lv := range lvs {
		vols = append(vols, m.describe(name, lv, mounts[name] == mapperPath(name)))
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].Name < vols[j].Name })
	return vols, nil
}

// Get returns one volume, or an error wrapping ErrNotFound.
func (m *Manager) Get(ctx context.Context, name string) (Volume, error) {
	if err := options.ValidateName(name); err != nil {
		return Volume{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	lv, err := m.viewVolume(ctx, name)
	if err != nil {
		return Volume{}, err
	}
	mounted, _, err := m.mountedHere(name)
	if err != nil {
		return Volume{}, err
	}
	return m.describe(name, lv, mounted), nil
}

// Path returns the data directory while the volume is verified mounted,
// else "".
func (m *Manager) Path(ctx context.Context, name string) (string, error) {
	if err := options.ValidateName(name); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	ok, _, err := m.mountedHere(name)
	if err != nil {
		return "", err
	}
	if ok {
		return m.dataPath(name), nil
	}
	if _, err := m.viewVolume(ctx, name); err != nil {
		return "", err
	}
	return "", nil
}

// describe reports a volume; mounted is whether the kernel's table shows its
// mapping at its mountpoint, and then Mountpoint is its data directory if
// that is one of the filesystem's own (dataPath).
func (m *Manager) describe(name string, lv lvm.LV, mounted bool) Volume {
	v := Volume{
		Name:      name,
		CreatedAt: lv.Created,
		Status: map[string]any{
			StatusSize:       options.FormatSize(lv.Size),
			StatusSizeBytes:  strconv.FormatUint(lv.Size, 10),
			StatusFS:         tagValue(lv.Tags, tagFSPrefix),
			StatusCipher:     luks.Cipher,
			StatusProvision:  "thick",
			StatusMounted:    mounted,
			StatusMountCount: len(m.st.IDs(name)),
			StatusLV:         m.cfg.VG + "/" + lv.Name,
		},
	}
	if lv.Pool != "" {
		v.Status[StatusProvision] = "thin"
		v.Status[StatusThinPool] = lv.Pool
		if use := m.poolUse(); use != "" {
			v.Status[StatusPoolUse] = use
		}
	}
	if t := tenantOf(lv); t != "" {
		v.Status[StatusTenant] = t
	}
	if m.cfg.Shared {
		// As the LV last recorded it (shared.go): a host that died holding
		// the volume is named until another mounts it.
		v.Status[StatusMountedOn] = tagValue(lv.Tags, tagOnPrefix)
	}
	since, rotated := keySince(lv)
	v.Status[StatusKeySince], v.Status[StatusKeyFrom] = since.UTC().Format(time.RFC3339), "create"
	if rotated {
		v.Status[StatusKeyFrom] = "rotation"
	}
	if alg := tagValue(lv.Tags, tagIntegrityPrefix); alg != "" {
		v.Status[StatusIntegrity] = alg
	}
	if id := tagValue(lv.Tags, tagKeyPrefix); id != "" {
		v.Status[StatusKeyID] = id
	} else {
		v.Status[StatusKeyID] = "(recorded in the LUKS2 token only)"
	}
	if mounted {
		v.Mountpoint = m.dataPath(name)
	}
	if u, ok := m.usageOf(name, mounted); ok {
		addUsage(v.Status, u)
	}
	if why := m.sw.pending(name); why != nil {
		v.Status[StatusPending] = "closing when nothing holds it: " + why.Error()
	}
	if broken := m.prop.Load(); broken != nil {
		v.Status[StatusPropagation] = *broken
	}
	return v
}
