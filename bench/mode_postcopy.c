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
 *                zero fill), dirty tracking by the workload itself, one data
 *                channel, ftr_migrate_src_run().
 *
 * Both send their status (struct ftr_migrate_status) back over a pipe.
 * Precopy that does not converge (the library fails with -EAGAIN and a
 * message naming the dirty rate and the bandwidth) is a result of the run,
 * "did not converge", not a failure of the bench.
 *
 * Baselines per link, in the same run: iperf3 goodput (ftb_tcp_reference),
 * a TCP ping-pong of 1 byte (RTT, a server child in the receiver's
 * namespace, a client child in the sender's), and a bare UFFDIO_COPY fault
 * round trip (in this process: a handler thread, the faulting main thread,
 * anonymous memory registered MISSING; the handler's read-to-COPY time is
 * the interval the destination's fault latency measures).
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
	M_DIRTY_MBS,
	M_BW_MBS,
	M_VERIFIED,
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
	[M_DIRTY_MBS] = { "dirty_mb_s", "MB/s" },
	[M_BW_MBS] = { "bandwidth_mb_s", "MB/s" },
	[M_VERIFIED] = { "verified", "" },
};

#define PC_PAGE 4096ull
#define PC_SEED 5
#define PC_LOW_RATE 2000ull		/* writes/s: 8.2 MB/s, far below 1 Gbit/s */
#define PC_HIGH_FACTOR 2.0		/* high rate = 2 x the link's iperf3 goodput */
#define PC_FLAT_OUT 1000000ull		/* the synthetic writer tops out near here */
#define PC_ADVANCE_PER_PAGE 3		/* writes per page before the start: 95 % data */
#define PC_REFERENCE_SECONDS 3.0
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
};

/* One link's baselines, measured once for both of its rates. */
struct pc_link {
	bool veth;
	uint64_t rate_bps;		/* tbf rate, 0 = unshaped / loopback */
	bool measured;
	bool have_ref;
	struct ftb_tcp_ref ref;
	bool have_rtt;
	double rtt_med_us, rtt_p99_us;
	char rtt_err[128];
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
	char qemu_reason[256];
};

/* ---- variants ------------------------------------------------------------------------ */

static int parse_variant(const char *name, struct pc_variant *v)
{
	static const struct { const char *prefix; enum ftr_migrate_mode mode; } kinds[] = {
		{ "precopy", FTR_MIG_PRECOPY },
		{ "postcopy", FTR_MIG_POSTCOPY },
		{ "hybrid", FTR_MIG_HYBRID },
	};

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
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int ls, s, one = 1;
	uint16_t port = 0;
	char b;

	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, ip, &a.sin_addr);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&a, &alen)) {
		ftb_write_full(port_fd, &port, sizeof(port));
		_exit(1);
	}
	port = ntohs(a.sin_port);
	ftb_write_full(port_fd, &port, sizeof(port));
	s = accept(ls, NULL, NULL);
	if (s < 0)
		_exit(1);
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (read(s, &b, 1) == 1)
		if (write(s, &b, 1) != 1)
			break;
	_exit(0);
}

struct rtt_res {
	int32_t ret;
	uint64_t med_ns, p99_ns;
};

static void __attribute__((noreturn)) ping_child(const char *ip, uint16_t port, int rep_fd)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct rtt_res r = { .ret = 0 };
	uint64_t *v = calloc(PC_RTT_SAMPLES, sizeof(*v));
	int s, one = 1;
	char b = 'x';

	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, ip, &a.sin_addr);
	if (!v || s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a))) {
		r.ret = -errno;
		goto out;
	}
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* 100 unrecorded round trips first (slow start, caches) */
	for (int i = -100; i < PC_RTT_SAMPLES; i++) {
		uint64_t t0 = ftb_now_ns();

		if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1) {
			r.ret = -EPIPE;
			goto out;
		}
		if (i >= 0)
			v[i] = ftb_now_ns() - t0;
	}
	ftb_u64_pcts(v, PC_RTT_SAMPLES, &r.med_ns, &r.p99_ns);
out:
	ftb_write_full(rep_fd, &r, sizeof(r));
	_exit(0);
}

/* The round trip of 1 byte over TCP from tx_ns to rx_ns (-1: this one). */
static int tcp_rtt(int tx_ns, int rx_ns, const char *ip, double *med_us, double *p99_us,
		   char *err, size_t errlen)
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
	struct ftr_migrate_status st;
	char err[256];
};

