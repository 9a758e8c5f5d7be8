/* SPDX-License-Identifier: MIT */
/*
 * --postcopy (ftrepl issue 5): live migration of the synthetic workload
 * (include/ftrepl/migrate.h) in precopy, postcopy and hybrid mode, over
 * loopback and a tbf-shaped veth link, at a low dirty rate and at one
 * higher than the link carries.
 *
 * Groups are (link, dirty rate) pairs: "loopback/low", "loopback/high",
 * "veth-1g/low", "veth-1g/high" by default. Variants (--modes) are
 * "precopy-N" (precopy, at most N rounds, then "did not converge"),
 * "postcopy" (no round) and "hybrid" / "hybrid-N" (at most N precopy rounds,
 * then postcopy; plain "hybrid" is the library's default of 5, plain
 * "precopy" its default of 30). One run, two children:
 *
 *   destination  in the receiver's namespace: ftr_migrate_dst_* on anonymous
 *                memory (faults served with UFFDIO_COPY, as QEMU does),
 *                continuing the synthetic workload at the same rate once
 *                switched (resume_synth). At the end it stops the
 *                continuation and checks the image with the oracle.
 *   source       in the sender's namespace: the synthetic workload (random
 *                pattern over every page, advanced by 3 writes per page
 *                before the start so that ~95 % of the pages hold data, not
 *                zero fill), dirty tracking by the workload itself, the
 *                library's default data channels (two), ftr_migrate_src_run().
 *
 * Both send their status (struct ftr_migrate_status) back over a pipe.
 * Precopy that does not converge (the library fails with -EAGAIN and a
 * message naming the dirty rate and the bandwidth) is a result of the run,
 * "did not converge", not a failure of the bench.
 *
 * Baselines per link, in the same run: iperf3 goodput (ftb_tcp_reference),
 * a TCP ping-pong of 1 byte (RTT, a server child in the receiver's
 * namespace, a client child in the sender's) alternating with one of a
 * 4 KiB page sent the way a requested page goes (the 1-byte RTT, which the
 * target names, leaves out a page's own time on the link: 33 us at
 * 1 Gbit/s), and a bare UFFDIO_COPY fault
 * round trip (in this process: a handler thread, the faulting main thread,
 * anonymous memory registered MISSING; the handler's read-to-COPY time is
 * the interval the destination's fault latency measures).
 *
 * QEMU 7.2's own migration, in the same run (variants qemu-precopy-N,
 * qemu-postcopy, qemu-hybrid[-N]): two qemu-system-x86_64 children (TCG),
 * the source in the sender's namespace, the destination in the receiver's,
 * migrating ftbench's test guest (bench/qemu-guest: a multiboot kernel
 * writing random pages of its RAM at the group's rate) over TCP on the same
 * link (qemu_mig.c). The guest's RAM is --size less 8 KiB (QEMU 7.2's TCG
 * dirty tracking loses writes in RAM blocks that are multiples of 256 KiB);
 * the destination's guest checks its pages after the migration. The report
 * puts ftrepl / QEMU ratios of total time and downtime next to the rows.
 *
 * Threads created here: the bare baseline's handler thread only. The
 * library creates its own in the children.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/ftrepl.h>
#include <ftrepl/migrate.h>
#include <ftrepl/synth.h>

#include "ftbench.h"
#include "uffd/uffd_io.h"

enum {
	M_TOTAL_S,
	M_CONVERGED,
	M_DOWNTIME_MS,
	M_FAULT_MED_US,
	M_FAULT_P99_US,
	M_FAULT_MAX_US,
	M_FAULTS,
	M_PAGES_SENT,
	M_DATA_MB,
	M_PRECOPY_PAGES,
	M_PUSHED,
	M_REQUESTED,
	M_DUP,
	M_ROUNDS,
	M_PRECOPY_S,
	M_POSTCOPY_S,
	M_DST_DOWNTIME_MS,
	M_DST_IN_PLACE_S,
	M_DST_PEAK_RSS_MB,
	M_DIRTY_MBS,
	M_BW_MBS,
	M_VERIFIED,
	M_GUEST_WPS,
	M_QEMU_DOWNTIME_MS,
	M_SETUP_MS,
	M_TRANSFERRED_MB,
	M_BLOCKTIME_MS,
	M_RUN_LINK_GBIT,
	M_RUN_SOB_X,
	M__COUNT,
};

static const struct ftb_metric metrics[M__COUNT] = {
	[M_TOTAL_S] = { "total_s", "s" },
	[M_CONVERGED] = { "completed", "" },
	[M_DOWNTIME_MS] = { "downtime_ms", "ms" },
	[M_FAULT_MED_US] = { "fault_median_us", "us" },
	[M_FAULT_P99_US] = { "fault_p99_us", "us" },
	[M_FAULT_MAX_US] = { "fault_max_us", "us" },
	[M_FAULTS] = { "faults", "" },
	[M_PAGES_SENT] = { "pages_sent", "" },
	[M_DATA_MB] = { "payload_mb", "MB" },
	[M_PRECOPY_PAGES] = { "precopy_pages", "" },
	[M_PUSHED] = { "pushed_pages", "" },
	[M_REQUESTED] = { "requested_pages", "" },
	[M_DUP] = { "dup_pages", "" },
	[M_ROUNDS] = { "rounds", "" },
	[M_PRECOPY_S] = { "precopy_s", "s" },
	[M_POSTCOPY_S] = { "postcopy_s", "s" },
	[M_DST_DOWNTIME_MS] = { "dst_downtime_ms", "ms" },
	[M_DST_IN_PLACE_S] = { "dst_in_place_s", "s" },
	[M_DST_PEAK_RSS_MB] = { "dst_peak_rss_mb", "MB" },
	[M_DIRTY_MBS] = { "dirty_mb_s", "MB/s" },
	[M_BW_MBS] = { "bandwidth_mb_s", "MB/s" },
	[M_VERIFIED] = { "verified", "" },
	/* qemu-* variants only (0 in ftrepl's rows) */
	[M_GUEST_WPS] = { "guest_writes_per_s", "1/s" },
	[M_QEMU_DOWNTIME_MS] = { "qemu_downtime_ms", "ms" },
	[M_SETUP_MS] = { "setup_ms", "ms" },
	[M_TRANSFERRED_MB] = { "transferred_mb", "MB" },
	[M_BLOCKTIME_MS] = { "blocktime_ms", "ms" },
	/* the link measured around this run (mean of before and after), and
	 * total / (size / that); 0 when it could not be measured */
	[M_RUN_LINK_GBIT] = { "run_link_gbit_s", "Gbit/s" },
	[M_RUN_SOB_X] = { "total_over_run_size_bw", "x" },
};

#define PC_PAGE 4096ull
#define PC_SEED 5
#define PC_LOW_RATE 2000ull		/* writes/s: 8.2 MB/s, far below 1 Gbit/s */
#define PC_HIGH_FACTOR 2.0		/* high rate = 2 x the link's iperf3 goodput */
#define PC_FLAT_OUT 1000000ull		/* the synthetic writer tops out near here */
#define PC_ADVANCE_PER_PAGE 3		/* writes per page before the start: 95 % data */
#define PC_REFERENCE_SECONDS 3.0
#define PC_RUN_REF_SECONDS 1.0		/* the link just before and just after each run */
#define PC_RTT_SAMPLES 2000
#define PC_BARE_PAGES 4096
#define PC_MEM_MARGIN (768ull << 20)
/* The targets (ftrepl issue 5), printed, not asserted. */
#define PC_HYBRID_MAX_X 1.3
#define PC_DOWNTIME_MAX_MS 50.0
#define PC_FAULT_MAX_X 3.0

struct pc_variant {
	enum ftr_migrate_mode mode;
	unsigned max_rounds;		/* 0 = the library's default */
	bool qemu;			/* "qemu-...": QEMU 7.2 migrating the test guest */
};

#define PC_QEMU_PREFIX "qemu-"

/* One link's baselines, measured once for both of its rates. */
struct pc_link {
	bool veth;
	uint64_t rate_bps;		/* tbf rate, 0 = unshaped / loopback */
	bool measured;
	bool have_ref;
	struct ftb_tcp_ref ref;
	bool have_rtt;
	double rtt_med_us, rtt_p99_us;
	double page_rtt_med_us;		/* 4 KiB towards the destination, 1 byte back */
	char rtt_err[128];
	bool have_floor;		/* ftb_bare_stream: the region into uffd memory */
	double floor_s;
	char floor_err[160];
	/* the same with one CPU kept busy beside it: what is left of this
	 * machine while a workload runs flat out on it */
	bool have_floor_busy;
	double floor_busy_s;
};

