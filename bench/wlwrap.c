/* SPDX-License-Identifier: MIT */
/*
 * A synthetic workload the bench can watch and gate (ftbench.h, "a
 * synthetic workload the bench can watch and gate").
 *
 * The library's synthetic workload sits behind a wrapper that fills the
 * same ops table (src/checkpoint/workload.h) and forwards every op. Two
 * things are added:
 *   - pause samples: the engine calls pause() at every epoch cut (and a few
 *     times during the initial sync) and resume() when the workload may run
 *     again; the time from pause() returning (the writer is parked at a safe
 *     point) to resume() is the pause the workload sees, the same interval
 *     the primary's own pause statistics measure;
 *   - the gate: while it is closed the writer stays parked even when the
 *     engine resumes it, so a bench can make the workload write exactly
 *     between two instants (e.g. "25 % of the pages, then stop").
 *
 * Threads: the engine thread calls the ops; any thread may move the gate.
 * One mutex orders the two, so the inner workload is resumed only when
 * neither the engine (inside a pause) nor the gate holds it.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ftrepl/checkpoint.h>

#include "checkpoint/workload.h"
#include "ftbench.h"

#define WL_PAUSE_TIMEOUT_MS 10000

struct ftb_wl {
	struct ftr_workload wl;	/* what the primary sees; ops = wrap_ops */
	struct ftr_workload *in;	/* the library's synthetic workload */
	pthread_mutex_t lock;
	bool gated;		/* created with a gate */
	bool gate_open;
	bool engine_paused;	/* between the engine's pause() and resume() */
	bool inner_paused;	/* the inner writer is parked by us */
	bool started;
	uint64_t pause_t0;
	uint64_t *p_end, *p_dur;
	size_t np, cap;
};

static struct ftb_wl *to_wrap(struct ftr_workload *wl)
{
	return (struct ftb_wl *)((char *)wl - offsetof(struct ftb_wl, wl));
}

/* Parks the inner writer. Caller holds lock. */
static int inner_park(struct ftb_wl *w, int timeout_ms)
{
	int ret = 0;

	if (!w->inner_paused) {
		ret = w->in->ops->pause(w->in, timeout_ms);
		if (!ret)
			w->inner_paused = true;
	}
	return ret;
}

/* Lets the inner writer run if nobody holds it. Caller holds lock. */
static void inner_release(struct ftb_wl *w)
{
	if (w->inner_paused && !w->engine_paused && (!w->gated || w->gate_open)) {
		w->in->ops->resume(w->in);
		w->inner_paused = false;
	}
}

static int wrap_start(struct ftr_workload *wl)
{
	struct ftb_wl *w = to_wrap(wl);
	int ret;

	pthread_mutex_lock(&w->lock);
	/* Parked before the writer's first write when the gate is closed. */
	if (w->gated && !w->gate_open)
		inner_park(w, WL_PAUSE_TIMEOUT_MS);
	ret = w->in->ops->start(w->in);
	if (!ret)
		w->started = true;
	pthread_mutex_unlock(&w->lock);
	return ret;
}

static int wrap_pause(struct ftr_workload *wl, int timeout_ms)
{
	struct ftb_wl *w = to_wrap(wl);
	int ret;

	pthread_mutex_lock(&w->lock);
	ret = inner_park(w, timeout_ms);
	if (!ret) {
		w->engine_paused = true;
		w->pause_t0 = ftb_now_ns();
	}
	pthread_mutex_unlock(&w->lock);
	return ret;
}

static void wrap_resume(struct ftr_workload *wl)
{
	struct ftb_wl *w = to_wrap(wl);
	uint64_t now = ftb_now_ns();

	pthread_mutex_lock(&w->lock);
	if (w->engine_paused && w->np < w->cap) {
		w->p_end[w->np] = now;
		w->p_dur[w->np] = now - w->pause_t0;
		w->np++;
	}
	w->engine_paused = false;
	inner_release(w);
	pthread_mutex_unlock(&w->lock);
}

static int64_t wrap_harvest(struct ftr_workload *wl, uint64_t **maps)
{
	struct ftb_wl *w = to_wrap(wl);

	return w->in->ops->harvest(w->in, maps);
}

static ssize_t wrap_blob(struct ftr_workload *wl, void *buf, size_t cap)
{
	struct ftb_wl *w = to_wrap(wl);

	return w->in->ops->blob(w->in, buf, cap);
}

static void wrap_set_limits(struct ftr_workload *wl, uint64_t soft, uint64_t hard)
{
	struct ftb_wl *w = to_wrap(wl);

	w->in->ops->set_dirty_limits(w->in, soft, hard);
}

static uint64_t wrap_progress(struct ftr_workload *wl)
{
	struct ftb_wl *w = to_wrap(wl);

	return w->in->ops->progress ? w->in->ops->progress(w->in) : 0;
}

