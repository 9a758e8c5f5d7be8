#!/usr/bin/env bash
# Replicate the synthetic workload for a number of epochs with the given
# sender options, stop it orderly, and check that the standby's committed
# image is exactly the sender's final image and passes the oracle.
#   replicate.sh [sender options...]
. "$(dirname "$0")/lib.sh"

EPOCHS=${EPOCHS:-25}
SPEC=${SPEC:-synth:size=32M,seed=11,rate=40000}

start_rx rx --cache 64M --staging 48M
say "receiver on port $RX_PORT; sender options: $*"
start_tx tx --workload "$SPEC" --epoch-ms 20 --epochs "$EPOCHS" \
	--dump-on-exit "$WORK/tx.img" "$@"
wait "$TX_PID" || fail "sender exited with $?"

wait_until 5 state_is "$WORK/rx.sock" degraded || fail "receiver not degraded after BYE: $(status "$WORK/rx.sock" state)"
committed=$(status "$WORK/rx.sock" epoch_committed)
[ "$committed" = "$EPOCHS" ] || fail "committed epoch $committed, expected $EPOCHS"

"$CTL" --control "$WORK/rx.sock" dump "$WORK/rx.img" >/dev/null || fail "dump failed"
"$CTL" verify "$WORK/rx.img" --spec "$SPEC" || fail "dumped image fails the oracle"
cmp "$WORK/rx.img" "$WORK/tx.img" || fail "committed image differs from the sender's final image"
k=$(verify_daemon "$WORK/rx.sock")
[ "$k" -gt 0 ] || fail "no writes replicated (k=$k)"
pages=$(stats "$WORK/rx.sock" pages_received)
say "ok: $EPOCHS epochs committed, k=$k, $pages pages received"
