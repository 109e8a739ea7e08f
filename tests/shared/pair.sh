#!/usr/bin/env bash
# pair.sh: volumes of a shared volume group on two hosts, run on this host by scripts/vm/run-pair, which
# boots the two lab guests (node1, node2) sharing one disk (/dev/vdd). Each guest runs sanlock and lvmlockd
# (scripts/vm/shared-node); node 2 also runs the KMIP server, on the guests' link, and both use its one cluster
# identity. What it shows, in this order:
#   - Docker 26.1 and the managed plugin (bin/plugin, shared mode) on both hosts, a two-node Swarm with node 2 as
#     its manager: a stack's service (stack.yml) placed on node 1 writes to its cryptvol volume; deployed again with
#     the constraint on node 2, its task there reads what node 1 wrote, and node 1 is left with no mapping and an
#     inactive LV; inspect on either host names the host that has the volume mounted;
#   - then the plugin run as a host process (bin/cryptvol, CRYPTVOL_SHARED=true), driven with VolumeDriver calls:
#     a volume made and written on node 1 is read on node 2 after node 1's last unmount; while one host has it
#     mounted, a Mount on the other fails saying so, with no mapping made there; a Create of the name on the other
#     host returns the existing volume, and a conflicting option is reported; both hosts rotating its key at once
#     leave one keyslot, opened by the key its token names; node 2's rotation of the volume node 1 made leaves the
#     new key in node 1's KMIP Object Group, and `cryptvol decommission node1 --dry-run` shows that key with its
#     volume and maker; a plugin started on node 2 under node 1's name refuses, naming node 1's sanlock host_id;
#   - node 1's guest killed while it has the volume mounted: node 2 gets it once node 1's sanlock lease has expired
#     (the time is printed), fsck -n finds the filesystem clean and what node 1 had synced is there; neither the
#     shared disk nor either host's state directories or plugin logs hold the key's bytes;
#   - the shared disk holds none of the plaintext written through the volumes.
#   usage: scripts/vm/run-pair tests/shared/pair.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck disable=SC1091
source "$repo/scripts/vm/pair-lib.sh"
# shellcheck disable=SC1091
source "$here/checks.bash"

pair_setup
echo "== a Swarm stack's service moves from node 1 to node 2 (Docker 26, the managed plugin on both)"
check2 "dockerd and the managed plugin's install (for the shared group) on both hosts" \
	"source $here/node.bash; docker_up" "source $here/node.bash; docker_up" || finish
check2 "docker plugin enable on both (the host's lvmlockd through /run/lvm, CRYPTVOL_HOST_ID)" \
	"source $here/node.bash; docker plugin enable cryptvol" "source $here/node.bash; docker plugin enable cryptvol" ||
	finish
check "a swarm: node 2 its manager (it outlives node 1)" 2 \
	'docker swarm init --advertise-addr 10.99.0.2 --listen-addr 10.99.0.2:2377 > /dev/null &&
	 docker swarm join-token -q worker > /lab/pair/swarm-token'
check "node 1 joins it" 1 'docker swarm join --token "$(cat /lab/pair/swarm-token)" --advertise-addr 10.99.0.1 10.99.0.2:2377'
check "the stack deployed with its service placed on node 1 (tests/shared/stack.yml)" 2 \
	'sed "s/PLACE/cryptvol-node1/" $repo/tests/shared/stack.yml > /scratch/stack.yml && docker stack deploy -c /scratch/stack.yml st'
check "its task runs on node 1 and writes through the volume" 1 \
	'for i in $(seq 1 60); do task_says "on cryptvol-node1" && exit 0; sleep 2; done
	 docker ps -a; grep "fatal task error" /scratch/dockerd.log | tail -3 | cut -c1-600; exit 1'
check "docker volume inspect on node 2 says node 1 has it mounted (and the driver_opts size)" 2 \
	'r=$(docker volume inspect st_data --format "{{.Driver}} {{index .Status \"mounted_on\"}} {{index .Status \"size_bytes\"}}" 2>&1)
	 echo "$r"; [ "$r" = "cryptvol:latest node1 75497472" ]'
# The manager's view as well, before the move: twice the move was not started at all (no update status, the task
# left running on node 1) when the stack was deployed again seconds after the task started.
check "the manager sees the task running on node 1" 2 \
	'for i in $(seq 1 60); do docker service ps st_app --filter desired-state=running --format "{{.Node}} {{.CurrentState}}" |
	 grep -q "^cryptvol-node1 Running" && exit 0; sleep 2; done; docker service ps st_app; exit 1'
