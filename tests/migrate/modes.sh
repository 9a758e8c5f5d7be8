#!/usr/bin/env bash
# Live migration end to end, source and destination as separate processes
# on loopback:
#   modes.sh precopy   rounds converge, stop-and-copy, nothing left to pull
#   modes.sh postcopy  no round: the destination runs at once and faults
#   modes.sh hybrid    two rounds that cannot converge (precopy capped), then
#                      postcopy; 2 data channels, anonymous memory, a window
#   modes.sh exact     postcopy with nothing running on the destination: its
#                      image equals the source's final image byte for byte
# The destination continues the synthetic workload (except in "exact") and
# its image must pass the oracle at the source's k plus its own writes.
. "$(dirname "$0")/lib.sh"

MODE=$1
SIZE=64M
SPEC="synth:size=$SIZE,seed=21,rate=20000"
DSTW=20000
SRC_OPTS=(--workload "$SPEC" --pre-writes 30000)
DST_OPTS=(--cache 128M --synth-writes $DSTW)
case "$MODE" in
precopy) SRC_OPTS+=(--mode precopy --rounds 10) ;;
postcopy) SRC_OPTS+=(--mode postcopy)
	DST_OPTS+=(--prefault-fwd 4) ;;
hybrid) SRC_OPTS=(--workload "synth:size=$SIZE,seed=21,rate=0" --pre-writes 30000 --mode hybrid
		--rounds 2 --channels 2 --precopy-bw 200M)
	DST_OPTS+=(--mem anon --prefault-fwd 8 --prefault-bwd 2) ;;
exact) SRC_OPTS+=(--mode postcopy --dump "$WORK/src.img")
	DST_OPTS=(--cache 128M --dump "$WORK/dst.img") ;;
*) fail "unknown mode $MODE" ;;
esac

start_dst dst "${DST_OPTS[@]}"
FTREPL_LOG_LEVEL=info start_src src "127.0.0.1:$DST_PORT" "${SRC_OPTS[@]}"
wait_exit "$SRC_PID" 60; src_rc=$RC
wait_exit "$DST_PID" 60; dst_rc=$RC
[ "$src_rc" = 0 ] || fail "source exited $src_rc: $(grep '^error' "$WORK/src.log")"
[ "$dst_rc" = 0 ] || fail "destination exited $dst_rc: $(grep -E '^(error|oracle)' "$WORK/dst.log")"
[ "$(result src phase)" = completed ] || fail "source not completed"
[ "$(result dst phase)" = completed ] || fail "destination not completed"
grep -q '^oracle ok' "$WORK/dst.log" || fail "no oracle verdict"

k_src=$(result src workload_writes)
k_dst=$(grep '^oracle ok' "$WORK/dst.log" | sed 's/.*k=//')
rounds=$(result src round)
pulled=$(( $(result src pushed_pages) + $(result src requested_pages) ))
case "$MODE" in
precopy)
	[ "$pulled" = 0 ] || fail "precopy left $pulled pages for postcopy"
	[ "$rounds" -ge 1 ] || fail "no precopy round"
	[ "$k_dst" = $((k_src + DSTW)) ] || fail "k $k_dst, expected $k_src + $DSTW" ;;
postcopy)
	[ "$rounds" = 0 ] || fail "postcopy ran $rounds rounds"
	[ "$(result dst faults)" -gt 0 ] || fail "no fault on the destination"
	[ "$(result src fault_reqs)" -gt 0 ] || fail "no page request served"
	# a destination on this host: no link queue, so the push is not capped
	grep -q 'background pages unpaced: the destination is on this host' "$WORK/src.log" ||
		fail "the push was paced on loopback: $(grep 'postcopy:' "$WORK/src.log")"
	[ "$k_dst" = $((k_src + DSTW)) ] || fail "k $k_dst, expected $k_src + $DSTW" ;;
hybrid)
	[ "$rounds" = 2 ] || fail "hybrid ran $rounds rounds, expected 2"
	[ "$pulled" -gt 0 ] || fail "hybrid left nothing for postcopy"
	[ "$k_dst" = $((k_src + DSTW)) ] || fail "k $k_dst, expected $k_src + $DSTW" ;;
exact)
	cmp "$WORK/src.img" "$WORK/dst.img" || fail "the destination's image differs from the source's"
	[ "$k_dst" = "$k_src" ] || fail "k $k_dst, expected $k_src" ;;
esac
say "$MODE: k $k_src -> $k_dst, $rounds round(s), $pulled pages by postcopy," \
	"downtime $(result src downtime_us) us, total $(result src total_ms) ms," \
	"faults $(result dst faults) (median $(result dst fault_lat_median_us) us," \
	"p99 $(result dst fault_lat_p99_us) us)"
