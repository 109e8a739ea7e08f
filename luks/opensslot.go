package luks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// OpensSlot reports whether passphrase opens keyslot slot of dev: that
// keyslot, not just any. A key rotation journaled by one host may find its
// keyslot number taken by another host's rotation, so a rotation is
// finished only once its own key is proven to open its own keyslot
// (volume/rotate.go, settleRotation). The header cryptvol writes is read
// here (plainheader.go), without a program; any other is asked of
// `cryptsetup open --test-passphrase --key-slot` (cryptsetup(8): exit code
// 2 for a passphrase the keyslot does not take).
func (c *Cryptsetup) OpensSlot(ctx context.Context, dev string, passphrase []byte, slot int) (bool, error) {
	if err := validateDevice(dev); err != nil {
		return false, err
	}
	if err := validateKey(passphrase); err != nil {
		return false, fmt.Errorf("test keyslot %d of %s: %w", slot, dev, err)
	}
	if slot < 0 || slot >= maxSlots {
		return false, fmt.Errorf("test keyslot %d of %s: not a LUKS2 keyslot (0-%d)", slot, dev, maxSlots-1)
	}
	if ok, err := opensSlotDirect(dev, passphrase, slot); !errors.Is(err, errNotDirect) {
		return ok, err
	}
	_, err := c.runWithKey(ctx, passphrase, "open", "--test-passphrase", "--type", "luks2",
		"--key-slot", strconv.Itoa(slot), "--key-file", "-", "--keyfile-size", strconv.Itoa(KeySize), dev)
	ok, err := answer(err, 2)
	if err != nil {
		return false, fmt.Errorf("test keyslot %d of %s: %w", slot, dev, err)
	}
	return ok, nil
}

// opensSlotDirect is OpensSlot for the header cryptvol writes, or
// errNotDirect.
func opensSlotDirect(dev string, passphrase []byte, slot int) (bool, error) {
	f, err := openDirect(dev, os.O_RDONLY)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errNotDirect, err)
	}
	defer f.Close()
	js, uuid, hdrSize, err := readHeader(f)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errNotDirect, err)
	}
	p, err := parsePlain(js, uuid, hdrSize)
	if err != nil {
		return false, err
	}
	for _, ks := range p.slots {
		if ks.id != strconv.Itoa(slot) {
			continue
		}
		vk, err := p.unlockSlot(f, ks, passphrase)
		defer clear(vk)
		return vk != nil, err
	}
	return false, nil // no such keyslot
}
