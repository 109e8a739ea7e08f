# lib.sh: helpers of the benchmark (sourced by run-guest, not run). Everything here runs inside the lab guest.
# Measurements go to $raw as CSV rows "section,metric,variant,run,value,unit"; report.py turns them into medians and
# ratios. Times are wall-clock seconds from bash's EPOCHREALTIME (microseconds), because what a user waits for is
# wall-clock time, and forking date(1) for each stamp would itself cost milliseconds under emulation.

# Where the raw data, logs and per-plugin directories live: the scratch disk, not the 1 GiB tmpfs /tmp.
work=/scratch/bench
raw=$work/raw.csv
cmdlog=$work/commands.log
info=$work/info

# say prints a progress line with the time since the bench started, so a slow phase is visible while it runs.
bench_t0=$EPOCHREALTIME
say() { printf '[bench %6.0fs] %s\n' "$(since "$bench_t0")" "$*"; }

# since T0 prints the seconds elapsed since the EPOCHREALTIME stamp T0.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }'; }

# q CMD...: runs CMD with its output in the command log. lvm, cryptsetup and mkfs chatter (lvm warns on every
# metadata update that backups are off) would otherwise bury the progress lines; the log is shown on failure.
q() { "$@" >> "$cmdlog" 2>&1; }

# record SECTION METRIC VARIANT RUN VALUE UNIT: one measurement.
record() { printf '%s,%s,%s,%s,%s,%s\n' "$@" >> "$raw"; }

# note KEY VALUE: one line of context for the report's header (versions, parameters actually used).
note() { printf '%s=%s\n' "$1" "$2" >> "$info"; }

# timed SECTION METRIC VARIANT RUN CMD...: runs CMD (output to the command log) and records its wall time.
timed() {
	local s=$1 m=$2 v=$3 r=$4 t0
	shift 4
	t0=$EPOCHREALTIME
	q "$@"
	record "$s" "$m" "$v" "$r" "$(since "$t0")" s
}

# docker_timed TRACE SECTION METRIC VARIANT RUN IMAGE VOLUME: one timed `docker run --rm -v VOLUME:/data IMAGE true`,
# and a line in $work/traces (TRACE, the dockerd log line it began at, its start and end) for trace.py.
docker_timed() {
	local tr=$1 s=$2 m=$3 v=$4 r=$5 img=$6 vol=$7 t0 t1 from
	from=$(($(wc -l < /scratch/dockerd.log) + 1))
	t0=$EPOCHREALTIME
	q docker run --rm -v "$vol:/data" "$img" true
	t1=$EPOCHREALTIME
	record "$s" "$m" "$v" "$r" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')" s
	echo "$tr $from $t0 $t1 $v $r" >> "$work/traces"
}

# on_error shows what failed and the end of the command log, then the guest exits non-zero (set -e).
on_error() {
	local rc=$? line=$1
	printf '[bench] FAILED (exit %s) at %s line %s: %s\n' "$rc" "${BASH_SOURCE[1]##*/}" "$line" "$BASH_COMMAND" >&2
	[ -f "$cmdlog" ] && { echo "[bench] last lines of $cmdlog:" >&2; tail -40 "$cmdlog" >&2; }
}

# --- the plugin process, run directly (no dockerd): bin/cryptvol with CRYPTVOL_* settings -------------------------

# call SOCK OP BODY: one VolumeDriver request with curl, as dockerd sends it; prints the reply and fails when the
# request fails or the reply carries an "Err".
call() {
	local reply
	reply=$(curl -sS --max-time 600 --unix-socket "$1" -X POST -d "$3" "http://plugin/VolumeDriver.$2")
	printf '%s\n' "$reply"
	check_reply "$2 $3" "$reply"
}
check_reply() {
	if ! jq -e '(.Err // "") == ""' <<< "$2" > /dev/null; then
		echo "[bench] $1 failed: $2" >&2
		return 1
	fi
}

