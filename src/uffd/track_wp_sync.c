/* SPDX-License-Identifier: MIT */
/*
 * The "wp-sync" dirty tracker: classic userfaultfd write-protect.
 *
 * Every page is write-protected at start. The first write to a page blocks
 * the writer and queues a WP fault message; the handler thread (one per
 * tracker, started here) reads it, sets the page's bit in the `live` bitmap
 * and unprotects the page, which wakes the writer. A page is therefore
 * unprotected only once its bit is set, and stays unprotected (later writes
 * cost nothing) until harvest, which moves the live bits out and re-protects
 * exactly those pages. Protecting a page that is already protected changes
 * nothing, so harvest re-protects runs of dirty pages joined across small
 * clean gaps (MERGE_GAP) with one ioctl per run.
 *
 * Exactness with concurrent writers: two threads faulting on one page queue
 * two messages; the first unprotect wakes both and removes the second from
 * the queue unless the handler had already read it in the same batch. Such
 * a stale message, handled after a harvest had re-protected the page, would
 * unprotect a page nobody wrote in the new epoch (a false positive). The
 * handler therefore holds `lock` from read() until every message of the
 * batch is handled, and harvest takes the same lock: with the writers paused
 * no message is queued, so a harvest sees a settled bitmap.
 *
 * Anonymous memory: without UFFD_FEATURE_WP_UNPOPULATED a page that was
 * never touched cannot be protected (no pte), so its first write would be
 * missed; the regions are then populated with MADV_POPULATE_WRITE first
 * (for an attached uffd the features are read from /proc/self/fdinfo; an
 * attached uffd with WP_ASYNC is refused: its faults never reach us).
 *
 * Thread: wps_main() polls the uffd and a stop eventfd (bounded poll, so a
 * lost wake-up costs at most WPS_POLL_MS); ftr_track_destroy unprotects all
 * (waking any blocked writer), signals the eventfd and joins it.
 *
 * Sharing with cow (ftr_track_set_wp_hook): a region has room for one
 * uffd, so the cow snapshot runs on this one. After a harvest every page is
 * protected (clean ones never lost their protection, dirty ones were just
 * re-protected), which is exactly what cow needs to arm an epoch: arming
 * costs no ioctl. The hook copies a page of the epoch aside before its
 * writer goes on, or keeps the page protected while it is being sent.
 *
 * Cost (FACTS.md): ~17 us per first write to a page per epoch (handler on
 * the same vCPU; more across vCPUs); harvest is ~one ioctl per dirty run.
 */
#define FTR_LOG_PREFIX "track"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include "uffd/track_impl.h"
#include "uffd/uffd_io.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Messages read per read() call. */
#define WPS_BATCH 64
/* Upper bound of one poll() in the handler. */
#define WPS_POLL_MS 1000
/* Clean pages between two dirty runs that harvest protects anyway to make
 * one UFFDIO_WRITEPROTECT call out of two (re-protecting clean pages is a
 * no-op; each call costs a kernel entry and a TLB flush). */
#define MERGE_GAP 16

struct wps_track {
	struct ftr_track t;
	int uffd;
	bool own_uffd;
	int stop_fd;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;	/* handler batch vs harvest */
	uint64_t **live;	/* pages unprotected since the last harvest */
	atomic_int error;	/* first handler error (-errno), 0 if none */
	ftr_track_wp_hook hook;	/* under lock: a snapshot engine sharing the uffd */
	void *hook_ctx;
	bool warned_foreign;	/* handler thread only */
};

static struct wps_track *to_wps(struct ftr_track *t)
{
	return container_of(t, struct wps_track, t);
}

static void wps_set_error(struct wps_track *w, int err)
{
	int zero = 0;

	if (atomic_compare_exchange_strong(&w->error, &zero, err))
		pr_err("wp-sync handler: %s", strerror(-err));
}

/* Handles one message. Called with w->lock held. Returns 0, or -errno
 * when the fault could not be resolved (fatal for the handler). */