check "the constraint moves to node 2 (stack deploy again)" 2 \
	'sed "s/PLACE/cryptvol-node2/" $repo/tests/shared/stack.yml > /scratch/stack.yml && docker stack deploy -c /scratch/stack.yml st &&
	 docker service inspect st_app --format "{{json .Spec.TaskTemplate.Placement.Constraints}}" | grep -q cryptvol-node2'
check "the service runs on node 2 and reads what it wrote on node 1" 2 \
	'for i in $(seq 1 60); do task_says "on cryptvol-node1" && task_says "on cryptvol-node2" && break; sleep 2; done
	 docker service ps --no-trunc st_app --format "{{.ID}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}"
	 docker service inspect st_app --format "{{.Version.Index}} {{.UpdatedAt}} {{json .UpdateStatus}} {{json .Spec.TaskTemplate.Placement}}"
	 for t in $(docker service ps -q st_app); do docker inspect --type task $t --format "{{.ID}} {{.Version.Index}} {{json .Spec.Placement}}"; done
	 grep -iE "orchestr|updat|st_app" /scratch/dockerd.log | tail -12 | cut -c1-300; task_says "on cryptvol-node2"'
check "node 1: no mapping, LV inactive, no record" 1 'closed st_data'
check "docker volume inspect on node 1 names node 2" 1 \
	'[ "$(docker volume inspect st_data --format "{{index .Status \"mounted_on\"}}")" = node2 ]'
check "stack rm: the volume closes on node 2" 2 \
	'docker stack rm st && for i in $(seq 1 90); do closed st_data && exit 0; sleep 2; done; exit 1'
check "docker volume rm on node 2 removes it from the shared group" 2 \
	'for i in $(seq 1 30); do docker volume rm st_data 2> /dev/null && break; sleep 2; done
	 ! lvs sv/cv-st_data 2> /dev/null || { docker volume rm st_data; exit 1; }'
check "node 1 sees it gone" 1 '! lvs sv/cv-st_data 2> /dev/null && ! docker volume ls -q | grep -qx st_data'
# From here the plugins run as host processes (their Mount calls, made one at a time, time the takeover below);
# dockerd keeps running.
# -f: node 1's dockerd still counts st_data, which Swarm created there, as a use of the plugin ("plugin
# cryptvol:latest is in use"), although the volume is gone from the group and from its docker volume ls.
check2 "the managed plugins disabled" "source $here/node.bash; docker plugin disable -f cryptvol" \
	"source $here/node.bash; docker plugin disable -f cryptvol"
check2 "both plugins answer (each joined the group's lockspace)" "source $here/node.bash; plug_start" \
	"source $here/node.bash; plug_start" || finish

echo "== a volume follows its container from node 1 to node 2"
check "node 1 creates v1" 1 'ok Create "{\"Name\":\"v1\"}"'
check "node 1 mounts v1 and writes to it" 1 \
	'ok Mount "{\"Name\":\"v1\",\"ID\":\"c1\"}" && echo "written on node1 PAIRMARK" > $mnt/v1/data/f && sync'
check "node 2 lists v1 (the group's metadata, read from the shared disk)" 2 \
	'call List "{}" | jqe ".Volumes | map(.Name) | index(\"v1\")"'
check "inspect on node 2 says node 1 has it mounted" 2 \
	'call Get "{\"Name\":\"v1\"}" | jqe ".Volume.Status.mounted_on == \"node1\""'
check "node 2's Mount fails: in use on node 1" 2 \
	'r=$(call Mount "{\"Name\":\"v1\",\"ID\":\"c2\"}"); echo "$r"; jqe ".Err | test(\"in use on another host.*mounted on node1\")" <<< "$r"'
check "node 2 made no mapping and holds no lock" 2 '! mapped v1 && lv_state v1 | grep -qv active'
check "Create of v1 on node 2 returns the existing volume (what Swarm does on every node)" 2 \
	'ok Create "{\"Name\":\"v1\"}" && ok Get "{\"Name\":\"v1\"}"'
check "Create of v1 on node 2 with another size is refused, naming it" 2 \
	'r=$(call Create "{\"Name\":\"v1\",\"Opts\":{\"size\":\"128M\"}}"); echo "$r"; jqe ".Err | test(\"size\")" <<< "$r"'
