#!/usr/bin/env bash
# Bulk page transfer: the rdma transport (rdma_bw) against perftest's
# ib_write_bw -s 4096, in the same VM run (under TCG only ratios mean
# anything). Run inside ../shared/rxe-vm from the build directory:
#   ../shared/rxe-vm/run-in-rxe-vm.sh --dir build --add /usr/bin/ib_write_bw \
#       --cmd 'bash tests/rdma/bw.sh' --timeout 900
# Env: MB (default 64), RUNS (default 3; the median is reported).
# ib_write_bw busy-polls its CQ (it has no event mode for WRITE); ftrepl
# sleeps on completion events, which under TCG leaves more CPU to rxe.
set -u
BIN=${BIN:-$(cd "$(dirname "$0")" && pwd)}
[ -x "$BIN/rdma_bw" ] || BIN=$(pwd)/tests/rdma
MB=${MB:-64}
RUNS=${RUNS:-3}
DEV=${FTREPL_RDMA_DEV:-${RXE_DEV:-}}
IP=${FTREPL_RDMA_IP:-${RXE_IP:-}}
GID=${RXE_GID_IDX:-1}
if [ -z "$DEV" ] || [ -z "$IP" ]; then
	echo "bw.sh: skipped: no RDMA device/address"
	exit 77
fi
command -v ib_write_bw >/dev/null || { echo "bw.sh: skipped: no ib_write_bw"; exit 77; }

iters=$((MB * 256))
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ib_write_bw -s 4096, server and client on this device: prints its average MB/s.
ibw() {
	ib_write_bw -d "$DEV" -x "$GID" -s 4096 -n "$iters" -F -p 18515 >/tmp/ibw.srv 2>&1 &
	local srv=$!
	sleep 1
	timeout 300 ib_write_bw -d "$DEV" -x "$GID" -s 4096 -n "$iters" -F -p 18515 "$IP" \
		>/tmp/ibw.cli 2>&1
	wait "$srv"
	awk '$1 == 4096 {print $4}' /tmp/ibw.cli
}

declare -A res
for run in $(seq "$RUNS"); do
	v=$(ibw); echo "run $run: ib_write_bw -s 4096: ${v:-?} MB/s"
	res[ibw]+="$v "
	for p in zc zc-scatter bounce send tcp; do
		args=(--path "${p%-scatter}" --mb "$MB")
		[ "$p" != "${p%-scatter}" ] && args+=(--scatter)
		line=$(timeout 300 "$BIN/rdma_bw" "${args[@]}") || { echo "rdma_bw ${args[*]} failed: $line"; exit 1; }
		echo "run $run: $line"
		res[$p]+="$(echo "$line" | sed -n 's/.*= \([0-9.]*\) MB\/s.*/\1/p') "
	done
done

base=$(echo "${res[ibw]}" | tr ' ' '\n' | grep . | median)
echo "median ib_write_bw -s 4096 ($iters x 4 KiB): $base MB/s"
for p in zc zc-scatter bounce send tcp; do
	m=$(echo "${res[$p]}" | tr ' ' '\n' | grep . | median)
	echo "median rdma_bw --path $p: $m MB/s  ratio to ib_write_bw: $(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2f", a / b}')"
done
