/* SPDX-License-Identifier: MIT */
/*
 * The in-process synthetic workload: one memfd region written by its own
 * thread ("writer") with the exact writes of DESIGN.md's specification, and
 * dirty tracking that is exact because the writer marks every page it
 * writes.
 *
 * Pause protocol: the engine sets pause_req; the writer checks it between
 * writes (never inside one), sets paused and waits on the condition
 * variable. Everything the writer did before it set paused (page contents,
 * dirty bits) happens-before the engine's harvest through the mutex.
 *
 * Dirty budget: at `soft` dirty pages the writer pokes cut_fd so the engine
 * cuts an epoch early; at `hard` it parks itself (as if paused) until the
 * next harvest, so an epoch never holds more than `hard` pages.
 */
#define FTR_LOG_PREFIX "synth"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/synth.h>

#include "checkpoint/workload.h"
#include "common/common.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SYNTH_BLOB_MAGIC 0x31424f4c42525446ull /* "FTRBLOB1" */

struct synth_wl {
	struct ftr_workload wl;
	struct ftr_synth_gen gen;
	uint8_t *base;
	uint64_t size;
	int fd;

	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	atomic_bool pause_req;
	atomic_bool stop;
	bool paused;		/* under lock */

	/* Writer-owned; read by harvest only while the writer is parked. */
	uint64_t *dirty;
	uint64_t ndirty;
	bool cut_signaled;
	_Atomic uint64_t soft, hard;

	_Atomic uint64_t k;	/* writes completed, for status */
};

static inline struct synth_wl *to_synth(struct ftr_workload *wl)
{
	return container_of(wl, struct synth_wl, wl);
}

static inline void mark_dirty(struct synth_wl *s, uint64_t page)
{
	uint64_t *w = &s->dirty[page >> 6], bit = 1ull << (page & 63);

	if (!(*w & bit)) {
		*w |= bit;
		s->ndirty++;
	}
}

static void poke_cut(struct synth_wl *s)
{
	uint64_t one = 1;

	if (write(s->wl.cut_fd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: a cut is already requested */
	}
}

/* Parks the writer while a pause is requested or the dirty budget is
 * spent. */
static void writer_park(struct synth_wl *s)
{
	pthread_mutex_lock(&s->lock);
	s->paused = true;
	pthread_cond_broadcast(&s->cv);
	while (!atomic_load(&s->stop) &&
	       (atomic_load(&s->pause_req) || s->ndirty >= atomic_load(&s->hard))) {
		struct timespec dl = ftr_deadline_ms(200);

		pthread_cond_timedwait(&s->cv, &s->lock, &dl);
	}
	s->paused = false;
	pthread_mutex_unlock(&s->lock);
}

static void *writer_main(void *arg)
{
	struct synth_wl *s = arg;
	uint64_t rate = s->gen.spec.rate, t0 = ftr_now_ns(), done = 0;

	ftr_thread_name("ftr-synth");

	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		uint64_t p;

		if (atomic_load_explicit(&s->pause_req, memory_order_acquire) ||
		    s->ndirty >= atomic_load_explicit(&s->hard, memory_order_relaxed)) {
			if (s->ndirty >= atomic_load(&s->hard) && !s->cut_signaled) {
				s->cut_signaled = true;
				poke_cut(s);
			}
			writer_park(s);
			/* A pause is not a reason to write in a burst afterwards. */
			t0 = ftr_now_ns();
			done = 0;
			continue;
		}
		if (rate) {
			uint64_t now = ftr_now_ns();
			uint64_t due = t0 + done * 1000000000ull / rate;

			if (now < due) {
				uint64_t ns = FTR_MIN(due - now, 1000000ull);
				struct timespec ts = { 0, (long)ns };

				nanosleep(&ts, NULL);
				continue;
			}
		}
		/* Marked right after the write and before the next pause
		 * check, so every write done before a pause is in that pause's
		 * harvest; a live-sync read that raced with it is resent. */
		p = ftr_synth_write(&s->gen, s->base);
		mark_dirty(s, p);
		mark_dirty(s, 0);
		done++;
		atomic_store_explicit(&s->k, s->gen.k, memory_order_relaxed);
		if (!s->cut_signaled && s->ndirty >= atomic_load_explicit(&s->soft, memory_order_relaxed)) {
			s->cut_signaled = true;
			poke_cut(s);
		}
	}
	return NULL;
}

static int synth_start(struct ftr_workload *wl)
{
	struct synth_wl *s = to_synth(wl);
	int ret;

	if (s->started)
		return -EALREADY;
	ret = -pthread_create(&s->thread, NULL, writer_main, s);
	if (!ret)
		s->started = true;
	return ret;
}

