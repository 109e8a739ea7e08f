//go:build lab

package tests

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// csiSanityBinary is the CSI project's conformance suite
// (github.com/kubernetes-csi/csi-test/v5 cmd/csi-sanity, pinned in go.mod as
// a tool; make lab-bins builds it).
const csiSanityBinary = "../bin/csi-sanity"

// newCSIPlug is the real plugin serving CSI on a socket of its own besides
// the VolumeDriver's, and a gRPC connection to it.
func newCSIPlug(t *testing.T) (*plug, *grpc.ClientConn, string) {
	t.Helper()
	p := newPlug(t)
	sock := filepath.Join(p.dir, "csi.sock")
	p.env = append(p.env, "CSI_ENDPOINT=unix://"+sock)
	p.start("")
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return p, conn, sock
}

// junit is the part of csi-sanity's JUnit report read here.
type junit struct {
	Suites []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Status  string `xml:"status,attr"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestLabCSISanity runs csi-sanity against the plugin's CSI socket on the
// lab's volume group, dm-crypt and PyKMIP: every test it runs must pass.
// The skipped ones are listed (docs/csi.md says why each is).
func TestLabCSISanity(t *testing.T) {
	p, _, sock := newCSIPlug(t)
	work := filepath.Join(p.dir, "sanity")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(work, "junit.xml")
	cmd := exec.Command(csiSanityBinary,
		"-csi.endpoint", "unix://"+sock,
		"-csi.stagingdir", filepath.Join(work, "staging"),
		"-csi.mountdir", filepath.Join(work, "mount"),
		"-csi.testvolumesize", "67108864", // 64 MiB, whole extents
		"-csi.testvolumeaccesstype", "mount",
		"-ginkgo.no-color",
		"-ginkgo.timeout", "40m",
		"-ginkgo.junit-report", report,
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("csi-sanity: %v\n%s\nplugin log:\n%s", err, tail(out, 12000), p.logTail())
	}
	raw, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("csi-sanity wrote no report: %v\n%s", rerr, tail(out, 4000))
	}
	var r junit
	if err := xml.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	passed, skipped := 0, map[string]string{}
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			switch {
			case c.Skipped != nil:
				skipped[c.Name] = c.Skipped.Message
			case c.Status == "passed":
				passed++
			}
		}
	}
	// By reason, for docs/csi.md's list of what is skipped and why.
	reasons := map[string]int{}
	for _, why := range skipped {
		reasons[why]++
	}
	t.Logf("csi-sanity: %d passed, %d skipped", passed, len(skipped))
	for why, n := range reasons {
		t.Logf("csi-sanity skipped %d: %s", n, why)
	}
	if passed < 40 {
		t.Errorf("only %d csi-sanity tests passed", passed)
	}
	// Everything it made is gone: no volume, LV, mapping or KMIP key.
	var list struct{ Volumes []apiVolume }
	p.must("list", p.call("List", struct{}{}, &list))
	for _, v := range list.Volumes {
		t.Errorf("volume %s left by csi-sanity", v.Name)
		assertGone(t, p, v.Name)
	}
	if out, _ := run(t, "dmsetup", "ls"); strings.Contains(out, "cryptvol-") {
		t.Errorf("mappings left open:\n%s", out)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

var writer = &csipb.VolumeCapability{
	AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
	AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// TestLabCSIVolumeLife drives one volume through CSI as Swarm does (create,
// publish to the node, node publish, node unpublish, delete) on the real
// stack, and checks what a user would: the data outlives a close, the volume
// is decrypted only while published, a target exists only while it is the
// volume, bad parameters make nothing.
func TestLabCSIVolumeLife(t *testing.T) {
	p, conn, _ := newCSIPlug(t)
	c := ctx(t)
	ctl, node := csipb.NewControllerClient(conn), csipb.NewNodeClient(conn)
	const name = "csi-life"

	// Bad parameters: INVALID_ARGUMENT naming them, and nothing made.
	for param, mentions := range map[string]string{"integrity": "integrity", "fs": "fs", "bogus": "bogus"} {
		_, err := ctl.CreateVolume(c, &csipb.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csipb.VolumeCapability{writer},
			Parameters: map[string]string{param: "not-a-value"}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), mentions) {
			t.Errorf("parameter %s: %v, want INVALID_ARGUMENT naming %q", param, err, mentions)
		}
	}
	assertGone(t, p, name)

	cv, err := ctl.CreateVolume(c, &csipb.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csipb.VolumeCapability{writer},
		CapacityRange: &csipb.CapacityRange{RequiredBytes: 384 << 20}, Parameters: map[string]string{"fs": "xfs"}})
	if err != nil {
		t.Fatal(err)
	}
	if cv.GetVolume().GetVolumeId() != name || cv.GetVolume().GetCapacityBytes() != 384<<20 {
		t.Fatalf("created %v", cv.GetVolume())
	}
	assertDown(t, p, name)

	info, err := node.NodeGetInfo(c, &csipb.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.ControllerPublishVolume(c, &csipb.ControllerPublishVolumeRequest{VolumeId: name, NodeId: info.GetNodeId(), VolumeCapability: writer}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "published")
	// Publishing a volume that does not exist is refused and makes no target.
	_, err = node.NodePublishVolume(c, &csipb.NodePublishVolumeRequest{VolumeId: "csi-nosuch", TargetPath: target, VolumeCapability: writer})
	if status.Code(err) != codes.NotFound {
		t.Errorf("publish of a missing volume: %v, want NOT_FOUND", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("a refused publish left %s: %v", target, err)
	}

	use := func(write bool) {
		t.Helper()
		if _, err := node.NodePublishVolume(c, &csipb.NodePublishVolumeRequest{VolumeId: name, TargetPath: target, VolumeCapability: writer}); err != nil {
			t.Fatal(err)
		}
		if !mappingOpen(t, name) || !mountedAt(t, target) {
			t.Fatal("published, but the mapping is not open or the target not mounted")
		}
		f := filepath.Join(target, "hello")
		if write {
			// The bind unmounted from outside: the target is an empty
			// directory nothing can write to (mount/seal.go), and a
			// publish binds it again without a second Mount.
			if out, err := run(t, "umount", target); err != nil {
				t.Fatalf("umount %s: %v %s", target, err, out)
			}
			if err := os.WriteFile(filepath.Join(target, "leak"), []byte("PLAINTEXT"), 0o644); err == nil {
				t.Fatal("a file was written into the target while the volume was not bound there")
			}
			if _, err := node.NodePublishVolume(c, &csipb.NodePublishVolumeRequest{VolumeId: name, TargetPath: target, VolumeCapability: writer}); err != nil {
				t.Fatal(err)
			}
			if !mountedAt(t, target) {
				t.Fatal("published again, but the target is not mounted")
			}

			if err := os.WriteFile(f, []byte("through CSI\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if b, err := os.ReadFile(f); err != nil || string(b) != "through CSI\n" {
			t.Fatalf("read back %q, %v", b, err)
		}
		st, err := node.NodeGetVolumeStats(c, &csipb.NodeGetVolumeStatsRequest{VolumeId: name, VolumePath: target})
		if err != nil || st.GetUsage()[0].GetTotal() <= 0 {
			t.Errorf("stats %v, %v", st, err)
		}
		if _, err := node.NodeUnpublishVolume(c, &csipb.NodeUnpublishVolumeRequest{VolumeId: name, TargetPath: target}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Errorf("target %s after unpublish: %v", target, err)
		}
	}
	use(true)
	assertDown(t, p, name)
	use(false)
	assertDown(t, p, name)

	if _, err := ctl.ControllerUnpublishVolume(c, &csipb.ControllerUnpublishVolumeRequest{VolumeId: name, NodeId: info.GetNodeId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.DeleteVolume(c, &csipb.DeleteVolumeRequest{VolumeId: name}); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p, name)
	// Deleting again is success.
	if _, err := ctl.DeleteVolume(c, &csipb.DeleteVolumeRequest{VolumeId: name}); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}
