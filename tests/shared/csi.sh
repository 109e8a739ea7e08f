#!/usr/bin/env bash
# csi.sh: Swarm cluster volumes through the CSI bundle (bin/plugin-csi, installed as cryptvol-csi) on a shared
# volume group, run on this host by scripts/vm/run-pair (`make test-shared-csi`). Docker 28.5 (Debian forky's,
# scripts/vm/docker-debian): no Docker before 28.2 loads a managed CSI plugin (https://github.com/moby/moby/issues/48133).
# What it shows, in this order:
#   - both hosts report the plugin's node id (NODE@VG_UUID) to Swarm;
#   - a cluster volume asking for block access or several nodes' writers, or with a bad option, is never made;
#   - `docker volume create --driver cryptvol-csi:latest --type mount --sharing none --availability active
#     --required-bytes ... --opt fs=xfs` on the manager makes an xfs volume of that size in the shared group, and
#     `docker volume rm` destroys its LV and its KMIP key;
#   - a service with `--mount type=cluster` runs on node 1 and writes; node 1 drained, its task runs on node 2 and
#     reads what node 1 wrote, and node 1 has no mapping and an inactive LV;
#   - back on node 1, node 1's guest killed while its task holds the volume: the task comes up on node 2 once
#     lvmlockd lets node 2 take the LV, with what node 1 synced, the filesystem clean (fsck -n);
#   - no key bytes on the shared disk, in node 2's state, plugin log or /run, or in node 1's copied state; no
#     plaintext on the shared disk.
#   usage: scripts/vm/run-pair tests/shared/csi.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck disable=SC1091
source "$repo/scripts/vm/pair-lib.sh"
# shellcheck disable=SC1091
source "$here/checks.bash"
LAB_DOCKER_ROOT=$("$repo/scripts/vm/docker-debian" forky) || { echo "csi.sh: no Docker 28.5 (scripts/vm/docker-debian forky)" >&2; exit 1; }
export LAB_DOCKER_ROOT
# The task: appends its host's name to the volume's log when it starts, syncs, and exits at once on SIGTERM.
task='echo "CSIMARK task on $(hostname)" >> /data/log && sync && trap "exit 0" TERM; sleep 3600 & wait'

pair_setup
check2 "Docker 28.5 and the CSI bundle (bin/plugin-csi) enabled on both hosts" \
	"source $here/node.bash; docker --version; csi_up" "source $here/node.bash; docker --version; csi_up" || finish
check "a swarm: node 2 its manager (it outlives node 1)" 2 \
	'docker swarm init --advertise-addr 10.99.0.2 --listen-addr 10.99.0.2:2377 > /dev/null &&
	 docker swarm join-token -q worker > /lab/pair/swarm-token'
check "node 1 joins it" 1 'docker swarm join --token "$(cat /lab/pair/swarm-token)" --advertise-addr 10.99.0.1 10.99.0.2:2377'
check "both nodes report the plugin's node id, NODE@VG_UUID, to the manager" 2 \
	'uuid=$(vgs --noheadings -o vg_uuid sv | tr -d " ") && echo "group $uuid"
	 for i in $(seq 1 60); do
		ids=$(docker node inspect cryptvol-node1 cryptvol-node2 --format "{{range .Description.CSIInfo}}{{.PluginName}} {{.NodeID}};{{end}}")
		[[ $ids == *"cryptvol-node1"* ]] || true
		grep -q "node1@$uuid" <<< "$ids" && grep -q "node2@$uuid" <<< "$ids" && { echo "$ids"; exit 0; }
		sleep 2
	 done; echo "$ids"; exit 1'

echo "== what cryptvol cannot give is never made"
check "block access, several nodes writing, a bad option: refused by the plugin, no LV made" 2 \
	'docker volume create --driver cryptvol-csi:latest --type block --sharing none bad1 > /dev/null &&
	 docker volume create --driver cryptvol-csi:latest --type mount --scope multi --sharing all bad2 > /dev/null &&
	 docker volume create --driver cryptvol-csi:latest --type mount --sharing none --opt integrity=bogus bad3 > /dev/null || exit 1
	 for i in $(seq 1 60); do
		n=$(grep -c "block access is not offered\|MULTI_NODE_MULTI_WRITER is not offered\|integrity" /scratch/dockerd.log)
		[ "$n" -ge 3 ] && break; sleep 2
	 done
	 grep -o "error creating volume.*" /scratch/dockerd.log | cut -c1-300 | sort -u | head -6
	 docker volume ls --cluster
	 ! lvs --noheadings -o lv_name sv | grep -q "cv-bad" && [ "$n" -ge 3 ] &&
	 docker volume rm bad1 bad2 bad3 > /dev/null'

