#!/usr/bin/env bash
# failclosed.sh: a container never writes to a directory that is not its decrypted volume, whatever the timing,
# through the real dockerd. A container is given the data directory inside the volume's filesystem
# (mount/layout.go), which does not exist where the filesystem is not mounted. At each moment the plugin's mount is
# missing from dockerd's view (the probe of a held volume after a plugin restart, an unmount from outside, dockerd's
# view of the propagated mount no longer shared) containers are started on the volume, one of them from an image with
# content at the mount path; each sees the volume or fails to start, and nothing lands on the host's disk under the
# plugin's mount root. Then what the epochs of volume/sweep.go promise: a restart-policy container that reuses its
# mount ID after dockerd is SIGKILLed closes its volume when stopped, minutes later too; and (under Docker 26.1)
# parallel `docker run`s across a plugin restart each see their own data and leave nothing open.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/scripts/vm/check.sh"
source "$repo/tests/e2e/lib.bash"
[ "$(hostname)" = cryptvol-lab ] || { echo "failclosed.sh: run inside the lab guest" >&2; exit 2; }
: "${CRYPTVOL_KMIP_ENDPOINT:?start scripts/kmip/dev-server and source its env file}"

install_plugin
check "plugin enabled" docker plugin enable cryptvol
content_image
plugin_pid() { pgrep -x cryptvol; }
prop=$(propagated_mount)
check "dockerd's propagated mount of the plugin is there" test -d "$prop"

# attempt VOLUME N: a container writes stray-N into the volume and reads its marker, and a container of an
# image with content at /data starts on it. Each must either fail to start or see the volume (the marker).
# Successful writes are remembered (in a file: check runs this in a subshell) to be checked in the volume later.
landed=/scratch/failclosed-landed
: > "$landed"
attempt() {
	local out
	if out=$(docker run --rm -v "$1":/data $img sh -c "echo $2 > /data/stray-$2 && cat /data/marker" 2>&1); then
		[ "$out" = secret ] || { echo "a container started on $1 and did not see it: '$out'"; return 1; }
		echo "$1:stray-$2" >> "$landed"
	fi
	if out=$(docker run --rm -v "$1":/data content:lab cat /data/marker 2>&1); then
		[ "$out" = secret ] || { echo "an image's container started on $1 and did not see it: '$out'"; return 1; }
	fi
	return 0
}
# all_landed: every write a started container made is in its volume (one container per volume).
all_landed() {
	local v files
	[ -s "$landed" ] || { echo "no container started at all"; return 1; }
	for v in $(cut -d: -f1 "$landed" | sort -u); do
		files=$(grep "^$v:" "$landed" | cut -d: -f2 | sed 's#^#/data/#' | tr '\n' ' ')
		docker run --rm -v "$v":/data $img ls $files >/dev/null || { echo "not all of $files are in $v"; return 1; }
	done
}

echo "== the probe of a held volume after a plugin restart"
check "fcv held by a running container, with a marker" sh -c "docker run -d --name fc1 -v fcv:/data --volume-driver cryptvol $img sleep 3600 >/dev/null && docker exec fc1 sh -c 'echo secret > /data/marker'"
check "plugin SIGKILLed" pkill -KILL -x cryptvol
wait_for "dockerd restarts the plugin" 90 plugin_up
# Two sweeps of the plugin's 15 s interval probe fcv (its IDs are of the earlier epoch and fc1 holds it).
end=$((SECONDS + 35)) i=0
while [ "$SECONDS" -lt "$end" ]; do
	i=$((i + 1))
	check "while fcv is probed, container $i sees it or does not start" attempt fcv "p$i"
done
check "nothing on the host's disk" host_clean

echo "== an unmount from outside, then containers at once"
for i in 1 2 3; do
	check "the plugin's mount of fcv unmounted from outside ($i)" nsenter -t "$(plugin_pid)" -m umount /mnt/volumes/fcv
	check "container $i sees fcv or does not start" attempt fcv "u$i"
done
check "nothing on the host's disk" host_clean

