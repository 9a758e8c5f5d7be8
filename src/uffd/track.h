/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking: which pages of a set of regions were written since the
 * previous harvest. Used by the primary's epoch engine (DESIGN.md, "The
 * epoch cycle": quiesce, then harvest D(e) and re-arm).
 *
 * Backends (one file each, see track_impl.h):
 *   wp-async  userfaultfd async write-protect + PAGEMAP_SCAN: the kernel
 *             records written pages, harvest reads and re-protects them in
 *             one ioctl per 512 ranges. No fault ever reaches user space.
 *             Anonymous memory and memfd/shmem (kernel 6.7+).
 *   wp-sync   classic userfaultfd write-protect: a handler thread takes the
 *             first write fault of each page per epoch, records the page and
 *             unprotects it; harvest re-protects the recorded pages.
 *   scan      a shadow copy of every page; harvest compares each page with
 *             its shadow. Any memory, no kernel feature; costs a copy of the
 *             regions and a full compare per harvest. A write that leaves a
 *             page's bytes unchanged is not seen (nothing to send either).
 *   full      every page, every harvest.
 * AUTO picks wp-async, then wp-sync, then scan - the first that works here
 * for these regions - and logs the choice. A backend asked for by name that
 * cannot work returns -EOPNOTSUPP and says why: there is no silent fallback.
 *
 * Harvest requires the writers to be paused at a safe point (no write in
 * progress, none starting) for every backend: that is what makes the set
 * exact for an epoch. A write that races with a harvest is never lost (it
 * shows in this harvest or the next), but may be reported in both, or - for
 * scan - be copied half-written into the shadow and reported only once.
 *
 * A tracker is used by one thread at a time (the engine thread); create,
 * harvest and destroy must not run concurrently on the same tracker. Two
 * trackers on disjoint regions are independent.
 */
#ifndef FTR_UFFD_TRACK_H
#define FTR_UFFD_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ftr_track_kind {
	FTR_TRACK_AUTO,
	FTR_TRACK_WP_ASYNC,
	FTR_TRACK_WP_SYNC,
	FTR_TRACK_SCAN,
	FTR_TRACK_FULL,
};

/* Parses "auto", "wp-async", "wp-sync", "scan", "full" into *out.
 * Returns 0 or -EINVAL (unknown name or NULL). */
int ftr_track_parse(const char *s, enum ftr_track_kind *out);

/* The name ftr_track_parse accepts for k ("?" for a value out of range). */
const char *ftr_track_kind_name(enum ftr_track_kind k);

struct ftr_track_region {
	void *base;	/* page aligned mapping in this process */
	uint64_t size;	/* bytes, a multiple of page_size, > 0 */
	int fd;		/* memfd/shmem fd backing it, or -1 for anonymous */
};

struct ftr_track;

/*
 * Starts tracking writes to the regions; every page counts as dirty for the
 * first harvest. page_size is the tracking granularity: a power of two and
 * a multiple of the system page size. The region array is copied; the
 * mappings must stay in place until ftr_track_destroy().
 *
 * uffd: -1 lets the uffd backends create their own userfaultfd. Otherwise a
 * userfaultfd of this process's address space that the owner already set
 * up (attach protocol): UFFDIO_API done with the features the backend needs
 * (wp-async: UFFD_FEATURE_WP_ASYNC; wp-sync: not WP_ASYNC, and
 * UFFD_FEATURE_WP_HUGETLBFS_SHMEM for shmem; without WP_UNPOPULATED wp-sync
 * populates anonymous regions with MADV_POPULATE_WRITE) and every region
 * registered with UFFDIO_REGISTER_MODE_WP. The uffd must belong to this
 * process's address space (the regions' base addresses are used with it).
 * The tracker borrows it: it does not register, unregister or close it;
 * wp-sync sets O_NONBLOCK on it and must be the only reader of its
 * messages. scan and full ignore it.
 *
 * Returns 0 with the tracker in *out, or -errno with a one-line reason in
 * err (when errlen > 0): -EOPNOTSUPP when the backend asked for cannot
 * work here (for AUTO: none can), -EINVAL for bad arguments.
 */
int ftr_track_create(enum ftr_track_kind kind, const struct ftr_track_region *regions,
		     unsigned nregions, uint32_t page_size, int uffd,
		     struct ftr_track **out, char *err, size_t errlen);

/* The backend in use (never FTR_TRACK_AUTO). */
enum ftr_track_kind ftr_track_kind(const struct ftr_track *t);

/*
 * Call with the writers paused at a safe point. ORs into maps[r] (one bit
 * per page of region r, 64-bit words LSB first, ftr_bitmap_words(size /
 * page_size) words) exactly the pages written since the previous harvest
 * (since create for the first one: then every page) and re-arms tracking,
 * so the next harvest reports only later writes. Bits already set in maps
 * are kept. Returns the number of pages this harvest found dirty (each page
 * once, whether or not its bit was already set in maps), or -errno; after
 * an error the tracker should be destroyed (the pages it reported dirty
 * again later are a superset of the truth, never a subset).
 */
int64_t ftr_track_harvest(struct ftr_track *t, uint64_t **maps);

/* Duration of the last harvest in ns, and the write faults handled so far
 * (wp-sync; 0 for the others). Either pointer may be NULL. */
void ftr_track_stats(const struct ftr_track *t, uint64_t *last_harvest_ns,
		     uint64_t *faults);

/*
 * wp-sync only: lets a snapshot engine (cow) share the tracker's
 * userfaultfd, since a region can be registered with one uffd only. The
 * handler calls fn(ctx, region, page) for every write fault on a page of a
 * region, after recording the page dirty and before unprotecting it; when
 * fn returns false the page stays protected (its writer waits) until the
 * hook's owner calls ftr_track_wp_release() for it. fn runs on the handler
 * thread under the tracker's lock: it must not call back into the tracker.
 * fn NULL removes the hook (waits until the handler is not inside it).
 * Returns 0, or -EOPNOTSUPP for the other backends.
 */
typedef bool (*ftr_track_wp_hook)(void *ctx, unsigned region, uint64_t page);
int ftr_track_set_wp_hook(struct ftr_track *t, ftr_track_wp_hook fn, void *ctx);
/* Unprotects pages [first, first + n) of region r (waking their writers).
 * For pages a hook kept protected. Returns 0 or -errno. */
int ftr_track_wp_release(struct ftr_track *t, unsigned region, uint64_t first, uint64_t n);

/* Stops tracking: unprotects/unregisters the regions (writers blocked on a
 * fault are woken), stops the handler thread (eventfd, never
 * pthread_cancel), closes what the tracker opened and frees it. NULL is a
 * no-op. */
void ftr_track_destroy(struct ftr_track *t);

#endif