echo "== a cluster volume, as the README makes it"
check "docker volume create --driver cryptvol-csi:latest ... --required-bytes 400M --opt fs=xfs cv2: an xfs LV of 400 MiB" 2 \
	'docker volume create --driver cryptvol-csi:latest --type mount --sharing none --availability active --required-bytes 400M \
		--opt fs=xfs cv2 > /dev/null || exit 1
	 for i in $(seq 1 90); do
		info=$(docker volume inspect cv2 --format "{{json .ClusterVolume.Info}}") && [ "$(jq -r .VolumeID <<< "$info")" = cv2 ] && break
		sleep 2
	 done; echo "$info"; lvs --noheadings -o lv_name,lv_size,lv_tags --units b sv/cv-cv2 &&
	 [ "$(jq -r .CapacityBytes <<< "$info")" = 419430400 ] && lvs --noheadings -o lv_tags sv/cv-cv2 | grep -q cryptvol_fs_xfs &&
	 lvs --noheadings -o lv_tags sv/cv-cv2 | tr ", " "\n\n" | sed -n "s/^cryptvol_key_//p" > /lab/pair/cv2-key && [ -s /lab/pair/cv2-key ]'
check "docker volume rm cv2 destroys its LV and its KMIP key" 2 \
	'docker volume rm cv2 > /dev/null && source /lab/pair/kmip/env &&
	 for i in $(seq 1 60); do ! lvs sv/cv-cv2 > /dev/null 2>&1 && $repo/scripts/kmip/key-state --gone "$(cat /lab/pair/cv2-key)" && exit 0; sleep 2; done; exit 1'

echo "== a service on a cluster volume moves with a drain"
check "cv1 (ext4, 128 MiB) created" 2 \
	'docker volume create --driver cryptvol-csi:latest --type mount --sharing none --availability active --required-bytes 128M \
		--opt fs=ext4 cv1 > /dev/null &&
	 for i in $(seq 1 90); do [ "$(docker volume inspect cv1 --format "{{json .ClusterVolume.Info}}" | jq -r .VolumeID)" = cv1 ] && exit 0; sleep 2; done; exit 1'
check "node 2 paused: service app, --mount type=cluster,src=cv1, is placed on node 1" 2 \
	"docker node update --availability pause cryptvol-node2 > /dev/null &&
	 docker service create -d --name app --hostname '{{.Node.Hostname}}' --restart-delay 2s \
		--mount type=cluster,src=cv1,dst=/data busybox:lab sh -c '$task' > /dev/null"
check "its task runs on node 1 and writes; the volume is open on node 1" 1 \
	'for i in $(seq 1 90); do app_says "on cryptvol-node1" && mapped cv1 && exit 0; sleep 2; done; docker ps -a; swarm_diag; exit 1'
check "the manager shows cv1 published to node 1" 2 \
	'docker volume inspect cv1 --format "{{json .ClusterVolume.PublishStatus}}" | tee /dev/stderr |
	 jq -e --arg n "$(docker node inspect cryptvol-node1 --format "{{.ID}}")" "[.[] | select(.NodeID == \$n and .State == \"published\")] | length == 1" || { swarm_diag; exit 1; }'
check "node 2 active, node 1 drained: the task moves to node 2 and reads what node 1 wrote" 2 \
	'docker node update --availability active cryptvol-node2 > /dev/null &&
	 docker node update --availability drain cryptvol-node1 > /dev/null &&
	 for i in $(seq 1 150); do app_says "on cryptvol-node2" && app_says "on cryptvol-node1" && exit 0; sleep 2; done
	 swarm_diag; exit 1'
check "node 1: no mapping, LV inactive" 1 'for i in $(seq 1 30); do closed cv1 && exit 0; sleep 2; done; lv_state cv1; exit 1'

echo "== node 1 dies holding the volume"
check "node 1 active, node 2 drained: the task is back on node 1" 2 \
	'docker node update --availability active cryptvol-node1 > /dev/null &&
	 docker node update --availability drain cryptvol-node2 > /dev/null'
check "node 1's task runs and has synced its line" 1 \
	'for i in $(seq 1 150); do app_says "on cryptvol-node2" && [ "$(docker exec $(docker ps -q -f name=app. | head -1) grep -c cryptvol-node1 /data/log)" = 2 ] && mapped cv1 && exit 0; sleep 2; done; exit 1'
check "node 2 active again" 2 'docker node update --availability active cryptvol-node2 > /dev/null'
check "node 1's state directory and logs, copied for the key scan below" 1 \
	'mkdir -p /lab/pair/node1-cv && cp -a /var/lib/cryptvol-csi /scratch/dockerd.log /lab/pair/node1-cv/'
