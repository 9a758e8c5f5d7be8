/* SPDX-License-Identifier: MIT */
/*
 * One replication run through the real library, sender and receiver each
 * in a process of its own (so each side's CPU time is its own, and each
 * can sit in its own network namespace).
 *
 * Processes of a run:
 *   - the standby child (ftr_standby_*): listens on cfg->rx_ip, answers
 *     "sample" bytes on a pipe with its CPU time and counters, stops at EOF;
 *     either fresh for the run or kept by the caller across runs (each run
 *     is then a new session on it, and its cache is already populated);
 *   - the primary child (ftr_primary_* with the synthetic workload): an
 *     engine thread runs ftr_primary_run(), the child's main thread
 *     ("monitor") watches the status, samples both sides at the start and
 *     the end of the measured part, and writes one result to the parent;
 *   - the parent only starts them, waits (bounded) and collects.
 *
 * FTB_MEASURE_SYNC is the initial sync: every page of the region once (not
 * live, no rate limit), as a migration's bulk copy. The region holds
 * distinct pages (the synthetic workload's writes, seq pattern) and, at
 * its end, never-written pages, which the primary finds to be fill pages
 * (ftr_page_is_fill) and sends as 16-byte ZERO_PAGES entries. The
 * workload's writer runs at its slowest rate (one write per second), so a
 * page or two written during the sync is sent again while paused; the
 * result counts them (resent). The time runs from ftr_primary_run() (before
 * connecting) to the standby's ACK of epoch 0, i.e. until every page is in
 * the standby's cache: the primary's sync_ns plus the ACK latency of epoch
 * 0, read before any later epoch exists (the epoch timer is set far out and
 * the monitor stops the primary once it sees the ACK).
 *
 * FTB_MEASURE_EPOCHS is --dirty full: every page, every epoch, through the
 * standby's staging slots, measured from the end of the initial sync to
 * the last ACK (the primary's epochs_ns).
 *
 * --writev-vs-write runs tcp in one mode with one data channel; --transports
 * also gives the transport options (rdma, zero-copy fallback off), the
 * channel count and no data CRCs, and longer engine timeouts (rdma under
 * TCG). Either way the primary's status must show the transport and channel
 * count asked for, and the zero-copy counters of the measured part (zero
 * outside the tcp zero-copy modes) come back with the result.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/ftrepl.h>
#include <ftrepl/synth.h>
#include <ftrepl/transport.h>

#include "ftbench.h"

#define SYNC_EPOCH_MS (10 * 60 * 1000) /* no timer-driven epoch during a sync run */
#define SYNC_STAGING (16ull << 20)     /* the sync goes straight to the cache */
#define MONITOR_POLL_US 2000
#define ENGINE_TIMEOUT_MS 30000	/* failover and stall, unless the cfg says */

/* What the standby child reports. */
struct rx_sample {
	uint64_t cpu_ns;
	uint64_t rx_syscalls;
	uint64_t pages;
	uint64_t fill_pages;
	uint64_t committed;
	int busy;		/* 'w': still in a session after the wait */
};

/* What the primary child reports. */
struct tx_report {
	int ret;
	struct ftb_repl_res res;
	char err[256];
};

void ftb_region_split(uint64_t size, double share, uint64_t *distinct, uint64_t *fill)
{
	uint64_t n = size / FTR_SYNTH_PAGE, f = (uint64_t)llround(share * (double)n);

	/* Page 0 (control) and at least one data page are distinct. */
	if (f > n - 2)
		f = n - 2;
	*fill = f;
	*distinct = n - f;
}

static int read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	uint64_t end = ftb_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = ftb_now_ns();
		ssize_t n;

		if (now >= end)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)((end - now) / 1000000ull) + 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			continue;
		n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		got += (size_t)n;
	}
	return 0;
}

/* The run as messages name it: cfg->name, or "tcp/MODE". */
static const char *run_name(const struct ftb_repl_cfg *cfg, char *buf, size_t len)
{
	if (cfg->name)
		return cfg->name;
	snprintf(buf, len, "tcp/%s", cfg->tcp_mode ? cfg->tcp_mode : "writev");
	return buf;
}

static int engine_timeout(const struct ftb_repl_cfg *cfg)
{
	return cfg->engine_timeout_ms ? cfg->engine_timeout_ms : ENGINE_TIMEOUT_MS;
}

/* ---- the standby child ---------------------------------------------------------- */