static int wps_handle(struct wps_track *w, const struct uffd_msg *msg)
{
	const uint32_t ps = w->t.page_size;
	uintptr_t addr;
	int rc;

	if (msg->event != UFFD_EVENT_PAGEFAULT) {
		if (!w->warned_foreign) {
			pr_warn("wp-sync: ignoring uffd event 0x%x", msg->event);
			w->warned_foreign = true;
		}
		return 0;
	}
	addr = (uintptr_t)msg->arg.pagefault.address & ~(uintptr_t)(ps - 1);
	if (!(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
		/* A missing/minor fault on an attached uffd is the owner's;
		 * nothing here can resolve it. */
		if (!w->warned_foreign) {
			pr_warn("wp-sync: ignoring a non-WP fault at %#lx", (unsigned long)addr);
			w->warned_foreign = true;
		}
		return 0;
	}
	atomic_fetch_add_explicit(&w->t.faults, 1, memory_order_relaxed);
	for (unsigned r = 0; r < w->t.nregions; r++) {
		uintptr_t base = (uintptr_t)w->t.regions[r].base;

		if (addr >= base && addr - base < w->t.regions[r].size) {
			uint64_t p = (addr - base) / ps;

			__atomic_fetch_or(&w->live[r][p >> 6], 1ull << (p & 63),
					  __ATOMIC_RELAXED);
			/* The hook's owner unprotects it later (cow: the
			 * page is being sent from where it lies). */
			if (w->hook && !w->hook(w->hook_ctx, r, p))
				return 0;
			break;
		}
	}
	/* Unprotect (and wake) also outside our regions: a writer must never
	 * stay blocked on a fault nobody else will read. ENOENT: the range
	 * was unregistered meanwhile (destroy), its writers are awake. */
	rc = ftr_uffd_wp(w->uffd, (void *)addr, ps, false, false);
	return rc == -ENOENT ? 0 : rc;
}

/* The handler cannot go on: unprotect everything so that no writer ever
 * blocks on a fault nobody reads (tracking is lost; harvest reports the
 * error from now on). */
static void wps_fail(struct wps_track *w, int err)
{
	wps_set_error(w, err);
	pthread_mutex_lock(&w->lock);
	for (unsigned r = 0; r < w->t.nregions; r++)
		ftr_uffd_wp(w->uffd, w->t.regions[r].base, w->t.regions[r].size, false, false);
	pthread_mutex_unlock(&w->lock);
}

static void *wps_main(void *arg)
{
	struct wps_track *w = arg;
	struct uffd_msg msgs[WPS_BATCH];
	int fatal = 0;

	ftr_thread_name("ftr-wps");

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = w->uffd, .events = POLLIN },
			{ .fd = w->stop_fd, .events = POLLIN },
		};
		int n = poll(p, 2, WPS_POLL_MS);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			wps_fail(w, -errno);
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			wps_fail(w, -EIO);
			break;
		}
		if (!(p[0].revents & POLLIN))
			continue;

		pthread_mutex_lock(&w->lock);
		while (!fatal) {
			ssize_t got = read(w->uffd, msgs, sizeof(msgs));

			if (got <= 0) {
				if (got < 0 && errno == EINTR)
					continue;
				if (got == 0) /* not a uffd any more */
					fatal = -EIO;
				else if (errno != EAGAIN)
					fatal = -errno;
				break;
			}
			for (size_t i = 0; i < (size_t)got / sizeof(msgs[0]) && !fatal; i++)
				fatal = wps_handle(w, &msgs[i]);
			if ((size_t)got < sizeof(msgs))
				break;
		}
		pthread_mutex_unlock(&w->lock);
		if (fatal) {
			wps_fail(w, fatal);
			break;
		}
	}
	return NULL;
}

static void wps_free_live(struct wps_track *w)
{
	if (!w->live)
		return;
	for (unsigned r = 0; r < w->t.nregions; r++)
		free(w->live[r]);
	free(w->live);
	w->live = NULL;
}

/* Undoes start: unprotects (waking blocked writers) or unregisters, stops
 * the handler, closes what we opened. */
static void wps_undo(struct wps_track *w)
{
	for (unsigned r = 0; r < w->t.nregions && w->uffd >= 0; r++) {
		const struct ftr_track_region *g = &w->t.regions[r];

		if (w->own_uffd)
			ftr_uffd_unregister(w->uffd, g->base, g->size);
		else
			ftr_uffd_wp(w->uffd, g->base, g->size, false, false);
	}
	if (w->thread_started) {
		uint64_t one = 1;

		if (write(w->stop_fd, &one, sizeof(one)) != sizeof(one))
			pr_warn("wp-sync: stop eventfd: %s (handler stops within %d ms)",
				strerror(errno), WPS_POLL_MS);
		pthread_join(w->thread, NULL);
		w->thread_started = false;
	}
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	w->stop_fd = -1;
	if (w->own_uffd && w->uffd >= 0)
		close(w->uffd);
	w->uffd = -1;
	wps_free_live(w);
	pthread_mutex_destroy(&w->lock);
}

