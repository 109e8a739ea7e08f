# docker.sh: parts 5 (docker) and concurrent of the benchmark, sourced by run-guest (not run): docker run with a
# cryptvol volume through the managed plugin bundle against a local-driver volume, in the lab guest. It uses
# run-guest's settings and lib.sh's helpers.

# --- 5. docker run with a cryptvol volume (the managed plugin bundle) vs a local-driver volume ---------------------
part_docker() {
	say "docker: dockerd, the plugin bundle, docker run with a cryptvol volume vs a local volume"
	# dockerd at debug level: its API calls and the containerd events it receives mark the spans of each timed run
	# (trace.py), and it copies the plugin's debug request lines into its log.
	LAB_DOCKERD_LOG_LEVEL=debug q "$repo/scripts/vm/lab-docker" start
	say "dockerd up"
	q "$repo/scripts/plugin/install" "$work/plugin" CRYPTVOL_VG=benchvg CRYPTVOL_DEFAULT_SIZE=64M CRYPTVOL_LOG_LEVEL=debug
	# --timeout 120 (BENCH_PLUGIN_TIMEOUT), as the README says: with the CLI's default of 30 s, dockerd gives up on
	# a Mount that the concurrent part's queue holds longer, while the plugin's own deadline is 110 s.
	q docker plugin enable --timeout "${BENCH_PLUGIN_TIMEOUT:-120}" cryptvol
	q docker volume create -d cryptvol --opt size=64M benchcv
	q docker volume create benchlocal
	say "plugin bundle installed and enabled; volumes created"
	# Two images. busybox:bare is busybox as Docker Hub ships it, with no /data: dockerd mounts the volume once, to
	# start the container. busybox:lab (the lab's image) has an empty /data: dockerd then also mounts the volume
	# while it creates the container, to copy the image's /data into it (moby daemon/create_unix.go,
	# populateVolume: only when the path exists in the image), and unmounts it again before the start.
	docker run --rm busybox:lab tar -c -C / bin tmp | docker import -c 'CMD ["/bin/sh"]' - busybox:bare >/dev/null
	# One untimed run each first: the first container start pays one-off costs (image layers, the plugin's first
	# request) that are not what a user waits for on every run.
	for img in busybox:bare busybox:lab; do
		q docker run --rm -v benchcv:/data $img true
		q docker run --rm -v benchlocal:/data $img true
	done
	if want docker; then
		say "docker: $runs runs of each"
		# Every mount and unmount in the guest's (dockerd's) namespace, where the plugin's mounts propagate.
		"$work/mount-watch" 1 > "$work/mounts.log" 2>> "$cmdlog" &
		echo $! > "$work/mount-watch.pid"
		: > "$work/traces"
		for r in $(seq 1 "$runs"); do
			if [ $((r % 2)) = 1 ]; then order=(cryptvol local); else order=(local cryptvol); fi
			for v in "${order[@]}"; do
				if [ "$v" = cryptvol ]; then vol=benchcv; else vol=benchlocal; fi
				docker_timed trace docker "docker run --rm -v VOL:/data busybox true" "$v" "$r" busybox:bare "$vol"
				docker_timed tracedir docker "docker run of an image that has /data" "$v" "$r" busybox:lab "$vol"
			done
		done
		# dockerd copies the plugin's output as it comes; give the last request's line a moment to land.
		sleep 2
		kill "$(cat "$work/mount-watch.pid")"
		# Each timed run cut into spans on one timeline; the last run of each kind in full for the report.
		while read -r sec from t0 t1 v r; do
			python3 "$here/trace.py" /scratch/dockerd.log "$from" "$work/mounts.log" "$t0" "$t1" "$sec" "$v" "$r" \
				"$work/timeline.$sec.$v" >> "$raw" 2>> "$info"
		done < "$work/traces"
		# One more run of each, broken down: every VolumeDriver request dockerd made for it, in order, with its time,
		# programs and KMIP round trips, from the plugin's request lines that dockerd copies into its log.
		for img in busybox:bare:calls busybox:lab:callsdir; do
			from=$(($(wc -l < /scratch/dockerd.log) + 1))
			q docker run --rm -v benchcv:/data "${img%:*}" true
			# dockerd copies the plugin's output as it comes; give the last request's line a moment to land.
			for _ in $(seq 1 50); do
				tail -n +"$from" /scratch/dockerd.log | grep -q 'request done.*op=unmount' && break
				sleep 0.1
			done
			python3 "$here/calls.py" /scratch/dockerd.log "$from" "${img##*:}" 1 benchcv >> "$raw" 2>> "$info"
		done
	fi
	if want concurrent; then part_concurrent; fi
	q docker volume rm benchcv benchlocal
	q docker plugin disable cryptvol
	q "$repo/scripts/vm/lab-docker" stop
}

