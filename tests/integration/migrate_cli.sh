#!/usr/bin/env bash
# Live migration through the programs: ftrepl-sender --migrate to
# ftrepl-receiver --migrate-in, in each mode; the destination continues the
# synthetic workload and its image passes the oracle.
#   migrate_cli.sh hybrid|postcopy|precopy
. "$(dirname "$0")/lib.sh"

case $1 in
hybrid) MODE_ARGS=() ;;
postcopy) MODE_ARGS=(--precopy-rounds 0) ;;
precopy) MODE_ARGS=(--no-postcopy) ;;
*) fail "unknown mode $1" ;;
esac
"$RX" --listen 127.0.0.1:0 --cache 64M --migrate-in --resume-synth 20000 \
	--prefault-forward 4 --control "$WORK/dst.sock" >"$WORK/dst.log" 2>&1 &
PIDS+=($!)
wait_until 10 "$CTL" --control "$WORK/dst.sock" status >/dev/null || fail "destination does not answer"
PORT=$(sed -n 's/.*waiting for a migration on port \([0-9]*\).*/\1/p' "$WORK/dst.log")
[ -n "$PORT" ] || fail "no port in the destination's log"
"$TX" --tcp "127.0.0.1:$PORT" --migrate "${MODE_ARGS[@]}" --workload synth:size=32M,seed=8,rate=50000 \
	--control "$WORK/src.sock" >"$WORK/src.log" 2>&1 || fail "sender --migrate failed: $(tail -3 "$WORK/src.log")"
grep -q "migration completed" "$WORK/src.log" || fail "no completion message"
done_ok() { [ "$(status "$WORK/dst.sock" phase)" = completed ]; }
wait_until 20 done_ok || fail "destination phase $(status "$WORK/dst.sock" phase)"
# The resumed workload may still be running its writes (slow under ASan):
# verify answers "busy" until it is done.
settled() {
	out=$("$CTL" --control "$WORK/dst.sock" verify --json 2>&1) && return 0
	case $out in *busy*) return 1 ;; esac
	return 0
}
wait_until 60 settled || fail "verify still busy after 60 s: $out"
out=$("$CTL" --control "$WORK/dst.sock" verify --json) || fail "verify: $out"
[ "$(echo "$out" | jq -r .passed)" = true ] || fail "the migrated image fails the oracle: $out"
say "ok: $1 migration through the programs: $(grep 'migration completed' "$WORK/src.log" | sed 's/.*completed/completed/'); destination k=$(echo "$out" | jq -r .k)"
