package luks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotThisMapping says a device-mapper device of the expected name is
// not the LUKS2 mapping of the expected device.
var ErrNotThisMapping = errors.New("not the LUKS2 mapping of this device")

// MappingOf returns nil when the device-mapper device called mapping is
// the LUKS2 mapping of dev that cryptsetup, or Open, makes: its dm uuid is
// CRYPT-LUKS2-<dev's header uuid without dashes>-<mapping>, and the
// device under it is dev (or, with integrity, the dm-integrity device
// cryptsetup stacked on dev). A caller about to use a mapping it did not
// open itself asks this first, so that a device someone else made under
// the name is never taken for the volume. It reads sysfs (the dm sysfs
// ABI, Documentation/ABI/testing/sysfs-block-dm) and dev's header, and
// wraps ErrNotThisMapping when the answer is no.
func (c *Cryptsetup) MappingOf(ctx context.Context, mapping, dev string) error {
	if err := ValidateMapping(mapping); err != nil {
		return err
	}
	if err := validateDevice(dev); err != nil {
		return err
	}
	not := func(why string, a ...any) error {
		return fmt.Errorf("mapping %s: %w %s: %s", mapping, ErrNotThisMapping, dev, fmt.Sprintf(why, a...))
	}
	num, err := c.devNumber(filepath.Join(c.devMapper, mapping))
	if err != nil {
		return fmt.Errorf("mapping %s: %w", mapping, err)
	}
	sys := c.sysDev(num)
	if name, err := readLine(filepath.Join(sys, "dm", "name")); err != nil || name != mapping {
		return not("its node is device %d:%d, which the kernel calls %q", unix.Major(num), unix.Minor(num), name)
	}
	uuid, err := c.headerUUID(ctx, dev)
	if err != nil {
		return fmt.Errorf("mapping %s: reading the header of %s: %w", mapping, dev, err)
	}
	want := "CRYPT-LUKS2-" + strings.ReplaceAll(uuid, "-", "") + "-" + mapping
	if got, err := readLine(filepath.Join(sys, "dm", "uuid")); err != nil || got != want {
		return not("its dm uuid is %q, the header's mapping has %q", got, want)
	}
	devNum, err := c.devNumber(dev)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", mapping, err)
	}
	under, err := c.onlySlave(sys)
	if err != nil {
		return not("%v", err)
	}
	if u, err := readLine(filepath.Join(under, "dm", "uuid")); err == nil &&
		(strings.HasPrefix(u, "CRYPT-SUBDEV-") || strings.HasPrefix(u, "CRYPT-INTEGRITY-")) {
		if under, err = c.onlySlave(under); err != nil {
			return not("under its integrity device: %v", err)
		}
	}
	if got, err := readLine(filepath.Join(under, "dev")); err != nil || got != fmt.Sprintf("%d:%d", unix.Major(devNum), unix.Minor(devNum)) {
		return not("it is stacked on device %s, not on %d:%d", got, unix.Major(devNum), unix.Minor(devNum))
	}
	return nil
}

func (c *Cryptsetup) sysDev(num uint64) string {
	return filepath.Join(c.sysDevBlock, fmt.Sprintf("%d:%d", unix.Major(num), unix.Minor(num)))
}

// onlySlave is the sysfs directory of the one device under the device at
// sys.
func (c *Cryptsetup) onlySlave(sys string) (string, error) {
	slaves, err := os.ReadDir(filepath.Join(sys, "slaves"))
	if err != nil {
		return "", err
	}
	if len(slaves) != 1 {
		return "", fmt.Errorf("it is stacked on %d devices", len(slaves))
	}
	return filepath.Join(sys, "slaves", slaves[0].Name()), nil
}

// headerUUID is the uuid of dev's LUKS2 header, read from the device when
// both copies are intact, else from cryptsetup.
func (c *Cryptsetup) headerUUID(ctx context.Context, dev string) (string, error) {
	if f, err := openDirect(dev, os.O_RDONLY); err == nil {
		_, uuid, _, err := readHeader(f)
		f.Close()
		if err == nil && validUUID(uuid) {
			return uuid, nil
		}
	}
	out, err := c.run(ctx, nil, "luksUUID", dev)
	if err != nil {
		return "", err
	}
	uuid := string(bytes.TrimSpace(out))
	if !validUUID(uuid) {
		return "", fmt.Errorf("luksUUID answered %q", uuid)
	}
	return uuid, nil
}
