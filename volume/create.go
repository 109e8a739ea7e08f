package volume

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/luks"
	"github.com/cryptvol/cryptvol/lvm"
)

// keyIDTagRE limits which KMIP ids are copied into an LV tag; others are
// recorded in the LUKS token only.
var keyIDTagRE = regexp.MustCompile(`^[A-Za-z0-9_+.-]{1,100}$`)

// Create makes the volume: KMIP key, LV, LUKS2 header with our token,
// filesystem; it leaves the mapping closed and the LV inactive. Everything
// is validated before anything is made. Creating an existing volume succeeds
// when the options the caller gave match it, and fails saying what differs.
// A failure at any step undoes the steps before it.
func (m *Manager) Create(ctx context.Context, name string, opts map[string]string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	o, err := ParseOptions(opts, m.defaults())
	if err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	unlock := m.lock(name)
	defer unlock()
	log := m.logFor(name, "create")

	lv, err := m.lvm.LV(ctx, lvName(name))
	switch {
	case err == nil:
		if !hasTag(lv.Tags, TagOurs) {
			return fmt.Errorf("volume %q: LV %s/%s exists but is not a cryptvol volume (it has no %q tag); choose another name", name, m.cfg.VG, lv.Name, TagOurs)
		}
		if hasTag(lv.Tags, TagReady) {
			return m.compare(ctx, name, lv, o)
		}
		// Holding the volume's lock, nobody else is creating it: this is
		// what an interrupted create left behind.
		log.Warn("undoing a half-made volume left by an interrupted create before creating it again")
		if _, err := m.destroy(ctx, name, &lv, true, log); err != nil {
			return fmt.Errorf("volume %q: cleaning up an interrupted create: %w", name, err)
		}
	case errors.Is(err, lvm.ErrNotFound):
	default:
		return fmt.Errorf("volume %q: %w", name, err)
	}
	// Beyond MaxCreates, a create waits here, before it makes anything.
	// Fifty creates let loose at once share the CPUs, the VG lock and the
	// KMIP connection so thinly that none finishes within docker's deadline
	// and all are undone (in the lab, under emulation: 0 of 50 in each of
	// the first two rounds). In line, the first ones finish, and one that
	// runs out of time waiting fails with nothing made.
	select {
	case m.creates <- struct{}{}:
		defer func() { <-m.creates }()
	case <-ctx.Done():
		return fmt.Errorf("volume %q: not created, nothing was made: the request's time ran out while %d other creates were building (CRYPTVOL_MAX_CREATES); retry: %w",
			name, m.cfg.MaxCreates, ctx.Err())
	}
	if err := m.checkCapacity(ctx, name, o, log); err != nil {
		return err
	}

	// The journal entry lets a restarted plugin undo a create that a crash
	// interrupted, including a KMIP key made before any LV existed.
	if err := m.st.update(func(s *state) { s.Creating = addSorted(s.Creating, name) }); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	if err := m.create(ctx, name, o, log); err != nil {
		return err
	}
	if err := m.st.update(func(s *state) { s.Creating = removeSorted(s.Creating, name) }); err != nil {
		// The volume is complete (it carries TagReady); reconciliation
		// drops a journal entry for a complete volume.
		log.WithError(err).Warn("volume created but its journal entry could not be cleared")
	}
	log.WithFields(logrus.Fields{"size": o.Size, "fs": o.FS, "thin": o.Thin}).Info("volume created")
	return nil
}

// undoStep is one action that reverses a completed create step.
type undoStep struct {
	what string
	fn   func(context.Context) error
}

