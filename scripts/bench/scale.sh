# scale.sh: part 6 (scale) of the benchmark, sourced by run-guest (not run): List, Get and a restart as thin
# volumes accumulate, in the lab guest. It uses run-guest's settings and lib.sh's helpers.

# --- 6. Scale: List and a restart's start-up (reconciliation) as thin volumes accumulate --------------------------
# measure_scale N: with N volumes, List and Get over the socket (wall time, curl included, and the plugin's own time
# from its request line), Capabilities as the floor a request costs the client here, and a restart.
measure_scale() {
	local n=$1 r t
	for r in $(seq 1 "$runs"); do
		timed_call scale "Capabilities (client floor)" "N=$n" "$r" "$sock" Capabilities '{}'
		timed_call scale "List" "N=$n" "$r" "$sock" List '{}'
		record scale "List: plugin's own time" "N=$n" "$r" "$(request_seconds "$sc" list)" s
		if [ "$n" -gt 0 ]; then
			call "$sock" Get "{\"Name\":\"s$(((n + 1) / 2))\"}" > /dev/null
			record scale "Get: plugin's own time" "N=$n" "$r" "$(request_seconds "$sc" get)" s
		fi
	done
	for r in $(seq 1 "$runs"); do
		plugin_stop "$sc"
		t=$(plugin_start "$sc" "${scale_env[@]}")
		record scale "restart: start to socket answering" "N=$n" "$r" "$t" s
		record scale "restart: start-up reconciliation (logged)" "N=$n" "$r" "$(reconcile_seconds "$sc")" s
		record scale "restart: process start to ready (logged)" "N=$n" "$r" "$(ready_seconds "$sc")" s
	done
}

