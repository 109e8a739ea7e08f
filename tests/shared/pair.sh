#!/usr/bin/env bash
# pair.sh: volumes of a shared volume group on two hosts (issue 12), run on this host by scripts/vm/run-pair, which
# boots the two lab guests (node1, node2) sharing one disk (/dev/vdd). Each guest runs sanlock and lvmlockd
# (scripts/vm/shared-node) and the plugin directly (bin/cryptvol, CRYPTVOL_SHARED=true); node 2 also runs the KMIP
# server, on the guests' link, and both use its one cluster identity. What it shows:
#   - a volume made and written on node 1 is read on node 2 after node 1's last unmount, and node 1 is left with no
#     mapping and an inactive LV; inspect on either host names the host that has it mounted;
#   - while one host has it mounted, a Mount on the other fails saying so, with no mapping made there; a Create of
#     the name on the other host returns the existing volume, and a conflicting option is reported;
#   - node 1's guest killed while it has the volume mounted: node 2 gets it once node 1's sanlock lease has expired
#     (the time is printed), fsck -n finds the filesystem clean and what node 1 had synced is there; neither host's
#     state directory or plugin log holds the key's bytes;
#   - the shared disk holds none of the plaintext written through the volumes.
#   usage: scripts/vm/run-pair tests/shared/pair.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck disable=SC1091
source "$repo/scripts/vm/pair-lib.sh"
passed=0 failed=0
t0=$SECONDS
pass() { passed=$((passed + 1)); printf 'ok   %4ds %s\n' $((SECONDS - t0)) "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL %4ds %s\n' $((SECONDS - t0)) "$1"; }
# check WHAT N CMD: CMD (a shell line) succeeds in node N; its output is shown on failure.
# (on runs in this shell, not in $(...), so that its job counter moves on.)
check() {
	local what=$1 n=$2 out=$PAIR_LOGS/check.out
	shift 2
	if on "$n" "source $here/node.bash; $*" > "$out" 2>&1; then pass "$what"; else
		fail "$what"
		sed 's/^/     | /' "$out"
		echo "     | node $n's plugin log, last lines:"
		on "$n" "tail -n 12 /scratch/cv/plugin.log" 2>&1 | cut -c1-400 | sed 's/^/     | /'
	fi
	# The takeover's own line is worth seeing even when it passes.
	grep -h '^after [0-9]* s and' "$out" 2> /dev/null | sed 's/^/     | /'
}
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
	exit
}

wait_up 1 && wait_up 2 || { fail "both guests up"; finish; }
pass "both guests up"
# The lock managers of both hosts at once: they are independent.
hand 1 "$repo/scripts/vm/shared-node" && j1=$handed
hand 2 "$repo/scripts/vm/shared-node" && j2=$handed
result 1 "$j1" > /dev/null && result 2 "$j2" > /dev/null && pass "sanlock and lvmlockd on both hosts" ||
	{ fail "sanlock and lvmlockd on both hosts"; finish; }
# The KMIP server is node 2's, so that it outlives node 1, which is killed below.
check "KMIP server on node 2, on the link" 2 \
	'KMIP_ADDR=10.99.0.2 $repo/scripts/kmip/dev-server start /scratch/kmip 5696 > /dev/null &&
	 mkdir -p /lab/pair/kmip && cp /scratch/kmip/{ca.pem,client.pem,client.key} /lab/pair/kmip/ &&
	 sed "s|/scratch/kmip/|/lab/pair/kmip/|" /scratch/kmip/env > /lab/pair/kmip/env'
# Made once, from one host, as the README's host setup says; the plugins never create a shared group.
check "the shared volume group, made once from node 1" 1 'vgcreate -q --shared sv /dev/vdd'
hand 1 "source $here/node.bash; plug_start" && j1=$handed
hand 2 "source $here/node.bash; plug_start" && j2=$handed
if result 1 "$j1" && result 2 "$j2"; then pass "both plugins answer (each joined the group's lockspace)"; else
	fail "both plugins answer"
	finish
fi

echo "== a volume follows its container from node 1 to node 2"
check "node 1 creates v1" 1 'ok Create "{\"Name\":\"v1\"}"'
check "node 1 mounts v1 and writes to it" 1 \
	'ok Mount "{\"Name\":\"v1\",\"ID\":\"c1\"}" && echo "written on node1 PAIRMARK" > $mnt/v1/f && sync'
check "node 2 lists v1 (the group's metadata, read from the shared disk)" 2 \
	'call List "{}" | jq -e ".Volumes | map(.Name) | index(\"v1\")"'
