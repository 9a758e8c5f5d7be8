#!/usr/bin/env bash
# The main job, end to end on one machine: a primary replicating a
# synthetic workload to a standby over loopback, the primary killed with
# SIGKILL mid-run, the standby promoted, its committed image verified.
#   scripts/demo.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_S=${1:-5}
scripts/install-deps.sh
scripts/build.sh
B=build/src
W=$(mktemp -d /tmp/ftrepl-demo.XXXXXX)
SPEC=synth:size=256M,seed=42,rate=100000
trap 'kill -9 $RXP $TXP 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT

q() { "$B/ftreplctl" --control "$1" "${@:2}" --json; }

echo "== standby: ftrepl-receiver --listen 127.0.0.1:0 --cache 512M"
"$B/ftrepl-receiver" --listen 127.0.0.1:0 --cache 512M --control "$W/rx.sock" \
	--failover-timeout 1000 >"$W/rx.log" 2>&1 &
RXP=$!
for _ in $(seq 100); do q "$W/rx.sock" status >/dev/null 2>&1 && break; sleep 0.05; done
PORT=$(q "$W/rx.sock" status | jq -r .listen_port)

echo "== primary: ftrepl-sender --tcp 127.0.0.1:$PORT --workload $SPEC --epoch-ms 20"
"$B/ftrepl-sender" --tcp "127.0.0.1:$PORT" --workload "$SPEC" --epoch-ms 20 \
	--control "$W/tx.sock" >"$W/tx.log" 2>&1 &
TXP=$!
end=$((SECONDS + RUN_S))
acked=null
while [ $SECONDS -lt $end ]; do
	a=$(q "$W/tx.sock" stats 2>/dev/null | jq -r .epoch_acked 2>/dev/null || echo null)
	[ "$a" != null ] && [ -n "$a" ] && acked=$a
	sleep 0.1
done
q "$W/tx.sock" stats >"$W/tx.json" 2>/dev/null || true
[ -s "$W/tx.json" ] && acked=$(jq -r .epoch_acked "$W/tx.json")

echo "== kill -9 the primary after ${RUN_S}s (last epoch it saw acked: $acked)"
t0=$(date +%s%3N)
kill -9 $TXP
wait $TXP 2>/dev/null || true
for _ in $(seq 200); do
	[ "$(q "$W/rx.sock" status | jq -r .state)" = promoted ] && break
	sleep 0.02
done
t1=$(date +%s%3N)
q "$W/rx.sock" status >"$W/rx.json"
q "$W/rx.sock" stats >"$W/rxs.json"
"$B/ftreplctl" --control "$W/rx.sock" dump "$W/standby.img" >/dev/null
echo "== verify the standby's committed image against the workload's oracle"
"$B/ftreplctl" verify "$W/standby.img" --spec "$SPEC" --json >"$W/verify.json" || true

ok=$(jq -r .ok "$W/verify.json")
printf '\n---------------- summary ----------------\n'
printf 'workload          %s\n' "$SPEC"
if [ -s "$W/tx.json" ]; then
	jq -r '"replication       \(.epoch) epochs cut, \(.pages_sent) pages + \(.zero_pages_sent) fill pages sent over \(.transport)",
	       "epoch pause       mean \(.pause_mean_us) us, p99 \(.pause_p99_us) us",
	       "ack latency       mean \(.ack_mean_us) us, p99 \(.ack_p99_us) us"' "$W/tx.json"
fi
printf 'primary killed    SIGKILL; last epoch it saw acked: %s\n' "$acked"
jq -r '"standby           state \(.state) (\(.promote_reason)); committed epoch \(.epoch_committed)"' "$W/rx.json"
printf 'promotion         %s ms after the kill (failover timeout 1000 ms)\n' $((t1 - t0))
jq -r '"oracle            \(.msg)"' "$W/verify.json"
printf -- '-----------------------------------------\n'
committed=$(jq -r .epoch_committed "$W/rx.json")
if [ "$ok" != true ]; then echo "DEMO FAILED: the committed image does not pass the oracle"; exit 1; fi
if [ "$acked" != null ] && [ "$committed" -lt "$acked" ]; then
	echo "DEMO FAILED: committed epoch $committed is older than acked epoch $acked"; exit 1
fi
echo "demo ok: the standby holds exactly epoch $committed, byte for byte"
