package volume

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
	"github.com/cryptvol/cryptvol/mount"
	"github.com/cryptvol/cryptvol/volume/options"
)

// world is an in-memory model of one host: a volume group, LUKS headers,
// dm-crypt mappings, mounts and a KMIP server. The four fakes below are
// views of it, so that a step of one (open) depends on the state left by
// another (activate), as on a real host.
type world struct {
	t  testing.TB
	mu sync.Mutex

	vg       lvm.VG
	poolFree uint64
	poolMeta float64                // metadata percent used
	lvs      map[string]*lvm.LV     // by LV name
	headers  map[string]*fakeHeader // by LV name
	fsMade   map[string]string      // LV name -> filesystem made through its mapping
	fsSize   map[string]uint64      // LV name -> bytes its filesystem spans
	fsUsed   map[string]uint64      // LV name -> bytes its filesystem has in use
	fsUUID   map[string]string      // LV name -> its filesystem's UUID (a snapshot's is its origin's)
	contents map[string]string      // LV name -> what a test wrote into its filesystem (carried by snapshots and exports)
	mapSize  map[string]uint64      // mapping name -> bytes it maps
	mappings map[string]string      // mapping name -> LV name
	openOpts map[string]luks.OpenOptions
	mounts   map[string]string // target -> source
	mountOpt map[string]string // target -> extra options it was mounted with
	frozen   map[string]bool   // targets frozen now
	froze    []string          // every Freeze, in order
	// tableChanged is signalled on each change of mounts, as the kernel
	// reports a change of /proc/self/mountinfo to a poll (WatchMounts).
	tableChanged chan struct{}
	// holders counts mounts of a mapping outside the plugin's mount
	// namespace (containers' bind mounts): they keep the filesystem, and
	// so the mapping, busy after the plugin's own mount is gone.
	holders map[string]int
	// layout: LV name -> its filesystem has the data directory
	// (mount/layout.go); oldLayout marks one made by a cryptvol that
	// handed out the root.
	layout    map[string]bool
	oldLayout map[string]bool
	// propagation is the optional fields of MountRoot's mount ("": MountRoot
	// is not a mount point).
	propagation string
	migrated    []string // LVs whose older layout Data moved, in order
	nextUUID    int
	keys        map[string]*fakeKey
	nextKey     int
	handed      [][]byte // every key buffer given out by Keys.Get

	failures map[string][]error // op -> errors returned by its next calls (nil entries pass)
	calls    []string

	// behaviour switches
	silentMount  bool   // Mount succeeds but mounts nothing
	wrongSource  string // Mount mounts this source instead of the device
	createOrphan bool   // keys.Create makes the key, then fails (a timed-out request)
	keyPrefix    string // key ids are keyPrefix+N (default "k")
	// clientGroup is the Object Group the plugin's KMIP client puts a key
	// in when Create names none (keys.Config.Group): the harness's node's.
	clientGroup string

	// before runs before every op, outside the lock.
	before func(op, arg string)

	inflightMu sync.Mutex
	inflight   map[string]int // volume -> ops in flight
	maxPerVol  int
	total      int
	maxTotal   int
}

type fakeHeader struct {
	h           luks.Header
	slots       map[int][32]byte // keyslot -> hash of its passphrase
	reencrypted int              // reencryptions finished: each a new volume key
}

// sync makes the header's keyslot fields show slots.
func (hd *fakeHeader) sync() {
	hd.h.SlotIDs = nil
	for id := range 32 {
		if _, ok := hd.slots[id]; ok {
			hd.h.SlotIDs = append(hd.h.SlotIDs, id)
		}
	}
	hd.h.Keyslots = len(hd.h.SlotIDs)
}

// opens says whether key unlocks a keyslot.
func (hd *fakeHeader) opens(key []byte) bool {
	if hd.h.Keyslots == 0 {
		return false
	}
	sum := sha256.Sum256(key)
	for _, h := range hd.slots {
		if h == sum {
			return true
		}
	}
	return false
}

type fakeKey struct {
	name        string
	group       string // KMIP Object Group
	b           []byte
	deactivated bool // revoked for cessation of operation (keys.Manager.Deactivate)
}

var errCrashed = errors.New("process crashed")

func newWorld(t testing.TB) *world {
	return &world{
		t:            t,
		vg:           lvm.VG{Name: "vg0", Size: 8 << 30, Free: 6 << 30, ExtentSize: 4 << 20, UUID: "Vg0uuid-0000"},
		poolFree:     2 << 30,
		lvs:          map[string]*lvm.LV{},
		headers:      map[string]*fakeHeader{},
		fsMade:       map[string]string{},
		fsSize:       map[string]uint64{},
		fsUsed:       map[string]uint64{},
		fsUUID:       map[string]string{},
		contents:     map[string]string{},
		mapSize:      map[string]uint64{},
		mappings:     map[string]string{},
		openOpts:     map[string]luks.OpenOptions{},
		mounts:       map[string]string{},
		mountOpt:     map[string]string{},
		frozen:       map[string]bool{},
		tableChanged: make(chan struct{}, 1),
		holders:      map[string]int{},
		layout:       map[string]bool{},
		oldLayout:    map[string]bool{},
		keys:         map[string]*fakeKey{},
		failures:     map[string][]error{},
		inflight:     map[string]int{},
	}
}

// failNext makes the next len(errs) calls of op return those errors.
func (w *world) failNext(op string, errs ...error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures[op] = append(w.failures[op], errs...)
}

// failAlways makes every call of op fail until clearFailures.
func (w *world) failAlways(op string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures[op] = slices.Repeat([]error{err}, 1<<20)
}

func (w *world) clearFailures() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures = map[string][]error{}
}

func (w *world) callLog() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls)
}

func (w *world) resetCalls() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = nil
}

// volumeOf maps an op argument back to its volume name, for the
// serialization check.
func volumeOf(arg string) string {
	arg = filepath.Base(arg)
	for _, p := range []string{lvPrefix, mappingPrefix} {
		if v, ok := strings.CutPrefix(arg, p); ok {
			return v
		}
	}
	return arg
}

// session is one plugin process's view of the world. A crash kills the
// session: its later calls fail and change nothing, as if the process had
// died at that instant.
type session struct {
	w       *world
	dead    atomic.Bool
	crashAt int          // crash at this op number (1-based); 0 never
	crashOn string       // crash at the first call of this op
	n       atomic.Int64 // ops so far
	track   bool         // count in-flight ops per volume
}

func (w *world) session() *session { return &session{w: w} }

