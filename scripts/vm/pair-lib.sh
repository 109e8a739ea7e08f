# pair-lib.sh: what a run-pair script (on this host) uses to drive the two guests (sourced, not run).
# PAIR_DIR is the directory both guests mount at /lab/pair (run-pair sets it).
: "${PAIR_DIR:?pair-lib.sh: run under scripts/vm/run-pair}"
declare -A pair_next=([1]=1 [2]=1)

# wait_up N [SECONDS]: waits until node N's agent is running (default 600 s: two guests boot under emulation).
wait_up() {
	local end=$((SECONDS + ${2:-600}))
	until [ -e "$PAIR_DIR/node$1/up" ]; do
		[ $SECONDS -lt $end ] || { echo "node $1 did not come up in ${2:-600} s" >&2; return 1; }
		sleep 0.5
	done
}

# hand N CMD: gives node N the shell command line CMD without waiting; its job number is left in handed. (Not
# for $(...): the job counter must move on in this shell.)
hand() {
	local n=$1 j=${pair_next[$1]}
	shift
	printf '%s\n' "$*" > "$PAIR_DIR/node$n/$j.tmp" && mv "$PAIR_DIR/node$n/$j.tmp" "$PAIR_DIR/node$n/$j.sh"
	pair_next[$n]=$((j + 1))
	handed=$j
}

# result N J [SECONDS]: waits for node N's job J (default 1200 s), prints its output, returns its exit code
# (124 when it did not end in time).
result() {
	local f=$PAIR_DIR/node$1/$2 end=$((SECONDS + ${3:-1200}))
	until [ -f "$f.rc" ]; do
		if [ $SECONDS -ge $end ]; then
			cat "$f.out" 2> /dev/null
			echo "node $1: job $2 did not end in ${3:-1200} s" >&2
			return 124
		fi
		sleep 0.2
	done
	cat "$f.out"
	return "$(cat "$f.rc")"
}

# on N CMD: runs CMD in node N and waits for it: its output, its exit code.
on() {
	local n=$1 j
	shift
	hand "$n" "$@"
	result "$n" "$handed"
}

# kill_node N: SIGKILL node N's QEMU process, as a host would lose power: its kernel, its page cache and all its
# processes go at once, and its writes that reached this host (through QEMU) stay on the shared disk.
# (The MAC address is the node's; the pair directory tells this pair's guests from another pair's.)
kill_node() { pkill -KILL -f "mac=52:54:00:99:00:0$1 .*path=$PAIR_DIR,"; }