struct pc_state {
	struct ftb_link link;
	struct pc_link links[FTB_MAX_GROUPS];
	unsigned nlinks;
	unsigned link_of[FTB_MAX_GROUPS];
	bool high[FTB_MAX_GROUPS];
	uint64_t wrate[FTB_MAX_GROUPS];	/* writes/s, 0 = flat out */
	struct pc_variant var[FTB_MAX_VARIANTS];
	char nc_err[FTB_MAX_GROUPS][FTB_MAX_VARIANTS][256]; /* last "did not converge" */
	bool have_bare;
	double bare_med_us, bare_p99_us, bare_rtt_med_us;
	char bare_err[128];
	/* the qemu-* variants */
	bool qemu_ok;			/* some ran or will run */
	char qemu_reason[320];		/* why they did not */
	char qemu_guest[512];
	char qemu_version[128];
	uint64_t qemu_mem_kib;
	uint32_t guest_pages;		/* the guest's workload pages (last run) */
};

/* ---- variants ------------------------------------------------------------------------ */

/* "[qemu-]precopy[-N]", "[qemu-]postcopy", "[qemu-]hybrid[-N]". */
static int parse_variant(const char *name, struct pc_variant *v)
{
	static const struct { const char *prefix; enum ftr_migrate_mode mode; } kinds[] = {
		{ "precopy", FTR_MIG_PRECOPY },
		{ "postcopy", FTR_MIG_POSTCOPY },
		{ "hybrid", FTR_MIG_HYBRID },
	};

	v->qemu = !strncmp(name, PC_QEMU_PREFIX, strlen(PC_QEMU_PREFIX));
	if (v->qemu)
		name += strlen(PC_QEMU_PREFIX);

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t n = strlen(kinds[i].prefix);
		uint64_t r;

		if (strncmp(name, kinds[i].prefix, n))
			continue;
		v->mode = kinds[i].mode;
		v->max_rounds = 0;
		if (!name[n])
			return 0;
		if (name[n] != '-' || v->mode == FTR_MIG_POSTCOPY ||
		    ftr_parse_u64(name + n + 1, 1, 1000, &r))
			return -EINVAL;
		v->max_rounds = (unsigned)r;
		return 0;
	}
	return -EINVAL;
}

/* ---- baseline: TCP ping-pong of 1 byte ----------------------------------------------- */

static void __attribute__((noreturn)) pong_child(const char *ip, int port_fd)
{
	uint16_t port = 0;
	int ls = ftb_listen_tcp(ip, 1, &port), s, one = 1;
	char b;

	ftb_write_full(port_fd, &port, sizeof(port));	/* 0: it failed */
	if (ls < 0)
		_exit(1);
	s = accept(ls, NULL, NULL);
	if (s < 0)
		_exit(1);
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* 'P' starts a page (4 KiB in all), anything else is 1 byte; each is
	 * answered with 1 byte */
	while (read(s, &b, 1) == 1) {
		static char page[PC_PAGE];

		if (b == 'P' && ftb_read_full(s, page, sizeof(page) - 1, 10000))
			break;
		if (write(s, &b, 1) != 1)
			break;
	}
	_exit(0);
}

struct rtt_res {
	int32_t ret;
	uint64_t med_ns, p99_ns;
	/* a page's round trip: 4 KiB from the sender's side (the shaped
	 * direction, as a page answering a request), 1 byte back */
	uint64_t page_med_ns, page_p99_ns;
};

static void __attribute__((noreturn)) ping_child(const char *ip, uint16_t port, int rep_fd)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct rtt_res r = { .ret = 0 };
	uint64_t *v = calloc(PC_RTT_SAMPLES, sizeof(*v));
	uint64_t *vp = calloc(PC_RTT_SAMPLES, sizeof(*vp));
	static char page[PC_PAGE];
	int s, one = 1;
	char b = 'x', ans;

	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, ip, &a.sin_addr);
	if (!v || !vp || s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a))) {
		r.ret = -errno;
		goto out;
	}
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* 100 unrecorded round trips of each kind first (slow start, caches);
	 * then the two kinds alternate, so both see the same conditions */
	for (int i = -100; i < PC_RTT_SAMPLES; i++) {
		uint64_t t0 = ftb_now_ns(), t1;

		if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1) {
			r.ret = -EPIPE;
			goto out;
		}
		t1 = ftb_now_ns();
		page[0] = 'P';
		if (ftb_write_full(s, page, sizeof(page)) || read(s, &ans, 1) != 1) {
			r.ret = -EPIPE;
			goto out;
		}
		if (i >= 0) {
			v[i] = t1 - t0;
			vp[i] = ftb_now_ns() - t1;
		}
	}
	ftb_u64_pcts(v, PC_RTT_SAMPLES, &r.med_ns, &r.p99_ns);
	ftb_u64_pcts(vp, PC_RTT_SAMPLES, &r.page_med_ns, &r.page_p99_ns);
out:
	ftb_write_full(rep_fd, &r, sizeof(r));
	_exit(0);
}

/* The round trip of 1 byte over TCP from tx_ns to rx_ns (-1: this one). */
static int tcp_rtt(int tx_ns, int rx_ns, const char *ip, double *med_us, double *p99_us,
		   double *page_med_us, char *err, size_t errlen)
{
	int pp[2] = { -1, -1 }, rp[2] = { -1, -1 }, ret;
	pid_t srv = -1, cli = -1;
	struct rtt_res r = { .ret = -EIO };
	uint16_t port = 0;

	if (pipe2(pp, O_CLOEXEC) || pipe2(rp, O_CLOEXEC)) {
		ret = -errno;
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto out;
	}
	srv = ftb_fork(rx_ns);
	if (srv == 0) {
		ftb_close_fds_except(&pp[1], 1);
		pong_child(ip, pp[1]);
	}
	if (srv < 0) {
		ret = (int)srv;
		snprintf(err, errlen, "fork: %s", strerror(-ret));
		goto out;
	}
	ret = ftb_read_full(pp[0], &port, sizeof(port), 10000);
	if (ret || !port) {
		ret = ret ? ret : -EADDRNOTAVAIL;
		snprintf(err, errlen, "ping-pong server on %s did not start", ip);
		goto out;
	}
	cli = ftb_fork(tx_ns);
	if (cli == 0) {
		ftb_close_fds_except(&rp[1], 1);
		ping_child(ip, port, rp[1]);
	}
	if (cli < 0) {
		ret = (int)cli;
		snprintf(err, errlen, "fork: %s", strerror(-ret));
		goto out;
	}
	ret = ftb_read_full(rp[0], &r, sizeof(r), 30000);
	if (!ret)
		ret = r.ret;
	if (ret) {
		snprintf(err, errlen, "ping-pong to %s: %s", ip, strerror(-ret));
		goto out;
	}
	*med_us = (double)r.med_ns / 1e3;
	*p99_us = (double)r.p99_ns / 1e3;
	*page_med_us = (double)r.page_med_ns / 1e3;
out:
	if (cli > 0 && ftb_wait(cli, 10000) < 0)
		ftb_kill(cli);
	if (srv > 0) {
		ftb_kill(srv);
		ftb_wait(srv, 10000);
	}
	for (int i = 0; i < 2; i++) {
		if (pp[i] >= 0)
			close(pp[i]);
		if (rp[i] >= 0)
			close(rp[i]);
	}
	return ret;
}

/* ---- one migration ---------------------------------------------------------------------- */

/* What each child sends back. */
struct pc_result {
	int32_t ret;			/* src: run(); dst: 0 completed, else -errno */
	int32_t verify_ret;		/* dst: ftr_migrate_dst_verify() */
	int32_t verify_ok;
	uint64_t peak_rss_kb;		/* dst: the child's peak resident memory */
	struct ftr_migrate_status st;
	char err[256];
};

struct pc_cfg {
	uint64_t size;
	uint64_t wrate;			/* writes/s, 0 = flat out */
	bool dst_memfd;			/* the destination's memory: memfd, else anon */
	struct pc_variant var;
	const char *ip;
	int tx_ns, rx_ns;
	int timeout_ms;
};

