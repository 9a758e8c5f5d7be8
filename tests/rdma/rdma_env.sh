# Prologue of the rdma scenarios (tests/rdma/*.sh), sourced first.
# Picks the verbs device and its address: FTREPL_RDMA_DEV / FTREPL_RDMA_IP,
# else RXE_DEV / RXE_IP (set inside ../shared/rxe-vm). Without a usable
# device it exits 77 saying why. Then it sources the integration helpers
# (tests/integration/lib.sh; CMake copies it next to the build tree's copy
# of this file, since only the build tree goes into the VM) with FTR_RDMA
# and FTR_ADDR set, so start_rx/start_tx speak rdma, and without needing jq
# (the VM has none).
#
# The replication scenarios name their dirty tracking (rdma_crash rotates
# auto, scan and wp-sync; the resume scenarios use scan or workload);
# FTR_RDMA_DIRTY=MODE runs them all with one mode.
#
# FTR_BIN defaults to the build tree holding this file (BUILD/tests/rdma).
# FTR_RDMA_OVER_TCP=1 runs a scenario's logic over tcp on 127.0.0.1: a way
# to debug a script on a host without a device, not an RDMA test (ctest
# never sets it).

RDMA_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "${FTR_RDMA_OVER_TCP:-}" ]; then
	FTR_RDMA=
	FTR_ADDR=127.0.0.1
	EXPECT_TRANSPORT=tcp
	echo "FTR_RDMA_OVER_TCP is set: running over tcp on 127.0.0.1 (not an rdma test)"
else
	RDMA_DEV=${FTREPL_RDMA_DEV:-${RXE_DEV:-}}
	RDMA_IP=${FTREPL_RDMA_IP:-${RXE_IP:-}}
	if [ -z "$RDMA_DEV" ]; then
		echo "SKIP: no RDMA device named (set FTREPL_RDMA_DEV and FTREPL_RDMA_IP, or run" \
			"inside ../shared/rxe-vm where RXE_DEV is set)"
		exit 77
	fi
	if [ -z "$RDMA_IP" ]; then
		echo "SKIP: no address for $RDMA_DEV (set FTREPL_RDMA_IP)"
		exit 77
	fi
	if [ ! -e "/sys/class/infiniband/$RDMA_DEV" ]; then
		echo "SKIP: RDMA device $RDMA_DEV not present ($(ls /sys/class/infiniband 2>/dev/null |
			wc -l) devices here)"
		exit 77
	fi
	FTR_RDMA=$RDMA_DEV
	FTR_ADDR=$RDMA_IP
	EXPECT_TRANSPORT=rdma
	echo "rdma device $RDMA_DEV, address $RDMA_IP"
fi
FTR_JQ_OPTIONAL=1
FTR_BIN=${FTR_BIN:-$(cd "$RDMA_HERE/../.." && pwd)}
if [ -f "$RDMA_HERE/lib.sh" ]; then
	. "$RDMA_HERE/lib.sh"
else
	. "$RDMA_HERE/../integration/lib.sh"
fi

# The integration timeouts assume a fast host; under TCG everything is
# slower: T_STATE (seconds) bounds every wait for a state change.
T_STATE=${FTR_RDMA_T_STATE:-60}

# ms_now: wall-clock milliseconds (busybox date has no %N).
ms_now() {
	local t=${EPOCHREALTIME/./}
	echo $((t / 1000))
}

# log_has NAME REGEX: NAME.log matches REGEX (grep -E)
log_has() {
	grep -Eq "$2" "$WORK/$1.log"
}

# check_transport SOCK: the daemon behind SOCK reports the expected transport.
check_transport() {
	local tp
	tp=$(status "$1" transport)
	[ "$tp" = "$EXPECT_TRANSPORT" ] || fail "$1 reports transport \"$tp\", expected $EXPECT_TRANSPORT"
}

# gone PID: PID has exited (or is a zombie waiting to be reaped).
gone() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
	[ -z "$st" ] || [ "$st" = Z ]
}

# stop_daemon PID [TIMEOUT_S]: SIGTERM, then a bounded wait for the exit;
# a daemon that ignores SIGTERM is killed and the scenario fails.
stop_daemon() {
	local pid=$1 t=${2:-30}
	kill "$pid" 2>/dev/null || true
	if ! wait_until "$t" gone "$pid"; then
		kill -9 "$pid" 2>/dev/null || true
		fail "process $pid still running ${t}s after SIGTERM"
	fi
	wait "$pid" 2>/dev/null || true
}
