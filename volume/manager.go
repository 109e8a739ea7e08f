package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/volume/internal/journal"
	"github.com/cryptvol/cryptvol/volume/options"
)

// Names and tags that tie a docker volume to its LVM, dm-crypt and KMIP
// objects. They are derived from the volume name alone, so every object can
// be found again after a crash without any database.
const (
	lvPrefix      = "cv-"
	mappingPrefix = "cryptvol-"

	// TagOurs marks an LV as a cryptvol volume.
	TagOurs = "cryptvol"
	// TagReady is added as the last step of Create. An LV without it is a
	// half-made volume from an interrupted create and is undone.
	TagReady     = "cryptvol_ready"
	tagFSPrefix  = "cryptvol_fs_"
	tagKeyPrefix = "cryptvol_key_"
	// tagTenantPrefix names the tenant whose KMIP identity holds the key
	// (option tenant); no such tag: the plugin's own identity.
	tagTenantPrefix = "cryptvol_tenant_"
	// tagKeyTimePrefix records when a rotation gave the volume its key
	// (Unix seconds); without it the key is as old as the LV.
	tagKeyTimePrefix = "cryptvol_keytime_"
)

// ErrNotFound is returned (wrapped, with the volume name) for a volume that
// does not exist. Its text is what docker expects from a volume driver.
var ErrNotFound = errors.New("no such volume")

// ErrInUse is returned (wrapped) by Remove while containers hold the volume.
var ErrInUse = errors.New("volume is in use")

// Config is the lifecycle's configuration.
type Config struct {
	VG          string // volume group holding every volume
	DefaultFS   string // options.FSExt4 or options.FSXFS
	ThinPool    string // thin pool LV in VG; "" means volumes are thick
	MountRoot   string // volumes are mounted at MountRoot/<name>
	StateDir    string // holds StateFile
	DefaultSize uint64 // bytes
	NoWorkqueue bool   // open with --perf-no_read_workqueue --perf-no_write_workqueue
	// MaxCreates is how many creates and removes run their programs at
	// once; the others wait their turn (see takeTurn). 0 means
	// DefaultMaxCreates. (Named when it bounded creates alone.)
	MaxCreates int
	// BootIDFile tells a reboot from a plugin restart. Default
	// /proc/sys/kernel/random/boot_id.
	BootIDFile string
	// SweepInterval is how often Run retries lingering teardowns and
	// unfinished removes and probes volumes whose mount IDs are all
	// suspect (sweep.go). 0 means DefaultSweepInterval.
	SweepInterval time.Duration
	// Audit, when set, takes one event per key operation and per Docker
	// call that changes a volume, and every repair (audit.go).
	Audit Auditor
	// TenantKeys returns the key manager of a tenant's own KMIP identity
	// (option tenant=NAME); nil means no tenant is known and the option
	// is refused. Implemented by (*keys.Tenants).For.
	TenantKeys func(tenant string) (Keys, error)
	// RotateAfter, when set, has Run rotate every volume whose key is
	// older (schedule.go), checked every RotateCheck (0: DefaultRotateCheck).
	RotateAfter time.Duration
	RotateCheck time.Duration
	// ThinMaxFill refuses thin creates once the pool's data or metadata
	// is this many percent used (0: DefaultThinMaxFill; 100: never);
	// ThinMaxOvercommit, when set, refuses a thin create that would take
	// the pool's thin volumes past this many times its size (pool.go).
	ThinMaxFill       float64
	ThinMaxOvercommit float64
	// RemoveGrace, when set, has Remove move a complete volume to the
	// trash (trash.go), restorable until this long after its remove, and
	// then purged by the sweeper; 0 destroys it at once.
	RemoveGrace time.Duration
	// Shared: VG is a shared group on devices other hosts use too, through
	// lvmlockd (shared.go); Node is this host's name in the tags that
	// record what it made and has mounted (CRYPTVOL_NODE, tag-safe).
	Shared bool
	Node   string
}