// enter runs before each op: crash simulation, hooks, failure injection.
// It returns with w.mu held on success.
func (s *session) enter(op, arg string) (done func(), err error) {
	if s.dead.Load() {
		return nil, errCrashed
	}
	if n := s.n.Add(1); s.crashAt > 0 && int(n) == s.crashAt || s.crashOn == op {
		s.dead.Store(true)
		return nil, errCrashed
	}
	w := s.w
	if w.before != nil {
		w.before(op, arg)
	}
	vol := ""
	if s.track && arg != "" && !strings.HasPrefix(op, "state.") && op != "lvm.VG" && op != "lvm.MetadataVG" && op != "lvm.PoolStatus" && op != "lvm.ThinVirtualSize" && op != "lvm.ListLVs" && op != "lvm.MetadataLVs" &&
		op != "fs.MountedDevice" && op != "fs.Data" && op != "fs.Usage" /* List and Get read mountinfo, the data directory and statfs without the volume lock, by design */ {
		vol = volumeOf(arg)
		w.inflightMu.Lock()
		w.inflight[vol]++
		w.total++
		w.maxPerVol = max(w.maxPerVol, w.inflight[vol])
		w.maxTotal = max(w.maxTotal, w.total)
		w.inflightMu.Unlock()
		time.Sleep(200 * time.Microsecond) // widen the window for overlaps
	}
	w.mu.Lock()
	w.calls = append(w.calls, op+" "+arg)
	if q := w.failures[op]; len(q) > 0 {
		err = q[0]
		w.failures[op] = q[1:]
	}
	if err != nil {
		w.mu.Unlock()
		s.leave(vol)
		return nil, err
	}
	return func() { w.mu.Unlock(); s.leave(vol) }, nil
}

func (s *session) leave(vol string) {
	if vol == "" {
		return
	}
	s.w.inflightMu.Lock()
	s.w.inflight[vol]--
	s.w.total--
	s.w.inflightMu.Unlock()
}

func (w *world) lvOfDev(dev string) (string, bool) {
	name, ok := strings.CutPrefix(dev, "/dev/"+w.vg.Name+"/")
	return name, ok
}

// ---- LVM ----

type fakeLVM struct{ s *session }

// MetadataVG is VG read from the text: the same group.
func (f fakeLVM) MetadataVG(ctx context.Context) (lvm.VG, error) {
	done, err := f.s.enter("lvm.MetadataVG", "")
	if err != nil {
		return lvm.VG{}, err
	}
	defer done()
	return f.s.w.vg, nil
}

func (f fakeLVM) VG(ctx context.Context) (lvm.VG, error) {
	done, err := f.s.enter("lvm.VG", "")
	if err != nil {
		return lvm.VG{}, err
	}
	defer done()
	return f.s.w.vg, nil
}

// PoolStatus: a 4 GiB pool with poolFree bytes free and poolMeta percent
// of metadata used.
func (f fakeLVM) PoolStatus(ctx context.Context, pool string) (lvm.PoolStatus, error) {
	done, err := f.s.enter("lvm.PoolStatus", pool)
	if err != nil {
		return lvm.PoolStatus{}, err
	}
	defer done()
	const size = 4 << 30
	return lvm.PoolStatus{Size: size, DataPercent: 100 * float64(size-f.s.w.poolFree) / size, MetaPercent: f.s.w.poolMeta}, nil
}

func (f fakeLVM) ThinVirtualSize(ctx context.Context, pool string) (uint64, error) {
	done, err := f.s.enter("lvm.ThinVirtualSize", pool)
	if err != nil {
		return 0, err
	}
	defer done()
	var sum uint64
	for _, lv := range f.s.w.lvs {
		if lv.Pool == pool {
			sum += lv.Size
		}
	}
	return sum, nil
}

func (f fakeLVM) LV(ctx context.Context, name string) (lvm.LV, error) {
	done, err := f.s.enter("lvm.LV", name)
	if err != nil {
		return lvm.LV{}, err
	}
	defer done()
	lv, ok := f.s.w.lvs[name]
	if !ok {
		return lvm.LV{}, fmt.Errorf("LV %s: %w", name, lvm.ErrNotFound)
	}
	c := *lv
	c.Tags = slices.Clone(lv.Tags)
	return c, nil
}

func (f fakeLVM) ListLVs(ctx context.Context, tag string) ([]lvm.LV, error) {
	done, err := f.s.enter("lvm.ListLVs", tag)
	if err != nil {
		return nil, err
	}
	defer done()
	var out []lvm.LV
	for _, lv := range f.s.w.lvs {
		if slices.Contains(lv.Tags, tag) {
			c := *lv
			c.Tags = slices.Clone(lv.Tags)
			out = append(out, c)
		}
	}
	return out, nil
}

