package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/lvm"
)

// fakeKeyAdmin is a KMIP server holding the keys of some Object Groups.
type fakeKeyAdmin struct {
	groups      map[string][]keys.KeyInfo
	compromised []string
}

func (f *fakeKeyAdmin) Group(_ context.Context, group string) ([]keys.KeyInfo, error) {
	var out []keys.KeyInfo
	for _, k := range f.groups[group] {
		if !slices.Contains(f.compromised, k.ID) {
			out = append(out, k)
		}
	}
	return out, nil
}

func (f *fakeKeyAdmin) Compromise(_ context.Context, id string) (bool, error) {
	gone := slices.Contains(f.compromised, id)
	f.compromised = append(f.compromised, id)
	return gone, nil
}

func (f *fakeKeyAdmin) Close() error { return nil }

// A shared group as `lvs` shows it to any of its hosts. node1's group on
// the KMIP server holds: k1, the key of node1's volume "a", which node2
// has mounted; k2, of node1's volume "b", mounted nowhere; k3, in node1's
// group although its volume "c" says node2 made it, mounted on node1; k4,
// which no LV names.
func decomWorld() (*fakeKeyAdmin, []lvm.LV) {
	kms := &fakeKeyAdmin{groups: map[string][]keys.KeyInfo{keys.NodeGroup("node1"): {
		{ID: "k1", Names: []string{"cryptvol/U/a/01"}, State: "Active"},
		{ID: "k2", Names: []string{"cryptvol/U/b/02"}, State: "Active"},
		{ID: "k3", Names: []string{"cryptvol/U/c/03"}, State: "Active"},
		{ID: "k4", Names: []string{"cryptvol/U/gone/04"}, State: "Active"},
	}}}
	lvs := []lvm.LV{
		{Name: "cv-a", Tags: []string{"cryptvol", "cryptvol_ready", "cryptvol_key_k1", "cryptvol_madeby_node1", "cryptvol_on_node2"}},
		{Name: "cv-b", Tags: []string{"cryptvol", "cryptvol_ready", "cryptvol_key_k2", "cryptvol_madeby_node1"}},
		{Name: "cv-c", Tags: []string{"cryptvol", "cryptvol_ready", "cryptvol_key_k3", "cryptvol_madeby_node2", "cryptvol_on_node1"}},
		{Name: "cv-d", Tags: []string{"cryptvol", "cryptvol_ready", "cryptvol_key_k9", "cryptvol_madeby_node2"}},
	}
	return kms, lvs
}

type lvsCall struct {
	vg     string
	shared bool
}

// runDecom runs `cryptvol decommission ARGS` against kms and a group whose
// `lvs` answers lvs, lvsErr.
func runDecom(t *testing.T, kms *fakeKeyAdmin, lvs []lvm.LV, lvsErr error, env map[string]string, args ...string) (code int, stdout, stderr string, calls []lvsCall) {
	t.Helper()
	var o, e bytes.Buffer
	fs := flag.NewFlagSet("decommission", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	deps := decomDeps{
		kms: func(keys.Config) (keyAdmin, error) { return kms, nil },
		lvs: func(_ context.Context, vg string, shared bool) ([]lvm.LV, error) {
			calls = append(calls, lvsCall{vg, shared})
			return lvs, lvsErr
		},
	}
	run := decommissionWith(fs, Env{Stdout: &o, Stderr: &e, Getenv: func(k string) string { return env[k] }}, deps)
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatalf("flags %q: %v", args[1:], err)
	}
	code = run(append([]string{args[0]}, fs.Args()...))
	return code, o.String(), e.String(), calls
}

type decomKey struct {
	ID     string `json:"id"`
	Result string `json:"result"`
	LV     *struct {
		Volume    string `json:"volume"`
		MadeBy    string `json:"made_by"`
		MountedOn string `json:"mounted_on"`
	} `json:"lv"`
}