static void wrap_stop(struct ftr_workload *wl)
{
	struct ftb_wl *w = to_wrap(wl);

	/* The inner stop wakes a parked writer and joins it. */
	w->in->ops->stop(w->in);
	pthread_mutex_lock(&w->lock);
	w->started = false;
	w->inner_paused = false;
	pthread_mutex_unlock(&w->lock);
}

static void wrap_destroy(struct ftr_workload *wl)
{
	ftb_wl_destroy(to_wrap(wl));
}

/* The synthetic workload has no output-commit ops: none to forward. */
static const struct ftr_workload_ops wrap_ops = {
	.name = "ftbench-synth",
	.start = wrap_start,
	.pause = wrap_pause,
	.resume = wrap_resume,
	.harvest = wrap_harvest,
	.blob = wrap_blob,
	.set_dirty_limits = wrap_set_limits,
	.epoch_cut = NULL,
	.acked = NULL,
	.session_lost = NULL,
	.progress = wrap_progress,
	.stop = wrap_stop,
	.destroy = wrap_destroy,
};

int ftb_wl_create(const struct ftr_synth_spec *spec, uint64_t advance, bool gated,
		  size_t max_pauses, struct ftb_wl **out)
{
	struct ftb_wl *w = calloc(1, sizeof(*w));
	int ret;

	if (!w)
		return -ENOMEM;
	w->cap = max_pauses;
	w->p_end = calloc(max_pauses ? max_pauses : 1, sizeof(uint64_t));
	w->p_dur = calloc(max_pauses ? max_pauses : 1, sizeof(uint64_t));
	if (!w->p_end || !w->p_dur) {
		ret = -ENOMEM;
		goto out_free;
	}
	ret = ftr_synth_workload_create(spec, &w->in);
	if (ret)
		goto out_free;
	if (advance && (ret = ftr_synth_workload_advance(w->in, advance))) {
		ftr_workload_destroy(w->in);
		goto out_free;
	}
	/* The inner workload stays silent about its dirty set unless asked:
	 * every op goes through the wrapper. */
	if (w->in->ops->epoch_cut || w->in->ops->acked || w->in->ops->session_lost) {
		ftr_workload_destroy(w->in);
		ret = -EOPNOTSUPP;
		goto out_free;
	}
	pthread_mutex_init(&w->lock, NULL);
	w->gated = gated;
	w->wl = *w->in;
	w->wl.ops = &wrap_ops;
	*out = w;
	return 0;

out_free:
	free(w->p_end);
	free(w->p_dur);
	free(w);
	return ret;
}

struct ftr_workload *ftb_wl_workload(struct ftb_wl *w)
{
	return &w->wl;
}

void ftb_wl_gate(struct ftb_wl *w, bool open)
{
	pthread_mutex_lock(&w->lock);
	w->gate_open = open;
	if (open)
		inner_release(w);
	else if (w->started)
		inner_park(w, WL_PAUSE_TIMEOUT_MS);
	pthread_mutex_unlock(&w->lock);
}

int ftb_wl_region_fd(struct ftb_wl *w)
{
	return w->wl.regions[0].fd;
}

uint64_t ftb_wl_writes(struct ftb_wl *w)
{
	return wrap_progress(&w->wl);
}

int ftb_wl_start(struct ftb_wl *w)
{
	return wrap_start(&w->wl);
}

void ftb_wl_stop(struct ftb_wl *w)
{
	wrap_stop(&w->wl);
}

size_t ftb_wl_pauses(const struct ftb_wl *w, const uint64_t **end, const uint64_t **dur)
{
	*end = w->p_end;
	*dur = w->p_dur;
	return w->np;
}

void ftb_wl_destroy(struct ftb_wl *w)
{
	if (!w)
		return;
	ftr_workload_destroy(w->in);
	pthread_mutex_destroy(&w->lock);
	free(w->p_end);
	free(w->p_dur);
	free(w);
}

/* ---- small shared helpers ------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void ftb_u64_pcts(uint64_t *v, size_t n, uint64_t *median, uint64_t *p99)
{
	size_t idx;

	*median = *p99 = 0;
	if (!n)
		return;
	qsort(v, n, sizeof(v[0]), cmp_u64);
	*median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	idx = (n * 99 + 99) / 100;
	*p99 = v[idx ? idx - 1 : 0];
}

uint64_t ftb_mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	unsigned long long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

int ftb_read_full(int fd, void *buf, size_t len, int timeout_ms)
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

int ftb_write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		done += (size_t)n;
	}
	return 0;
}

void ftb_close_fds_except(const int *keep, unsigned nkeep)
{
	DIR *d = opendir("/proc/self/fd");
	int fds[1024];
	unsigned n = 0;
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) && n < 1024) {
		int fd = atoi(e->d_name);
		bool keep_it = fd <= 2 || fd == dirfd(d) || e->d_name[0] == '.';

		for (unsigned i = 0; i < nkeep && !keep_it; i++)
			keep_it = keep[i] == fd;
		if (!keep_it)
			fds[n++] = fd;
	}
	closedir(d);
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}
