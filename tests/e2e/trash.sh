#!/usr/bin/env bash
# trash.sh: an undo window for removes (CRYPTVOL_REMOVE_GRACE, volume/trash.go), through the real dockerd, as a user
# meets it: volumes with data removed with docker volume rm, two alone and three in a burst; each gone from Docker
# at once, closed, its name free, its KMIP key Deactivated (PyKMIP still serves its bytes: Get checks no state) and
# its LV kept under a name Docker never lists; cryptvol trash lists them; cryptvol restore brings four back, one
# under a new name beside a new volume of its old name, with identical data (SHA-256) under a new Active key while
# the old key is destroyed; and the fifth, left alone, is purged by the sweeper once the grace has passed: key
# destroyed on the KMIP server, LV gone. The grace is set back to off at the end, so the scripts after this one
# remove at once.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/scripts/vm/check.sh"
source "$repo/tests/e2e/lib.bash"
[ "$(hostname)" = cryptvol-lab ] || { echo "trash.sh: run inside the lab guest" >&2; exit 2; }
: "${CRYPTVOL_KMIP_ENDPOINT:?start scripts/kmip/dev-server and source its env file}"

cv="$repo/bin/cryptvol"
install_plugin
# set_grace VALUE: docker plugin set takes a disabled plugin (the script before this one leaves it disabled).
set_grace() {
	docker plugin disable -f cryptvol >/dev/null 2>&1
	docker plugin set cryptvol CRYPTVOL_REMOVE_GRACE="$1" && docker plugin enable cryptvol >/dev/null
}
# An hour while the volumes are removed and restored (under emulation a restore can come more than a minute after
# its remove); then a minute, which purges what is still in the trash a minute after its remove.
check "CRYPTVOL_REMOVE_GRACE=1h set (docker plugin disable -f, set, enable)" set_grace 1h
check "the plugin answers docker volume ls" docker volume ls

# key STATE of a key id, as the KMIP server has it ("Active", "Deactivated"), from bin/key-state.
kstate() { "$repo/scripts/kmip/key-state" "$1" | sed -n 's/^key [^:]*: \([A-Za-z]*\),.*/\1/p'; }
# trash_id NAME: the id of NAME's only entry in the trash.
trash_id() { "$cv" trash --json | jq -r --arg v "$1" '[.trash[] | select(.volume == $v)] | if length == 1 then .[0].id else empty end'; }
gone_from_docker() { closed "$1" && ! lv_exists "$1"; }
# sum VOLUME: the SHA-256 of its file r, if the volume exists (docker run would make a local one of a missing name).
sum() { docker volume inspect "$1" >/dev/null 2>&1 && docker run --rm -v "$1":/data $img sha256sum /data/r 2>&1 | cut -d' ' -f1; }

echo "== five volumes with data, then docker volume rm: two alone, three in a burst"
declare -A sums keys
for v in tr5 tr1 tr2 tr3 tr4; do
	check "$v created with 4 MiB of random data" sh -c \
		"docker volume create -d cryptvol --opt size=64M $v >/dev/null && docker run --rm -v $v:/data $img sh -c 'head -c 4194304 /dev/urandom > /data/r; sync'"
	sums[$v]=$(sum $v)
	keys[$v]=$(status $v kmip_key_id)
done
# tr5 first: it is left in the trash for the sweeper to purge once the grace is shortened to a minute, below.
check "docker volume rm tr5" docker volume rm tr5
id5=$(trash_id tr5)
check "tr5 is in the trash" test -n "$id5"
check "docker volume rm tr1" docker volume rm tr1
check "docker volume rm tr2, tr3 and tr4 at once" sh -c \
	'docker volume rm tr2 & a=$!; docker volume rm tr3 & b=$!; docker volume rm tr4 & c=$!; wait $a && wait $b && wait $c'
for v in tr1 tr2 tr3 tr4 tr5; do
	check_not "$v: docker volume inspect finds nothing" docker volume inspect $v
	check "$v: closed, and no LV under its name" gone_from_docker $v
	check_eq "$v: its key is Deactivated on the KMIP server" Deactivated "$(kstate "${keys[$v]}")"
