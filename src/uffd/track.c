/* SPDX-License-Identifier: MIT */
/*
 * The generic half of dirty tracking: the registry of backends, argument
 * checks, AUTO selection, and the parts every backend shares (first
 * harvest = every page, counting, timing). See track.h for the contract
 * and track_impl.h for what a backend provides.
 */
#define FTR_LOG_PREFIX "track"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "uffd/track_impl.h"

/* Indexed by kind; AUTO tries these in order. */
static const struct ftr_track_ops *const track_registry[] = {
	[FTR_TRACK_WP_ASYNC] = &ftr_track_wp_async_ops,
	[FTR_TRACK_WP_SYNC] = &ftr_track_wp_sync_ops,
	[FTR_TRACK_SCAN] = &ftr_track_scan_ops,
	[FTR_TRACK_FULL] = &ftr_track_full_ops,
};

static const enum ftr_track_kind auto_order[] = {
	FTR_TRACK_WP_ASYNC, FTR_TRACK_WP_SYNC, FTR_TRACK_SCAN,
};

static const char *const kind_names[] = {
	[FTR_TRACK_AUTO] = "auto",
	[FTR_TRACK_WP_ASYNC] = "wp-async",
	[FTR_TRACK_WP_SYNC] = "wp-sync",
	[FTR_TRACK_SCAN] = "scan",
	[FTR_TRACK_FULL] = "full",
};

