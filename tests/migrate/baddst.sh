#!/usr/bin/env bash
# The source against a hostile destination (ftr-migrate-baddst) that sends
# one bad record on the urgent channel: the source must reject it cleanly,
# i.e. exit 1 (not a signal) naming the problem, and tell the peer.
#   baddst.sh MODE "EXPECTED TEXT"
. "$(dirname "$0")/lib.sh"

MODE=$1
EXPECT=$2
rm -f "$WORK/bad.port"
"$BADDST" --listen 127.0.0.1:0 --port-file "$WORK/bad.port" --mode "$MODE" >"$WORK/bad.log" 2>&1 &
BAD_PID=$!
PIDS+=("$BAD_PID")
wait_until 10 test -s "$WORK/bad.port" || fail "bad destination did not start"
start_src src "127.0.0.1:$(cat "$WORK/bad.port")" --workload "synth:size=8M,seed=3,rate=2000" \
	--pre-writes 2000 --mode hybrid --rounds 2 --timeout-ms 3000 --recover-ms 3000
wait_exit "$SRC_PID" 40; src_rc=$RC
[ "$src_rc" = 1 ] || fail "source exited $src_rc, expected 1 (a clean failure)"
err=$(grep '^error:' "$WORK/src.log" || true)
echo "$err" | grep -qF -- "$EXPECT" || fail "source said '$err', expected '$EXPECT'"
wait_exit "$BAD_PID" 40; bad_rc=$RC
[ "$bad_rc" = 0 ] || fail "the bad destination got no ERROR back"
say "$MODE rejected: ${err#error: }"
say "the source told its peer: $(grep '^source said' "$WORK/bad.log" | sed 's/^source said: //')"
