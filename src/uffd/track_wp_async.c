/* SPDX-License-Identifier: MIT */
/*
 * The "wp-async" dirty tracker: userfaultfd write-protect in asynchronous
 * mode (UFFD_FEATURE_WP_ASYNC, 6.7) plus the PAGEMAP_SCAN ioctl.
 *
 * Every page of the regions is write-protected at start. A write to a
 * protected page is resolved by the kernel itself (no message, no thread):
 * it clears the page's protection, which is the "written" mark. Harvest is
 * PAGEMAP_SCAN on /proc/self/pagemap with PM_SCAN_WP_MATCHING (re-protect
 * what matched, atomically with reporting it) and PM_SCAN_CHECK_WPASYNC
 * (fail with EPERM rather than report garbage if a page is not under async
 * WP), selecting and returning PAGE_IS_WRITTEN: the kernel hands back the
 * written ranges and re-arms them in the same walk.
 *
 * Unpopulated pages: with UFFD_FEATURE_WP_UNPOPULATED (implied by WP_ASYNC)
 * the protection also covers pages never touched (pte markers), so their
 * first write is seen. Shmem/memfd needs UFFD_FEATURE_WP_HUGETLBFS_SHMEM.
 *
 * The walk_end quirk (FACTS.md): when one call returns more than 512 ranges
 * the kernel reports walk_end at its internal 512-entry flush point, and a
 * loop restarting there counts ranges twice. The output vector is therefore
 * SCAN_VEC_LEN <= 512 entries: a full vector ends the walk at the right
 * place and the loop continues from walk_end until it reaches the end.
 *
 * Cost (FACTS.md): 1 GiB scan + re-protect 10/18/28 ms at 1/10/100 %
 * random dirty; re-protect cost follows the number of 2 MiB blocks holding
 * dirty pages. The first write to a page after re-protect costs ~13-19 us.
 */
#define FTR_LOG_PREFIX "track"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "uffd/track_impl.h"
#include "uffd/uffd_io.h"

/* Output ranges per PAGEMAP_SCAN call; must stay <= 512 (quirk above). */
#define SCAN_VEC_LEN 512

struct wpa_track {
	struct ftr_track t;
	int uffd;
	bool own_uffd;
	int pagemap;
	struct page_region vec[SCAN_VEC_LEN];
};

static struct wpa_track *to_wpa(struct ftr_track *t)
{
	return container_of(t, struct wpa_track, t);
}

/* One PAGEMAP_SCAN call over [start, end): the written ranges go into
 * w->vec, protection is re-armed on them when wp. Returns the number of
 * ranges or -errno; *walk_end gets where the walk stopped. */
static int wpa_scan(struct wpa_track *w, uintptr_t start, uintptr_t end, uint64_t flags,
		    size_t vec_len, uintptr_t *walk_end)
{
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.flags = flags,
		.start = start,
		.end = end,
		.vec = vec_len ? (uintptr_t)w->vec : 0,
		.vec_len = vec_len,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	int n;

	do
		n = ioctl(w->pagemap, PAGEMAP_SCAN, &a);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	*walk_end = (uintptr_t)a.walk_end;
	return n;
}

static void wpa_undo(struct wpa_track *w)
{
	for (unsigned r = 0; r < w->t.nregions && w->uffd >= 0; r++) {
		const struct ftr_track_region *g = &w->t.regions[r];

		if (w->own_uffd)
			ftr_uffd_unregister(w->uffd, g->base, g->size);
		else /* async protection is harmless, but costs the owner */
			ftr_uffd_wp(w->uffd, g->base, g->size, false, false);
	}
	if (w->pagemap >= 0)
		close(w->pagemap);
	if (w->own_uffd && w->uffd >= 0)
		close(w->uffd);
	w->pagemap = -1;
	w->uffd = -1;
}