kill_node 1
killed=$SECONDS
pass "node 1's guest killed (SIGKILL of its QEMU)"
[ -z "${LAB_SLOT_FILE:-}" ] || echo 1 > "$LAB_SLOT_FILE"
# Swarm keeps the volume published to node 1 until node 1 unpublishes it, which a dead node never does: the
# manager is told the node is gone for good (docker node rm --force, docs/csi.md "A host died") after two minutes.
check "the task comes up on node 2 with what node 1 synced (once node 1 is removed and its lease has expired)" 2 \
	'removed=""
	 for i in $(seq 1 450); do
		[ "$(docker exec $(docker ps -q -f name=app. | head -1) grep -c cryptvol-node2 /data/log 2> /dev/null)" = 2 ] 2> /dev/null &&
			{ echo "after $SECONDS s and $([ -n "$removed" ] && echo "docker node rm --force at $removed s" || echo "no docker node rm")"; exit 0; }
		if [ -z "$removed" ] && [ $SECONDS -ge 120 ]; then docker node rm --force cryptvol-node1 > /dev/null && removed=$SECONDS; fi
		sleep 2
	 done; swarm_diag; exit 1'
echo "== takeover: the task ran on node 2 $((SECONDS - killed)) s after node 1 was killed"
check "fsck -n finds cv1 clean (read-only in the plugin's mount namespace for it)" 2 \
	'p=$(csi_pid) && [ -n "$p" ] && nsenter -t "$p" -m mount -o remount,ro /mnt/volumes/cv1 &&
	 { nsenter -t "$p" -m fsck.ext4 -n /dev/mapper/cryptvol-cv1; rc=$?; nsenter -t "$p" -m mount -o remount,rw /mnt/volumes/cv1; [ $rc = 0 ]; }'
check "no key bytes on the shared disk, in either host's plugin state or log, nor in node 2's /run" 2 \
	'source /lab/pair/kmip/env && key=$(lvs --noheadings -o lv_tags sv/cv-cv1 | tr ", " "\n\n" | sed -n "s/^cryptvol_key_//p") &&
	 r=$($repo/scripts/kmip/key-state --scan "$key" -- /dev/vdd /var/lib/cryptvol-csi /lab/pair/node1-cv /run /scratch/dockerd.log) &&
	 echo "$r" && grep -q "^scanned [1-9][0-9]* files" <<< "$r" && echo "$key" > /lab/pair/cv1-key'
# Swarm never clears the dead node's publish of cv1, even after docker node rm --force: the volume stays "in use (1
# node)" and a plain docker volume rm is refused. docs/csi.md's way out: rm --force (Swarm forgets it, cryptvol
# keeps it), create it again (the create finds the volume and adopts it, key and data), then rm.
check "service rm: node 2 lets cv1 go; a plain volume rm is refused for the dead node's publish" 2 \
	'docker service rm app > /dev/null && for i in $(seq 1 90); do closed cv1 && break; sleep 2; done; closed cv1 &&
	 docker volume ls --cluster && ! docker volume rm cv1'
check "volume rm --force: Swarm forgets cv1, cryptvol keeps it (LV and key)" 2 \
	'docker volume rm --force cv1 > /dev/null && ! docker volume ls -q --cluster | grep -qx cv1 && source /lab/pair/kmip/env &&
	 lvs sv/cv-cv1 > /dev/null && ! $repo/scripts/kmip/key-state --gone "$(cat /lab/pair/cv1-key)"'
check "created again, cv1 is the same volume: its key, and what the tasks wrote" 2 \
	"docker volume create --driver cryptvol-csi:latest --type mount --sharing none --required-bytes 128M --opt fs=ext4 cv1 > /dev/null &&
	 for i in \$(seq 1 90); do [ \"\$(docker volume inspect cv1 --format '{{json .ClusterVolume.Info}}' | jq -r .VolumeID)\" = cv1 ] && break; sleep 2; done &&
	 lvs --noheadings -o lv_tags sv/cv-cv1 | grep -q \"cryptvol_key_\$(cat /lab/pair/cv1-key)\" &&
	 docker service create -d --name reader --restart-condition none --mount type=cluster,src=cv1,dst=/data busybox:lab cat /data/log > /dev/null &&
	 for i in \$(seq 1 90); do [ \"\$(docker service logs --raw reader 2> /dev/null | grep -c CSIMARK)\" -ge 4 ] && exit 0; sleep 2; done
	 docker service logs --raw reader; swarm_diag; exit 1"
check "docker volume rm cv1 then destroys its LV and its KMIP key" 2 \
	'docker service rm reader > /dev/null && source /lab/pair/kmip/env &&
	 for i in $(seq 1 90); do docker volume rm cv1 > /dev/null 2>&1 && break; sleep 2; done
	 for i in $(seq 1 90); do ! lvs sv/cv-cv1 > /dev/null 2>&1 && $repo/scripts/kmip/key-state --gone "$(cat /lab/pair/cv1-key)" && exit 0; sleep 2; done
	 docker volume ls --cluster; swarm_diag; exit 1'

# What went through the volumes (CSIMARK) is nowhere on the shared disk in the clear.
if ! python3 -c 'import mmap, sys
with open(sys.argv[1], "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
    sys.exit(m.find(b"CSIMARK") >= 0)' "$PAIR_LOGS/shared.img"; then fail "no plaintext on the shared disk"; else
	pass "no plaintext on the shared disk"
fi
finish
