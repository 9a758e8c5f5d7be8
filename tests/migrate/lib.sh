# Shared helpers of the live-migration scenarios (tests/migrate/*.sh):
# real source and destination processes (tests/tools/ftr_migrate.c).
# Sourced by each scenario; FTR_BIN must name the build directory.
set -euo pipefail

: "${FTR_BIN:?FTR_BIN must point at the build directory}"
MIG="$FTR_BIN/tests/integration/ftr-migrate"
PROXY="$FTR_BIN/tests/integration/ftr-proxy"
BADDST="$FTR_BIN/tests/integration/ftr-migrate-baddst"
for b in "$MIG" "$PROXY" "$BADDST"; do
	[ -x "$b" ] || { echo "missing $b"; exit 1; }
done
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ftrepl-mig.XXXXXX")
PIDS=()
CLEANUP_HOOKS=()

# Kills p only while it is still a child of this shell: a PID that exited
# (and was reaped) may already belong to someone else (pid_max is small).
kill_child() {
	local ppid
	ppid=$(awk '{print $4}' "/proc/$1/stat" 2>/dev/null) || return 0
	[ "$ppid" = "$$" ] && kill -9 "$1" 2>/dev/null || true
}

# True while p is a live (not zombie) child of this shell.
child_running() {
	local st
	st=$(awk '{print $3 " " $4}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "${st#* }" = "$$" ] && [ "${st%% *}" != Z ]
}

cleanup() {
	local rc=$?
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill_child "$p"
	done
	wait 2>/dev/null || true
	for h in "${CLEANUP_HOOKS[@]:-}"; do
		[ -n "$h" ] && eval "$h" || true
	done
	if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
		for f in "$WORK"/*.log; do
			[ -f "$f" ] || continue
			echo "---- $(basename "$f") (last 30 lines)"
			tail -n 30 "$f"
		done
	fi
	[ -n "${FTR_KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

say() {
	echo "[$(date +%T)] $*"
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

# start_dst NAME [ftr-migrate dst options]: a destination on 127.0.0.1:0
# (override with --listen); sets DST_PID and DST_PORT. $PREFIX (e.g.
# "ip netns exec NS") runs it elsewhere.
start_dst() {
	local name=$1
	shift
	rm -f "$WORK/$name.port"
	${PREFIX:-} "$MIG" dst --listen "${DST_LISTEN:-127.0.0.1:0}" --port-file "$WORK/$name.port" "$@" \
		>"$WORK/$name.log" 2>&1 &
	DST_PID=$!
	PIDS+=("$DST_PID")
	wait_until 10 test -s "$WORK/$name.port" || fail "destination $name did not start"
	DST_PORT=$(cat "$WORK/$name.port")
}

# start_src NAME ADDR:PORT [ftr-migrate src options]; sets SRC_PID.
start_src() {
	local name=$1 to=$2
	shift 2
	${PREFIX:-} "$MIG" src --connect "$to" "$@" >"$WORK/$name.log" 2>&1 &
	SRC_PID=$!
	PIDS+=("$SRC_PID")
}

# result NAME FIELD: a field of the final status JSON in NAME.log
result() {
	grep '^result ' "$WORK/$1.log" | tail -n1 | sed 's/^result //' | jq -r ".$2"
}

# wait_exit PID TIMEOUT_S: waits for PID, sets RC to its exit code (fails
# when it is still running after TIMEOUT_S). Not in a $(...) subshell: only
# this shell can wait for its children.
wait_exit() {
	local pid=$1 t=$2 end=$((SECONDS + $2))
	while child_running "$pid"; do
		[ $SECONDS -ge $end ] && fail "process $pid still running after ${t}s"
		sleep 0.05
	done
	RC=0
	wait "$pid" || RC=$?
}

# count_phase NAME PHASE: how many times NAME entered PHASE
count_phase() {
	grep -c "^phase $2\$" "$WORK/$1.log" || true
}
