package luks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// What this file owns: asking the kernel which device-mapper devices exist,
// by name, from device-mapper's own name table (DM_DEV_STATUS,
// DM_LIST_DEVICES in linux/dm-ioctl.h).
//
// sysfs is not that table. Since Linux 5.16 a device-mapper device gets its
// block device, and with it /sys/block/dm-N, only when its first table is
// loaded (drivers/md/dm.c, dm_setup_md_queue calls add_disk), so a device
// whose open was cut off between DM_DEV_CREATE and DM_TABLE_LOAD (the
// plugin SIGKILLed there, or cryptsetup killed by a cancelled request)
// exists under the mapping's name with no trace in sysfs. Taken for closed,
// it stayed forever, and the volume's next open failed on its name.

// dmInfo is what DM_DEV_STATUS says of one device.
type dmInfo struct {
	dev   uint64 // the device number the kernel gave it
	flags uint32 // DM_*_FLAG: dmActivePresentFlag says whether a table is live
	uuid  string
}

// live says whether the device has a live table: a mapping in use, or one
// that was ever usable. A device without one maps no data.
func (i dmInfo) live() bool { return i.flags&dmActivePresentFlag != 0 }

// statusDM asks the kernel about the device called name: ENXIO when there
// is none.
func statusDM(name string) (dmInfo, error) {
	b, err := dmCall(dmDevStatusCmd, name, "", 0, 0, nil)
	if err != nil {
		return dmInfo{}, err
	}
	ne := binary.NativeEndian
	uuid := b[offDMUUID : offDMUUID+dmUUIDLen]
	if i := bytes.IndexByte(uuid, 0); i >= 0 {
		uuid = uuid[:i]
	}
	return dmInfo{dev: ne.Uint64(b[offDMDev:]), flags: ne.Uint32(b[28:]), uuid: string(uuid)}, nil
}

// Bounds of DM_LIST_DEVICES's answer: the first buffer holds a few
// hundred names; the kernel says when it needs more (dmBufferFullFlag),
// and a list that would need more than maxList is refused rather than
// grown without end.
const (
	firstList = 16 << 10
	maxList   = 4 << 20
)

// listDM returns the name of every device-mapper device.
func listDM() ([]string, error) {
	ne := binary.NativeEndian
	for room := firstList; room <= maxList; room *= 4 {
		b, err := dmIoctl(dmListDevicesCmd, "", "", 0, 0, nil, room)
		if err != nil {
			return nil, fmt.Errorf("DM_LIST_DEVICES: %w", err)
		}
		if ne.Uint32(b[28:])&dmBufferFullFlag != 0 {
			continue
		}
		start, size := ne.Uint32(b[16:]), ne.Uint32(b[12:])
		if start != dmIoctlSize || size < start || int(size) > len(b) {
			return nil, fmt.Errorf("DM_LIST_DEVICES answered data at %d..%d in a buffer of %d bytes", start, size, len(b))
		}
		return parseNameList(b[start:size])
	}
	return nil, fmt.Errorf("DM_LIST_DEVICES: the list of devices does not fit in %d bytes", maxList)
}

// The layout of struct dm_name_list (linux/dm-ioctl.h): dev (u64), next
// (u32: the offset of the next record from this one's start, 0 on the
// last), then the NUL-terminated name; what newer kernels add after the
// name (event_nr, flags, uuid) lies inside next and is skipped.
const (
	offNameListNext = 8
	offNameListName = 12
)

var errNameList = errors.New("malformed DM_LIST_DEVICES answer")

// parseNameList reads the kernel's list of names strictly: every record
// inside data, each after the one before, each name non-empty, shorter
// than DM_NAME_LEN and terminated inside its record, of a device number
// other than 0. No data is the kernel's "no devices" (drivers/md/dm-ioctl.c
// list_devices@v6.1: data_size counts the records it writes, none).
func parseNameList(data []byte) ([]string, error) {
	ne := binary.NativeEndian
	if len(data) == 0 {
		return nil, nil
	}
	var names []string
	for off := 0; ; {
		if len(data)-off <= offNameListName {
			return nil, fmt.Errorf("%w: record at %d runs past the end", errNameList, off)
		}
		if ne.Uint64(data[off:]) == 0 {
			return nil, fmt.Errorf("%w: record at %d is of device 0", errNameList, off)
		}
		next := int(ne.Uint32(data[off+offNameListNext:]))
		end := len(data)
		if next != 0 {
			if next <= offNameListName || next > len(data)-off {
				return nil, fmt.Errorf("%w: record at %d says the next is %d bytes on, in %d", errNameList, off, next, len(data))
			}
			end = off + next
		}
		rec := data[off+offNameListName : end]
		n := bytes.IndexByte(rec, 0)
		if n <= 0 || n >= dmNameLen {
			return nil, fmt.Errorf("%w: record at %d has no name of 1 to %d bytes", errNameList, off, dmNameLen-1)
		}
		names = append(names, string(rec[:n]))
		if next == 0 {
			return names, nil
		}
		off = end
	}
}

// gone says whether an ioctl's error means there is no such device.
func gone(err error) bool { return errors.Is(err, unix.ENXIO) }