func (f fakeLVM) CreateLV(ctx context.Context, req lvm.CreateRequest) error {
	done, err := f.s.enter("lvm.CreateLV", req.Name)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	if _, ok := w.lvs[req.Name]; ok {
		return fmt.Errorf("LV %s already exists", req.Name)
	}
	size := roundUp(req.Size, w.vg.ExtentSize)
	if req.Pool == "" {
		if size > w.vg.Free {
			return fmt.Errorf("insufficient free space")
		}
		w.vg.Free -= size
	}
	w.nextUUID++
	lv := &lvm.LV{
		UUID: fmt.Sprintf("lvuuid-%d", w.nextUUID),
		Name: req.Name, VG: w.vg.Name, Path: "/dev/" + w.vg.Name + "/" + req.Name, Size: size,
		Tags: slices.Clone(req.Tags), Active: true, Pool: req.Pool,
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	w.lvs[req.Name] = lv
	return nil
}

// Snapshot copies the origin's blocks: its header (keyslots and token as
// they are), filesystem and size. Like lvcreate -s it keeps the origin's
// tags too: the lifecycle must set the snapshot's own.
func (f fakeLVM) Snapshot(ctx context.Context, origin, name string, tags []string) error {
	done, err := f.s.enter("lvm.Snapshot", name)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	o, ok := w.lvs[origin]
	switch {
	case !ok:
		return fmt.Errorf("LV %s: %w", origin, lvm.ErrNotFound)
	case o.Pool == "":
		return fmt.Errorf("%s is not a thin volume", origin)
	case w.lvs[name] != nil:
		return fmt.Errorf("LV %s already exists", name)
	}
	w.nextUUID++
	lv := *o
	lv.UUID, lv.Name, lv.Path, lv.Active = fmt.Sprintf("lvuuid-%d", w.nextUUID), name, "/dev/"+w.vg.Name+"/"+name, true
	lv.Tags = append(slices.Clone(o.Tags), tags...)
	w.lvs[name] = &lv
	if hd, ok := w.headers[origin]; ok {
		cp := *hd
		cp.slots = maps.Clone(hd.slots)
		if hd.h.Token != nil {
			tok := *hd.h.Token
			cp.h.Token = &tok
		}
		cp.h.SlotIDs = slices.Clone(hd.h.SlotIDs)
		w.headers[name] = &cp
	}
	w.fsMade[name], w.fsSize[name], w.fsUUID[name] = w.fsMade[origin], w.fsSize[origin], w.fsUUID[origin]
	w.contents[name] = w.contents[origin]
	return nil
}

func (f fakeLVM) Activate(ctx context.Context, name string) error {
	done, err := f.s.enter("lvm.Activate", name)
	if err != nil {
		return err
	}
	defer done()
	lv, ok := f.s.w.lvs[name]
	if !ok {
		return fmt.Errorf("LV %s: %w", name, lvm.ErrNotFound)
	}
	lv.Active = true
	return nil
}

// Active is the kernel's answer (sysfs): the LV of that uuid, active now.
// A crash or an injected failure reads as "cannot tell": false.
func (f fakeLVM) Active(lv lvm.LV) bool {
	done, err := f.s.enter("lvm.Active", lv.Name)
	if err != nil {
		return false
	}
	defer done()
	got, ok := f.s.w.lvs[lv.Name]
	return ok && got.Active && got.UUID == lv.UUID && lv.UUID != ""
}

func (f fakeLVM) AddTag(ctx context.Context, name, tag string) error {
	done, err := f.s.enter("lvm.AddTag", name)
	if err != nil {
		return err
	}
	defer done()
	lv, ok := f.s.w.lvs[name]
	if !ok {
		return fmt.Errorf("LV %s: %w", name, lvm.ErrNotFound)
	}
	if !slices.Contains(lv.Tags, tag) {
		lv.Tags = append(lv.Tags, tag)
	}
	return nil
}

func (w *world) lvOpen(name string) bool {
	for _, lv := range w.mappings {
		if lv == name {
			return true
		}
	}
	return false
}

func (f fakeLVM) Deactivate(ctx context.Context, name string) error {
	done, err := f.s.enter("lvm.Deactivate", name)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	lv, ok := w.lvs[name]
	if !ok {
		return fmt.Errorf("LV %s: %w", name, lvm.ErrNotFound)
	}
	if w.lvOpen(name) {
		return fmt.Errorf("LV %s in use: a mapping is open", name)
	}
	lv.Active = false
	return nil
}

func (f fakeLVM) RemoveLV(ctx context.Context, name string) error {
	done, err := f.s.enter("lvm.RemoveLV", name)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	lv, ok := w.lvs[name]
	if !ok {
		return fmt.Errorf("LV %s: %w", name, lvm.ErrNotFound)
	}
	if w.lvOpen(name) {
		return fmt.Errorf("LV %s in use: a mapping is open", name)
	}
	if lv.Pool == "" {
		w.vg.Free += lv.Size
	}
	delete(w.lvs, name)
	delete(w.headers, name)
	delete(w.fsMade, name)
	delete(w.contents, name)
	return nil
}

// Rename is lvrename: one commit; the LV keeps its UUID, blocks, header
// and filesystem, and an open mapping keeps working on the renamed device.
func (f fakeLVM) Rename(ctx context.Context, from, to string) error {
	done, err := f.s.enter("lvm.Rename", from)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	lv, ok := w.lvs[from]
	if !ok {
		return fmt.Errorf("LV %s: %w", from, lvm.ErrNotFound)
	}
	if _, taken := w.lvs[to]; taken {
		return fmt.Errorf("LV %s: %w", to, lvm.ErrExists)
	}
	lv.Name, lv.Path = to, "/dev/"+w.vg.Name+"/"+to
	w.lvs[to] = lv
	delete(w.lvs, from)
	move := func(m any) {
		switch m := m.(type) {
		case map[string]*fakeHeader:
			if v, ok := m[from]; ok {
				m[to] = v
				delete(m, from)
			}
		case map[string]string:
			if v, ok := m[from]; ok {
				m[to] = v
				delete(m, from)
			}
		case map[string]uint64:
			if v, ok := m[from]; ok {
				m[to] = v
				delete(m, from)
			}
		case map[string]bool:
			if v, ok := m[from]; ok {
				m[to] = v
				delete(m, from)
			}
		}
	}
	for _, m := range []any{w.headers, w.fsMade, w.fsSize, w.fsUsed, w.fsUUID, w.contents, w.layout, w.oldLayout} {
		move(m)
	}
	for mapping, l := range w.mappings {
		if l == from {
			w.mappings[mapping] = to
		}
	}
	return nil
}

// DeactivateAndTag is lvchange -an --addtag: the tag is committed before
// the deactivation, which fails (with the tag added) while a mapping is open.
func (f fakeLVM) DeactivateAndTag(ctx context.Context, name, tag string) error {
	done, err := f.s.enter("lvm.DeactivateAndTag", name)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	lv, ok := w.lvs[name]
	if !ok {
		return fmt.Errorf("LV %s: %w", name, lvm.ErrNotFound)
	}
	if !slices.Contains(lv.Tags, tag) {
		lv.Tags = append(lv.Tags, tag)
	}
	if w.lvOpen(name) {
		return fmt.Errorf("LV %s in use: a mapping is open", name)
	}
	lv.Active = false
	return nil
}

func (f fakeLVM) Extend(ctx context.Context, name string, current, size uint64) error {
	done, err := f.s.enter("lvm.Extend", name)
	if err != nil {
		return err
	}
	defer done()
	lv, ok := f.s.w.lvs[name]
	switch {
	case !ok:
		return fmt.Errorf("LV %s: %w", name, lvm.ErrNotFound)
	case size <= lv.Size:
		return fmt.Errorf("new size %d not larger than existing size %d", size, lv.Size)
	}
	lv.Size = size
	return nil
}

func (f fakeLVM) ReplaceTags(ctx context.Context, name string, del, add []string) error {
	done, err := f.s.enter("lvm.ReplaceTags", name)
	if err != nil {
		return err
	}
	defer done()
	lv, ok := f.s.w.lvs[name]
	if !ok {
		return fmt.Errorf("LV %s: %w", name, lvm.ErrNotFound)
	}
	lv.Tags = slices.DeleteFunc(lv.Tags, func(t string) bool { return slices.Contains(del, t) })
	for _, t := range add {
		if !slices.Contains(lv.Tags, t) {
			lv.Tags = append(lv.Tags, t)
		}
	}
	return nil
}

// MetadataMark is a digest of every LV's metadata (not Active: activation
// is no commit), so that a test changing w.lvs directly, as an operator
// would with lvm, changes the mark as a real commit does.
func (f fakeLVM) MetadataMark(ctx context.Context) (string, error) {
	done, err := f.s.enter("lvm.MetadataMark", "")
	if err != nil {
		return "", err
	}
	defer done()
	return f.s.w.markDigest(), nil
}

func (w *world) markDigest() string {
	names := make([]string, 0, len(w.lvs))
	for n := range w.lvs {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		lv := w.lvs[n]
		fmt.Fprintf(h, "%s|%s|%d|%s|%s|%s\n", lv.Name, lv.UUID, lv.Size, lv.Pool, strings.Join(lv.Tags, ","), lv.Created)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MetadataLVs is ListLVs as the metadata text has it: the mark of the same
// state, and no activation (Active false), as the real one.
func (f fakeLVM) MetadataLVs(ctx context.Context, tag string) (string, []lvm.LV, error) {
	done, err := f.s.enter("lvm.MetadataLVs", tag)
	if err != nil {
		return "", nil, err
	}
	defer done()
	var out []lvm.LV
	for _, lv := range f.s.w.lvs {
		if tag == "" || slices.Contains(lv.Tags, tag) {
			c := *lv
			c.Tags = slices.Clone(lv.Tags)
			c.Active = false
			out = append(out, c)
		}
	}
	return f.s.w.markDigest(), out, nil
}

// ---- cryptsetup ----

type fakeCrypt struct{ s *session }

// activeLV returns the LV behind dev if its device node exists (LV active).
func (w *world) activeLV(dev string) (string, error) {
	name, ok := w.lvOfDev(dev)
	if !ok {
		return "", fmt.Errorf("device %s does not exist", dev)
	}
	lv, ok := w.lvs[name]
	if !ok || !lv.Active {
		return "", fmt.Errorf("device %s does not exist", dev)
	}
	return name, nil
}

func (f fakeCrypt) Format(ctx context.Context, dev string, key []byte, token luks.Token, opts ...luks.FormatOptions) error {
	done, err := f.s.enter("crypt.Format", dev)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	name, err := w.activeLV(dev)
	if err != nil {
		return err
	}
	if _, ok := w.headers[name]; ok {
		return fmt.Errorf("%s: %w", dev, luks.ErrHasHeader)
	}
	if len(key) != 32 {
		return fmt.Errorf("passphrase is %d bytes, want 32", len(key))
	}
	tok := token
	w.headers[name] = &fakeHeader{
		h:     luks.Header{Version: 2, Cipher: luks.Cipher, KeyBits: 512, SectorSize: 4096, Token: &tok},
		slots: map[int][32]byte{0: sha256.Sum256(key)},
	}
	if len(opts) > 0 && opts[0].Integrity != "" {
		w.headers[name].h.Integrity, w.headers[name].h.KeyBits = "hmac(sha256)", 768
	}
	w.headers[name].sync()
	return nil
}

func (f fakeCrypt) Inspect(ctx context.Context, dev string) (luks.Header, error) {
	done, err := f.s.enter("crypt.Inspect", dev)
	if err != nil {
		return luks.Header{}, err
	}
	defer done()
	w := f.s.w
	name, err := w.activeLV(dev)
	if err != nil {
		return luks.Header{}, err
	}
	hd, ok := w.headers[name]
	if !ok {
		return luks.Header{}, fmt.Errorf("%s: %w", dev, luks.ErrNotLUKS)
	}
	h := hd.h
	if h.Token != nil {
		t := *h.Token
		h.Token = &t
	}
	h.SlotIDs = slices.Clone(h.SlotIDs)
	return h, nil
}

func (f fakeCrypt) Open(ctx context.Context, dev, mapping string, key []byte, opts luks.OpenOptions) error {
	done, err := f.s.enter("crypt.Open", mapping)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	name, err := w.activeLV(dev)
	if err != nil {
		return err
	}
	hd, ok := w.headers[name]
	if !ok {
		return fmt.Errorf("%s: %w", dev, luks.ErrNotLUKS)
	}
	if !hd.opens(key) {
		return errors.New("no key available with this passphrase")
	}
	if _, ok := w.mappings[mapping]; ok {
		return fmt.Errorf("device %s already exists", mapping)
	}
	w.mappings[mapping] = name
	w.openOpts[mapping] = opts
	w.mapSize[mapping] = w.lvs[name].Size
	return nil
}

func (w *world) mappingMounted(mapping string) bool {
	for _, src := range w.mounts {
		if src == "/dev/mapper/"+mapping {
			return true
		}
	}
	return false
}

func (f fakeCrypt) Close(ctx context.Context, mapping string) error {
	done, err := f.s.enter("crypt.Close", mapping)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	if _, ok := w.mappings[mapping]; !ok {
		return nil
	}
	if w.mappingMounted(mapping) || w.holders[mapping] > 0 {
		return fmt.Errorf("device %s is still in use: %w", mapping, luks.ErrBusy)
	}
	delete(w.mappings, mapping)
	return nil
}

func (f fakeCrypt) IsOpen(ctx context.Context, mapping string) (bool, error) {
	done, err := f.s.enter("crypt.IsOpen", mapping)
	if err != nil {
		return false, err
	}
	defer done()
	_, ok := f.s.w.mappings[mapping]
	return ok, nil
}

func (f fakeCrypt) MappingOf(ctx context.Context, mapping, dev string) error {
	done, err := f.s.enter("crypt.MappingOf", mapping)
	if err != nil {
		return err
	}
	defer done()
	name, ok := f.s.w.lvOfDev(dev)
	if lv, open := f.s.w.mappings[mapping]; !open || !ok || lv != name {
		return fmt.Errorf("mapping %s (of %q): %w %s", mapping, lv, luks.ErrNotThisMapping, dev)
	}
	return nil
}

func (f fakeCrypt) OpensSlot(ctx context.Context, dev string, key []byte, slot int) (bool, error) {
	done, err := f.s.enter("crypt.OpensSlot", dev)
	if err != nil {
		return false, err
	}
	defer done()
	w := f.s.w
	name, ok := w.lvOfDev(dev)
	hd, has := w.headers[name]
	if !ok || !has {
		return false, fmt.Errorf("%s: %w", dev, luks.ErrNotLUKS)
	}
	sum, in := hd.slots[slot]
	return in && sum == sha256.Sum256(key), nil
}

func (f fakeCrypt) Mappings(ctx context.Context) (map[string]bool, error) {
	done, err := f.s.enter("crypt.Mappings", "")
	if err != nil {
		return nil, err
	}
	defer done()
	names := map[string]bool{}
	for m := range f.s.w.mappings {
		names[m] = true
	}
	return names, nil
}

func (f fakeCrypt) Erase(ctx context.Context, dev string) error {
	done, err := f.s.enter("crypt.Erase", dev)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	name, err := w.activeLV(dev)
	if err != nil {
		return err
	}
	if _, ok := w.headers[name]; !ok {
		return fmt.Errorf("%s: %w", dev, luks.ErrNotLUKS)
	}
	// As luks.Erase does to an intact header: wiped whole, no header left.
	delete(w.headers, name)
	return nil
}

// withHeader runs one keyslot operation (op) on dev's header, as the
// session's step op: the LV must be active and carry a header.
func (f fakeCrypt) withHeader(op, dev string, fn func(hd *fakeHeader) error) error {
	done, err := f.s.enter(op, dev)
	if err != nil {
		return err
	}
	defer done()
	name, err := f.s.w.activeLV(dev)
	if err != nil {
		return err
	}
	hd, ok := f.s.w.headers[name]
	if !ok {
		return fmt.Errorf("%s: %w", dev, luks.ErrNotLUKS)
	}
	if err := fn(hd); err != nil {
		return err
	}
	hd.sync()
	return nil
}

func (f fakeCrypt) AddKey(ctx context.Context, dev string, existing, newKey []byte, slot int) error {
	return f.withHeader("crypt.AddKey", dev, func(hd *fakeHeader) error {
		switch {
		case !hd.opens(existing):
			return errors.New("no key available with this passphrase")
		case hd.h.HasSlot(slot):
			return fmt.Errorf("key slot %d is full", slot)
		}
		hd.slots[slot] = sha256.Sum256(newKey)
		return nil
	})
}

func (f fakeCrypt) SetToken(ctx context.Context, dev string, tokenID int, token luks.Token, slot int) error {
	return f.withHeader("crypt.SetToken", dev, func(hd *fakeHeader) error {
		if !hd.h.HasSlot(slot) {
			return fmt.Errorf("%s: no keyslot %d for the token", dev, slot)
		}
		hd.h.Token = &token
		return nil
	})
}

// Reencrypt gives the header a new volume key (counted in reencrypted; the
// data stays readable) and moves the passphrase's keyslot to a new id, as
// cryptsetup does.
func (f fakeCrypt) Reencrypt(ctx context.Context, dev string, key []byte, o luks.ReencryptOptions) error {
	return f.withHeader("crypt.Reencrypt", dev, func(hd *fakeHeader) error {
		switch {
		case !hd.opens(key):
			return errors.New("no key available with this passphrase")
		case o.Resume != hd.h.Reencrypting:
			return fmt.Errorf("resume=%t but the header's reencryption in progress is %t", o.Resume, hd.h.Reencrypting)
		}
		hd.slots = map[int][32]byte{hd.h.SlotIDs[len(hd.h.SlotIDs)-1] + 1: sha256.Sum256(key)}
		hd.h.Reencrypting = false
		hd.reencrypted++
		return nil
	})
}

func (f fakeCrypt) Resize(ctx context.Context, mapping string, key []byte) error {
	done, err := f.s.enter("crypt.Resize", mapping)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	lv, ok := w.mappings[mapping]
	if !ok {
		return fmt.Errorf("device %s is not active", mapping)
	}
	if !w.headers[lv].opens(key) {
		return errors.New("no key available with this passphrase")
	}
	w.mapSize[mapping] = w.lvs[lv].Size
	return nil
}

func (f fakeCrypt) KillSlot(ctx context.Context, dev string, slot int) error {
	return f.withHeader("crypt.KillSlot", dev, func(hd *fakeHeader) error {
		if !hd.h.HasSlot(slot) {
			return fmt.Errorf("%s: keyslot %d is not active", dev, slot)
		}
		delete(hd.slots, slot)
		return nil
	})
}

// ---- filesystems ----

type fakeFS struct{ s *session }

func (w *world) openMapping(dev string) (lv string, err error) {
	mapping, ok := strings.CutPrefix(dev, "/dev/mapper/")
	if !ok {
		return "", fmt.Errorf("%s is not a mapping", dev)
	}
	lv, ok = w.mappings[mapping]
	if !ok {
		return "", fmt.Errorf("%s does not exist", dev)
	}
	return lv, nil
}

func (f fakeFS) Mkfs(ctx context.Context, dev, fstype string, opts ...mount.MkfsOptions) error {
	done, err := f.s.enter("fs.Mkfs", dev)
	if err != nil {
		return err
	}
	defer done()
	lv, err := f.s.w.openMapping(dev)
	if err != nil {
		return err
	}
	f.s.w.fsMade[lv] = fstype
	f.s.w.fsUUID[lv] = "uuid-of-" + lv
	delete(f.s.w.layout, lv)
	f.s.w.fsSize[lv] = f.s.w.mapSize[strings.TrimPrefix(dev, "/dev/mapper/")]
	return nil
}

func (f fakeFS) Freeze(target string) error {
	done, err := f.s.enter("fs.Freeze", target)
	if err != nil {
		return err
	}
	defer done()
	if _, ok := f.s.w.mounts[target]; !ok {
		return fmt.Errorf("nothing mounted at %s to freeze", target)
	}
	f.s.w.frozen[target] = true
	f.s.w.froze = append(f.s.w.froze, target)
	return nil
}

func (f fakeFS) Thaw(target string) error {
	done, err := f.s.enter("fs.Thaw", target)
	if err != nil {
		return err
	}
	defer done()
	delete(f.s.w.frozen, target)
	return nil
}

// Grow needs the filesystem mounted at target, as resize2fs online and
// xfs_growfs do, and makes it span its mapping.
func (f fakeFS) Grow(ctx context.Context, dev, target, fstype string) error {
	done, err := f.s.enter("fs.Grow", dev)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	lv, err := w.openMapping(dev)
	if err != nil {
		return err
	}
	if w.mounts[target] != dev || w.fsMade[lv] != fstype {
		return fmt.Errorf("%s is not a mounted %s filesystem at %s", dev, fstype, target)
	}
	w.fsSize[lv] = w.mapSize[strings.TrimPrefix(dev, "/dev/mapper/")]
	return nil
}

func (f fakeFS) Mount(ctx context.Context, dev, target, fstype string, extra ...string) error {
	done, err := f.s.enter("fs.Mount", target)
	if err != nil {
		return err
	}
	defer done()
	w := f.s.w
	lv, err := w.openMapping(dev)
	if err != nil {
		return err
	}
	if w.fsMade[lv] != fstype {
		return fmt.Errorf("wrong fs type %s on %s", fstype, dev)
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		return fmt.Errorf("mount point %s does not exist", target)
	}
	if _, ok := w.mounts[target]; ok {
		return fmt.Errorf("%s is already mounted", target)
	}
	// xfs refuses a second filesystem with a mounted one's UUID unless
	// mounted nouuid (xfs(5)): a clone's filesystem is its source's copy.
	if fstype == options.FSXFS && !slices.Contains(extra, mount.NoUUID) {
		for t, d := range w.mounts {
			if other, err := w.openMapping(d); err == nil && other != lv && w.fsUUID[other] == w.fsUUID[lv] && t != target {
				return fmt.Errorf("mount %s on %s: invalid argument (xfs: duplicate UUID %s, mounted at %s)", dev, target, w.fsUUID[lv], t)
			}
		}
	}
	switch {
	case w.silentMount:
	case w.wrongSource != "":
		w.mounts[target] = w.wrongSource
	default:
		w.mounts[target] = dev
	}
	w.mountOpt[target] = strings.Join(extra, ",")
	if !w.silentMount {
		w.mountTableChanged()
	}
	return nil
}

func (f fakeFS) Unmount(ctx context.Context, target string) error {
	done, err := f.s.enter("fs.Unmount", target)
	if err != nil {
		return err
	}
	defer done()
	if _, ok := f.s.w.mounts[target]; ok {
		delete(f.s.w.mounts, target)
		f.s.w.mountTableChanged()
	}
	return nil
}

// WatchMounts is not a recorded call: it runs for the life of Run.
func (f fakeFS) WatchMounts(ctx context.Context, changed func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.s.w.tableChanged:
			changed()
		}
	}
}

func (w *world) mountTableChanged() {
	select {
	case w.tableChanged <- struct{}{}:
	default:
	}
}

// unmountFromOutside unmounts target as another mount namespace's unmount
// propagated here would (dockerd's, contract.sh).
func (w *world) unmountFromOutside(target string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.mounts, target)
	w.mountTableChanged()
}

