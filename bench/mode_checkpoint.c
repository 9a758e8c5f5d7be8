/* SPDX-License-Identifier: MIT */
/*
 * --checkpoint (ftrepl issue 3): what continuous replication costs the
 * workload, per dirty-tracking backend and snapshot strategy.
 *
 * Groups are dirtying rates, variants the combinations DIRTY/SNAPSHOT plus
 * "unprotected" (the same workload without a primary: the reference, run in
 * the same rounds as the others, ABBA order).
 *
 * The workload is the library's synthetic workload on a --size region
 * (default 1 GiB, N pages), random pattern over every data page, paced at
 * R writes/s, where R makes the expected number of distinct pages written
 * in 20 ms equal to the rate's share of the pages: R = -N ln(1 - share) /
 * 0.020 s. The synthetic writer fills a whole page per write (~1 M writes/s
 * on this kind of machine), so high shares of a large region may be beyond
 * it even unprotected; the report says so ("writer-bound") and shows the
 * share actually dirtied.
 *
 * One run is one child process holding a standby (ftr_standby_*, staging as
 * large as the region, so no epoch is cut early for lack of slots) and a
 * primary (ftr_primary_*, tcp writev over loopback, 20 ms epochs, the
 * combination's --dirty and --snapshot). After the initial sync and 300 ms
 * of settling, a window of --epochs x 20 ms is measured:
 *   - writes/s: the workload's writes in the window / its length;
 *   - epoch pause: every pause the workload saw in the window, from the
 *     engine's pause() returning (writer parked) to its resume() (ftb_wl,
 *     wlwrap.c): median, p99, max;
 *   - pages per epoch: pages sent (payload + fill) / epochs cut in the window.
 * For cow combinations the same child then times a bare PAGEMAP_SCAN
 * harvest (ftr_track wp-async, no replication) of a same-size region after
 * writing the same number of random pages as the combination sent per
 * epoch: the median of 3 harvests. cow cannot combine with wp-async (the
 * kernel resolves async write faults itself: nothing could copy a page
 * aside before the write); wp-sync/cow shares the tracker's userfaultfd.
 * The bare wp-async harvest is the yardstick for every cow pause.
 *
 * Once per bench run, before the groups, fault_baseline() times the
 * kernel's async write-protect fault against the page fill that takes it;
 * the 10 % target's report derives from it the throughput that no
 * write-protect tracker could exceed on this machine.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/ftrepl.h>
#include <ftrepl/synth.h>

#include "ftbench.h"
#include "uffd/track.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

enum {
	M_WPS,
	M_PAUSE_MED_US,
	M_PAUSE_P99_US,
	M_PAUSE_MAX_US,
	M_PAGES_EPOCH,
	M_DIRTY_PCT,
	M_EPOCHS,
	M_EPOCH_MS,
	M_COW_COPIED,
	M_CUT_EARLY,
	M_LIB_PAUSE_MEAN_US,
	M_LIB_PAUSE_P99_US,
	M_HARVEST_US,
	M_BARE_HARVEST_US,
	M_PAUSE_X_BARE,
	M__COUNT,
};

static const struct ftb_metric metrics[M__COUNT] = {
	[M_WPS] = { "writes_per_s", "1/s" },
	[M_PAUSE_MED_US] = { "pause_median_us", "us" },
	[M_PAUSE_P99_US] = { "pause_p99_us", "us" },
	[M_PAUSE_MAX_US] = { "pause_max_us", "us" },
	[M_PAGES_EPOCH] = { "pages_per_epoch", "" },
	[M_DIRTY_PCT] = { "dirty_pct_per_epoch", "%" },
	[M_EPOCHS] = { "epochs", "" },
	[M_EPOCH_MS] = { "epoch_ms", "ms" },
	[M_COW_COPIED] = { "cow_copied_per_epoch", "" },
	[M_CUT_EARLY] = { "epochs_cut_early", "" },
	[M_LIB_PAUSE_MEAN_US] = { "lib_pause_mean_us", "us" },
	[M_LIB_PAUSE_P99_US] = { "lib_pause_p99_us", "us" },
	[M_HARVEST_US] = { "harvest_last_us", "us" },
	[M_BARE_HARVEST_US] = { "bare_harvest_us", "us" },
	[M_PAUSE_X_BARE] = { "pause_to_bare_harvest", "" },
};

#define CK_PAGE 4096ull
#define CK_EPOCH_MS 20
#define CK_SETTLE_MS 300
#define CK_DEFAULT_EPOCHS 100
#define CK_SEED 5
#define CK_BARE_ITERS 3
#define CK_FB_REGION (64ull << 20)	/* the fault baseline's region */
#define CK_FB_PAGES 4096u		/* pages it writes per round */
#define CK_TARGET_PCT 10	/* the rate the throughput target is about */
#define CK_TARGET_RATIO 0.7
#define CK_WRITER_BOUND 0.9	/* unprotected below this share of offered: writer-bound */
#define CK_ATTEMPTS 3		/* a run the library fails is retried, and reported */

static const unsigned rates_pct[] = { 1, 10, 30 };

#define CK_DEFAULT_VARIANTS \
	"unprotected,wp-async/stop-copy,wp-async/copy-out,wp-sync/copy-out,scan/copy-out," \
	"wp-sync/cow,workload/cow,scan/cow"

