#!/usr/bin/env bash
# An attached workload end to end: ftrepl-receiver, `ftrepl-sender
# --attach-sock` and the kvserver example under load from kvload. After
# EPOCHS epochs the sender stops orderly (final epoch, ACK, "stop" to the
# client); the kvserver then exits 0. The standby's committed image must
# equal the sender's final image and hold every SET whose reply kvload
# received (output commit), with the right value.
#   attach.sh TRACKING [kv:KVSERVER_OPTION ...] [sender options...]
#   TRACKING: auto, wp-async or scan (the client's choice)
. "$(dirname "$0")/lib.sh"

KVS="$FTR_BIN/examples/kvserver"
KVL="$FTR_BIN/examples/kvload"
[ -x "$KVS" ] && [ -x "$KVL" ] || { echo "SKIP: examples not built (FTREPL_BUILD_EXAMPLES=OFF)"; exit 77; }

TRACKING=${1:-auto}
shift || true
KV_OPTS=()
while [ $# -gt 0 ] && [ "${1#kv:}" != "$1" ]; do
	KV_OPTS+=("${1#kv:}")
	shift
done
EPOCHS=${EPOCHS:-150}
prev=""
for a in "$@"; do # a later --epochs among the sender options wins
	[ "$prev" = --epochs ] && EPOCHS=$a
	prev=$a
done

# Usage errors first: exactly one workload, no primary-side wp tracking.
set +e
"$TX" --tcp 127.0.0.1:1 --attach-sock "$WORK/x.sock" --workload synth >/dev/null 2>"$WORK/usage.err"
rc1=$?
"$TX" --tcp 127.0.0.1:1 --attach-sock "$WORK/x.sock" --dirty wp-async >/dev/null 2>>"$WORK/usage.err"
rc2=$?
set -e
[ $rc1 -eq 2 ] && [ $rc2 -eq 2 ] || fail "usage errors exited $rc1/$rc2, expected 2: $(cat "$WORK/usage.err")"
grep -q "exclusive" "$WORK/usage.err" || fail "no usage error for --attach-sock with --workload"
grep -q "cannot see an attached process" "$WORK/usage.err" || fail "no usage error for --dirty wp-async"

start_rx rx --cache 64M --staging 32M
say "receiver on port $RX_PORT; tracking $TRACKING; kvserver ${KV_OPTS[*]:-}; sender options: $*"
start_tx tx --attach-sock "$WORK/attach.sock" --epoch-ms 20 --epochs "$EPOCHS" \
	--dump-on-exit "$WORK/tx.img" "$@"
wait_until 10 test -S "$WORK/attach.sock" || fail "sender does not listen on its attach socket"
# (bound, then chmod 0600 before listen(): nobody can connect in between)
sock_mode() { [ "$(stat -c %a "$WORK/attach.sock")" = 600 ]; }
wait_until 2 sock_mode || fail "attach socket mode $(stat -c %a "$WORK/attach.sock"), expected 600"

"$KVS" --attach "$WORK/attach.sock" --port-file "$WORK/kv.port" --slots 32768 \
	--tracking "$TRACKING" "${KV_OPTS[@]}" >"$WORK/kvserver.log" 2>&1 &
KV_PID=$!
PIDS+=("$KV_PID")
wait_until 10 test -s "$WORK/kv.port" || fail "kvserver did not start"
"$KVL" --connect "127.0.0.1:$(cat "$WORK/kv.port")" --keys "$WORK/acked" --conns 4 --window 8 \
	--duration 60 >"$WORK/kvload.log" 2>&1 &
KVL_PID=$!
PIDS+=("$KVL_PID")

# While it runs: the sender shows the attached workload and its progress
# (the client's counter, sent with each "paused"). Polled until seen or
# the sender is done.
wl="" progress=0
while kill -0 "$TX_PID" 2>/dev/null && { [ -z "$wl" ] || [ "$progress" -eq 0 ]; }; do
	out=$("$CTL" --control "$WORK/tx.sock" status --json 2>/dev/null) || { sleep 0.02; continue; }
	wl=$(echo "$out" | jq -r .workload)
	progress=$(echo "$out" | jq -r .workload_writes)
done
case "$wl" in
attach:pid=$KV_PID,tracking=*) ;;
*) fail "sender status shows workload \"$wl\"" ;;
esac
[ "$TRACKING" = auto ] || [ "$wl" = "attach:pid=$KV_PID,tracking=$TRACKING" ] ||
	fail "tracking: sender says $wl, asked for $TRACKING"
[ "$progress" -gt 0 ] || fail "no progress reported by the attached workload"

wait "$TX_PID" || fail "sender exited with $?"
wait "$KV_PID" || fail "kvserver exited with $? after an orderly stop (expected 0)"
wait "$KVL_PID" || fail "kvload failed: $(cat "$WORK/kvload.log")"
cat "$WORK/kvload.log"

wait_until 5 state_is "$WORK/rx.sock" degraded || fail "receiver not degraded after BYE: $(status "$WORK/rx.sock" state)"
committed=$(status "$WORK/rx.sock" epoch_committed)
[ "$committed" = "$EPOCHS" ] || fail "committed epoch $committed, expected $EPOCHS"
"$CTL" --control "$WORK/rx.sock" dump "$WORK/rx.img" >/dev/null || fail "dump failed"
cmp "$WORK/rx.img" "$WORK/tx.img" || fail "committed image differs from the sender's final image"
acked=$(wc -l <"$WORK/acked")
[ "$acked" -gt 0 ] || fail "no SET was acknowledged"
"$KVL" --check "$WORK/rx.img" --keys "$WORK/acked" || fail "acknowledged SETs missing from the standby's image"
say "ok: $EPOCHS epochs committed, $acked acknowledged SETs all in the standby's image ($(grep -o 'tracking [a-z-]*' "$WORK/tx.log" | head -1))"