// hostFS is what statfs reports for a mountpoint with nothing mounted on
// it: the host's own filesystem, which no figure of a volume may show.
var hostFS = mount.Usage{Size: 1 << 40, Used: 1 << 39, Avail: 1 << 39, Inodes: 1 << 20, InodesFree: 1 << 19}

// Usage is statfs: the volume's filesystem while its mapping is mounted
// at target (fsUsed of fsSize, one inode per 16 KiB), else the host's.
func (f fakeFS) Usage(target string) (mount.Usage, error) {
	done, err := f.s.enter("fs.Usage", target)
	if err != nil {
		return mount.Usage{}, err
	}
	defer done()
	w := f.s.w
	lv, err := w.openMapping(w.mounts[target])
	if err != nil {
		return hostFS, nil
	}
	size, used := w.fsSize[lv], w.fsUsed[lv]
	return mount.Usage{Size: size, Used: used, Avail: size - min(used, size), Inodes: size >> 14, InodesFree: (size - min(used, size)) >> 14}, nil
}

func (f fakeFS) MountedDevice(target string) (string, error) {
	done, err := f.s.enter("fs.MountedDevice", target)
	if err != nil {
		return "", err
	}
	defer done()
	return f.s.w.mounts[target], nil
}

// Data stands for mount.FS.Data: the data directory exists only inside
// the filesystem, so only while the mapping is mounted at target.
func (f fakeFS) Data(target, dev string, create bool) (string, error) {
	done, err := f.s.enter("fs.Data", target)
	if err != nil {
		return "", err
	}
	defer done()
	w := f.s.w
	if w.mounts[target] != dev {
		return "", fmt.Errorf("volume layout: %s is not the volume's filesystem", target)
	}
	lv, err := w.openMapping(dev)
	if err != nil {
		return "", err
	}
	if !w.layout[lv] {
		if !create {
			return "", mount.ErrOldLayout
		}
		w.layout[lv] = true
		if w.oldLayout[lv] {
			delete(w.oldLayout, lv)
			w.migrated = append(w.migrated, lv)
		}
	}
	return filepath.Join(target, mount.DataDir), nil
}

