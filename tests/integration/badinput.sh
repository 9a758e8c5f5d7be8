#!/usr/bin/env bash
# Connections that are not the session: garbage, a truncated HELLO, a HELLO
# that stalls, a second session. The receiver rejects each with a logged
# reason, keeps replicating the real session, and keeps its control socket.
. "$(dirname "$0")/lib.sh"

[ -x "$BADPEER" ] || fail "missing $BADPEER"
start_rx rx --cache 64M --staging 16M
start_tx tx --workload synth:size=16M,rate=20000 --epoch-ms 20
wait_until 10 state_is "$WORK/rx.sock" protected || fail "not protected"
before=$(status "$WORK/rx.sock" epoch_committed)

for mode in garbage truncated-hello second-session stall-hello; do
	"$BADPEER" --connect "127.0.0.1:$RX_PORT" --mode "$mode" >"$WORK/peer-$mode.log" 2>&1 ||
		fail "badpeer $mode: $(cat "$WORK/peer-$mode.log")"
	state_is "$WORK/rx.sock" protected || fail "after $mode: state $(status "$WORK/rx.sock" state)"
	say "$mode: rejected ($(grep -m1 standby-error "$WORK/peer-$mode.log" || echo closed))"
done
rejected=$(stats "$WORK/rx.sock" sessions_rejected)
[ "$rejected" -ge 4 ] || fail "only $rejected connections counted as rejected"
grep -q "rejected connection" "$WORK/rx.log" || fail "rejections not logged"
grep -q "busy with session" "$WORK/peer-second-session.log" || fail "second session not refused as busy"

after=$(status "$WORK/rx.sock" epoch_committed)
[ "$after" -gt "$before" ] || fail "replication stalled: epoch $before -> $after"
"$CTL" --control "$WORK/tx.sock" stop >/dev/null
wait "$TX_PID" || fail "sender exited with $?"
k=$(verify_daemon "$WORK/rx.sock")
say "ok: session went on from epoch $before to $after, $rejected intruders rejected, k=$k verified"