static int synth_pause(struct ftr_workload *wl, int timeout_ms)
{
	struct synth_wl *s = to_synth(wl);
	uint64_t end = ftr_now_ms() + (uint64_t)timeout_ms;
	int ret = 0;

	atomic_store_explicit(&s->pause_req, true, memory_order_release);
	if (!s->started)
		return 0;
	pthread_mutex_lock(&s->lock);
	while (!s->paused) {
		struct timespec dl = ftr_deadline_ms(20);

		if (ftr_now_ms() > end) {
			ret = -ETIMEDOUT;
			break;
		}
		pthread_cond_timedwait(&s->cv, &s->lock, &dl);
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static void synth_resume(struct ftr_workload *wl)
{
	struct synth_wl *s = to_synth(wl);

	pthread_mutex_lock(&s->lock);
	atomic_store_explicit(&s->pause_req, false, memory_order_release);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

static int64_t synth_harvest(struct ftr_workload *wl, uint64_t **maps)
{
	struct synth_wl *s = to_synth(wl);
	size_t words = ftr_bitmap_words(s->size / FTR_SYNTH_PAGE);
	uint64_t count, drain;
	int64_t n;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < words; i++)
		maps[0][i] |= s->dirty[i];
	memset(s->dirty, 0, words * sizeof(uint64_t));
	count = s->ndirty;
	s->ndirty = 0;
	s->cut_signaled = false;
	/* A cut request belongs to the epoch just harvested. */
	n = read(s->wl.cut_fd, &drain, sizeof(drain));
	(void)n;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	return (int64_t)count;
}

struct synth_blob {
	uint64_t magic;
	uint64_t k;
	uint64_t seed;
};

static ssize_t synth_blob_get(struct ftr_workload *wl, void *buf, size_t cap)
{
	struct synth_wl *s = to_synth(wl);
	struct synth_blob b = {
		.magic = htole64(SYNTH_BLOB_MAGIC),
		.k = htole64(s->gen.k),
		.seed = htole64(s->gen.spec.seed),
	};

	if (cap < sizeof(b))
		return -ENOSPC;
	memcpy(buf, &b, sizeof(b));
	return (ssize_t)sizeof(b);
}

static void synth_set_limits(struct ftr_workload *wl, uint64_t soft, uint64_t hard)
{
	struct synth_wl *s = to_synth(wl);

	atomic_store(&s->soft, soft);
	pthread_mutex_lock(&s->lock);
	atomic_store(&s->hard, hard);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

static uint64_t synth_progress(struct ftr_workload *wl)
{
	return atomic_load(&to_synth(wl)->k);
}

static void synth_stop(struct ftr_workload *wl)
{
	struct synth_wl *s = to_synth(wl);

	if (!s->started)
		return;
	pthread_mutex_lock(&s->lock);
	atomic_store(&s->stop, true);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	s->started = false;
}

static void synth_destroy(struct ftr_workload *wl)
{
	struct synth_wl *s = to_synth(wl);

	synth_stop(wl);
	munmap(s->base, s->size);
	close(s->fd);
	close(s->wl.cut_fd);
	free(s->dirty);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cv);
	free(s);
}

static const struct ftr_workload_ops synth_ops = {
	.name = "synth",
	.start = synth_start,
	.pause = synth_pause,
	.resume = synth_resume,
	.harvest = synth_harvest,
	.blob = synth_blob_get,
	.set_dirty_limits = synth_set_limits,
	.progress = synth_progress,
	.stop = synth_stop,
	.destroy = synth_destroy,
};

int ftr_synth_workload_create(const struct ftr_synth_spec *spec, struct ftr_workload **out)
{
	struct synth_wl *s;
	uint64_t npages = spec->size / FTR_SYNTH_PAGE;
	int ret;

	if (spec->size % FTR_SYNTH_PAGE || npages < 2)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->size = spec->size;
	s->dirty = calloc(ftr_bitmap_words(npages), sizeof(uint64_t));
	s->fd = memfd_create("ftrepl-synth", MFD_CLOEXEC);
	s->wl.cut_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!s->dirty || s->fd < 0 || s->wl.cut_fd < 0) {
		ret = s->dirty ? -errno : -ENOMEM;
		goto out_free;
	}
	if (ftruncate(s->fd, (off_t)s->size)) {
		ret = -errno;
		goto out_free;
	}
	s->base = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->base == MAP_FAILED) {
		ret = -errno;
		goto out_free;
	}
	/* The writer should measure writes, not first-touch faults. */
	madvise(s->base, s->size, MADV_POPULATE_WRITE);
	pthread_mutex_init(&s->lock, NULL);
	ftr_cond_init_monotonic(&s->cv);
	atomic_init(&s->soft, UINT64_MAX);
	atomic_init(&s->hard, UINT64_MAX);
	ftr_synth_gen_init(&s->gen, spec);
	ftr_synth_init_image(&s->gen, s->base);
	mark_dirty(s, 0);

	s->wl.ops = &synth_ops;
	s->wl.page_size = FTR_SYNTH_PAGE;
	s->wl.nregions = 1;
	s->wl.regions[0].base = s->base;
	s->wl.regions[0].size = s->size;
	s->wl.regions[0].fd = s->fd;
	ftr_strlcpy(s->wl.regions[0].name, "synth", sizeof(s->wl.regions[0].name));
	*out = &s->wl;
	return 0;

out_free:
	if (s->fd >= 0)
		close(s->fd);
	if (s->wl.cut_fd >= 0)
		close(s->wl.cut_fd);
	free(s->dirty);
	free(s);
	return ret;
}

int ftr_synth_workload_advance(struct ftr_workload *wl, uint64_t writes)
{
	struct synth_wl *s;

	if (!wl || wl->ops != &synth_ops)
		return -EINVAL;
	s = to_synth(wl);
	if (s->started)
		return -EBUSY;
	for (uint64_t i = 0; i < writes; i++) {
		uint64_t p = ftr_synth_write(&s->gen, s->base);

		mark_dirty(s, p);
	}
	atomic_store(&s->k, s->gen.k);
	return 0;
}

void ftr_workload_destroy(struct ftr_workload *wl)
{
	if (wl)
		wl->ops->destroy(wl);
}

int ftr_workload_dump(struct ftr_workload *wl, int fd)
{
	for (uint32_t r = 0; r < wl->nregions; r++) {
		int ret = ftr_write_all(fd, wl->regions[r].base, wl->regions[r].size);

		if (ret)
			return ret;
	}
	return 0;
}