struct pc_cfg {
	uint64_t size;
	uint64_t wrate;			/* writes/s, 0 = flat out */
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
		.mem = FTR_MIG_MEM_ANON,
		.resume_synth = true,
		.synth_writes = 0,	/* until stopped */
		.synth_rate = cfg->wrate,
	};
	struct pc_result r = { .ret = -EIO, .verify_ret = -ENODATA };
	struct ftr_migrate_dst *dst = NULL;
	struct ftr_synth_verdict v;
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

/* The QEMU comparison needs a ready guest; FACTS.md only says how one
 * could be built. */
static void qemu_check(struct pc_state *s)
{
	if (!ftb_have_program("qemu-system-x86_64"))
		snprintf(s->qemu_reason, sizeof(s->qemu_reason),
			 "qemu-system-x86_64 is not installed");
	else
		snprintf(s->qemu_reason, sizeof(s->qemu_reason),
			 "qemu-system-x86_64 is installed, but no ready guest exists: "
			 "FACTS.md only describes how a multiboot test guest could be built, "
			 "and ftrepl has no QEMU glue yet (src/qemu-glue is 'later')");
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
			 "--link-rate, --no-loopback, --no-iperf, --json only");
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
			snprintf(err, errlen, "--modes: '%s' is not precopy[-N], postcopy or "
				 "hybrid[-N]", c->variants[v]);
			return -EINVAL;
		}
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
	qemu_check(s);
	json_object_set_new(c->config, "low_rate_writes_per_s", json_integer(PC_LOW_RATE));
	json_object_set_new(c->config, "high_rate_link_factor", json_real(PC_HIGH_FACTOR));
	json_object_set_new(c->config, "advance_writes_per_page",
			    json_integer(PC_ADVANCE_PER_PAGE));
	json_object_set_new(c->config, "workload",
			    json_pack("{s:s, s:i, s:s}", "pattern", "random", "seed", PC_SEED,
				      "dirty", "workload"));
	json_object_set_new(c->config, "destination_memory", json_string("anon"));
	fprintf(c->out, "ftbench --postcopy: %" PRIu64 " MiB synthetic workload (random writes, "
		"%d writes per page beforehand), dirty rates low = %llu writes/s and high = "
		"%.0fx the link's iperf3 goodput; %u run(s) per variant after %u warm-up\n",
		c->o.size >> 20, PC_ADVANCE_PER_PAGE, PC_LOW_RATE, PC_HIGH_FACTOR, c->o.runs,
		c->o.warmup);
	return 0;
}

/* Link bandwidth in bytes/s: iperf3's goodput, else the tbf rate, else 0. */
static double link_bytes_s(const struct pc_link *l)
{
	if (l->have_ref)
		return l->ref.gbit_s * 1e9 / 8;
	return l->veth && l->rate_bps ? (double)l->rate_bps / 8 : 0;
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
	ret = tcp_rtt(tx, rx, ip, &l->rtt_med_us, &l->rtt_p99_us, l->rtt_err,
		      sizeof(l->rtt_err));
	if (ret)
		ftb_note("[%s] no RTT: %s", c->groups[g].name, l->rtt_err);
	else
		l->have_rtt = true;
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
	ftb_note("[%s] %s %.3f Gbit/s; 1-byte TCP RTT %.1f us; bare UFFDIO_COPY %.1f us",
		 c->groups[g].name, l->have_ref ? l->ref.tool : "no reference",
		 l->have_ref ? l->ref.gbit_s : 0.0, l->have_rtt ? l->rtt_med_us : 0.0,
		 s->have_bare ? s->bare_med_us : 0.0);
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
			    l->have_rtt ? json_pack("{s:f, s:f, s:i}", "median", l->rtt_med_us,
						    "p99", l->rtt_p99_us, "samples",
						    PC_RTT_SAMPLES)
					: json_null());
	if (!s->wrate[g])
		ftb_note("[%s] dirty rate: flat out (the writer's maximum, ~1M writes/s)",
			 c->groups[g].name);
	else
		ftb_note("[%s] dirty rate %" PRIu64 " writes/s = %.1f MB/s", c->groups[g].name,
			 s->wrate[g], (double)s->wrate[g] * PC_PAGE / 1e6);
	return 0;
}

