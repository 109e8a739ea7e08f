# checks.bash: the checks of a run-pair script (tests/shared/pair.sh, upgrade.sh), sourced on this host after
# scripts/vm/pair-lib.sh, with here set to tests/shared: check runs a shell line in one guest, check2 one in each at
# once; finish prints the counts and exits, failing if any check failed.
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
		# The plugin run as a host process logs to its file; the managed one through dockerd.
		echo "     | node $n's plugin logs, last lines:"
		on "$n" "tail -n 8 /scratch/cv/plugin.log; grep -h ' plugin=' /scratch/dockerd.log 2> /dev/null | tail -n 8" 2>&1 |
			cut -c1-400 | sed 's/^/     | /'
	fi
	# The takeover's own line is worth seeing even when it passes.
	grep -h '^after [0-9]* s and' "$out" 2> /dev/null | sed 's/^/     | /'
}
# check2 WHAT CMD1 CMD2: CMD1 in node 1 and CMD2 in node 2, at once; both must succeed.
check2() {
	local what=$1 j1 j2 r=0
	hand 1 "$2" && j1=$handed
	hand 2 "$3" && j2=$handed
	result 1 "$j1" > "$PAIR_LOGS/check1.out" 2>&1 || r=1
	result 2 "$j2" > "$PAIR_LOGS/check2.out" 2>&1 || r=1
	if [ $r = 0 ]; then pass "$what"; return 0; fi
	fail "$what"
	for n in 1 2; do sed "s/^/     | node $n: /" "$PAIR_LOGS/check$n.out"; done
	return 1
}
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
	exit
}


# pair_setup: both guests up, Docker 26's root named for them, sanlock and lvmlockd on both, the KMIP server on
# node 2 (its env and the cluster's one identity in /lab/pair/kmip), and the shared volume group sv made once from
# node 1. A failure finishes the run.
pair_setup() {
	local j1 j2
	wait_up 1 && wait_up 2 || { fail "both guests up"; finish; }
	pass "both guests up"
	# Docker 26 for the Swarm part, unpacked on this host (the guests see its files); node.bash puts it first in PATH.
	droot=${LAB_DOCKER_ROOT:-$("$repo/scripts/vm/docker-debian" trixie)} && [ -x "$droot/usr/sbin/dockerd" ] ||
		{ fail "Docker 26 (scripts/vm/docker-debian trixie)"; finish; }
	echo "$droot" > "$PAIR_DIR/docker-root"
	# The lock managers of both hosts at once: they are independent.
	check2 "sanlock and lvmlockd on both hosts" "$repo/scripts/vm/shared-node" "$repo/scripts/vm/shared-node" || finish
	# The KMIP server is node 2's, so that it outlives node 1, which pair.sh kills. The group is made once, from one
	# host, as docs/shared-volume-group.md's host setup says (the plugins never create a shared group); the two at once.
	hand 2 "source $here/node.bash; "'KMIP_ADDR=10.99.0.2 $repo/scripts/kmip/dev-server start /scratch/kmip 5696 > /dev/null &&
		mkdir -p /lab/pair/kmip && cp /scratch/kmip/{ca.pem,client.pem,client.key} /lab/pair/kmip/ &&
		sed -e "s|/scratch/kmip/|/lab/pair/kmip/|" -e "/TENANTS_SRC/d" /scratch/kmip/env > /lab/pair/kmip/env' && j2=$handed
	hand 1 'vgcreate -q --shared sv /dev/vdd' && j1=$handed
	result 2 "$j2" > "$PAIR_LOGS/check.out" 2>&1 && pass "KMIP server on node 2, on the link" ||
		{ fail "KMIP server on node 2, on the link"; sed 's/^/     | /' "$PAIR_LOGS/check.out"; finish; }
	result 1 "$j1" > "$PAIR_LOGS/check.out" 2>&1 && pass "the shared volume group, made once from node 1" ||
		{ fail "the shared volume group, made once from node 1"; sed 's/^/     | /' "$PAIR_LOGS/check.out"; finish; }
}
