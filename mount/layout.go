package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/cryptvol/cryptvol/internal/failpoint"
)

// The layout of a volume's filesystem. Containers are given DataDir, a
// directory inside the filesystem, never its root: where the filesystem is
// not mounted, in any mount namespace, MountRoot/NAME/data does not exist,
// so a bind by runc, dockerd's copy of an image's content into the volume
// or `docker cp` fails instead of writing to the host's disk beneath the
// mount point. That holds whatever the timing of an unmount, a probe or a
// broken mount propagation: it is the shape of the directories, not an
// ordering of events.
//
// The root holds, besides DataDir, LayoutMarker (an empty file that says
// DataDir is this layout's and not a directory a container made) and
// ext4's lost+found, which e2fsck expects at the root (e2fsck(8), pass 3)
// and no container sees.
const (
	DataDir      = "data"
	LayoutMarker = ".cryptvol-layout"
	// stageDir collects a volume's entries while a filesystem of the
	// older layout (the container's files at the root) is moved into
	// DataDir; it becomes DataDir by one rename.
	stageDir  = ".cryptvol-data.new"
	lostFound = "lost+found"
)

// ErrOldLayout is returned (wrapped) by Data without create for a
// filesystem that still has its files at the root: cryptvol versions
// before the data directory mounted the root itself.
var ErrOldLayout = errors.New("the volume's files are still at its filesystem's root (older cryptvol layout)")

// Data returns the path of target's data directory, where a container
// gets the volume, after proving that target is the root of the
// filesystem on dev (its device number is dev's) and that DataDir is a
// directory of that filesystem, not a link. With create, a filesystem
// without the layout gets it: a new one an empty DataDir with the root's
// owner and mode, one of the older layout its root's entries moved into
// DataDir (migrate). Only a caller that knows no one else holds the
// filesystem may create: a container holding its root would see its files
// move. Each step is a rename or a create on one filesystem, journaled in
// order, so a crash between any two leaves a state the next call finishes
// (TestLayoutFinishesAfterACrashAtEveryStep).
func (f *FS) Data(target, dev string, create bool) (string, error) {
	if err := validatePath("mount point", target); err != nil {
		return "", err
	}
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join(f.devRoot, dev), &want); err != nil {
		return "", fmt.Errorf("volume layout at %s: %w", target, err)
	}
	if want.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("volume layout at %s: %s is not a block device", target, dev)
	}
	return f.data(target, want.Rdev, create)
}

// data is Data for the filesystem whose device number is rdev (tests: a
// temporary directory's own device).
func (f *FS) data(target string, rdev uint64, create bool) (string, error) {
	fd, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("volume layout: opening %s: %w", target, err)
	}
	defer unix.Close(fd)
	var root unix.Stat_t
	if err := unix.Fstat(fd, &root); err != nil {
		return "", fmt.Errorf("volume layout: %s: %w", target, err)
	}
	if root.Dev != rdev {
		return "", fmt.Errorf("volume layout: %s is not the volume's filesystem (device %d:%d, want %d:%d)",
			target, unix.Major(root.Dev), unix.Minor(root.Dev), unix.Major(rdev), unix.Minor(rdev))
	}
	if err := layout(fd, &root, create); err != nil {
		return "", fmt.Errorf("volume layout at %s: %w", target, err)
	}
	return filepath.Join(target, DataDir), nil
}