static int wps_start(struct ftr_track *t, const struct ftr_kprobe *kp, int uffd,
		     char *err, size_t errlen)
{
	struct wps_track *w = to_wps(t);
	bool shmem = false, anon = false, populate;
	int rc;

	w->uffd = -1;
	w->stop_fd = -1;
	atomic_init(&w->error, 0);
	for (unsigned r = 0; r < t->nregions; r++) {
		shmem |= t->regions[r].fd >= 0;
		anon |= t->regions[r].fd < 0;
	}
	if (!kp->wp) {
		ftr_track_errf(err, errlen, "uffd-wp unavailable: %s", ftr_kprobe_why(kp, FTR_KF_WP));
		return -EOPNOTSUPP;
	}
	if (shmem && !kp->wp_shmem) {
		ftr_track_errf(err, errlen, "uffd-wp on shmem unavailable: %s",
			       ftr_kprobe_why(kp, FTR_KF_WP_SHMEM));
		return -EOPNOTSUPP;
	}
	if (uffd < 0 && !kp->uffd_syscall && !kp->uffd_dev) {
		ftr_track_errf(err, errlen, "only a user-mode-only userfaultfd is available"
			       " here: writes the kernel makes into the regions would fail");
		return -EOPNOTSUPP;
	}
	populate = anon && !kp->wp_unpopulated;

	pthread_mutex_init(&w->lock, NULL);
	w->live = calloc(t->nregions, sizeof(*w->live));
	if (!w->live)
		goto nomem;
	for (unsigned r = 0; r < t->nregions; r++) {
		w->live[r] = calloc(ftr_bitmap_words(t->npages[r]), sizeof(uint64_t));
		if (!w->live[r])
			goto nomem;
	}

	if (uffd >= 0) {
		uint64_t have = 0;
		int fl;

		/* An async uffd resolves write faults in the kernel: this
		 * handler would never see one and every write would be
		 * missed. Unknown features: assume no WP_UNPOPULATED. */
		if (ftr_uffd_fd_features(uffd, &have) == 0 && (have & UFFD_FEATURE_WP_ASYNC)) {
			ftr_track_errf(err, errlen, "the attached uffd has UFFD_FEATURE_WP_ASYNC:"
				       " use wp-async");
			wps_undo(w);
			return -EOPNOTSUPP;
		}
		populate = anon && !(have & UFFD_FEATURE_WP_UNPOPULATED);
		fl = fcntl(uffd, F_GETFL);

		/* poll() on a blocking uffd reports POLLERR at once */
		if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(uffd, F_SETFL, fl | O_NONBLOCK) < 0)) {
			rc = -errno;
			ftr_track_errf(err, errlen, "attached uffd: O_NONBLOCK: %s", strerror(-rc));
			wps_undo(w);
			return rc;
		}
		w->uffd = uffd;
	} else {
		uint64_t want = UFFD_FEATURE_PAGEFAULT_FLAG_WP |
				(kp->features & (UFFD_FEATURE_WP_UNPOPULATED |
						 UFFD_FEATURE_WP_HUGETLBFS_SHMEM));

		rc = ftr_uffd_open(want, false, NULL, NULL, NULL);
		if (rc < 0) {
			ftr_track_errf(err, errlen, "userfaultfd for WP: %s", strerror(-rc));
			wps_undo(w);
			return -EOPNOTSUPP;
		}
		w->uffd = rc;
		w->own_uffd = true;
	}

	for (unsigned r = 0; r < t->nregions; r++) {
		const struct ftr_track_region *g = &t->regions[r];
		uint64_t ioctls = 0;

		if (populate && g->fd < 0 &&
		    madvise(g->base, g->size, MADV_POPULATE_WRITE) < 0) {
			rc = -errno;
			ftr_track_errf(err, errlen, "no UFFD_FEATURE_WP_UNPOPULATED and region %u"
				       " cannot be populated (MADV_POPULATE_WRITE: %s)", r,
				       strerror(-rc));
			wps_undo(w);
			return -EOPNOTSUPP;
		}
		if (!w->own_uffd)
			continue;
		rc = ftr_uffd_register(w->uffd, g->base, g->size, UFFDIO_REGISTER_MODE_WP,
				       &ioctls);
		if (rc == 0 && !ftr_uffd_has_ioctl(ioctls, _UFFDIO_WRITEPROTECT))
			rc = -EOPNOTSUPP;
		if (rc < 0) {
			ftr_track_errf(err, errlen, "region %u (%p, %llu bytes) cannot be registered"
				       " for write-protect: %s", r, g->base,
				       (unsigned long long)g->size, strerror(-rc));
			wps_undo(w);
			return -EOPNOTSUPP;
		}
	}

	w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->stop_fd < 0) {
		rc = -errno;
		ftr_track_errf(err, errlen, "eventfd: %s", strerror(-rc));
		wps_undo(w);
		return rc;
	}
	/* The handler runs before anything is protected: no write can block
	 * without someone to resolve it. */
	rc = pthread_create(&w->thread, NULL, wps_main, w);
	if (rc) {
		ftr_track_errf(err, errlen, "handler thread: %s", strerror(rc));
		wps_undo(w);
		return -rc;
	}
	w->thread_started = true;

	for (unsigned r = 0; r < t->nregions; r++) {
		const struct ftr_track_region *g = &t->regions[r];

		rc = ftr_uffd_wp(w->uffd, g->base, g->size, true, false);
		if (rc < 0) {
			ftr_track_errf(err, errlen, "write-protecting region %u: %s%s", r,
				       strerror(-rc), w->own_uffd ? "" :
				       " (is it registered in WP mode on the given uffd?)");
			wps_undo(w);
			return -EOPNOTSUPP;
		}
	}
	return 0;
