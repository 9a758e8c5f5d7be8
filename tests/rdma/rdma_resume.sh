#!/usr/bin/env bash
# Failover resume after replication over rdma: the sender (an rdma peer)
# is killed with SIGKILL, the standby promotes, and the synthetic workload
# resumes on the committed image through the resume socket. The resumed
# workload must start from exactly the committed k (the one `ftreplctl
# verify` finds in the standby's image) and pass the oracle at resume and
# after more writes.
#   rdma_resume.sh shared    ftr-resume-client, shared mode, 2 data channels;
#                            with FTREPL_TEST_HOOKS the applier is slowed so
#                            pending pages are applied on demand
#   rdma_resume.sh anon      anonymous mode (UFFDIO_COPY), 3 data channels
#   rdma_resume.sh exec      --on-promote starts a Firecracker-handshake client
#                            with FTREPL_RESUME_SOCK / FTREPL_EPOCH
#   rdma_resume.sh synth     --resume-synth: the receiver resumes it itself
# Dirty tracking: scan (shared, exec) or workload (anon, synth); FTR_RDMA_DIRTY
# forces one (see rdma_env.sh about auto).
. "$(dirname "$0")/rdma_env.sh"

MODE=$1
SIZE=16M
WRITES=20000
CLIENT="$FTR_BIN/tests/integration/ftr-resume-client"
[ -x "$CLIENT" ] || fail "missing $CLIENT"
RX_OPTS=(--log-level debug --cache 32M --staging 24M --failover-timeout 3000 --heartbeat-ms 100)
CHANS=1
SLOW=
DIRTY=workload
case $MODE in
shared)
	CHANS=2
	DIRTY=scan
	RX_OPTS+=(--resume-sock "$WORK/resume.sock")
	if "$RX" --version | grep -q "test hooks"; then
		SLOW=1
		export FTREPL_TEST_APPLY_DELAY_MS=300
	fi ;;
anon)
	CHANS=3
	RX_OPTS+=(--resume-sock "$WORK/resume.sock") ;;
exec)
	DIRTY=scan
	RX_OPTS+=(--resume-sock "$WORK/resume.sock" --on-promote
		"echo \"\$FTREPL_EPOCH \$FTREPL_RESUME_SOCK\" >'$WORK/env.txt'; exec '$CLIENT' --sock \"\$FTREPL_RESUME_SOCK\" --mode firecracker --size $SIZE --writes $WRITES >'$WORK/client.log' 2>&1") ;;
synth)
	RX_OPTS+=(--resume-synth "$WRITES") ;;
*) fail "unknown mode $MODE (shared, anon, exec, synth)" ;;
esac

start_rx rx "${RX_OPTS[@]}"
unset FTREPL_TEST_APPLY_DELAY_MS
start_tx tx --log-level debug --workload "synth:size=$SIZE,seed=9,rate=5000" --epoch-ms 20 --channels "$CHANS" \
	--dirty "${FTR_RDMA_DIRTY:-$DIRTY}" --heartbeat-ms 100 --failover-timeout 10000
wait_until "$T_STATE" state_is "$WORK/rx.sock" protected ||
	fail "standby not protected: $(status "$WORK/rx.sock" state)"
check_transport "$WORK/tx.sock"
[ "$(status "$WORK/rx.sock" nchannels)" = "$CHANS" ] ||
	fail "standby has $(status "$WORK/rx.sock" nchannels) data channels, expected $CHANS"
# Let a few epochs commit over rdma.
first=$(status "$WORK/rx.sock" epoch_committed)
more_epochs() { [ "$(status "$WORK/rx.sock" epoch_committed)" -ge $((first + 10)) ]; }
wait_until "$T_STATE" more_epochs || fail "fewer than 10 epochs committed after $first"
if [ -n "$SLOW" ]; then
	pending_gt0() { [ "$(status "$WORK/rx.sock" pending_pages)" -gt 0 ]; }
	wait_until "$T_STATE" pending_gt0 || fail "slow applier: nothing pending in staging"
fi
acked=$(status "$WORK/tx.sock" epoch_acked)
kill -9 "$TX_PID"
wait "$TX_PID" 2>/dev/null || true
promoted() { state_is "$WORK/rx.sock" promoted || state_is "$WORK/rx.sock" resuming; }
wait_until "$T_STATE" promoted || fail "not promoted: $(status "$WORK/rx.sock" state)"
committed=$(status "$WORK/rx.sock" epoch_committed)
pending=$(status "$WORK/rx.sock" pending_pages)
[ "$committed" -ge "$acked" ] || fail "committed epoch $committed < acked $acked"
say "promoted at epoch $committed (acked $acked) after SIGKILL, $pending page(s) pending"

