package main

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// fakeGroup is a shared group's tags as every host sees them; afterAdd,
// when set, is another host's commit landing right after this host's.
type fakeGroup struct {
	tags     []string
	hostID   int
	changes  int
	afterAdd func(g *fakeGroup)
}

func (g *fakeGroup) VGTags(context.Context) ([]string, error) { return slices.Clone(g.tags), nil }
func (g *fakeGroup) HostID(context.Context) (int, error)      { return g.hostID, nil }
func (g *fakeGroup) ChangeVGTags(_ context.Context, del, add []string) error {
	g.changes++
	g.tags = slices.DeleteFunc(g.tags, func(t string) bool { return slices.Contains(del, t) })
	g.tags = append(g.tags, add...)
	if len(add) > 0 && g.afterAdd != nil {
		f := g.afterAdd
		g.afterAdd = nil
		f(g)
	}
	return nil
}

// A node name is bound to the sanlock host_id of the host that first
// started with it, by a tag on the shared group (cryptvol_node_NAME=ID);
// sanlock keeps host ids unique among live hosts, so a second host with
// the name is refused at start, naming the host id that has it and how to
// free the name.
func TestSharedNodeNameIsClaimedOncePerGroup(t *testing.T) {
	ctx := context.Background()

	g := &fakeGroup{hostID: 1}
	if err := claimNode(ctx, g, "cryptvg", "node1"); err != nil {
		t.Fatalf("first start of node1: %v", err)
	}
	if !slices.Equal(g.tags, []string{"cryptvol_node_node1=1"}) {
		t.Fatalf("tags after node1's start %q, want [cryptvol_node_node1=1]", g.tags)
	}
	changes := g.changes
	if err := claimNode(ctx, g, "cryptvg", "node1"); err != nil || g.changes != changes {
		t.Fatalf("node1 starting again: %v, %d changes; want no error and no change", err, g.changes-changes)
	}

	g.hostID = 2
	err := claimNode(ctx, g, "cryptvg", "node1")
	if err == nil || !strings.Contains(err.Error(), "host_id 1") || !strings.Contains(err.Error(), "vgchange --deltag cryptvol_node_node1=1 cryptvg") {
		t.Fatalf("host 2 starting as node1: %v; want a refusal naming host_id 1 and how to free the name", err)
	}
	if slices.Contains(g.tags, "cryptvol_node_node1=2") {
		t.Errorf("the refused host left its claim: %q", g.tags)
	}
	if err := claimNode(ctx, g, "cryptvg", "node2"); err != nil {
		t.Fatalf("host 2 as node2: %v", err)
	}

	// A renamed host: its host id's old name is its own, and is freed.
	g.hostID = 1
	if err := claimNode(ctx, g, "cryptvg", "node1b"); err != nil {
		t.Fatalf("host 1 renamed: %v", err)
	}
	slices.Sort(g.tags)
	if want := []string{"cryptvol_node_node1b=1", "cryptvol_node_node2=2"}; !slices.Equal(g.tags, want) {
		t.Errorf("tags after the rename %q, want %q", g.tags, want)
	}
}

// Two hosts claiming one name at once: the group's lock orders their
// commits, and the host that reads the other's claim after its own
// withdraws and refuses, so at most one host runs with the name.
func TestSharedNodeNameRaceLeavesOneClaim(t *testing.T) {
	g := &fakeGroup{hostID: 3}
	g.afterAdd = func(g *fakeGroup) { g.tags = append(g.tags, "cryptvol_node_twin=4") }
	err := claimNode(context.Background(), g, "cryptvg", "twin")
	if err == nil || !strings.Contains(err.Error(), "host_id 4") {
		t.Fatalf("claim raced by host 4: %v; want a refusal naming host_id 4", err)
	}
	if want := []string{"cryptvol_node_twin=4"}; !slices.Equal(g.tags, want) {
		t.Errorf("tags %q, want only the other host's claim %q", g.tags, want)
	}
}

// Without a host id (none set anywhere) the claim cannot be made, and the
// start is refused saying what to set.
func TestSharedNodeNameNeedsAHostID(t *testing.T) {
	g := &fakeGroup{}
	if err := claimNode(context.Background(), g, "cryptvg", "node1"); err == nil || !strings.Contains(err.Error(), "CRYPTVOL_HOST_ID") {
		t.Errorf("no host id: %v; want a refusal naming CRYPTVOL_HOST_ID", err)
	}
}