# timed_call SECTION METRIC VARIANT RUN SOCK OP BODY: call, recording the request's wall time. Only curl is inside
# the clock (the reply is checked after it stops): under emulation every extra process costs tenths of a second.
timed_call() {
	local s=$1 m=$2 v=$3 r=$4 sock=$5 op=$6 body=$7 t0 t reply path
	# OP is a VolumeDriver request (Create...), or a path of the plugin's own (/Cryptvol.Reencrypt).
	path=/VolumeDriver.$op
	[[ $op == /* ]] && path=$op
	t0=$EPOCHREALTIME
	reply=$(curl -sS --max-time 3600 --unix-socket "$sock" -X POST -d "$body" "http://plugin$path")
	t=$(since "$t0")
	printf '%s\n' "$reply" >> "$cmdlog"
	check_reply "$op $body" "$reply"
	record "$s" "$m" "$v" "$r" "$t" s
}

# answers SOCK: the plugin behind SOCK answers a request that needs its volumes (List, which waits for start-up
# reconciliation; Capabilities answers as soon as the socket listens).
answers() {
	[[ $(curl -s --max-time 10 --unix-socket "$1" -X POST -d '{}' http://plugin/VolumeDriver.List 2> /dev/null) == *'"Volumes"'* ]]
}

# alive PID: the process exists and is not a zombie (plugin_start runs inside $(...), so the plugin is re-parented
# to the guest's init once that subshell ends, and whether init reaps it promptly is not ours to rely on).
alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2> /dev/null) && [ -n "$st" ] && [ "$st" != Z ]
}

# plugin_start DIR VAR=VALUE...: starts the plugin with its socket, state and mount root under DIR and the given
# settings on top of the KMIP ones in the environment, appending to DIR/plugin.log; waits until its socket answers
# and prints the seconds that took (process start to the first answered request, polled every 0.1 s with curl
# alone so that the polling steals little CPU from the start-up it measures).
plugin_start() {
	local dir=$1 t0 pid
	shift
	mkdir -p "$dir"
	t0=$EPOCHREALTIME
	env CRYPTVOL_SOCKET="$dir/cryptvol.sock" CRYPTVOL_STATE_DIR="$dir/state" CRYPTVOL_MOUNT_ROOT="$dir/mnt" \
		"$@" "$work/cryptvol" >> "$dir/plugin.log" 2>&1 < /dev/null &
	pid=$!
	echo "$pid" > "$dir/pid"
	# Start-up creates the VG and pool when needed and reconciles every volume; generous for emulation.
	for _ in $(seq 1 3000); do
		if answers "$dir/cryptvol.sock"; then
			since "$t0"
			return 0
		fi
		alive "$pid" || break
		sleep 0.1
	done
	echo "[bench] the plugin in $dir did not start; its log:" >&2
	tail -30 "$dir/plugin.log" >&2
	return 1
}

# plugin_stop DIR: SIGTERM, as docker plugin disable does, and waits for the process to exit.
plugin_stop() {
	local dir=$1 pid
	[ -f "$dir/pid" ] || return 0
	pid=$(cat "$dir/pid")
	kill -TERM "$pid" 2> /dev/null || true
	while alive "$pid"; do sleep 0.05; done
	rm -f "$dir/pid"
}

# reconcile_seconds DIR: the duration of the last "start-up reconciliation done" in DIR/plugin.log, in seconds.
reconcile_seconds() {
	grep 'start-up reconciliation done' "$1/plugin.log" | tail -1 | duration_seconds
}

# ready_seconds DIR: the plugin's own start-up, process start to serving volumes, from its last "ready" line.
ready_seconds() {
	grep 'msg="ready: serving volumes"' "$1/plugin.log" | tail -1 | duration_seconds
}

# request_seconds DIR OP: the plugin's own time for its last request OP (get, list...) in DIR/plugin.log, from its
# debug "request done" line: what the plugin took, without the client's process start that timed_call includes.
request_seconds() {
	grep 'msg="request done"' "$1/plugin.log" | grep " op=$2\b" | tail -1 | duration_seconds
}

# duration_seconds: the duration= field of the log line on stdin, in seconds. logrus prints it as a Go duration
# (850ms, 1.2s, 1m3.5s).
duration_seconds() {
	sed -n 's/.*duration=\([^ ]*\).*/\1/p' |
		python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import godur
print("%.4f" % godur.seconds(sys.stdin.read().strip().strip("\"")))' "$here"
}
