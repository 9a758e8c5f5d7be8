// SPDX-License-Identifier: MIT
/*
 * The `cow` snapshot strategy (see cow.h for the states and why).
 *
 * One handler thread reads write-protect faults. A fault on an armed page
 * copies it into the pool, marks it copied and unprotects it, which wakes
 * the writer. A fault on a page being sent needs nothing: the sender
 * unprotects it (and so wakes the writer) as soon as the kernel holds the
 * bytes, which is one batch away at most.
 */
#define FTR_LOG_PREFIX "cow"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "checkpoint/cow.h"
#include "common/common.h"
#include "uffd/track.h"
#include "uffd/uffd_io.h"

/* SENDING_WAITED: a writer faulted on the page while it was being sent; it
 * waits until the send is done (tracked mode: only such pages are
 * unprotected on release, every other page stays protected for the
 * tracker). */
enum { COW_IDLE = 0, COW_ARMED, COW_SENDING, COW_COPIED, COW_SENDING_WAITED };

struct cow_region {
	uint8_t *base;
	uint64_t size;
	uint64_t npages;
	uint8_t *state;
	uint32_t *slot;
};

struct cow_ref {
	uint32_t region;
	uint64_t page;
};

struct ftr_cow {
	struct ftr_track *track;	/* tracked mode: the wp-sync tracker's uffd */
	int uffd;
	int stop_fd;
	uint32_t page_size;
	uint32_t nregions;
	struct cow_region r[FTR_MAX_REGIONS];
	pthread_t th;
	bool th_started;

	pthread_mutex_t lock;
	uint8_t *pool;
	uint64_t pool_pages, pool_used;
	struct cow_ref *pending;	/* claimed, not yet released */
	uint64_t npending, pending_cap;
	uint64_t copied, faults;
	char err[160];
};

static int find_page(struct ftr_cow *c, uint64_t addr, uint32_t *region, uint64_t *page)
{
	for (uint32_t i = 0; i < c->nregions; i++) {
		uint64_t b = (uint64_t)(uintptr_t)c->r[i].base;

		if (addr >= b && addr < b + c->r[i].size) {
			*region = i;
			*page = (addr - b) / c->page_size;
			return 0;
		}
	}
	return -ENOENT;
}

static void *page_addr(struct ftr_cow *c, uint32_t region, uint64_t page)
{
	return c->r[region].base + page * c->page_size;
}

/* Copies a page into the pool and marks it copied. Under lock. False when
 * the pool is full (cannot happen: it holds an epoch's limit). */
static bool copy_aside(struct ftr_cow *c, uint32_t region, uint64_t page)
{
	uint64_t s;

	if (c->pool_used >= c->pool_pages)
		return false;
	s = c->pool_used++;
	memcpy(c->pool + s * c->page_size, page_addr(c, region, page), c->page_size);
	c->r[region].slot[page] = (uint32_t)s;
	c->r[region].state[page] = COW_COPIED;
	return true;
}

static void on_wp_fault(struct ftr_cow *c, uint64_t addr)
{
	uint32_t region;
	uint64_t page;
	uint8_t st;

	if (find_page(c, addr, &region, &page)) {
		/* Not ours: let it go. */
		ftr_uffd_wp(c->uffd, (void *)(uintptr_t)(addr & ~(uint64_t)(c->page_size - 1)),
			    c->page_size, false, false);
		return;
	}
	pthread_mutex_lock(&c->lock);
	c->faults++;
	st = c->r[region].state[page];
	if (st == COW_ARMED && copy_aside(c, region, page)) {
		c->copied++;
		st = COW_COPIED;
	}
	pthread_mutex_unlock(&c->lock);
	/* Sending: the sender unprotects it right after the batch. Armed with
	 * the pool full cannot happen (the pool holds an epoch's limit); if it
	 * did, the writer simply waits for the sender like a sending page. */
	if (st != COW_SENDING && st != COW_ARMED)
		ftr_uffd_wp(c->uffd, page_addr(c, region, page), c->page_size, false, false);
}