static const char *const all_variants[] = {
	"unprotected",
	"wp-async/stop-copy", "wp-async/copy-out",
	"wp-sync/stop-copy", "wp-sync/copy-out", "wp-sync/cow",
	"scan/stop-copy", "scan/copy-out", "scan/cow",
	"full/stop-copy", "full/copy-out", "full/cow",
	"workload/stop-copy", "workload/copy-out", "workload/cow",
};

struct ck_combo {
	bool unprotected;
	enum ftr_dirty_mode dirty;
	enum ftr_snapshot_mode snap;
};

struct ck_state {
	struct ck_combo combo[FTB_MAX_VARIANTS];
	unsigned pct[FTB_MAX_GROUPS];
	uint64_t rate[FTB_MAX_GROUPS];	/* offered writes/s */
	unsigned epochs;
	int iu;				/* the unprotected variant, -1 if absent */
	bool have_fb;			/* the fault baseline was measured */
	double fb_fill_ns, fb_fault_ns;	/* per page (fault_baseline) */
	char fb_err[160];
	unsigned failed[FTB_MAX_GROUPS][FTB_MAX_VARIANTS];	/* runs retried */
	char why[FTB_MAX_GROUPS][FTB_MAX_VARIANTS][240];	/* the last reason */
};

struct ck_result {
	int ret;
	char err[240];
	double wps;
	uint64_t pause_med, pause_p99, pause_max, npauses;	/* ns */
	double pages_per_epoch, cow_copied_per_epoch;
	uint64_t epochs, cut_early;
	double window_s;
	uint64_t lib_pause_mean_us, lib_pause_p99_us, harvest_last_us;
	uint64_t bare_harvest_ns, bare_pages;
};

/* ---- the run (in a child) ---------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000l };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* A memfd region like the synthetic workload's (shared, populated up
 * front) under ftr_track wp-async, for the bare baselines. */
struct ck_wp_region {
	int fd;
	uint8_t *base;
	uint64_t size;
	struct ftr_track *t;
};

static int wp_region_open(struct ck_wp_region *w, uint64_t size, const char *what, char *err,
			  size_t errlen)
{
	struct ftr_track_region r;
	int ret;

	*w = (struct ck_wp_region){ .fd = -1, .base = MAP_FAILED, .size = size };
	w->fd = memfd_create("ftbench-wp", MFD_CLOEXEC);
	if (w->fd < 0 || ftruncate(w->fd, (off_t)size) ||
	    (w->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0)) ==
		    MAP_FAILED) {
		ret = -errno;
		snprintf(err, errlen, "%s region: %s", what, strerror(errno));
		return ret;
	}
	madvise(w->base, size, MADV_POPULATE_WRITE);
	r = (struct ftr_track_region){ .base = w->base, .size = size, .fd = w->fd };
	return ftr_track_create(FTR_TRACK_WP_ASYNC, &r, 1, CK_PAGE, -1, &w->t, err, errlen);
}

static void wp_region_close(struct ck_wp_region *w)
{
	ftr_track_destroy(w->t);
	if (w->base != MAP_FAILED)
		munmap(w->base, w->size);
	if (w->fd >= 0)
		close(w->fd);
}

/* A bare wp-async harvest of a same-size region with `dirty` random pages
 * written: what PAGEMAP_SCAN alone costs for such a dirty set. */
static int bare_harvest(uint64_t size, uint64_t dirty, uint64_t *ns, char *err, size_t errlen)
{
	uint64_t npages = size / CK_PAGE, state = 0xc0ffee, samples[CK_BARE_ITERS];
	size_t words = (size_t)((npages + 63) / 64);
	uint64_t *map = calloc(words, sizeof(uint64_t)), *chosen = calloc(words, sizeof(uint64_t));
	struct ck_wp_region w = { .fd = -1, .base = MAP_FAILED };
	int ret;

	if (!map || !chosen) {
		ret = -ENOMEM;
		goto out;
	}
	if (dirty > npages)
		dirty = npages;
	if (!dirty)
		dirty = 1;
	ret = wp_region_open(&w, size, "bare harvest", err, errlen);
	if (ret)
		goto out;
	/* the first harvest reports every page and arms the tracking */
	ret = (int)ftr_track_harvest(w.t, &map);
	if (ret < 0)
		goto out;
	for (unsigned it = 0; it < CK_BARE_ITERS; it++) {
		uint64_t n = 0, t0;
		int64_t got;

		memset(chosen, 0, words * sizeof(uint64_t));
		memset(map, 0, words * sizeof(uint64_t));
		while (n < dirty) {
			uint64_t p = ftr_synth_next(&state) % npages;

			if (chosen[p / 64] & (1ull << (p % 64)))
				continue;
			chosen[p / 64] |= 1ull << (p % 64);
			w.base[p * CK_PAGE] = (uint8_t)(it + 1);
			n++;
		}
		t0 = ftb_now_ns();
		got = ftr_track_harvest(w.t, &map);
		samples[it] = ftb_now_ns() - t0;
		if (got < 0) {
			ret = (int)got;
			snprintf(err, errlen, "bare harvest: %s", strerror(-ret));
			goto out;
		}
		if ((uint64_t)got < dirty) {
			ret = -EIO;
			snprintf(err, errlen, "bare harvest found %" PRId64 " of %" PRIu64
				 " dirty pages", got, dirty);
			goto out;
		}
	}
	{
		uint64_t p99;

		ftb_u64_pcts(samples, CK_BARE_ITERS, ns, &p99);
	}
	ret = 0;
out:
	wp_region_close(&w);
	free(map);
	free(chosen);
	return ret;
}