check "node 1 unmounts: no mapping, LV inactive, no record" 1 \
	'ok Unmount "{\"Name\":\"v1\",\"ID\":\"c1\"}" && ! mapped v1 && lv_state v1 && ! lv_state v1 | grep -q "active\|cryptvol_on_"'
check "node 2 mounts v1 and reads what node 1 wrote" 2 \
	'ok Mount "{\"Name\":\"v1\",\"ID\":\"c2\"}" && grep -q "written on node1" $mnt/v1/data/f &&
	 echo "written on node2 PAIRMARK" > $mnt/v1/data/g && sync'
check "inspect on node 1 now names node 2" 1 \
	'call Get "{\"Name\":\"v1\"}" | jqe ".Volume.Status.mounted_on == \"node2\""'
check "node 1's Remove is refused while node 2 has it" 1 \
	'r=$(call Remove "{\"Name\":\"v1\"}"); echo "$r"; jqe ".Err | test(\"in use on another host\")" <<< "$r"'
check "node 2 unmounts" 2 'ok Unmount "{\"Name\":\"v1\",\"ID\":\"c2\"}" && ! mapped v1'

echo "== both hosts rotate v1's key at once"
# The exclusive activation (lvchange -aey, lvmlockd) is the rotation's cluster-wide lock: each rotation goes through
# or is refused while the other host holds the LV, and whatever the interleaving, one keyslot remains, opened by the
# key that token and tag name.
for n in 1 2; do
	hand $n "source $here/node.bash; "'$repo/bin/cryptvol rotate --socket $sock v1 > /lab/pair/rot$node 2>&1; echo rc=$? >> /lab/pair/rot$node'
	eval "j$n=\$handed"
done
result 1 "$j1" > /dev/null 2>&1
result 2 "$j2" > /dev/null 2>&1
check "each rotation went through or was refused for the other host's hold, at least one went through" 2 \
	'for n in 1 2; do echo "node$n: $(tr "\n" " " < /lab/pair/rotnode$n)"; done
	 for n in 1 2; do grep -qx "rc=0" /lab/pair/rotnode$n || grep -qiE "in use on another host|elsewhere|lock" /lab/pair/rotnode$n || exit 1; done
	 grep -qx "rc=0" /lab/pair/rotnode1 || grep -qx "rc=0" /lab/pair/rotnode2'
check "one keyslot remains, and node 2 mounts v1 with the key its token names and reads it" 2 \
	'lvchange -aey sv/cv-v1 && n=$(cryptsetup luksDump --dump-json-metadata /dev/sv/cv-v1 | jq ".keyslots | length")
	 lvchange -an sv/cv-v1; echo "keyslots: $n"; [ "$n" = 1 ] &&
	 ok Mount "{\"Name\":\"v1\",\"ID\":\"c5\"}" && grep -q "written on node2" $mnt/v1/data/g &&
	 ok Unmount "{\"Name\":\"v1\",\"ID\":\"c5\"}" && ! mapped v1'

check "node 2 rotates v1, which node 1 made: the new key stays in node 1's KMIP object group" 2 \
	'$repo/bin/cryptvol rotate --socket $sock v1 && source /lab/pair/kmip/env &&
	 id=$(lvs --noheadings -o lv_tags sv/cv-v1 | tr ", " "\n\n" | sed -n "s/^cryptvol_key_//p") && echo "key: $id" &&
	 [ -n "$id" ] && { dc=$($repo/bin/cryptvol decommission node1 --dry-run --json --vg sv --shared); r=$?; echo "$dc"; [ $r = 0 ]; } &&
	 jq -e --arg id "$id" "[.keys[] | select(.id == \$id and .lv.volume == \"v1\" and .lv.made_by == \"node1\")] | length == 1" <<< "$dc" &&
	 $repo/bin/cryptvol decommission node2 --dry-run --json | jq -e --arg id "$id" "[.keys[].id] | index(\$id) == null"'
