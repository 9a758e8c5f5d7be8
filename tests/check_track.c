/* SPDX-License-Identifier: MIT */
/*
 * Unit suite: the kernel probe and the dirty trackers (src/uffd/).
 *
 * Every tracker case runs once per backend x memory type (anonymous,
 * memfd shmem) through tcase_add_loop_test; index i is backend i / 2,
 * memory i % 2. A case whose backend the probe reports unavailable here
 * prints "SKIP: ..." with the probe's reason and passes; nothing else is
 * skipped. The ground truth is what the test itself wrote: each write
 * stores a value never stored before (so "scan" sees every write), and the
 * set of pages written in a round must equal the harvested set exactly
 * ("full": every page, every round).
 *
 * Threads: the concurrent case runs NWRITERS writer threads that pause at
 * a safe point between two writes when asked (pause_req + two condvars, the
 * way the engine quiesces a workload); the test thread harvests only while
 * all writers are parked. All threads are joined before the case ends.
 * CK_FORK stays on: a crash or a hang (timeout) fails one case.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

#include <jansson.h>

#include "common/common.h"
#include "uffd/probe.h"
#include "uffd/track.h"
#include "uffd/uffd_io.h"

#define PS 4096u
#define MAXR 4
#define MiB (1024ull * 1024)

static const enum ftr_track_kind kinds[] = {
	FTR_TRACK_WP_ASYNC, FTR_TRACK_WP_SYNC, FTR_TRACK_SCAN, FTR_TRACK_FULL,
};
#define NCASES ((int)(2 * sizeof(kinds) / sizeof(kinds[0])))

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* A value no write stored before: the scan backend must see every write. */
static atomic_uint_fast64_t write_seq = 1;

static void write_page(char *page, uint64_t *rng)
{
	uint64_t v = atomic_fetch_add(&write_seq, 1) | (0xA5ull << 56);
	size_t off = (size_t)(rng_next(rng) % (PS / 8)) * 8;

	memcpy(page + off, &v, sizeof(v));
}

struct mem {
	struct ftr_track_region reg[MAXR];
	unsigned n;
	bool shmem;
};

