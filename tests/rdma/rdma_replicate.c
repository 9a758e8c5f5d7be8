/* SPDX-License-Identifier: MIT */
/*
 * rdma_replicate: the replication scenario of tests/integration/replicate.sh
 * over the rdma transport, with the real standby and primary engines of
 * libftrepl in one process, so that the committed image can be compared
 * byte for byte with the primary's (the programs' scenarios are the
 * rdma_*.sh scripts). Epochs go one-sided in mode write: RDMA WRITE from
 * the registered regions (or the copy-out buffer / cow pool) into staging.
 *
 *   rdma_replicate [--mode write|send] [--channels N] [--epochs N] [--size SIZE]
 *                  [--snapshot stop-copy|copy-out|cow]
 *
 * Device and address: FTREPL_RDMA_DEV / FTREPL_RDMA_IP, else RXE_DEV / RXE_IP
 * (set inside ../shared/rxe-vm); exits 77 without them. Replicates the
 * synthetic workload for N epochs, stops it orderly (BYE), then checks that
 * the standby's committed image passes the oracle and equals the primary's
 * final image byte for byte. Exit 0 = pass, 1 = fail.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/ftrepl.h>
#include <ftrepl/synth.h>

static int fail(const char *what, const char *why)
{
	fprintf(stderr, "rdma_replicate: FAIL: %s%s\n", what, why);
	return 1;
}

/* Reads a whole memfd into a fresh mapping. */
static void *slurp(int fd, size_t *len)
{
	off_t end = lseek(fd, 0, SEEK_END);
	void *p;

	if (end <= 0)
		return NULL;
	p = mmap(NULL, (size_t)end, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return NULL;
	*len = (size_t)end;
	return p;
}

int main(int argc, char **argv)
{
	const char *dev = getenv("FTREPL_RDMA_DEV"), *ip = getenv("FTREPL_RDMA_IP");
	const char *mode = "write", *size = "16M";
	enum ftr_snapshot_mode snap = FTR_SNAP_STOP_COPY;
	unsigned channels = 2;
	uint64_t epochs = 20;
	struct ftr_standby_opts so;
	struct ftr_primary_opts po;
	struct ftr_standby *sb;
	struct ftr_primary *p;
	struct ftr_workload *wl;
	struct ftr_synth_spec spec;
	struct ftr_synth_verdict v;
	struct ftr_standby_status ss;
	struct ftr_primary_status ps;
	char err[256], listen[96], connect[96], specstr[128];
	size_t alen = 0, blen = 0;
	uint64_t epoch;
	void *a, *b;
	int afd, bfd, ret;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--mode"))
			mode = argv[i + 1];
		else if (!strcmp(argv[i], "--channels"))
			channels = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--epochs"))
			epochs = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--size"))
			size = argv[i + 1];
		else if (!strcmp(argv[i], "--snapshot")) {
			if (ftr_snapshot_parse(argv[i + 1], &snap))
				return fail("bad --snapshot ", argv[i + 1]);
		}
		else
			return fail("unknown option ", argv[i]);
	}
	if (!dev || !*dev)
		dev = getenv("RXE_DEV");
	if (!ip || !*ip)
		ip = getenv("RXE_IP");
	if (!dev || !*dev || !ip || !*ip) {
		printf("rdma_replicate: skipped: no RDMA device/address (FTREPL_RDMA_DEV and "
		       "FTREPL_RDMA_IP, or run inside ../shared/rxe-vm)\n");
		return 77;
	}
	snprintf(specstr, sizeof(specstr), "synth:size=%s,seed=11,rate=40000", size);
	if (ftr_synth_parse(specstr, &spec, err, sizeof(err)))
		return fail("", err);

	memset(&so, 0, sizeof(so));
	snprintf(listen, sizeof(listen), "%s:0", ip);
	so.listen = listen;
	so.tp = (struct ftr_tp_opts){ .transport = "rdma", .mode = mode, .device = dev };
	so.cache_size = 2 * spec.size;
	so.staging_size = spec.size;
	/* TCG-emulated RDMA is slow: generous timeouts. */
	so.failover_timeout_ms = 20000;
	so.stall_timeout_ms = 20000;
	ret = ftr_standby_create(&so, &sb, err, sizeof(err));
	if (ret)
		return fail("standby: ", err);
	ret = ftr_standby_start(sb);
	if (ret)
		return fail("standby start: ", strerror(-ret));
	snprintf(connect, sizeof(connect), "%s:%u", ip, ftr_standby_port(sb));

	ret = ftr_synth_workload_create(&spec, &wl);
	if (ret)
		return fail("workload: ", strerror(-ret));
	memset(&po, 0, sizeof(po));
	po.connect = connect;
	po.tp = so.tp;
	po.nchannels = channels;
	po.epoch_ms = 50;
	po.dirty = FTR_DIRTY_WORKLOAD;
	po.snapshot = snap;
	po.failover_timeout_ms = 20000;
	po.connect_timeout_ms = 10000;
	po.max_epochs = epochs;
	ret = ftr_primary_create(&po, wl, &p);
	if (ret)
		return fail("primary: ", strerror(-ret));
	printf("rdma_replicate: %s over rdma (%s, mode %s, %u data channels) to %s, %llu epochs\n",
	       specstr, dev, mode, channels, connect, (unsigned long long)epochs);
	ret = ftr_primary_run(p);
	ftr_primary_get_status(p, &ps);
	if (ret)
		return fail("primary run: ", ftr_primary_error(p));
	if (strcmp(ps.transport, "rdma"))
		return fail("primary used transport ", ps.transport);

	if (ftr_standby_wait_state(sb, 1u << FTR_STATE_DEGRADED, 10000) < 0)
		return fail("standby not degraded after BYE", "");
	ftr_standby_get_status(sb, &ss);
	if (ss.committed != epochs) {
		fprintf(stderr, "rdma_replicate: committed %llu, want %llu\n",
			(unsigned long long)ss.committed, (unsigned long long)epochs);
		return 1;
	}
	ret = ftr_standby_verify(sb, &spec, &v, &epoch);
	if (ret || !v.ok)
		return fail("oracle: ", ret ? strerror(-ret) : v.msg);

	afd = memfd_create("rx", 0);
	bfd = memfd_create("tx", 0);
	if (afd < 0 || bfd < 0 || ftr_standby_dump(sb, afd, &epoch) || ftr_workload_dump(wl, bfd))
		return fail("dumping the images", "");
	a = slurp(afd, &alen);
	b = slurp(bfd, &blen);
	if (!a || !b || alen != blen || memcmp(a, b, alen))
		return fail("the committed image differs from the primary's final image", "");

	/* Mode write: every epoch's pages go one-sided (the initial sync,
	 * straight into the cache, does not); mode send: none may. */
	if (!strcmp(mode, "write") &&
	    (!ps.tx_placed_bytes || ps.tx_placed_bytes != ss.rx_placed_bytes))
		return fail("epochs did not travel one-sided (tx_placed_bytes / rx_placed_bytes "
			    "zero or unequal)", "");
	if (strcmp(mode, "write") && (ps.tx_placed_bytes || ss.rx_placed_bytes))
		return fail("mode send wrote one-sided", "");
	printf("rdma_replicate: ok: %llu epochs committed, k=%llu, %llu pages received, "
	       "%llu bytes sent (%llu one-sided, %llu placed), tx syscalls %llu, rx syscalls %llu\n",
	       (unsigned long long)ss.committed, (unsigned long long)v.k,
	       (unsigned long long)ss.pages_received, (unsigned long long)ps.bytes_sent,
	       (unsigned long long)ps.tx_placed_bytes, (unsigned long long)ss.rx_placed_bytes,
	       (unsigned long long)ps.tx_syscalls, (unsigned long long)ss.rx_syscalls);
	ftr_primary_destroy(p);
	ftr_workload_destroy(wl);
	ftr_standby_stop(sb);
	ftr_standby_destroy(sb);
	return 0;
}
