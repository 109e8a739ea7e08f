package luks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryptvol/cryptvol/internal/failpoint"
)

// Opening a plain LUKS2 volume without cryptsetup (unlock.go
// says which headers): the volume key is unlocked here, handed to the
// kernel's keyring as cryptsetup does, and the dm-crypt device is created,
// loaded and resumed with three ioctls. The table is the one cryptsetup
// 2.6 loads for the same header and options (the lab test compares them),
// so Close, IsOpen, resize and a later `cryptsetup` see the same mapping.

// dmUdevPrimarySource is DM_UDEV_PRIMARY_SOURCE_FLAG shifted into a
// cookie's flag bits (libdm-common.h), the event number libdevmapper sends
// when it does not wait for udev: udev's dm rules then treat the event as
// their own, as for cryptsetup's.
const dmUdevPrimarySource = 0x0040 << 16

// activation is what openDirect hands the kernel.
type activation struct {
	name, uuid string
	keyDesc    string // the logon key's description, as the table names it
	length     uint64 // 512-byte sectors
	params     []byte
	readOnly   bool
}

// openDirect opens dev as mapping without a program. It returns
// errNotDirect, having made nothing (or removed what it made), when
// anything stands in the way that cryptsetup would handle or explain
// better: a header of another kind, a device held by someone else, a
// passphrase no keyslot takes, no kernel keyring. Any other error is
// Open's.
func (c *Cryptsetup) openDirect(dev, mapping string, passphrase []byte, opts OpenOptions) error {
	f, a, vk, err := c.prepare(dev, mapping, passphrase, opts)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotDirect, err)
	}
	defer clear(vk)
	// The device stays open until its table is live: an open device cannot
	// be removed (lvremove refuses a device in use), so the number the table
	// names is still the device whose header was read, not one made since
	// under a freed number.
	defer f.Close()
	devNum, err := c.dmActivate(a, vk)
	if err != nil {
		return err
	}
	failpoint.Here("dm-node")
	if err := c.ensureNode(mapping, devNum); err != nil {
		if rerr := c.dmRemove(mapping); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing %s again: %w", mapping, rerr))
		}
		return err
	}
	return nil
}

// prepare reads dev's header, unlocks the volume key and lays out the
// table. A device something is stacked on already (a mapping, dm's own
// claim, which a second dm-crypt table would share) is cryptsetup's to
// refuse; a claim of another kind (a mount, a program's O_EXCL) makes the
// table load fail with EBUSY (activateDM). cryptsetup holds the device
// with O_EXCL for this check instead: in a process that starts programs
// from other goroutines, a child between fork and exec holds a copy of
// that descriptor, and with it the claim, for a moment after it is closed
// (one create in 200 failed so in the lab's parallel batch).
//
// The device is returned open, for the caller to close once the table is
// loaded; on an error it is closed here.
func (c *Cryptsetup) prepare(dev, mapping string, passphrase []byte, opts OpenOptions) (_ *os.File, _ *activation, _ []byte, err error) {
	f, err := openDirect(dev, os.O_RDONLY)
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	js, uuid, hdrSize, err := readHeader(f)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := parsePlain(js, uuid, hdrSize)
	if err != nil {
		return nil, nil, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, nil, nil, fmt.Errorf("%s is not a block device", dev)
	}
	holders, err := os.ReadDir(filepath.Join(c.sysDevBlock, fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), "holders"))
	if err != nil || len(holders) > 0 {
		return nil, nil, nil, fmt.Errorf("%s is held by %d devices (%v)", dev, len(holders), err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, nil, nil, err
	}
	a, err := p.activation(mapping, uint64(size), unix.Major(st.Rdev), unix.Minor(st.Rdev), opts)
	if err != nil {
		return nil, nil, nil, err
	}
	vk, err := p.unlock(f, passphrase)
	if err != nil {
		return nil, nil, nil, err
	}
	return f, a, vk, nil
}

// activation lays out the dm-crypt table for a device of size bytes
// (dm-crypt's documentation, admin-guide/device-mapper/dm-crypt.rst):
// cipher, key reference, IV offset, device, start, and the optional
// arguments in the order cryptsetup writes them.
func (p *plainHeader) activation(mapping string, size uint64, major, minor uint32, opts OpenOptions) (*activation, error) {
	unit := uint64(p.sectorSize / 512)
	if size <= p.offset {
		return nil, fmt.Errorf("device of %d bytes ends before the data segment at %d", size, p.offset)
	}
	length := (size - p.offset) / 512 / unit * unit
	if length == 0 {
		return nil, errors.New("no data sectors")
	}
	var features []string
	if opts.AllowDiscards {
		features = append(features, "allow_discards")
	}
	if opts.NoWorkqueue {
		features = append(features, "no_read_workqueue", "no_write_workqueue")
	}
	if p.sectorSize != 512 {
		features = append(features, fmt.Sprintf("sector_size:%d", p.sectorSize))
	}
	desc := fmt.Sprintf("cryptsetup:%s-d%s", p.uuid, p.digestID)
	// The IV offset is the segment's iv_tweak, which parsePlain takes only
	// as 0.
	params := fmt.Sprintf("%s :%d:logon:%s 0 %d:%d %d", Cipher, p.keySize, desc, major, minor, p.offset/512)
	if len(features) > 0 {
		params += fmt.Sprintf(" %d %s", len(features), strings.Join(features, " "))
	}
	return &activation{
		name:     mapping,
		uuid:     "CRYPT-LUKS2-" + strings.ReplaceAll(p.uuid, "-", "") + "-" + mapping,
		keyDesc:  desc,
		length:   length,
		params:   []byte(params),
		readOnly: opts.ReadOnly,
	}, nil
}