// Shared is not a recorded call: the sweep and every Mount ask it.
func (f fakeFS) Shared(root string) (mounted, shared bool, fields string, err error) {
	w := f.s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.propagation == "" {
		return false, false, "", nil
	}
	return true, strings.HasPrefix(w.propagation, "shared:"), w.propagation, nil
}

func (f fakeFS) MountedUnder(root string) (map[string]string, error) {
	done, err := f.s.enter("fs.MountedUnder", "")
	if err != nil {
		return nil, err
	}
	defer done()
	out := map[string]string{}
	for target, src := range f.s.w.mounts {
		if filepath.Dir(target) == filepath.Clean(root) {
			out[filepath.Base(target)] = src
		}
	}
	return out, nil
}

// ---- KMIP ----

type fakeKeys struct{ s *session }

func (f fakeKeys) Create(ctx context.Context, name, group string) (string, *keys.Key, error) {
	done, err := f.s.enter("keys.Create", name)
	if err != nil {
		return "", nil, err
	}
	defer done()
	w := f.s.w
	hand := func(id string) (string, *keys.Key, error) {
		b := slices.Clone(w.keys[id].b)
		w.handed = append(w.handed, b)
		return id, keys.NewKey(b, w.keys[id].name), nil
	}
	for id, k := range w.keys {
		if k.name == name {
			return hand(id)
		}
	}
	w.nextKey++
	id := fmt.Sprintf("%s%d", cmp.Or(w.keyPrefix, "k"), w.nextKey)
	b := make([]byte, 32)
	rand.Read(b)
	w.keys[id] = &fakeKey{name: name, group: cmp.Or(group, w.clientGroup), b: b}
	if w.createOrphan {
		return "", nil, errors.New("kmip 127.0.0.1:5696: i/o timeout")
	}
	return hand(id)
}

