package lvm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/cryptvol/cryptvol/internal/blockdev"
	"github.com/cryptvol/cryptvol/internal/command"
)

// ErrExists is returned (wrapped) when CreateLV finds the name taken.
var ErrExists = errors.New("already exists")

// Client runs lvm commands against one volume group.
type Client struct {
	vg           string
	exec         command.Exec
	shared       bool     // a shared group, locked through lvmlockd (shared.go)
	sharedConfig []string // lvm --config for every command of a shared group

	mu  sync.Mutex // guards pvs
	pvs []string   // the group's devices, learned by MetadataMark

	marks markReader // MetadataMark's reads (metadata.go)

	// parsed is the group's section of the metadata text as last parsed,
	// with its mark (currentGroup); guarded by mu.
	parsed *parsedGroup

	// Active's reads (active.go): "/" and "/sys"; tests use directories
	// and a fake stat.
	devRoot   string
	sysfs     string
	devNumber func(path string) (uint64, error)
}

// Option configures a Client.
type Option func(*Client)

// WithExec replaces the command runner (tests use a fake).
func WithExec(e command.Exec) Option { return func(c *Client) { c.exec = e } }

// New returns a Client for volume group vg. The name is validated here so
// that no command ever sees a bad one.
func New(vg string, opts ...Option) (*Client, error) {
	if err := ValidateVGName(vg); err != nil {
		return nil, err
	}
	c := &Client{vg: vg, exec: command.Runner(command.ProgramAndAction), devRoot: "/", sysfs: "/sys", devNumber: blockdev.Number}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

func (c *Client) run(ctx context.Context, args ...string) ([]byte, error) {
	if c.shared && len(args) > 0 {
		args = append(append([]string{args[0]}, c.sharedConfig...), args[1:]...)
	}
	return c.exec(ctx, nil, "lvm", args...)
}

func (c *Client) lvRef(name string) string { return c.vg + "/" + name }

// isNotFound recognises lvm's "no such LV/VG" failures. lvm exits 5
// (ECMD_FAILED) for these and for many real failures alike, so the message
// decides.
func isNotFound(err error) bool {
	var e *command.Error
	if !errors.As(err, &e) || e.ExitCode != 5 {
		return false
	}
	return strings.Contains(e.Stderr, "Failed to find logical volume") ||
		(strings.Contains(e.Stderr, "Volume group \"") && strings.Contains(e.Stderr, "\" not found"))
}

func isExists(err error) bool {
	var e *command.Error
	return errors.As(err, &e) && strings.Contains(e.Stderr, "already exists in volume group")
}

func (c *Client) lvs(ctx context.Context, selector string) ([]LV, error) {
	out, err := c.run(ctx, "lvs", "-o", lvFields, "--units", "b", "--nosuffix", "--reportformat", "json", selector)
	if err != nil {
		return nil, err
	}
	rows, err := parseReport[lvRow](out, "lv")
	if err != nil {
		return nil, err
	}
	lvs := make([]LV, 0, len(rows))
	for _, r := range rows {
		// A tag selector spans every VG on the host; keep ours only.
		if r.VG != c.vg {
			continue
		}
		lv, err := r.toLV()
		if err != nil {
			return nil, err
		}
		lvs = append(lvs, lv)
	}
	return lvs, nil
}

// VG reports the size and free space of the volume group. The same vgs
// names the group's devices (a row per physical volume), which MetadataMark
// needs: a start, which asks VG first, then runs no pvs of its own. Every
// lvm command reads the group's metadata, whatever it reports, so its cost
// grows with the number of volumes, and one fewer shortens the time from a
// restart to answering requests.
func (c *Client) VG(ctx context.Context) (VG, error) {
	out, err := c.run(ctx, "vgs", "-o", "vg_name,vg_size,vg_free,vg_extent_size,vg_uuid,vg_lock_type,pv_name", "--units", "b", "--nosuffix", "--reportformat", "json", c.vg)
	if err != nil {
		if isNotFound(err) {
			return VG{}, fmt.Errorf("volume group %s: %w: %w", c.vg, ErrNotFound, err)
		}
		return VG{}, fmt.Errorf("volume group %s: %w", c.vg, err)
	}
	rows, err := parseReport[struct {
		Name       string `json:"vg_name"`
		Size       string `json:"vg_size"`
		Free       string `json:"vg_free"`
		ExtentSize string `json:"vg_extent_size"`
		UUID       string `json:"vg_uuid"`
		LockType   string `json:"vg_lock_type"`
		PV         string `json:"pv_name"`
	}](out, "vg")
	if err != nil {
		return VG{}, err
	}
	if len(rows) == 0 {
		return VG{}, fmt.Errorf("volume group %s: vgs reported no group", c.vg)
	}
	var devs []string
	for _, r := range rows {
		if r.Name != c.vg || r.UUID != rows[0].UUID {
			return VG{}, fmt.Errorf("volume group %s: vgs reported another group (%s, %s)", c.vg, r.Name, r.UUID)
		}
		devs = append(devs, r.PV)
	}
	c.learnDevices(devs)
	r := rows[0]
	vg := VG{Name: r.Name, UUID: r.UUID, LockType: r.LockType}
	for _, f := range []struct {
		dst  *uint64
		name string
		val  string
	}{{&vg.Size, "vg_size", r.Size}, {&vg.Free, "vg_free", r.Free}, {&vg.ExtentSize, "vg_extent_size", r.ExtentSize}} {
		v, err := strconv.ParseUint(f.val, 10, 64)
		if err != nil {
			return VG{}, fmt.Errorf("volume group %s: bad %s %q: %w", c.vg, f.name, f.val, err)
		}
		*f.dst = v
	}
	return vg, nil
}

type poolRow struct {
	Name        string `json:"lv_name"`
	Size        string `json:"lv_size"`
	DataPercent string `json:"data_percent"`
	Segtype     string `json:"segtype"`
	Active      string `json:"lv_active"`
	MetaPercent string `json:"metadata_percent"`
}

func (c *Client) pool(ctx context.Context, pool string) (poolRow, error) {
	out, err := c.run(ctx, "lvs", "-o", "lv_name,lv_size,data_percent,segtype,lv_active,metadata_percent", "--units", "b", "--nosuffix", "--reportformat", "json", c.lvRef(pool))
	if err != nil {
		if isNotFound(err) {
			return poolRow{}, fmt.Errorf("thin pool %s: %w: %w", c.lvRef(pool), ErrNotFound, err)
		}
		return poolRow{}, fmt.Errorf("thin pool %s: %w", c.lvRef(pool), err)
	}
	rows, err := parseReport[poolRow](out, "lv")
	if err != nil {
		return poolRow{}, err
	}
	if len(rows) != 1 {
		return poolRow{}, fmt.Errorf("thin pool %s: lvs reported %d volumes", c.lvRef(pool), len(rows))
	}
	return rows[0], nil
}

// LV returns one logical volume of the group; a missing one wraps ErrNotFound.
func (c *Client) LV(ctx context.Context, name string) (LV, error) {
	if err := ValidateLVName(name); err != nil {
		return LV{}, err
	}
	lvs, err := c.lvs(ctx, c.lvRef(name))
	if err != nil {
		if isNotFound(err) {
			return LV{}, fmt.Errorf("logical volume %s: %w: %w", c.lvRef(name), ErrNotFound, err)
		}
		return LV{}, fmt.Errorf("logical volume %s: %w", c.lvRef(name), err)
	}
	if len(lvs) != 1 {
		return LV{}, fmt.Errorf("logical volume %s: lvs reported %d volumes", c.lvRef(name), len(lvs))
	}
	return lvs[0], nil
}

// ListLVs returns the group's LVs carrying tag, or all of them when tag is "".
func (c *Client) ListLVs(ctx context.Context, tag string) ([]LV, error) {
	selector := c.vg
	if tag != "" {
		if err := ValidateTag(tag); err != nil {
			return nil, err
		}
		selector = "@" + tag
	}
	lvs, err := c.lvs(ctx, selector)
	if err != nil {
		return nil, fmt.Errorf("list logical volumes of %s: %w", c.vg, err)
	}
	return lvs, nil
}

// CreateLV creates an active LV, thin when req.Pool is set, at
// /dev/VG/req.Name. Activation skip is cleared explicitly so that a later
// plain `lvchange -ay` activates it. It lists nothing afterwards: the caller
// knows the name, tags and pool, and one lvm start fewer per create counts;
// LV reports the rest (rounded size, UUID).
func (c *Client) CreateLV(ctx context.Context, req CreateRequest) error {
	if err := ValidateLVName(req.Name); err != nil {
		return err
	}
	if req.Size == 0 {
		return fmt.Errorf("create logical volume %s: size must be greater than 0", c.lvRef(req.Name))
	}
	if req.Pool != "" {
		if err := ValidateLVName(req.Pool); err != nil {
			return fmt.Errorf("thin pool: %w", err)
		}
	}
	var tagArgs []string
	for _, t := range req.Tags {
		if err := ValidateTag(t); err != nil {
			return err
		}
		tagArgs = append(tagArgs, "--addtag", t)
	}
	size := strconv.FormatUint(req.Size, 10) + "b"
	var args []string
	if req.Pool == "" {
		args = []string{"lvcreate", "-n", req.Name, "-L", size}
	} else {
		args = []string{"lvcreate", "-T", c.lvRef(req.Pool), "-V", size, "-n", req.Name}
	}
	args = append(args, "--activate", "y", "--setactivationskip", "n")
	args = append(args, tagArgs...)
	args = append(args, "-y", "--wipesignatures", "y")
	if req.Pool == "" {
		args = append(args, c.vg)
	}
	if _, err := c.run(ctx, args...); err != nil {
		if isExists(err) {
			return fmt.Errorf("create logical volume %s: %w: %w", c.lvRef(req.Name), ErrExists, err)
		}
		return fmt.Errorf("create logical volume %s: %w", c.lvRef(req.Name), err)
	}
	return nil
}

func (c *Client) lvchange(ctx context.Context, op, name string, args ...string) error {
	if err := ValidateLVName(name); err != nil {
		return err
	}
	if _, err := c.run(ctx, append(append([]string{"lvchange"}, args...), c.lvRef(name))...); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("%s logical volume %s: %w: %w", op, c.lvRef(name), ErrNotFound, err)
		}
		if lf := lockFailure(err); lf != nil {
			return fmt.Errorf("%s logical volume %s: %w: %w", op, c.lvRef(name), lf, err)
		}
		return fmt.Errorf("%s logical volume %s: %w", op, c.lvRef(name), err)
	}
	return nil
}

