# Shared helpers for the integration scenarios: real processes on loopback.
# Sourced by each scenario; FTR_BIN must name the build directory.
set -euo pipefail

: "${FTR_BIN:?FTR_BIN must point at the build directory}"
RX="$FTR_BIN/src/ftrepl-receiver"
TX="$FTR_BIN/src/ftrepl-sender"
CTL="$FTR_BIN/src/ftreplctl"
BADPEER="$FTR_BIN/tests/integration/ftr-badpeer"
for b in "$RX" "$TX" "$CTL"; do
	[ -x "$b" ] || { echo "missing $b"; exit 1; }
done
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ftrepl-it.XXXXXX")
PIDS=()

cleanup() {
	local rc=$?
	# Only our own children that are still running: a remembered PID that
	# was reaped may belong to an unrelated process by now.
	for p in $(jobs -p); do
		kill -9 "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
		for f in "$WORK"/*.log; do
			[ -f "$f" ] || continue
			echo "---- $(basename "$f") (last 40 lines)"
			tail -n 40 "$f"
		done
	fi
	[ -n "${FTR_KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

say() {
	echo "[$(date +%T)] $*"
}

# status SOCK FIELD: one field of `ftreplctl status --json` (jq path)
status() {
	"$CTL" --control "$1" status --json | jq -r ".$2"
}

stats() {
	"$CTL" --control "$1" stats --json | jq -r ".$2"
}

# wait_until TIMEOUT_S CMD...: polls CMD every 50 ms
wait_until() {
	local t=$1
	shift
	local end=$((SECONDS + t))
	while ! "$@" 2>/dev/null; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.05
	done
	return 0
}

# start_rx NAME [receiver options]: starts a receiver on 127.0.0.1:0 with
# its control socket at $WORK/NAME.sock; sets RX_PID and RX_PORT.
start_rx() {
	local name=$1
	shift
	"$RX" --listen 127.0.0.1:0 --control "$WORK/$name.sock" "$@" \
		>"$WORK/$name.log" 2>&1 &
	RX_PID=$!
	PIDS+=("$RX_PID")
	wait_until 10 test -S "$WORK/$name.sock" || fail "receiver $name did not start"
	wait_until 10 "$CTL" --control "$WORK/$name.sock" status >/dev/null ||
		fail "receiver $name does not answer"
	RX_PORT=$(status "$WORK/$name.sock" listen_port)
	[ "$RX_PORT" -gt 0 ] || fail "receiver $name has no port"
}

# start_tx NAME [sender options]: sender to 127.0.0.1:$RX_PORT, control at
# $WORK/NAME.sock; sets TX_PID.
start_tx() {
	local name=$1
	shift
	"$TX" --tcp "127.0.0.1:$RX_PORT" --control "$WORK/$name.sock" "$@" \
		>"$WORK/$name.log" 2>&1 &
	TX_PID=$!
	PIDS+=("$TX_PID")
}

state_is() {
	[ "$(status "$1" state)" = "$2" ]
}

# verify_daemon SOCK: asks the receiver to verify its committed image;
# prints k; fails unless the oracle passed.
verify_daemon() {
	local out
	out=$("$CTL" --control "$1" verify --json) || fail "verify failed: $out"
	[ "$(echo "$out" | jq -r .passed)" = "true" ] || fail "oracle rejected the image: $out"
	echo "$out" | jq -r .k
}