func (f fakeKeys) Get(ctx context.Context, id string) (*keys.Key, error) {
	return f.get("keys.Get", "get key", id, false)
}

// GetDeactivated serves a key in either state, as keys.KMIP does.
func (f fakeKeys) GetDeactivated(ctx context.Context, id string) (*keys.Key, error) {
	return f.get("keys.GetDeactivated", "get deactivated key", id, true)
}

func (f fakeKeys) get(op, what, id string, deactivated bool) (*keys.Key, error) {
	if id == "" {
		return nil, fmt.Errorf("%s \"\": key id is empty", what)
	}
	done, err := f.s.enter(op, id)
	if err != nil {
		return nil, err
	}
	defer done()
	w := f.s.w
	k, ok := w.keys[id]
	if !ok {
		return nil, fmt.Errorf("key %s: %w", id, keys.ErrNotFound)
	}
	if k.deactivated && !deactivated {
		return nil, fmt.Errorf("key %s: %w (state Deactivated)", id, keys.ErrNotActive)
	}
	b := slices.Clone(k.b)
	w.handed = append(w.handed, b)
	// As keys.KMIP: the key's names come with its material.
	return keys.NewKey(b, k.name), nil
}

func (f fakeKeys) Destroy(ctx context.Context, id string) error {
	if id == "" {
		// As keys.KMIP refuses it (validateText), before any request.
		return errors.New("destroy key \"\": key id is empty")
	}
	done, err := f.s.enter("keys.Destroy", id)
	if err != nil {
		return err
	}
	defer done()
	delete(f.s.w.keys, id)
	return nil
}

func (f fakeKeys) Deactivate(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("deactivate key \"\": key id is empty")
	}
	done, err := f.s.enter("keys.Deactivate", id)
	if err != nil {
		return err
	}
	defer done()
	k, ok := f.s.w.keys[id]
	if !ok {
		return fmt.Errorf("key %s: %w", id, keys.ErrNotFound)
	}
	k.deactivated = true
	return nil
}