static void __attribute__((noreturn)) dst_child(const struct pc_cfg *cfg, int rep_fd)
{
	char listen[64];
	struct ftr_migrate_dst_opts o = {
		.listen = listen,
		.cache_size = cfg->size,
		.mem = cfg->dst_memfd ? FTR_MIG_MEM_MEMFD : FTR_MIG_MEM_ANON,
		.resume_synth = true,
		.synth_writes = 0,	/* until stopped */
		.synth_rate = cfg->wrate,
	};
	struct pc_result r = { .ret = -EIO, .verify_ret = -ENODATA };
	struct ftr_migrate_dst *dst = NULL;
	struct ftr_synth_verdict v;
	struct rusage ru;
	uint16_t port = 0;
	int ph;

	signal(SIGPIPE, SIG_IGN);
	snprintf(listen, sizeof(listen), "%s:0", cfg->ip);
	r.ret = ftr_migrate_dst_create(&o, &dst, r.err, sizeof(r.err));
	if (!r.ret)
		port = ftr_migrate_dst_port(dst);
	ftb_write_full(rep_fd, &port, sizeof(port));
	if (r.ret)
		goto out;
	r.ret = ftr_migrate_dst_start(dst);
	if (r.ret) {
		snprintf(r.err, sizeof(r.err), "start: %s", strerror(-r.ret));
		goto out;
	}
	ph = ftr_migrate_dst_wait(dst, 1u << FTR_MIG_COMPLETED | 1u << FTR_MIG_FAILED,
				  cfg->timeout_ms);
	if (ph == FTR_MIG_COMPLETED) {
		r.ret = ftr_migrate_dst_synth_wait(dst, 30000);
		if (r.ret)
			snprintf(r.err, sizeof(r.err), "the continuation: %s", strerror(-r.ret));
	} else {
		r.ret = ph < 0 ? ph : -EIO;
		snprintf(r.err, sizeof(r.err), "%s", ph < 0 ? "timed out" :
			 ftr_migrate_dst_error(dst));
	}
	ftr_migrate_dst_get_status(dst, &r.st);
	if (!getrusage(RUSAGE_SELF, &ru))
		r.peak_rss_kb = (uint64_t)ru.ru_maxrss;
	if (!r.ret) {
		r.verify_ret = ftr_migrate_dst_verify(dst, NULL, &v);
		r.verify_ok = !r.verify_ret && v.ok;
		if (!r.verify_ret && !v.ok)
			snprintf(r.err, sizeof(r.err), "oracle: %.200s", v.msg);
	}
out:
	ftb_write_full(rep_fd, &r, sizeof(r));
	if (dst)
		ftr_migrate_dst_destroy(dst);
	_exit(0);
}

static void __attribute__((noreturn)) src_child(const struct pc_cfg *cfg, uint16_t port,
						int rep_fd)
{
	struct ftr_synth_spec spec = { .size = cfg->size, .seed = PC_SEED, .rate = cfg->wrate,
				       .pattern = FTR_SYNTH_RANDOM };
	char connect[64];
	struct ftr_migrate_src_opts o = {
		.connect = connect,
		.mode = cfg->var.mode,
		.max_rounds = cfg->var.max_rounds,
		.dirty = FTR_DIRTY_WORKLOAD,
	};
	struct pc_result r = { .ret = -EIO };
	struct ftr_migrate_src *src = NULL;
	struct ftr_workload *wl = NULL;

	signal(SIGPIPE, SIG_IGN);
	snprintf(connect, sizeof(connect), "%s:%u", cfg->ip, port);
	r.ret = ftr_synth_workload_create(&spec, &wl);
	if (r.ret) {
		snprintf(r.err, sizeof(r.err), "workload: %s", strerror(-r.ret));
		goto out;
	}
	r.ret = ftr_synth_workload_advance(wl, PC_ADVANCE_PER_PAGE * (cfg->size / PC_PAGE));
	if (r.ret) {
		snprintf(r.err, sizeof(r.err), "workload advance: %s", strerror(-r.ret));
		goto out;
	}
	r.ret = ftr_migrate_src_create(&o, wl, &src);
	if (r.ret) {
		snprintf(r.err, sizeof(r.err), "source: %s", strerror(-r.ret));
		goto out;
	}
	r.ret = ftr_migrate_src_run(src);
	ftr_migrate_src_get_status(src, &r.st);
	if (r.ret)
		snprintf(r.err, sizeof(r.err), "%s", ftr_migrate_src_error(src));
out:
	ftb_write_full(rep_fd, &r, sizeof(r));
	ftr_migrate_src_destroy(src);
	if (wl)
		ftr_workload_destroy(wl);
	_exit(0);
}

/* Runs one migration; *src_r and *dst_r get both sides' results. */
static int migrate_once(const struct pc_cfg *cfg, struct pc_result *src_r,
			struct pc_result *dst_r, char *err, size_t errlen)
{
	int dp[2] = { -1, -1 }, sp[2] = { -1, -1 }, ret;
	pid_t dst = -1, src = -1;
	uint16_t port = 0;

	if (pipe2(dp, O_CLOEXEC) || pipe2(sp, O_CLOEXEC)) {
		ret = -errno;
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto out;
	}
	dst = ftb_fork(cfg->rx_ns);
	if (dst == 0) {
		ftb_close_fds_except(&dp[1], 1);
		dst_child(cfg, dp[1]);
	}
	if (dst < 0) {
		ret = (int)dst;
		snprintf(err, errlen, "fork: %s", strerror(-ret));
		goto out;
	}
	ret = ftb_read_full(dp[0], &port, sizeof(port), 30000);
	if (ret || !port) {
		if (!ftb_read_full(dp[0], dst_r, sizeof(*dst_r), 5000))
			snprintf(err, errlen, "destination: %s", dst_r->err);
		else
			snprintf(err, errlen, "the destination did not start");
		ret = ret ? ret : -EIO;
		goto out;
	}
	src = ftb_fork(cfg->tx_ns);
	if (src == 0) {
		ftb_close_fds_except(&sp[1], 1);
		src_child(cfg, port, sp[1]);
	}
	if (src < 0) {
		ret = (int)src;
		snprintf(err, errlen, "fork: %s", strerror(-ret));
		goto out;
	}
	ret = ftb_read_full(sp[0], src_r, sizeof(*src_r), cfg->timeout_ms);
	if (ret) {
		snprintf(err, errlen, "no result from the source within %d s: %s",
			 cfg->timeout_ms / 1000, strerror(-ret));
		goto out;
	}
	/* the destination ends soon after the source (BYE, or the broken
	 * connection when precopy gave up), then stops and checks */
	ret = ftb_read_full(dp[0], dst_r, sizeof(*dst_r), 120000);
	if (ret)
		snprintf(err, errlen, "no result from the destination: %s", strerror(-ret));
out:
	if (src > 0 && ftb_wait(src, 30000) < 0)
		ftb_kill(src);
	if (dst > 0 && ftb_wait(dst, 30000) < 0)
		ftb_kill(dst);
	for (int i = 0; i < 2; i++) {
		if (dp[i] >= 0)
			close(dp[i]);
		if (sp[i] >= 0)
			close(sp[i]);
	}
	return ret;
}

/* ---- the mode's hooks ---------------------------------------------------------------------- */

static const char *link_name(const struct pc_link *l, char *buf, size_t len)
{
	char r[32];

	if (!l->veth)
		snprintf(buf, len, "loopback");
	else
		snprintf(buf, len, "veth-%s", ftb_rate_name(l->rate_bps, r, sizeof(r)));
	return buf;
}

/* The guest's RAM for --size: 8 KiB less, and never a multiple of 256 KiB
 * (QEMU 7.2's TCG dirty tracking loses writes in such RAM blocks, FACTS.md).
 * FTBENCH_QEMU_MEM_KIB overrides it (131072 shows that bug: the guest's
 * check then fails). */
static uint64_t qemu_mem_kib(uint64_t size)
{
	const char *e = getenv("FTBENCH_QEMU_MEM_KIB");
	uint64_t kib = size / 1024 - 8;

	if (e && *e && !ftr_parse_u64(e, 4096, 1ull << 31, &kib))
		return kib;
	if (kib % 256 == 0)
		kib -= 4;
	return kib;
}

/*
 * The qemu-* variants need qemu-system-x86_64 and the test guest. Without
 * them, variants asked for by --modes fail the bench; the default ones are
 * dropped and the report says why.
 */
static int qemu_prepare(struct ftb_ctx *c, struct pc_state *s, char *err, size_t errlen)
{
	const char *argv[] = { "qemu-system-x86_64", "--version", NULL };
	bool any = false;
	unsigned n = 0;

	for (unsigned v = 0; v < c->nvariants; v++)
		any |= s->var[v].qemu;
	if (!any) {
		snprintf(s->qemu_reason, sizeof(s->qemu_reason),
			 "no qemu-* variant in --modes");
		return 0;
	}
	if (!ftb_qmig_available(s->qemu_guest, sizeof(s->qemu_guest), s->qemu_reason,
				sizeof(s->qemu_reason))) {
		s->qemu_ok = true;
		s->qemu_mem_kib = qemu_mem_kib(c->o.size);
		if (ftb_run_cmd(argv, -1, s->qemu_version, sizeof(s->qemu_version), false,
				10000) == 0)
			s->qemu_version[strcspn(s->qemu_version, "\n")] = '\0';
		return 0;
	}
	if (c->o.nvariants) {
		snprintf(err, errlen, "--modes asks for qemu-* variants, but %s", s->qemu_reason);
		return -ENOENT;
	}
	for (unsigned v = 0; v < c->nvariants; v++) {
		if (s->var[v].qemu)
			continue;
		s->var[n] = s->var[v];
		c->variants[n++] = c->variants[v];
	}
	c->nvariants = n;
	ftb_note("the qemu-* variants are skipped: %s", s->qemu_reason);
	return 0;
}

