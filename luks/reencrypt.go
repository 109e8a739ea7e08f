package luks

import (
	"context"
	"fmt"
	"slices"
)

// reencryptArgs re-encrypt the data under a new volume key in place, online
// when the device is active (cryptsetup-reencrypt(8)): the passphrase on
// stdin unlocks the old volume key and protects the new one, in a keyslot
// with the same parameters as Format's. cryptsetup moves the keyslot and the
// token's reference to it itself.
var reencryptArgs = []string{
	"reencrypt", "--batch-mode", "--key-file", "-",
	"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha256",
}

// ReencryptOptions tune Reencrypt.
type ReencryptOptions struct {
	// Resume continues a reencryption the header shows in progress
	// (Header.Reencrypting) instead of starting one.
	Resume bool
	// ForceOffline is for image files, where cryptsetup cannot tell
	// whether the device is active (tests); never for a block device.
	ForceOffline bool
}

// Reencrypt re-encrypts dev's data under a new random volume key, with key
// as the passphrase before and after. Interrupted (SIGTERM at the
// deadline, a crash), it leaves the header in a state that opens, and that
// a Reencrypt with Resume finishes.
func (c *Cryptsetup) Reencrypt(ctx context.Context, dev string, key []byte, o ReencryptOptions) error {
	if err := validateDevice(dev); err != nil {
		return err
	}
	if err := validateKey(key); err != nil {
		return fmt.Errorf("reencrypt %s: %w", dev, err)
	}
	args := slices.Clone(reencryptArgs)
	if o.Resume {
		args = append(args, "--resume-only")
	}
	if o.ForceOffline {
		args = append(args, "--force-offline-reencrypt")
	}
	if _, err := c.runWithKey(ctx, key, append(args, dev)...); err != nil {
		return fmt.Errorf("reencrypt %s: %w", dev, err)
	}
	return nil
}