check "inspect on node 2 says node 1 has it mounted" 2 \
	'call Get "{\"Name\":\"v1\"}" | jq -e ".Volume.Status.mounted_on == \"node1\""'
check "node 2's Mount fails: in use on node 1" 2 \
	'r=$(call Mount "{\"Name\":\"v1\",\"ID\":\"c2\"}"); echo "$r"; jq -e ".Err | test(\"in use on another host.*mounted on node1\")" <<< "$r"'
check "node 2 made no mapping and holds no lock" 2 '! mapped v1 && lv_state v1 | grep -qv active'
check "Create of v1 on node 2 returns the existing volume (what Swarm does on every node)" 2 \
	'ok Create "{\"Name\":\"v1\"}" && ok Get "{\"Name\":\"v1\"}"'
check "Create of v1 on node 2 with another size is refused, naming it" 2 \
	'r=$(call Create "{\"Name\":\"v1\",\"Opts\":{\"size\":\"128M\"}}"); echo "$r"; jq -e ".Err | test(\"size\")" <<< "$r"'
check "node 1 unmounts: no mapping, LV inactive, no record" 1 \
	'ok Unmount "{\"Name\":\"v1\",\"ID\":\"c1\"}" && ! mapped v1 && lv_state v1 && ! lv_state v1 | grep -q "active\|cryptvol_on_"'
check "node 2 mounts v1 and reads what node 1 wrote" 2 \
	'ok Mount "{\"Name\":\"v1\",\"ID\":\"c2\"}" && grep -q "written on node1" $mnt/v1/f &&
	 echo "written on node2 PAIRMARK" > $mnt/v1/g && sync'
check "inspect on node 1 now names node 2" 1 \
	'call Get "{\"Name\":\"v1\"}" | jq -e ".Volume.Status.mounted_on == \"node2\""'
check "node 1's Remove is refused while node 2 has it" 1 \
	'r=$(call Remove "{\"Name\":\"v1\"}"); echo "$r"; jq -e ".Err | test(\"in use on another host\")" <<< "$r"'
check "node 2 unmounts" 2 'ok Unmount "{\"Name\":\"v1\",\"ID\":\"c2\"}" && ! mapped v1'

echo "== node 1 dies holding the volume"
check "node 1 mounts v1 and syncs a file" 1 \
	'ok Mount "{\"Name\":\"v1\",\"ID\":\"c3\"}" && echo "synced on node1 PAIRMARK" > $mnt/v1/h && sync'
check "node 1's state directory and log, copied for the key scan below" 1 \
	'mkdir -p /lab/pair/node1-cv && cp -a $pd/state $pd/plugin.log /lab/pair/node1-cv/'
kill_node 1
killed=$SECONDS
pass "node 1's guest killed (SIGKILL of its QEMU)"
# Swarm would retry the task: so does this, every 2 s, until node 1's lease has expired and the lock is free.
check "node 2 gets v1 once node 1's lease has expired" 2 \
	'start=$(date +%s); for i in $(seq 1 300); do
		r=$(call Mount "{\"Name\":\"v1\",\"ID\":\"c4\"}")
		jq -e "(.Err // \"\") == \"\"" <<< "$r" > /dev/null && { echo "after $(( $(date +%s) - start )) s and $i tries"; exit 0; }
		[ $i = 1 ] && echo "first refusal: $r"
		jq -e ".Err | test(\"in use on another host\")" <<< "$r" > /dev/null || { echo "$r"; exit 1; }
		sleep 2
	done; exit 1'
echo "== takeover: node 2 had the volume $((SECONDS - killed)) s after node 1 was killed (sanlock defaults)"
check "what node 1 had synced is there" 2 'grep -q "synced on node1" $mnt/v1/h && grep -q "written on node2" $mnt/v1/g'
check "fsck -n finds the filesystem clean (mounted read-only for it)" 2 \
	'mount -o remount,ro $mnt/v1 && fsck.ext4 -n /dev/mapper/cryptvol-v1; rc=$?; mount -o remount,rw $mnt/v1; [ $rc = 0 ]'
check "no key bytes in either host's state directory (audit trail too) or plugin log, nor in node 2's /run" 2 \
	'source /lab/pair/kmip/env && key=$(call Get "{\"Name\":\"v1\"}" | jq -r .Volume.Status.kmip_key_id) &&
	 r=$($repo/scripts/kmip/key-state --scan "$key" -- $pd /lab/pair/node1-cv /run) && echo "$r" &&
	 grep -q "^scanned [1-9][0-9]* files" <<< "$r"'
check "inspect on node 2 names node 2" 2 'call Get "{\"Name\":\"v1\"}" | jq -e ".Volume.Status.mounted_on == \"node2\""'
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