func (f fakeKeys) Locate(ctx context.Context, name string) ([]string, error) {
	done, err := f.s.enter("keys.Locate", name)
	if err != nil {
		return nil, err
	}
	defer done()
	var ids []string
	for id, k := range f.s.w.keys {
		if k.name == name {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// ---- assertions ----

// assertWiped fails if any key buffer handed out still holds a non-zero byte.
func (w *world) assertWiped(t testing.TB) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, b := range w.handed {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("key buffer %d of %d was not wiped", i+1, len(w.handed))
		}
	}
}

// secrets returns every key's bytes in the encodings a leak would take.
func (w *world) secrets() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, k := range w.keys {
		out = append(out, string(k.b), hex.EncodeToString(k.b), strings.ToUpper(hex.EncodeToString(k.b)),
			base64.StdEncoding.EncodeToString(k.b), fmt.Sprint(k.b), fmt.Sprintf("%x", k.b[:8]))
	}
	return out
}

func (w *world) assertNoSecret(t testing.TB, what, s string) {
	t.Helper()
	for _, sec := range w.secrets() {
		if strings.Contains(s, sec) {
			t.Errorf("%s contains key material", what)
			return
		}
	}
}

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// harness is a Manager on a world, with its directories and log.
type harness struct {
	t       *testing.T
	w       *world
	s       *session
	m       *Manager
	cfg     Config
	logs    *syncBuffer
	logger  *logrus.Logger
	ctx     context.Context
	bootIDs string
}