case $MODE in
shared|anon)
	AT=()
	[ "$MODE" = anon ] && AT=(--at 0x7e5500000000)
	timeout 300 "$CLIENT" --sock "$WORK/resume.sock" --mode "$MODE" "${AT[@]}" --size "$SIZE" \
		--writes "$WRITES" >"$WORK/client.log" 2>&1 || fail "resumed client failed: $(cat "$WORK/client.log")"
	epoch=$(sed -n 's/^epoch //p' "$WORK/client.log")
	[ "$epoch" = "$committed" ] || fail "client resumed epoch $epoch, committed $committed" ;;
exec)
	wait_until "$T_STATE" log_has rx "on-promote command exited" ||
		fail "the --on-promote command did not finish: $(cat "$WORK/client.log" 2>/dev/null)"
	log_has rx "on-promote command exited with 0" ||
		fail "the --on-promote command failed: $(cat "$WORK/client.log" 2>/dev/null)"
	read -r epoch sock <"$WORK/env.txt"
	[ "$epoch" = "$committed" ] || fail "FTREPL_EPOCH=$epoch, committed $committed"
	[ "$sock" = "$WORK/resume.sock" ] || fail "FTREPL_RESUME_SOCK=$sock"
	[ "$(status "$WORK/rx.sock" resume.firecracker_clients)" = 1 ] ||
		fail "the Firecracker handshake was not counted" ;;
synth)
	wait_until "$T_STATE" log_has rx "resume-synth: resumed at k=[0-9]+, now k=" ||
		fail "the receiver's resumed workload did not finish"
	line=$(grep -E "resume-synth: resumed at k=[0-9]+, now k=" "$WORK/rx.log")
	echo "$line" | grep -q "oracle ok" || fail "resume-synth: $line"
	k0=$(echo "$line" | sed -n 's/.*resumed at k=\([0-9]*\), now.*/\1/p')
	kend=$(echo "$line" | sed -n 's/.*now k=\([0-9]*\);.*/\1/p')
	{
		echo "resumed-k $k0"
		echo "final-k $kend"
		grep -E "resume-synth: resumed at k=[0-9]+; oracle ok" "$WORK/rx.log" |
			sed 's/.*oracle ok: /oracle ok at resume: /'
		echo "oracle ok after more writes: $line"
	} >"$WORK/client.log" ;;
esac
cat "$WORK/client.log"
grep -q "^oracle ok at resume" "$WORK/client.log" || fail "no oracle verdict at resume"
grep -q "^oracle ok after more writes" "$WORK/client.log" || fail "no oracle verdict after more writes"
k0=$(sed -n 's/^resumed-k //p' "$WORK/client.log")
kend=$(sed -n 's/^final-k //p' "$WORK/client.log")
[ "$kend" = $((k0 + WRITES)) ] || fail "resumed at k=$k0 and wrote $WRITES, but final k=$kend"
# The committed image is untouched by the resumed workload (shared mode maps
# it copy-on-write, the others have their own memory): the standby's own
# verdict must name the same k the workload resumed from.
k=$(verify_daemon "$WORK/rx.sock")
[ "$k" = "$k0" ] || fail "the standby's committed image has k=$k, the workload resumed at k=$k0"
state_is "$WORK/rx.sock" resuming || fail "receiver state $(status "$WORK/rx.sock" state), expected resuming"
served=$(($(status "$WORK/rx.sock" resume.pages_faulted) + $(status "$WORK/rx.sock" resume.pages_background)))
[ "$served" -gt 0 ] || fail "the resume server served no page"
on_demand=$(status "$WORK/rx.sock" resume.applied_on_demand)
at_start=$(status "$WORK/rx.sock" resume.pending_at_start)
if [ -n "$SLOW" ]; then
	[ "$at_start" -gt 0 ] || fail "slow applier: nothing was pending when the resume began"
	[ "$on_demand" -gt 0 ] || fail "slow applier: no pending page was applied for a fault"
fi
say "ok: $MODE resume over rdma: committed epoch $committed, k $k0 -> $kend," \
	"$(status "$WORK/rx.sock" resume.faults) faults, $at_start pending at start," \
	"$on_demand applied on demand, resume latency $(status "$WORK/rx.sock" resume.resume_latency_us) us"
stop_daemon "$RX_PID"