part_scale() {
	sc=$work/scale
	checkpoints=(0)
	for c in $((scale / 4)) $((scale / 2)) "$scale"; do
		if [ "$c" -gt "${checkpoints[-1]}" ]; then checkpoints+=("$c"); fi
	done
	note checkpoints "${checkpoints[*]}"
	say "scale: thin volumes of 64 MiB, $parallel creates at a time, measuring at ${checkpoints[*]} volumes"
	# With several creates in flight the emulated guest's CPUs are saturated and PyKMIP (Python, same CPUs) can take
	# longer than the default 10 s CRYPTVOL_KMIP_TIMEOUT to answer one request (seen: 15 of 50 creates failed, and
	# were undone, at 8 in flight). That is starvation of an emulated KMIP server, not what this part measures, so
	# the scale plugin gets a longer KMIP timeout; a create that still fails is retried alone and counted.
	# debug: each request's own time is read from its request line (request_seconds).
	scale_env=(CRYPTVOL_VG=scalevg CRYPTVOL_THIN_POOL=pool CRYPTVOL_DEFAULT_SIZE=64M CRYPTVOL_KMIP_TIMEOUT=60s
		CRYPTVOL_LOG_LEVEL=debug)
	# The first start builds VG scalevg and its thin pool from /dev/vdb, as a fresh installation would; not measured.
	t=$(plugin_start "$sc" "${scale_env[@]}" CRYPTVOL_DEVICES=/dev/vdb)
	say "scale plugin answering ${t}s after its first start (VG and thin pool created)"
	# Each 64 MiB thin volume took ~20 MiB of the pool as soon as it was created with a 16 MiB LUKS2 header area
	# (luksFormat writes all of it; mkfs its metadata and journal), less since (the report's last scale line says
	# how much). The check below keeps the old bound. A pool that fills blocks writes, so refuse a
	# scale the pool cannot hold rather than hang: `make bench` sizes the data disks (LAB_DISK_SIZE) from BENCH_SCALE.
	pool_mib=$(lvs --noheadings --units m --nosuffix -o lv_size scalevg/pool | tr -d ' ')
	if awk -v p="$pool_mib" -v n="$scale" 'BEGIN { exit !(n * 24 > p * 0.9) }'; then
		echo "[bench] a thin pool of ${pool_mib} MiB cannot hold $scale volumes (~24 MiB each): raise LAB_DISK_SIZE" >&2
		exit 1
	fi
	sock=$sc/cryptvol.sock
	have=0
	failures=0
	for cp in "${checkpoints[@]}"; do
		if [ "$cp" -gt "$have" ]; then
			t0=$EPOCHREALTIME
			# curl alone per create (a failed one shows up as a missing volume in the count below).
			seq $((have + 1)) "$cp" | xargs -P "$parallel" -I NUM curl -sS --max-time 600 --unix-socket "$sock" \
				-X POST -d '{"Name":"sNUM"}' http://plugin/VolumeDriver.Create >> "$cmdlog"
			per=$(awk -v t="$(since "$t0")" -v n=$((cp - have)) 'BEGIN { printf "%.4f", t / n }')
			record scale "create: wall time per volume ($parallel in flight)" "N=$cp" 1 "$per" s
			have=$cp
		fi
		# A create that failed in the batch (the plugin undoes it) is retried once, alone, and counted in the report.
		call "$sock" List '{}' | jq -r '.Volumes[].Name' > "$work/listed"
		missing=$(seq 1 "$cp" | sed 's/^/s/' | grep -vxF -f "$work/listed" || true)
		for n in $missing; do
			say "scale: create of $n failed in the batch; retrying it alone. The plugin said:"
			{ grep "volume=$n\$" "$sc/plugin.log" | grep 'request failed' || echo "(no failure logged)"; } | tail -1 | cut -c1-400
			failures=$((failures + 1))
			q call "$sock" Create "{\"Name\":\"$n\"}"
		done
		got=$(call "$sock" List '{}' | jq '.Volumes | length')
		if [ "$got" != "$cp" ]; then
			echo "[bench] List shows $got volumes, expected $cp; the plugin's log:" >&2
			tail -20 "$sc/plugin.log" >&2
			exit 1
		fi
		measure_scale "$cp"
		say "scale: $cp volumes measured"
	done
	# Stand-ins to BENCH_STANDINS volumes (default 1000): creating that many through the plugin would take hours
	# under emulation, so the rest are LVs made by lvm directly, in one lvm process, as the plugin's complete
	# volumes look in the volume group at rest on a single host (the cryptvol, cryptvol_fs_ext4 and cryptvol_ready
	# tags, active: volume keepsActive) but with no LUKS header or KMIP key. List, Get, a restart and start-up
	# reconciliation read only the group's metadata, the mount table and sysfs for a volume at rest
	# (volume/reconcile.go: no program), so they pay for a stand-in what they pay for a real one. Each also carries
	# cryptvol_bench_standin, which tells them apart; the guest is discarded with them.
	if [ "$standins" -gt "$scale" ]; then
		plugin_stop "$sc"
		{
			echo '#!/sbin/lvm'
			for i in $(seq $((scale + 1)) "$standins"); do
				echo "lvcreate -q -y -V 64m -T scalevg/pool -n cv-s$i -ay --setactivationskip n" \
					"--addtag cryptvol --addtag cryptvol_fs_ext4 --addtag cryptvol_ready --addtag cryptvol_bench_standin"
			done
		} > "$work/standins.lvm"
		t0=$EPOCHREALTIME
		q lvm "$work/standins.lvm"
		note scale_standins_seconds "$(since "$t0")"
		say "scale: $((standins - scale)) stand-in volumes made"
		note scale_standins "$((standins - scale))"
		note scale_mda "$(pvs --noheadings --units k --nosuffix -o pv_mda_size,pv_mda_free /dev/vdb |
			awk '{print $1 " " $2}')"
		t=$(plugin_start "$sc" "${scale_env[@]}")
		measure_scale "$standins"
		say "scale: $standins volumes measured ($((standins - scale)) stand-ins)"
	fi
	note scale_create_retries "$failures"
	note scale_pool_data_percent "$(lvs --noheadings -o data_percent scalevg/pool | tr -d ' ')"
	note scale_pool_mib "$pool_mib"
	# What a volume occupies in the pool after its create, on average (none was written to afterwards), from the
	# pool's own data_percent over the volumes made through the plugin: the stand-ins hold no data.
	note scale_volume_pool_mib "$(lvs --noheadings --units m --nosuffix -o lv_size,data_percent scalevg/pool |
		awk -v n="$scale" '{ printf "%.1f", $1 * $2 / 100 / n }')"
	plugin_stop "$sc"
}
