package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/cryptvol/cryptvol/internal/atomicfile"
)

// devicesFile, in the state directory, names the volume group's devices as
// the last start learned them. A start without CRYPTVOL_DEVICES hands them
// to lvm.Client.CheckVG, which confirms the group from the metadata text on
// them instead of running vgs, one lvm program fewer between a restart and
// answering requests. It is only ever a hint: a device that no longer holds
// the group's current text makes CheckVG ask vgs, and the start then
// records what lvm named. Device names are not secret.
const devicesFile = "lvm-devices.json"

type knownDevices struct {
	VG      string   `json:"vg"`
	Devices []string `json:"devices"`
}

// readKnownDevices returns the devices recorded for vg, or nil when there
// are none (a first start, another group, a file that does not parse).
func readKnownDevices(stateDir, vg string, log logrus.FieldLogger) []string {
	b, err := os.ReadFile(filepath.Join(stateDir, devicesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var k knownDevices
	if err == nil {
		err = json.Unmarshal(b, &k)
	}
	if err != nil {
		log.WithError(err).Warn("the recorded volume group devices are unreadable; asking vgs")
		return nil
	}
	if k.VG != vg {
		return nil
	}
	return k.Devices
}

// saveKnownDevices records devs for vg unless they are what was read
// (known). A failed write costs the next start one vgs, so it is logged,
// not fatal. The file is replaced atomically: a torn one would only be
// ignored, but a whole one is never lost to a crash.
func saveKnownDevices(stateDir, vg string, known, devs []string, log logrus.FieldLogger) {
	if len(devs) == 0 || slices.Equal(known, devs) {
		return
	}
	b, err := json.Marshal(knownDevices{VG: vg, Devices: devs})
	if err == nil {
		err = atomicfile.Write(filepath.Join(stateDir, devicesFile), b, "volume group devices record", os.Rename)
	}
	if err != nil {
		log.WithError(err).Warn("could not record the volume group's devices; the next start asks vgs")
	}
}
