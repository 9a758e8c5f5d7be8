#!/usr/bin/env bash
# Liveness of a resumed workload: while it still faults pages through the
# standby (anonymous mode, no background fill), the standby is killed. The
# workload must end with SIGBUS within a bounded time, never hang in a fault
# and never read zero pages.
. "$(dirname "$0")/lib.sh"

start_rx rx --cache 32M --resume-sock "$WORK/resume.sock" --failover-timeout 500 --heartbeat-ms 50
start_tx tx --workload "synth:size=16M,seed=3,rate=50000" --epoch-ms 20 --heartbeat-ms 50
wait_until 10 state_is "$WORK/rx.sock" protected || fail "not protected"
sleep 0.5
kill -9 "$TX_PID"; wait "$TX_PID" 2>/dev/null || true
wait_until 10 state_is "$WORK/rx.sock" promoted || fail "not promoted"
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_sigbus=0" \
"$FTR_BIN/tests/integration/ftr-resume-client" --sock "$WORK/resume.sock" --mode anon \
	--touch-slowly >"$WORK/client.log" 2>&1 &
CPID=$!
PIDS+=("$CPID")
wait_until 10 grep -q touching "$WORK/client.log" || fail "client did not resume: $(cat "$WORK/client.log")"
sleep 0.3
kill -9 "$RX_PID"; wait "$RX_PID" 2>/dev/null || true
t0=$SECONDS
rc=0
while kill -0 "$CPID" 2>/dev/null; do
	[ $((SECONDS - t0)) -lt 10 ] || fail "the resumed workload still runs (or hangs) 10 s after its server died"
	sleep 0.1
done
wait "$CPID" || rc=$?
[ "$rc" -eq $((128 + 7)) ] || fail "resumed workload ended with status $rc, expected SIGBUS (135): $(cat "$WORK/client.log")"
grep -q "resume server went away" "$WORK/client.log" || fail "no message about the lost server"
say "ok: the resumed workload got SIGBUS $((SECONDS - t0)) s after its server died"