check "a plugin started on node 2 as node1 refuses: the name is node 1's (sanlock host_id 1)" 2 \
	'source /lab/pair/kmip/env; d=$(mktemp -d)
	 CRYPTVOL_VG=sv CRYPTVOL_SHARED=true CRYPTVOL_NODE=node1 CRYPTVOL_SOCKET=$d/sock CRYPTVOL_STATE_DIR=$d/state \
		CRYPTVOL_MOUNT_ROOT=$d/mnt setsid "$repo/bin/cryptvol" > $d/log 2>&1 < /dev/null &
	 p=$!
	 for _ in $(seq 1 600); do grep -q "start-up failed" $d/log && break; sleep 0.2; done; kill $p; wait $p
	 grep "start-up failed" $d/log | head -1 | cut -c1-600; vgs --noheadings -o vg_tags sv
	 grep -q "is in use in shared volume group sv by the host with sanlock host_id 1" $d/log &&
	 vgs --noheadings -o vg_tags sv | grep -q "cryptvol_node_node1=1" && ! vgs --noheadings -o vg_tags sv | grep -q "cryptvol_node_node1=2"'

echo "== node 1 dies holding the volume"
check "node 1 mounts v1 and syncs a file" 1 \
	'ok Mount "{\"Name\":\"v1\",\"ID\":\"c3\"}" && echo "synced on node1 PAIRMARK" > $mnt/v1/data/h && sync'
check "node 1's state directory and log, copied for the key scan below" 1 \
	'mkdir -p /lab/pair/node1-cv && cp -a $pd/state $pd/plugin.log /var/lib/cryptvol /scratch/dockerd.log /lab/pair/node1-cv/'
kill_node 1
killed=$SECONDS
pass "node 1's guest killed (SIGKILL of its QEMU)"
# One guest is left: scripts/vm/test-stage may start another part in the slot node 1 had.
[ -z "${LAB_SLOT_FILE:-}" ] || echo 1 > "$LAB_SLOT_FILE"
# Swarm would retry the task: so does this, every 2 s, until node 1's lease has expired and the lock is free.
check "node 2 gets v1 once node 1's lease has expired" 2 \
	'start=$(date +%s); for i in $(seq 1 300); do
		r=$(call Mount "{\"Name\":\"v1\",\"ID\":\"c4\"}")
		# A Mount that works at once would mean node 1 did not hold it: not a takeover.
		jqe "(.Err // \"\") == \"\"" <<< "$r" > /dev/null && { echo "after $(( $(date +%s) - start )) s and $i tries"; [ $i -gt 1 ] && mapped v1; exit; }
		[ $i = 1 ] && echo "first refusal: $r"
		jqe ".Err | test(\"in use on another host\")" <<< "$r" > /dev/null || { echo "$r"; exit 1; }
		sleep 2
	done; exit 1'
echo "== takeover: node 2 had the volume $((SECONDS - killed)) s after node 1 was killed (sanlock defaults)"
check "what node 1 had synced is there" 2 'grep -q "synced on node1" $mnt/v1/data/h && grep -q "written on node2" $mnt/v1/data/g'
check "fsck -n finds the filesystem clean (mounted read-only for it)" 2 \
	'mount -o remount,ro $mnt/v1 && fsck.ext4 -n /dev/mapper/cryptvol-v1; rc=$?; mount -o remount,rw $mnt/v1; [ $rc = 0 ]'
check "no key bytes on the shared disk, in either host's state directory (audit trail too) or plugin log, nor in node 2's /run" 2 \
	'source /lab/pair/kmip/env && key=$(call Get "{\"Name\":\"v1\"}" | jq -r .Volume.Status.kmip_key_id) &&
	 r=$($repo/scripts/kmip/key-state --scan "$key" -- /dev/vdd $pd /lab/pair/node1-cv /run /var/lib/cryptvol /scratch/dockerd.log) && echo "$r" &&
	 grep -q "^scanned [1-9][0-9]* files" <<< "$r"'
check "inspect on node 2 names node 2" 2 'call Get "{\"Name\":\"v1\"}" | jqe ".Volume.Status.mounted_on == \"node2\""'
check "node 2 unmounts and removes v1" 2 \
	'ok Unmount "{\"Name\":\"v1\",\"ID\":\"c4\"}" && ok Remove "{\"Name\":\"v1\"}" && ! lvs sv/cv-v1 2> /dev/null'

# What went through the volumes (PAIRMARK) is nowhere on the shared disk in the clear.
# (grep took 50 s over the 2 GiB file, which is one line; a search of the mapped file takes seconds.)
if ! python3 -c 'import mmap, sys
with open(sys.argv[1], "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
    sys.exit(m.find(b"PAIRMARK") >= 0)' "$PAIR_LOGS/shared.img"; then fail "no plaintext on the shared disk"; else
	pass "no plaintext on the shared disk"
fi
finish