done
check_not "docker volume ls lists none of them" sh -c 'docker volume ls -q | grep -E "^tr[1-5]"'
check_eq "cryptvol trash lists the four, with their keys" "${keys[tr1]} ${keys[tr2]} ${keys[tr3]} ${keys[tr4]}" \
	"$("$cv" trash --json | jq -r '[.trash[] | select(.volume | test("^tr[1-4]$"))] | sort_by(.volume) | map(.key_id) | join(" ")')"
check "the terminal listing names tr1's trash entry and its purge time" sh -c "'$cv' trash | grep -q '^$(trash_id tr1) .* tr1 '"
check "its LV is kept under that id" lvs "$vg/cv-$(trash_id tr1)"
check "metrics: cryptvol_trash_volumes counts them" sh -c \
	"curl -s --max-time 10 http://127.0.0.1:9633/metrics | awk '\$1 == \"cryptvol_trash_volumes\" {n = \$2} END {exit !(n >= 4)}'"

echo "== the name is free at once; restore under a new name beside it"
check "a new tr1, with other data" sh -c \
	"docker run --rm -v tr1:/data --volume-driver cryptvol $img sh -c 'echo new > /data/r'"
check "cryptvol restore tr1 refuses: tr1 exists, names the way out" says "exists: restore trash entry .* under another name" \
	"$cv" restore tr1
check "cryptvol restore tr1 tr1-back" "$cv" restore tr1 tr1-back
check_eq "tr1-back has the data tr1 had (SHA-256)" "${sums[tr1]}" "$(sum tr1-back)"
check_eq "the new tr1 is untouched" new "$(docker run --rm -v tr1:/data $img cat /data/r 2>&1)"
check "tr1's old key is destroyed on the KMIP server" "$repo/scripts/kmip/key-state" --gone "${keys[tr1]}"
check_eq "tr1-back's new key is Active" Active "$(kstate "$(status tr1-back kmip_key_id)")"

echo "== restore the burst under their own names"
for v in tr2 tr3 tr4; do
	check "cryptvol restore $v" "$cv" restore "$(trash_id $v)"
	check_eq "$v has its data back (SHA-256)" "${sums[$v]}" "$(sum $v)"
	check "$v's new key is another, Active, and its old one destroyed" sh -c \
		"[ '$(status $v kmip_key_id)' != '${keys[$v]}' ] && '$repo/scripts/kmip/key-state' --gone '${keys[$v]}'"
	check "$v is closed again" closed $v
done
check_eq "the trash holds none of them" "" "$("$cv" trash --json | jq -r '.trash[] | select(.volume | test("^tr[1-4]")) | .id')"

echo "== the grace passes: the sweeper purges"
check "CRYPTVOL_REMOVE_GRACE=1m: shortened, for every entry" set_grace 1m
# tr5 was removed more than a minute ago by now, or will be; the sweeper runs every 15 s.
wait_for "tr5's key is destroyed on the KMIP server once the grace has passed" 120 "$repo/scripts/kmip/key-state" --gone "${keys[tr5]}"
wait_for "its LV is gone" 30 sh -c "! lvs '$vg/cv-$id5' >/dev/null 2>&1"
check_eq "the trash no longer lists it" "" "$("$cv" trash --json | jq -r '.trash[] | select(.volume == "tr5") | .id')"

echo "== grace off again: a remove destroys at once"
check "CRYPTVOL_REMOVE_GRACE=off" set_grace off
key1=$(status tr1 kmip_key_id)
check "docker volume rm tr1 tr1-back tr2 tr3 tr4" docker volume rm tr1 tr1-back tr2 tr3 tr4
check "tr1's key is destroyed at once" "$repo/scripts/kmip/key-state" --gone "$key1"
wait_for "the trash is empty" 30 sh -c "[ \"\$('$cv' trash --json | jq '.trash | length')\" = 0 ]"
check "plugin disable" docker plugin disable cryptvol
finish