static int pc_prepare(struct ftb_ctx *c, char *err, size_t errlen)
{
	struct pc_state *s;
	uint64_t need = 2 * c->o.size + PC_MEM_MARGIN, avail = ftb_mem_available();
	uint64_t defaults[] = { 1000000000ull };
	const uint64_t *rates = c->o.links_set ? c->o.link_bps : defaults;
	unsigned nrates = c->o.links_set ? c->o.nlinks : 1;
	char lname[32];

	if (c->o.epochs || c->o.dup_share >= 0 || c->o.cold_standby || c->o.all) {
		snprintf(err, errlen, "--postcopy takes --size, --runs, --warmup, --modes, "
			 "--link-rate, --no-loopback, --dst-mem, --no-iperf, --json only");
		return -EINVAL;
	}
	if (avail && need > avail) {
		snprintf(err, errlen, "--size %" PRIu64 "M needs ~%" PRIu64 " MiB (source + "
			 "destination + margin), %" PRIu64 " MiB available", c->o.size >> 20,
			 need >> 20, avail >> 20);
		return -ENOMEM;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	c->priv = s;
	s->link.ns_fd[0] = s->link.ns_fd[1] = -1;
	if (!c->o.warmup_set)
		c->o.warmup = 0;
	for (unsigned v = 0; v < c->nvariants; v++) {
		if (parse_variant(c->variants[v], &s->var[v])) {
			snprintf(err, errlen, "--modes: '%s' is not [qemu-]precopy[-N], "
				 "[qemu-]postcopy or [qemu-]hybrid[-N]", c->variants[v]);
			return -EINVAL;
		}
	}
	{
		int ret = qemu_prepare(c, s, err, errlen);

		if (ret)
			return ret;
	}
	if (!c->o.no_loopback)
		s->links[s->nlinks++] = (struct pc_link){ .veth = false };
	for (unsigned i = 0; i < nrates && s->nlinks < FTB_MAX_GROUPS / 2; i++)
		s->links[s->nlinks++] = (struct pc_link){ .veth = true, .rate_bps = rates[i] };
	if (!s->nlinks) {
		snprintf(err, errlen, "--no-loopback and no --link-rate: nothing to measure");
		return -EINVAL;
	}
	for (unsigned l = 0; l < s->nlinks; l++) {
		for (int h = 0; h < 2; h++) {
			unsigned g = c->ngroups++;

			s->link_of[g] = l;
			s->high[g] = h;
			snprintf(c->groups[g].name, sizeof(c->groups[g].name), "%.24s/%s",
				 link_name(&s->links[l], lname, sizeof(lname)), h ? "high" : "low");
			if (s->links[l].veth && geteuid() != 0) {
				c->groups[g].skipped = true;
				snprintf(c->groups[g].skip_reason,
					 sizeof(c->groups[g].skip_reason),
					 "needs root to create network namespaces");
			}
		}
	}
	json_object_set_new(c->config, "low_rate_writes_per_s", json_integer(PC_LOW_RATE));
	json_object_set_new(c->config, "high_rate_link_factor", json_real(PC_HIGH_FACTOR));
	json_object_set_new(c->config, "advance_writes_per_page",
			    json_integer(PC_ADVANCE_PER_PAGE));
	json_object_set_new(c->config, "workload",
			    json_pack("{s:s, s:i, s:s}", "pattern", "random", "seed", PC_SEED,
				      "dirty", "workload"));
	json_object_set_new(c->config, "destination_memory",
			    json_string(c->o.dst_memfd ? "memfd" : "anon"));
	json_object_set_new(c->config, "data_channels", json_integer(FTR_MIG_DEFAULT_CHANNELS));
	fprintf(c->out, "ftbench --postcopy: %" PRIu64 " MiB synthetic workload (random writes, "
		"%d writes per page beforehand), dirty rates low = %llu writes/s and high = "
		"%.0fx the link's iperf3 goodput; ftrepl with %d data channels into %s memory; "
		"%u run(s) per variant after %u warm-up\n", c->o.size >> 20, PC_ADVANCE_PER_PAGE,
		PC_LOW_RATE, PC_HIGH_FACTOR, FTR_MIG_DEFAULT_CHANNELS,
		c->o.dst_memfd ? "memfd" : "anonymous", c->o.runs, c->o.warmup);
	return 0;
}

/* Link bandwidth in bytes/s: iperf3's goodput, else the tbf rate, else 0. */
static double link_bytes_s(const struct pc_link *l)
{
	if (l->have_ref)
		return l->ref.gbit_s * 1e9 / 8;
	return l->veth && l->rate_bps ? (double)l->rate_bps / 8 : 0;
}

static int floor_timeout_ms(const struct ftb_ctx *c, const struct pc_link *l)
{
	return (int)fmin(60000 + 5000.0 * (double)c->o.size / fmax(link_bytes_s(l), 100e6),
			 3600000.0);
}

/* The transfer floor again with a process spinning beside it (nice 0, in
 * neither namespace's way: it only takes a CPU): on a 2-vCPU host that is
 * the share a workload running flat out takes, as the synthetic writer
 * does on the destination after the switch at the high rate. What is
 * left of the floor's CPUs then bounds any destination that runs its
 * workload while pages arrive. */
static int floor_beside_busy_cpu(const struct ftb_ctx *c, const struct pc_link *l, int tx,
				 int rx, const char *ip, double *s_out, char *err, size_t errlen)
{
	pid_t spin = ftb_fork(-1);
	int ret;

	if (spin < 0) {
		snprintf(err, errlen, "fork: %s", strerror((int)-spin));
		return (int)spin;
	}
	if (!spin) {		/* killed below, or with ftbench (ftb_fork) */
		volatile uint64_t x = 0;

		for (;;)
			x++;
	}
	ret = ftb_bare_stream(tx, rx, ip, c->o.size, FTR_MIG_DEFAULT_CHANNELS,
			      floor_timeout_ms(c, l), s_out, err, errlen);
	ftb_kill(spin);
	ftb_wait(spin, -1);
	return ret;
}

static int measure_link(struct ftb_ctx *c, struct pc_state *s, unsigned g, struct pc_link *l,
			int tx, int rx, const char *ip, char *err, size_t errlen)
{
	int ret;

	ret = ftb_tcp_reference(tx, rx, ip, PC_REFERENCE_SECONDS, c->o.no_iperf, &l->ref, err,
				errlen);
	if (ret && !c->o.no_iperf && !l->veth) {
		ftb_note("[%s] %s; using ftbench's own bulk stream", c->groups[g].name, err);
		ret = ftb_tcp_reference(tx, rx, ip, PC_REFERENCE_SECONDS, true, &l->ref, err,
					errlen);
	}
	if (ret)
		ftb_note("[%s] no TCP reference: %s", c->groups[g].name, err);
	else
		l->have_ref = true;
	ret = tcp_rtt(tx, rx, ip, &l->rtt_med_us, &l->rtt_p99_us, &l->page_rtt_med_us,
		      l->rtt_err, sizeof(l->rtt_err));
	if (ret)
		ftb_note("[%s] no RTT: %s", c->groups[g].name, l->rtt_err);
	else
		l->have_rtt = true;
	/* the floor: the region over the same number of streams into
	 * anonymous memory with UFFDIO_COPY and nothing else */
	ret = ftb_bare_stream(tx, rx, ip, c->o.size, FTR_MIG_DEFAULT_CHANNELS,
			      floor_timeout_ms(c, l), &l->floor_s, l->floor_err,
			      sizeof(l->floor_err));
	if (ret)
		ftb_note("[%s] no transfer floor: %s", c->groups[g].name, l->floor_err);
	else
		l->have_floor = true;
	if (l->have_floor) {
		char berr[160];

		ret = floor_beside_busy_cpu(c, l, tx, rx, ip, &l->floor_busy_s, berr, sizeof(berr));
		if (ret)
			ftb_note("[%s] no transfer floor beside a busy CPU: %s", c->groups[g].name,
				 berr);
		else
			l->have_floor_busy = true;
	}
	if (!s->have_bare && !s->bare_err[0]) {
		struct ftb_bare_result br;

		ret = ftb_bare_fault(FTB_BARE_COPY, PC_BARE_PAGES, &br);
		if (ret || !br.n) {
			snprintf(s->bare_err, sizeof(s->bare_err), "%s",
				 strerror(ret ? -ret : EIO));
		} else {
			s->have_bare = true;
			s->bare_med_us = (double)br.srv_med_ns / 1e3;
			s->bare_p99_us = (double)br.srv_p99_ns / 1e3;
			s->bare_rtt_med_us = (double)br.rtt_med_ns / 1e3;
		}
	}
	l->measured = true;
	ftb_note("[%s] %s %.3f Gbit/s; 1-byte TCP RTT %.1f us; bare UFFDIO_COPY %.1f us; "
		 "transfer floor %.2f s (%.2f s beside a busy CPU)", c->groups[g].name,
		 l->have_ref ? l->ref.tool : "no reference", l->have_ref ? l->ref.gbit_s : 0.0,
		 l->have_rtt ? l->rtt_med_us : 0.0, s->have_bare ? s->bare_med_us : 0.0,
		 l->have_floor ? l->floor_s : 0.0, l->have_floor_busy ? l->floor_busy_s : 0.0);
	return 0;
}

static int pc_group_begin(struct ftb_ctx *c, unsigned g, char *err, size_t errlen)
{
	struct pc_state *s = c->priv;
	struct pc_link *l = &s->links[s->link_of[g]];
	const char *ip = l->veth ? FTB_RX_IP : "127.0.0.1";
	json_t *info = c->groups[g].info;
	int tx = -1, rx = -1, ret;
	double bw;

	if (l->veth) {
		if (!s->link.up) {
			ret = ftb_link_create(&s->link, err, errlen);
			if (ret) {
				for (unsigned h = g + 1; h < c->ngroups; h++) {
					if (s->links[s->link_of[h]].veth) {
						c->groups[h].skipped = true;
						snprintf(c->groups[h].skip_reason,
							 sizeof(c->groups[h].skip_reason), "%s",
							 err);
					}
				}
				return -EOPNOTSUPP;
			}
			ftb_note("created namespaces %s and %s joined by veth ftb-tx/ftb-rx",
				 s->link.ns_name[0], s->link.ns_name[1]);
		}
		if (s->link.rate_bps != l->rate_bps || !l->measured) {
			ret = ftb_link_shape(&s->link, l->rate_bps, err, errlen);
			if (ret)
				return ret;
		}
		tx = s->link.ns_fd[0];
		rx = s->link.ns_fd[1];
	}
	if (!l->measured)
		measure_link(c, s, g, l, tx, rx, ip, err, errlen);
	bw = link_bytes_s(l);
	if (!s->high[g]) {
		s->wrate[g] = PC_LOW_RATE;
	} else if (!bw || bw * PC_HIGH_FACTOR / PC_PAGE >= (double)PC_FLAT_OUT) {
		s->wrate[g] = 0;	/* as fast as the writer goes, ~1M writes/s */
	} else {
		s->wrate[g] = (uint64_t)(bw * PC_HIGH_FACTOR / PC_PAGE);
	}
	json_object_set_new(info, "link", json_string(l->veth ? "veth" : "loopback"));
	json_object_set_new(info, "rate_bps", json_integer((json_int_t)l->rate_bps));
	json_object_set_new(info, "qdisc", l->veth && l->rate_bps ? json_string(s->link.qdisc)
								  : json_null());
	json_object_set_new(info, "dirty", json_string(s->high[g] ? "high" : "low"));
	json_object_set_new(info, "writes_per_s", json_integer((json_int_t)s->wrate[g]));
	json_object_set_new(info, "reference",
			    l->have_ref ? json_pack("{s:s, s:f, s:f, s:I}", "tool", l->ref.tool,
						    "gbit_s", l->ref.gbit_s, "seconds",
						    l->ref.seconds, "retransmits",
						    (json_int_t)l->ref.retransmits)
					: json_null());
	json_object_set_new(info, "size_over_bandwidth_s",
			    bw ? json_real((double)c->o.size / bw) : json_null());
	json_object_set_new(info, "rtt_us",
			    l->have_rtt ? json_pack("{s:f, s:f, s:f, s:i}", "median", l->rtt_med_us,
						    "p99", l->rtt_p99_us, "page_median",
						    l->page_rtt_med_us, "samples", PC_RTT_SAMPLES)
					: json_null());
	if (!s->wrate[g])
		ftb_note("[%s] dirty rate: flat out (the writer's maximum, ~1M writes/s)",
			 c->groups[g].name);
	else
		ftb_note("[%s] dirty rate %" PRIu64 " writes/s = %.1f MB/s", c->groups[g].name,
			 s->wrate[g], (double)s->wrate[g] * PC_PAGE / 1e6);
	return 0;
}

/* How long one migration may take: generous, every round moving the whole
 * region at a third of the link's goodput (at least 100 MB/s assumed),
 * plus a minute. */
static int run_timeout_ms(const struct ftb_ctx *c, const struct pc_link *l,
			  const struct pc_variant *var)
{
	unsigned rounds = var->max_rounds;
	double t_link = (double)c->o.size / fmax(link_bytes_s(l), 100e6);

	if (!rounds)
		rounds = var->mode == FTR_MIG_PRECOPY ? FTR_MIG_DEFAULT_PRECOPY_ROUNDS
						      : FTR_MIG_DEFAULT_HYBRID_ROUNDS;
	return (int)fmin(3.0 * (rounds + 2) * t_link * 1000 + 60000, 3600000.0);
}

/* One qemu-* run: QEMU migrates the test guest on the group's link. */
static int qemu_run(struct ftb_ctx *c, unsigned g, unsigned v, double *m, char *err,
		    size_t errlen)
{
	struct pc_state *s = c->priv;
	struct pc_link *l = &s->links[s->link_of[g]];
	struct ftb_qmig_cfg cfg = {
		.guest = s->qemu_guest,
		.mem_kib = s->qemu_mem_kib,
		.rate = s->wrate[g],
		.seed = PC_SEED,
		.advance = PC_ADVANCE_PER_PAGE,
		.mode = s->var[v].mode,
		.max_rounds = s->var[v].max_rounds,
		.downtime_ms = FTR_MIG_DEFAULT_DOWNTIME_MS,
		.ip = l->veth ? FTB_RX_IP : "127.0.0.1",
		.tx_ns = l->veth ? s->link.ns_fd[0] : -1,
		.rx_ns = l->veth ? s->link.ns_fd[1] : -1,
		.timeout_ms = run_timeout_ms(c, l, &s->var[v]),
	};
	struct ftb_qmig_res r;
	int ret;

	ret = ftb_qmig_run(&cfg, &r, err, errlen);
	if (ret)
		return ret;
	s->guest_pages = r.guest_pages;
	s->nc_err[g][v][0] = '\0';
	if (!r.completed) {
		snprintf(s->nc_err[g][v], sizeof(s->nc_err[g][v]), "%s", r.nc_msg);
		ftb_note("[%s] %s did not converge: %s", c->groups[g].name, c->variants[v],
			 r.nc_msg);
	}
	m[M_TOTAL_S] = r.total_s;
	m[M_CONVERGED] = r.completed;
	m[M_DOWNTIME_MS] = r.downtime_ms;
	m[M_FAULTS] = 0;	/* QEMU 7.2 exposes no per-fault latency nor count */
	m[M_PAGES_SENT] = (double)r.pages;
	m[M_DATA_MB] = (double)r.normal_pages * PC_PAGE / 1e6;
	m[M_PRECOPY_PAGES] = (double)r.precopy_pages;
	m[M_REQUESTED] = (double)r.postcopy_requests;
	m[M_PUSHED] = r.pages > r.precopy_pages + r.postcopy_requests
			      ? (double)(r.pages - r.precopy_pages - r.postcopy_requests)
			      : 0;
	m[M_ROUNDS] = r.rounds;
	m[M_PRECOPY_S] = r.precopy_s;
	m[M_POSTCOPY_S] = r.postcopy_s;
	m[M_DIRTY_MBS] = r.dirty_mb_s;
	m[M_BW_MBS] = r.bandwidth_mb_s;
	m[M_VERIFIED] = r.verified;
	m[M_GUEST_WPS] = r.guest_writes_per_s;
	m[M_QEMU_DOWNTIME_MS] = r.qemu_downtime_ms;
	m[M_SETUP_MS] = r.setup_ms;
	m[M_TRANSFERRED_MB] = (double)r.transferred / 1e6;
	m[M_BLOCKTIME_MS] = r.blocktime_ms;
	if (r.completed)
		ftb_note("[%s] %s: guest %.0f writes/s; %s", c->groups[g].name, c->variants[v],
			 r.guest_writes_per_s, r.verify_line);
	return 0;
}

/* One ftrepl run. */
static int ftrepl_run(struct ftb_ctx *c, unsigned g, unsigned v, double *m, char *err,
		      size_t errlen)
{
	struct pc_state *s = c->priv;
	struct pc_link *l = &s->links[s->link_of[g]];
	struct pc_result sr = { 0 }, dr = { 0 };
	struct pc_cfg cfg = {
		.size = c->o.size,
		.wrate = s->wrate[g],
		.dst_memfd = c->o.dst_memfd,
		.var = s->var[v],
		.ip = l->veth ? FTB_RX_IP : "127.0.0.1",
		.tx_ns = l->veth ? s->link.ns_fd[0] : -1,
		.rx_ns = l->veth ? s->link.ns_fd[1] : -1,
		.timeout_ms = run_timeout_ms(c, l, &s->var[v]),
	};
	int ret;

	ret = migrate_once(&cfg, &sr, &dr, err, errlen);
	if (ret)
		return ret;
	s->nc_err[g][v][0] = '\0';
	if (sr.ret == -EAGAIN && s->var[v].mode == FTR_MIG_PRECOPY) {
		/* did not converge: a result, not a failure */
		snprintf(s->nc_err[g][v], sizeof(s->nc_err[g][v]), "%s", sr.err);
		ftb_note("[%s] %s did not converge: %s", c->groups[g].name, c->variants[v],
			 sr.err);
	} else if (sr.ret) {
		snprintf(err, errlen, "source: %s", sr.err[0] ? sr.err : strerror(-sr.ret));
		return sr.ret;
	} else if (dr.ret) {
		snprintf(err, errlen, "destination: %s", dr.err[0] ? dr.err : strerror(-dr.ret));
		return dr.ret;
	} else if (!dr.verify_ok) {
		snprintf(err, errlen, "destination image: %s",
			 dr.verify_ret ? strerror(-dr.verify_ret) : dr.err);
		return -EIO;
	}
	m[M_TOTAL_S] = (double)sr.st.total_ms / 1e3;
	m[M_CONVERGED] = s->nc_err[g][v][0] ? 0 : 1;
	m[M_DOWNTIME_MS] = (double)sr.st.downtime_us / 1e3;
	m[M_FAULT_MED_US] = (double)dr.st.fault_lat_median_us;
	m[M_FAULT_P99_US] = (double)dr.st.fault_lat_p99_us;
	m[M_FAULT_MAX_US] = (double)dr.st.fault_lat_max_us;
	m[M_FAULTS] = (double)dr.st.faults;
	m[M_PAGES_SENT] = (double)sr.st.pages_sent;
	m[M_DATA_MB] = (double)sr.st.bytes_sent / 1e6;
	m[M_PRECOPY_PAGES] = (double)sr.st.precopy_pages;
	m[M_PUSHED] = (double)sr.st.pushed_pages;
	m[M_REQUESTED] = (double)sr.st.requested_pages;
	m[M_DUP] = (double)dr.st.dup_pages;
	m[M_ROUNDS] = (double)sr.st.round;
	m[M_PRECOPY_S] = (double)sr.st.precopy_ms / 1e3;
	m[M_POSTCOPY_S] = (double)sr.st.postcopy_ms / 1e3;
	m[M_DST_DOWNTIME_MS] = (double)dr.st.downtime_us / 1e3;
	m[M_DST_IN_PLACE_S] = (double)dr.st.postcopy_ms / 1e3;
	m[M_DST_PEAK_RSS_MB] = (double)dr.peak_rss_kb / 1024;
	m[M_DIRTY_MBS] = (double)sr.st.dirty_bytes_per_s / 1e6;
	m[M_BW_MBS] = (double)sr.st.bandwidth_bytes_per_s / 1e6;
	m[M_VERIFIED] = dr.verify_ok ? 1 : 0;
	return 0;
}

/* The link's goodput right now, Gbit/s, with the tool of the group's
 * reference; 0 when there is none or it fails (the note says why). */
static double run_link_gbit(struct ftb_ctx *c, unsigned g, const char *when)
{
	struct pc_state *s = c->priv;
	struct pc_link *l = &s->links[s->link_of[g]];
	struct ftb_tcp_ref ref;
	char err[256];

	if (!l->have_ref)
		return 0;
	if (ftb_tcp_reference(l->veth ? s->link.ns_fd[0] : -1, l->veth ? s->link.ns_fd[1] : -1,
			      l->veth ? FTB_RX_IP : "127.0.0.1", PC_RUN_REF_SECONDS,
			      strcmp(l->ref.tool, "iperf3") != 0, &ref, err, sizeof(err))) {
		ftb_note("[%s] link %s the run not measured: %s", c->groups[g].name, when, err);
		return 0;
	}
	return ref.gbit_s;
}

/*
 * A run, bracketed by two short measurements of the link (PC_RUN_REF_SECONDS
 * each, the group's tool): on a shared host loopback's goodput drifts by 2x
 * within minutes (iperf3 11-25 Gbit/s on one day here), so the group's one
 * reference before its first run says little about the link a later run had.
 * Their mean gives the run's own size / bandwidth, which the hybrid target
 * is checked against (run by run, then the median).
 */
static int pc_run(struct ftb_ctx *c, unsigned g, unsigned v, double *m, char *err,
		  size_t errlen)
{
	struct pc_state *s = c->priv;
	double before = run_link_gbit(c, g, "before"), after;
	int ret;

	if (s->var[v].qemu)
		ret = qemu_run(c, g, v, m, err, errlen);
	else
		ret = ftrepl_run(c, g, v, m, err, errlen);
	if (ret)
		return ret;
	after = run_link_gbit(c, g, "after");
	m[M_RUN_LINK_GBIT] = before && after ? (before + after) / 2 : 0;
	m[M_RUN_SOB_X] = m[M_RUN_LINK_GBIT] ? m[M_TOTAL_S] / ((double)c->o.size /
							     (m[M_RUN_LINK_GBIT] * 1e9 / 8))
					    : 0;
	return 0;
}

static void pc_finish(struct ftb_ctx *c)
{
	struct pc_state *s = c->priv;

	if (!s)
		return;
	if (s->link.up) {
		ftb_link_destroy(&s->link);
		ftb_note("removed namespaces %s and %s", s->link.ns_name[0], s->link.ns_name[1]);
	}
	free(s);
	c->priv = NULL;
}

/* ---- the report ---------------------------------------------------------------------- */

static double med(struct ftb_ctx *c, unsigned g, unsigned v, unsigned k)
{
	struct ftb_stats st;

	ftb_case_stats(c, g, v, k, &st);
	return st.median;
}

/* True when every measured run of the case completed. */
static bool all_completed(struct ftb_ctx *c, unsigned g, unsigned v)
{
	struct ftb_stats st;

	ftb_case_stats(c, g, v, M_CONVERGED, &st);
	return st.n && st.min == 1;
}

static void pc_table(struct ftb_ctx *c)
{
	struct pc_state *s = c->priv;
	FILE *o = c->out;

	fprintf(o, "\n%-16s %-10s %-9s %8s %9s %9s %9s %8s %9s %9s %9s %9s %6s %8s\n", "link/dirty",
		"variant", "result", "total s", "downtime", "fault med", "fault p99", "faults",
		"pages", "precopy", "pushed", "requested", "rounds", "dirty");
	fprintf(o, "%-16s %-10s %-9s %8s %9s %9s %9s %8s %9s %9s %9s %9s %6s %8s\n", "", "", "",
		"", "ms", "us", "us", "", "sent", "pages", "pages", "pages", "", "MB/s");
	for (unsigned g = 0; g < c->ngroups; g++) {
		if (c->groups[g].skipped)
			continue;
		for (unsigned v = 0; v < c->nvariants; v++) {
			bool ok = all_completed(c, g, v);

			fprintf(o, "%-16s %-10s %-9s %8.2f", c->groups[g].name, c->variants[v],
				ok ? "completed" : "no conv.", med(c, g, v, M_TOTAL_S));
			if (ok && s->var[v].qemu)	/* QEMU 7.2 does not expose them */
				fprintf(o, " %9.1f %9s %9s %8s", med(c, g, v, M_DOWNTIME_MS), "n/a",
					"n/a", "n/a");
			else if (ok)
				fprintf(o, " %9.1f %9.0f %9.0f %8.0f", med(c, g, v, M_DOWNTIME_MS),
					med(c, g, v, M_FAULT_MED_US), med(c, g, v, M_FAULT_P99_US),
					med(c, g, v, M_FAULTS));
			else
				fprintf(o, " %9s %9s %9s %8s", "-", "-", "-", "-");
			fprintf(o, " %9.0f %9.0f %9.0f %9.0f %6.0f %8.1f\n",
				med(c, g, v, M_PAGES_SENT), med(c, g, v, M_PRECOPY_PAGES),
				med(c, g, v, M_PUSHED), med(c, g, v, M_REQUESTED),
				med(c, g, v, M_ROUNDS), med(c, g, v, M_DIRTY_MBS));
			if (!ok && s->nc_err[g][v][0])
				fprintf(o, "%-16s   did not converge: %s\n", "", s->nc_err[g][v]);
		}
	}
	fprintf(o, "(medians of %u run(s); total = the source's start to completion, or to giving "
		"up; downtime = the source's pause to the destination's ACK; fault = the "
		"destination's fault read to page installed (UFFDIO_COPY); pages sent = payloads + "
		"zero-fill pages; dirty = the source's last measured precopy round)\n", c->o.runs);
	if (s->qemu_ok)
		fprintf(o, "(qemu-* rows: QEMU 7.2 migrating the test guest on the same link: "
			"total = QEMU's total-time; downtime = STOP on the source to RESUME on the "
			"destination; pages sent = normal + zero pages; requested = "
			"postcopy-requests; pushed = the rest sent after the switch; QEMU 7.2 "
			"exposes no fault latency)\n");
}

static json_t *check(FILE *o, const char *group, const char *variant, const char *what,
		     bool pass, double value, const char *detail)
{
	fprintf(o, "  %-16s %-10s %-44s %s (%s)\n", group, variant, what, pass ? "yes" : "NO",
		detail);
	return json_pack("{s:s, s:s, s:s, s:b, s:f, s:s}", "group", group, "variant", variant,
			 "check", what, "pass", pass, "value", value, "detail", detail);
}

/* The qemu-* variant that matches ftrepl variant v ("qemu-" + its name),
 * or -1. */
static int qemu_twin(const struct ftb_ctx *c, unsigned v)
{
	const struct pc_state *s = c->priv;

	if (s->var[v].qemu)
		return -1;
	for (unsigned w = 0; w < c->nvariants; w++)
		if (s->var[w].qemu && !strcmp(c->variants[w] + strlen(PC_QEMU_PREFIX), c->variants[v]))
			return (int)w;
	return -1;
}

/*
 * ftrepl against QEMU, per group and pair of variants (precopy-5 and
 * qemu-precopy-5, ...): the ratios ftrepl / QEMU of the median total time
 * and downtime (below 1: ftrepl is faster), where both completed. Returns
 * summary.qemu.
 */
static json_t *qemu_summary(struct ftb_ctx *c)
{
	struct pc_state *s = c->priv;
	json_t *pairs = json_array(), *q;
	FILE *o = c->out;

	if (!s->qemu_ok) {
		fprintf(o, "\nQEMU comparison: not measured: %s\n", s->qemu_reason);
		json_decref(pairs);
		return json_pack("{s:b, s:s}", "measured", 0, "reason", s->qemu_reason);
	}
	fprintf(o, "\nftrepl against QEMU (%s, TCG) migrating its test guest on the same link at "
		"the same rate: guest RAM %" PRIu64 " KiB, %u workload pages (%.1f MiB; ftrepl "
		"%" PRIu64 " MiB); ratio = ftrepl / QEMU (below 1: ftrepl faster)\n",
		s->qemu_version[0] ? s->qemu_version : "QEMU", s->qemu_mem_kib, s->guest_pages,
		(double)s->guest_pages * PC_PAGE / (1 << 20), c->o.size >> 20);
	fprintf(o, "%-16s %-10s %9s %8s %8s %7s %9s %9s %7s %8s %9s %8s %9s %9s\n",
		"link/dirty", "ftrepl vs", "guest", "total s", "total s", "total", "downtime",
		"downtime", "down", "QEMU own", "QEMU", "QEMU", "QEMU", "ftrepl");
	fprintf(o, "%-16s %-10s %9s %8s %8s %7s %9s %9s %7s %8s %9s %8s %9s %9s\n", "",
		"qemu-...", "writes/s", "ftrepl", "QEMU", "ratio", "ftrepl ms", "QEMU ms", "ratio",
		"down ms", "blocktime", "requests", "stall/req", "fault med");
	for (unsigned g = 0; g < c->ngroups; g++) {
		if (c->groups[g].skipped)
			continue;
		for (unsigned v = 0; v < c->nvariants; v++) {
			int w = qemu_twin(c, v);
			bool both;
			double tr, dr, stall_us;

			if (w < 0)
				continue;
			both = all_completed(c, g, v) && all_completed(c, g, (unsigned)w);
			tr = both ? med(c, g, v, M_TOTAL_S) / med(c, g, (unsigned)w, M_TOTAL_S) : 0;
			dr = both && med(c, g, (unsigned)w, M_DOWNTIME_MS) > 0
				     ? med(c, g, v, M_DOWNTIME_MS) /
					       med(c, g, (unsigned)w, M_DOWNTIME_MS)
				     : 0;
			/* the mean time the vCPU waited per postcopy request */
			stall_us = med(c, g, (unsigned)w, M_REQUESTED) > 0
					   ? med(c, g, (unsigned)w, M_BLOCKTIME_MS) * 1e3 /
						     med(c, g, (unsigned)w, M_REQUESTED)
					   : 0;
			fprintf(o, "%-16s %-10s %9.0f", c->groups[g].name, c->variants[v],
				med(c, g, (unsigned)w, M_GUEST_WPS));
			if (both)
				fprintf(o, " %8.2f %8.2f %6.2fx %9.1f %9.1f %6.2fx %8.1f %9.0f %8.0f "
					"%7.0f us %6.0f us\n", med(c, g, v, M_TOTAL_S),
					med(c, g, (unsigned)w, M_TOTAL_S), tr,
					med(c, g, v, M_DOWNTIME_MS),
					med(c, g, (unsigned)w, M_DOWNTIME_MS), dr,
					med(c, g, (unsigned)w, M_QEMU_DOWNTIME_MS),
					med(c, g, (unsigned)w, M_BLOCKTIME_MS),
					med(c, g, (unsigned)w, M_REQUESTED), stall_us,
					med(c, g, v, M_FAULT_MED_US));
			else
				fprintf(o, "   n/a: %s did not converge\n",
					all_completed(c, g, v) ? c->variants[w] : c->variants[v]);
			json_array_append_new(
				pairs,
				json_pack("{s:s, s:s, s:s, s:b, s:o, s:o, s:f, s:f, s:f, s:f, s:f, "
					  "s:f, s:f}",
					  "group", c->groups[g].name, "ftrepl", c->variants[v], "qemu",
					  c->variants[w], "both_completed", both, "total_ratio",
					  both ? json_real(tr) : json_null(), "downtime_ratio",
					  both && dr > 0 ? json_real(dr) : json_null(),
					  "ftrepl_total_s", med(c, g, v, M_TOTAL_S), "qemu_total_s",
					  med(c, g, (unsigned)w, M_TOTAL_S), "ftrepl_downtime_ms",
					  med(c, g, v, M_DOWNTIME_MS), "qemu_downtime_ms",
					  med(c, g, (unsigned)w, M_DOWNTIME_MS), "guest_writes_per_s",
					  med(c, g, (unsigned)w, M_GUEST_WPS),
					  "qemu_stall_per_request_us", stall_us,
					  "ftrepl_fault_median_us", med(c, g, v, M_FAULT_MED_US)));
		}
	}
	fprintf(o, "(medians; QEMU: max-bandwidth unlimited, downtime-limit %u ms = ftrepl's "
		"target, one stream, default capabilities otherwise; qemu-precopy-N is cancelled "
		"by ftbench after round N, qemu-hybrid-N starts postcopy after round N, "
		"qemu-hybrid applies ftrepl's rule (dirty rate >= half the bandwidth, at most 5 rounds); "
		"QEMU 7.2 exposes no per-fault latency: blocktime = the destination's "
		"postcopy-blocktime (total time the vCPU waited for pages), requests = "
		"postcopy-requests, stall/req = their quotient (a mean, against ftrepl's "
		"median fault service); the guest's write rate is measured on the source before "
		"`migrate`; flat out it is the TCG vCPU's maximum, not ftrepl's writer's)\n",
		FTR_MIG_DEFAULT_DOWNTIME_MS);
	q = json_pack("{s:b, s:s, s:s, s:I, s:i, s:i, s:I, s:s, s:o}", "measured", 1, "qemu",
		      s->qemu_version, "guest", s->qemu_guest, "guest_mem_kib",
		      (json_int_t)s->qemu_mem_kib, "guest_pages", (int)s->guest_pages,
		      "downtime_limit_ms", FTR_MIG_DEFAULT_DOWNTIME_MS, "max_bandwidth",
		      (json_int_t)100000000000ll, "fault_latency",
		      "not exposed by QEMU 7.2: see blocktime_ms (postcopy-blocktime) and "
		      "requested_pages (postcopy-requests) of the qemu-* cases",
		      "pairs", pairs);
	return q;
}

static void pc_summary(struct ftb_ctx *c)
{
	struct pc_state *s = c->priv;
	json_t *checks = json_array(), *nc = json_array(), *links = json_array();
	FILE *o = c->out;
	char d[480], lname[32];

	fprintf(o, "\nBaselines (same run):\n");
	for (unsigned l = 0; l < s->nlinks; l++) {
		struct pc_link *k = &s->links[l];
		double bw = link_bytes_s(k);

		if (!k->measured)
			continue;
		link_name(k, lname, sizeof(lname));
		fprintf(o, "  %-10s link %s", lname, k->have_ref ? k->ref.tool : "-");
		if (k->have_ref)
			fprintf(o, " %.3f Gbit/s", k->ref.gbit_s);
		if (bw)
			fprintf(o, ", size/bandwidth %.2f s", (double)c->o.size / bw);
		if (k->have_rtt)
			fprintf(o, "; 1-byte TCP RTT median %.1f us (p99 %.1f); 4 KiB to the "
				"destination, 1 byte back %.1f us", k->rtt_med_us, k->rtt_p99_us,
				k->page_rtt_med_us);
		else
			fprintf(o, "; RTT not measured: %s", k->rtt_err);
		if (k->have_floor)
			fprintf(o, "\n             transfer floor (the region over %d streams into "
				"userfaultfd memory with UFFDIO_COPY, no protocol, no checksum) "
				"%.2f s = %.2fx size/bandwidth", FTR_MIG_DEFAULT_CHANNELS,
				k->floor_s, bw ? k->floor_s / ((double)c->o.size / bw) : 0.0);
		else
			fprintf(o, "\n             transfer floor not measured: %s", k->floor_err);
		if (k->have_floor_busy)
			fprintf(o, "\n             the floor with one CPU kept busy beside it (a "
				"spinning process: the share a workload running flat out takes) "
				"%.2f s = %.2fx size/bandwidth", k->floor_busy_s,
				bw ? k->floor_busy_s / ((double)c->o.size / bw) : 0.0);
		fputc('\n', o);
		json_array_append_new(
			links, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "link", lname,
					 "floor_s",
					 k->have_floor ? json_real(k->floor_s) : json_null(),
					 "floor_busy_cpu_s",
					 k->have_floor_busy ? json_real(k->floor_busy_s) : json_null(),
					 "gbit_s",
					 k->have_ref ? json_real(k->ref.gbit_s) : json_null(),
					 "size_over_bandwidth_s",
					 bw ? json_real((double)c->o.size / bw) : json_null(),
					 "rtt_median_us",
					 k->have_rtt ? json_real(k->rtt_med_us) : json_null(),
					 "rtt_p99_us",
					 k->have_rtt ? json_real(k->rtt_p99_us) : json_null(),
					 "page_rtt_median_us",
					 k->have_rtt ? json_real(k->page_rtt_med_us) : json_null()));
	}
	if (s->have_bare)
		fprintf(o, "  bare UFFDIO_COPY (handler read to COPY done): median %.1f us, p99 %.1f "
			"us; faulting thread's round trip %.1f us\n", s->bare_med_us,
			s->bare_p99_us, s->bare_rtt_med_us);
	else
		fprintf(o, "  bare UFFDIO_COPY: not measured: %s\n", s->bare_err);
	json_object_set_new(c->baselines, "links", links);
	json_object_set_new(c->baselines, "bare_copy",
			    s->have_bare ? json_pack("{s:f, s:f, s:f, s:i}", "median_us",
						     s->bare_med_us, "p99_us", s->bare_p99_us,
						     "fault_round_trip_median_us",
						     s->bare_rtt_med_us, "faults", PC_BARE_PAGES)
					 : json_null());

	fprintf(o, "\nTargets (ftrepl issue 5; printed, not asserted):\n");
	for (unsigned g = 0; g < c->ngroups; g++) {
		struct pc_link *k = &s->links[s->link_of[g]];
		double bw = link_bytes_s(k), t_link = bw ? (double)c->o.size / bw : 0;
		bool above = s->high[g] && (!s->wrate[g] || (double)s->wrate[g] * PC_PAGE > bw);

		if (c->groups[g].skipped)
			continue;
		for (unsigned v = 0; v < c->nvariants; v++) {
			const char *gn = c->groups[g].name, *vn = c->variants[v];

			if (!all_completed(c, g, v)) {
				json_array_append_new(nc, json_pack("{s:s, s:s, s:s}", "group", gn,
								    "variant", vn, "error",
								    s->nc_err[g][v]));
				continue;
			}
			if (s->var[v].qemu)	/* ftrepl's targets; QEMU is compared below */
				continue;
			/* the library's hybrid policy (plain "hybrid"); hybrid-N
			 * forces N rounds, a comparison point for QEMU's, which at
			 * a dirty rate above the link sends the memory more than
			 * once by construction */
			if (s->var[v].mode == FTR_MIG_HYBRID && !s->var[v].max_rounds && above &&
			    t_link) {
				double x = med(c, g, v, M_TOTAL_S) / t_link;
				struct ftb_stats rl, rx;

				/* each run against the link measured around it
				 * (pc_run) where every run has that; else the
				 * group's reference */
				ftb_case_stats(c, g, v, M_RUN_LINK_GBIT, &rl);
				ftb_case_stats(c, g, v, M_RUN_SOB_X, &rx);
				if (rl.n && rl.min > 0) {
					snprintf(d, sizeof(d), "runs' total / (size / the link "
						 "around the run, %.1f-%.1f Gbit/s): median %.2fx, "
						 "%.2f-%.2fx; against the group's reference "
						 "%.2f s / %.2f s = %.2fx", rl.min, rl.max,
						 rx.median, rx.min, rx.max,
						 med(c, g, v, M_TOTAL_S), t_link, x);
					x = rx.median;
				} else {
					snprintf(d, sizeof(d), "%.2f s / %.2f s = %.2fx",
						 med(c, g, v, M_TOTAL_S), t_link, x);
				}
				if (k->have_floor)
					snprintf(d + strlen(d), sizeof(d) - strlen(d),
						 "; the transfer floor itself %.2fx (%.2f s), "
						 "the total %.2fx the floor",
						 k->floor_s / t_link, k->floor_s,
						 med(c, g, v, M_TOTAL_S) / k->floor_s);
				if (k->have_floor_busy)
					snprintf(d + strlen(d), sizeof(d) - strlen(d),
						 "; with one CPU busy beside it %.2fx (%.2f s)",
						 k->floor_busy_s / t_link, k->floor_busy_s);
				json_array_append_new(checks,
					check(o, gn, vn, "hybrid total within 1.3x of size/bw",
					      x <= PC_HYBRID_MAX_X, x, d));
			}
			snprintf(d, sizeof(d), "%.1f ms", med(c, g, v, M_DOWNTIME_MS));
			json_array_append_new(checks, check(o, gn, vn, "downtime under 50 ms",
							    med(c, g, v, M_DOWNTIME_MS) <
								    PC_DOWNTIME_MAX_MS,
							    med(c, g, v, M_DOWNTIME_MS), d));
			/* only where pages were asked for over the link: after a
			 * complete precopy every fault is a local install */
			if (med(c, g, v, M_REQUESTED) > 0 && s->have_bare && k->have_rtt) {
				double ref = s->bare_med_us + k->rtt_med_us;
				double x = med(c, g, v, M_FAULT_MED_US) / ref;

				/* the 1-byte RTT leaves out the page's own time on
				 * the wire; the page round trip is shown beside */
				snprintf(d, sizeof(d), "%.0f us / (%.1f + %.1f us) = %.2fx; "
					 "with the 4 KiB round trip %.2fx",
					 med(c, g, v, M_FAULT_MED_US), s->bare_med_us,
					 k->rtt_med_us, x,
					 med(c, g, v, M_FAULT_MED_US) /
						 (s->bare_med_us + k->page_rtt_med_us));
				json_array_append_new(checks,
					check(o, gn, vn, "fault median within 3x of COPY + RTT",
					      x <= PC_FAULT_MAX_X, x, d));
			}
		}
	}
	json_object_set_new(c->summary, "checks", checks);
	json_object_set_new(c->summary, "did_not_converge", nc);
	json_object_set_new(c->summary, "qemu", qemu_summary(c));
}

