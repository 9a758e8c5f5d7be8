#!/usr/bin/env bash
# Live migration over a slow link: a veth pair between two network
# namespaces, each end shaped with "tc qdisc ... tbf rate 100mbit"
# (12.5 MB/s), and a workload that dirties faster than that (~80 MB/s).
#   1. pure precopy cannot converge: the source gives up after its rounds
#      with an error naming the dirty rate and the bandwidth, and the
#      workload keeps running at the source;
#   2. hybrid (two rounds, then postcopy) completes; the image passes the
#      oracle on the destination, which kept writing meanwhile.
# The namespaces are created here and removed on any exit. Skipped (77)
# when not root or without ip/tc.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for network namespaces"; exit 77; }
command -v ip >/dev/null && command -v tc >/dev/null || { echo "SKIP: needs ip and tc"; exit 77; }

NA=ftrmig-a-$$
NB=ftrmig-b-$$
VA=fmva$$
VB=fmvb$$
# A /30 per run from the pid, so that parallel runs do not collide.
NET=$(( ($$ % 16000) * 4 ))
IPA=10.$((100 + NET / 65536)).$(( (NET / 256) % 256 )).$(( NET % 256 + 1 ))
IPB=10.$((100 + NET / 65536)).$(( (NET / 256) % 256 )).$(( NET % 256 + 2 ))

netns_cleanup() {
	ip netns del "$NA" 2>/dev/null || true
	ip netns del "$NB" 2>/dev/null || true
}
CLEANUP_HOOKS+=(netns_cleanup)

ip netns add "$NA" || { echo "SKIP: cannot create network namespaces"; exit 77; }
ip netns add "$NB"
ip link add "$VA" type veth peer name "$VB"
ip link set "$VA" netns "$NA"
ip link set "$VB" netns "$NB"
ip -n "$NA" addr add "$IPA/30" dev "$VA"
ip -n "$NB" addr add "$IPB/30" dev "$VB"
for ns in "$NA" "$NB"; do
	ip -n "$ns" link set lo up
done
ip -n "$NA" link set "$VA" up
ip -n "$NB" link set "$VB" up
tc -n "$NA" qdisc add dev "$VA" root tbf rate 100mbit burst 64kb latency 20ms ||
	{ echo "SKIP: tc tbf unavailable"; exit 77; }
tc -n "$NB" qdisc add dev "$VB" root tbf rate 100mbit burst 64kb latency 20ms
say "link $IPA ($NA) <-> $IPB ($NB), 100 mbit/s each way"

SPEC="synth:size=16M,seed=8,rate=20000"

# 1. precopy only: does not converge.
PREFIX="ip netns exec $NB" DST_LISTEN="$IPB:0" start_dst dst1 --cache 32M --timeout-ms 5000
PREFIX="ip netns exec $NA" start_src src1 "$IPB:$DST_PORT" --workload "$SPEC" --pre-writes 10000 \
	--mode precopy --rounds 4 --timeout-ms 5000
wait_exit "$SRC_PID" 90; rc=$RC
[ "$rc" = 1 ] || fail "precopy over 100 mbit/s exited $rc, expected a failure"
err=$(grep '^error:' "$WORK/src1.log")
for w in "did not converge" "dirties" "the link carries"; do
	echo "$err" | grep -q "$w" || fail "precopy error '$err' does not say '$w'"
done
say "precopy: ${err#error: }"
bw=$(result src1 bandwidth_bytes_per_s)
# Measured to delivery, so never above the link (below it under CPU load).
[ "$bw" -gt 0 ] && [ "$bw" -lt 14000000 ] || fail "measured bandwidth $bw B/s, the link carries 12.5 MB/s"
wait_exit "$DST_PID" 20; rc=$RC
[ "$rc" = 1 ] || fail "destination exited $rc after the source gave up"

# 2. hybrid: completes.
PREFIX="ip netns exec $NB" DST_LISTEN="$IPB:0" start_dst dst2 --cache 32M --synth-writes 5000 \
	--synth-rate 5000 --prefault-fwd 4 --timeout-ms 5000
FTREPL_LOG_LEVEL=info PREFIX="ip netns exec $NA" start_src src2 "$IPB:$DST_PORT" \
	--workload "$SPEC" --pre-writes 10000 --mode hybrid --rounds 2 --timeout-ms 5000
wait_exit "$SRC_PID" 90; src_rc=$RC
wait_exit "$DST_PID" 90; dst_rc=$RC
[ "$src_rc" = 0 ] || fail "hybrid: source exited $src_rc: $(grep '^error' "$WORK/src2.log")"
[ "$dst_rc" = 0 ] || fail "hybrid: destination exited $dst_rc: $(grep -E '^(error|oracle)' "$WORK/dst2.log")"
[ "$(result src2 round)" = 2 ] || fail "hybrid ran $(result src2 round) rounds"
# a destination across a link: the push is paced below it (never taken for local)
grep -q 'postcopy: background pages paced at' "$WORK/src2.log" ||
	fail "the push was not paced over the veth: $(grep 'postcopy:' "$WORK/src2.log")"
k_src=$(result src2 workload_writes)
k_dst=$(grep '^oracle ok' "$WORK/dst2.log" | sed 's/.*k=//')
[ "$k_dst" = $((k_src + 5000)) ] || fail "k $k_dst, expected $k_src + 5000"
say "hybrid: completed in $(result src2 total_ms) ms, downtime $(result src2 downtime_us) us," \
	"$(( $(result src2 pushed_pages) + $(result src2 requested_pages) )) pages by postcopy," \
	"faults $(result dst2 faults) (median $(result dst2 fault_lat_median_us) us," \
	"p99 $(result dst2 fault_lat_p99_us) us)"