static void __attribute__((noreturn))
standby_child(const struct ftb_repl_cfg *cfg, int cmd_fd, int rep_fd)
{
	struct ftr_standby_opts o = {
		.cache_size = cfg->size,
		.staging_size = cfg->measure == FTB_MEASURE_EPOCHS ? cfg->size
			: (cfg->size < SYNC_STAGING ? cfg->size : SYNC_STAGING),
		.failover_timeout_ms = engine_timeout(cfg),
		.stall_timeout_ms = engine_timeout(cfg),
		.handshake_timeout_ms = cfg->engine_timeout_ms, /* 0: the default */
	};
	char listen[96], err[256] = "";
	struct ftr_standby *sb;
	uint16_t port;
	char c;

	ftr_log_set_ident("ftbench-standby");
	/* A reused standby warns that each run's session replaces the last. */
	ftr_log_set_level(FTR_LOG_ERROR);
	snprintf(listen, sizeof(listen), "%s:0", cfg->rx_ip);
	o.listen = listen;
	if (cfg->tp)
		o.tp = *cfg->tp;
	if (ftr_standby_create(&o, &sb, err, sizeof(err)) || ftr_standby_start(sb)) {
		fprintf(stderr, "ftbench: standby: %s\n", err[0] ? err : "cannot start");
		_exit(1);
	}
	port = ftr_standby_port(sb);
	if (write(rep_fd, &port, sizeof(port)) != sizeof(port))
		_exit(1);
	while (read(cmd_fd, &c, 1) == 1) {
		struct ftr_standby_status st;
		struct rx_sample s;

		memset(&s, 0, sizeof(s));
		/* 'w': wait until the previous session has ended in order
		 * (BYE: degraded) and a new one may begin */
		if (c == 'w' && ftr_standby_wait_state(sb, (1u << FTR_STATE_CONNECTING) |
						       (1u << FTR_STATE_DEGRADED), 30000) < 0)
			s.busy = 1;
		ftr_standby_get_status(sb, &st);
		s.cpu_ns = ftb_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
		s.rx_syscalls = st.rx_syscalls;
		s.pages = st.pages_received;
		s.fill_pages = st.zero_pages;
		s.committed = st.committed;
		if (write(rep_fd, &s, sizeof(s)) != sizeof(s))
			break;
	}
	ftr_standby_stop(sb);
	ftr_standby_destroy(sb);
	_exit(0);
}

static int rx_sample(int cmd_fd, int rep_fd, struct rx_sample *s)
{
	char c = 's';

	if (write(cmd_fd, &c, 1) != 1)
		return -EPIPE;
	return read_full(rep_fd, s, sizeof(*s), 30000);
}

/* ---- the primary child ------------------------------------------------------------ */

/* CPU clocks of the primary process: the engine thread, and the process
 * without this monitor thread. */
struct tx_cpu {
	uint64_t engine, proc;
};

static struct tx_cpu tx_cpu_now(clockid_t engine_clk)
{
	struct tx_cpu c;

	c.engine = ftb_clock_ns(engine_clk);
	c.proc = ftb_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - ftb_clock_ns(CLOCK_THREAD_CPUTIME_ID);
	return c;
}

static int make_workload(const struct ftb_repl_cfg *cfg, struct ftr_workload **wl)
{
	struct ftr_synth_spec spec = { .size = cfg->size, .seed = 7, .rate = 1,
				       .pattern = FTR_SYNTH_SEQ };
	uint64_t writes = cfg->size / FTR_SYNTH_PAGE - 1, distinct, fill;
	int ret;

	if (cfg->measure == FTB_MEASURE_SYNC) {
		/* seq over pages 1 .. distinct-1 once; the writer later keeps
		 * rewriting that range, never a fill page */
		ftb_region_split(cfg->size, cfg->dup_share, &distinct, &fill);
		writes = distinct - 1;
		spec.hot = writes;
	}
	ret = ftr_synth_workload_create(&spec, wl);
	if (!ret)
		ret = ftr_synth_workload_advance(*wl, writes);
	return ret;
}