int ftr_track_parse(const char *s, enum ftr_track_kind *out)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < FTR_ARRAY_SIZE(kind_names); i++) {
		if (!strcmp(s, kind_names[i])) {
			*out = (enum ftr_track_kind)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *ftr_track_kind_name(enum ftr_track_kind k)
{
	return (unsigned)k < FTR_ARRAY_SIZE(kind_names) ? kind_names[k] : "?";
}

void ftr_track_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void ftr_bitmap_set_range(uint64_t *map, uint64_t first, uint64_t count)
{
	uint64_t end = first + count;

	while (first < end && (first & 63)) {
		ftr_bit_set(map, first);
		first++;
	}
	for (; first + 64 <= end; first += 64)
		map[first >> 6] = ~0ull;
	for (; first < end; first++)
		ftr_bit_set(map, first);
}

uint64_t ftr_bitmap_next(const uint64_t *map, uint64_t from, uint64_t nbits, bool set)
{
	const uint64_t flip = set ? 0 : ~0ull;
	uint64_t w, x;

	if (from >= nbits)
		return nbits;
	w = from >> 6;
	x = (map[w] ^ flip) & (~0ull << (from & 63));
	while (!x) {
		if (++w >= ftr_bitmap_words(nbits))
			return nbits;
		x = map[w] ^ flip;
	}
	from = w * 64 + (uint64_t)__builtin_ctzll(x);
	return from < nbits ? from : nbits;
}

/* ---- object lifetime ---------------------------------------------------- */

static int check_args(const struct ftr_track_region *regions, unsigned nregions,
		      uint32_t page_size, char *err, size_t errlen)
{
	long sys_ps = sysconf(_SC_PAGESIZE);

	if (!regions || !nregions) {
		ftr_track_errf(err, errlen, "no region to track");
		return -EINVAL;
	}
	if (!page_size || (page_size & (page_size - 1)) || page_size % (uint32_t)sys_ps) {
		ftr_track_errf(err, errlen, "page size %u is not a power of two multiple of %ld",
			       page_size, sys_ps);
		return -EINVAL;
	}
	for (unsigned r = 0; r < nregions; r++) {
		const struct ftr_track_region *g = &regions[r];

		if (!g->base || (uintptr_t)g->base % page_size || !g->size ||
		    g->size % page_size) {
			ftr_track_errf(err, errlen, "region %u (%p, %llu bytes) is not a non-empty"
				       " range aligned to the page size %u", r, g->base,
				       (unsigned long long)g->size, page_size);
			return -EINVAL;
		}
	}
	return 0;
}

static void track_free(struct ftr_track *t)
{
	if (!t)
		return;
	if (t->scratch)
		for (unsigned r = 0; r < t->nregions; r++)
			free(t->scratch[r]);
	free(t->scratch);
	free(t->npages);
	free(t->regions);
	free(t);
}

static struct ftr_track *track_alloc(const struct ftr_track_ops *ops,
				     const struct ftr_track_region *regions,
				     unsigned nregions, uint32_t page_size)
{
	struct ftr_track *t = calloc(1, ops->size);

	if (!t)
		return NULL;
	t->ops = ops;
	t->nregions = nregions;
	t->page_size = page_size;
	t->first = true;
	atomic_init(&t->faults, 0);
	t->regions = calloc(nregions, sizeof(*t->regions));
	t->npages = calloc(nregions, sizeof(*t->npages));
	t->scratch = calloc(nregions, sizeof(*t->scratch));
	if (!t->regions || !t->npages || !t->scratch)
		goto fail;
	for (unsigned r = 0; r < nregions; r++) {
		t->regions[r] = regions[r];
		t->npages[r] = regions[r].size / page_size;
		t->scratch[r] = calloc(ftr_bitmap_words(t->npages[r]), sizeof(uint64_t));
		if (!t->scratch[r])
			goto fail;
	}
	return t;
fail:
	track_free(t);
	return NULL;
}

static int create_one(const struct ftr_track_ops *ops, const struct ftr_kprobe *kp,
		      const struct ftr_track_region *regions, unsigned nregions,
		      uint32_t page_size, int uffd, struct ftr_track **out, char *err,
		      size_t errlen)
{
	struct ftr_track *t = track_alloc(ops, regions, nregions, page_size);
	int rc;

	if (!t) {
		ftr_track_errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = ops->start(t, kp, uffd, err, errlen);
	if (rc < 0) {
		track_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int ftr_track_create(enum ftr_track_kind kind, const struct ftr_track_region *regions,
		     unsigned nregions, uint32_t page_size, int uffd,
		     struct ftr_track **out, char *err, size_t errlen)
{
	const struct ftr_kprobe *kp;
	char why[FTR_ARRAY_SIZE(auto_order)][160];
	uint64_t total = 0;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!out || (unsigned)kind >= FTR_ARRAY_SIZE(kind_names)) {
		ftr_track_errf(err, errlen, "bad arguments");
		return -EINVAL;
	}
	rc = check_args(regions, nregions, page_size, err, errlen);
	if (rc < 0)
		return rc;
	rc = ftr_kprobe_get(&kp);
	if (rc < 0) {
		ftr_track_errf(err, errlen, "kernel probe failed: %s", strerror(-rc));
		return rc;
	}
	for (unsigned r = 0; r < nregions; r++)
		total += regions[r].size;

	if (kind != FTR_TRACK_AUTO) {
		rc = create_one(track_registry[kind], kp, regions, nregions, page_size, uffd,
				out, err, errlen);
		if (rc == 0)
			pr_info("dirty tracking: %s over %u region(s), %llu MiB", kind_names[kind],
				nregions, (unsigned long long)(total >> 20));
		return rc;
	}

	for (size_t i = 0; i < FTR_ARRAY_SIZE(auto_order); i++) {
		enum ftr_track_kind k = auto_order[i];

		why[i][0] = '\0';
		rc = create_one(track_registry[k], kp, regions, nregions, page_size, uffd, out,
				why[i], sizeof(why[i]));
		if (rc == 0) {
			for (size_t j = 0; j < i; j++)
				pr_info("dirty tracking: auto skips %s: %s",
					kind_names[auto_order[j]], why[j]);
			pr_info("dirty tracking: auto chose %s over %u region(s), %llu MiB",
				kind_names[k], nregions, (unsigned long long)(total >> 20));
			return 0;
		}
		if (rc != -EOPNOTSUPP) {
			ftr_track_errf(err, errlen, "%s: %s", kind_names[k], why[i]);
			return rc;
		}
	}
	ftr_track_errf(err, errlen, "no dirty tracking works here: wp-async: %s; wp-sync: %s;"
		       " scan: %s", why[0], why[1], why[2]);
	return -EOPNOTSUPP;
}

enum ftr_track_kind ftr_track_kind(const struct ftr_track *t)
{
	return t->ops->kind;
}

int64_t ftr_track_harvest(struct ftr_track *t, uint64_t **maps)
{
	uint64_t t0 = ftr_now_ns();
	int64_t count = 0;
	int rc;

	if (!t || !maps)
		return -EINVAL;
	for (unsigned r = 0; r < t->nregions; r++)
		memset(t->scratch[r], 0, ftr_bitmap_words(t->npages[r]) * sizeof(uint64_t));
	rc = t->ops->harvest(t, t->scratch);
	if (rc < 0)
		return rc;
	for (unsigned r = 0; r < t->nregions; r++) {
		size_t words = ftr_bitmap_words(t->npages[r]);
		uint64_t *s = t->scratch[r], *m = maps[r];

		if (t->first)
			ftr_bitmap_set_range(s, 0, t->npages[r]);
		for (size_t w = 0; w < words; w++) {
			m[w] |= s[w];
			count += __builtin_popcountll(s[w]);
		}
	}
	t->first = false;
	t->last_harvest_ns = ftr_now_ns() - t0;
	return count;
}

void ftr_track_stats(const struct ftr_track *t, uint64_t *last_harvest_ns, uint64_t *faults)
{
	if (last_harvest_ns)
		*last_harvest_ns = t->last_harvest_ns;
	if (faults)
		*faults = atomic_load_explicit(&((struct ftr_track *)t)->faults,
					       memory_order_relaxed);
}

void ftr_track_destroy(struct ftr_track *t)
{
	if (!t)
		return;
	t->ops->stop(t);
	track_free(t);
}