static void mem_map(struct mem *m, bool shmem, const uint64_t *sizes, unsigned n)
{
	ck_assert_uint_le(n, MAXR);
	m->n = n;
	m->shmem = shmem;
	for (unsigned r = 0; r < n; r++) {
		int fd = -1;
		void *p;

		if (shmem) {
			fd = memfd_create("check_track", MFD_CLOEXEC);
			ck_assert_int_ge(fd, 0);
			ck_assert_int_eq(ftruncate(fd, (off_t)sizes[r]), 0);
			p = mmap(NULL, sizes[r], PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		} else {
			p = mmap(NULL, sizes[r], PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		}
		ck_assert_msg(p != MAP_FAILED, "mmap: %s", strerror(errno));
		m->reg[r] = (struct ftr_track_region){ .base = p, .size = sizes[r], .fd = fd };
	}
}

static void mem_unmap(struct mem *m)
{
	for (unsigned r = 0; r < m->n; r++) {
		munmap(m->reg[r].base, m->reg[r].size);
		if (m->reg[r].fd >= 0)
			close(m->reg[r].fd);
	}
	m->n = 0;
}

static char *page_addr(const struct mem *m, unsigned r, uint64_t p)
{
	return (char *)m->reg[r].base + p * PS;
}

/* One bitmap per region, zeroed. */
struct maps {
	uint64_t *m[MAXR];
	unsigned n;
};

static void maps_alloc(struct maps *b, const struct mem *m)
{
	b->n = m->n;
	for (unsigned r = 0; r < m->n; r++) {
		b->m[r] = calloc(ftr_bitmap_words(m->reg[r].size / PS), sizeof(uint64_t));
		ck_assert_ptr_nonnull(b->m[r]);
	}
}

static void maps_clear(struct maps *b, const struct mem *m)
{
	for (unsigned r = 0; r < b->n; r++)
		memset(b->m[r], 0, ftr_bitmap_words(m->reg[r].size / PS) * sizeof(uint64_t));
}

static void maps_free(struct maps *b)
{
	for (unsigned r = 0; r < b->n; r++)
		free(b->m[r]);
	b->n = 0;
}

static uint64_t maps_count(const struct maps *b, const struct mem *m)
{
	uint64_t n = 0;

	for (unsigned r = 0; r < b->n; r++)
		for (uint64_t p = 0; p < m->reg[r].size / PS; p++)
			n += ftr_bit_test(b->m[r], p);
	return n;
}

static uint64_t mem_pages(const struct mem *m)
{
	uint64_t n = 0;

	for (unsigned r = 0; r < m->n; r++)
		n += m->reg[r].size / PS;
	return n;
}

/* Asserts got == want page by page, naming the first difference. */
static void maps_assert_equal(const struct maps *got, const struct maps *want,
			      const struct mem *m, const char *what)
{
	uint64_t missing = 0, extra = 0;
	unsigned fr = 0;
	uint64_t fp = UINT64_MAX;

	for (unsigned r = 0; r < m->n; r++) {
		for (uint64_t p = 0; p < m->reg[r].size / PS; p++) {
			bool g = ftr_bit_test(got->m[r], p), w = ftr_bit_test(want->m[r], p);

			if (g == w)
				continue;
			missing += w;
			extra += g;
			if (fp == UINT64_MAX) {
				fr = r;
				fp = p;
			}
		}
	}
	ck_assert_msg(!missing && !extra,
		      "%s: harvest differs from the pages written: %llu written pages missing,"
		      " %llu unwritten pages reported; first at region %u page %llu",
		      what, (unsigned long long)missing, (unsigned long long)extra, fr,
		      (unsigned long long)fp);
}

/* True (and prints SKIP) when the probe says kind cannot work on this memory. */
static bool skip_unsupported(const char *test, enum ftr_track_kind kind, bool shmem)
{
	const struct ftr_kprobe *kp;
	const char *why = NULL;

	ck_assert_int_eq(ftr_kprobe_get(&kp), 0);
	switch (kind) {
	case FTR_TRACK_WP_ASYNC:
		if (!kp->wp_async)
			why = ftr_kprobe_why(kp, FTR_KF_WP_ASYNC);
		else if (!kp->pagemap_scan_wp)
			why = ftr_kprobe_why(kp, FTR_KF_PAGEMAP_SCAN_WP);
		else if (shmem && !kp->wp_async_shmem)
			why = ftr_kprobe_why(kp, FTR_KF_WP_ASYNC_SHMEM);
		break;
	case FTR_TRACK_WP_SYNC:
		if (!kp->wp)
			why = ftr_kprobe_why(kp, FTR_KF_WP);
		else if (shmem && !kp->wp_shmem)
			why = ftr_kprobe_why(kp, FTR_KF_WP_SHMEM);
		else if (!kp->uffd_syscall && !kp->uffd_dev)
			why = "only a user-mode-only userfaultfd here (unprivileged)";
		break;
	default:
		break;
	}
	if (!why)
		return false;
	printf("SKIP: %s %s/%s: %s\n", test, ftr_track_kind_name(kind),
	       shmem ? "shmem" : "anon", why);
	return true;
}

static struct ftr_track *track_new(enum ftr_track_kind kind, const struct mem *m, int uffd)
{
	struct ftr_track *t = NULL;
	char err[256] = "";
	int rc = ftr_track_create(kind, m->reg, m->n, PS, uffd, &t, err, sizeof(err));

	ck_assert_msg(rc == 0, "ftr_track_create(%s, %s): %s: %s", ftr_track_kind_name(kind),
		      m->shmem ? "shmem" : "anon", strerror(-rc), err);
	ck_assert_ptr_nonnull(t);
	if (kind != FTR_TRACK_AUTO)
		ck_assert_int_eq(ftr_track_kind(t), kind);
	return t;
}

/* The first harvest reports every page, whatever was written. */
static void harvest_first(struct ftr_track *t, const struct mem *m)
{
	struct maps got;
	int64_t n;

	maps_alloc(&got, m);
	n = ftr_track_harvest(t, got.m);
	ck_assert_msg(n == (int64_t)mem_pages(m), "first harvest: %lld pages, want all %llu",
		      (long long)n, (unsigned long long)mem_pages(m));
	ck_assert_uint_eq(maps_count(&got, m), mem_pages(m));
	maps_free(&got);
}

/* Harvests and checks the result against `want` (exact backends) or
 * every page (full). */
static void harvest_check(struct ftr_track *t, enum ftr_track_kind kind, const struct mem *m,
			  const struct maps *want, const char *what)
{
	struct maps got;
	int64_t n;
	uint64_t expect = kind == FTR_TRACK_FULL ? mem_pages(m) : maps_count(want, m);

	maps_alloc(&got, m);
	n = ftr_track_harvest(t, got.m);
	ck_assert_msg(n >= 0, "%s: harvest: %s", what, strerror((int)-n));
	if (kind == FTR_TRACK_FULL)
		ck_assert_uint_eq(maps_count(&got, m), mem_pages(m));
	else
		maps_assert_equal(&got, want, m, what);
	ck_assert_msg((uint64_t)n == expect, "%s: harvest returned %lld, want %llu", what,
		      (long long)n, (unsigned long long)expect);
	maps_free(&got);
}

/* ---- probe ---------------------------------------------------------------- */

START_TEST(test_probe)
{
	static const char *const keys[] = {
		"kernel", "uffd", "uffd_syscall", "uffd_dev", "uffd_user_only",
		"uffd_features", "uffd_ioctls", "wp", "wp_async", "wp_unpopulated",
		"wp_shmem", "wp_async_shmem", "minor_shmem", "missing_shmem",
		"pagemap_scan", "pagemap_scan_wp", "io_uring", "unavailable",
	};
	const struct ftr_kprobe *kp, *kp2;
	json_t *j, *un;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	ck_assert_int_eq(ftr_kprobe_get(&kp), 0);
	ck_assert_int_eq(ftr_kprobe_get(&kp2), 0);
	ck_assert_ptr_eq(kp, kp2); /* probed once, cached */
	ck_assert_str_ne(kp->release, "");
	/* FACTS.md: every userfaultfd feature works on these machines */
	ck_assert_msg(kp->uffd, "uffd unavailable: %s", ftr_kprobe_why(kp, FTR_KF_UFFD));
	ck_assert(kp->uffd_syscall || kp->uffd_dev || kp->uffd_user_only);
	ck_assert_uint_ne(kp->features, 0);
	ck_assert(ftr_uffd_has_ioctl(kp->ioctls, _UFFDIO_API));
	for (int i = 0; i < FTR_KF_COUNT; i++) {
		enum ftr_kfeat ft = (enum ftr_kfeat)i;

		ck_assert_ptr_nonnull(ftr_kfeat_name(ft));
		/* a reason exactly when unavailable */
		ck_assert_msg(ftr_kprobe_has(kp, ft) == (ftr_kprobe_why(kp, ft)[0] == '\0'),
			      "%s: has %d why '%s'", ftr_kfeat_name(ft), ftr_kprobe_has(kp, ft),
			      ftr_kprobe_why(kp, ft));
	}
	/* derived items are consistent with what they build on */
	if (kp->pagemap_scan_wp)
		ck_assert(kp->wp_async && kp->pagemap_scan);
	if (kp->wp_async)
		ck_assert(kp->features & UFFD_FEATURE_WP_ASYNC);
	if (kp->wp_unpopulated)
		ck_assert(kp->features & UFFD_FEATURE_WP_UNPOPULATED);

	j = ftr_kprobe_json();
	ck_assert_ptr_nonnull(j);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ck_assert_msg(json_object_get(j, keys[i]), "JSON lacks key %s", keys[i]);
	ck_assert(json_is_true(json_object_get(j, "uffd")));
	ck_assert_str_eq(json_string_value(json_object_get(j, "kernel")), kp->release);
	ck_assert(json_is_string(json_object_get(j, "uffd_features")));
	un = json_object_get(j, "unavailable");
	ck_assert(json_is_object(un));
	for (int i = 0; i < FTR_KF_COUNT; i++) {
		enum ftr_kfeat ft = (enum ftr_kfeat)i;
		json_t *v = json_object_get(j, ftr_kfeat_name(ft));

		ck_assert(json_is_boolean(v));
		ck_assert_int_eq(json_is_true(v), ftr_kprobe_has(kp, ft));
		ck_assert_int_eq(json_object_get(un, ftr_kfeat_name(ft)) != NULL,
				 !ftr_kprobe_has(kp, ft));
	}
	json_decref(j);

	f = open_memstream(&text, &len);
	ck_assert_ptr_nonnull(f);
	ftr_kprobe_print(f);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(text, kp->release));
	ck_assert_ptr_nonnull(strstr(text, "wp_async"));
	ck_assert_ptr_nonnull(strstr(text, "pagemap_scan_wp"));
	free(text);
}
END_TEST

/* ---- names ---------------------------------------------------------------- */

START_TEST(test_names)
{
	static const struct {
		const char *name;
		enum ftr_track_kind kind;
	} tab[] = {
		{ "auto", FTR_TRACK_AUTO },	    { "wp-async", FTR_TRACK_WP_ASYNC },
		{ "wp-sync", FTR_TRACK_WP_SYNC }, { "scan", FTR_TRACK_SCAN },
		{ "full", FTR_TRACK_FULL },
	};
	static const char *const bad[] = { "", "wp", "wp_async", "WP-ASYNC", "fulll", "auto " };
	enum ftr_track_kind k;

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		k = (enum ftr_track_kind)-1;
		ck_assert_int_eq(ftr_track_parse(tab[i].name, &k), 0);
		ck_assert_int_eq(k, tab[i].kind);
		ck_assert_str_eq(ftr_track_kind_name(tab[i].kind), tab[i].name);
		ck_assert_int_eq(ftr_track_parse(ftr_track_kind_name(k), &k), 0);
		ck_assert_int_eq(k, tab[i].kind);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		k = FTR_TRACK_FULL;
		ck_assert_int_eq(ftr_track_parse(bad[i], &k), -EINVAL);
		ck_assert_int_eq(k, FTR_TRACK_FULL); /* untouched on error */
	}
	ck_assert_int_eq(ftr_track_parse(NULL, &k), -EINVAL);
	ck_assert_str_eq(ftr_track_kind_name((enum ftr_track_kind)42), "?");
}
END_TEST