static int wpa_start(struct ftr_track *t, const struct ftr_kprobe *kp, int uffd,
		     char *err, size_t errlen)
{
	struct wpa_track *w = to_wpa(t);
	bool shmem = false;
	int rc;

	w->uffd = -1;
	w->pagemap = -1;
	for (unsigned r = 0; r < t->nregions; r++)
		shmem |= t->regions[r].fd >= 0;
	if (!kp->wp_async) {
		ftr_track_errf(err, errlen, "uffd-wp async unavailable: %s",
			       ftr_kprobe_why(kp, FTR_KF_WP_ASYNC));
		return -EOPNOTSUPP;
	}
	if (!kp->pagemap_scan_wp) {
		ftr_track_errf(err, errlen, "PAGEMAP_SCAN with WP_MATCHING unavailable: %s",
			       ftr_kprobe_why(kp, FTR_KF_PAGEMAP_SCAN_WP));
		return -EOPNOTSUPP;
	}
	if (shmem && !kp->wp_async_shmem) {
		ftr_track_errf(err, errlen, "uffd-wp async on shmem unavailable: %s",
			       ftr_kprobe_why(kp, FTR_KF_WP_ASYNC_SHMEM));
		return -EOPNOTSUPP;
	}

	if (uffd >= 0) {
		uint64_t have = 0;

		rc = ftr_uffd_fd_features(uffd, &have);
		if (rc == 0 && !(have & UFFD_FEATURE_WP_ASYNC)) {
			ftr_track_errf(err, errlen, "the attached uffd was set up without"
				       " UFFD_FEATURE_WP_ASYNC (features 0x%llx)",
				       (unsigned long long)have);
			return -EOPNOTSUPP;
		}
		/* rc < 0 (fdinfo unreadable): the CHECK_WPASYNC walk below
		 * still tells */
		w->uffd = uffd;
	} else {
		uint64_t want = UFFD_FEATURE_WP_ASYNC |
				(kp->features & (UFFD_FEATURE_WP_UNPOPULATED |
						 UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
						 UFFD_FEATURE_PAGEFAULT_FLAG_WP));

		/* Async faults never reach user space: a user-mode-only
		 * uffd is as good as any. */
		rc = ftr_uffd_open(want, true, NULL, NULL, NULL);
		if (rc < 0) {
			ftr_track_errf(err, errlen, "userfaultfd with WP_ASYNC: %s", strerror(-rc));
			return -EOPNOTSUPP;
		}
		w->uffd = rc;
		w->own_uffd = true;
		for (unsigned r = 0; r < t->nregions; r++) {
			const struct ftr_track_region *g = &t->regions[r];
			uint64_t ioctls = 0;

			rc = ftr_uffd_register(w->uffd, g->base, g->size,
					       UFFDIO_REGISTER_MODE_WP, &ioctls);
			if (rc == 0 && !ftr_uffd_has_ioctl(ioctls, _UFFDIO_WRITEPROTECT))
				rc = -EOPNOTSUPP;
			if (rc < 0) {
				ftr_track_errf(err, errlen, "region %u (%p, %llu bytes) cannot be"
					       " registered for async write-protect: %s", r,
					       g->base, (unsigned long long)g->size,
					       strerror(-rc));
				/* the regions before r are unregistered by close */
				close(w->uffd);
				w->uffd = -1;
				return -EOPNOTSUPP;
			}
		}
	}

	w->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (w->pagemap < 0) {
		rc = -errno;
		ftr_track_errf(err, errlen, "/proc/self/pagemap: %s", strerror(-rc));
		wpa_undo(w);
		return -EOPNOTSUPP;
	}

	for (unsigned r = 0; r < t->nregions; r++) {
		const struct ftr_track_region *g = &t->regions[r];
		uintptr_t start = (uintptr_t)g->base, end = start + g->size, walk_end = 0;

		rc = ftr_uffd_wp(w->uffd, g->base, g->size, true, false);
		if (rc < 0) {
			ftr_track_errf(err, errlen, "write-protecting region %u: %s%s", r,
				       strerror(-rc), w->own_uffd ? "" :
				       " (is it registered in WP mode on the given uffd?)");
			wpa_undo(w);
			return -EOPNOTSUPP;
		}
		/* A get-nothing walk that only checks every page is under async
		 * WP: catches an attached uffd without WP_ASYNC and memory types
		 * PAGEMAP_SCAN cannot handle, now rather than at harvest. */
		while (start < end) {
			rc = wpa_scan(w, start, end, PM_SCAN_CHECK_WPASYNC, 0, &walk_end);
			if (rc < 0 || walk_end <= start)
				break;
			start = walk_end;
		}
		if (rc < 0) {
			ftr_track_errf(err, errlen, "region %u is not under async write-protect"
				       " (PAGEMAP_SCAN: %s)", r, strerror(-rc));
			wpa_undo(w);
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

static int wpa_harvest(struct ftr_track *t, uint64_t **dirty)
{
	struct wpa_track *w = to_wpa(t);
	const uint64_t flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;

	for (unsigned r = 0; r < t->nregions; r++) {
		const uintptr_t base = (uintptr_t)t->regions[r].base;
		const uintptr_t end = base + t->regions[r].size;
		uintptr_t start = base;

		while (start < end) {
			uintptr_t walk_end = 0;
			int n = wpa_scan(w, start, end, flags, SCAN_VEC_LEN, &walk_end);

			if (n < 0)
				return n;
			for (int i = 0; i < n; i++)
				ftr_track_mark_bytes(dirty[r], base, t->page_size, t->npages[r],
						     (uintptr_t)w->vec[i].start,
						     (uintptr_t)w->vec[i].end);
			if (walk_end <= start || walk_end > end) {
				pr_err("PAGEMAP_SCAN made no progress at %#lx (walk_end %#lx)",
				       (unsigned long)start, (unsigned long)walk_end);
				return -EIO;
			}
			start = walk_end;
		}
	}
	return 0;
}

static void wpa_stop(struct ftr_track *t)
{
	wpa_undo(to_wpa(t));
}

const struct ftr_track_ops ftr_track_wp_async_ops = {
	.name = "wp-async",
	.kind = FTR_TRACK_WP_ASYNC,
	.size = sizeof(struct wpa_track),
	.start = wpa_start,
	.harvest = wpa_harvest,
	.stop = wpa_stop,
};
