#!/usr/bin/env bash
# contract.sh: Docker's real mount contract, end to end inside the lab guest, with the plugin bundle
# over /dev/vda and /dev/vdb (installed by tests/e2e/lib.bash unless already there). What dockerd does
# that an idealised model misses: docker cp on a running container, dockerd SIGKILLed (live-restore off and on),
# the plugin SIGKILLed or force-disabled under a writing container, a remove that fails after erasing and the same
# name created again, a KMIP server that accepts but does not answer while dockerd starts, and a fresh volume
# that must look like a fresh local volume.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/scripts/vm/check.sh"
source "$repo/tests/e2e/lib.bash"
[ "$(hostname)" = cryptvol-lab ] || { echo "contract.sh: run inside the lab guest" >&2; exit 2; }
: "${CRYPTVOL_KMIP_ENDPOINT:?start scripts/kmip/dev-server and source its env file}"
# lines FILE-IN-CONTAINER CONTAINER: how many lines a writer has written.
lines() { docker exec "$2" sh -c "wc -l < $1" 2>/dev/null | tr -d ' '; }
# grows CONTAINER: the writer's log gains lines within 20 s.
grows() {
	local a b; a=$(lines /data/log "$1"); for _ in $(seq 1 20); do sleep 1; b=$(lines /data/log "$1"); [ "${b:-0}" -gt "${a:-0}" ] && return 0; done
	return 1
}
# Every volume here is cryptvol's: a name docker does not know would otherwise become a local volume and the
# checks would pass without the plugin.
writer() { docker run -d --name "$1" -v "$2":/data --volume-driver cryptvol $img sh -c 'i=0; while true; do echo $i >> /data/log; i=$((i+1)); sync; sleep 1; done'; }
ours() { docker volume inspect "$1" --format '{{.Driver}}' | grep -qx 'cryptvol:latest'; }
# mounted_with_path VOLUME: one inspect shows the volume mounted and a mountpoint ending in its name/data.
mounted_with_path() {
	local s; s=$(docker volume inspect "$1" --format "{{index .Status \"mounted\"}} {{.Mountpoint}}") || return 1
	[[ $s == "true /"*"/$1/data" ]]
}
dockerd_pid() { cat /run/lab-dockerd.pid; }

install_plugin
check "plugin enabled" docker plugin enable cryptvol

echo "== a fresh volume looks like a fresh local volume"
content_image
check "ext4 volume" docker volume create -d cryptvol fresh4
check "xfs volume" docker volume create -d cryptvol --opt fs=xfs --opt size=320M freshx
check "local volume" docker volume create freshl
seen() { docker run --rm -v "$1":/data content:lab sh -c 'cd /data && find . | sort | while read f; do stat -c "%n %u:%g %a" "$f"; done; cat hello' 2>&1; }
check "fresh4 and freshx are cryptvol volumes" sh -c "$(declare -f ours); ours fresh4 && ours freshx"
want=$(seen freshl)
check "the local volume got the image's content (the reference)" grep -q from-image <<<"$want"
check_eq "ext4: same listing, ownership and content as local" "$want" "$(seen fresh4)"
check_eq "xfs: same listing, ownership and content as local" "$want" "$(seen freshx)"
check "a fresh ext4 volume's root is empty (no lost+found)" docker volume create -d cryptvol fresh4b
check_eq "nothing at the root" "" "$(docker run --rm -v fresh4b:/data $img ls -A /data 2>&1)"
check "removed" docker volume rm fresh4 freshx freshl fresh4b

echo "== docker cp on a running container"
check "cpv created" docker volume create -d cryptvol cpv
check "writer cp1 runs" writer cp1 cpv
check "docker cp into it" docker cp /etc/hostname cp1:/data/copied
check "docker cp out of it" docker cp cp1:/data/log /scratch/cp-log.out
check "the writer keeps writing after docker cp" grows cp1
check "still open" mapping_open cpv
check_eq "mount count 1 (one container)" 1 "$(status cpv mount_count)"
check_eq "another container can still mount it" "$(cat /etc/hostname)" "$(docker run --rm -v cpv:/data $img cat /data/copied 2>&1)"
check "the writer still writes" grows cp1
check "cp1 removed" docker rm -f cp1
check "closed after the last container exits" closed cpv

echo "== the plugin SIGKILLed under a writing container"
check "writer pk1 runs" writer pk1 cpv
before=$(lines /data/log pk1)
check "plugin killed" pkill -KILL -x cryptvol
wait_for "dockerd restarts the plugin" 90 plugin_up
check "writes go on" grows pk1
# Docker 26.1 unmounts the old instance's propagated mount after restarting the plugin, taking the new mount
# with it, sometimes after the plugin answers (volume/sweep.go restoreMount).
# The plugin mounts it again when the kernel reports the change (volume/sweep.go restoreMissing), or at the
# next sweep. One inspect must show both: mounted, and the mountpoint.
wait_for "inspect: mounted, with its mountpoint" 45 mounted_with_path cpv

check "docker plugin disable -f" docker plugin disable -f cryptvol
check "docker plugin enable" docker plugin enable cryptvol
check "writes go on after disable -f and enable" grows pk1
check "pk1 removed" docker rm -f pk1
wait_for "closed after the container exits" 60 closed cpv
check "nothing written was lost" sh -c "[ \$(docker run --rm -v cpv:/data $img sh -c 'wc -l < /data/log') -gt $before ]"
check "cpv removed" docker volume rm cpv