START_TEST(test_bad_args)
{
	uint64_t sizes[] = { 16 * PS };
	struct ftr_track *t = NULL;
	struct ftr_track_region r;
	struct mem m;
	char err[200];

	mem_map(&m, false, sizes, 1);
	r = m.reg[0];
	err[0] = '\0';
	ck_assert_int_eq(ftr_track_create(FTR_TRACK_SCAN, &r, 0, PS, -1, &t, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_ne(err, "");
	err[0] = '\0';
	ck_assert_int_eq(ftr_track_create(FTR_TRACK_SCAN, &r, 1, 3000, -1, &t, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_ne(err, "");
	r.base = (char *)r.base + 64;
	err[0] = '\0';
	ck_assert_int_eq(ftr_track_create(FTR_TRACK_SCAN, &r, 1, PS, -1, &t, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_ne(err, "");
	r = m.reg[0];
	r.size = PS + 1;
	ck_assert_int_eq(ftr_track_create(FTR_TRACK_FULL, &r, 1, PS, -1, &t, err, sizeof(err)),
			 -EINVAL);
	ck_assert_ptr_null(t);
	/* a larger tracking granularity is fine: 2 pages per bit (the
	 * region must then be aligned to 2 pages) */
	r = m.reg[0];
	if ((uintptr_t)r.base % (2 * PS))
		r.base = (char *)r.base + PS;
	r.size = 14 * PS;
	ck_assert_int_eq(ftr_track_create(FTR_TRACK_SCAN, &r, 1, 2 * PS, -1, &t, err,
					  sizeof(err)), 0);
	{
		uint64_t map[1] = { 0 }, *maps[1] = { map };

		ck_assert_int_eq(ftr_track_harvest(t, maps), 7);
		ck_assert_uint_eq(map[0], 0x7f);
		map[0] = 0;
		((char *)r.base)[5 * PS] = 1; /* page 5 -> bit 2 */
		ck_assert_int_eq(ftr_track_harvest(t, maps), 1);
		ck_assert_uint_eq(map[0], 1u << 2);
	}
	ftr_track_destroy(t);
	ftr_track_destroy(NULL);
	mem_unmap(&m);
}
END_TEST

/* ---- ground truth: patterns over several rounds --------------------------- */

enum pattern { PAT_RANDOM, PAT_SEQ, PAT_CLUSTER, PAT_NONE, PAT_EDGES, PAT_REWRITE, PAT_COUNT };
static const char *const pattern_names[] = { "random", "sequential", "clustered", "none",
					     "edges", "rewrite-same" };

/* Writes one round of `pat` over m, recording the pages in want. `prev`
 * holds the previous round's pages (for PAT_REWRITE). */
static void write_round(const struct mem *m, enum pattern pat, struct maps *want,
			const struct maps *prev, uint64_t *rng)
{
	uint64_t total = mem_pages(m);

	/* global page index g -> (region, page) */
#define AT(g, rr, pp)                                                 \
	do {                                                          \
		uint64_t _g = (g);                                    \
		rr = 0;                                               \
		while (_g >= m->reg[rr].size / PS) {                  \
			_g -= m->reg[rr].size / PS;                   \
			rr++;                                         \
		}                                                     \
		pp = _g;                                              \
	} while (0)

	switch (pat) {
	case PAT_RANDOM:
		for (int i = 0; i < 300; i++) {
			unsigned r;
			uint64_t p;

			AT(rng_next(rng) % total, r, p);
			write_page(page_addr(m, r, p), rng);
			ftr_bit_set(want->m[r], p);
		}
		break;
	case PAT_SEQ: { /* 400 consecutive pages, across the region boundary */
		uint64_t start = m->reg[0].size / PS - 150;

		for (uint64_t g = start; g < start + 400 && g < total; g++) {
			unsigned r;
			uint64_t p;

			AT(g, r, p);
			write_page(page_addr(m, r, p), rng);
			ftr_bit_set(want->m[r], p);
		}
		break;
	}
	case PAT_CLUSTER:
		for (int c = 0; c < 12; c++) {
			uint64_t len = 5 + rng_next(rng) % 40;
			uint64_t start = rng_next(rng) % (total - len);

			for (uint64_t g = start; g < start + len; g++) {
				unsigned r;
				uint64_t p;

				/* hit most pages of the cluster, some twice */
				if (rng_next(rng) % 5 == 0)
					continue;
				AT(g, r, p);
				write_page(page_addr(m, r, p), rng);
				if (rng_next(rng) % 3 == 0)
					write_page(page_addr(m, r, p), rng);
				ftr_bit_set(want->m[r], p);
			}
		}
		break;
	case PAT_NONE:
		break;
	case PAT_EDGES:
		for (unsigned r = 0; r < m->n; r++) {
			uint64_t last = m->reg[r].size / PS - 1;

			write_page(page_addr(m, r, 0), rng);
			write_page(page_addr(m, r, last), rng);
			ftr_bit_set(want->m[r], 0);
			ftr_bit_set(want->m[r], last);
		}
		break;
	case PAT_REWRITE: /* exactly the previous round's pages again */
		for (unsigned r = 0; r < m->n; r++)
			for (uint64_t p = 0; p < m->reg[r].size / PS; p++)
				if (ftr_bit_test(prev->m[r], p)) {
					write_page(page_addr(m, r, p), rng);
					ftr_bit_set(want->m[r], p);
				}
		break;
	case PAT_COUNT:
		break;
	}
#undef AT
}

static void run_ground_truth(enum ftr_track_kind kind, struct mem *m, int uffd, uint64_t seed)
{
	static const enum pattern rounds[] = {
		PAT_RANDOM, PAT_REWRITE, PAT_SEQ, PAT_NONE, PAT_CLUSTER, PAT_EDGES,
		PAT_RANDOM, PAT_CLUSTER, PAT_REWRITE, PAT_SEQ,
	};
	struct maps want, prev;
	struct ftr_track *t;
	uint64_t rng = seed, ns = 0, faults = 0;

	/* some pages populated before tracking starts, most not */
	for (unsigned r = 0; r < m->n; r++)
		for (uint64_t p = 0; p < m->reg[r].size / PS; p += 7)
			write_page(page_addr(m, r, p), &rng);

	t = track_new(kind, m, uffd);
	/* writes between create and the first harvest: still "all pages" */
	write_page(page_addr(m, 0, 3), &rng);
	harvest_first(t, m);
	ftr_track_stats(t, &ns, &faults);
	ck_assert_uint_gt(ns, 0);

	maps_alloc(&want, m);
	maps_alloc(&prev, m);
	for (size_t i = 0; i < sizeof(rounds) / sizeof(rounds[0]); i++) {
		char what[96];

		maps_clear(&want, m);
		write_round(m, rounds[i], &want, &prev, &rng);
		snprintf(what, sizeof(what), "%s/%s round %zu (%s)", ftr_track_kind_name(kind),
			 m->shmem ? "shmem" : "anon", i, pattern_names[rounds[i]]);
		harvest_check(t, kind, m, &want, what);
		for (unsigned r = 0; r < m->n; r++)
			memcpy(prev.m[r], want.m[r],
			       ftr_bitmap_words(m->reg[r].size / PS) * sizeof(uint64_t));
	}

	/* maps are ORed into: a bit already set stays, and is not counted */
	if (kind != FTR_TRACK_FULL) {
		struct maps got;

		maps_alloc(&got, m);
		ftr_bit_set(got.m[0], 11);
		write_page(page_addr(m, 0, 12), &rng);
		ck_assert_int_eq(ftr_track_harvest(t, got.m), 1);
		ck_assert(ftr_bit_test(got.m[0], 11) && ftr_bit_test(got.m[0], 12));
		ck_assert_uint_eq(maps_count(&got, m), 2);
		maps_free(&got);
	}

	ftr_track_stats(t, &ns, &faults);
	if (kind == FTR_TRACK_WP_SYNC)
		ck_assert_uint_ge(faults, 300); /* at least one per first write */
	else
		ck_assert_uint_eq(faults, 0);
	ftr_track_destroy(t);

	/* after destroy the memory is plain memory again: writes don't block */
	for (unsigned r = 0; r < m->n; r++)
		write_page(page_addr(m, r, 1), &rng);
	maps_free(&want);
	maps_free(&prev);
}

START_TEST(test_ground_truth)
{
	enum ftr_track_kind kind = kinds[_i / 2];
	bool shmem = _i % 2;
	uint64_t sizes[] = { 12 * MiB, 4 * MiB };
	struct mem m;

	if (skip_unsupported("ground_truth", kind, shmem))
		return;
	mem_map(&m, shmem, sizes, 2);
	run_ground_truth(kind, &m, -1, 0x1234 + (uint64_t)_i);
	mem_unmap(&m);
}
END_TEST

/* More than 512 separate written ranges in one region: PAGEMAP_SCAN's
 * output vector fills several times per harvest (the walk_end quirk). */
START_TEST(test_many_ranges)
{
	enum ftr_track_kind kind = kinds[_i / 2];
	bool shmem = _i % 2;
	uint64_t sizes[] = { 3000 * (uint64_t)PS };
	uint64_t rng = 99;
	struct maps want;
	struct ftr_track *t;
	struct mem m;

	if (skip_unsupported("many_ranges", kind, shmem))
		return;
	mem_map(&m, shmem, sizes, 1);
	t = track_new(kind, &m, -1);
	harvest_first(t, &m);
	maps_alloc(&want, &m);

	/* 600 single pages, each alone: 600 ranges */
	for (uint64_t p = 0; p < 1200; p += 2) {
		write_page(page_addr(&m, 0, p), &rng);
		ftr_bit_set(want.m[0], p);
	}
	harvest_check(t, kind, &m, &want, "600 ranges");

	/* 1400 ranges in the other phase, then a run, then more singles */
	maps_clear(&want, &m);
	for (uint64_t p = 1; p < 2800; p += 2) {
		write_page(page_addr(&m, 0, p), &rng);
		ftr_bit_set(want.m[0], p);
	}
	for (uint64_t p = 2800; p < 2900; p++) {
		write_page(page_addr(&m, 0, p), &rng);
		ftr_bit_set(want.m[0], p);
	}
	for (uint64_t p = 2901; p < 3000; p += 3) {
		write_page(page_addr(&m, 0, p), &rng);
		ftr_bit_set(want.m[0], p);
	}
	harvest_check(t, kind, &m, &want, "1400+ ranges");

	/* and nothing after that */
	maps_clear(&want, &m);
	harvest_check(t, kind, &m, &want, "quiet after many ranges");
	maps_free(&want);
	ftr_track_destroy(t);
	mem_unmap(&m);
}
END_TEST

/* Writes the kernel makes on the process's behalf (read(2) into a tracked
 * page) count like any other: a kernel-mode fault for wp-sync, an in-kernel
 * resolution for wp-async. */
START_TEST(test_kernel_writes)
{
	enum ftr_track_kind kind = kinds[_i / 2];
	bool shmem = _i % 2;
	uint64_t sizes[] = { 2 * MiB };
	char buf[PS];
	struct maps want;
	struct ftr_track *t;
	struct mem m;
	int pfd[2];

	if (skip_unsupported("kernel_writes", kind, shmem))
		return;
	mem_map(&m, shmem, sizes, 1);
	page_addr(&m, 0, 9)[0] = 1; /* page 9 populated, page 300 never touched */
	t = track_new(kind, &m, -1);
	harvest_first(t, &m);
	maps_alloc(&want, &m);
	ck_assert_int_eq(pipe(pfd), 0);
	memset(buf, 0x3c, sizeof(buf));
	for (int i = 0; i < 2; i++) {
		uint64_t p = i ? 300 : 9;

		ck_assert_int_eq(write(pfd[1], buf, PS), PS);
		ck_assert_int_eq(read(pfd[0], page_addr(&m, 0, p), PS), PS);
		ck_assert_int_eq(page_addr(&m, 0, p)[PS - 1], 0x3c);
		ftr_bit_set(want.m[0], p);
	}
	harvest_check(t, kind, &m, &want, "read(2) into tracked pages");
	close(pfd[0]);
	close(pfd[1]);
	maps_free(&want);
	ftr_track_destroy(t);
	mem_unmap(&m);
}
END_TEST

/* The scan backend splits a harvest over 64 MiB into 4096-page chunks
 * shared by several threads: regions of odd sizes, writes on the chunk
 * edges. */
START_TEST(test_scan_threads)
{
	uint64_t sizes[] = { 40 * MiB, 28 * MiB + 4 * PS, 2 * PS };
	struct ftr_track *t;
	struct maps want;
	uint64_t rng = 5;
	struct mem m;

	mem_map(&m, _i, sizes, 3);
	t = track_new(FTR_TRACK_SCAN, &m, -1);
	harvest_first(t, &m);
	maps_alloc(&want, &m);
	for (int round = 0; round < 3; round++) {
		maps_clear(&want, &m);
		for (unsigned r = 0; r < m.n; r++) {
			uint64_t np = m.reg[r].size / PS;
			uint64_t edges[] = { 0, 4095, 4096, 8191, 8192, np - 1 };

			for (size_t e = 0; e < sizeof(edges) / sizeof(edges[0]); e++) {
				if (edges[e] >= np || (round == 1 && e % 2))
					continue;
				write_page(page_addr(&m, r, edges[e]), &rng);
				ftr_bit_set(want.m[r], edges[e]);
			}
			for (int i = 0; i < 1000 && np > 64; i++) {
				uint64_t p = rng_next(&rng) % np;

				write_page(page_addr(&m, r, p), &rng);
				ftr_bit_set(want.m[r], p);
			}
		}
		harvest_check(t, FTR_TRACK_SCAN, &m, &want, "scan over threads");
	}
	maps_free(&want);
	ftr_track_destroy(t);
	mem_unmap(&m);
}
END_TEST

/* ---- concurrent writers with a paused harvest ------------------------------ */

#define NWRITERS 4
#define EPOCH_WRITES 400

struct conc {
	struct mem *m;
	pthread_mutex_t lock;
	pthread_cond_t parked_cv, resume_cv;
	atomic_bool pause_req;
	atomic_bool stop;
	int parked;
	atomic_int budget;	 /* writes left this epoch */
	uint64_t *truth;	 /* pages written this epoch (atomic OR) */
	atomic_uint_fast64_t writes;
};

/* The safe point: between two writes. */
static void conc_safe_point(struct conc *c)
{
	if (!atomic_load(&c->pause_req))
		return;
	pthread_mutex_lock(&c->lock);
	c->parked++;
	pthread_cond_signal(&c->parked_cv);
	while (atomic_load(&c->pause_req))
		pthread_cond_wait(&c->resume_cv, &c->lock);
	c->parked--;
	pthread_mutex_unlock(&c->lock);
}

struct writer_arg {
	struct conc *c;
	uint64_t seed;
};

static void *writer_main(void *arg)
{
	struct writer_arg *wa = arg;
	struct conc *c = wa->c;
	uint64_t rng = wa->seed, npages = c->m->reg[0].size / PS;

	while (!atomic_load(&c->stop)) {
		uint64_t p;

		conc_safe_point(c);
		if (atomic_fetch_sub(&c->budget, 1) <= 0) {
			sched_yield();
			continue;
		}
		/* half the writes in a hot 256-page window shared by all
		 * writers (same-page races), half anywhere */
		p = rng_next(&rng) % 2 ? rng_next(&rng) % 256 : rng_next(&rng) % npages;
		write_page(page_addr(c->m, 0, p), &rng);
		__atomic_fetch_or(&c->truth[p >> 6], 1ull << (p & 63), __ATOMIC_RELAXED);
		atomic_fetch_add(&c->writes, 1);
	}
	return NULL;
}

static void conc_pause(struct conc *c)
{
	atomic_store(&c->pause_req, true);
	pthread_mutex_lock(&c->lock);
	while (c->parked < NWRITERS)
		pthread_cond_wait(&c->parked_cv, &c->lock);
	pthread_mutex_unlock(&c->lock);
}

static void conc_resume(struct conc *c)
{
	pthread_mutex_lock(&c->lock);
	atomic_store(&c->pause_req, false);
	pthread_cond_broadcast(&c->resume_cv);
	pthread_mutex_unlock(&c->lock);
}

START_TEST(test_concurrent)
{
	enum ftr_track_kind kind = kinds[_i / 2];
	bool shmem = _i % 2;
	uint64_t sizes[] = { 16 * MiB };
	struct writer_arg wa[NWRITERS];
	pthread_t th[NWRITERS];
	struct conc c;
	struct maps got, want, uni, all;
	struct ftr_track *t;
	struct mem m;
	uint64_t faults = 0;
	const int cycles = 25;

	if (skip_unsupported("concurrent", kind, shmem))
		return;
	mem_map(&m, shmem, sizes, 1);
	memset(&c, 0, sizeof(c));
	c.m = &m;
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.parked_cv, NULL);
	pthread_cond_init(&c.resume_cv, NULL);
	maps_alloc(&got, &m);
	maps_alloc(&want, &m);
	maps_alloc(&uni, &m);
	maps_alloc(&all, &m);
	c.truth = want.m[0];
	atomic_store(&c.budget, EPOCH_WRITES);

	t = track_new(kind, &m, -1);
	for (int i = 0; i < NWRITERS; i++) {
		wa[i] = (struct writer_arg){ .c = &c, .seed = 1000 + (uint64_t)i };
		ck_assert_int_eq(pthread_create(&th[i], NULL, writer_main, &wa[i]), 0);
	}

	for (int e = 0; e <= cycles; e++) {
		struct timespec ts = { 0, 1000000 };
		uint64_t deadline = ftr_now_ms() + 500;
		char what[64];
		int64_t n;

		/* let the epoch's writes happen (bounded: wp-sync is slow) */
		while (atomic_load(&c.budget) > 0 && ftr_now_ms() < deadline)
			nanosleep(&ts, NULL);
		conc_pause(&c);
		maps_clear(&got, &m);
		n = ftr_track_harvest(t, got.m);
		ck_assert_int_ge(n, 0);
		snprintf(what, sizeof(what), "%s/%s epoch %d", ftr_track_kind_name(kind),
			 shmem ? "shmem" : "anon", e);
		if (e == 0 || kind == FTR_TRACK_FULL) {
			ck_assert_uint_eq((uint64_t)n, mem_pages(&m));
		} else {
			/* exact per epoch, not only in the union */
			maps_assert_equal(&got, &want, &m, what);
			ck_assert_uint_eq((uint64_t)n, maps_count(&want, &m));
			for (size_t w = 0; w < ftr_bitmap_words(mem_pages(&m)); w++) {
				uni.m[0][w] |= got.m[0][w];
				all.m[0][w] |= want.m[0][w];
			}
		}
		maps_clear(&want, &m);
		atomic_store(&c.budget, EPOCH_WRITES);
		conc_resume(&c);
	}

	atomic_store(&c.stop, true);
	conc_resume(&c);
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(th[i], NULL);
	/* the writes after the last harvest are in the next one */
	maps_clear(&got, &m);
	ck_assert_int_ge(ftr_track_harvest(t, got.m), 0);
	if (kind != FTR_TRACK_FULL) {
		maps_assert_equal(&got, &want, &m, "after the writers stopped");
		maps_assert_equal(&uni, &all, &m, "union of all harvests");
		ck_assert_uint_gt(maps_count(&all, &m), 1000);
	}
	ftr_track_stats(t, NULL, &faults);
	if (kind == FTR_TRACK_WP_SYNC)
		ck_assert_uint_gt(faults, 0);
	ftr_track_destroy(t);
	ck_assert_uint_gt(atomic_load(&c.writes), (uint64_t)cycles * 100);

	maps_free(&got);
	maps_free(&want);
	maps_free(&uni);
	maps_free(&all);
	pthread_cond_destroy(&c.parked_cv);
	pthread_cond_destroy(&c.resume_cv);
	pthread_mutex_destroy(&c.lock);
	mem_unmap(&m);
}
END_TEST

/* ---- selection and refusals ------------------------------------------------ */

START_TEST(test_auto)
{
	const struct ftr_kprobe *kp;
	uint64_t sizes[] = { 1 * MiB };
	enum ftr_track_kind expect;
	bool shmem = _i;
	struct ftr_track *t;
	struct mem m;

	ck_assert_int_eq(ftr_kprobe_get(&kp), 0);
	if (kp->wp_async && kp->pagemap_scan_wp && (!shmem || kp->wp_async_shmem))
		expect = FTR_TRACK_WP_ASYNC;
	else if (kp->wp && (!shmem || kp->wp_shmem) && (kp->uffd_syscall || kp->uffd_dev))
		expect = FTR_TRACK_WP_SYNC;
	else
		expect = FTR_TRACK_SCAN;
	mem_map(&m, shmem, sizes, 1);
	t = track_new(FTR_TRACK_AUTO, &m, -1);
	ck_assert_str_eq(ftr_track_kind_name(ftr_track_kind(t)), ftr_track_kind_name(expect));
	harvest_first(t, &m);
	ftr_track_destroy(t);
	mem_unmap(&m);
}
END_TEST

/* Memory no userfaultfd can be registered on: a MAP_SHARED mapping of a
 * file opened read-only (no VM_MAYWRITE: UFFDIO_REGISTER says EPERM). The
 * uffd backends must refuse by name with a reason, AUTO must fall back to
 * scan, and scan must still see changes made through another fd. */
START_TEST(test_unsupported_memory)
{
	const struct ftr_kprobe *kp;
	struct ftr_track_region r;
	struct ftr_track *t = NULL;
	char path[64], err[256];
	uint64_t map[1] = { 0 }, *maps[1] = { map };
	int memfd, rofd, rc;
	char page[PS];
	void *p;

	ck_assert_int_eq(ftr_kprobe_get(&kp), 0);
	memfd = memfd_create("check_track_ro", MFD_CLOEXEC);
	ck_assert_int_ge(memfd, 0);
	ck_assert_int_eq(ftruncate(memfd, 16 * PS), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	rofd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(rofd, 0);
	p = mmap(NULL, 16 * PS, PROT_READ, MAP_SHARED, rofd, 0);
	ck_assert(p != MAP_FAILED);
	r = (struct ftr_track_region){ .base = p, .size = 16 * PS, .fd = rofd };

	for (int k = FTR_TRACK_WP_ASYNC; k <= FTR_TRACK_WP_SYNC; k++) {
		err[0] = '\0';
		rc = ftr_track_create((enum ftr_track_kind)k, &r, 1, PS, -1, &t, err, sizeof(err));
		ck_assert_msg(rc == -EOPNOTSUPP, "%s on a read-only shared mapping: %d (%s)",
			      ftr_track_kind_name((enum ftr_track_kind)k), rc, err);
		ck_assert_msg(strlen(err) > 10, "no reason given: '%s'", err);
		if (k == FTR_TRACK_WP_ASYNC && kp->wp_async)
			ck_assert_msg(strstr(err, "register") || strstr(err, "protect"),
				      "reason does not say what failed: %s", err);
	}

	t = track_new(FTR_TRACK_AUTO, &(struct mem){ .reg = { r }, .n = 1 }, -1);
	ck_assert_int_eq(ftr_track_kind(t), FTR_TRACK_SCAN);
	ck_assert_int_eq(ftr_track_harvest(t, maps), 16);
	map[0] = 0;
	ck_assert_int_eq(ftr_track_harvest(t, maps), 0);
	memset(page, 0x77, sizeof(page));
	ck_assert_int_eq(pwrite(memfd, page, sizeof(page), 5 * PS), (ssize_t)sizeof(page));
	ck_assert_int_eq(ftr_track_harvest(t, maps), 1);
	ck_assert_uint_eq(map[0], 1u << 5);
	ftr_track_destroy(t);

	munmap(p, 16 * PS);
	close(rofd);
	close(memfd);
}
END_TEST

/* Attach protocol: the owner made and registered the uffd; the tracker
 * borrows it and leaves it open. Case 0: wp-async; 1: wp-sync with
 * WP_UNPOPULATED; 2: wp-sync without it (the tracker must populate). */
static int attach_uffd(uint64_t features, bool blocking, const struct mem *m)
{
	int uffd = ftr_uffd_open(features, true, NULL, NULL, NULL);

	ck_assert_msg(uffd >= 0, "uffd with features 0x%llx: %s",
		      (unsigned long long)features, strerror(-uffd));
	if (blocking)
		ck_assert_int_eq(fcntl(uffd, F_SETFL, fcntl(uffd, F_GETFL) & ~O_NONBLOCK), 0);
	for (unsigned r = 0; r < m->n; r++)
		ck_assert_int_eq(ftr_uffd_register(uffd, m->reg[r].base, m->reg[r].size,
						   UFFDIO_REGISTER_MODE_WP, NULL), 0);
	return uffd;
}

START_TEST(test_attached_uffd)
{
	enum ftr_track_kind kind = _i ? FTR_TRACK_WP_SYNC : FTR_TRACK_WP_ASYNC;
	enum ftr_track_kind other = _i ? FTR_TRACK_WP_ASYNC : FTR_TRACK_WP_SYNC;
	uint64_t sizes[] = { 4 * MiB, 2 * MiB }, s1[] = { 1 * MiB };
	const uint64_t async_f = UFFD_FEATURE_WP_ASYNC;
	const struct ftr_kprobe *kp;
	uint64_t features, have = 0;
	struct ftr_track *t = NULL;
	struct mem m, m2;
	char err[256];
	int uffd;

	if (skip_unsupported("attached_uffd", kind, false))
		return;
	ck_assert_int_eq(ftr_kprobe_get(&kp), 0);
	features = kind == FTR_TRACK_WP_ASYNC ? async_f :
		   UFFD_FEATURE_PAGEFAULT_FLAG_WP |
		   (_i == 1 ? kp->features & UFFD_FEATURE_WP_UNPOPULATED : 0);
	mem_map(&m, false, sizes, 2);
	/* a blocking fd on purpose: wp-sync must make it pollable */
	uffd = attach_uffd(features, true, &m);
	ck_assert_int_eq(ftr_uffd_fd_features(uffd, &have), 0);
	ck_assert_uint_eq(have & features, features);
	run_ground_truth(kind, &m, uffd, 77 + (uint64_t)_i);
	ck_assert_int_ge(fcntl(uffd, F_GETFD), 0); /* still open */

	/* the same uffd on memory it has not registered: refused */
	mem_map(&m2, false, s1, 1);
	err[0] = '\0';
	ck_assert_int_eq(ftr_track_create(kind, m2.reg, 1, PS, uffd, &t, err, sizeof(err)),
			 -EOPNOTSUPP);
	ck_assert_str_ne(err, "");
	mem_unmap(&m2);
	close(uffd);
	mem_unmap(&m);

	/* a uffd of the other WP mode: refused with a reason, never a tracker
	 * that silently misses writes */
	if (!skip_unsupported("attached_uffd (other mode)", other, false)) {
		mem_map(&m2, false, s1, 1);
		uffd = attach_uffd(other == FTR_TRACK_WP_ASYNC ? async_f :
				   UFFD_FEATURE_PAGEFAULT_FLAG_WP, false, &m2);
		err[0] = '\0';
		ck_assert_int_eq(ftr_track_create(kind, m2.reg, 1, PS, uffd, &t, err, sizeof(err)),
				 -EOPNOTSUPP);
		ck_assert_msg(strstr(err, "WP_ASYNC"), "reason: %s", err);
		/* the borrowed uffd is still usable by its owner */
		ck_assert_int_eq(ftr_uffd_wp(uffd, m2.reg[0].base, PS, true, false), 0);
		close(uffd);
		mem_unmap(&m2);
	}
	/* not a userfaultfd at all */
	ck_assert_int_eq(ftr_uffd_fd_features(STDIN_FILENO, &have), -ENOENT);
}
END_TEST

/* wp-sync: when its handler cannot go on (here: the attached uffd's fd
 * number now names /dev/null), harvest reports an error instead of a
 * silently incomplete set, and writers do not hang. */
START_TEST(test_wp_sync_handler_dies)
{
	uint64_t sizes[] = { 1 * MiB }, rng = 3, deadline;
	const struct ftr_kprobe *kp;
	struct ftr_track *t;
	struct maps got;
	struct mem m;
	int uffd, devnull;
	int64_t n = 0;

	if (skip_unsupported("wp_sync_handler_dies", FTR_TRACK_WP_SYNC, false))
		return;
	ck_assert_int_eq(ftr_kprobe_get(&kp), 0);
	mem_map(&m, false, sizes, 1);
	uffd = attach_uffd(UFFD_FEATURE_PAGEFAULT_FLAG_WP |
			   (kp->features & UFFD_FEATURE_WP_UNPOPULATED), false, &m);
	t = track_new(FTR_TRACK_WP_SYNC, &m, uffd);
	harvest_first(t, &m);
	maps_alloc(&got, &m);
	write_page(page_addr(&m, 0, 1), &rng);
	ck_assert_int_eq(ftr_track_harvest(t, got.m), 1);

	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(devnull, 0);
	ck_assert_int_eq(dup2(devnull, uffd), uffd); /* the uffd itself goes away */
	close(devnull);
	deadline = ftr_now_ms() + 5000;
	while (ftr_now_ms() < deadline) {
		n = ftr_track_harvest(t, got.m);
		if (n < 0)
			break;
		usleep(10000);
	}
	ck_assert_msg(n < 0, "harvest still succeeds after the handler lost its uffd");
	/* no writer blocks now */
	for (uint64_t p = 0; p < 256; p++)
		write_page(page_addr(&m, 0, p), &rng);
	ck_assert_int_lt(ftr_track_harvest(t, got.m), 0);
	ftr_track_destroy(t);
	close(uffd);
	maps_free(&got);
	mem_unmap(&m);
}
END_TEST

static Suite *track_suite(void)
{
	Suite *su = suite_create("track");
	TCase *tc;

	tc = tcase_create("probe");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_probe);
	suite_add_tcase(su, tc);

	tc = tcase_create("api");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_bad_args);
	tcase_add_loop_test(tc, test_auto, 0, 2);
	tcase_add_test(tc, test_unsupported_memory);
	tcase_add_loop_test(tc, test_attached_uffd, 0, 3);
	tcase_add_test(tc, test_wp_sync_handler_dies);
	suite_add_tcase(su, tc);

	tc = tcase_create("ground_truth");
	tcase_set_timeout(tc, 240);
	tcase_add_loop_test(tc, test_ground_truth, 0, NCASES);
	tcase_add_loop_test(tc, test_many_ranges, 0, NCASES);
	tcase_add_loop_test(tc, test_scan_threads, 0, 2);
	tcase_add_loop_test(tc, test_kernel_writes, 0, NCASES);
	suite_add_tcase(su, tc);

	tc = tcase_create("concurrent");
	tcase_set_timeout(tc, 240);
	tcase_add_loop_test(tc, test_concurrent, 0, NCASES);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(track_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