// Activate activates the LV, creating its /dev node; in a shared group
// exclusively, failing with ErrHeldElsewhere while another host has it
// active.
func (c *Client) Activate(ctx context.Context, name string) error {
	if c.shared {
		return c.lvchange(ctx, "activate", name, "-aey")
	}
	return c.lvchange(ctx, "activate", name, "-ay")
}

// Deactivate deactivates the LV so that nothing can reach its blocks.
func (c *Client) Deactivate(ctx context.Context, name string) error {
	return c.lvchange(ctx, "deactivate", name, "-an")
}

// DeactivateAndTag deactivates the LV and adds tag in one lvchange: one
// program and one metadata commit where Deactivate and AddTag make two (the
// last step of a create; lab: `lvchange -an --addtag` leaves the LV tagged
// and inactive, the group's seqno one higher). When it fails, the tag may
// be committed already: callers treat the LV as possibly tagged.
func (c *Client) DeactivateAndTag(ctx context.Context, name, tag string) error {
	if err := ValidateTag(tag); err != nil {
		return err
	}
	return c.lvchange(ctx, "deactivate and tag", name, "-an", "--addtag", tag)
}

// AddTag adds tag to the LV.
func (c *Client) AddTag(ctx context.Context, name, tag string) error {
	if err := ValidateTag(tag); err != nil {
		return err
	}
	return c.lvchange(ctx, "tag", name, "--addtag", tag)
}

