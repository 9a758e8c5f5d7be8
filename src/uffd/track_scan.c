/* SPDX-License-Identifier: MIT */
/*
 * The "scan" dirty tracker: a shadow copy of every region; harvest compares
 * each page with its shadow and copies the pages that differ into it.
 *
 * It needs no kernel feature and works on any memory this process can read,
 * including memory it cannot register a userfaultfd on (another process's
 * shared mapping, e.g. QEMU guest RAM in a /dev/shm file). Its costs: one
 * extra copy of the regions (anonymous memory), and a harvest that reads
 * every page twice plus a copy of each dirty page: memory-bandwidth bound,
 * ~140 ms per GiB on one thread here, ~85 ms on two.
 *
 * Threads: the writers are paused during a harvest, so their CPUs are
 * free; a harvest over SCAN_MT_MIN bytes or more starts up to nthreads - 1
 * helper threads (nthreads = online CPUs, at most SCAN_MAX_THREADS) that
 * take SCAN_CHUNK-page chunks with the calling thread from a shared atomic
 * counter and are joined before the harvest returns. A chunk is a multiple
 * of 64 pages, so no two threads write the same bitmap word.
 *
 * What it reports is "content changed", not "written": a write that stores
 * the bytes already there is not reported (there is nothing new to send).
 * Harvest requires paused writers: a page written during its compare may be
 * copied half-written into the shadow, and the rest of that write would then
 * be missed until the page changes again.
 */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>

#include "uffd/track_impl.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* 5.14 */
#endif

/* Pages per work item (a multiple of 64: one bitmap word per 64 pages). */
#define SCAN_CHUNK 4096
#define SCAN_MAX_THREADS 4
/* Below this much memory a harvest stays on the calling thread. */
#define SCAN_MT_MIN (64ull << 20)

struct scan_track {
	struct ftr_track t;
	char **shadow;	   /* per region, same size as the region */
	uint64_t *chunk0;  /* per region: index of its first chunk */
	uint64_t nchunks;  /* over all regions */
	unsigned nthreads; /* harvest threads, the caller included */
};

/* One harvest's shared state. */
struct scan_job {
	struct scan_track *s;
	uint64_t **dirty;
	atomic_uint_fast64_t next; /* next chunk to take */
};

static struct scan_track *to_scan(struct ftr_track *t)
{
	return container_of(t, struct scan_track, t);
}

static void scan_free_shadows(struct scan_track *s)
{
	if (!s->shadow)
		return;
	for (unsigned r = 0; r < s->t.nregions; r++)
		if (s->shadow[r])
			munmap(s->shadow[r], s->t.regions[r].size);
	free(s->shadow);
	s->shadow = NULL;
	free(s->chunk0);
	s->chunk0 = NULL;
}

static int scan_start(struct ftr_track *t, const struct ftr_kprobe *kp, int uffd,
		      char *err, size_t errlen)
{
	struct scan_track *s = to_scan(t);

	uint64_t bytes = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	s->shadow = calloc(t->nregions, sizeof(*s->shadow));
	s->chunk0 = calloc(t->nregions, sizeof(*s->chunk0));
	if (!s->shadow || !s->chunk0) {
		scan_free_shadows(s);
		ftr_track_errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (unsigned r = 0; r < t->nregions; r++) {
		const struct ftr_track_region *g = &t->regions[r];
		void *p = mmap(NULL, g->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (p == MAP_FAILED) {
			int rc = -errno;

			ftr_track_errf(err, errlen, "shadow copy of region %u (%llu bytes): %s",
				       r, (unsigned long long)g->size, strerror(-rc));
			scan_free_shadows(s);
			return rc;
		}
		/* Filling it by page faults costs ~1-1.5 s per GiB here (PVM:
		 * every fault is expensive); populating it in the kernel first
		 * ~0.35-0.5 s, then the copy ~0.1 s. Transparent huge pages
		 * (MADV_HUGEPAGE) measured slower to populate (1.4-2 s) and the
		 * harvest is no faster with them. A failure only costs speed. */
		madvise(p, g->size, MADV_POPULATE_WRITE);
		s->shadow[r] = p;
		memcpy(p, g->base, g->size);
		s->chunk0[r] = s->nchunks;
		s->nchunks += FTR_DIV_ROUND_UP(t->npages[r], SCAN_CHUNK);
		bytes += g->size;
	}
	s->nthreads = 1;
	if (bytes >= SCAN_MT_MIN && ncpu > 1)
		s->nthreads = (unsigned)FTR_MIN(ncpu, SCAN_MAX_THREADS);
	return 0;
}

/* Compares pages [first, end) of region r with the shadow. */
static void scan_range(struct scan_track *s, unsigned r, uint64_t first, uint64_t end,
		       uint64_t *dirty)
{
	const size_t ps = s->t.page_size;
	const char *live = s->t.regions[r].base;
	char *shadow = s->shadow[r];

	for (uint64_t p = first; p < end; p++) {
		size_t off = p * ps;

		if (memcmp(live + off, shadow + off, ps) == 0)
			continue;
		memcpy(shadow + off, live + off, ps);
		ftr_bit_set(dirty, p);
	}
}

static void *scan_worker(void *arg)
{
	struct scan_job *j = arg;
	struct scan_track *s = j->s;
	unsigned r = 0;

	ftr_thread_name("ftr-scan");

	for (;;) {
		uint64_t c = atomic_fetch_add(&j->next, 1), first;

		if (c >= s->nchunks)
			break;
		/* a thread's chunk numbers only grow: r only moves forward */
		while (r + 1 < s->t.nregions && c >= s->chunk0[r + 1])
			r++;
		first = (c - s->chunk0[r]) * SCAN_CHUNK;
		scan_range(s, r, first, FTR_MIN(first + SCAN_CHUNK, s->t.npages[r]), j->dirty[r]);
	}
	return NULL;
}

static int scan_harvest(struct ftr_track *t, uint64_t **dirty)
{
	struct scan_track *s = to_scan(t);
	struct scan_job job = { .s = s, .dirty = dirty };
	pthread_t helpers[SCAN_MAX_THREADS];
	unsigned started = 0;

	atomic_init(&job.next, 0);
	for (unsigned i = 1; i < s->nthreads; i++) {
		if (pthread_create(&helpers[started], NULL, scan_worker, &job))
			break; /* fewer helpers: slower, not wrong */
		started++;
	}
	scan_worker(&job);
	for (unsigned i = 0; i < started; i++)
		pthread_join(helpers[i], NULL);
	return 0;
}

static void scan_stop(struct ftr_track *t)
{
	scan_free_shadows(to_scan(t));
}

const struct ftr_track_ops ftr_track_scan_ops = {
	.name = "scan",
	.kind = FTR_TRACK_SCAN,
	.size = sizeof(struct scan_track),
	.start = scan_start,
	.harvest = scan_harvest,
	.stop = scan_stop,
};
