package luks

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The device-mapper ioctls Open, Close and IsOpen issue themselves, as
// linux/dm-ioctl.h defines them: each is _IOWR(0xfd, CMD, struct
// dm_ioctl), the command numbers counting from DM_VERSION_CMD 0.
const (
	// sizeof(struct dm_ioctl): version[3], data_size, data_start,
	// target_count, open_count, flags, event_nr, padding (u32 each), dev
	// (u64), name[128], uuid[129], data[7].
	dmIoctlSize = 312
	dmNameLen   = 128
	dmUUIDLen   = 129
	offDMDev    = 40
	offDMName   = 48
	offDMUUID   = 176

	dmListDevicesCmd = 2
	dmDevCreateCmd   = 3
	// DM_DEV_REMOVE is 4 (2, DM_LIST_DEVICES, succeeds and removes
	// nothing: the check after Close's ioctl is why).
	dmDevRemoveCmd  = 4
	dmDevSuspendCmd = 6 // without DM_SUSPEND_FLAG: resume, making a loaded table live
	dmDevStatusCmd  = 7
	dmTableLoadCmd  = 9

	dmReadonlyFlag      = 1 << 0
	dmActivePresentFlag = 1 << 5  // the device has a live table
	dmBufferFullFlag    = 1 << 8  // the reply did not fit: ask again with more room
	dmSecureDataFlag    = 1 << 15 // the kernel wipes its copy of the buffer

	// sizeof(struct dm_target_spec): sector_start, length (u64), status,
	// next (u32), target_type[16]; the target's parameters follow.
	dmTargetSpecSize = 40
)

// dmCall issues one device-mapper command for the device called name, with
// payload (a target spec and its parameters) after the header, and returns
// the kernel's reply header. eventNr carries libdevmapper's udev flags.
func dmCall(cmd uintptr, name, uuid string, flags, eventNr uint32, payload []byte) ([]byte, error) {
	b, err := dmIoctl(cmd, name, uuid, flags, eventNr, payload, 0)
	if err != nil {
		return nil, err
	}
	return b[:dmIoctlSize], nil
}

// dmIoctl is dmCall with room bytes for the kernel's answer after the
// header and the payload, and it returns the whole buffer.
func dmIoctl(cmd uintptr, name, uuid string, flags, eventNr uint32, payload []byte, room int) ([]byte, error) {
	if len(name) >= dmNameLen {
		return nil, fmt.Errorf("device-mapper name %q too long", name)
	}
	if len(uuid) >= dmUUIDLen {
		return nil, fmt.Errorf("device-mapper uuid %q too long", uuid)
	}
	f, err := os.OpenFile("/dev/mapper/control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, dmIoctlSize+len(payload)+room)
	// The payload may carry a key reference; the kernel's answer does not.
	defer clear(b[dmIoctlSize : dmIoctlSize+len(payload)])
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], 4) // version 4.0.0: the kernel checks the major
	ne.PutUint32(b[12:], uint32(len(b)))
	ne.PutUint32(b[16:], dmIoctlSize)
	if len(payload) > 0 {
		ne.PutUint32(b[20:], 1) // target_count: one target
	}
	ne.PutUint32(b[28:], flags)
	ne.PutUint32(b[32:], eventNr)
	copy(b[offDMName:offDMName+dmNameLen], name)
	copy(b[offDMUUID:offDMUUID+dmUUIDLen], uuid)
	copy(b[dmIoctlSize:], payload)
	req := uintptr(3<<30|dmIoctlSize<<16|0xfd<<8) | cmd
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(&b[0]))); errno != 0 {
		return nil, errno
	}
	return b, nil
}

// targetSpec is one struct dm_target_spec and its NUL-terminated
// parameters, padded to 8 bytes as the kernel wants the next one aligned.
func targetSpec(start, length uint64, target string, params []byte) []byte {
	n := (dmTargetSpecSize + len(params) + 1 + 7) &^ 7
	b := make([]byte, n)
	ne := binary.NativeEndian
	ne.PutUint64(b[0:], start)
	ne.PutUint64(b[8:], length)
	ne.PutUint32(b[20:], uint32(n))
	copy(b[24:40], target)
	copy(b[dmTargetSpecSize:], params)
	return b
}