echo "== the propagated mount no longer propagating into dockerd's view"
# dockerd's bind of the propagated-mount directory made private: mounts the plugin makes from now on do not reach
# the path dockerd binds from (a lazy unmount of that bind would not do: the filesystem holding DockerRootDir is
# a peer too and still shows them, docs/design.md, "Why the bundle looks the way it does").
check "fcv2 created, with a marker" sh -c "docker run --rm -v fcv2:/data --volume-driver cryptvol $img sh -c 'echo secret > /data/marker'"
check "dockerd's side of the propagated mount made private" mount --make-private "$prop"
check "a container on fcv (mounted before) sees it or does not start" attempt fcv d1
check_not "a container on fcv2 (mounted after) does not start: its data directory is not in dockerd's view" \
	docker run --rm -v fcv2:/data $img sh -c 'echo x > /data/detached'
check_not "an image's container on a new volume does not start (no copy into the host's directory)" \
	docker run --rm -v fcv3:/data --volume-driver cryptvol content:lab true
check "nothing on the host's disk" host_clean
wait_for "fcv2 closed after its failed start" 45 closed fcv2
# The copies of mounts dockerd's private bind kept (fcv's) no longer follow the plugin's unmounts and would hold
# fcv open for ever: an administrator's repair unmounts them with the bind, then restarts the plugin.
check "repaired: dockerd's side unmounted" umount -R "$prop"
check "repaired: docker plugin disable -f" docker plugin disable -f cryptvol
check "repaired: docker plugin enable" docker plugin enable cryptvol
check "a container sees fcv again" attempt fcv r1
check "and fcv2" attempt fcv2 r2
check "every write a started container made is in its volume" all_landed
check "nothing on the host's disk" host_clean
check "fc1 removed" docker rm -f fc1
wait_for "fcv closed after its last container" 45 closed fcv
check "volumes removed" docker volume rm fcv fcv2 fcv3

echo "== dockerd SIGKILLed under a --restart=always container that reuses its mount ID"
check "ra1 runs with --restart=always" docker run -d --name ra1 --restart=always -v rav:/data --volume-driver cryptvol $img \
	sh -c 'while true; do date >> /data/log; sync; sleep 1; done'
check "dockerd SIGKILLed" kill -KILL "$(cat /run/lab-dockerd.pid)"
sleep 2
check "dockerd starts again" "$repo/scripts/vm/lab-docker" start
wait_for "plugin up" 120 plugin_up
# Repaired, the restart dockerd made of ra1 has failed (its data directory was not there): started as a user would.
repair_lost_propagation && wait_for "plugin up after the repair" 120 plugin_up && docker start ra1 >/dev/null
wait_for "ra1 runs again" 120 sh -c "[ \"\$(docker inspect ra1 --format '{{.State.Running}}')\" = true ]"
n0=$(docker exec ra1 sh -c 'wc -l < /data/log' 2>/dev/null || echo 0)
wait_for "ra1 writes again" 30 sh -c "[ \"\$(docker exec ra1 sh -c 'wc -l < /data/log')\" -gt $n0 ]"
check "docker stop ra1 (one Unmount for two Mounts of its ID)" docker stop ra1
wait_for "rav closed within 30 s of the stop" 30 closed rav
check "ra1 and rav removed" sh -c 'docker rm ra1 >/dev/null && docker volume rm rav >/dev/null'

# The parallel runs take about half of this script's time under emulation: they run under the current Docker (26.1),
# whose handling of parallel requests is the one users meet and the one that fails creates at its 30 s deadline; the
# faults part (tests/faults_lab_test.go) and the soak's bursts put the same load on the plugin itself.
if [ "$(docker version -f '{{.Server.Version}}' | cut -d. -f1)" -lt 26 ]; then
	echo "== (20 parallel docker runs with a plugin restart: under Docker 26.1 only)"