/* Tracked mode: the wp-sync tracker's handler asks before it unprotects a
 * page a writer faulted on (it has recorded the page dirty already). */
static bool tracked_fault(void *ctx, unsigned region, uint64_t page)
{
	struct ftr_cow *c = ctx;
	bool go = true;

	if (region >= c->nregions || page >= c->r[region].npages)
		return true;
	pthread_mutex_lock(&c->lock);
	c->faults++;
	switch (c->r[region].state[page]) {
	case COW_ARMED:
		if (copy_aside(c, region, page))
			c->copied++;
		else
			go = false;	/* cannot happen (see on_wp_fault); wait */
		break;
	case COW_SENDING:
		c->r[region].state[page] = COW_SENDING_WAITED;
		go = false;
		break;
	case COW_SENDING_WAITED:
		go = false;
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return go;
}

static void *handler_main(void *arg)
{
	struct ftr_cow *c = arg;
	struct uffd_msg msgs[32];

	ftr_thread_name("ftr-cow");

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = c->uffd, .events = POLLIN },
			{ .fd = c->stop_fd, .events = POLLIN },
		};
		ssize_t n;

		if (poll(pfd, 2, 500) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		n = read(c->uffd, msgs, sizeof(msgs));
		if (n < 0)
			continue;
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
				on_wp_fault(c, msgs[i].arg.pagefault.address);
			else	/* registered WP only: nothing else should come */
				ftr_uffd_wake(c->uffd,
					      (void *)(uintptr_t)(msgs[i].arg.pagefault.address &
								  ~(uint64_t)(c->page_size - 1)),
					      c->page_size);
		}
	}
	return NULL;
}