/*
 * What a write-protect fault costs here, against the write that takes it: a
 * CK_FB_REGION memfd region populated and tracked wp-async (ftr_track, armed
 * by a first harvest); each round fills CK_FB_PAGES random distinct pages as
 * the synthetic writer fills a page (ftr_synth_fill_page), first while they
 * are write-protected (each fill takes the kernel's async WP fault) and then
 * again (no fault: nothing protected them since). Per page, median of
 * CK_BARE_ITERS rounds: *fill_ns the second pass, *fault_ns the difference.
 */
static int fault_baseline(double *fill_ns, double *fault_ns, char *err, size_t errlen)
{
	const uint64_t npages = CK_FB_REGION / CK_PAGE;
	uint64_t fill[CK_BARE_ITERS], fault[CK_BARE_ITERS], state = 0xfa17, p99;
	uint64_t *pages = calloc(CK_FB_PAGES, sizeof(uint64_t));
	uint64_t *map = calloc(npages / 64, sizeof(uint64_t));
	uint8_t *seen = calloc(npages, 1);
	struct ck_wp_region w = { .fd = -1, .base = MAP_FAILED };
	int ret = -ENOMEM;

	if (!pages || !map || !seen)
		goto out;
	ret = wp_region_open(&w, CK_FB_REGION, "fault baseline", err, errlen);
	if (ret)
		goto out;
	for (unsigned it = 0; it < CK_BARE_ITERS; it++) {
		uint64_t t0, t1, t2;
		int64_t got = ftr_track_harvest(w.t, &map);	/* protects what was written */

		if (got < 0) {
			ret = (int)got;
			snprintf(err, errlen, "fault baseline harvest: %s", strerror(-ret));
			goto out;
		}
		memset(seen, 0, npages);
		for (unsigned i = 0; i < CK_FB_PAGES;) {
			uint64_t pg = ftr_synth_next(&state) % npages;

			if (!seen[pg]) {
				seen[pg] = 1;
				pages[i++] = pg;
			}
		}
		t0 = ftb_now_ns();
		for (unsigned i = 0; i < CK_FB_PAGES; i++)
			ftr_synth_fill_page(w.base + pages[i] * CK_PAGE, pages[i], it + 1, CK_SEED);
		t1 = ftb_now_ns();
		for (unsigned i = 0; i < CK_FB_PAGES; i++)
			ftr_synth_fill_page(w.base + pages[i] * CK_PAGE, pages[i], it + 2, CK_SEED);
		t2 = ftb_now_ns();
		fill[it] = (t2 - t1) / CK_FB_PAGES;
		fault[it] = t1 - t0 > t2 - t1 ? (t1 - t0 - (t2 - t1)) / CK_FB_PAGES : 0;
	}
	ftb_u64_pcts(fill, CK_BARE_ITERS, &fill[0], &p99);
	ftb_u64_pcts(fault, CK_BARE_ITERS, &fault[0], &p99);
	*fill_ns = (double)fill[0];
	*fault_ns = (double)fault[0];
	ret = 0;
out:
	wp_region_close(&w);
	free(pages);
	free(map);
	free(seen);
	return ret;
}

