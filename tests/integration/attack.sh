#!/usr/bin/env bash
# A scripted primary commits epochs 0 and 1 correctly, then breaks epoch 2
# in one way. The standby must reject it naming the problem, promote, and
# hold exactly epoch 1 (the oracle passes with that epoch's k), while its
# control socket keeps answering.
#   attack.sh MODE EXPECTED_ERROR_SUBSTRING
. "$(dirname "$0")/lib.sh"

MODE=$1
EXPECT=$2
[ -x "$BADPEER" ] || fail "missing $BADPEER"
start_rx rx --cache 8M --staging 4M --stall-timeout 1000 --failover-timeout 5000
"$BADPEER" --connect "127.0.0.1:$RX_PORT" --mode "$MODE" >"$WORK/peer.log" 2>&1 ||
	fail "badpeer failed: $(cat "$WORK/peer.log")"
want_k=$(awk '/^committed-k/ {k=$2} END {print k}' "$WORK/peer.log")
[ -n "$want_k" ] || fail "badpeer committed nothing"
wait_until 10 state_is "$WORK/rx.sock" promoted || fail "not promoted: $(status "$WORK/rx.sock" state)"
err=$(status "$WORK/rx.sock" last_error)
# EXPECT may list alternatives separated by "/" (which one a race picks
# depends on which channel the standby reads first).
echo "$err" | grep -qE -e "${EXPECT//\//|}" || fail "last_error \"$err\" does not mention \"$EXPECT\""
grep -q "session failed" "$WORK/rx.log" || fail "receiver did not log the failure"
k=$(verify_daemon "$WORK/rx.sock")
[ "$k" = "$want_k" ] || fail "committed image has k=$k, the last committed epoch had k=$want_k"
discarded=$(stats "$WORK/rx.sock" epochs_discarded)
say "ok: $MODE rejected (\"$err\"); image k=$k intact; $discarded epoch(s) discarded"