echo "== dockerd SIGKILLed with a container running (live-restore off)"
check "dkv created" docker volume create -d cryptvol dkv
check "dk1 holds dkv" docker run -d --name dk1 -v dkv:/data $img sleep 600
check "dkv open" mapping_open dkv
check "dockerd SIGKILLed" kill -KILL "$(dockerd_pid)"
sleep 2
check "dockerd starts again" "$repo/scripts/vm/lab-docker" start
wait_for "the plugin is enabled again" 120 plugin_up
repair_lost_propagation && wait_for "plugin up after the repair" 120 plugin_up
t0=$(date +%s)
wait_for "the dead container's volume is closed within 60 s" 60 closed dkv
echo "closed $(( $(date +%s) - t0 ))s after the plugin answered"
docker rm -f dk1 >/dev/null 2>&1
check "docker volume rm dkv" docker volume rm dkv

echo "== dockerd SIGKILLed under live-restore: a dead container's volume closes, a live one's stays"
check "live-restore on" sh -c 'echo "{\"live-restore\": true}" > /etc/docker/daemon.json'
check "dockerd restarted with it" sh -c "'$repo/scripts/vm/lab-docker' stop && '$repo/scripts/vm/lab-docker' start"
wait_for "plugin up" 120 plugin_up
check "lrv1 and lrv2 created" sh -c 'docker volume create -d cryptvol lrv1 && docker volume create -d cryptvol lrv2'
check "writer lr1 runs" writer lr1 lrv1
check "lr2 holds lrv2" docker run -d --name lr2 -v lrv2:/data $img sleep 600
lr2pid=$(docker inspect lr2 --format '{{.State.Pid}}')
check "dockerd SIGKILLed" kill -KILL "$(dockerd_pid)"
check "lr2 dies while dockerd is down" kill -KILL "$lr2pid"
sleep 2
check "dockerd starts again" "$repo/scripts/vm/lab-docker" start
wait_for "plugin up" 120 plugin_up
wait_for "the dead container's volume is closed within 60 s" 60 closed lrv2
check "the live container keeps its volume and writes" grows lr1
check "lrv1 still open" mapping_open lrv1
docker rm -f lr1 lr2 >/dev/null 2>&1
wait_for "lrv1 closed after lr1 exits" 60 closed lrv1
check "volumes removed" docker volume rm lrv1 lrv2
check "live-restore off again" sh -c "rm -f /etc/docker/daemon.json && '$repo/scripts/vm/lab-docker' stop && '$repo/scripts/vm/lab-docker' start"
wait_for "plugin up" 120 plugin_up

echo "== a remove that fails after erasing never costs a later volume of the same name"
check "rmv created and written" docker run --rm -v rmv:/data --volume-driver cryptvol $img sh -c 'echo old > /data/f'
check "rmv is cryptvol's" ours rmv
oldkey=$(status rmv kmip_key_id)
check "KMIP stopped" "$repo/scripts/kmip/dev-server" stop /scratch/kmip
check_not "docker volume rm fails with KMIP away" docker volume rm rmv
check "KMIP back" "$repo/scripts/kmip/dev-server" start /scratch/kmip
check "the same name created again" docker volume create -d cryptvol rmv
check "and written" docker run --rm -v rmv:/data $img sh -c 'echo new > /data/f && sync'
check "docker plugin disable -f" docker plugin disable -f cryptvol
check "docker plugin enable" docker plugin enable cryptvol
check_eq "the new volume's data survives the restart" new "$(docker run --rm -v rmv:/data $img cat /data/f 2>&1)"
wait_for "the old key is destroyed once KMIP is back" 60 "$repo/scripts/kmip/key-state" --gone "$oldkey"
check "the new key is active" "$repo/scripts/kmip/key-state" "$(status rmv kmip_key_id)"
check "rmv removed" docker volume rm rmv

echo "== KMIP accepting but silent while dockerd starts"
check "sv created" docker volume create -d cryptvol sv
check "KMIP stopped" "$repo/scripts/kmip/dev-server" stop /scratch/kmip
port=${CRYPTVOL_KMIP_ENDPOINT##*:}
python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $port)); s.listen(64); held = []
while True:
    c, _ = s.accept(); held.append(c)
" > /dev/null 2>&1 &
silent=$!
sleep 1
check "dockerd restarted while KMIP is silent" sh -c "'$repo/scripts/vm/lab-docker' stop && '$repo/scripts/vm/lab-docker' start"
wait_for "the plugin is enabled (it answers at once)" 60 plugin_up
check "inspect says KMIP does not answer" sh -c "docker volume inspect sv --format '{{index .Status \"kmip\"}}' | grep -qv '^reachable'"
sleep 30
kill "$silent"; wait "$silent" 2>/dev/null
check "KMIP answers again" "$repo/scripts/kmip/dev-server" start /scratch/kmip
check "sv listed with no manual step" sh -c 'docker volume ls --filter driver=cryptvol:latest -q | grep -qx sv'
wait_for "a container can use sv with no manual step" 120 docker run --rm -v sv:/data $img true
check "sv removed" docker volume rm sv

check "plugin disable" docker plugin disable cryptvol
finish
