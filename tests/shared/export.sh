#!/usr/bin/env bash
# export.sh: a volume exported on one host and imported on another, into a volume group of its own (run on this host
# by scripts/vm/run-pair, `make test-shared-export`; not in `make test`, for its time): node 1's plugin (the shared
# group) writes a volume and exports it (cryptvol export) to a file both guests see; node 2 runs a second plugin on a
# local volume group of its own disk, with the same KMIP identity, imports the file (cryptvol import), and reads
# node 1's data (SHA-256) under a KMIP key of its own, while the exported volume's key stays Active and the volume
# reads on node 1 still.
#   usage: scripts/vm/run-pair tests/shared/export.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck disable=SC1091
source "$repo/scripts/vm/pair-lib.sh"
# shellcheck disable=SC1091
source "$here/checks.bash"

pair_setup
check "node 1's plugin answers (the shared group)" 1 plug_start
check "node 2's second plugin answers, on a local volume group of its own disk" 2 local_start

echo "== exported on node 1, imported on node 2 into another volume group"
check "node 1 creates xv and writes 4 MiB of random data to it" 1 \
	'ok Create "{\"Name\":\"xv\"}" && ok Mount "{\"Name\":\"xv\",\"ID\":\"c1\"}" &&
	 head -c 4194304 /dev/urandom > $mnt/xv/data/r && sync && sha256sum < $mnt/xv/data/r | cut -d" " -f1 > /lab/pair/xv.sum &&
	 ok Unmount "{\"Name\":\"xv\",\"ID\":\"c1\"}" &&
	 call Get "{\"Name\":\"xv\"}" | jq -r .Volume.Status.kmip_key_id > /lab/pair/xv.key'
check "node 1 exports xv to a file both hosts see" 1 '$repo/bin/cryptvol export --socket $sock -o /lab/pair/xv.export xv'
check "node 2 imports it into its local group as xv" 2 '$repo/bin/cryptvol import --socket $lsock /lab/pair/xv.export xv && lvs local$node/cv-xv'
check "node 2 reads node 1's data (SHA-256)" 2 \
	'p=$(sock=$lsock call Mount "{\"Name\":\"xv\",\"ID\":\"c2\"}" | jq -r .Mountpoint) && echo "at $p" &&
	 [ "$(sha256sum < $p/r | cut -d" " -f1)" = "$(cat /lab/pair/xv.sum)" ] && sock=$lsock ok Unmount "{\"Name\":\"xv\",\"ID\":\"c2\"}"'
check "node 2's xv has a key of its own; node 1's key stays Active" 2 \
	'k=$(sock=$lsock call Get "{\"Name\":\"xv\"}" | jq -r .Volume.Status.kmip_key_id) && echo "keys: $k, $(cat /lab/pair/xv.key)" &&
	 [ -n "$k" ] && [ "$k" != "$(cat /lab/pair/xv.key)" ] && source /lab/pair/kmip/env &&
	 $repo/scripts/kmip/key-state "$(cat /lab/pair/xv.key)" | grep -q Active'
check "node 1 still reads xv" 1 \
	'ok Mount "{\"Name\":\"xv\",\"ID\":\"c3\"}" && [ "$(sha256sum < $mnt/xv/data/r | cut -d" " -f1)" = "$(cat /lab/pair/xv.sum)" ] &&
	 ok Unmount "{\"Name\":\"xv\",\"ID\":\"c3\"}"'
finish
