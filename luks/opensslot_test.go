package luks

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
)

// OpensSlot answers for the keyslot asked about only, the same whether it
// reads the header itself or asks cryptsetup (a header with 32 KiB of
// metadata, which the direct reader leaves to cryptsetup).
func TestHostOpensSlotTestsThatKeyslotOnly(t *testing.T) {
	ctx := context.Background()
	key, next := randomKey(t), randomKey(t)
	plain, _ := formatted(t, key)
	other := imageFile(t, 32<<20)
	cmd := exec.Command("cryptsetup", append(append([]string{}, formatArgs...), "--luks2-metadata-size", "32k", other)...)
	cmd.Stdin = bytes.NewReader(key)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("luksFormat: %v: %s", err, out)
	}
	c := New()
	for _, img := range []string{plain, other} {
		if err := c.AddKey(ctx, img, key, next, 1); err != nil {
			t.Fatal(err)
		}
		for _, q := range []struct {
			pass []byte
			slot int
			want bool
		}{
			{key, 0, true}, {key, 1, false}, {next, 1, true}, {next, 0, false}, {key, 5, false},
		} {
			got, err := c.OpensSlot(ctx, img, q.pass, q.slot)
			if q.slot == 5 && img == other {
				// cryptsetup refuses to test a keyslot that is not there.
				if got {
					t.Errorf("%s: keyslot 5 opened", img)
				}
				continue
			}
			if err != nil || got != q.want {
				t.Errorf("%s: keyslot %d with passphrase %d: %v, %v; want %v", img, q.slot, q.pass[2], got, err, q.want)
			}
		}
	}
	js, _, hdrSize := metadataOf(t, other)
	if _, err := parsePlain(js, "00000000-0000-0000-0000-000000000000", hdrSize); err == nil {
		t.Fatal("the 32 KiB header is read directly, so the cryptsetup path went untested")
	}
}