func newHarness(t *testing.T, mutate ...func(*Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	boot := filepath.Join(dir, "boot_id")
	if err := os.WriteFile(boot, []byte("boot-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		VG: "vg0", DefaultFS: options.FSExt4, MountRoot: filepath.Join(dir, "mnt"), StateDir: filepath.Join(dir, "state"),
		DefaultSize: 1 << 30, NoWorkqueue: true, BootIDFile: boot,
	}
	for _, f := range mutate {
		f(&cfg)
	}
	h := &harness{t: t, w: newWorld(t), cfg: cfg, logs: &syncBuffer{}, ctx: context.Background(), bootIDs: boot}
	h.logger = logrus.New()
	h.logger.SetOutput(h.logs)
	h.logger.SetLevel(logrus.DebugLevel)
	h.restart()
	t.Cleanup(func() {
		h.w.assertWiped(t)
		h.w.assertNoSecret(t, "log output", h.logs.String())
	})
	return h
}

// restart starts a new "process": a new session and Manager on the same
// world and directories. It does not reconcile.
func (h *harness) restart() {
	h.t.Helper()
	h.s = h.w.session()
	m, err := h.newManager()
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	h.m = m
}

func (h *harness) newManager() (*Manager, error) {
	s := h.s
	s.w.clientGroup = keys.NodeGroup(cmp.Or(h.cfg.Node, "host"))
	m, err := New(h.cfg, fakeLVM{s}, fakeCrypt{s}, fakeFS{s}, fakeKeys{s}, h.logger)
	if err != nil {
		return nil, err
	}
	// A dead process writes nothing more to disk either.
	m.st.Rename = func(oldpath, newpath string) error {
		if s.dead.Load() {
			return errCrashed
		}
		done, err := s.enter("state.rename", filepath.Base(newpath))
		if err != nil {
			return err
		}
		done()
		return os.Rename(oldpath, newpath)
	}
	return m, nil
}

// mustCreate creates a volume or fails the test.
func (h *harness) mustCreate(name string, opts map[string]string) {
	h.t.Helper()
	if err := h.m.Create(h.ctx, name, opts); err != nil {
		h.t.Fatalf("Create(%s): %v", name, err)
	}
}

func (h *harness) mustMount(name, id string) string {
	h.t.Helper()
	p, err := h.m.Mount(h.ctx, name, id)
	if err != nil {
		h.t.Fatalf("Mount(%s, %s): %v", name, id, err)
	}
	if want := filepath.Join(h.cfg.MountRoot, name, mount.DataDir); p != want {
		h.t.Fatalf("Mount(%s, %s) = %q, want the data directory %s", name, id, p, want)
	}
	return p
}

func (h *harness) mustUnmount(name, id string) {
	h.t.Helper()
	if err := h.m.Unmount(h.ctx, name, id); err != nil {
		h.t.Fatalf("Unmount(%s, %s): %v", name, id, err)
	}
}

// runContainer mounts the volume for a container as dockerd does: Mount,
// then a bind mount in the container's namespace that holds the filesystem.
func (h *harness) runContainer(name, id string) {
	h.t.Helper()
	h.mustMount(name, id)
	h.bind(name)
}

// bind is dockerd's bind mount of a mounted volume's path into a
// container's namespace, which holds the filesystem; the test fails if
// the path is not there to bind.
func (h *harness) bind(name string) {
	h.t.Helper()
	if !h.tryBind(name) {
		h.t.Fatalf("bind of volume %s: its data directory %s does not exist", name, filepath.Join(h.cfg.MountRoot, name, mount.DataDir))
	}
}

// tryBind is runc's bind of the volume's data directory: it exists only
// while the volume's filesystem, with its layout, is mounted at the
// mountpoint (mount/layout.go), and otherwise the bind fails: there is
// never a directory of the host's to bind instead.
func (h *harness) tryBind(name string) bool {
	w := h.w
	w.mu.Lock()
	defer w.mu.Unlock()
	mapping := mappingPrefix + name
	if w.mounts[filepath.Join(h.cfg.MountRoot, name)] != "/dev/mapper/"+mapping || !w.layout[w.mappings[mapping]] {
		return false
	}
	w.holders[mapping]++
	return true
}

// sweepUnmountsNothing runs a sweep and fails the test if it unmounted
// anything; what names the mounts it must leave.
func (h *harness) sweepUnmountsNothing(what string) {
	h.t.Helper()
	h.w.resetCalls()
	h.m.Sweep(h.ctx)
	for _, c := range h.w.callLog() {
		if strings.HasPrefix(c, "fs.Unmount") {
			h.t.Fatalf("probe unmounted %s: %v", what, h.w.callLog())
		}
	}
}

// containerGone ends a container's hold without any Unmount (it died while
// dockerd was not tracking it).
func (h *harness) containerGone(name string) {
	h.w.mu.Lock()
	h.w.holders[mappingPrefix+name]--
	h.w.mu.Unlock()
}

// stopContainer is a container exiting under dockerd: its namespace goes,
// then dockerd sends Unmount.
func (h *harness) stopContainer(name, id string) {
	h.t.Helper()
	h.containerGone(name)
	h.mustUnmount(name, id)
}

// restartInNewNamespace is how a managed plugin restarts: a new process in
// a new mount namespace, where the old process's mounts are gone while the
// containers' bind mounts still hold the mappings.
func (h *harness) restartInNewNamespace() {
	h.t.Helper()
	h.w.mu.Lock()
	for target := range h.w.mounts {
		if strings.HasPrefix(target, h.cfg.MountRoot+"/") {
			delete(h.w.mounts, target)
		}
	}
	h.w.mu.Unlock()
	h.restart()
}

// sweepKeepsUntilLetGo: a sweep leaves the held volume up; once its
// container lets go without an Unmount, the next sweep closes it.
func (h *harness) sweepKeepsUntilLetGo(name string) {
	h.t.Helper()
	h.m.Sweep(h.ctx)
	h.assertUp(name)
	h.containerGone(name)
	h.m.Sweep(h.ctx)
	h.assertDown(name)
	h.assertConsistent()
}

// pluginRestarted is a plugin restart in a new mount namespace (dockerd's
// start restarts it) and its start-up reconciliation.
func (h *harness) pluginRestarted() {
	h.t.Helper()
	h.restartInNewNamespace()
	if err := h.m.Reconcile(h.ctx); err != nil {
		h.t.Fatal(err)
	}
}

// up reports what of a volume is up: mounted at its mountpoint (from its
// mapping), mapping open, LV active.
func (h *harness) up(name string) (mounted, open, active bool) {
	w := h.w
	w.mu.Lock()
	defer w.mu.Unlock()
	mounted = w.mounts[filepath.Join(h.cfg.MountRoot, name)] == "/dev/mapper/cryptvol-"+name
	_, open = w.mappings["cryptvol-"+name]
	if lv, ok := w.lvs["cv-"+name]; ok {
		active = lv.Active
	}
	return
}

// assertDown: nothing decrypted. The LV stays active on a single host
// (keepsActive) and must be inactive in a shared group (its lock).
func (h *harness) assertDown(name string) {
	h.t.Helper()
	mounted, open, active := h.up(name)
	if mounted || open {
		h.t.Errorf("volume %s: mounted=%v mapping open=%v, want both false", name, mounted, open)
	}
	if active && h.cfg.Shared {
		h.t.Errorf("volume %s: LV active in a shared group while no container uses it", name)
	}
}

func (h *harness) assertUp(name string) {
	h.t.Helper()
	if mounted, open, active := h.up(name); !mounted || !open || !active {
		h.t.Errorf("volume %s: mounted=%v mapping open=%v LV active=%v, want all true", name, mounted, open, active)
	}
}

// assertConsistent checks the invariants a user relies on: every LV is a
// complete volume whose key exists and unlocks it; every key belongs to such
// a volume; a volume is up exactly when it has mount IDs; the journal is
// empty; nothing is mounted or open that is not a volume's.
func (h *harness) assertConsistent() {
	h.t.Helper()
	w := h.w
	snap := h.m.st.Snapshot()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(snap.Creating) > 0 || len(snap.Removing) > 0 || len(snap.Rotating) > 0 || len(snap.Trashing) > 0 || len(snap.Restoring) > 0 {
		h.t.Errorf("journal not empty: creating=%v removing=%v rotating=%v trashing=%v restoring=%v", snap.Creating, snap.Removing, snap.Rotating, snap.Trashing, snap.Restoring)
	}
	keyOwner := map[string]string{}
	for name, lv := range w.lvs {
		vol := strings.TrimPrefix(name, lvPrefix)
		if !slices.Contains(lv.Tags, TagOurs) || !slices.Contains(lv.Tags, TagReady) {
			h.t.Errorf("LV %s is not a complete volume: tags %v", name, lv.Tags)
			continue
		}
		hd, ok := w.headers[name]
		if !ok || hd.h.Token == nil || hd.h.Keyslots == 0 {
			h.t.Errorf("LV %s has no usable LUKS header", name)
			continue
		}
		k, ok := w.keys[hd.h.Token.KeyID]
		if !ok || !hd.opens(k.b) {
			h.t.Errorf("LV %s: its key %s is missing or does not unlock it (data lost)", name, hd.h.Token.KeyID)
		}
		keyOwner[hd.h.Token.KeyID] = vol
		// A volume in the trash: its token names the volume it was, its
		// key is Deactivated, and nothing of it is up.
		if trashed, _, isTrash := parseTrashID(vol); isTrash {
			if hd.h.Token.Volume != trashed || !ok || !k.deactivated || hd.h.Keyslots != 1 {
				h.t.Errorf("trash entry %s: token names %q, key deactivated %v, %d keyslots", vol, hd.h.Token.Volume, ok && k.deactivated, hd.h.Keyslots)
			}
			if _, open := w.mappings[mappingPrefix+vol]; open || len(snap.Mounts[vol]) > 0 {
				h.t.Errorf("trash entry %s is open or has mount IDs", vol)
			}
			continue
		}
		if ok && k.deactivated {
			h.t.Errorf("volume %s: its key %s is Deactivated: it cannot be mounted", vol, hd.h.Token.KeyID)
		}
		if hd.h.Token.Volume != vol {
			h.t.Errorf("volume %s: its token names volume %q", vol, hd.h.Token.Volume)
		}
		// Exactly one key opens a volume: a rotation leaves none behind.
		if hd.h.Keyslots != 1 {
			h.t.Errorf("LV %s has %d keyslots (%v), want exactly one", name, hd.h.Keyslots, hd.h.SlotIDs)
		}
		if tag := tagValue(lv.Tags, tagKeyPrefix); tag != "" && tag != hd.h.Token.KeyID {
			h.t.Errorf("LV %s: key tag %s, token %s", name, tag, hd.h.Token.KeyID)
		}
		if w.fsMade[name] == "" {
			h.t.Errorf("LV %s has no filesystem", name)
		}
		ids := snap.Mounts[vol]
		target := filepath.Join(h.cfg.MountRoot, vol)
		_, open := w.mappings[mappingPrefix+vol]
		mounted := w.mounts[target] == "/dev/mapper/"+mappingPrefix+vol
		if len(ids) > 0 != mounted || len(ids) > 0 != open || len(ids) > 0 && !lv.Active || len(ids) == 0 && lv.Active && h.cfg.Shared {
			h.t.Errorf("volume %s: %d mount IDs but mounted=%v open=%v active=%v (shared group: %v)", vol, len(ids), mounted, open, lv.Active, h.cfg.Shared)
		}
	}
	for id, k := range w.keys {
		if _, ok := keyOwner[id]; !ok {
			h.t.Errorf("orphan KMIP key %s (%s)", id, k.name)
		}
	}
	for mapping, lv := range w.mappings {
		if _, ok := w.lvs[lv]; !ok {
			h.t.Errorf("mapping %s open on a missing LV", mapping)
		}
	}
	for name := range snap.Mounts {
		if _, ok := w.lvs[lvPrefix+name]; !ok {
			h.t.Errorf("mount IDs recorded for missing volume %s", name)
		}
	}
	for target, src := range w.mounts {
		vol := filepath.Base(target)
		if len(snap.Mounts[vol]) == 0 {
			h.t.Errorf("%s mounted at %s with no mount ID", src, target)
		}
	}
}
