# Shared helpers for the integration scenarios: real processes on loopback.
# Sourced by each scenario; FTR_BIN must name the build directory.
# FTR_ADDR: the address receivers listen on and senders connect to (default
# 127.0.0.1). FTR_RDMA: an RDMA device; when set, start_rx and start_tx use
# --rdma DEV (FTR_ADDR must then be an address of that device's netdev).
# FTR_JQ_OPTIONAL=1: run without jq (status, stats and verify_daemon then
# read ftreplctl's "key: value" output; paths of at most two levels).
set -euo pipefail

: "${FTR_BIN:?FTR_BIN must point at the build directory}"
RX="$FTR_BIN/src/ftrepl-receiver"
TX="$FTR_BIN/src/ftrepl-sender"
CTL="$FTR_BIN/src/ftreplctl"
BADPEER="$FTR_BIN/tests/integration/ftr-badpeer"
for b in "$RX" "$TX" "$CTL"; do
	[ -x "$b" ] || { echo "missing $b"; exit 1; }
done
FTR_ADDR=${FTR_ADDR:-127.0.0.1}
FTR_RDMA=${FTR_RDMA:-}
HAVE_JQ=1
if ! command -v jq >/dev/null; then
	[ -n "${FTR_JQ_OPTIONAL:-}" ] || { echo "SKIP: jq is not installed"; exit 77; }
	HAVE_JQ=
fi

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

# ctl_field CMD SOCK PATH: one field of `ftreplctl CMD` (status, stats,
# verify), printed like `jq -r .PATH` would. Without jq: PATH is KEY (a line
# "KEY: value") or KEY.SUB (a string, number, boolean or null in the object
# printed on the line of KEY).
ctl_field() {
	if [ -n "$HAVE_JQ" ]; then
		"$CTL" --control "$2" "$1" --json | jq -r ".$3"
		return
	fi
	local out key=${3%%.*} sub= l line= found= re
	[ "$key" != "$3" ] && sub=${3#*.}
	out=$("$CTL" --control "$2" "$1") || return 1
	while IFS= read -r l; do
		if [[ $l == "$key: "* ]]; then
			line=${l#"$key: "}
			found=1
			break
		fi
	done <<<"$out"
	# A missing field prints null, as jq does.
	[ -n "$found" ] || { echo null; return; }
	if [ -z "$sub" ]; then
		printf '%s\n' "$line"
		return
	fi
	re="[{,]\"$sub\":(\"([^\"]*)\"|([^,}\"]*))"
	[[ $line =~ $re ]] || { echo null; return; }
	if [ "${BASH_REMATCH[1]:0:1}" = '"' ]; then
		printf '%s\n' "${BASH_REMATCH[2]}"
	else
		printf '%s\n' "${BASH_REMATCH[3]}"
	fi
}

# status SOCK FIELD: one field of `ftreplctl status` (a jq path)
status() {
	ctl_field status "$@"
}

stats() {
	ctl_field stats "$@"
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

# start_rx NAME [receiver options]: starts a receiver on $FTR_ADDR:0 (with
# --rdma $FTR_RDMA when set) with its control socket at $WORK/NAME.sock;
# sets RX_PID and RX_PORT.
start_rx() {
	local name=$1
	shift
	"$RX" --listen "$FTR_ADDR:0" ${FTR_RDMA:+--rdma "$FTR_RDMA"} \
		--control "$WORK/$name.sock" "$@" >"$WORK/$name.log" 2>&1 &
	RX_PID=$!
	PIDS+=("$RX_PID")
	wait_until 10 test -S "$WORK/$name.sock" || fail "receiver $name did not start"
	wait_until 10 "$CTL" --control "$WORK/$name.sock" status >/dev/null ||
		fail "receiver $name does not answer"
	RX_PORT=$(status "$WORK/$name.sock" listen_port)
	[ "$RX_PORT" -gt 0 ] || fail "receiver $name has no port"
}

# tx_target: the sender's connection options towards $FTR_ADDR:$RX_PORT
# (--tcp, or --rdma DEV --connect when FTR_RDMA is set).
tx_target() {
	if [ -n "$FTR_RDMA" ]; then
		TX_TARGET=(--rdma "$FTR_RDMA" --connect "$FTR_ADDR:$RX_PORT")
	else
		TX_TARGET=(--tcp "$FTR_ADDR:$RX_PORT")
	fi
}

# start_tx NAME [sender options]: sender to $FTR_ADDR:$RX_PORT, control at
# $WORK/NAME.sock; sets TX_PID.
start_tx() {
	local name=$1
	shift
	tx_target
	"$TX" "${TX_TARGET[@]}" --control "$WORK/$name.sock" "$@" \
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
	if [ -n "$HAVE_JQ" ]; then
		out=$("$CTL" --control "$1" verify --json) || fail "verify failed: $out"
		[ "$(echo "$out" | jq -r .passed)" = "true" ] || fail "oracle rejected the image: $out"
		echo "$out" | jq -r .k
		return
	fi
	out=$("$CTL" --control "$1" verify --json) || fail "verify failed: $out"
	[[ $out =~ \"passed\":true ]] || fail "oracle rejected the image: $out"
	[[ $out =~ \"k\":([0-9]+) ]] || fail "no k in the verdict: $out"
	echo "${BASH_REMATCH[1]}"
}