/* What both kinds have: the pool and the per-page states. */
static int cow_alloc(const struct ftr_region *regs, uint32_t nregions, uint32_t page_size,
		     uint64_t pool_pages, struct ftr_cow **out, char *err, size_t errlen)
{
	struct ftr_cow *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return -ENOMEM;
	c->uffd = c->stop_fd = -1;
	c->page_size = page_size;
	c->nregions = nregions;
	c->pool_pages = pool_pages;
	pthread_mutex_init(&c->lock, NULL);
	c->pool = mmap(NULL, pool_pages * page_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->pool == MAP_FAILED) {
		c->pool = NULL;
		ret = -errno;
		snprintf(err, errlen, "cow: copy pool of %llu pages: %s",
			 (unsigned long long)pool_pages, strerror(errno));
		goto fail;
	}
	for (uint32_t i = 0; i < nregions; i++) {
		struct cow_region *r = &c->r[i];

		r->base = regs[i].base;
		r->size = regs[i].size;
		r->npages = regs[i].size / page_size;
		r->state = calloc(r->npages, 1);
		r->slot = calloc(r->npages, sizeof(uint32_t));
		if (!r->state || !r->slot) {
			ret = -ENOMEM;
			snprintf(err, errlen, "cow: out of memory");
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	ftr_cow_destroy(c);
	return ret;
}

int ftr_cow_create_tracked(const struct ftr_region *regs, uint32_t nregions,
			   uint32_t page_size, uint64_t pool_pages, struct ftr_track *t,
			   struct ftr_cow **out, char *err, size_t errlen)
{
	struct ftr_cow *c;
	int ret = cow_alloc(regs, nregions, page_size, pool_pages, &c, err, errlen);

	if (ret)
		return ret;
	ret = ftr_track_set_wp_hook(t, tracked_fault, c);
	if (ret) {
		snprintf(err, errlen, "cow: the dirty tracker cannot share its userfaultfd (%s): "
			 "only wp-sync can", strerror(-ret));
		ftr_cow_destroy(c);
		return ret;
	}
	c->track = t;
	*out = c;
	return 0;
}

int ftr_cow_create(const struct ftr_region *regs, uint32_t nregions, uint32_t page_size,
		   uint64_t pool_pages, struct ftr_cow **out, char *err, size_t errlen)
{
	struct ftr_cow *c;
	int ret = cow_alloc(regs, nregions, page_size, pool_pages, &c, err, errlen);

	if (ret)
		return ret;
	ret = ftr_uffd_open(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, false, NULL, NULL, NULL);
	if (ret < 0) {
		snprintf(err, errlen, "cow: userfaultfd with write-protect on shared memory: %s",
			 strerror(-ret));
		goto fail;
	}
	c->uffd = ret;
	for (uint32_t i = 0; i < nregions; i++) {
		ret = ftr_uffd_register(c->uffd, c->r[i].base, c->r[i].size,
					UFFDIO_REGISTER_MODE_WP, NULL);
		if (ret) {
			snprintf(err, errlen,
				 "cow: cannot register region %u for write-protect faults: %s%s", i,
				 strerror(-ret),
				 ret == -EBUSY ? " (another userfaultfd already tracks it: use "
						 "--dirty wp-sync, workload, scan or full with "
						 "--snapshot cow)" : "");
			goto fail;
		}
	}
	c->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->stop_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cow: eventfd: %s", strerror(errno));
		goto fail;
	}
	ret = -pthread_create(&c->th, NULL, handler_main, c);
	if (ret) {
		snprintf(err, errlen, "cow: cannot start the fault handler: %s", strerror(-ret));
		goto fail;
	}
	c->th_started = true;
	*out = c;
	return 0;
fail:
	ftr_cow_destroy(c);
	return ret;
}

/* Unprotects pages [first, first + n) of a region. */
static void unprotect(struct ftr_cow *c, uint32_t region, uint64_t first, uint64_t n)
{
	if (c->track)
		ftr_track_wp_release(c->track, region, first, n);
	else
		ftr_uffd_wp(c->uffd, page_addr(c, region, first), n * c->page_size, false, false);
}

int ftr_cow_arm(struct ftr_cow *c, uint64_t *const *maps)
{
	int ret = 0;

	pthread_mutex_lock(&c->lock);
	c->pool_used = 0;
	if (c->track) {
		/* The tracker's harvest left every page protected: only the
		 * states change. */
		for (uint32_t r = 0; r < c->nregions; r++) {
			const uint64_t *m = maps[r];

			for (uint64_t w = 0; w < ftr_bitmap_words(c->r[r].npages); w++) {
				uint64_t bits = m[w];

				while (bits) {
					c->r[r].state[w * 64 + (uint64_t)__builtin_ctzll(bits)] =
						COW_ARMED;
					bits &= bits - 1;
				}
			}
		}
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	for (uint32_t r = 0; r < c->nregions && !ret; r++) {
		uint64_t run = 0, start = 0;

		for (uint64_t p = 0; p <= c->r[r].npages && !ret; p++) {
			bool set = p < c->r[r].npages && ftr_bit_test(maps[r], p);

			if (set) {
				if (!run)
					start = p;
				run++;
				c->r[r].state[p] = COW_ARMED;
				continue;
			}
			if (run)
				ret = ftr_uffd_wp(c->uffd, page_addr(c, r, start), run * c->page_size,
						  true, false);
			run = 0;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

const void *ftr_cow_claim(struct ftr_cow *c, uint32_t region, uint64_t page)
{
	const void *src = page_addr(c, region, page);

	pthread_mutex_lock(&c->lock);
	switch (c->r[region].state[page]) {
	case COW_COPIED:
		src = c->pool + (uint64_t)c->r[region].slot[page] * c->page_size;
		break;
	case COW_ARMED:
		if (c->npending == c->pending_cap) {
			uint64_t cap = c->pending_cap ? 2 * c->pending_cap : 1024;
			struct cow_ref *n = realloc(c->pending, cap * sizeof(*n));

			if (!n) {
				/* No room to remember it: copy it aside now instead. */
				if (copy_aside(c, region, page))
					src = c->pool + (uint64_t)c->r[region].slot[page] *
							c->page_size;
				break;
			}
			c->pending = n;
			c->pending_cap = cap;
		}
		c->r[region].state[page] = COW_SENDING;
		c->pending[c->npending++] = (struct cow_ref){ region, page };
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return src;
}

void ftr_cow_release(struct ftr_cow *c)
{
	uint64_t n, i = 0;

	pthread_mutex_lock(&c->lock);
	n = c->npending;
	if (c->track) {
		/* Only pages a writer waits on lose their protection; the
		 * others stay protected for the tracker. */
		for (uint64_t k = 0; k < n; k++) {
			struct cow_ref *ref = &c->pending[k];
			uint8_t *st = &c->r[ref->region].state[ref->page];

			if (*st == COW_SENDING_WAITED)
				unprotect(c, ref->region, ref->page, 1);
			*st = COW_IDLE;
		}
		c->npending = 0;
		pthread_mutex_unlock(&c->lock);
		return;
	}
	for (uint64_t k = 0; k < n; k++)
		c->r[c->pending[k].region].state[c->pending[k].page] = COW_IDLE;
	/* Unprotect in runs (claims come in page order). */
	while (i < n) {
		uint64_t j = i + 1;

		while (j < n && c->pending[j].region == c->pending[i].region &&
		       c->pending[j].page == c->pending[j - 1].page + 1)
			j++;
		unprotect(c, c->pending[i].region, c->pending[i].page, j - i);
		i = j;
	}
	c->npending = 0;
	pthread_mutex_unlock(&c->lock);
}

void ftr_cow_finish(struct ftr_cow *c)
{
	ftr_cow_release(c);
	pthread_mutex_lock(&c->lock);
	/* Anything still armed (an epoch abandoned on an error) or copied goes
	 * back to idle and unprotected. */
	for (uint32_t r = 0; r < c->nregions; r++) {
		for (uint64_t p = 0; p < c->r[r].npages; p++) {
			/* Tracked: an armed page stays protected (as the
			 * tracker wants it: clean since the harvest). */
			if (c->r[r].state[p] == COW_ARMED && !c->track)
				unprotect(c, r, p, 1);
			c->r[r].state[p] = COW_IDLE;
		}
	}
	c->pool_used = 0;
	pthread_mutex_unlock(&c->lock);
}

void ftr_cow_stats(struct ftr_cow *c, uint64_t *copied, uint64_t *faults)
{
	pthread_mutex_lock(&c->lock);
	*copied = c->copied;
	*faults = c->faults;
	pthread_mutex_unlock(&c->lock);
}

void ftr_cow_destroy(struct ftr_cow *c)
{
	uint64_t one = 1;

	if (!c)
		return;
	if (c->track) {
		/* No hook call after this; then wake the writers it kept
		 * waiting. */
		ftr_track_set_wp_hook(c->track, NULL, NULL);
		for (uint32_t r = 0; r < c->nregions; r++)
			for (uint64_t p = 0; c->r[r].state && p < c->r[r].npages; p++)
				if (c->r[r].state[p] == COW_SENDING_WAITED)
					unprotect(c, r, p, 1);
	}
	if (c->th_started) {
		if (write(c->stop_fd, &one, sizeof(one)) < 0) {
			/* already signalled */
		}
		pthread_join(c->th, NULL);
	}
	for (uint32_t r = 0; r < c->nregions; r++) {
		if (c->uffd >= 0 && c->r[r].base) {
			ftr_uffd_wp(c->uffd, c->r[r].base, c->r[r].size, false, false);
			ftr_uffd_unregister(c->uffd, c->r[r].base, c->r[r].size);
		}
		free(c->r[r].state);
		free(c->r[r].slot);
	}
	if (c->uffd >= 0)
		close(c->uffd);
	if (c->stop_fd >= 0)
		close(c->stop_fd);
	if (c->pool)
		munmap(c->pool, c->pool_pages * c->page_size);
	free(c->pending);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void ftr_cow_pool(struct ftr_cow *c, void **base, size_t *len)
{
	*base = c->pool;
	*len = c->pool_pages * c->page_size;
}