static int run_protected(uint64_t size, const struct ck_combo *cb, struct ftb_wl *w,
			 unsigned window_ms, struct ck_result *r)
{
	struct ftr_standby_opts so = {
		.listen = "127.0.0.1:0",
		.cache_size = size,
		.staging_size = size,
		.failover_timeout_ms = 30000,
		.stall_timeout_ms = 30000,
	};
	struct ftr_primary_status st0 = { 0 }, st1 = { 0 };
	struct ftr_primary_opts po = { 0 };
	struct ftr_standby *sb = NULL;
	struct ftb_engine eng = { 0 };
	const uint64_t *p_end, *p_dur;
	uint64_t t0 = 0, t1 = 0, *win = NULL;
	size_t np, nwin = 0;
	char addr[64];
	pthread_t th;
	int ret;

	ret = ftr_standby_create(&so, &sb, r->err, sizeof(r->err));
	if (ret)
		return ret;
	ret = ftr_standby_start(sb);
	if (ret) {
		snprintf(r->err, sizeof(r->err), "cannot start the standby: %s", strerror(-ret));
		goto out_standby;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ftr_standby_port(sb));
	po.connect = addr;
	po.tp.transport = "tcp";
	po.tp.mode = "writev";
	po.epoch_ms = CK_EPOCH_MS;
	po.snapshot = cb->snap;
	po.dirty = cb->dirty;
	po.failover_timeout_ms = 30000;
	ret = ftr_primary_create(&po, ftb_wl_workload(w), &eng.p);
	if (ret) {
		snprintf(r->err, sizeof(r->err), "cannot create the primary: %s", strerror(-ret));
		goto out_standby;
	}
	ret = -pthread_create(&th, NULL, ftb_engine_main, &eng);
	if (ret) {
		snprintf(r->err, sizeof(r->err), "pthread_create: %s", strerror(-ret));
		goto out_primary;
	}
	{
		uint64_t end = ftb_now_ns() + 300ull * 1000000000ull;

		for (;;) {
			ftr_primary_get_status(eng.p, &st0);
			if (st0.state == FTR_STATE_PROTECTED || atomic_load(&eng.done) ||
			    ftb_now_ns() > end)
				break;
			usleep(1000);
		}
	}
	if (st0.state == FTR_STATE_PROTECTED) {
		sleep_ms(CK_SETTLE_MS);
		ftr_primary_get_status(eng.p, &st0);
		t0 = ftb_now_ns();
		sleep_ms(window_ms);
		ftr_primary_get_status(eng.p, &st1);
		t1 = ftb_now_ns();
	}
	ftr_primary_stop(eng.p);
	pthread_join(th, NULL);
	if (eng.ret || st0.state != FTR_STATE_PROTECTED || st1.state != FTR_STATE_PROTECTED) {
		snprintf(r->err, sizeof(r->err), "%s/%s: %s", ftr_dirty_name(cb->dirty),
			 ftr_snapshot_name(cb->snap), eng.ret ? ftr_primary_error(eng.p)
			 : "the initial sync did not end in time");
		ret = eng.ret ? eng.ret : -ETIMEDOUT;
		goto out_primary;
	}
	r->window_s = (double)(t1 - t0) / 1e9;
	r->wps = (double)(st1.workload_writes - st0.workload_writes) / r->window_s;
	r->epochs = st1.epoch - st0.epoch;
	if (r->epochs) {
		r->pages_per_epoch = (double)(st1.pages_sent + st1.zero_pages_sent - st0.pages_sent -
					      st0.zero_pages_sent) / (double)r->epochs;
		r->cow_copied_per_epoch = (double)(st1.cow_copied - st0.cow_copied) /
					  (double)r->epochs;
	}
	r->cut_early = st1.epochs_cut_early - st0.epochs_cut_early;
	r->lib_pause_mean_us = st1.pause_mean_us;
	r->lib_pause_p99_us = st1.pause_p99_us;
	r->harvest_last_us = st1.harvest_last_us;
	np = ftb_wl_pauses(w, &p_end, &p_dur);
	win = calloc(np ? np : 1, sizeof(uint64_t));
	if (!win) {
		ret = -ENOMEM;
		goto out_primary;
	}
	for (size_t i = 0; i < np; i++) {
		if (p_end[i] >= t0 && p_end[i] <= t1) {
			win[nwin++] = p_dur[i];
			if (p_dur[i] > r->pause_max)
				r->pause_max = p_dur[i];
		}
	}
	r->npauses = nwin;
	ftb_u64_pcts(win, nwin, &r->pause_med, &r->pause_p99);
	free(win);
	ret = 0;
out_primary:
	ftr_primary_destroy(eng.p);
out_standby:
	ftr_standby_stop(sb);
	ftr_standby_destroy(sb);
	return ret;
}

static int ck_work(uint64_t size, uint64_t rate, const struct ck_combo *cb, unsigned window_ms,
		   struct ck_result *r)
{
	struct ftr_synth_spec spec = { .size = size, .seed = CK_SEED, .rate = rate,
				       .pattern = FTR_SYNTH_RANDOM };
	size_t max_pauses = (size_t)window_ms * 4 / CK_EPOCH_MS + 100000;
	struct ftb_wl *w;
	int ret;

	ret = ftb_wl_create(&spec, 0, false, max_pauses, &w);
	if (ret) {
		snprintf(r->err, sizeof(r->err), "synthetic workload: %s", strerror(-ret));
		return ret;
	}
	if (cb->unprotected) {
		uint64_t k0, k1, t0, t1;

		ret = ftb_wl_start(w);
		if (ret) {
			snprintf(r->err, sizeof(r->err), "cannot start the workload: %s",
				 strerror(-ret));
			goto out;
		}
		sleep_ms(CK_SETTLE_MS);
		k0 = ftb_wl_writes(w);
		t0 = ftb_now_ns();
		sleep_ms(window_ms);
		k1 = ftb_wl_writes(w);
		t1 = ftb_now_ns();
		ftb_wl_stop(w);
		r->window_s = (double)(t1 - t0) / 1e9;
		r->wps = (double)(k1 - k0) / r->window_s;
	} else {
		ret = run_protected(size, cb, w, window_ms, r);
	}
out:
	ftb_wl_destroy(w);
	if (!ret && !cb->unprotected && cb->snap == FTR_SNAP_COW) {
		r->bare_pages = (uint64_t)llround(r->pages_per_epoch);
		ret = bare_harvest(size, r->bare_pages, &r->bare_harvest_ns, r->err,
				   sizeof(r->err));
	}
	return ret;
}

/* ---- the parent ------------------------------------------------------------------------- */

