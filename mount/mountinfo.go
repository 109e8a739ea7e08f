package mount

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// mountEntry is one line of /proc/<pid>/mountinfo (see proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
type mountEntry struct {
	MajMin     string // st_dev of the mounted filesystem, "253:3"
	Root       string
	MountPoint string
	Options    string // per-mount options, e.g. "rw,nosuid,nodev,relatime"
	FSType     string
	Source     string
}

func parseMountInfo(r io.Reader) ([]mountEntry, error) {
	var entries []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Split(line, " ")
		// Optional fields (shared:N, master:N ...) end at a lone "-".
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+3 {
			return nil, fmt.Errorf("mountinfo line %d is malformed: %q", n, line)
		}
		entries = append(entries, mountEntry{
			MajMin:     f[2],
			Root:       unescape(f[3]),
			MountPoint: unescape(f[4]),
			Options:    f[5],
			FSType:     f[sep+1],
			Source:     unescape(f[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return entries, nil
}

// unescape undoes the kernel's octal escaping of space, tab, newline and
// backslash ("\040" for a space) in mountinfo paths.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] >= '0' && s[i+1] <= '3' && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
