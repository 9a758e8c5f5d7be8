#!/usr/bin/env bash
# Failover resume: the sender is killed, the standby promoted, and a
# workload resumes on the committed image through the resume socket in
# MODE (shared, anon, firecracker). The resumed image must pass the oracle
# at the committed k and again after more writes.
#   resume.sh MODE [slow|retry]
# With "slow" (a receiver built with FTREPL_TEST_HOOKS) the applier is
# delayed, so pending pages are still in staging when the workload faults
# them: it must read the committed content, never the cache's older one.
# With "retry" a first client is killed mid-way through its writes; a second
# one must resume from exactly the same committed image.
. "$(dirname "$0")/lib.sh"

MODE=$1
SLOW=${2:-}
SIZE=32M
RETRY=
[ "$SLOW" = retry ] && { RETRY=1; SLOW=; }
if [ -n "$SLOW" ]; then
	"$RX" --version | grep -q "test hooks" || { echo "SKIP: receiver built without FTREPL_TEST_HOOKS"; exit 77; }
	export FTREPL_TEST_APPLY_DELAY_MS=400
fi
start_rx rx --cache 64M --staging 48M --resume-sock "$WORK/resume.sock" --failover-timeout 600 \
	--heartbeat-ms 50
unset FTREPL_TEST_APPLY_DELAY_MS
start_tx tx --workload "synth:size=$SIZE,seed=9,rate=100000" --epoch-ms 20 --heartbeat-ms 50
wait_until 10 state_is "$WORK/rx.sock" protected || fail "not protected"
sleep 1
if [ -n "$SLOW" ]; then
	pending_gt0() { [ "$(status "$WORK/rx.sock" pending_pages)" -gt 0 ]; }
	wait_until 10 pending_gt0 || fail "slow applier: nothing pending in staging"
fi
acked=$(status "$WORK/tx.sock" epoch_acked)
kill -9 "$TX_PID"
wait "$TX_PID" 2>/dev/null || true
wait_until 10 state_is "$WORK/rx.sock" promoted || fail "not promoted: $(status "$WORK/rx.sock" state)"
committed=$(status "$WORK/rx.sock" epoch_committed)
pending=$(status "$WORK/rx.sock" pending_pages)
[ "$committed" -ge "$acked" ] || fail "committed epoch $committed < acked $acked"
say "promoted at epoch $committed (acked $acked), $pending page(s) pending in staging"

CLIENT="$FTR_BIN/tests/integration/ftr-resume-client"
if [ -n "$RETRY" ]; then
	"$CLIENT" --sock "$WORK/resume.sock" --mode "$MODE" --size "$SIZE" --writes 100000000000 \
		>"$WORK/client1.log" 2>&1 &
	c1=$!
	PIDS+=("$c1")
	wait_until 10 grep -q "^oracle ok at resume" "$WORK/client1.log" || fail "first client did not resume: $(cat "$WORK/client1.log")"
	sleep 0.3
	kill -9 "$c1"
	wait "$c1" 2>/dev/null || true
	k1=$(awk '/^resumed-k/ {print $2}' "$WORK/client1.log")
	say "first client killed mid-way (it resumed at k=$k1 and kept writing)"
fi
AT=()
# Anonymous mode maps the region back at a fixed ("original") address.
[ "$MODE" = anon ] && AT=(--at 0x7e5500000000)
"$CLIENT" --sock "$WORK/resume.sock" --mode "$MODE" "${AT[@]}" \
	--size "$SIZE" --writes 20000 >"$WORK/client.log" 2>&1 || fail "resumed client failed: $(cat "$WORK/client.log")"
if [ -n "$RETRY" ]; then
	k2=$(awk '/^resumed-k/ {print $2}' "$WORK/client.log")
	[ "$k2" = "$k1" ] || fail "second client resumed at k=$k2, the first at k=$k1: the image changed"
fi
cat "$WORK/client.log"
grep -q "^oracle ok at resume" "$WORK/client.log" || fail "no oracle check at resume"
grep -q "^oracle ok after more writes" "$WORK/client.log" || fail "no oracle check after writes"

state_is "$WORK/rx.sock" resuming || fail "receiver state $(status "$WORK/rx.sock" state), expected resuming"
faults=$(status "$WORK/rx.sock" resume.faults)
clients=$(status "$WORK/rx.sock" resume.clients)
served=$(( $(status "$WORK/rx.sock" resume.pages_faulted) + $(status "$WORK/rx.sock" resume.pages_background) ))
# (In shared mode the background fill can make every page resident before
# the workload touches one: zero faults is then right.)
[ "$clients" -ge 1 ] && [ "$served" -gt 0 ] || fail "nothing served (clients $clients, faults $faults, pages $served)"
if [ "$MODE" = firecracker ]; then
	[ "$(status "$WORK/rx.sock" resume.firecracker_clients)" = 1 ] || fail "Firecracker handshake not counted"
fi
at_start=$(status "$WORK/rx.sock" resume.pending_at_start)
on_demand=$(status "$WORK/rx.sock" resume.applied_on_demand)
if [ -n "$SLOW" ]; then
	[ "$at_start" -gt 0 ] || fail "slow applier: nothing was pending when the resume began"
	[ "$on_demand" -gt 0 ] || fail "slow applier: no pending page was applied for a fault"
fi
say "ok: $MODE resume: $faults faults, $at_start pending at start, $on_demand applied on demand, latency $(status "$WORK/rx.sock" resume.resume_latency_us) us"
