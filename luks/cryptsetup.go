package luks

import (
	"context"
	"errors"
	"fmt"

	"github.com/cryptvol/cryptvol/internal/blockdev"
	"github.com/cryptvol/cryptvol/internal/command"
)

// KeySize is the passphrase length cryptvol uses: one AES-256 key from KMIP.
const KeySize = 32

// Cipher and KeyBits are the data cipher and volume key size of every
// volume cryptvol formats, and the only ones Header.Check accepts.
const (
	Cipher  = "aes-xts-plain64"
	KeyBits = 512
)

// Cryptsetup runs cryptsetup, and asks device-mapper which mappings exist.
type Cryptsetup struct {
	exec command.Exec
	// Open's and Close's direct paths (dmcreate.go, dmremove.go) and
	// IsOpen's (mapped.go): /dev/mapper, /sys/dev/block, a stat and the
	// ioctls; tests replace them.
	devMapper   string
	sysDevBlock string
	devNumber   func(path string) (uint64, error)
	dmRemove    func(name string) error
	dmActivate  func(a *activation, vk []byte) (uint64, error)
	dmStatus    func(name string) (dmInfo, error)
	dmList      func() ([]string, error)
}

// Option configures a Cryptsetup.
type Option func(*Cryptsetup)

// WithExec replaces the command runner (tests use a fake).
func WithExec(e command.Exec) Option { return func(c *Cryptsetup) { c.exec = e } }

// New returns a Cryptsetup that runs the cryptsetup binary from PATH.
func New(opts ...Option) *Cryptsetup {
	c := &Cryptsetup{exec: command.Runner(command.ProgramAndAction),
		devMapper: "/dev/mapper", sysDevBlock: "/sys/dev/block", devNumber: blockdev.Number,
		dmRemove: removeDM, dmActivate: activateDM, dmStatus: statusDM, dmList: listDM}
	for _, o := range opts {
		o(c)
	}
	return c
}

func (c *Cryptsetup) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	return c.exec(ctx, stdin, "cryptsetup", args...)
}

// runWithKey passes a private copy of key on stdin and zeroes the copy
// afterwards, so the caller's Wipe of its own buffer leaves nothing behind.
func (c *Cryptsetup) runWithKey(ctx context.Context, key []byte, args ...string) ([]byte, error) {
	buf := make([]byte, len(key))
	copy(buf, key)
	defer clear(buf)
	return c.run(ctx, buf, args...)
}

func exitCode(err error) int {
	var e *command.Error
	if errors.As(err, &e) {
		return e.ExitCode
	}
	return -1
}

// isLuks reports whether dev has a LUKS header (of version luks2 if typ is
// set). cryptsetup isLuks exits 1 for "no such header"; anything else
// (4: no such device) is a real error.
func (c *Cryptsetup) isLuks(ctx context.Context, dev, typ string) (bool, error) {
	args := []string{"isLuks"}
	if typ != "" {
		args = append(args, "--type", typ)
	}
	_, err := c.run(ctx, nil, append(args, dev)...)
	return answer(err, 1)
}

// answer turns a query's exit into yes or no: 0 is yes, no (the program's
// "no" code, cryptsetup(8) RETURN CODES) is no, anything else an error.
func answer(err error, no int) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case exitCode(err) == no:
		return false, nil
	}
	return false, err
}

// Open maps dev to /dev/mapper/<mapping> with key as the passphrase: a
// header as Format writes it without a program (dmcreate.go), any other
// with cryptsetup open, which also has the last word on a key no keyslot
// takes. The caller verifies the header (Inspect) first; cryptsetup itself
// refuses a wrong key or a non-LUKS2 device.
func (c *Cryptsetup) Open(ctx context.Context, dev, mapping string, key []byte, opts OpenOptions) error {
	if err := validateDevice(dev); err != nil {
		return err
	}
	if err := ValidateMapping(mapping); err != nil {
		return err
	}
	if err := validateKey(key); err != nil {
		return fmt.Errorf("open %s as %s: %w", dev, mapping, err)
	}
	if err := c.openDirect(dev, mapping, key, opts); !errors.Is(err, errNotDirect) {
		if err != nil {
			return fmt.Errorf("open %s as %s: %w", dev, mapping, err)
		}
		return nil
	}
	args := []string{"open", "--type", "luks2", "--key-file", "-"}
	if opts.NoWorkqueue {
		// Bypass dm-crypt's kcryptd queues: lower latency on fast devices.
		args = append(args, "--perf-no_read_workqueue", "--perf-no_write_workqueue")
	}
	if opts.AllowDiscards {
		args = append(args, "--allow-discards")
	}
	if opts.ReadOnly {
		args = append(args, "--readonly")
	}
	if _, err := c.runWithKey(ctx, key, append(args, dev, mapping)...); err != nil {
		return fmt.Errorf("open %s as %s: %w", dev, mapping, err)
	}
	return nil
}

// Close removes the mapping: a plain LUKS2 mapping, or a tableless device
// an interrupted open left, with one ioctl (dmremove.go), anything else
// with cryptsetup close. A mapping that is not open is already closed,
// which makes Close safe to retry. One still held open is ErrBusy. Close
// returns nil only when device-mapper has no device of that name left.
func (c *Cryptsetup) Close(ctx context.Context, mapping string) error {
	if err := ValidateMapping(mapping); err != nil {
		return err
	}
	if err := c.closeDirect(mapping); !errors.Is(err, errNotDirect) {
		return err
	}
	if _, err := c.run(ctx, nil, "close", mapping); err != nil {
		switch exitCode(err) {
		case 4:
		case 5:
			return fmt.Errorf("close mapping %s: %w: %w", mapping, ErrBusy, err)
		default:
			return fmt.Errorf("close mapping %s: %w", mapping, err)
		}
	}
	// Closed means gone from device-mapper's name table: cryptsetup's
	// "not active" (exit 4) is also its answer for a device it does not
	// take for a mapping of its own.
	if _, err := c.dmStatus(mapping); !gone(err) {
		return fmt.Errorf("close mapping %s: cryptsetup close answered, but device-mapper still has a device of that name (%v)", mapping, err)
	}
	return nil
}

// Erase destroys dev's LUKS header, making its data unrecoverable even to a
// holder of the passphrase. A header both of whose copies are intact and in
// sync is wiped whole, without a program (wipe.go); any other is left to
// `cryptsetup erase`, which drops every keyslot and overwrites their areas.
// A device held open (a mapping, a mount) wraps ErrBusy; a device without a
// header wraps ErrNotLUKS.
func (c *Cryptsetup) Erase(ctx context.Context, dev string) error {
	if err := validateDevice(dev); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("erase %s: %w", dev, err)
	}
	switch err := wipeHeader(dev); {
	case err == nil:
		return nil
	case !errors.Is(err, errFallback):
		return fmt.Errorf("erase %s: %w", dev, err)
	}
	if _, err := c.run(ctx, nil, "luksErase", "--batch-mode", dev); err != nil {
		if is, lerr := c.isLuks(ctx, dev, ""); lerr == nil && !is {
			return fmt.Errorf("erase %s: %w", dev, ErrNotLUKS)
		}
		return fmt.Errorf("erase %s: %w", dev, err)
	}
	return nil
}