# part_concurrent, inside part_docker's dockerd: BENCH_CONCURRENT `docker run`s at once, each on a volume of its
# own, against as many local volumes; the time from the first start to the last exit. What it shows: requests for
# distinct volumes do not wait on each other in the plugin (one lock per volume; the KMIP connection is the one
# thing they share, one Get each).
part_concurrent() {
	local n=$concurrent r v i t0 failed pids open
	say "concurrent: $n volumes of each kind"
	t0=$EPOCHREALTIME
	seq 1 "$n" | xargs -P 4 -I NUM docker volume create -d cryptvol --opt size=64M ccvNUM >> "$cmdlog"
	note concurrent_create_seconds "$(since "$t0")"
	seq 1 "$n" | xargs -P 4 -I NUM docker volume create cclNUM >> "$cmdlog"
	note concurrent "$n"
	note concurrent_runs "$concurrent_runs"
	say "concurrent: volumes made; $concurrent_runs runs of $n docker runs at once"
	for r in $(seq 1 "$concurrent_runs"); do
		if [ $((r % 2)) = 1 ]; then order=(cryptvol local); else order=(local cryptvol); fi
		for v in "${order[@]}"; do
			pids=()
			from=$(($(wc -l < /scratch/dockerd.log) + 1))
			t0=$EPOCHREALTIME
			for i in $(seq 1 "$n"); do
				if [ "$v" = cryptvol ]; then vol=ccv$i; else vol=ccl$i; fi
				docker run --rm -v "$vol:/data" busybox:bare true >> "$work/concurrent.log" 2>&1 &
				pids+=($!)
			done
			failed=0
			for i in "${pids[@]}"; do wait "$i" || failed=$((failed + 1)); done
			record docker "docker runs at once on distinct volumes" "$v" "$r" "$(since "$t0")" s
			if [ "$v" = cryptvol ]; then
				# The plugin's lines of a Mount dockerd gave up on come when it ends.
				sleep 5
				python3 "$here/steps.py" /scratch/dockerd.log "$from" | sed 's/^/[bench]   /'
			fi
			# Every container has exited and been removed: no volume of the batch may still be decrypted.
			open=$(dmsetup ls --target crypt | grep -c '^cryptvol-ccv' || true)
			if [ "$v" = cryptvol ] && [ "$open" != 0 ]; then
				echo "[bench] $open volumes of the batch are still open (decrypted) after every docker run ended" >&2
				failed=$((failed + 1000))
			fi
			if [ "$failed" != 0 ]; then
				echo "[bench] $((failed % 1000)) of $n concurrent docker runs ($v) failed; the most common lines of their output:" >&2
				sort "$work/concurrent.log" | uniq -c | sort -rn | head -5 >&2
				exit 1
			fi
		done
		say "concurrent run $r/$concurrent_runs done"
	done
	seq 1 "$n" | sed 's/^/ccv/' | xargs -P 4 -n 10 docker volume rm >> "$cmdlog"
	seq 1 "$n" | sed 's/^/ccl/' | xargs docker volume rm >> "$cmdlog"
}