static int primary_measure(const struct ftb_repl_cfg *cfg, uint16_t port, int cmd_fd,
			   int rep_fd, struct ftb_repl_res *r, char *err, size_t errlen)
{
	struct ftr_primary_opts po = { 0 };
	struct ftr_primary_status st, st0;
	struct rx_sample rx0 = { 0 }, rx1 = { 0 };
	struct ftr_zc_totals zc = { 0 }, zc0 = { 0 };
	struct tx_cpu c0 = { 0 }, c1 = { 0 };
	struct ftr_workload *wl = NULL;
	struct ftb_engine eng = { 0 };
	uint64_t npages = cfg->size / FTR_SYNTH_PAGE, distinct = npages, fill = 0;
	bool sync = cfg->measure == FTB_MEASURE_SYNC, sampled = false;
	clockid_t eclk;
	char addr[96], nbuf[64];
	const char *name = run_name(cfg, nbuf, sizeof(nbuf));
	pthread_t th;
	int ret;

	ret = make_workload(cfg, &wl);
	if (ret) {
		snprintf(err, errlen, "synthetic workload of %" PRIu64 " bytes: %s", cfg->size,
			 strerror(-ret));
		return ret;
	}
	if (sync)
		ftb_region_split(cfg->size, cfg->dup_share, &distinct, &fill);
	snprintf(addr, sizeof(addr), "%s:%u", cfg->rx_ip, port);
	po.connect = addr;
	if (cfg->tp) {
		po.tp = *cfg->tp;
	} else {
		po.tp.transport = "tcp";
		po.tp.mode = cfg->tcp_mode;
	}
	po.tp.zc_totals = &zc;
	po.nchannels = cfg->nchannels;
	po.no_data_crc = cfg->no_data_crc;
	po.snapshot = FTR_SNAP_STOP_COPY;
	po.failover_timeout_ms = engine_timeout(cfg);
	po.connect_timeout_ms = cfg->engine_timeout_ms; /* 0: the default */
	if (sync) {
		po.dirty = FTR_DIRTY_AUTO;
		po.epoch_ms = SYNC_EPOCH_MS;
	} else {
		po.dirty = FTR_DIRTY_FULL;
		po.epoch_ms = 1;
		po.max_epochs = cfg->epochs;
	}
	ret = ftr_primary_create(&po, wl, &eng.p);
	if (ret) {
		snprintf(err, errlen, "cannot create the primary: %s", strerror(-ret));
		goto out_wl;
	}
	if (sync && (ret = rx_sample(cmd_fd, rep_fd, &rx0))) {
		snprintf(err, errlen, "lost the standby child");
		goto out_primary;
	}
	/* The engine thread's clock starts at 0 with the thread. */
	c0.proc = ftb_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - ftb_clock_ns(CLOCK_THREAD_CPUTIME_ID);
	ret = -pthread_create(&th, NULL, ftb_engine_main, &eng);
	if (ret) {
		snprintf(err, errlen, "pthread_create: %s", strerror(-ret));
		goto out_primary;
	}
	ret = -pthread_getcpuclockid(th, &eclk);
	if (ret) {
		snprintf(err, errlen, "pthread_getcpuclockid: %s", strerror(-ret));
		ftr_primary_stop(eng.p);
		pthread_join(th, NULL);
		goto out_primary;
	}
	memset(&st0, 0, sizeof(st0));
	for (;;) {
		bool done = atomic_load(&eng.done);

		ftr_primary_get_status(eng.p, &st);
		if (sync && st.acked != FTR_EPOCH_NONE) {
			/* epoch 0 is in the standby's cache; nothing later exists */
			c1 = tx_cpu_now(eclk);
			ret = rx_sample(cmd_fd, rep_fd, &rx1);
			ftr_primary_stop(eng.p);
			sampled = !ret;
			break;
		}
		if (!sync && !sampled && st.state == FTR_STATE_PROTECTED) {
			c0 = tx_cpu_now(eclk);
			st0 = st;
			zc0.sends = __atomic_load_n(&zc.sends, __ATOMIC_RELAXED);
			zc0.completions = __atomic_load_n(&zc.completions, __ATOMIC_RELAXED);
			zc0.copied = __atomic_load_n(&zc.copied, __ATOMIC_RELAXED);
			sampled = !rx_sample(cmd_fd, rep_fd, &rx0);
		}
		if (done)
			break;
		usleep(MONITOR_POLL_US);
	}
	pthread_join(th, NULL);
	if (eng.ret) {
		snprintf(err, errlen, "%s run failed: %s", name, ftr_primary_error(eng.p));
		ret = eng.ret;
		goto out_primary;
	}
	if (!sampled) {
		snprintf(err, errlen, "%s: %s", name,
			 sync ? "epoch 0 was never acked" : "the initial sync was never seen");
		ret = -EIO;
		goto out_primary;
	}
	if (sync) {
		r->seconds = ((double)st.sync_ns + (double)st.ack_last_us * 1000.0) / 1e9;
		r->pages = st.pages_sent;
		r->fill_pages = st.zero_pages_sent;
		r->resent = st.pages_sent + st.zero_pages_sent - npages;
		r->tx_syscalls = st.tx_syscalls;
		/* Guards the meaning of the numbers: the region was sent
		 * exactly as split, and the standby placed all of it. */
		uint64_t placed = rx1.pages - rx0.pages, placed_fill = rx1.fill_pages - rx0.fill_pages;

		if (st.zero_pages_sent != fill || st.pages_sent < distinct ||
		    placed != st.pages_sent || placed_fill != fill || rx1.committed != 0) {
			snprintf(err, errlen, "%s: expected %" PRIu64 " pages + %" PRIu64
				 " fill pages; primary sent %" PRIu64 " + %" PRIu64 ", standby "
				 "placed %" PRIu64 " + %" PRIu64 " (committed %" PRIu64 ")",
				 name, distinct, fill, st.pages_sent, st.zero_pages_sent,
				 placed, placed_fill, rx1.committed);
			ret = -EPROTO;
			goto out_primary;
		}
	} else {
		ftr_primary_get_status(eng.p, &st);
		c1.engine = eng.cpu_end_ns;
		c1.proc = ftb_clock_ns(CLOCK_PROCESS_CPUTIME_ID) -
			  ftb_clock_ns(CLOCK_THREAD_CPUTIME_ID);
		ret = rx_sample(cmd_fd, rep_fd, &rx1);
		if (ret) {
			snprintf(err, errlen, "lost the standby child");
			goto out_primary;
		}
		r->seconds = (double)st.epochs_ns / 1e9;
		r->pages = st.pages_sent - st.sync_pages;
		r->fill_pages = st.zero_pages_sent - st0.zero_pages_sent;
		r->tx_syscalls = st.tx_syscalls - st0.tx_syscalls;
		if (rx1.committed != cfg->epochs) {
			snprintf(err, errlen, "%s: standby committed epoch %" PRIu64
				 ", expected %u", name, rx1.committed, cfg->epochs);
			ret = -EPROTO;
			goto out_primary;
		}
		/* the engine has returned: every channel flushed */
		r->zc_sends = zc.sends - zc0.sends;
		r->zc_completions = zc.completions - zc0.completions;
		r->zc_copied = zc.copied - zc0.copied;
	}
	/* Guards the meaning of the numbers: the transport and channel count
	 * asked for. */
	if (strcmp(st.transport, po.tp.transport ? po.tp.transport : "tcp") ||
	    st.nchannels != (cfg->nchannels ? cfg->nchannels : 1)) {
		snprintf(err, errlen, "%s: expected %s with %u channel(s); got %s with %u", name,
			 po.tp.transport ? po.tp.transport : "tcp",
			 cfg->nchannels ? cfg->nchannels : 1, st.transport, st.nchannels);
		ret = -EPROTO;
		goto out_primary;
	}
	r->rx_syscalls = rx1.rx_syscalls - rx0.rx_syscalls;
	r->tx_cpu_s = (double)(c1.engine - c0.engine) / 1e9;
	r->tx_proc_cpu_s = (double)(c1.proc - c0.proc) / 1e9;
	r->rx_cpu_s = (double)(rx1.cpu_ns - rx0.cpu_ns) / 1e9;
	ret = 0;
out_primary:
	ftr_primary_destroy(eng.p);
out_wl:
	ftr_workload_destroy(wl);
	return ret;
}

