//go:build lab

package luks

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/internal/command"
	"github.com/cryptvol/cryptvol/lvm"
	"golang.org/x/sys/unix"
)

// labLV makes a 64 MiB LV called prefix-<suffix> in CRYPTVOL_LAB_VG
// (skipping outside the lab), removed at cleanup, and a random passphrase.
// A test's own cleanup, registered after this call, runs first: it closes
// the mappings that would hold the LV.
func labLV(t *testing.T, ctx context.Context, prefix string) (lv lvm.LV, suffix string, key []byte) {
	t.Helper()
	vgName := os.Getenv("CRYPTVOL_LAB_VG")
	if vgName == "" {
		t.Skip("CRYPTVOL_LAB_VG is not set (lab only)")
	}
	lvc, err := lvm.New(vgName)
	if err != nil {
		t.Fatal(err)
	}
	suffix = fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	name := prefix + "-" + suffix
	if err := lvc.CreateLV(ctx, lvm.CreateRequest{Name: name, Size: 64 << 20, Tags: []string{"cvlabtest"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lvc.RemoveLV(context.Background(), name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if lv, err = lvc.LV(ctx, name); err != nil {
		t.Fatal(err)
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return lv, suffix, key
}

// mappingState is what the kernel shows of mapping: its table, name,
// uuid and attributes (dmsetup), for comparing two ways of opening.
func mappingState(t *testing.T, ctx context.Context, mapping string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"table", mapping}, {"info", "--noheadings", "-c", "-o", "name,uuid,attr", mapping}} {
		out, err := command.Run(ctx, command.ProgramAndAction, nil, "dmsetup", args...)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
	}
	return b.String()
}

// countingCryptsetup is a Cryptsetup running the real programs, each
// passed to seen ("program action") first.
func countingCryptsetup(seen func(string)) *Cryptsetup {
	return New(WithExec(func(ctx context.Context, stdin []byte, prog string, args ...string) ([]byte, error) {
		seen(prog + " " + args[0])
		return command.Runner(command.ProgramAndAction)(ctx, stdin, prog, args...)
	}))
}

func TestLabFormatOpenCloseErase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lv, suffix, key := labLV(t, ctx, "cvlab-luks")
	mapping := lv.Name
	runs := 0
	cs := countingCryptsetup(func(string) { runs++ })
	t.Cleanup(func() {
		if err := cs.Close(context.Background(), mapping); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := cs.Format(ctx, lv.Path, key, Token{KeyID: "lab-" + suffix, Volume: "v" + suffix}); err != nil {
		t.Fatal(err)
	}
	h, err := cs.Inspect(ctx, lv.Path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 2 || h.Cipher != "aes-xts-plain64" || h.KeyBits != 512 || h.SectorSize != 4096 || h.Keyslots != 1 ||
		h.Token == nil || h.Token.KeyID != "lab-"+suffix || h.Token.Volume != "v"+suffix {
		t.Fatalf("Header = %+v (token %+v)", h, h.Token)
	}
	if _, err := h.Check("v"+suffix, "lab-"+suffix); err != nil {
		t.Fatal(err)
	}
	sameAsLuksDump(t, ctx, lv.Path, h)
	if open, err := cs.IsOpen(ctx, mapping); err != nil || open {
		t.Fatalf("IsOpen before Open = %v, %v", open, err)
	}

	if err := cs.Open(ctx, lv.Path, mapping, key, OpenOptions{NoWorkqueue: true}); err != nil {
		t.Fatal(err)
	}
	if open, err := cs.IsOpen(ctx, mapping); err != nil || !open {
		t.Fatalf("IsOpen after Open = %v, %v", open, err)
	}
	mapped := "/dev/mapper/" + mapping
	plain := bytes.Repeat([]byte("cryptvol lab plaintext marker. "), (1<<20)/31)
	writeAt(t, mapped, plain)
	if got := readAt(t, mapped, len(plain)); !bytes.Equal(got, plain) {
		t.Fatal("read back through the mapping differs from what was written")
	}

	// Close refuses while anything holds the mapping open (the kernel
	// says EBUSY), and leaves it working.
	holder, err := os.Open(mapped)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Close(ctx, mapping); !errors.Is(err, ErrBusy) {
		t.Fatalf("Close of a mapping held open: %v, want ErrBusy", err)
	}
	holder.Close()
	if got := readAt(t, mapped, len(plain)); !bytes.Equal(got, plain) {
		t.Fatal("the mapping does not read back after a refused Close")
	}
	// A plain LUKS2 mapping is removed with one ioctl (dmremove.go): no
	// program, and its node goes with it.
	before := runs
	if err := cs.Close(ctx, mapping); err != nil {
		t.Fatal(err)
	}
	if runs != before {
		t.Errorf("Close ran %d programs, want none", runs-before)
	}
	if open, err := cs.IsOpen(ctx, mapping); err != nil || open {
		t.Fatalf("IsOpen after Close = %v, %v", open, err)
	}
	if _, err := os.Stat(mapped); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still exists after Close: %v", mapped, err)
	}
	if err := cs.Close(ctx, mapping); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if raw := readAt(t, lv.Path, 64<<20); bytes.Contains(raw, plain[:62]) {
		t.Fatal("the raw LV contains the plaintext")
	}

	wrong := bytes.Clone(key)
	wrong[0] ^= 0xff
	if err := cs.Open(ctx, lv.Path, mapping, wrong, OpenOptions{}); err == nil {
		t.Fatal("Open with a wrong key succeeded")
	}
	if err := cs.Open(ctx, lv.Path, mapping, key, OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := readAt(t, mapped, len(plain)); !bytes.Equal(got, plain) {
		t.Fatal("data did not survive close and reopen")
	}
	// The kernel refuses the exclusive open while the mapping holds the
	// LV (wipe.go): an open volume is never wiped under its mapping.
	if err := cs.Erase(ctx, lv.Path); !errors.Is(err, ErrBusy) {
		t.Fatalf("Erase of an open LV: %v, want ErrBusy", err)
	}
	if h, err := cs.Inspect(ctx, lv.Path); err != nil || h.Keyslots != 1 {
		t.Fatalf("header after a refused Erase: %+v, %v; want it intact", h, err)
	}
	if err := cs.Close(ctx, mapping); err != nil {
		t.Fatal(err)
	}

	// Erase wipes the whole header area (wipe.go): cryptsetup finds no
	// header, and the key opens nothing.
	if err := cs.Erase(ctx, lv.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Inspect(ctx, lv.Path); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("Inspect after Erase: %v, want ErrNotLUKS", err)
	}
	if _, err := command.Run(ctx, command.ProgramAndAction, nil, "cryptsetup", "isLuks", lv.Path); err == nil {
		t.Fatal("cryptsetup isLuks finds a header after Erase")
	}
	if raw := readAt(t, lv.Path, 4<<20); bytes.IndexFunc(raw, func(r rune) bool { return r != 0 }) >= 0 {
		t.Fatal("the header area is not all zeros after Erase")
	}
	if err := cs.Open(ctx, lv.Path, mapping, key, OpenOptions{}); err == nil {
		t.Fatal("Open succeeded after Erase")
	}
	if open, err := cs.IsOpen(ctx, mapping); err != nil || open {
		t.Fatalf("IsOpen after a failed Open = %v, %v", open, err)
	}
}

// sameAsLuksDump checks that Inspect read the header cryptsetup just wrote
// from the device, starting no program (header.go), and read what
// `cryptsetup luksDump` reads.
func sameAsLuksDump(t *testing.T, ctx context.Context, dev string, want Header) {
	t.Helper()
	programs := 0
	run := command.Runner(command.ProgramAndAction)
	counted := New(WithExec(func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
		programs++
		return run(ctx, stdin, name, args...)
	}))
	h, err := counted.Inspect(ctx, dev)
	if err != nil || programs != 0 {
		t.Fatalf("Inspect of a fresh header: %v, after %d programs; want it read from the device", err, programs)
	}
	dumped, err := counted.dump(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h, dumped) || !reflect.DeepEqual(h, want) {
		t.Fatalf("header read from the device %+v (token %+v), luksDump's %+v (token %+v)", h, h.Token, dumped, dumped.Token)
	}
}

func writeAt(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLabOpenWithoutCryptsetup: Open unlocks a header Format wrote and
// makes the mapping itself (dmcreate.go), running no program, and what it
// makes is what `cryptsetup open` makes: the same table (key by keyring
// name, offset, options), uuid and read-only state, for every option
// set; data written through one reads back through the other. A
// passphrase no keyslot takes, or a device already held, is left to
// cryptsetup, which refuses it; the volume key is not left in a keyring.
func TestLabOpenWithoutCryptsetup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lv, suffix, key := labLV(t, ctx, "cvlab-open")
	mapping := lv.Name
	var ran []string
	cs := countingCryptsetup(func(c string) { ran = append(ran, c) })
	t.Cleanup(func() {
		cs.Close(context.Background(), mapping)
		cs.Close(context.Background(), mapping+"-2")
	})
	if err := cs.Format(ctx, lv.Path, key, Token{KeyID: "lab-" + suffix, Volume: "v" + suffix}); err != nil {
		t.Fatal(err)
	}
	state := func() string { return mappingState(t, ctx, mapping) }
	for _, c := range []struct {
		opts  OpenOptions
		flags []string
	}{
		{OpenOptions{}, nil},
		{OpenOptions{NoWorkqueue: true}, []string{"--perf-no_read_workqueue", "--perf-no_write_workqueue"}},
		{OpenOptions{NoWorkqueue: true, AllowDiscards: true}, []string{"--perf-no_read_workqueue", "--perf-no_write_workqueue", "--allow-discards"}},
		{OpenOptions{ReadOnly: true}, []string{"--readonly"}},
	} {
		args := append([]string{"open", "--type", "luks2", "--key-file", "-"}, c.flags...)
		if _, err := command.Run(ctx, command.ProgramAndAction, key, "cryptsetup", append(args, lv.Path, mapping)...); err != nil {
			t.Fatal(err)
		}
		want := state()
		if _, err := command.Run(ctx, command.ProgramAndAction, nil, "cryptsetup", "close", mapping); err != nil {
			t.Fatal(err)
		}
		ran = nil
		if err := cs.Open(ctx, lv.Path, mapping, key, c.opts); err != nil {
			t.Fatalf("Open %+v: %v", c.opts, err)
		}
		if len(ran) != 0 {
			t.Errorf("Open %+v ran %v, want no program", c.opts, ran)
		}
		if got := state(); got != want {
			t.Errorf("Open %+v made\n%s\ncryptsetup open %v makes\n%s", c.opts, got, c.flags, want)
		}
		if err := cs.Close(ctx, mapping); err != nil {
			t.Fatal(err)
		}
	}

	// Data crosses between the two ways of opening.
	mapped := "/dev/mapper/" + mapping
	plain := bytes.Repeat([]byte("direct open lab marker. "), (1<<20)/24)
	if err := cs.Open(ctx, lv.Path, mapping, key, OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	writeAt(t, mapped, plain)
	// A second mapping of a device the first holds: cryptsetup's refusal.
	ran = nil
	if err := cs.Open(ctx, lv.Path, mapping+"-2", key, OpenOptions{}); err == nil {
		t.Fatal("a second mapping of a held device was made")
	}
	if len(ran) != 1 || ran[0] != "cryptsetup open" {
		t.Errorf("Open of a held device ran %v, want cryptsetup open to refuse it", ran)
	}
	if open, err := cs.IsOpen(ctx, mapping+"-2"); err != nil || open {
		t.Fatalf("second mapping after a refused Open: %v, %v", open, err)
	}
	if err := cs.Close(ctx, mapping); err != nil {
		t.Fatal(err)
	}
	// A device another opener holds exclusively (as a mount does): the
	// table load says EBUSY, the device made for it goes again, and
	// cryptsetup refuses.
	excl, err := os.OpenFile(lv.Path, os.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	ran = nil
	err = cs.Open(ctx, lv.Path, mapping, key, OpenOptions{})
	excl.Close()
	if err == nil {
		t.Fatal("a device held with O_EXCL was mapped")
	}
	if len(ran) != 1 || ran[0] != "cryptsetup open" {
		t.Errorf("Open of an exclusively held device ran %v, want cryptsetup open to refuse it", ran)
	}
	if _, err := command.Run(ctx, command.ProgramAndAction, nil, "dmsetup", "info", mapping); err == nil {
		t.Fatal("a device-mapper device is left after the refused Open")
	}
	if _, err := command.Run(ctx, command.ProgramAndAction, key, "cryptsetup", "open", "--type", "luks2", "--key-file", "-", lv.Path, mapping); err != nil {
		t.Fatal(err)
	}
	if got := readAt(t, mapped, len(plain)); !bytes.Equal(got, plain) {
		t.Fatal("cryptsetup's mapping does not read what the direct one wrote")
	}
	if err := cs.Close(ctx, mapping); err != nil {
		t.Fatal(err)
	}

	// A wrong passphrase: cryptsetup has the last word, and nothing is made.
	wrong := bytes.Clone(key)
	wrong[3] ^= 0x40
	ran = nil
	if err := cs.Open(ctx, lv.Path, mapping, wrong, OpenOptions{}); err == nil {
		t.Fatal("Open with a wrong passphrase succeeded")
	}
	if len(ran) != 1 || ran[0] != "cryptsetup open" {
		t.Errorf("Open with a wrong passphrase ran %v, want cryptsetup open", ran)
	}
	if open, err := cs.IsOpen(ctx, mapping); err != nil || open {
		t.Fatalf("mapping after a wrong passphrase: %v, %v", open, err)
	}

	// After a rotation the new passphrase opens directly.
	next := make([]byte, KeySize)
	rand.Read(next)
	if err := cs.AddKey(ctx, lv.Path, key, next, 1); err != nil {
		t.Fatal(err)
	}
	if err := cs.KillSlot(ctx, lv.Path, 0); err != nil {
		t.Fatal(err)
	}
	ran = nil
	if err := cs.Open(ctx, lv.Path, mapping, next, OpenOptions{}); err != nil || len(ran) != 0 {
		t.Fatalf("Open after rotation: %v, ran %v", err, ran)
	}
	if got := readAt(t, mapped, len(plain)); !bytes.Equal(got, plain) {
		t.Fatal("data did not survive the rotation")
	}
	// The key went into the thread keyring for the table load only: any
	// entry left under its name is revoked or dead.
	keys, err := os.ReadFile("/proc/keys")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(keys), "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.Contains(line, "cryptsetup:") && !strings.ContainsAny(f[1], "RDi") {
			t.Errorf("a live key is left in a keyring: %s", line)
		}
	}
	if err := cs.Close(ctx, mapping); err != nil {
		t.Fatal(err)
	}
}
