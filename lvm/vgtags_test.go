package lvm

import (
	"context"
	"slices"
	"testing"
)

// The group's tags are read and changed in one command each, with the
// shared group's configuration; the host id is the one lvm hands
// lvmlockd, the plugin's own when it set one.
func TestVGTagsAndHostID(t *testing.T) {
	f := newFake(t)
	c, err := New("cvhost", WithExec(f.exec), WithShared(7))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const cfg = "--config global/use_lvmlockd=1 local/host_id=7"
	f.on("lvm vgs "+cfg+" -o vg_tags --reportformat json cvhost", answer{stdout: `{"report":[{"vg":[{"vg_tags":"cryptvol_node_a=7,other"}]}]}`})
	if tags, err := c.VGTags(ctx); err != nil || !slices.Equal(tags, []string{"cryptvol_node_a=7", "other"}) {
		t.Errorf("VGTags: %q, %v", tags, err)
	}
	f.on("lvm vgchange "+cfg+" --deltag old --addtag cryptvol_node_b=7 cvhost", answer{})
	if err := c.ChangeVGTags(ctx, []string{"old"}, []string{"cryptvol_node_b=7"}); err != nil {
		t.Errorf("ChangeVGTags: %v", err)
	}
	if err := c.ChangeVGTags(ctx, nil, []string{"bad tag"}); err == nil {
		t.Error("a tag with a space was accepted")
	}
	f.on("lvm lvmconfig "+cfg+" --type full local/host_id", answer{stdout: "host_id=7\n"})
	if n, err := c.HostID(ctx); err != nil || n != 7 {
		t.Errorf("HostID: %d, %v; want 7", n, err)
	}
	f.on("lvm lvmconfig "+cfg+" --type full local/host_id", answer{stdout: "nonsense\n"})
	if _, err := c.HostID(ctx); err == nil {
		t.Error("HostID accepted output without host_id=N")
	}
}
