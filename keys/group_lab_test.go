//go:build lab

package keys

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/internal/kmiplab"
)

// groupsKMIP is a client of the groups-mode server as identity id, its keys
// in group (if any) under the server's policy.
func groupsKMIP(t *testing.T, s *kmiplab.Server, id, group string) *KMIP {
	t.Helper()
	cert, key := s.Identity(id)
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	m, err := NewKMIP(Config{Endpoint: s.Endpoint, CAFile: s.CAFile, CertFile: cert, KeyFile: key, ServerName: s.ServerName,
		Timeout: 20 * time.Second, Group: group, Policy: s.Policy}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Node groups against PyKMIP with roles: the Object Group a node's keys get
// at create finds exactly them; the admin identity lists, revokes and
// destroys them but can never fetch a key; another node's identity can
// fetch none of them; after Compromise the node itself cannot fetch them,
// and the other node's keys are untouched.
func TestLabDecommissionKeysWithRoles(t *testing.T) {
	s := kmiplab.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodeA := groupsKMIP(t, s, "client", NodeGroup("lab-a"))
	nodeB := groupsKMIP(t, s, "node-b", NodeGroup("lab-b"))
	admin := groupsKMIP(t, s, "admin", "")

	var aIDs []string
	for _, n := range []string{"one", "two"} {
		id, k, err := nodeA.Create(ctx, "cryptvol/lab-a-vg/"+n+"/00", "")
		if err != nil {
			t.Fatalf("node A create: %v", err)
		}
		k.Wipe()
		aIDs = append(aIDs, id)
	}
	bID, k, err := nodeB.Create(ctx, "cryptvol/lab-b-vg/one/00", "")
	if err != nil {
		t.Fatalf("node B create: %v", err)
	}
	k.Wipe()

	if _, err := admin.Get(ctx, aIDs[0]); err == nil {
		t.Error("the admin identity fetched a node's key; the policy gives it no Get")
	}
	if _, err := nodeB.Get(ctx, aIDs[0]); err == nil {
		t.Error("node B fetched node A's key")
	}
	listed, err := admin.Group(ctx, NodeGroup("lab-a"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ki := range listed {
		ids = append(ids, ki.ID)
		if ki.State != "Active" || len(ki.Names) != 1 || !strings.HasPrefix(ki.Names[0], "cryptvol/lab-a-vg/") {
			t.Errorf("admin sees key %s as %+v; want Active with its name", ki.ID, ki)
		}
	}
	slices.Sort(ids)
	slices.Sort(aIDs)
	if !slices.Equal(ids, aIDs) {
		t.Fatalf("admin lists %q for node A, want %q", ids, aIDs)
	}
	if got, _ := nodeB.Group(ctx, NodeGroup("lab-a")); len(got) != 0 {
		t.Errorf("node B can list node A's keys: %+v", got)
	}

	for _, id := range aIDs {
		if gone, err := admin.Compromise(ctx, id); err != nil || gone {
			t.Fatalf("admin Compromise(%s): gone %v, %v", id, gone, err)
		}
		if _, err := nodeA.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("node A's Get of its decommissioned key %s: %v, want not found", id, err)
		}
		if gone, err := admin.Compromise(ctx, id); err != nil || !gone {
			t.Errorf("second Compromise(%s): gone %v, %v; want gone", id, gone, err)
		}
	}
	if k, err := nodeB.Get(ctx, bID); err != nil {
		t.Errorf("node B's key after node A's decommission: %v", err)
	} else {
		k.Wipe()
	}
	if err := nodeB.Destroy(ctx, bID); err != nil {
		t.Error(err)
	}
	// PyKMIP logs Revoke's reason; no key bytes were logged at INFO.
	b, _ := os.ReadFile(filepath.Join(s.Dir(), "server.log"))
	if !strings.Contains(string(b), "Processing operation: Revoke") {
		t.Error("the server log shows no Revoke")
	}
}