// DefaultSweepInterval: a volume whose containers died with dockerd, or
// whose restart-policy container stopped after reusing its saved mount ID,
// is closed within about one interval of nothing holding it (sweep.go).
const DefaultSweepInterval = 15 * time.Second

// DefaultMaxCreates: creates and removes are chains of programs (lvcreate,
// luksFormat, mkfs; luksErase, lvremove) and KMIP round trips on one
// connection; a few at once keep the CPUs and disks busy without starving
// each other.
const DefaultMaxCreates = 4

// StateFile is the name of the state file inside Config.StateDir, in the
// format of volume/internal/journal.
const StateFile = "mounts.json"

// StateVersion is the newest state file format this plugin reads and the
// one it writes (`cryptvol version` prints it; volume/internal/journal
// owns the formats).
const StateVersion = journal.Version

// NewerStateError is a state file of a format newer than StateVersion,
// written by a later build: New and CheckStateFormat return it, and the
// plugin refuses to start on it rather than retrying (cmd/cryptvol).
type NewerStateError = journal.NewerError

// CheckStateFormat returns a *NewerStateError when stateDir's state file
// has a format newer than StateVersion, and nil otherwise. It reads that
// file alone and writes nothing, so start-up asks it before anything that
// writes (the audit trail, the volume group).
func CheckStateFormat(stateDir string) error {
	return journal.CheckFormat(filepath.Join(stateDir, StateFile))
}

// DefaultBootIDFile is the kernel's per-boot random id.
const DefaultBootIDFile = "/proc/sys/kernel/random/boot_id"

// Manager runs the volume lifecycle. Its methods are safe for concurrent
// use: operations on one volume are serialized, different volumes proceed
// in parallel.
type Manager struct {
	cfg   Config
	lvm   LVM
	crypt Crypt
	fs    Filesystems
	keys  Keys
	log   logrus.FieldLogger
	st    *journal.Store

	mu    sync.Mutex // guards locks only; never held across a command
	locks map[string]*volumeLock

	turns chan struct{} // one token per create or remove at work; capacity MaxCreates
	sw    *sweeper
	view  lvView // Get, Path and List answer from it (lvview.go)
	now   func() time.Time
	pool  poolSeen // the thin pool's use as last read (pool.go)
	vgid  vgID     // the volume group's UUID, once read (binding.go)
	// prop is why the propagated mount is broken, as last read, or nil
	// (propagation.go).
	prop atomic.Pointer[string]
	// trashRead: a sweep has read the trash (trash.go, sweepTrash).
	trashRead atomic.Bool
}

// volumeLock serializes operations on one volume. refs counts holders and
// waiters so the entry can be dropped when nobody needs it.
type volumeLock struct {
	mu   sync.Mutex
	refs int
}

