package mount

import (
	"fmt"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Shared reports whether root, the plugin's propagated mount, is a mount
// point whose propagation is shared (mountinfo's optional field
// "shared:N", proc(5)): only then do the mounts the plugin makes under it
// reach dockerd's mount namespace, where dockerd binds a volume's path
// into its containers. dockerd makes it so when it starts the plugin (moby
// plugin/v2/plugin_linux.go@v26.1.5 InitSpec: rbind, rshared). fields is
// what the table says ("" with mounted false: root is not a mount point,
// as when the plugin runs outside Docker, and there is nothing to check).
// That the host's side of the peer group is still there cannot be seen
// from inside; the data directory (layout.go) keeps a detached host side
// from ever receiving a container's writes.
func (f *FS) Shared(root string) (mounted, shared bool, fields string, err error) {
	if err := validatePath("mount root", root); err != nil {
		return false, false, "", err
	}
	root = resolve(root)
	entries, err := f.table(func(i *mountinfo.Info) (skip, stop bool) {
		return i.Mountpoint != root, false
	})
	if err != nil || len(entries) == 0 {
		return false, false, "", err
	}
	e := entries[len(entries)-1] // the topmost
	for _, opt := range strings.Fields(e.Optional) {
		if strings.HasPrefix(opt, "shared:") {
			return true, true, e.Optional, nil
		}
	}
	fields = e.Optional
	if fields == "" {
		fields = "private"
	}
	return true, false, fields, nil
}

// ErrNotShared explains a propagated mount that is not shared.
func ErrNotShared(root, fields string) error {
	return fmt.Errorf("the plugin's propagated mount %s is not shared with the host (propagation: %s), so dockerd would not see a volume mounted here; repair it with `docker plugin disable -f cryptvol && docker plugin enable cryptvol` (containers using cryptvol volumes keep theirs)", root, fields)
}