func decomJSON(t *testing.T, out string) (vgNote string, byID map[string]decomKey) {
	t.Helper()
	var doc struct {
		VG   string     `json:"volume_group"`
		Keys []decomKey `json:"keys"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	byID = map[string]decomKey{}
	for _, k := range doc.Keys {
		byID[k.ID] = k
	}
	return doc.VG, byID
}

// --dry-run shows, for each key of the node's group, the volume whose LV
// names it, who made it and who has it mounted, and what --yes would do:
// destroy it, or refuse because another host has its volume mounted or
// made it. The group is read with the plugin's settings
// (CRYPTVOL_VG, CRYPTVOL_SHARED); nothing is destroyed.
func TestDecommissionDryRunShowsEachKeysVolumeAndHost(t *testing.T) {
	kms, lvs := decomWorld()
	env := map[string]string{"CRYPTVOL_VG": "sharedvg", "CRYPTVOL_SHARED": "true"}
	code, out, stderr, calls := runDecom(t, kms, lvs, nil, env, "node1", "--dry-run", "--json")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if want := []lvsCall{{"sharedvg", true}}; !slices.Equal(calls, want) {
		t.Errorf("lvs calls %v, want %v", calls, want)
	}
	_, got := decomJSON(t, out)
	for _, w := range []struct{ id, volume, madeBy, on, result string }{
		{"k1", "a", "node1", "node2", "would refuse"},
		{"k2", "b", "node1", "", "would destroy"},
		{"k3", "c", "node2", "node1", "would refuse"},
		{"k4", "", "", "", "would destroy"},
	} {
		k, ok := got[w.id]
		switch {
		case !ok:
			t.Errorf("key %s is not listed", w.id)
			continue
		case !strings.HasPrefix(k.Result, w.result):
			t.Errorf("key %s: result %q, want %q", w.id, k.Result, w.result)
		}
		if w.volume == "" {
			if k.LV != nil {
				t.Errorf("key %s: no LV names it, yet it is shown with %+v", w.id, *k.LV)
			}
			continue
		}
		if k.LV == nil || k.LV.Volume != w.volume || k.LV.MadeBy != w.madeBy || k.LV.MountedOn != w.on {
			t.Errorf("key %s: LV %+v, want volume %q made by %q mounted on %q", w.id, k.LV, w.volume, w.madeBy, w.on)
		}
	}
	if len(kms.compromised) != 0 {
		t.Errorf("a dry run destroyed %v", kms.compromised)
	}
	_, text, _, _ := runDecom(t, kms, lvs, nil, env, "node1", "--dry-run")
	for _, want := range []string{"VOLUME", "MADE BY", "MOUNTED ON", "volume group sharedvg"} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}
}

// --yes destroys the keys of volumes no other host uses, and refuses,
// saying why and how to insist, those of volumes another host has mounted
// or made; --force-in-use destroys those too.
func TestDecommissionRefusesKeysOfVolumesAnotherHostUses(t *testing.T) {
	kms, lvs := decomWorld()
	env := map[string]string{"CRYPTVOL_VG": "sharedvg", "CRYPTVOL_SHARED": "true"}
	code, out, _, _ := runDecom(t, kms, lvs, nil, env, "node1", "--yes")
	if code != ExitFailed {
		t.Errorf("exit %d with keys refused, want %d", code, ExitFailed)
	}
	slices.Sort(kms.compromised)
	if want := []string{"k2", "k4"}; !slices.Equal(kms.compromised, want) {
		t.Fatalf("destroyed %v, want %v", kms.compromised, want)
	}
	for _, want := range []string{"mounted on node2", "made by node2", "--force-in-use"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, _, stderr, _ := runDecom(t, kms, lvs, nil, env, "node1", "--yes", "--force-in-use")
	if code != ExitOK {
		t.Fatalf("--force-in-use: exit %d, stderr %q", code, stderr)
	}
	slices.Sort(kms.compromised)
	if want := []string{"k1", "k2", "k3", "k4"}; !slices.Equal(kms.compromised, want) {
		t.Errorf("after --force-in-use destroyed %v, want %v", kms.compromised, want)
	}
}

// Without a volume group (run away from the hosts), or with one that
// cannot be read, the output says so. A dry run still lists; --yes
// without a group destroys as before (the node's own disks may be gone),
// but --yes with a group it could not read refuses everything, since the
// check it was asked for could not be made, unless --force-in-use.
func TestDecommissionSaysWhenItCannotReadTheGroup(t *testing.T) {
	kms, lvs := decomWorld()
	code, out, _, calls := runDecom(t, kms, lvs, nil, nil, "node1", "--dry-run")
	if code != ExitOK || len(calls) != 0 || !strings.Contains(out, "no volume group given") {
		t.Errorf("without a group: exit %d, lvs calls %v, output:\n%s\nwant exit 0, no lvs, and \"no volume group given\"", code, calls, out)
	}

	env := map[string]string{"CRYPTVOL_VG": "sharedvg"}
	lvsErr := errors.New(`lvm lvs: Volume group "sharedvg" not found`)
	code, out, _, calls = runDecom(t, kms, lvs, lvsErr, env, "node1", "--dry-run")
	if code != ExitOK || !slices.Equal(calls, []lvsCall{{"sharedvg", false}}) || !strings.Contains(out, "could not be read") || !strings.Contains(out, "not found") {
		t.Errorf("unreadable group, dry run: exit %d, lvs calls %v, output:\n%s\nwant exit 0 and the reason", code, calls, out)
	}
	code, out, _, _ = runDecom(t, kms, lvs, lvsErr, env, "node1", "--yes")
	if code != ExitFailed || len(kms.compromised) != 0 || !strings.Contains(out, "--force-in-use") {
		t.Errorf("unreadable group, --yes: exit %d, destroyed %v, output:\n%s\nwant exit 1, nothing destroyed, and how to insist", code, kms.compromised, out)
	}

	code, _, _, _ = runDecom(t, kms, lvs, nil, nil, "node1", "--yes")
	if code != ExitOK || len(kms.compromised) != 4 {
		t.Errorf("no group given, --yes: exit %d, destroyed %v; want all 4", code, kms.compromised)
	}
}