// New validates cfg, creates MountRoot and StateDir, and loads the state
// file. Mount IDs recorded under an earlier boot are discarded (and logged).
// Call Reconcile before serving requests.
func New(cfg Config, l LVM, c Crypt, f Filesystems, k Keys, log logrus.FieldLogger) (*Manager, error) {
	if l == nil || c == nil || f == nil || k == nil {
		return nil, errors.New("volume.New: LVM, Crypt, Filesystems and Keys are all required")
	}
	if log == nil {
		log = logrus.StandardLogger()
	}
	if cfg.VG == "" {
		return nil, errors.New("volume.New: Config.VG is empty")
	}
	if cfg.DefaultFS == "" {
		cfg.DefaultFS = options.FSExt4
	}
	if options.MinSize(cfg.DefaultFS) == 0 {
		return nil, fmt.Errorf("volume.New: default filesystem %q is not supported (allowed: %s, %s)", cfg.DefaultFS, options.FSExt4, options.FSXFS)
	}
	if cfg.DefaultSize < options.MinSize(cfg.DefaultFS) {
		return nil, fmt.Errorf("volume.New: default size %s is below the %s minimum of %s", options.FormatSize(cfg.DefaultSize), cfg.DefaultFS, options.FormatSize(options.MinSize(cfg.DefaultFS)))
	}
	if cfg.ThinPool != "" {
		if err := options.ValidateName(cfg.ThinPool); err != nil {
			return nil, fmt.Errorf("volume.New: thin pool name: %w", err)
		}
	}
	if !filepath.IsAbs(cfg.MountRoot) || !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("volume.New: MountRoot %q and StateDir %q must be absolute paths", cfg.MountRoot, cfg.StateDir)
	}
	if cfg.BootIDFile == "" {
		cfg.BootIDFile = DefaultBootIDFile
	}
	if cfg.MaxCreates == 0 {
		cfg.MaxCreates = DefaultMaxCreates
	}
	if cfg.ThinMaxFill == 0 {
		cfg.ThinMaxFill = DefaultThinMaxFill
	}
	if cfg.ThinMaxFill < 0 || cfg.ThinMaxFill > 100 || cfg.ThinMaxOvercommit < 0 {
		return nil, fmt.Errorf("volume.New: thin pool limits: fill %v%% (allowed 0-100), over-commit %v (allowed 0 or more)", cfg.ThinMaxFill, cfg.ThinMaxOvercommit)
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.MaxCreates < 1 {
		return nil, fmt.Errorf("volume.New: MaxCreates %d is not positive", cfg.MaxCreates)
	}
	cfg.MountRoot = filepath.Clean(cfg.MountRoot)
	if err := os.MkdirAll(cfg.MountRoot, 0o755); err != nil {
		return nil, fmt.Errorf("creating mount root: %w", err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	boot, err := journal.ReadBootID(cfg.BootIDFile)
	if err != nil {
		return nil, err
	}
	st, dropped, err := journal.Load(filepath.Join(cfg.StateDir, StateFile), boot)
	if err != nil {
		return nil, err
	}
	for name, ids := range dropped {
		log.WithFields(logrus.Fields{"volume": name, "op": "reconcile", "mount_ids": len(ids)}).
			Info("discarding mount IDs recorded before the last reboot")
	}
	return &Manager{
		cfg: cfg, lvm: l, crypt: c, fs: f, keys: k, log: log, st: st,
		locks: map[string]*volumeLock{},
		turns: make(chan struct{}, cfg.MaxCreates),
		sw:    newSweeper(cfg.SweepInterval),
		now:   time.Now,
	}, nil
}

// lock takes the volume's lock and returns its release.
func (m *Manager) lock(name string) (unlock func()) {
	m.mu.Lock()
	l := m.locks[name]
	if l == nil {
		l = &volumeLock{}
		m.locks[name] = l
	}
	l.refs++
	m.mu.Unlock()

	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		m.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(m.locks, name)
		}
		m.mu.Unlock()
	}
}

func (m *Manager) defaults() options.Defaults {
	return options.Defaults{Size: m.cfg.DefaultSize, FS: m.cfg.DefaultFS, ThinPool: m.cfg.ThinPool}
}

func (m *Manager) logFor(name, op string) logrus.FieldLogger {
	return m.log.WithFields(logrus.Fields{"volume": name, "op": op})
}

func lvName(name string) string                  { return lvPrefix + name }
func mappingName(name string) string             { return mappingPrefix + name }
func mapperPath(name string) string              { return "/dev/mapper/" + mappingName(name) }
func (m *Manager) mountpoint(name string) string { return filepath.Join(m.cfg.MountRoot, name) }

func (m *Manager) devPath(lv lvm.LV) string {
	if lv.Path != "" {
		return lv.Path
	}
	return "/dev/" + m.cfg.VG + "/" + lv.Name
}

func tagValue(tags []string, prefix string) string {
	for _, t := range tags {
		if v, ok := strings.CutPrefix(t, prefix); ok {
			return v
		}
	}
	return ""
}

