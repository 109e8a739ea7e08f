package options

import (
	"strings"
	"testing"
)

func TestParseFSOptions(t *testing.T) {
	d := Defaults{Size: 1 << 30, FS: FSExt4}
	for _, c := range []struct {
		opts map[string]string
		err  string
	}{
		{map[string]string{"mountopts": "noatime, lazytime,commit=30"}, ""},
		{map[string]string{"mountopts": "discard"}, `mount option "discard" is not allowed on ext4 (allowed: noatime,`},
		{map[string]string{"mountopts": "suid"}, `"suid" is not allowed`},
		{map[string]string{"mountopts": "commit=0"}, `"commit=0" is not allowed`},
		{map[string]string{"mountopts": "largeio"}, `"largeio" is not allowed on ext4`},
		{map[string]string{"fs": "xfs", "size": "320M", "mountopts": "largeio,noatime"}, ""},
		{map[string]string{"fs": "xfs", "size": "320M", "mountopts": "data=journal"}, `"data=journal" is not allowed on xfs`},
		{map[string]string{"uid": "1000", "gid": "0", "mode": "0750"}, ""},
		{map[string]string{"uid": "-1"}, `option uid="-1" is not valid (allowed: a number from 0 to 2147483647)`},
		{map[string]string{"gid": "root"}, `option gid="root" is not valid`},
		{map[string]string{"mode": "0999"}, `option mode="0999" is not valid (allowed: octal permissions such as 755, 0750 or 1777)`},
		{map[string]string{"mode": "7"}, `option mode="7" is not valid`},
		{map[string]string{"inode_ratio": "8192", "reserved_percent": "1"}, ""},
		{map[string]string{"inode_ratio": "1000"}, "option inode_ratio 1000 is not allowed (allowed: a power of two from 1024 to 67108864"},
		{map[string]string{"reserved_percent": "x"}, `option reserved_percent="x" is not a whole number`},
		{map[string]string{"inode_maxpct": "5"}, "inode_maxpct is an xfs choice, not ext4's"},
		{map[string]string{"fs": "xfs", "size": "320M", "inode_maxpct": "5"}, ""},
		{map[string]string{"fs": "xfs", "size": "320M", "reserved_percent": "0"}, "are ext4 choices, not xfs's"},
	} {
		o, err := Parse(c.opts, d)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%v: %v", c.opts, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%v: %v; want %q", c.opts, err, c.err)
		case c.err == "" && c.opts["mode"] == "0750" && (o.Root.Mode != 0o750 || o.Root.UID != 1000 || o.Root.GID != 0):
			t.Errorf("%v: root %+v", c.opts, o.Root)
		}
	}
}
