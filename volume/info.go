package volume

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
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
	// StatusPending says why a volume no container holds is still up
	// (the kernel still holds it, or its teardown failed and is retried).
	StatusPending = "pending"
)

// List returns every complete volume. LVM is the source of truth: a volume
// exists exactly when an LV tagged TagOurs and TagReady does.
func (m *Manager) List(ctx context.Context) ([]Volume, error) {
	lvs, err := m.lvm.ListLVs(ctx, TagOurs)
	if err != nil {
		return nil, fmt.Errorf("listing volumes: %w", err)
	}
	vols := make([]Volume, 0, len(lvs))
	for _, lv := range lvs {
		name, ok := volumeName(lv)
		if !ok || !slices.Contains(lv.Tags, TagReady) {
			continue
		}
		v, err := m.describe(name, lv)
		if err != nil {
			return nil, err
		}
		vols = append(vols, v)
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].Name < vols[j].Name })
	return vols, nil
}

// Get returns one volume, or an error wrapping ErrNotFound.
func (m *Manager) Get(ctx context.Context, name string) (Volume, error) {
	if err := ValidateName(name); err != nil {
		return Volume{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	lv, err := m.ourLV(ctx, name)
	if err != nil {
		return Volume{}, err
	}
	return m.describe(name, lv)
}

// Path returns the mountpoint while the volume is verified mounted, else "".
func (m *Manager) Path(ctx context.Context, name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	ok, _, err := m.mountedHere(name)
	if err != nil {
		return "", err
	}
	if ok {
		return m.mountpoint(name), nil
	}
	if _, err := m.ourLV(ctx, name); err != nil {
		return "", err
	}
	return "", nil
}

func (m *Manager) describe(name string, lv lvm.LV) (Volume, error) {
	// Only an active LV can be mounted; skipping the others keeps List
	// cheap with many volumes.
	mounted := false
	if lv.Active {
		var err error
		if mounted, _, err = m.mountedHere(name); err != nil {
			return Volume{}, err
		}
	}
	v := Volume{
		Name:      name,
		CreatedAt: lv.Created,
		Status: map[string]any{
			StatusSize:       FormatSize(lv.Size),
			StatusSizeBytes:  strconv.FormatUint(lv.Size, 10),
			StatusFS:         tagValue(lv.Tags, tagFSPrefix),
			StatusCipher:     luks.Cipher,
			StatusProvision:  "thick",
			StatusMounted:    mounted,
			StatusMountCount: len(m.st.ids(name)),
			StatusLV:         m.cfg.VG + "/" + lv.Name,
		},
	}
	if lv.Pool != "" {
		v.Status[StatusProvision] = "thin"
		v.Status[StatusThinPool] = lv.Pool
	}
	if id := tagValue(lv.Tags, tagKeyPrefix); id != "" {
		v.Status[StatusKeyID] = id
	} else {
		v.Status[StatusKeyID] = "(recorded in the LUKS2 token only)"
	}
	if mounted {
		v.Mountpoint = m.mountpoint(name)
	}
	if why := m.sw.pending(name); why != nil {
		v.Status[StatusPending] = "closing when nothing holds it: " + why.Error()
	}
	return v, nil
}
