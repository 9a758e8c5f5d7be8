#!/usr/bin/env bash
# Postcopy recovery: the migration goes through ftr-proxy, which is killed
# (every connection cut at once) and restarted N times during postcopy. The
# source reconnects each time; both sides exchange the missing-pages bitmap
# and go on. The migration must complete, with N recoveries on both sides,
# and the destination's image (which kept running its workload throughout)
# must pass the oracle.
#   cut.sh N
. "$(dirname "$0")/lib.sh"

CUTS=${1:-3}
DSTW=3000

start_dst dst --cache 96M --synth-writes $DSTW --synth-rate 500 --prefault-fwd 1 \
	--timeout-ms 3000 --recover-ms 20000

# The proxy's port stays the same across restarts. It is taken below the
# ephemeral range: an ephemeral port freed by the kill could be handed to
# another socket on this machine before the restart.
start_proxy() {
	rm -f "$WORK/proxy.port"
	"$PROXY" --listen "127.0.0.1:$PROXY_PORT" --to "127.0.0.1:$DST_PORT" \
		--port-file "$WORK/proxy.port" >>"$WORK/proxy.log" 2>&1 &
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	local end=$((SECONDS + 10))
	while [ ! -s "$WORK/proxy.port" ]; do
		child_running "$PROXY_PID" || return 1	# port taken: it exited
		[ $SECONDS -ge $end ] && return 1
		sleep 0.05
	done
}
for try in $(seq 1 50); do
	PROXY_PORT=$(( 20000 + (RANDOM % 10000) ))
	start_proxy && break
done
[ -s "$WORK/proxy.port" ] || fail "proxy did not start"

# The push paced to 8 MiB/s and the destination's faults (~500/s, with one
# page of window) pull ~4 MB/s more: 64 MiB take ~5 s, time for the cuts.
start_src src "127.0.0.1:$PROXY_PORT" --workload "synth:size=64M,seed=5,rate=0" \
	--pre-writes 20000 --mode postcopy --channels 2 --postcopy-bw 8M \
	--timeout-ms 3000 --recover-ms 20000
wait_until 20 grep -q '^phase postcopy' "$WORK/dst.log" || fail "destination never ran"
for i in $(seq 1 "$CUTS"); do
	sleep 0.6
	grep -q '^phase completed' "$WORK/dst.log" && fail "completed before cut $i: slow it down"
	kill_child "$PROXY_PID"
	wait "$PROXY_PID" 2>/dev/null || true
	say "cut $i"
	sleep 0.3
	start_proxy || fail "proxy did not come back on port $PROXY_PORT: $(tail -n1 "$WORK/proxy.log")"
	want=$((i + 1))
	postcopy_again() { [ "$(count_phase dst postcopy)" -ge "$want" ]; }
	wait_until 20 postcopy_again || fail "no recovery after cut $i"
done
wait_exit "$SRC_PID" 60; src_rc=$RC
wait_exit "$DST_PID" 60; dst_rc=$RC
[ "$src_rc" = 0 ] || fail "source exited $src_rc: $(grep '^error' "$WORK/src.log")"
[ "$dst_rc" = 0 ] || fail "destination exited $dst_rc: $(grep -E '^(error|oracle)' "$WORK/dst.log")"
[ "$(result src recoveries)" = "$CUTS" ] || fail "source recovered $(result src recoveries) times"
[ "$(result dst recoveries)" = "$CUTS" ] || fail "destination recovered $(result dst recoveries) times"
k_src=$(result src workload_writes)
k_dst=$(grep '^oracle ok' "$WORK/dst.log" | sed 's/.*k=//')
[ "$k_dst" = $((k_src + DSTW)) ] || fail "k $k_dst, expected $k_src + $DSTW"
say "completed through $CUTS cuts: $(result dst pages_received) pages received," \
	"$(result dst dup_pages) duplicates dropped, faults $(result dst faults)," \
	"oracle ok at k=$k_dst"
