#!/usr/bin/env bash
# The failover crash matrix: the sender dies at a random point of the epoch
# cycle - at a random moment, mid-epoch (between batches), after its last
# batch but before COMMIT, or after COMMIT before the ACK - while the
# standby's applier is fast or slow. After promotion a workload resumes on
# the committed image in a random mode; the image must pass the oracle at
# resume and after more writes, and its epoch must be >= the last acked.
#   crash_resume.sh TRIALS
. "$(dirname "$0")/lib.sh"

TRIALS=${1:-6}
SEED=${FTR_SEED:-$RANDOM}
RANDOM=$SEED
HOOKS=0
"$RX" --version | grep -q "test hooks" && HOOKS=1
say "$TRIALS trials, seed $SEED (FTR_SEED=$SEED reproduces), test hooks: $HOOKS"
declare -A count
points=(random mid-epoch before-commit after-commit)
modes=(shared anon firecracker)

for t in $(seq 1 "$TRIALS"); do
	rm -f "$WORK"/rx.sock "$WORK"/tx.sock "$WORK"/resume.sock
	point=${points[$((RANDOM % (HOOKS ? 4 : 1)))]}
	mode=${modes[$((RANDOM % 3))]}
	delay=0
	[ "$HOOKS" = 1 ] && [ $((RANDOM % 2)) = 0 ] && delay=$((RANDOM % 200 + 20))
	die_epoch=$((RANDOM % 15 + 2))
	if [ "$delay" -gt 0 ]; then export FTREPL_TEST_APPLY_DELAY_MS=$delay; fi
	start_rx rx --cache 32M --staging 24M --resume-sock "$WORK/resume.sock" \
		--failover-timeout 600 --heartbeat-ms 50
	unset FTREPL_TEST_APPLY_DELAY_MS
	[ "$point" != random ] && export FTREPL_TEST_DIE_AT="$point:$die_epoch"
	start_tx tx --workload "synth:size=16M,seed=$t,rate=100000" --epoch-ms $((RANDOM % 20 + 5)) \
		--batch-pages 64 --channels $((RANDOM % 2 + 1)) --heartbeat-ms 50 --failover-timeout 2000
	unset FTREPL_TEST_DIE_AT
	acked=none
	if [ "$point" = random ]; then
		end=$(( $(date +%s%3N) + RANDOM % 1200 + 100 ))
		while [ "$(date +%s%3N)" -lt "$end" ]; do
			a=$("$CTL" --control "$WORK/tx.sock" status --json 2>/dev/null | jq -r .epoch_acked 2>/dev/null || true)
			[ -n "$a" ] && [ "$a" != null ] && acked=$a
		done
		kill -9 "$TX_PID" 2>/dev/null || true
	else
		# The sender kills itself at the chosen point; watch acks until then.
		end=$((SECONDS + 20))
		while kill -0 "$TX_PID" 2>/dev/null && [ $SECONDS -lt $end ]; do
			a=$("$CTL" --control "$WORK/tx.sock" status --json 2>/dev/null | jq -r .epoch_acked 2>/dev/null || true)
			[ -n "$a" ] && [ "$a" != null ] && acked=$a
		done
		kill -0 "$TX_PID" 2>/dev/null && fail "trial $t: the sender did not die at $point:$die_epoch"
		grep -q "test hook: dying at $point" "$WORK/tx.log" || fail "trial $t: sender exited without reaching $point: $(tail -3 "$WORK/tx.log")"
	fi
	wait "$TX_PID" 2>/dev/null || true
	if ! wait_until 10 state_is "$WORK/rx.sock" promoted; then
		st=$(status "$WORK/rx.sock" state)
		if [ "$acked" = none ] && { [ "$st" = connecting ] || [ "$st" = syncing ]; }; then
			say "trial $t: died during the initial sync: nothing committed"
			count[presync]=$(( ${count[presync]:-0} + 1 ))
			kill "$RX_PID"; wait "$RX_PID" 2>/dev/null || true
			continue
		fi
		fail "trial $t: receiver state $st after the sender died"
	fi
	committed=$(status "$WORK/rx.sock" epoch_committed)
	pending=$(status "$WORK/rx.sock" pending_pages)
	if [ "$acked" != none ] && [ "$committed" -lt "$acked" ]; then
		fail "trial $t: committed epoch $committed < acked epoch $acked"
	fi
	# The standby may also lose COMMITs still in its socket buffers when a
	# data channel breaks first; what it must never do is commit an epoch
	# whose COMMIT was not sent, or fall behind an acked epoch.
	if [ "$point" != random ]; then
		died=$(sed -n 's/^test hook: dying at .* of epoch \([0-9]*\)$/\1/p' "$WORK/tx.log")
		case $point in
		mid-epoch|before-commit)
			[ "$committed" -lt "$died" ] || fail "trial $t: died in epoch $died before its COMMIT, but epoch $committed is committed" ;;
		after-commit)
			[ "$committed" -le "$died" ] || fail "trial $t: died after COMMIT $died, committed $committed" ;;
		esac
		die_epoch=$died
	fi
	"$FTR_BIN/tests/integration/ftr-resume-client" --sock "$WORK/resume.sock" --mode "$mode" \
		--size 16M --writes 5000 >"$WORK/client.log" 2>&1 ||
		fail "trial $t ($point, $mode, applier delay $delay): $(cat "$WORK/client.log")"
	k=$(awk '/^resumed-k/ {print $2}' "$WORK/client.log")
	# The client resumed the committed epoch, not an older consistent one:
	# the committed image (the cache is still it: the client mapped it
	# privately or copied it) has the same k.
	kc=$(verify_daemon "$WORK/rx.sock")
	[ "$k" = "$kc" ] || fail "trial $t: resumed at k=$k but the committed image has k=$kc"
	on_demand=$(status "$WORK/rx.sock" resume.applied_on_demand)
	say "trial $t: died at $point$([ "$point" != random ] && echo " (epoch $die_epoch)"), applier delay ${delay} ms, $mode: acked $acked, committed $committed, $pending pending, $on_demand applied on demand, k=$k: oracle ok twice"
	count[$point]=$(( ${count[$point]:-0} + 1 ))
	count[$mode]=$(( ${count[$mode]:-0} + 1 ))
	[ "$pending" -gt 0 ] && count[pending]=$(( ${count[pending]:-0} + 1 ))
	kill "$RX_PID"; wait "$RX_PID" 2>/dev/null || true
done
summary=""
for key in random mid-epoch before-commit after-commit shared anon firecracker pending presync; do
	summary+=" $key=${count[$key]:-0}"
done
say "crash/resume matrix: $TRIALS trials, every resumed image passed the oracle:$summary"
