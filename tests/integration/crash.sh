#!/usr/bin/env bash
# Kill the sender with SIGKILL at random moments. After promotion the
# committed image must pass the oracle and its epoch must be at least the
# last epoch the sender was seen to have acked.
#   crash.sh TRIALS      (FTR_SNAPSHOT=cow|... forces the snapshot strategy,
#                         FTR_DIRTY=wp-sync|... the dirty tracking)
. "$(dirname "$0")/lib.sh"

TRIALS=${1:-10}
SEED=${FTR_SEED:-$RANDOM}
RANDOM=$SEED
say "$TRIALS trials, seed $SEED (FTR_SEED=$SEED reproduces)"
promoted=0 presync=0

for t in $(seq 1 "$TRIALS"); do
	rm -f "$WORK"/rx.sock "$WORK"/tx.sock
	start_rx rx --cache 64M --staging 8M --failover-timeout 800 --heartbeat-ms 50
	rate=$(( (RANDOM % 3) * 30000 ))      # 0 = as fast as possible
	chans=$(( RANDOM % 3 + 1 ))
	snap=$(echo stop-copy copy-out cow | cut -d' ' -f$((RANDOM % 3 + 1)))
	snap=${FTR_SNAPSHOT:-$snap}
	mode=$(echo write writev uring zerocopy uring-zc | cut -d' ' -f$((RANDOM % 5 + 1)))
	start_tx tx --workload "synth:size=24M,seed=$t,rate=$rate" --epoch-ms $((RANDOM % 30 + 5)) \
		--channels "$chans" --snapshot "$snap" --tcp-mode "$mode" --heartbeat-ms 50 \
		--failover-timeout 2000 ${FTR_DIRTY:+--dirty "$FTR_DIRTY"}
	# kill somewhere between 50 ms and 1.5 s, watching acks meanwhile
	delay_ms=$((RANDOM % 1450 + 50))
	end=$(( $(date +%s%3N) + delay_ms ))
	acked=none
	while [ "$(date +%s%3N)" -lt "$end" ]; do
		a=$("$CTL" --control "$WORK/tx.sock" status --json 2>/dev/null | jq -r .epoch_acked 2>/dev/null || true)
		[ -n "$a" ] && [ "$a" != null ] && acked=$a
	done
	kill -9 "$TX_PID"
	wait "$TX_PID" 2>/dev/null || true
	if ! wait_until 10 state_is "$WORK/rx.sock" promoted; then
		st=$(status "$WORK/rx.sock" state)
		if [ "$acked" = none ] && { [ "$st" = connecting ] || [ "$st" = syncing ]; }; then
			say "trial $t: killed during the initial sync (${delay_ms} ms): nothing committed, standby waits ($st)"
			presync=$((presync + 1))
			kill "$RX_PID"; wait "$RX_PID" 2>/dev/null || true
			continue
		fi
		fail "trial $t: receiver state $st after the sender died (acked $acked)"
	fi
	committed=$(status "$WORK/rx.sock" epoch_committed)
	k=$(verify_daemon "$WORK/rx.sock")
	if [ "$acked" != none ] && [ "$committed" -lt "$acked" ]; then
		fail "trial $t: committed epoch $committed < acked epoch $acked"
	fi
	say "trial $t: killed at ${delay_ms} ms ($mode, $snap${FTR_DIRTY:+/$FTR_DIRTY}, $chans ch, rate $rate): acked $acked, committed $committed, k=$k: oracle ok"
	promoted=$((promoted + 1))
	kill "$RX_PID"; wait "$RX_PID" 2>/dev/null || true
done
say "crash matrix: $TRIALS trials: $promoted promoted and verified, $presync killed before the first commit"
