#!/usr/bin/env bash
# Live migration over rdma through the programs: ftrepl-sender --migrate
# --rdma DEV --connect to ftrepl-receiver --migrate-in --rdma DEV. The
# destination continues the synthetic workload (--resume-synth) from the
# source's last write; `ftreplctl verify` must pass the oracle on its image
# at exactly that k plus its own writes.
#   rdma_migrate.sh precopy  [CHANNELS]  --no-postcopy: rounds converge, nothing
#                                        is left for postcopy, no page request
#   rdma_migrate.sh postcopy [CHANNELS]  --precopy-rounds 0: every page is left
#                                        for postcopy, the destination faults
#   rdma_migrate.sh hybrid   [CHANNELS]  --precopy-rounds 2 with a workload that
#                                        cannot converge (--downtime-ms 1): two
#                                        rounds, then postcopy for the rest
. "$(dirname "$0")/rdma_env.sh"

MODE=$1
CHANS=${2:-1}
SIZE=16M
WRITES=20000
case $MODE in
precopy) SRC_ARGS=(--no-postcopy) RATE=2000 ;;
postcopy) SRC_ARGS=(--precopy-rounds 0) RATE=2000 ;;
hybrid) SRC_ARGS=(--precopy-rounds 2 --downtime-ms 1) RATE=0 ;;
*) fail "unknown mode $MODE (precopy, postcopy, hybrid)" ;;
esac

"$RX" --log-level debug --listen "$FTR_ADDR:0" ${FTR_RDMA:+--rdma "$FTR_RDMA"} --cache 32M --migrate-in \
	--resume-synth "$WRITES" --prefault-forward 4 --prefault-backward 1 \
	--control "$WORK/dst.sock" >"$WORK/dst.log" 2>&1 &
DST_PID=$!
wait_until "$T_STATE" log_has dst "waiting for a migration on port [0-9]+" ||
	fail "the destination did not start listening"
PORT=$(sed -n 's/.*waiting for a migration on port \([0-9]*\).*/\1/p' "$WORK/dst.log")
RX_PORT=$PORT
tx_target
say "destination on $FTR_ADDR:$PORT; $MODE migration of synth:size=$SIZE,rate=$RATE over" \
	"$EXPECT_TRANSPORT, $CHANS data channel(s)"
timeout 300 "$TX" --log-level debug "${TX_TARGET[@]}" --migrate "${SRC_ARGS[@]}" --channels "$CHANS" \
	--workload "synth:size=$SIZE,seed=8,rate=$RATE" --control "$WORK/src.sock" \
	>"$WORK/src.log" 2>&1 || fail "ftrepl-sender --migrate exited with $?"
done_line=$(grep "migration completed in" "$WORK/src.log") || fail "no completion message"
rounds=$(echo "$done_line" | sed -n 's/.* \([0-9]*\) precopy round(s).*/\1/p')
reqs=$(echo "$done_line" | sed -n 's/.* \([0-9]*\) page requests served.*/\1/p')
left=$(sed -n 's/.*switched after [0-9]* precopy round(s): .*, \([0-9]*\) pages left for postcopy.*/\1/p' \
	"$WORK/src.log")
[ -n "$rounds" ] && [ -n "$reqs" ] && [ -n "$left" ] || fail "cannot read the source's summary"
grep -q "over $EXPECT_TRANSPORT" "$WORK/src.log" || fail "the source did not migrate over $EXPECT_TRANSPORT"

done_ok() { [ "$(status "$WORK/dst.sock" phase)" = completed ]; }
wait_until "$T_STATE" done_ok || fail "destination phase $(status "$WORK/dst.sock" phase)"
check_transport "$WORK/dst.sock"
[ "$(status "$WORK/dst.sock" nchannels)" = "$CHANS" ] ||
	fail "destination has $(status "$WORK/dst.sock" nchannels) data channels, expected $CHANS"
# The destination's workload continues from the source's last write k0.
k0=$(sed -n 's/.*resume-synth: continuing from write \([0-9]*\).*/\1/p' "$WORK/dst.log")
[ -n "$k0" ] || fail "the destination did not resume the workload"
want=$((k0 + WRITES))
wrote() { [ "$(status "$WORK/dst.sock" workload_writes)" = "$want" ]; }
wait_until "$T_STATE" wrote || fail "destination at k=$(status "$WORK/dst.sock" workload_writes), expected $want"
k=$(verify_daemon "$WORK/dst.sock")
[ "$k" = "$want" ] || fail "the destination's image has k=$k, expected $k0 + $WRITES"
faults=$(status "$WORK/dst.sock" faults)
total=$(status "$WORK/dst.sock" pages_total)
case $MODE in
precopy)
	[ "$rounds" -ge 1 ] || fail "precopy ran no round"
	[ "$left" = 0 ] || fail "precopy left $left pages for postcopy"
	[ "$reqs" = 0 ] || fail "precopy served $reqs page requests" ;;
postcopy)
	[ "$rounds" = 0 ] || fail "postcopy ran $rounds precopy rounds"
	[ "$left" = "$total" ] || fail "postcopy left $left of $total pages for postcopy"
	[ "$faults" -gt 0 ] || fail "no fault on the destination" ;;
hybrid)
	[ "$rounds" = 2 ] || fail "hybrid ran $rounds precopy rounds, expected 2"
	[ "$left" -gt 0 ] || fail "hybrid left nothing for postcopy" ;;
esac
say "ok: $MODE over $EXPECT_TRANSPORT with $CHANS channel(s): $rounds round(s), $left pages left" \
	"for postcopy, $reqs page requests, $faults faults; destination k $k0 -> $k, oracle ok;" \
	"$(echo "$done_line" | sed 's/.*completed in/completed in/')"
stop_daemon "$DST_PID"