// activateDM makes a's device live with vk and returns its number. The
// key goes into this thread's keyring only for as long as the table load
// takes: dm-crypt copies it from there, and the key is revoked and
// unlinked before the thread is given back. A device it created and could
// not make live is removed again, panics included.
func activateDM(a *activation, vk []byte) (devNum uint64, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	id, err := unix.AddKey("logon", a.keyDesc, vk, unix.KEY_SPEC_THREAD_KEYRING)
	if err != nil {
		// No keyring (a seccomp filter, a kernel without it): cryptsetup
		// knows the other ways.
		return 0, fmt.Errorf("%w: kernel keyring: %w", errNotDirect, err)
	}
	defer func() {
		unix.KeyctlInt(unix.KEYCTL_REVOKE, id, 0, 0, 0)
		unix.KeyctlInt(unix.KEYCTL_UNLINK, id, unix.KEY_SPEC_THREAD_KEYRING, 0, 0)
	}()
	failpoint.Here("dm-create")
	if _, err := dmCall(dmDevCreateCmd, a.name, a.uuid, 0, 0, nil); err != nil {
		if errors.Is(err, unix.EBUSY) {
			// A device of that name or uuid exists: cryptsetup says which.
			return 0, fmt.Errorf("%w: DM_DEV_CREATE %s: %w", errNotDirect, a.name, err)
		}
		return 0, fmt.Errorf("DM_DEV_CREATE %s: %w", a.name, err)
	}
	// fallback: the failure leaves the device to cryptsetup, once the one
	// made here is gone again.
	live, fallback := false, false
	defer func() {
		if live {
			return
		}
		switch rerr := removeDM(a.name); {
		case rerr != nil && !errors.Is(rerr, unix.ENXIO):
			// Not made nothing after all: no fallback either.
			err = fmt.Errorf("%w; removing the half-made %s again: %w", err, a.name, rerr)
		case fallback:
			err = fmt.Errorf("%w: %w", errNotDirect, err)
		}
	}()
	flags := uint32(dmSecureDataFlag)
	if a.readOnly {
		flags |= dmReadonlyFlag
	}
	failpoint.Here("dm-table-load")
	if _, err := dmCall(dmTableLoadCmd, a.name, "", flags, 0, targetSpec(0, a.length, "crypt", a.params)); err != nil {
		// EBUSY: the device is claimed (mounted, held open
		// exclusively), and cryptsetup's refusal says so.
		fallback = errors.Is(err, unix.EBUSY)
		return 0, fmt.Errorf("DM_TABLE_LOAD %s: %w", a.name, err)
	}
	failpoint.Here("dm-resume")
	reply, err := dmCall(dmDevSuspendCmd, a.name, "", 0, dmUdevPrimarySource, nil)
	if err != nil {
		return 0, fmt.Errorf("DM_DEV_SUSPEND (resume) %s: %w", a.name, err)
	}
	live = true
	return binary.NativeEndian.Uint64(reply[offDMDev:]), nil
}

// ensureNode makes /dev/mapper/<mapping> the device devNum, as
// libdevmapper does where no udev runs (a node of mode 0600), after
// checking that the kernel lists the device under that name. A node left
// by a device since removed is replaced; a node that is something else is
// an error (openDirect then removes the device again).
func (c *Cryptsetup) ensureNode(mapping string, devNum uint64) error {
	sys := filepath.Join(c.sysDevBlock, fmt.Sprintf("%d:%d", unix.Major(devNum), unix.Minor(devNum)))
	if name, err := readLine(filepath.Join(sys, "dm", "name")); err != nil || name != mapping {
		return fmt.Errorf("the kernel made device %d:%d for %s but does not list it under that name (%q, %v)",
			unix.Major(devNum), unix.Minor(devNum), mapping, name, err)
	}
	node := filepath.Join(c.devMapper, mapping)
	now, err := c.devNumber(node)
	switch {
	case err == nil && now == devNum:
		return nil // udev made it already
	case err == nil:
		if err := os.Remove(node); err != nil {
			return fmt.Errorf("removing the stale node %s: %w", node, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: %w", node, err)
	}
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(devNum)); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("making %s: %w", node, err)
	}
	if now, err := c.devNumber(node); err != nil || now != devNum {
		return fmt.Errorf("%s is not device %d:%d (%v)", node, unix.Major(devNum), unix.Minor(devNum), err)
	}
	return nil
}