// create runs the steps; on failure it undoes them in reverse. The journal
// entry is cleared only when the undo completed.
func (m *Manager) create(ctx context.Context, name string, o Options, log logrus.FieldLogger) (err error) {
	var undo []undoStep
	step := ""
	defer func() {
		if err == nil {
			return
		}
		err = fmt.Errorf("volume %q: create failed at %s: %w", name, step, err)
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		var failed []string
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i].fn(cctx); uerr != nil {
				log.WithError(uerr).WithField("undo", undo[i].what).Error("undo of a failed create failed")
				failed = append(failed, undo[i].what+": "+uerr.Error())
			}
		}
		if len(failed) > 0 {
			err = fmt.Errorf("%w (cleanup incomplete, it will be retried at the next create of this name or plugin start: %s)", err, strings.Join(failed, "; "))
			return
		}
		if jerr := m.st.update(func(s *state) { s.Creating = removeSorted(s.Creating, name) }); jerr != nil {
			log.WithError(jerr).Warn("failed create undone but its journal entry could not be cleared")
		}
	}()

	keyName := m.keyName(name)
	step = "KMIP key creation"
	// A KMIP create that timed out may still have made the key; Locate by
	// name finds it whether or not we learnt its id.
	undo = append(undo, undoStep{"destroy KMIP key", func(ctx context.Context) error {
		return m.destroyKeysNamed(ctx, keyName, nil)
	}})
	keyID, err := m.keys.Create(ctx, keyName)
	if err != nil {
		return err
	}
	undo[len(undo)-1] = undoStep{"destroy KMIP key", func(ctx context.Context) error {
		return m.destroyKeysNamed(ctx, keyName, []string{keyID})
	}}

	step = "lvcreate"
	tags := []string{TagOurs, tagFSPrefix + o.FS}
	if keyIDTagRE.MatchString(keyID) {
		tags = append(tags, tagKeyPrefix+keyID)
	}
	req := lvm.CreateRequest{Name: lvName(name), Size: o.Size, Tags: tags}
	if o.Thin {
		req.Pool = m.cfg.ThinPool
	}
	// Registered before lvcreate runs: a timed-out lvcreate may still have
	// made the LV.
	undo = append(undo, undoStep{"remove LV", func(ctx context.Context) error {
		if err := m.lvm.Deactivate(ctx, lvName(name)); err != nil && !errors.Is(err, lvm.ErrNotFound) {
			return err
		}
		if err := m.lvm.RemoveLV(ctx, lvName(name)); err != nil && !errors.Is(err, lvm.ErrNotFound) {
			return err
		}
		return nil
	}})
	lv, err := m.lvm.CreateLV(ctx, req)
	if err != nil {
		return err
	}
	step = "LV activation"
	if err := m.lvm.Activate(ctx, lvName(name)); err != nil {
		return err
	}
	dev := m.devPath(lv)

	step = "KMIP key fetch"
	key, err := m.keys.Get(ctx, keyID)
	if err != nil {
		return err
	}
	defer key.Wipe()

	step = "luksFormat"
	if err := m.crypt.Format(ctx, dev, key.Bytes(), luks.Token{KeyID: keyID, Volume: name}); err != nil {
		return err
	}
	step = "cryptsetup open"
	undo = append(undo, undoStep{"close mapping", func(ctx context.Context) error {
		return m.crypt.Close(ctx, mappingName(name))
	}})
	if err := m.crypt.Open(ctx, dev, mappingName(name), key.Bytes(), luks.OpenOptions{NoWorkqueue: m.cfg.NoWorkqueue}); err != nil {
		return err
	}
	key.Wipe()

	step = "mkfs." + o.FS
	if err := m.fs.Mkfs(ctx, mapperPath(name), o.FS); err != nil {
		return err
	}
	step = "cryptsetup close"
	if err := m.crypt.Close(ctx, mappingName(name)); err != nil {
		return err
	}
	step = "LV deactivation"
	if err := m.lvm.Deactivate(ctx, lvName(name)); err != nil {
		return err
	}
	step = "marking the volume complete"
	if err := m.lvm.AddTag(ctx, lvName(name), TagReady); err != nil {
		return err
	}
	return nil
}