nomem:
	ftr_track_errf(err, errlen, "out of memory");
	wps_undo(w);
	return -ENOMEM;
}

/* Re-protects [first, first + count) of region r; on failure puts those
 * pages back into live, so that they are reported again (a superset). */
static int wps_reprotect(struct wps_track *w, unsigned r, uint64_t first, uint64_t count)
{
	const uint32_t ps = w->t.page_size;
	char *base = w->t.regions[r].base;
	int rc = ftr_uffd_wp(w->uffd, base + first * ps, count * ps, true, false);

	if (rc < 0)
		ftr_bitmap_set_range(w->live[r], first, count);
	return rc;
}

static int wps_harvest(struct ftr_track *t, uint64_t **dirty)
{
	struct wps_track *w = to_wps(t);
	int rc, first_err = 0;

	pthread_mutex_lock(&w->lock);
	rc = atomic_load(&w->error);
	if (rc < 0) {
		pthread_mutex_unlock(&w->lock);
		return rc;
	}
	for (unsigned r = 0; r < t->nregions; r++) {
		const uint64_t npages = t->npages[r];
		const size_t words = ftr_bitmap_words(npages);
		uint64_t *live = w->live[r], *out = dirty[r];
		uint64_t p, run_first = 0, run_end = 0; /* current run: pages */
		bool in_run = false;

		for (size_t i = 0; i < words; i++)
			out[i] = __atomic_exchange_n(&live[i], 0, __ATOMIC_RELAXED);

		for (p = ftr_bitmap_next(out, 0, npages, true); p < npages;) {
			uint64_t e = ftr_bitmap_next(out, p, npages, false);

			if (in_run && p - run_end <= MERGE_GAP) {
				run_end = e;
			} else {
				if (in_run) {
					rc = wps_reprotect(w, r, run_first, run_end - run_first);
					if (rc < 0 && !first_err)
						first_err = rc;
				}
				run_first = p;
				run_end = e;
				in_run = true;
			}
			p = ftr_bitmap_next(out, e, npages, true);
		}
		if (in_run) {
			rc = wps_reprotect(w, r, run_first, run_end - run_first);
			if (rc < 0 && !first_err)
				first_err = rc;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return first_err;
}

int ftr_track_set_wp_hook(struct ftr_track *t, ftr_track_wp_hook fn, void *ctx)
{
	struct wps_track *w;

	if (!t || t->ops != &ftr_track_wp_sync_ops)
		return -EOPNOTSUPP;
	w = to_wps(t);
	pthread_mutex_lock(&w->lock);
	w->hook = fn;
	w->hook_ctx = fn ? ctx : NULL;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

int ftr_track_wp_release(struct ftr_track *t, unsigned region, uint64_t first, uint64_t n)
{
	struct wps_track *w;

	if (!t || t->ops != &ftr_track_wp_sync_ops)
		return -EOPNOTSUPP;
	if (region >= t->nregions || first > t->npages[region] || n > t->npages[region] - first)
		return -EINVAL;
	w = to_wps(t);
	return ftr_uffd_wp(w->uffd, (char *)t->regions[region].base + first * t->page_size,
			   n * t->page_size, false, false);
}

static void wps_stop(struct ftr_track *t)
{
	wps_undo(to_wps(t));
}

const struct ftr_track_ops ftr_track_wp_sync_ops = {
	.name = "wp-sync",
	.kind = FTR_TRACK_WP_SYNC,
	.size = sizeof(struct wps_track),
	.start = wps_start,
	.harvest = wps_harvest,
	.stop = wps_stop,
};
