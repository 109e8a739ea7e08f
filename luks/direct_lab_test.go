//go:build lab

package luks

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/internal/command"
)

// A rotated header (keyslot 1 listed before keyslot 0, the token moved)
// stays on the direct path, and what Open makes of it is what `cryptsetup
// open` makes: the strict reader (plainheader.go) takes the headers
// cryptvol's own rotation leaves.
func TestLabOpenRotatedHeaderAsCryptsetupDoes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lv, suffix, key := labLV(t, ctx, "cvlab-rot")
	mapping := lv.Name
	var ran []string
	cs := countingCryptsetup(func(c string) { ran = append(ran, c) })
	t.Cleanup(func() { cs.Close(context.Background(), mapping) })
	if err := cs.Format(ctx, lv.Path, key, Token{KeyID: "lab-" + suffix, Volume: "v" + suffix}); err != nil {
		t.Fatal(err)
	}
	next := make([]byte, len(key))
	copy(next, key)
	next[3] ^= 0x5a
	for _, step := range []func() error{
		func() error { return cs.AddKey(ctx, lv.Path, key, next, 1) },
		func() error {
			return cs.SetToken(ctx, lv.Path, 0, Token{KeyID: "lab2-" + suffix, Volume: "v" + suffix}, 1)
		},
		func() error { return cs.KillSlot(ctx, lv.Path, 0) },
		func() error { return cs.AddKey(ctx, lv.Path, next, key, 0) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	state := func() string { return mappingState(t, ctx, mapping) }
	for _, pass := range [][]byte{key, next} {
		if _, err := command.Run(ctx, command.ProgramAndAction, pass, "cryptsetup", "open", "--type", "luks2", "--key-file", "-", lv.Path, mapping); err != nil {
			t.Fatal(err)
		}
		want := state()
		if _, err := command.Run(ctx, command.ProgramAndAction, nil, "cryptsetup", "close", mapping); err != nil {
			t.Fatal(err)
		}
		ran = nil
		if err := cs.Open(ctx, lv.Path, mapping, pass, OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		if len(ran) != 0 {
			t.Errorf("Open of a rotated header ran %v, want no program", ran)
		}
		if got := state(); got != want {
			t.Errorf("Open made\n%s\ncryptsetup open makes\n%s", got, want)
		}
		if err := cs.Close(ctx, mapping); err != nil {
			t.Fatal(err)
		}
	}
}

// The LV whose header the direct open read cannot go away before its
// table is live: the device is held open until then, so lvremove refuses
// it, and the table never names a device number freed and given to
// another LV meanwhile.
func TestLabOpenHoldsTheDeviceUntilTheTableIsLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lv, suffix, key := labLV(t, ctx, "cvlab-hold")
	mapping := lv.Name
	cs := New()
	t.Cleanup(func() { cs.Close(context.Background(), mapping) })
	if err := cs.Format(ctx, lv.Path, key, Token{KeyID: "lab-" + suffix, Volume: "v" + suffix}); err != nil {
		t.Fatal(err)
	}
	var removeErr error
	tried := false
	activate := cs.dmActivate
	cs.dmActivate = func(a *activation, vk []byte) (uint64, error) {
		// Between reading the header and loading the table: what a
		// concurrent remove of the LV would do.
		tried = true
		_, removeErr = command.Run(ctx, command.ProgramAndAction, nil, "lvremove", "-f", lv.VG+"/"+lv.Name)
		return activate(a, vk)
	}
	err := cs.Open(ctx, lv.Path, mapping, key, OpenOptions{})
	if !tried {
		t.Fatalf("Open did not take the direct path (%v)", err)
	}
	if removeErr == nil {
		t.Fatalf("lvremove removed the LV while Open was loading its table (Open: %v)", err)
	}
	if !strings.Contains(removeErr.Error(), "in use") {
		t.Errorf("lvremove failed for another reason than the open device: %v", removeErr)
	}
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := cs.MappingOf(ctx, mapping, lv.Path); err != nil {
		t.Errorf("the mapping Open made is not the LV's: %v", err)
	}
}

// MappingOf tells the volume's own mapping from a device of the same name
// over another LV or of another kind, on the kernel's real sysfs.
func TestLabMappingOf(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lv, suffix, key := labLV(t, ctx, "cvlab-own")
	other, _, _ := labLV(t, ctx, "cvlab-own2")
	mapping := "cvlab-own-map-" + suffix
	cs := New()
	t.Cleanup(func() {
		cs.Close(context.Background(), mapping)
		command.Run(context.Background(), command.ProgramAndAction, nil, "dmsetup", "remove", mapping)
	})
	for _, dev := range []string{lv.Path, other.Path} {
		if err := cs.Format(ctx, dev, key, Token{KeyID: "lab-" + suffix, Volume: "v" + suffix}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.Open(ctx, lv.Path, mapping, key, OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.MappingOf(ctx, mapping, lv.Path); err != nil {
		t.Errorf("the LV's own mapping: %v", err)
	}
	if err := cs.MappingOf(ctx, mapping, other.Path); !errors.Is(err, ErrNotThisMapping) {
		t.Errorf("the mapping asked of another LV: %v, want ErrNotThisMapping", err)
	}
	if err := cs.Close(ctx, mapping); err != nil {
		t.Fatal(err)
	}
	// A linear device under the name, over the LV itself.
	table := "0 8192 linear " + lv.Path + " 0"
	if _, err := command.Run(ctx, command.ProgramAndAction, nil, "dmsetup", "create", mapping, "--table", table); err != nil {
		t.Fatal(err)
	}
	if err := cs.MappingOf(ctx, mapping, lv.Path); !errors.Is(err, ErrNotThisMapping) {
		t.Errorf("a linear device of that name: %v, want ErrNotThisMapping", err)
	}
}