static void __attribute__((noreturn))
primary_child(const struct ftb_repl_cfg *cfg, uint16_t port, int cmd_fd, int rep_fd,
	      int res_fd)
{
	struct tx_report rep;

	memset(&rep, 0, sizeof(rep));
	ftr_log_set_ident("ftbench-primary");
	rep.ret = primary_measure(cfg, port, cmd_fd, rep_fd, &rep.res, rep.err, sizeof(rep.err));
	if (write(res_fd, &rep, sizeof(rep)) != sizeof(rep))
		_exit(1);
	_exit(0);
}

/* ---- the parent --------------------------------------------------------------------- */

int ftb_standby_spawn(const struct ftb_repl_cfg *cfg, struct ftb_standby_proc *sp, char *err,
		      size_t errlen)
{
	int cmd[2], rep[2], ret;
	pid_t pid;

	sp->pid = -1;
	sp->cmd_fd = sp->rep_fd = -1;
	if (pipe2(cmd, O_CLOEXEC))
		return -errno;
	if (pipe2(rep, O_CLOEXEC)) {
		ret = -errno;
		close(cmd[0]);
		close(cmd[1]);
		return ret;
	}
	pid = ftb_fork(cfg->rx_ns);
	if (pid == 0) {
		close(cmd[1]);
		close(rep[0]);
		standby_child(cfg, cmd[0], rep[1]);
	}
	close(cmd[0]);
	close(rep[1]);
	sp->pid = pid;
	sp->cmd_fd = cmd[1];
	sp->rep_fd = rep[0];
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror((int)-pid));
		ret = (int)pid;
		goto out_end;
	}
	ret = read_full(sp->rep_fd, &sp->port, sizeof(sp->port), 60000);
	if (ret) {
		snprintf(err, errlen, "the standby child did not start");
		goto out_end;
	}
	return 0;

