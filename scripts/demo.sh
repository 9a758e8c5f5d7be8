#!/usr/bin/env bash
# The main job, end to end on one machine: a primary replicating a
# synthetic workload to a standby over loopback; the primary killed with
# SIGKILL mid-run; the standby promoted, the workload resumed on the
# committed image at once (its memory served by userfaultfd while the last
# epochs are still being applied), and the image verified by the oracle.
#   scripts/demo.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_S=${1:-5}
scripts/install-deps.sh
scripts/build.sh
B=build/src
W=$(mktemp -d /tmp/ftrepl-demo.XXXXXX)
SPEC=synth:size=256M,seed=42,rate=100000
RESUME_WRITES=500000
RXP= TXP=
trap 'kill -9 $RXP $TXP 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT

q() { "$B/ftreplctl" --control "$1" "${@:2}" --json; }

echo "== standby: ftrepl-receiver --listen 127.0.0.1:0 --cache 512M --resume-synth $RESUME_WRITES"
"$B/ftrepl-receiver" --listen 127.0.0.1:0 --cache 512M --control "$W/rx.sock" \
	--failover-timeout 1000 --resume-synth "$RESUME_WRITES" >"$W/rx.log" 2>&1 &
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
for _ in $(seq 500); do
	st=$(q "$W/rx.sock" status | jq -r .state)
	{ [ "$st" = promoted ] || [ "$st" = resuming ]; } && break
	sleep 0.02
done
t1=$(date +%s%3N)
echo "== standby promoted; the workload resumes on the committed image"
for _ in $(seq 600); do
	s=$(q "$W/rx.sock" status | jq -r '.resume.synth.state // ""')
	{ [ "$s" = done ] || [ "$s" = failed ]; } && break
	sleep 0.05
done
q "$W/rx.sock" status >"$W/rx.json"

printf '\n---------------- summary ----------------\n'
printf 'workload          %s\n' "$SPEC"
if [ -s "$W/tx.json" ]; then
	jq -r '"replication       \(.epoch) epochs cut, \(.pages_sent) pages + \(.zero_pages_sent) fill pages sent over \(.transport)",
	       "epoch pause       mean \(.pause_mean_us) us, p99 \(.pause_p99_us) us",
	       "ack latency       mean \(.ack_mean_us) us, p99 \(.ack_p99_us) us"' "$W/tx.json"
fi
printf 'primary killed    SIGKILL; last epoch it saw acked: %s\n' "$acked"
jq -r '"standby           \(.state) (\(.promote_reason)); committed epoch \(.epoch_committed)"' "$W/rx.json"
printf 'promotion         %s ms after the kill (failover timeout 1000 ms)\n' $((t1 - t0))
jq -r '.resume as $r |
       "resume            workload running \($r.resume_latency_us // "?") us after promotion; \($r.pending_at_start) page(s) were still pending in staging (\($r.applied_on_demand) applied on demand)",
       "faults            \($r.faults) served, median \($r.fault_lat_median_us) us, p99 \($r.fault_lat_p99_us) us; \($r.pages_resident)/\($r.pages_total) pages resident",
       "oracle at resume  k=\($r.synth.k_resumed): \($r.synth.msg_at_resume)",
       "resumed workload  \($r.synth.k - $r.synth.k_resumed) more writes, k=\($r.synth.k): \($r.synth.msg)"' "$W/rx.json"
printf -- '-----------------------------------------\n'
committed=$(jq -r .epoch_committed "$W/rx.json")
ok=$(jq -r '.resume.synth.oracle_ok' "$W/rx.json")
if [ "$ok" != true ]; then echo "DEMO FAILED: the resumed image does not pass the oracle"; tail -5 "$W/rx.log"; exit 1; fi
if [ "$acked" != null ] && [ "$committed" -lt "$acked" ]; then
	echo "DEMO FAILED: committed epoch $committed is older than acked epoch $acked"; exit 1
fi
echo "demo ok: the standby resumed exactly epoch $committed and the workload runs on"
