#!/usr/bin/env bash
# A planned takeover: `ftreplctl promote --exec CMD` promotes the standby
# and starts CMD, which resumes the workload through the resume socket.
. "$(dirname "$0")/lib.sh"

start_rx rx --cache 32M --resume-sock "$WORK/resume.sock"
start_tx tx --workload "synth:size=16M,seed=4,rate=20000" --epoch-ms 20
wait_until 10 state_is "$WORK/rx.sock" protected || fail "not protected"
sleep 0.3
# A planned switch: stop the primary first (BYE), then promote with --exec.
"$CTL" --control "$WORK/tx.sock" stop >/dev/null
wait "$TX_PID" || fail "sender exited with $?"
"$CTL" --control "$WORK/rx.sock" promote --exec 'echo "$FTREPL_EPOCH $FTREPL_RESUME_SOCK" >'"$WORK"'/env.txt; exec '"$FTR_BIN"'/tests/integration/ftr-resume-client --sock "$FTREPL_RESUME_SOCK" --mode shared --writes 5000 >'"$WORK"'/client.log 2>&1' \
	>/dev/null || fail "promote --exec failed"
wait_until 20 grep -q "^final-k" "$WORK/client.log" || fail "the --exec command did not resume the workload: $(cat "$WORK/client.log" 2>/dev/null)"
committed=$(status "$WORK/rx.sock" epoch_committed)
read -r epoch sock <"$WORK/env.txt"
[ "$epoch" = "$committed" ] || fail "FTREPL_EPOCH=$epoch, committed $committed"
[ "$sock" = "$WORK/resume.sock" ] || fail "FTREPL_RESUME_SOCK=$sock"
grep -q "^oracle ok after more writes" "$WORK/client.log" || fail "resumed image failed the oracle"
wait_until 5 grep -q "on-promote command exited with 0" "$WORK/rx.log" || fail "exit of the command not logged"
"$CTL" --control "$WORK/rx.sock" promote --exec true 2>"$WORK/err" && fail "a second promote succeeded"
grep -q "already promoted" "$WORK/err" || fail "second promote: $(cat "$WORK/err")"
"$CTL" --control "$WORK/rx.sock" status --exec x 2>"$WORK/err" && fail "--exec accepted on status"
say "ok: promote --exec resumed epoch $committed"
