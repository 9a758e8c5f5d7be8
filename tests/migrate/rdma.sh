#!/bin/sh
# Live migration over the rdma transport (label rdma): postcopy and hybrid
# between two processes on one verbs device; the destination continues the
# workload and its image must pass the oracle. POSIX sh without jq: it runs
# inside ../shared/rxe-vm, which gets only the build tree (CMake copies this
# script there). Needs FTREPL_RDMA_DEV/FTREPL_RDMA_IP (or the VM's
# RXE_DEV/RXE_IP); exits 77 without them.
DEV=${FTREPL_RDMA_DEV:-${RXE_DEV:-}}
IP=${FTREPL_RDMA_IP:-${RXE_IP:-}}
if [ -z "$DEV" ] || [ -z "$IP" ]; then
	echo "migrate rdma: skipped: no verbs device (set FTREPL_RDMA_DEV and FTREPL_RDMA_IP)"
	exit 77
fi
MIG="${FTR_BIN:?}/tests/integration/ftr-migrate"
W=$(mktemp -d "${TMPDIR:-/tmp}/ftrepl-migrdma.XXXXXX")
DP=
trap '[ -n "$DP" ] && kill -9 $DP 2>/dev/null; rm -rf "$W"' EXIT
rc=0
for mode in postcopy hybrid; do
	"$MIG" dst --listen "$IP:0" --cache 64M --port-file "$W/port.$mode" --synth-writes 3000 \
		--transport rdma --device "$DEV" --prefault-fwd 4 --timeout-ms 20000 >"$W/dst.$mode" 2>&1 &
	DP=$!
	i=0
	while [ ! -s "$W/port.$mode" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
	"$MIG" src --connect "$IP:$(cat "$W/port.$mode")" --workload synth:size=8M,seed=2,rate=2000 \
		--pre-writes 2000 --mode $mode --rounds 1 --channels 2 --transport rdma \
		--device "$DEV" --timeout-ms 20000 >"$W/src.$mode" 2>&1
	src=$?
	wait $DP
	dst=$?
	DP=
	if [ $src != 0 ] || [ $dst != 0 ] || ! grep -q '^oracle ok' "$W/dst.$mode"; then
		echo "FAIL: $mode over rdma: source $src, destination $dst"
		tail -n 5 "$W/src.$mode" "$W/dst.$mode"
		rc=1
	else
		echo "$mode over rdma: $(grep '^oracle' "$W/dst.$mode")"
	fi
done
exit $rc