static int ck_run_once(struct ftb_ctx *c, unsigned g, unsigned v, double *m, char *err,
		       size_t errlen)
{
	struct ck_state *s = c->priv;
	unsigned window_ms = s->epochs * CK_EPOCH_MS;
	int timeout_ms = 600000 + (int)(c->o.size >> 20) * 100, res[2], ret;
	struct ck_result r;
	pid_t pid;

	if (pipe2(res, O_CLOEXEC)) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -errno;
	}
	pid = ftb_fork(-1);
	if (pid == 0) {
		ftb_close_fds_except(&res[1], 1);
		memset(&r, 0, sizeof(r));
		ftr_log_set_ident("ftbench-checkpoint");
		ftr_log_set_level(FTR_LOG_ERROR);
		r.ret = ck_work(c->o.size, s->rate[g], &s->combo[v], window_ms, &r);
		_exit(ftb_write_full(res[1], &r, sizeof(r)) ? 1 : 0);
	}
	close(res[1]);
	if (pid < 0) {
		close(res[0]);
		snprintf(err, errlen, "fork: %s", strerror((int)-pid));
		return (int)pid;
	}
	ret = ftb_read_full(res[0], &r, sizeof(r), timeout_ms);
	close(res[0]);
	ftb_wait(pid, ret ? 0 : 30000);
	if (ret || r.ret) {
		snprintf(err, errlen, "%s", ret ? "the run's child died or timed out" : r.err);
		return ret ? ret : r.ret;
	}
	m[M_WPS] = r.wps;
	m[M_PAUSE_MED_US] = (double)r.pause_med / 1e3;
	m[M_PAUSE_P99_US] = (double)r.pause_p99 / 1e3;
	m[M_PAUSE_MAX_US] = (double)r.pause_max / 1e3;
	m[M_PAGES_EPOCH] = r.pages_per_epoch;
	m[M_DIRTY_PCT] = 100.0 * r.pages_per_epoch / (double)(c->o.size / CK_PAGE);
	m[M_EPOCHS] = (double)r.epochs;
	m[M_EPOCH_MS] = r.epochs ? r.window_s * 1e3 / (double)r.epochs : 0;
	m[M_COW_COPIED] = r.cow_copied_per_epoch;
	m[M_CUT_EARLY] = (double)r.cut_early;
	m[M_LIB_PAUSE_MEAN_US] = (double)r.lib_pause_mean_us;
	m[M_LIB_PAUSE_P99_US] = (double)r.lib_pause_p99_us;
	m[M_HARVEST_US] = (double)r.harvest_last_us;
	m[M_BARE_HARVEST_US] = (double)r.bare_harvest_ns / 1e3;
	m[M_PAUSE_X_BARE] = r.bare_harvest_ns ? (double)r.pause_med / (double)r.bare_harvest_ns : 0;
	return 0;
}

/*
 * A run the library fails (the session breaks, e.g. the standby refusing an
 * epoch too far ahead of its last commit on this loaded machine) is run
 * again, up to CK_ATTEMPTS times; the failures are counted and shown with
 * the results rather than stopping the whole bench.
 */
static int ck_run(struct ftb_ctx *c, unsigned g, unsigned v, double *m, char *err,
		  size_t errlen)
{
	struct ck_state *s = c->priv;
	int ret = 0;

	for (unsigned a = 0; a < CK_ATTEMPTS; a++) {
		ret = ck_run_once(c, g, v, m, err, errlen);
		if (!ret)
			return 0;
		s->failed[g][v]++;
		snprintf(s->why[g][v], sizeof(s->why[g][v]), "%s", err);
		if (a + 1 < CK_ATTEMPTS)
			ftb_note("[%s] %s failed (%s); running it again", c->groups[g].name,
				 c->variants[v], err);
	}
	return ret;
}

static int parse_combo(const char *name, struct ck_combo *cb, char *err, size_t errlen)
{
	char dirty[32];
	const char *slash = strchr(name, '/');

	memset(cb, 0, sizeof(*cb));
	if (!strcmp(name, "unprotected")) {
		cb->unprotected = true;
		return 0;
	}
	if (!slash || (size_t)(slash - name) >= sizeof(dirty)) {
		snprintf(err, errlen, "--modes %s: expected DIRTY/SNAPSHOT (e.g. wp-async/copy-out) "
			 "or unprotected", name);
		return -EINVAL;
	}
	memcpy(dirty, name, (size_t)(slash - name));
	dirty[slash - name] = '\0';
	if (ftr_dirty_parse(dirty, &cb->dirty) || ftr_snapshot_parse(slash + 1, &cb->snap)) {
		snprintf(err, errlen, "--modes %s: dirty is auto, wp-async, wp-sync, scan, full or "
			 "workload; snapshot is stop-copy, copy-out or cow", name);
		return -EINVAL;
	}
	if (cb->snap == FTR_SNAP_COW && cb->dirty == FTR_DIRTY_WP_ASYNC) {
		snprintf(err, errlen, "--modes %s: cow cannot combine with wp-async (async "
			 "write faults never reach user space); use wp-sync/cow, workload/cow, "
			 "scan/cow or full/cow", name);
		return -EINVAL;
	}
	return 0;
}