static int pc_run(struct ftb_ctx *c, unsigned g, unsigned v, double *m, char *err,
		  size_t errlen)
{
	struct pc_state *s = c->priv;
	struct pc_link *l = &s->links[s->link_of[g]];
	struct pc_result sr = { 0 }, dr = { 0 };
	double bw = link_bytes_s(l), t_link;
	unsigned rounds = s->var[v].max_rounds;
	struct pc_cfg cfg = {
		.size = c->o.size,
		.wrate = s->wrate[g],
		.var = s->var[v],
		.ip = l->veth ? FTB_RX_IP : "127.0.0.1",
		.tx_ns = l->veth ? s->link.ns_fd[0] : -1,
		.rx_ns = l->veth ? s->link.ns_fd[1] : -1,
	};
	int ret;

	/* generous: every round moving the whole region at a third of the
	 * link's goodput (at least 100 MB/s assumed), plus a minute */
	if (!rounds)
		rounds = s->var[v].mode == FTR_MIG_PRECOPY ? FTR_MIG_DEFAULT_PRECOPY_ROUNDS
							   : FTR_MIG_DEFAULT_HYBRID_ROUNDS;
	t_link = (double)c->o.size / fmax(bw, 100e6);
	cfg.timeout_ms = (int)fmin(3.0 * (rounds + 2) * t_link * 1000 + 60000, 3600000.0);
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
	m[M_DIRTY_MBS] = (double)sr.st.dirty_bytes_per_s / 1e6;
	m[M_BW_MBS] = (double)sr.st.bandwidth_bytes_per_s / 1e6;
	m[M_VERIFIED] = dr.verify_ok ? 1 : 0;
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
			if (ok)
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
}

static json_t *check(FILE *o, const char *group, const char *variant, const char *what,
		     bool pass, double value, const char *detail)
{
	fprintf(o, "  %-16s %-10s %-44s %s (%s)\n", group, variant, what, pass ? "yes" : "NO",
		detail);
	return json_pack("{s:s, s:s, s:s, s:b, s:f, s:s}", "group", group, "variant", variant,
			 "check", what, "pass", pass, "value", value, "detail", detail);
}

static void pc_summary(struct ftb_ctx *c)
{
	struct pc_state *s = c->priv;
	json_t *checks = json_array(), *nc = json_array(), *links = json_array();
	FILE *o = c->out;
	char d[160], lname[32];

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
			fprintf(o, "; 1-byte TCP RTT median %.1f us (p99 %.1f)", k->rtt_med_us,
				k->rtt_p99_us);
		else
			fprintf(o, "; RTT not measured: %s", k->rtt_err);
		fputc('\n', o);
		json_array_append_new(
			links, json_pack("{s:s, s:o, s:o, s:o, s:o}", "link", lname, "gbit_s",
					 k->have_ref ? json_real(k->ref.gbit_s) : json_null(),
					 "size_over_bandwidth_s",
					 bw ? json_real((double)c->o.size / bw) : json_null(),
					 "rtt_median_us",
					 k->have_rtt ? json_real(k->rtt_med_us) : json_null(),
					 "rtt_p99_us",
					 k->have_rtt ? json_real(k->rtt_p99_us) : json_null()));
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
			if (s->var[v].mode == FTR_MIG_HYBRID && above && t_link) {
				double x = med(c, g, v, M_TOTAL_S) / t_link;

				snprintf(d, sizeof(d), "%.2f s / %.2f s = %.2fx",
					 med(c, g, v, M_TOTAL_S), t_link, x);
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

				snprintf(d, sizeof(d), "%.0f us / (%.1f + %.1f us) = %.2fx",
					 med(c, g, v, M_FAULT_MED_US), s->bare_med_us,
					 k->rtt_med_us, x);
				json_array_append_new(checks,
					check(o, gn, vn, "fault median within 3x of COPY + RTT",
					      x <= PC_FAULT_MAX_X, x, d));
			}
		}
	}
	fprintf(o, "QEMU comparison: not measured: %s\n", s->qemu_reason);
	json_object_set_new(c->summary, "checks", checks);
	json_object_set_new(c->summary, "did_not_converge", nc);
	json_object_set_new(c->summary, "qemu",
			    json_pack("{s:b, s:s}", "measured", 0, "reason", s->qemu_reason));
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
		   "the same run: iperf3 (size/bandwidth), a 1-byte TCP ping-pong, a bare\n"
		   "UFFDIO_COPY fault; precopy that cannot converge says 'did not converge'",
	.example = "ftbench --postcopy --size 256M",
	.duration = "takes about 1 min at 256M; about 4-5 min with the defaults (1G, 1 run,\n"
		    "no warm-up; a 1G migration over 1 Gbit/s takes ~9 s per round)",
	.default_variants = "precopy-5,postcopy,hybrid,hybrid-1",
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
