package luks

import (
	"context"
	"fmt"
)

// Resize makes an open mapping take the whole of its grown device
// (cryptsetup resize). A LUKS2 mapping whose volume key is not in the
// kernel keyring needs the passphrase, so it goes on stdin every time
// (cryptsetup-resize(8)); on a mapping that already fills its device it
// changes nothing, so a resize interrupted after it can run it again.
func (c *Cryptsetup) Resize(ctx context.Context, mapping string, key []byte) error {
	if err := ValidateMapping(mapping); err != nil {
		return err
	}
	if err := validateKey(key); err != nil {
		return fmt.Errorf("resize mapping %s: %w", mapping, err)
	}
	if _, err := c.runWithKey(ctx, key, "resize", "--key-file", "-", mapping); err != nil {
		return fmt.Errorf("resize mapping %s: %w", mapping, err)
	}
	return nil
}