// ReplaceTags deletes the tags del and adds the tags add in one lvchange,
// so one metadata commit: the LV never shows the old key id tag and the new
// one together, or neither (a key rotation). The caller passes only tags
// present (del) and absent (add) (lvchange(8) --deltag, --addtag); with
// none, nothing runs.
func (c *Client) ReplaceTags(ctx context.Context, name string, del, add []string) error {
	args, err := tagArgs(del, add)
	if err != nil || len(args) == 0 {
		return err
	}
	return c.lvchange(ctx, "tag", name, args...)
}

// RemoveLV removes the LV (deactivating it first if needed); a missing one
// wraps ErrNotFound.
func (c *Client) RemoveLV(ctx context.Context, name string) error {
	if err := ValidateLVName(name); err != nil {
		return err
	}
	if _, err := c.run(ctx, "lvremove", "-y", c.lvRef(name)); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("remove logical volume %s: %w: %w", c.lvRef(name), ErrNotFound, err)
		}
		return fmt.Errorf("remove logical volume %s: %w", c.lvRef(name), err)
	}
	return nil
}

// tagArgs are the --deltag and --addtag arguments of lvchange and vgchange
// for the tags del and add, each validated first.
func tagArgs(del, add []string) ([]string, error) {
	var args []string
	for _, t := range del {
		if err := ValidateTag(t); err != nil {
			return nil, err
		}
		args = append(args, "--deltag", t)
	}
	for _, t := range add {
		if err := ValidateTag(t); err != nil {
			return nil, err
		}
		args = append(args, "--addtag", t)
	}
	return args, nil
}
