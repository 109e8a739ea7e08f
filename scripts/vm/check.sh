# check.sh: the lab's tiny assertion helpers (sourced). Each check prints ok/FAIL with what it looked at, and
# finish prints the plain "N passed, N failed" line and fails when anything failed. Each line carries the seconds
# since the script started (bash's SECONDS), which is where a slow lab run is read from.
passed=0 failed=0
pass() { passed=$((passed + 1)); printf 'ok   %4ds %s\n' "$SECONDS" "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %4ds %s\n' "$SECONDS" "$*"; }
# check DESC CMD...: CMD must exit 0.
check() {
	local desc=$1; shift
	local out
	if out=$("$@" 2>&1); then pass "$desc"; else fail "$desc: $* -> $out"; fi
}
# check_not DESC CMD...: CMD must fail.
check_not() {
	local desc=$1; shift
	local out
	if out=$("$@" 2>&1); then fail "$desc: unexpectedly succeeded: $* -> $out"; else pass "$desc"; fi
}
# step DESC CMD...: like check, but CMD's output streams (for whole test scripts).
step() {
	local desc=$1; shift
	if "$@"; then pass "$desc"; else fail "$desc"; fi
}
# check_eq DESC WANT GOT
check_eq() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: want '$2', got '$3'"; fi; }
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
}