out_end:
	ftb_standby_end(sp);
	return ret;
}

void ftb_standby_end(struct ftb_standby_proc *sp)
{
	/* EOF on its command pipe stops the standby. */
	if (sp->cmd_fd >= 0)
		close(sp->cmd_fd);
	if (sp->rep_fd >= 0)
		close(sp->rep_fd);
	if (sp->pid > 0 && ftb_wait(sp->pid, 30000) < 0)
		ftb_note("the standby child did not exit in time (killed)");
	sp->cmd_fd = sp->rep_fd = -1;
	sp->pid = -1;
}

int ftb_replicate(const struct ftb_repl_cfg *cfg, struct ftb_standby_proc *sp,
		  struct ftb_repl_res *res, char *err, size_t errlen)
{
	/* generous: 5 MB/s (or min_rate) per pass over the region, plus start-up */
	int passes = cfg->measure == FTB_MEASURE_EPOCHS ? (int)cfg->epochs + 2 : 1;
	double rate = cfg->min_rate > 0 ? cfg->min_rate : 5e6;
	int timeout_ms = 60000 + (int)((double)cfg->size * passes / rate * 1000.0);
	struct ftb_standby_proc fresh;
	char nbuf[64];
	int out[2] = { -1, -1 }, ret;
	struct tx_report tr;
	pid_t pr = -1;

	if (!sp) {
		ret = ftb_standby_spawn(cfg, &fresh, err, errlen);
		if (ret)
			return ret;
		sp = &fresh;
	} else {
		struct rx_sample s;
		char c = 'w';

		if (write(sp->cmd_fd, &c, 1) != 1 ||
		    read_full(sp->rep_fd, &s, sizeof(s), 40000)) {
			snprintf(err, errlen, "lost the standby child");
			return -EPIPE;
		}
		if (s.busy) {
			snprintf(err, errlen, "the standby did not end its previous session");
			return -EBUSY;
		}
	}
	if (pipe2(out, O_CLOEXEC)) {
		ret = -errno;
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto out;
	}
	pr = ftb_fork(cfg->tx_ns);
	if (pr == 0) {
		close(out[0]);
		primary_child(cfg, sp->port, sp->cmd_fd, sp->rep_fd, out[1]);
	}
	close(out[1]);
	if (pr < 0) {
		ret = (int)pr;
		snprintf(err, errlen, "fork: %s", strerror(-ret));
		goto out;
	}
	ret = read_full(out[0], &tr, sizeof(tr), timeout_ms);
	if (ret) {
		snprintf(err, errlen, "%s: the primary child %s", run_name(cfg, nbuf, sizeof(nbuf)),
			 ret == -ETIMEDOUT ? "did not finish in time" : "died");
		goto out;
	}
	if (tr.ret) {
		ret = tr.ret;
		snprintf(err, errlen, "%s", tr.err);
		goto out;
	}
	*res = tr.res;
out:
	if (out[0] >= 0)
		close(out[0]);
	if (pr > 0 && ftb_wait(pr, ret ? 0 : 10000) < 0 && !ret) {
		snprintf(err, errlen, "the primary child did not exit");
		ret = -ETIMEDOUT;
	}
	if (sp == &fresh)
		ftb_standby_end(sp);
	return ret;
}