// destroyKeysNamed destroys the given key ids and every key Located under
// keyName. Destroy of an unknown id succeeds.
func (m *Manager) destroyKeysNamed(ctx context.Context, keyName string, ids []string) error {
	found, err := m.keys.Locate(ctx, keyName)
	if err != nil {
		return fmt.Errorf("locating KMIP keys named %q: %w", keyName, err)
	}
	for _, id := range appendUnique(ids, found...) {
		if err := m.keys.Destroy(ctx, id); err != nil {
			return fmt.Errorf("destroying KMIP key %q: %w", id, err)
		}
	}
	return nil
}

func appendUnique(list []string, vs ...string) []string {
	for _, v := range vs {
		if v != "" && !hasTag(list, v) {
			list = append(list, v)
		}
	}
	return list
}

// compare decides whether an existing volume satisfies a create request.
// Only options the caller gave are compared: leaving an option out accepts
// the existing value, as docker does for its own volumes.
func (m *Manager) compare(ctx context.Context, name string, lv lvm.LV, o Options) error {
	var diffs []string
	if o.SizeSet {
		vg, err := m.lvm.VG(ctx)
		if err != nil {
			return fmt.Errorf("volume %q: %w", name, err)
		}
		// lvm rounds sizes up to whole extents.
		if same := lv.Size >= o.Size && lv.Size-o.Size < max(vg.ExtentSize, 1); !same {
			diffs = append(diffs, fmt.Sprintf("size is %s, requested %s", FormatSize(lv.Size), FormatSize(o.Size)))
		}
	}
	if fs := tagValue(lv.Tags, tagFSPrefix); o.FSSet && fs != o.FS {
		diffs = append(diffs, fmt.Sprintf("fs is %s, requested %s", fs, o.FS))
	}
	if thin := lv.Pool != ""; o.ThinSet && thin != o.Thin {
		diffs = append(diffs, fmt.Sprintf("thin is %t, requested %t", thin, o.Thin))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("volume %q already exists with different options: %s", name, strings.Join(diffs, "; "))
	}
	return nil
}

// checkCapacity refuses sizes the volume group cannot give: a thick volume
// needs its whole size free; a thin one may exceed the pool's free space
// (that is what thin is for) but never the whole group.
func (m *Manager) checkCapacity(ctx context.Context, name string, o Options, log logrus.FieldLogger) error {
	vg, err := m.lvm.VG(ctx)
	if err != nil {
		return fmt.Errorf("volume %q: reading volume group: %w", name, err)
	}
	size := roundUp(o.Size, vg.ExtentSize)
	min := minSize[o.FS]
	if o.Thin {
		if size > vg.Size {
			return fmt.Errorf("volume %q: size %s is more than the whole volume group %q (%s) (allowed for a thin %s volume: %s to %s)",
				name, FormatSize(o.Size), m.cfg.VG, FormatSize(vg.Size), o.FS, FormatSize(min), FormatSize(vg.Size))
		}
		if free, err := m.lvm.PoolFree(ctx, m.cfg.ThinPool); err != nil {
			log.WithError(err).Warn("could not read the thin pool's free space")
		} else if size > free {
			log.WithFields(logrus.Fields{"size": size, "pool_free": free}).
				Warn("thin volume is larger than the pool's free space: writes will fail if the pool fills")
		}
		return nil
	}
	if size > vg.Free {
		if vg.Free < min {
			return fmt.Errorf("volume %q: size %s is more than volume group %q can give: only %s free, less than the %s minimum of %s",
				name, FormatSize(o.Size), m.cfg.VG, FormatSize(vg.Free), o.FS, FormatSize(min))
		}
		return fmt.Errorf("volume %q: size %s is more than the %s free in volume group %q (allowed for a thick %s volume: %s to %s)",
			name, FormatSize(o.Size), FormatSize(vg.Free), m.cfg.VG, o.FS, FormatSize(min), FormatSize(vg.Free))
	}
	return nil
}
