#!/usr/bin/env bash
# The program contract: --help/--version, exit 2 with one line on a usage
# error, exit 1 with the reason on a runtime failure.
. "$(dirname "$0")/lib.sh"

# expect CODE PATTERN CMD...: runs CMD, checks the exit code, that stderr
# is one line (for 2) and that it matches PATTERN.
expect() {
	local code=$1 pat=$2 rc=0
	shift 2
	"$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
	[ $rc -eq "$code" ] || fail "$* exited $rc, expected $code; stderr: $(cat "$WORK/err")"
	if [ "$code" -eq 2 ]; then
		[ "$(wc -l <"$WORK/err")" -eq 1 ] || fail "$*: usage error is not one line: $(cat "$WORK/err")"
	fi
	grep -qiE -e "$pat" "$WORK/err" "$WORK/out" || fail "$*: output does not match /$pat/: $(cat "$WORK/err" "$WORK/out")"
}

for b in "$RX" "$TX" "$CTL"; do
	expect 0 "usage" "$b" --help
	expect 0 "ftrepl [0-9]+\.[0-9]+" "$b" --version
	expect 2 "unknown option --bogus" "$b" --bogus
	expect 0 "uffd .*(yes|no)" "$b" --probe
done
expect 2 "--dirty bogus: use auto, wp-async" "$TX" --tcp 127.0.0.1:9 --dirty bogus
expect 2 "needs --connect" "$TX" --rdma rxe0
expect 2 "exclusive" "$TX" --tcp 127.0.0.1:9 --rdma rxe0 --connect 127.0.0.1:9
expect 2 "need --migrate" "$TX" --tcp 127.0.0.1:9 --precopy-rounds 2
expect 2 "need --migrate-in" "$RX" --listen 127.0.0.1:0 --cache 1M --prefault-forward 2
expect 2 "--listen" "$RX" --cache 1G
expect 2 "--cache" "$RX" --listen 127.0.0.1:7000
expect 2 "--cache 12Q: not a size" "$RX" --listen 127.0.0.1:7000 --cache 12Q
expect 2 "expected ADDR:PORT" "$RX" --listen nowhere --cache 1M
expect 2 "needs a value" "$RX" --listen
expect 2 "unexpected argument" "$RX" --listen 127.0.0.1:1 --cache 1M extra
expect 2 "--tcp" "$TX"
expect 2 "tcp has no mode \"bogus\"" "$TX" --tcp 127.0.0.1:9 --tcp-mode bogus
expect 2 "unknown workload" "$TX" --tcp 127.0.0.1:9 --workload file:/x
expect 2 "size" "$TX" --tcp 127.0.0.1:9 --workload synth:size=5000
expect 2 "--channels 99: out of range" "$TX" --tcp 127.0.0.1:9 --channels 99
expect 2 "--snapshot" "$TX" --tcp 127.0.0.1:9 --snapshot cow-ish
expect 2 "heartbeat" "$TX" --tcp 127.0.0.1:9 --heartbeat-ms 500 --failover-timeout 100
expect 2 "not a UUID" "$TX" --tcp 127.0.0.1:9 --session nope
expect 2 "dump needs a FILE" "$CTL" --control "$WORK/x.sock" dump
expect 2 "unknown command" "$CTL" --control "$WORK/x.sock" frobnicate

# runtime failures: exit 1 and say why
expect 1 "connect.*(refused|Connection refused)" "$TX" --tcp 127.0.0.1:1 --workload synth:size=1M
expect 1 "cannot connect to" "$CTL" --control "$WORK/nobody.sock" status
start_rx rx --cache 4M
expect 1 "cannot listen on 127.0.0.1:$RX_PORT" "$RX" --listen "127.0.0.1:$RX_PORT" --cache 1M
head -c 8192 /dev/urandom >"$WORK/junk.img"
expect 1 "control page|magic" "$CTL" verify "$WORK/junk.img"
expect 1 "no epoch committed" "$CTL" --control "$WORK/rx.sock" promote
say "ok: program contract holds"
