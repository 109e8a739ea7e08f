#!/usr/bin/env bash
# trash.sh: the undo window for removes (CRYPTVOL_REMOVE_GRACE, volume/trash.go) in a shared volume group, run on
# this host by scripts/vm/run-pair (`make test-shared-trash`; not in `make test`, for its time): the trash is the
# group's. A volume made and written on node 1 and removed there is listed in node 2's trash, its key Deactivated;
# node 2 restores it and reads what node 1 wrote; removed again on node 2, it is purged by whichever host's
# sweeper comes first once the grace (a minute) has passed, and both hosts see it gone: LV, key and trash entry.
#   usage: scripts/vm/run-pair tests/shared/trash.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck disable=SC1091
source "$repo/scripts/vm/pair-lib.sh"
# shellcheck disable=SC1091
source "$here/checks.bash"
# trash: the guest's plugin's trash listing, as a shell line for the guest.
trash='$repo/bin/cryptvol trash --socket $sock --json'

pair_setup
check2 "both plugins answer, with CRYPTVOL_REMOVE_GRACE=1m" "source $here/node.bash; remove_grace=1m plug_start" \
	"source $here/node.bash; remove_grace=1m plug_start" || finish

echo "== removed on node 1, restored on node 2"
check "node 1 creates t1, writes to it and removes it" 1 \
	'ok Create "{\"Name\":\"t1\"}" && ok Mount "{\"Name\":\"t1\",\"ID\":\"c1\"}" &&
	 echo "written on node1 TRASHMARK" > $mnt/t1/data/f && sync && ok Unmount "{\"Name\":\"t1\",\"ID\":\"c1\"}" &&
	 call Get "{\"Name\":\"t1\"}" | jq -r .Volume.Status.kmip_key_id > /lab/pair/t1-key && ok Remove "{\"Name\":\"t1\"}"'
check "node 2 no longer lists t1, and lists it in its trash with its key" 2 \
	"! call List '{}' | jqe '.Volumes | map(.Name) | index(\"t1\")' > /dev/null &&
	 $trash | jqe --arg k \"\$(cat /lab/pair/t1-key)\" '[.trash[] | select(.volume == \"t1\" and .key_id == \$k)] | length == 1'"
check "its key is Deactivated on the KMIP server" 2 \
	'source /lab/pair/kmip/env && $repo/scripts/kmip/key-state "$(cat /lab/pair/t1-key)" | grep -q Deactivated'
check "node 2 restores t1 and reads what node 1 wrote" 2 \
	'$repo/bin/cryptvol restore --socket $sock t1 && ok Mount "{\"Name\":\"t1\",\"ID\":\"c2\"}" &&
	 grep -q "written on node1" $mnt/t1/data/f && ok Unmount "{\"Name\":\"t1\",\"ID\":\"c2\"}" && ! mapped t1'
check "node 1 lists t1 again, under a new key; its old key is destroyed" 1 \
	'k=$(call Get "{\"Name\":\"t1\"}" | jq -r .Volume.Status.kmip_key_id) && echo "key: $k" && [ -n "$k" ] &&
	 [ "$k" != "$(cat /lab/pair/t1-key)" ] && echo "$k" > /lab/pair/t1-key2 && source /lab/pair/kmip/env &&
	 $repo/scripts/kmip/key-state --gone "$(cat /lab/pair/t1-key)"'
check "node 1 mounts t1 and reads it" 1 \
	'ok Mount "{\"Name\":\"t1\",\"ID\":\"c3\"}" && grep -q "written on node1" $mnt/t1/data/f &&
	 ok Unmount "{\"Name\":\"t1\",\"ID\":\"c3\"}" && ! mapped t1'

echo "== removed on node 2, purged once the grace has passed, gone on both"
check "node 2 removes t1" 2 'ok Remove "{\"Name\":\"t1\"}"'
check "node 1 lists it in its trash" 1 "$trash | jqe '[.trash[] | select(.volume == \"t1\")] | length == 1'"
# The grace is a minute and each host's sweeper runs every 15 s: either may purge it.
check "its key is destroyed on the KMIP server once the grace has passed" 1 \
	'source /lab/pair/kmip/env; for i in $(seq 1 60); do $repo/scripts/kmip/key-state --gone "$(cat /lab/pair/t1-key2)" && exit 0; sleep 2; done; exit 1'
check2 "both hosts: no LV of t1 in the group, and an empty trash" \
	"source $here/node.bash; for i in \$(seq 1 30); do ! lvs --noheadings -o lv_name sv | grep -q 'cv-t1' && $trash | jqe '.trash | length == 0' && exit 0; sleep 2; done; exit 1" \
	"source $here/node.bash; for i in \$(seq 1 30); do ! lvs --noheadings -o lv_name sv | grep -q 'cv-t1' && $trash | jqe '.trash | length == 0' && exit 0; sleep 2; done; exit 1"
finish
