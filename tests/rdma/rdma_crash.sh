#!/usr/bin/env bash
# Replication over rdma through the programs (ftrepl-receiver --rdma,
# ftrepl-sender --rdma --connect), the sender killed with SIGKILL at a
# random moment once the standby is protected. The standby must promote;
# `ftreplctl verify` must pass the oracle on its committed image, whose
# epoch must be no older than the last one the sender was seen to have
# acked. Trial t uses 1 + (t-1) % 3 data channels, snapshot strategy
# stop-copy, copy-out, cow in turn, and dirty tracking auto (wp-sync on the
# VM's 6.1 kernel), scan, wp-sync in turn (so trial 3 is cow sharing the
# wp-sync tracker's uffd); FTR_RDMA_DIRTY=MODE forces one.
#   rdma_crash.sh TRIALS   (FTR_SEED reproduces the kill moments and rates)
. "$(dirname "$0")/rdma_env.sh"

TRIALS=${1:-3}
SEED=${FTR_SEED:-$RANDOM}
RANDOM=$SEED
say "$TRIALS trials, seed $SEED (FTR_SEED=$SEED reproduces)"
snaps=(stop-copy copy-out cow)
dirties=(auto scan wp-sync)

for t in $(seq 1 "$TRIALS"); do
	rm -f "$WORK"/rx.sock "$WORK"/tx.sock
	chans=$(((t - 1) % 3 + 1))
	snap=${snaps[$(((t - 1) % 3))]}
	dirty=${FTR_RDMA_DIRTY:-${dirties[$(((t - 1) % 3))]}}
	rate=$(((RANDOM % 3) * 10000)) # 0 = as fast as possible
	start_rx rx --log-level debug --cache 32M --staging 8M --failover-timeout 3000 --heartbeat-ms 100
	start_tx tx --log-level debug --workload "synth:size=16M,seed=$t,rate=$rate" --epoch-ms 20 \
		--channels "$chans" --snapshot "$snap" --dirty "$dirty" --heartbeat-ms 100 \
		--failover-timeout 10000
	wait_until "$T_STATE" state_is "$WORK/rx.sock" protected ||
		fail "trial $t: standby not protected: $(status "$WORK/rx.sock" state)"
	check_transport "$WORK/tx.sock"
	[ "$(status "$WORK/tx.sock" nchannels)" = "$chans" ] ||
		fail "trial $t: sender has $(status "$WORK/tx.sock" nchannels) data channels, asked $chans"
	[ "$(status "$WORK/rx.sock" nchannels)" = "$chans" ] ||
		fail "trial $t: standby has $(status "$WORK/rx.sock" nchannels) data channels, sender $chans"
	# Kill between 0.2 and 2 s after protection, watching acks meanwhile.
	delay_ms=$((RANDOM % 1800 + 200))
	end=$(($(ms_now) + delay_ms))
	acked=none
	while [ "$(ms_now)" -lt "$end" ]; do
		a=$(status "$WORK/tx.sock" epoch_acked 2>/dev/null || true)
		[ -n "$a" ] && [ "$a" != null ] && acked=$a
	done
	kill -9 "$TX_PID"
	wait "$TX_PID" 2>/dev/null || true
	[ "$acked" != none ] || fail "trial $t: the sender never showed an acked epoch while protected"
	wait_until "$T_STATE" state_is "$WORK/rx.sock" promoted ||
		fail "trial $t: standby state $(status "$WORK/rx.sock" state) after the sender died"
	committed=$(status "$WORK/rx.sock" epoch_committed)
	reason=$(status "$WORK/rx.sock" promote_reason)
	[ "$committed" -ge "$acked" ] || fail "trial $t: committed epoch $committed < acked epoch $acked"
	k=$(verify_daemon "$WORK/rx.sock")
	[ "$k" -gt 0 ] || fail "trial $t: the committed image has k=$k: nothing replicated"
	say "trial $t: $chans ch, $snap, dirty $dirty, rate $rate, killed ${delay_ms} ms after protection:" \
		"acked $acked, committed $committed, k=$k, oracle ok (promoted: $reason)"
	stop_daemon "$RX_PID"
done
say "ok: $TRIALS SIGKILLs of an rdma sender, every committed image passed the oracle"