else
	echo "== 20 docker runs on distinct volumes and 10 on one, with a plugin restart among them"
	vols="pshared $(seq -f 'pv%g' -s ' ' 1 20)"
	# dockerd gives a managed plugin's request 30 s (its plugin client's timeout): under emulation 21 creates at once
	# outlast it, and a create dockerd gave up on finishes in the plugin all the same; created again, as a user would, it
	# is the same volume (an existing volume with the same options is no error).
	check "pv1..pv20 and pshared created" sh -c "for v in $vols; do \
		{ docker volume create -d cryptvol \$v >/dev/null 2>&1 || docker volume create -d cryptvol \$v >/dev/null; } & done; wait; \
		for v in $vols; do docker volume inspect \$v >/dev/null || exit 1; done"
	pids=()
	for n in $(seq 1 20); do
		docker run --rm -v "pv$n":/data $img sh -c "echo $n > /data/id; sync; sleep 40; [ \$(cat /data/id) = $n ] || exit 42" \
			> "/scratch/par-$n.out" 2>&1 &
		pids+=($!)
	done
	for n in $(seq 1 10); do
		docker run --rm -v pshared:/data $img sh -c "echo $n > /data/s$n; sync; sleep 40; [ \$(cat /data/s$n) = $n ] || exit 42" \
			> "/scratch/pars-$n.out" 2>&1 &
		pids+=($!)
	done
	running() { [ "$(docker ps -q | wc -l)" -ge "$1" ]; }
	wait_for "some of them running" 150 running 5
	check "plugin SIGKILLed among them" pkill -KILL -x cryptvol
	# A container that started and read something else than it wrote exits 42; any other failure is docker's refusal
	# to start it (a request cut off by the kill: "VolumeDriver.Mount: EOF").
	started=0 refused=0 wrong=0
	for p in "${pids[@]}"; do
		wait "$p"
		case $? in 0) started=$((started + 1)) ;; 42) wrong=$((wrong + 1)) ;; *) refused=$((refused + 1)) ;; esac
	done
	echo "containers: $started ran and saw their own data, $refused refused to start across the restart"
	check_eq "no container saw anything but its own data" 0 "$wrong"
	[ "$wrong" = 0 ] || tail -n 3 /scratch/par*-*.out
	wait_for "plugin up" 90 plugin_up
	# Docker 20.10 keeps a container whose start failed, --rm or not; it holds its volume and the plugin.
	docker ps -aq | xargs -r docker rm -f >/dev/null
	all_closed() {
		local v
		for v in $vols; do closed "$v" || return 1; done
	}
	wait_for "every volume closed after its last container" 60 all_closed
	# What is still decrypted, and what the plugin says of it, where the wait ran out.
	all_closed ||
		for v in $vols; do
			closed "$v" && continue
			echo "     | $v: mapping $(mapping_open "$v" && echo "open ($(dmsetup info -c --noheadings -o attr,open "cryptvol-$v"): attr L is a live table)" || echo closed); mounts: $(grep -c "^/dev/mapper/cryptvol-$v " /proc/mounts);" \
				"plugin says: $(status "$v" mounted) mounted, $(status "$v" mount_count) mounts counted, pending: $(status "$v" pending)"
			grep "^/dev/mapper/cryptvol-$v " /proc/mounts | sed 's/^/     |   /'
		done
	# One container over all 20: each volume a container ran on has its own id.
	kept() {
		local n args=() want=() got
		for n in $(seq 1 20); do
			grep -q . "/scratch/par-$n.out" && continue # refused: never wrote
			args+=(-v "pv$n:/v$n") want+=("$n")
		done
		got=$(docker run --rm "${args[@]}" $img sh -c "for n in ${want[*]}; do cat /v\$n/id; done" | tr '\n' ' ')
		[ "$got" = "${want[*]} " ] || { echo "want '${want[*]} ', got '$got'"; return 1; }
	}
	check "each volume a container ran on kept its data" kept
	check "volumes removed" sh -c "docker volume rm $vols >/dev/null"
	check "nothing on the host's disk" host_clean
fi

check "plugin disable" docker plugin disable cryptvol
finish
