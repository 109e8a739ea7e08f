//go:build lab

package luks

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// An open cut off after DM_DEV_CREATE (the plugin SIGKILLed there, or
// cryptsetup killed by a cancelled request) leaves a device of the
// mapping's name that has no table, and so no block device and no sysfs
// entry (Linux 5.16+). IsOpen and Mappings see it, Close removes it, and
// the volume opens again. The same holds for one whose table was loaded
// but never made live.
func TestLabTablelessDeviceIsOpenAndClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lv, suffix, key := labLV(t, ctx, "cvlab-tl")
	mapping := lv.Name
	cs := New()
	t.Cleanup(func() { cs.Close(context.Background(), mapping) })
	if err := cs.Format(ctx, lv.Path, key, Token{KeyID: "lab-" + suffix, Volume: "v" + suffix}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(lv.Path)
	if err != nil {
		t.Fatal(err)
	}
	_, hdrUUID, _, err := readHeader(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	uuid := "CRYPT-LUKS2-" + strings.ReplaceAll(hdrUUID, "-", "") + "-" + mapping
	for _, c := range []struct {
		what  string
		table bool
	}{{"no table", false}, {"a table loaded, never made live", true}} {
		if _, err := dmCall(dmDevCreateCmd, mapping, uuid, 0, 0, nil); err != nil {
			t.Fatalf("%s: DM_DEV_CREATE: %v", c.what, err)
		}
		if c.table {
			if _, err := dmCall(dmTableLoadCmd, mapping, "", 0, 0, targetSpec(0, 8, "error", nil)); err != nil {
				t.Fatalf("%s: DM_TABLE_LOAD: %v", c.what, err)
			}
		}
		info, err := statusDM(mapping)
		if err != nil || info.live() || info.uuid != uuid {
			t.Fatalf("%s: DM_DEV_STATUS = %+v, %v; want no live table and uuid %s", c.what, info, err, uuid)
		}
		if !c.table && inSysfs(t, mapping) {
			t.Fatalf("%s: the kernel lists it in sysfs; this test assumes it does not (Linux 5.16+)", c.what)
		}
		if open, err := cs.IsOpen(ctx, mapping); err != nil || !open {
			t.Fatalf("%s: IsOpen = %v, %v; want open", c.what, open, err)
		}
		names, err := cs.Mappings(ctx)
		if err != nil || !names[mapping] {
			t.Fatalf("%s: Mappings = %v, %v; want %s among them", c.what, names, err, mapping)
		}
		if err := cs.Close(ctx, mapping); err != nil {
			t.Fatalf("%s: Close: %v", c.what, err)
		}
		if _, err := statusDM(mapping); !gone(err) {
			t.Fatalf("%s: after Close DM_DEV_STATUS answers %v, want ENXIO", c.what, err)
		}
		if open, err := cs.IsOpen(ctx, mapping); err != nil || open {
			t.Fatalf("%s: IsOpen after Close = %v, %v", c.what, open, err)
		}
		if err := cs.Open(ctx, lv.Path, mapping, key, OpenOptions{}); err != nil {
			t.Fatalf("%s: Open after Close: %v", c.what, err)
		}
		if err := cs.Close(ctx, mapping); err != nil {
			t.Fatal(err)
		}
	}
	// Another device without a table under the name is not removed.
	if _, err := dmCall(dmDevCreateCmd, mapping, "LVM-notours-"+suffix, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeDM(mapping) })
	if err := cs.Close(ctx, mapping); err == nil || !strings.Contains(err.Error(), "left alone") {
		t.Fatalf("Close of a tableless device of another uuid: %v, want it left alone", err)
	}
	if _, err := statusDM(mapping); err != nil {
		t.Fatalf("the device of another uuid is gone: %v", err)
	}
}

// inSysfs says whether /sys/block lists a device-mapper device called name.
func inSysfs(t *testing.T, name string) bool {
	t.Helper()
	dirs, err := filepath.Glob("/sys/block/dm-*/dm/name")
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(dirs, func(p string) bool {
		b, err := os.ReadFile(p)
		return err == nil && strings.TrimSpace(string(b)) == name
	})
}
