package volume

import (
	"slices"

	"github.com/cryptvol/cryptvol/lvm"
)

// LVRecord is what a cryptvol LV's tags say about the volume, its key and
// the hosts of a shared group, for readers outside the plugin: `cryptvol
// decommission` (admin/decommissionvg.go) shows which volume each key it
// finds opens and who has that volume mounted. Tags are information, not
// locks (shared.go): a host that died keeps its cryptvol_on_ record.
type LVRecord struct {
	Volume    string `json:"volume"`               // docker volume name
	LV        string `json:"lv"`                   // LV name in the group
	KeyID     string `json:"key_id,omitempty"`     // cryptvol_key_ ("" when the id is not tag-safe)
	MadeBy    string `json:"made_by,omitempty"`    // cryptvol_madeby_ (shared group)
	MountedOn string `json:"mounted_on,omitempty"` // cryptvol_on_ (shared group)
}

// RecordOf reads lv's record; false for an LV that is not a cryptvol
// volume (no cryptvol tag, or not named cv-NAME).
func RecordOf(lv lvm.LV) (LVRecord, bool) {
	name, ok := volumeName(lv)
	if !ok || !slices.Contains(lv.Tags, TagOurs) {
		return LVRecord{}, false
	}
	return LVRecord{
		Volume:    name,
		LV:        lv.Name,
		KeyID:     tagValue(lv.Tags, tagKeyPrefix),
		MadeBy:    tagValue(lv.Tags, tagMadeByPrefix),
		MountedOn: tagValue(lv.Tags, tagOnPrefix),
	}, true
}