static void pc_report(struct ftb_ctx *c)
{
	pc_table(c);
	pc_summary(c);
}

const struct ftb_mode ftb_mode_postcopy = {
	.name = "postcopy",
	.summary = "live migration (ftrepl issue 5) of the synthetic workload, precopy-N /\n"
		   "postcopy / hybrid[-N], over loopback and a tbf-shaped veth (needs root),\n"
		   "at a low dirty rate (2000 writes/s) and at 2x the link's iperf3 goodput:\n"
		   "total time, downtime, fault latency median/p99, pages moved; baselines in\n"
		   "the same run: iperf3 (size/bandwidth; also 1 s before and after each run),\n"
		   "a transfer floor (the region into userfaultfd memory with UFFDIO_COPY and\n"
		   "nothing else; again beside a busy CPU), a 1-byte TCP ping-pong, a bare\n"
		   "UFFDIO_COPY fault; precopy\n"
		   "that cannot converge says 'did not converge'.\n"
		   "qemu-* variants: QEMU 7.2 (TCG) migrating a test guest of the same size\n"
		   "writing pages at the same rate, on the same links, in the same run, with\n"
		   "ftrepl/QEMU ratios (skipped, with the reason, without qemu-system-x86_64)",
	.example = "ftbench --postcopy --size 128M",
	.duration = "takes about 1.5 min at 128M; about 12 min with the defaults (1G, 1 run,\n"
		    "no warm-up; a 1G migration over 1 Gbit/s takes ~9 s per round; the qemu-*\n"
		    "variants add ~3 min at 1G, 45 s at 128M)",
	.default_variants = "precopy-5,postcopy,hybrid,hybrid-1,qemu-precopy-5,qemu-postcopy,"
			    "qemu-hybrid,qemu-hybrid-1",
	.default_size = 1ull << 30,
	.default_runs = 1,
	.metrics = metrics,
	.nmetrics = M__COUNT,
	.prepare = pc_prepare,
	.group_begin = pc_group_begin,
	.run = pc_run,
	.report = pc_report,
	.finish = pc_finish,
};
