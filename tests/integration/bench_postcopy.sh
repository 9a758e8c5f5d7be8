#!/usr/bin/env bash
# ftbench --postcopy end to end at a small size on loopback: both migration
# modes complete and pass the oracle, and the baselines the targets are
# checked against are there (the transfer floor, the link measured around
# every run). Catches a bench that crashes, hangs or reports nothing.
. "$(dirname "$0")/lib.sh"

BENCH="$FTR_BIN/bench/ftbench"
[ -x "$BENCH" ] || { echo "SKIP: ftbench not built (FTREPL_BUILD_BENCH=OFF)"; exit 77; }
[ -n "$HAVE_JQ" ] || { echo "SKIP: jq is not installed"; exit 77; }

"$BENCH" --postcopy --size 16M --link-rate none --modes postcopy,hybrid --runs 1 --no-iperf \
	--json >"$WORK/bench.json" 2>"$WORK/bench.log" || fail "ftbench --postcopy failed: $(tail -3 "$WORK/bench.log")"
J="$WORK/bench.json"
# two groups (low, high) x two variants, one sample each, all completed and verified
[ "$(jq '[.cases[].samples[]] | length' "$J")" = 4 ] || fail "expected 4 samples: $(jq -c '.cases' "$J" | head -c 300)"
[ "$(jq '[.cases[].samples[] | select(.completed == 1 and .verified == 1)] | length' "$J")" = 4 ] ||
	fail "a migration did not complete or failed the oracle"
# the floor: a positive time, and the region moved no faster than memory
floor=$(jq '.baselines.links[0].floor_s // 0' "$J")
jq -e --argjson f "$floor" -n '$f > 0 and $f < 60' >/dev/null || fail "transfer floor $floor s"
# the same beside a busy CPU: measured, and a positive time
busy=$(jq '.baselines.links[0].floor_busy_cpu_s // 0' "$J")
jq -e --argjson f "$busy" -n '$f > 0 and $f < 60' >/dev/null || fail "floor beside a busy CPU $busy s"
# the destination's view: every page in place, and its peak memory at least the image
jq -e '[.cases[].samples[] | select(.dst_in_place_s >= 0 and .dst_peak_rss_mb >= 16)] | length == 4' \
	"$J" >/dev/null || fail "dst_in_place_s / dst_peak_rss_mb missing: $(jq -c '[.cases[].samples[] | {dst_in_place_s, dst_peak_rss_mb}]' "$J")"
# every run bracketed by the link, and its ratio consistent with it
jq -e '[.cases[].samples[] | select(.run_link_gbit_s > 0 and
	((.total_over_run_size_bw - .total_s / (16777216 / (.run_link_gbit_s * 1e9 / 8))) | fabs) < 1e-6)]
	| length == 4' "$J" >/dev/null || fail "run_link_gbit_s / total_over_run_size_bw missing or inconsistent"
# the targets were evaluated (downtime for every case at least)
[ "$(jq '[.summary.checks[] | select(.check == "downtime under 50 ms")] | length' "$J")" = 4 ] ||
	fail "the downtime target was not checked for every case"
grep -q "transfer floor" "$WORK/bench.log" || fail "the table does not print the transfer floor"
echo "ok: floor ${floor}s, beside a busy CPU ${busy}s"