static int ck_prepare(struct ftb_ctx *c, char *err, size_t errlen)
{
	uint64_t npages = c->o.size / CK_PAGE;
	json_t *rates = json_array();
	struct ck_state *s;

	if (c->o.dup_share >= 0 || c->o.links_set || c->o.no_loopback || c->o.cold_standby) {
		snprintf(err, errlen, "--dup-share, --link-rate, --no-loopback and --cold-standby "
			 "belong to --writev-vs-write");
		return -EINVAL;
	}
	if (c->o.all && c->o.nvariants) {
		snprintf(err, errlen, "--all and --modes: choose one");
		return -EINVAL;
	}
	if (npages < 64) {
		snprintf(err, errlen, "--size: at least 256K for --checkpoint");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	c->priv = s;
	if (c->o.all) {
		c->nvariants = sizeof(all_variants) / sizeof(all_variants[0]);
		for (unsigned v = 0; v < c->nvariants; v++)
			c->variants[v] = all_variants[v];
	}
	s->iu = -1;
	for (unsigned v = 0; v < c->nvariants; v++) {
		if (parse_combo(c->variants[v], &s->combo[v], err, errlen))
			return -EINVAL;
		if (s->combo[v].unprotected)
			s->iu = (int)v;
	}
	s->epochs = c->o.epochs ? c->o.epochs : CK_DEFAULT_EPOCHS;
	/* Every run is a fresh process pair measured after the initial sync and
	 * a settling time: a warm-up run would only double the duration. */
	if (!c->o.warmup_set)
		c->o.warmup = 0;
	for (unsigned g = 0; g < sizeof(rates_pct) / sizeof(rates_pct[0]); g++) {
		double share = rates_pct[g] / 100.0;

		s->pct[g] = rates_pct[g];
		s->rate[g] = (uint64_t)ceil(-(double)(npages - 1) * log(1.0 - share) /
					    (CK_EPOCH_MS / 1000.0));
		snprintf(c->groups[g].name, sizeof(c->groups[g].name), "%u%%", rates_pct[g]);
		c->groups[g].info = json_pack("{s:i, s:I}", "dirty_pct_per_epoch", rates_pct[g],
					      "offered_writes_per_s", (json_int_t)s->rate[g]);
		json_array_append_new(rates, json_integer(rates_pct[g]));
		c->ngroups++;
	}
	json_object_set_new(c->config, "rates_pct", rates);
	json_object_set_new(c->config, "epoch_ms", json_integer(CK_EPOCH_MS));
	json_object_set_new(c->config, "epochs", json_integer(s->epochs));
	json_object_set_new(c->config, "settle_ms", json_integer(CK_SETTLE_MS));
	json_object_set_new(c->config, "transport", json_string("tcp/writev loopback"));
	json_object_set_new(c->config, "pattern", json_string("random"));
	if (fault_baseline(&s->fb_fill_ns, &s->fb_fault_ns, s->fb_err, sizeof(s->fb_err)))
		ftb_note("no write-protect fault baseline: %s", s->fb_err);
	else
		s->have_fb = true;
	json_object_set_new(c->baselines, "wp_async_fault",
			    s->have_fb ? json_pack("{s:f, s:f, s:i}", "fill_ns_per_page",
						   s->fb_fill_ns, "fault_ns_per_page",
						   s->fb_fault_ns, "pages", CK_FB_PAGES)
				       : json_null());
	fprintf(c->out, "ftbench --checkpoint: %" PRIu64 " MiB region (%" PRIu64 " pages), random "
		"writes paced to dirty 1/10/30 %% of the pages per %d ms epoch, %u epochs measured "
		"per run, %u run(s) per case after %u warm-up\n", c->o.size >> 20, npages,
		CK_EPOCH_MS, s->epochs, c->o.runs, c->o.warmup);
	return 0;
}

static int ck_group_begin(struct ftb_ctx *c, unsigned g, char *err, size_t errlen)
{
	/* region + cache + staging + scan's shadow + copy-out's bounce buffer */
	uint64_t need = 5 * c->o.size + (512ull << 20), avail = ftb_mem_available();
	char a[32], b[32];

	if (avail && need > avail) {
		snprintf(err, errlen, "needs %s of memory, MemAvailable is %s",
			 ftr_format_size(need, a, sizeof(a)), ftr_format_size(avail, b, sizeof(b)));
		return -EOPNOTSUPP;
	}
	return 0;
}

static double med(struct ftb_ctx *c, unsigned g, unsigned v, unsigned k)
{
	struct ftb_stats st;

	ftb_case_stats(c, g, v, k, &st);
	return st.median;
}

/* Expected share of N pages dirtied by w random writes. */
static double dirty_share(double writes, uint64_t npages)
{
	return 1.0 - exp(-writes / (double)npages);
}

static void ck_report(struct ftb_ctx *c)
{
	struct ck_state *s = c->priv;
	uint64_t npages = c->o.size / CK_PAGE;
	json_t *groups = json_array(), *checks = json_array();
	FILE *o = c->out;

	for (unsigned g = 0; g < c->ngroups; g++) {
		double unprot = s->iu >= 0 ? med(c, g, (unsigned)s->iu, M_WPS) : 0;
		bool bound = unprot > 0 && unprot < CK_WRITER_BOUND * (double)s->rate[g];
		json_t *cases = json_array(), *gj;
		int best_cow = -1;

		if (c->groups[g].skipped) {
			fprintf(o, "\n%s: skipped: %s\n", c->groups[g].name, c->groups[g].skip_reason);
			continue;
		}
		fprintf(o, "\nrate %u %% of the pages per %d ms epoch: offered %" PRIu64 " writes/s",
			s->pct[g], CK_EPOCH_MS, s->rate[g]);
		if (s->iu >= 0)
			fprintf(o, "; unprotected %.0f writes/s (= %.1f %% per epoch)%s", unprot,
				100.0 * dirty_share(unprot * CK_EPOCH_MS / 1000.0, npages),
				bound ? ", writer-bound: the synthetic writer cannot go faster here" : "");
		fprintf(o, "\n%-20s %10s %7s %9s %9s %9s %9s %6s %7s %8s %9s %9s %8s\n", "combination",
			"writes/s", "x unpr", "pause med", "p99", "max", "pages/ep", "dirty%",
			"epoch", "cow copy", "harvest", "bare harv", "pause/");
		fprintf(o, "%-20s %10s %7s %9s %9s %9s %9s %6s %7s %8s %9s %9s %8s\n", "", "", "",
			"us", "us", "us", "", "", "ms", "/epoch", "last us", "us", "bare");
		for (unsigned v = 0; v < c->nvariants; v++) {
			double wps = med(c, g, v, M_WPS), x = unprot > 0 ? wps / unprot : 0;

			if (s->combo[v].unprotected) {
				fprintf(o, "%-20s %10.0f %7.2f\n", c->variants[v], wps, 1.0);
				continue;
			}
			fprintf(o, "%-20s %10.0f %7.2f %9.0f %9.0f %9.0f %9.0f %6.2f %7.1f %8.0f %9.0f ",
				c->variants[v], wps, x, med(c, g, v, M_PAUSE_MED_US),
				med(c, g, v, M_PAUSE_P99_US), med(c, g, v, M_PAUSE_MAX_US),
				med(c, g, v, M_PAGES_EPOCH), med(c, g, v, M_DIRTY_PCT),
				med(c, g, v, M_EPOCH_MS), med(c, g, v, M_COW_COPIED),
				med(c, g, v, M_HARVEST_US));
			if (s->combo[v].snap == FTR_SNAP_COW) {
				fprintf(o, "%9.0f %8.2f\n", med(c, g, v, M_BARE_HARVEST_US),
					med(c, g, v, M_PAUSE_X_BARE));
				if (best_cow < 0 || med(c, g, v, M_PAUSE_MED_US) <
						    med(c, g, (unsigned)best_cow, M_PAUSE_MED_US))
					best_cow = (int)v;
			} else {
				fprintf(o, "%9s %8s\n", "-", "-");
			}
			json_array_append_new(cases, json_pack(
				"{s:s, s:f, s:o, s:f, s:f, s:f}", "variant", c->variants[v],
				"writes_per_s", wps, "x_unprotected",
				unprot > 0 ? json_real(x) : json_null(), "pause_median_us",
				med(c, g, v, M_PAUSE_MED_US), "pause_p99_us",
				med(c, g, v, M_PAUSE_P99_US), "pages_per_epoch",
				med(c, g, v, M_PAGES_EPOCH)));
		}
		gj = json_pack("{s:s, s:i, s:I, s:o, s:b, s:o}", "group", c->groups[g].name,
			       "dirty_pct_per_epoch", s->pct[g], "offered_writes_per_s",
			       (json_int_t)s->rate[g], "unprotected_writes_per_s",
			       s->iu >= 0 ? json_real(unprot) : json_null(), "writer_bound", bound,
			       "cases", cases);
		if (best_cow >= 0) {
			unsigned b = (unsigned)best_cow;

			fprintf(o, "best cow: %s pause median %.0f us = %.2fx the bare PAGEMAP_SCAN "
				"harvest (%.0f us for %.0f dirty pages of %" PRIu64 " MiB, same run)\n",
				c->variants[b], med(c, g, b, M_PAUSE_MED_US),
				med(c, g, b, M_PAUSE_X_BARE), med(c, g, b, M_BARE_HARVEST_US),
				med(c, g, b, M_PAGES_EPOCH), c->o.size >> 20);
			json_object_set_new(gj, "best_cow", json_pack(
				"{s:s, s:f, s:f, s:f, s:f}", "variant", c->variants[b],
				"pause_median_us", med(c, g, b, M_PAUSE_MED_US), "bare_harvest_us",
				med(c, g, b, M_BARE_HARVEST_US), "dirty_pages",
				med(c, g, b, M_PAGES_EPOCH), "ratio", med(c, g, b, M_PAUSE_X_BARE)));
		}
		{
			json_t *fails = json_array();

			for (unsigned v = 0; v < c->nvariants; v++) {
				if (!s->failed[g][v])
					continue;
				fprintf(o, "NB: %s failed %u time(s) and was run again; last: %s\n",
					c->variants[v], s->failed[g][v], s->why[g][v]);
				json_array_append_new(fails, json_pack("{s:s, s:i, s:s}", "variant",
								       c->variants[v], "failures",
								       (int)s->failed[g][v], "last_error",
								       s->why[g][v]));
			}
			json_object_set_new(gj, "failed_runs", fails);
		}
		json_array_append_new(groups, gj);

		if (s->pct[g] != CK_TARGET_PCT)
			continue;
		fprintf(o, "\nTarget (ftrepl issue 3; reported, not asserted): the workload keeps "
			">= %.1fx of its unprotected throughput at %u %% per epoch%s\n",
			CK_TARGET_RATIO, CK_TARGET_PCT,
			bound ? " (NB: writer-bound here, see above)" : "");
		if (s->have_fb && unprot > 0) {
			/* The kernel's fault alone, with no pause, harvest or
			 * send: each first write to a page in an epoch pays one
			 * async WP fault. f = first writes / writes at the
			 * offered rate; the writer's own time per write is the
			 * unprotected run's when it is writer-bound (its
			 * maximum), else the baseline's fill. */
			double np = (double)(c->o.size / CK_PAGE);
			double per_epoch = (double)s->rate[g] * CK_EPOCH_MS / 1000.0;
			double f = fmin(1.0, dirty_share(per_epoch, (uint64_t)np) * np / per_epoch);
			double tw = bound ? 1e9 / unprot : s->fb_fill_ns;
			double wmax = 1e9 / (tw + f * s->fb_fault_ns);
			double cap = fmin((double)s->rate[g], wmax) / unprot;

			fprintf(o, "  bound from the WP fault alone (same run: fill %.2f us/page, async "
				"WP fault %.2f us/page; %.0f %% of writes are first writes): any "
				"write-protect tracker keeps <= %.2fx\n", s->fb_fill_ns / 1e3,
				s->fb_fault_ns / 1e3, 100 * f, cap);
			json_object_set_new(c->summary, "wp_fault_bound", json_pack(
				"{s:i, s:f, s:f, s:f, s:f}", "dirty_pct", CK_TARGET_PCT,
				"first_write_share", f, "fill_ns", s->fb_fill_ns, "fault_ns",
				s->fb_fault_ns, "max_x_unprotected", cap));
		}
		for (unsigned v = 0; v < c->nvariants; v++) {
			double x;

			if (s->combo[v].unprotected)
				continue;
			x = unprot > 0 ? med(c, g, v, M_WPS) / unprot : 0;
			fprintf(o, "  %-20s %5.2fx  %s\n", c->variants[v], x,
				unprot <= 0 ? "n/a (no unprotected run)" : x >= CK_TARGET_RATIO ? "yes"
											: "no");
			json_array_append_new(checks, json_pack(
				"{s:s, s:s, s:o, s:o, s:b}", "check",
				">= 0.7x unprotected throughput at 10 % per epoch", "variant",
				c->variants[v], "value", unprot > 0 ? json_real(x) : json_null(), "pass",
				unprot > 0 ? json_boolean(x >= CK_TARGET_RATIO) : json_null(),
				"writer_bound", bound));
		}
	}
	fprintf(o, "\n(medians of %u runs; pause = the workload's stop per epoch in the measured "
		"window, from parked to resumed; x unpr = writes/s / the unprotected workload's in "
		"the same rounds)\n", c->o.runs);
	json_object_set_new(c->summary, "groups", groups);
	json_object_set_new(c->summary, "checks", checks);
}

static void ck_finish(struct ftb_ctx *c)
{
	free(c->priv);
	c->priv = NULL;
}

/* --plot: epoch pause (median) against the measured dirty share per epoch,
 * one line per protected variant. */
static int ck_plot(struct ftb_ctx *c, FILE *gp, const char *datafile, FILE *data)
{
	unsigned nlines = 0;

	if (!c->nvariants || !c->ngroups)
		return -ENODATA;
	for (unsigned v = 0; v < c->nvariants; v++) {
		if (!strcmp(c->variants[v], "unprotected"))
			continue;
		fprintf(data, "# %s\n", c->variants[v]);
		for (unsigned g = 0; g < c->ngroups; g++) {
			struct ftb_stats x, y;

			if (c->groups[g].skipped)
				continue;
			ftb_case_stats(c, g, v, M_DIRTY_PCT, &x);
			ftb_case_stats(c, g, v, M_PAUSE_MED_US, &y);
			fprintf(data, "%.3f %.3f\n", x.median, y.median / 1000.0);
		}
		fprintf(data, "\n\n");
		nlines++;
	}
	if (!nlines)
		return -ENODATA;
	fprintf(gp, "set title \"ftbench --checkpoint: epoch pause against dirty pages per epoch "
		"(%" PRIu64 " MiB, 20 ms epochs)\"\n", c->o.size >> 20);
	fprintf(gp, "set xlabel '%% of the region dirtied per epoch (measured)'\n"
		"set ylabel 'epoch pause, median (ms)'\nset grid\nset key top left\n"
		"set yrange [0:*]\n");
	fprintf(gp, "plot ");
	for (unsigned v = 0, i = 0; v < c->nvariants; v++) {
		if (!strcmp(c->variants[v], "unprotected"))
			continue;
		fprintf(gp, "%s'%s' index %u using 1:2 with linespoints title '%s'",
			i ? ", " : "", datafile, i, c->variants[v]);
		i++;
	}
	fprintf(gp, "\n");
	return 0;
}

const struct ftb_mode ftb_mode_checkpoint = {
	.name = "checkpoint",
	.summary = "replicate a workload dirtying 1/10/30 % of its pages per 20 ms epoch with\n"
		   "each dirty-tracking backend and snapshot strategy: epoch pause median/p99,\n"
		   "throughput against the same workload unprotected (same run), pages per\n"
		   "epoch, and the cow pause against a bare PAGEMAP_SCAN harvest",
	.example = "ftbench --checkpoint --size 256M --runs 1",
	.duration = "takes 2-4 min with the defaults (1G, 8 variants, 3 rates, 1 run, no\n"
		    "warm-up), about 1 min at 256M; --all about twice that",
	.default_variants = CK_DEFAULT_VARIANTS,
	.default_size = 1ull << 30,
	.default_runs = 1,
	.metrics = metrics,
	.nmetrics = M__COUNT,
	.prepare = ck_prepare,
	.group_begin = ck_group_begin,
	.run = ck_run,
	.report = ck_report,
	.plot = ck_plot,
	.finish = ck_finish,
};
