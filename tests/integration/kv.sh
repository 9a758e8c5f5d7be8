#!/usr/bin/env bash
# Output commit under crashes: the kvserver example, attached to a sender,
# serves SETs from kvload; at a random moment the sender and the kvserver
# are SIGKILLed together (a primary host crash). The standby promotes and
# its committed image must hold every SET whose reply kvload received: a
# reply leaves the kvserver only after the epoch holding its SET was acked.
# If the crash comes before the first commit, no reply may have been seen.
#   kv.sh TRIALS
. "$(dirname "$0")/lib.sh"

KVS="$FTR_BIN/examples/kvserver"
KVL="$FTR_BIN/examples/kvload"
[ -x "$KVS" ] && [ -x "$KVL" ] || { echo "SKIP: examples not built (FTREPL_BUILD_EXAMPLES=OFF)"; exit 77; }

TRIALS=${1:-5}
SEED=${FTR_SEED:-$RANDOM}
RANDOM=$SEED
say "$TRIALS trials, seed $SEED (FTR_SEED=$SEED reproduces)"
total=0 promoted=0 presync=0

for t in $(seq 1 "$TRIALS"); do
	rm -f "$WORK"/rx.sock "$WORK"/tx.sock "$WORK"/attach.sock "$WORK"/kv.port "$WORK"/acked
	start_rx rx --cache 64M --staging 32M --failover-timeout 800 --heartbeat-ms 50
	tracking=$(echo wp-async scan auto | cut -d' ' -f$((RANDOM % 3 + 1)))
	snap=$([ $((RANDOM % 2)) -eq 0 ] && echo stop-copy || echo copy-out)
	epoch_ms=$((RANDOM % 30 + 5))
	sync=$([ $((RANDOM % 2)) -eq 0 ] && echo --sync-on-reply || true)
	start_tx tx --attach-sock "$WORK/attach.sock" --epoch-ms "$epoch_ms" --snapshot "$snap" \
		--heartbeat-ms 50 --failover-timeout 2000
	wait_until 10 test -S "$WORK/attach.sock" || fail "trial $t: sender does not listen"
	"$KVS" --attach "$WORK/attach.sock" --port-file "$WORK/kv.port" --slots 262144 \
		--tracking "$tracking" $sync >"$WORK/kvserver.log" 2>&1 &
	KV_PID=$!
	PIDS+=("$KV_PID")
	wait_until 10 test -s "$WORK/kv.port" || fail "trial $t: kvserver did not start"
	"$KVL" --connect "127.0.0.1:$(cat "$WORK/kv.port")" --keys "$WORK/acked" \
		--conns $((RANDOM % 4 + 1)) --window $((RANDOM % 16 + 1)) --duration 60 \
		>"$WORK/kvload.log" 2>&1 &
	KVL_PID=$!
	PIDS+=("$KVL_PID")
	wait_until 10 grep -q connections "$WORK/kvload.log" ||
		fail "trial $t: kvload did not connect: $(cat "$WORK/kvload.log")"
	# the crash: 50 ms .. 1.5 s into the load
	delay_ms=$((RANDOM % 1450 + 50))
	sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
	kill -9 "$TX_PID" "$KV_PID"
	wait "$TX_PID" 2>/dev/null || true
	wait "$KV_PID" 2>/dev/null || true
	wait "$KVL_PID" || fail "trial $t: kvload saw a bad reply: $(cat "$WORK/kvload.log")"
	acked=$(wc -l <"$WORK/acked")
	desc="$tracking, $snap, epoch ${epoch_ms} ms${sync:+, sync-on-reply}, killed at ${delay_ms} ms"
	if ! wait_until 10 state_is "$WORK/rx.sock" promoted; then
		st=$(status "$WORK/rx.sock" state)
		if [ "$st" = connecting ] || [ "$st" = syncing ]; then
			[ "$acked" -eq 0 ] || fail "trial $t ($desc): $acked SETs acknowledged but nothing was committed"
			say "trial $t ($desc): before the first commit ($st): no SET acknowledged, ok"
			presync=$((presync + 1))
			kill "$RX_PID"; wait "$RX_PID" 2>/dev/null || true
			continue
		fi
		fail "trial $t ($desc): receiver state $st after the crash"
	fi
	committed=$(status "$WORK/rx.sock" epoch_committed)
	"$CTL" --control "$WORK/rx.sock" dump "$WORK/rx.img" >/dev/null || fail "trial $t: dump failed"
	out=$("$KVL" --check "$WORK/rx.img" --keys "$WORK/acked") ||
		fail "trial $t ($desc): committed epoch $committed lacks acknowledged SETs: $out"
	say "trial $t ($desc): epoch $committed committed, $acked acknowledged SETs, none missing"
	total=$((total + acked))
	promoted=$((promoted + 1))
	kill "$RX_PID"; wait "$RX_PID" 2>/dev/null || true
done
[ "$total" -gt 0 ] || fail "no SET was acknowledged in any trial: nothing was tested"
say "kv crash matrix: $TRIALS trials: $promoted promoted and checked ($total acknowledged SETs, zero missing), $presync before the first commit"