// layout checks, and with create makes or finishes, the layout of the
// filesystem whose root directory is open as fd.
func layout(fd int, root *unix.Stat_t, create bool) error {
	marked, err := isKind(fd, LayoutMarker, unix.S_IFREG, root.Dev)
	if err != nil {
		return err
	}
	if marked {
		ok, err := isKind(fd, DataDir, unix.S_IFDIR, root.Dev)
		switch {
		case err != nil || ok:
			return err
		case !create:
			return fmt.Errorf("%s is missing (a move into it was interrupted; the next first mount finishes it)", DataDir)
		}
		// A crash between the marker and the rename: the stage holds
		// every entry, and becomes the data directory.
		staged, err := isKind(fd, stageDir, unix.S_IFDIR, root.Dev)
		if err != nil {
			return err
		}
		if !staged {
			return fmt.Errorf("the layout marker %s is there but neither %s nor %s is: damage from outside; not guessing which files are the volume's", LayoutMarker, DataDir, stageDir)
		}
		if err := crashPoint(); err != nil {
			return err
		}
		return renameNoReplace(fd, stageDir, fd, DataDir)
	}
	if !create {
		return ErrOldLayout
	}
	return migrate(fd, root)
}

// migrate gives a filesystem without the marker its data directory: every
// root entry but lost+found goes into the stage (a container's own "data"
// too), the marker is made, and the stage becomes DataDir. Until the
// marker exists, everything at the root other than the stage is the
// container's; after it, only the stage is, so a rerun after a crash at
// any point moves what is left and finishes.
func migrate(fd int, root *unix.Stat_t) error {
	if err := crashPoint(); err != nil {
		return err
	}
	if err := unix.Mkdirat(fd, stageDir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("making %s: %w", stageDir, err)
	}
	sfd, err := unix.Openat(fd, stageDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", stageDir, err)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return err
	}
	if st.Dev != root.Dev {
		return fmt.Errorf("%s is on another filesystem", stageDir)
	}
	// The container saw the root's owner and mode (options uid, gid and
	// mode set them at create): the data directory has them from now on.
	if err := crashPoint(); err != nil {
		return err
	}
	if err := unix.Fchown(sfd, int(root.Uid), int(root.Gid)); err != nil {
		return fmt.Errorf("chown of %s: %w", stageDir, err)
	}
	if err := unix.Fchmod(sfd, root.Mode&07777); err != nil {
		return fmt.Errorf("chmod of %s: %w", stageDir, err)
	}
	names, err := rootEntries(fd)
	if err != nil {
		return err
	}
	for _, n := range names {
		switch n {
		case stageDir, LayoutMarker, lostFound:
			continue
		}
		if err := crashPoint(); err != nil {
			return err
		}
		if err := renameNoReplace(fd, n, sfd, n); err != nil {
			return fmt.Errorf("moving %q into %s: %w", n, DataDir, err)
		}
	}
	if err := crashPoint(); err != nil {
		return err
	}
	mfd, err := unix.Openat(fd, LayoutMarker, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return fmt.Errorf("making %s: %w", LayoutMarker, err)
	}
	unix.Close(mfd)
	if err := crashPoint(); err != nil {
		return err
	}
	return renameNoReplace(fd, stageDir, fd, DataDir)
}

// crashPoint runs before each step that changes the filesystem; tests make
// it fail to stop a layout between two steps, as a crash would.
var crashPoint = func() error { failpoint.Here("layout"); return nil }

// rootEntries lists the names in the directory open as fd.
func rootEntries(fd int) ([]string, error) {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(dfd), "volume root")
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing the root: %w", err)
	}
	return names, nil
}

// isKind reports whether name in the directory fd exists as the kind of
// file ifmt (unix.S_IFDIR, S_IFREG) on device dev, without following a
// link; it exists as anything else: an error naming it.
func isKind(fd int, name string, ifmt uint32, dev uint64) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != ifmt || st.Dev != dev {
		return false, fmt.Errorf("%s is not a %s of the volume's filesystem (mode %o); refusing to hand it out", name, kindName(ifmt), st.Mode)
	}
	return true, nil
}

func kindName(ifmt uint32) string {
	if ifmt == unix.S_IFDIR {
		return "directory"
	}
	return "regular file"
}

// renameNoReplace renames without ever replacing what is at the new name.
func renameNoReplace(olddir int, oldname string, newdir int, newname string) error {
	if err := unix.Renameat2(olddir, oldname, newdir, newname, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return nil
}
