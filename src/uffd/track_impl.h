/* SPDX-License-Identifier: MIT */
/*
 * Internal header for dirty-tracking backends; users see track.h only.
 *
 * A backend is one file that fills a `static const struct ftr_track_ops`
 * and is listed in track.c's registry. Its own struct embeds struct
 * ftr_track (member `t`) and gets back with container_of(). The generic
 * layer (track.c) validates arguments, allocates the backend's struct
 * (ops->size bytes, zeroed) with the generic part filled in, handles the
 * "every page is dirty at first" rule, counts pages and times harvests.
 */
#ifndef FTR_UFFD_TRACK_IMPL_H
#define FTR_UFFD_TRACK_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "common/common.h"
#include "uffd/probe.h"
#include "uffd/track.h"

struct ftr_track_ops;

struct ftr_track {
	const struct ftr_track_ops *ops;
	unsigned nregions;
	uint32_t page_size;
	struct ftr_track_region *regions; /* copy of the caller's array */
	uint64_t *npages;		  /* per region */
	uint64_t **scratch;		  /* per region, generic layer only */
	bool first;			  /* next harvest reports every page */
	uint64_t last_harvest_ns;
	atomic_uint_least64_t faults;	  /* updated by backends */
};

struct ftr_track_ops {
	const char *name;
	enum ftr_track_kind kind;
	size_t size; /* of the backend's struct embedding struct ftr_track */

	/* Starts tracking t->regions (generic part of t filled in, the rest
	 * zeroed). uffd as in ftr_track_create. Returns 0, -EOPNOTSUPP with
	 * err when the backend cannot work here, or -errno with err. On
	 * failure it has undone everything it did. */
	int (*start)(struct ftr_track *t, const struct ftr_kprobe *kp, int uffd,
		     char *err, size_t errlen);
	/* ORs into dirty[r] (zeroed by the caller) the pages written since
	 * the previous harvest and re-arms. Returns 0 or -errno. */
	int (*harvest)(struct ftr_track *t, uint64_t **dirty);
	/* Undoes start; the generic layer frees t afterwards. */
	void (*stop)(struct ftr_track *t);
};

extern const struct ftr_track_ops ftr_track_wp_async_ops;
extern const struct ftr_track_ops ftr_track_wp_sync_ops;
extern const struct ftr_track_ops ftr_track_scan_ops;
extern const struct ftr_track_ops ftr_track_full_ops;

/* Formats a reason into err (always NUL-terminated when errlen > 0). */
void ftr_track_errf(char *err, size_t errlen, const char *fmt, ...) FTR_PRINTF(3, 4);

/* Sets bits [first, first + count) of map. */
void ftr_bitmap_set_range(uint64_t *map, uint64_t first, uint64_t count);

/* The first bit >= from (and < nbits) that is set (set = true) or clear
 * (set = false); nbits when there is none. */
uint64_t ftr_bitmap_next(const uint64_t *map, uint64_t from, uint64_t nbits, bool set);

/* Marks in map the pages of a region (base, page_size) that overlap the
 * byte range [start, end), clamped to npages. */
static inline void ftr_track_mark_bytes(uint64_t *map, uintptr_t base, uint32_t page_size,
					uint64_t npages, uintptr_t start, uintptr_t end)
{
	uint64_t first, last;

	if (end <= start || end <= base)
		return;
	if (start < base)
		start = base;
	first = (start - base) / page_size;
	last = (end - base + page_size - 1) / page_size;
	if (last > npages)
		last = npages;
	if (first < last)
		ftr_bitmap_set_range(map, first, last - first);
}

#endif