// volumeName returns the docker volume name of one of our LVs, or false for
// an LV that merely carries our tag without our naming.
func volumeName(lv lvm.LV) (string, bool) {
	name, ok := strings.CutPrefix(lv.Name, lvPrefix)
	if !ok || options.ValidateName(name) != nil {
		return "", false
	}
	return name, true
}

// mountedHere reports whether target is the volume's decrypted filesystem.
// other is what is mounted there instead ("" if nothing).
func (m *Manager) mountedHere(name string) (ok bool, other string, err error) {
	src, err := m.fs.MountedDevice(m.mountpoint(name))
	if err != nil {
		return false, "", fmt.Errorf("volume %q: reading mounts: %w", name, err)
	}
	if src == "" {
		return false, "", nil
	}
	if src == mapperPath(name) {
		return true, "", nil
	}
	return false, src, nil
}

// keepsActive says whether a volume's LV stays active between uses. On a
// single host it does: an active LV with its mapping closed shows only
// ciphertext, as the group's devices do anyway, and LVM leaves LVs active
// (and activates them at boot) unless told otherwise; deactivating at each
// last unmount and activating at each first mount would cost two lvm
// programs per `docker run`, about half of what it pays the plugin. In a
// shared group the activation is the LV's lvmlockd lock, held only while
// this host uses the volume so that another host can take it.
func (m *Manager) keepsActive() bool { return !m.cfg.Shared }

// teardown unmounts and closes a volume, and in a shared group deactivates
// it, whatever of that is still up, and removes the empty mountpoint. Each
// step is a no-op when already done, so it is safe to retry after a crash
// at any point.
func (m *Manager) teardown(ctx context.Context, name string, log logrus.FieldLogger) error {
	if err := m.teardownMounted(ctx, name, false, log); err != nil {
		return err
	}
	if !m.keepsActive() {
		if err := m.lvm.Deactivate(ctx, lvName(name)); err != nil && !errors.Is(err, lvm.ErrNotFound) {
			return fmt.Errorf("deactivating LV %s: %w", lvName(name), err)
		}
	}
	m.clearMountedHere(ctx, name, log)
	removeMountpoint(m.mountpoint(name), log)
	return nil
}

// teardownMounted unmounts and closes whatever is up, without touching LV
// activation (destroy needs the LV active). repair: nothing should be up
// (Remove of a volume no container holds), so an unmount is a repair of
// what a crash left and is logged as one.
func (m *Manager) teardownMounted(ctx context.Context, name string, repair bool, log logrus.FieldLogger) error {
	target := m.mountpoint(name)
	src, err := m.fs.MountedDevice(target)
	if err != nil {
		return fmt.Errorf("reading mounts: %w", err)
	}
	if src != "" {
		if err := m.fs.Unmount(ctx, target); err != nil {
			return fmt.Errorf("unmounting %s: %w", target, err)
		}
		if repair {
			log.WithField("target", target).Info("unmounted a mount no container holds")
		} else {
			log.WithField("target", target).Debug("unmounted")
		}
	}
	// IsOpen reads sysfs, no program: a volume that is not open (every
	// remove of a volume no container uses) costs no cryptsetup close.
	open, err := m.crypt.IsOpen(ctx, mappingName(name))
	if err != nil {
		return err
	}
	if !open {
		return nil
	}
	closeFn := m.crypt.Close
	if repair {
		// Nothing should hold it (a Remove): a busy answer is an lvm
		// scan's moment (close.go).
		closeFn = m.closeUnheld
	}
	if err := closeFn(ctx, mappingName(name)); err != nil {
		return fmt.Errorf("closing mapping %s: %w", mappingName(name), err)
	}
	return nil
}

// removeMountpoint removes the (empty) mountpoint directory. os.Remove never
// removes a non-empty directory; a non-empty one would mean data was written
// to the host disk, so it is left for an administrator and logged.
func removeMountpoint(target string, log logrus.FieldLogger) {
	err := os.Remove(target)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return
	}
	log.WithError(err).WithField("target", target).Warn("mountpoint directory not removed")
}
