/* SPDX-License-Identifier: MIT */
/*
 * The userfaultfd fault server. The contract (threads, events, liveness)
 * is in faultsrv.h; this comment is about how it holds together.
 *
 * Page state, one bit per page of every region ("global page" g: the
 * regions' pages numbered one after the other, in the order given), all
 * under fs->lock:
 *   settled   the page needs no more work (installed, a hole, gone); a
 *             clear bit means background work is left. Kept inverted so a
 *             fresh server starts from calloc's zero pages, touching no
 *             memory per page of the cache
 *   busy_ft   claimed by the fault thread, being installed
 *   busy_bg   claimed by the background thread, being installed
 *   resident  installed as far as the server knows (see REMOVE in the .h)
 *   gone      its range was unmapped: never served or pushed again
 * A thread claims pages under the lock, reads the source and issues the
 * ioctl without it, then marks and releases under the lock. Background
 * chunks and prefault windows take only "claimable" pages: not settled
 * and claimed by nobody. A faulted page itself is always installed by the fault
 * thread, whatever the bitmaps say:
 *   - resident: the message may be older than the install, or the page was
 *     zapped after a REMOVE; installing it again costs one EEXIST + wake at
 *     worst, while skipping it could leave a thread blocked forever;
 *   - claimed by the background: its chunk (up to max_chunk_pages, plus the
 *     source's time to produce it, a network round trip in postcopy) only
 *     wakes the faulting thread when the whole ioctl completes. Faults do
 *     not queue behind that: the fault thread fetches and installs the page
 *     itself, and whichever ioctl comes second sees EEXIST (wake, count,
 *     go on). The price is one duplicate source read of that page.
 *
 * Segments: where each piece of each region lives now in the faulting
 * process (REMAP moves pieces, UNMAP drops them). Only the fault thread,
 * which reads the events, changes them (under the lock); the background
 * thread reads them under the lock.
 *
 * Benign ioctl errors are decided in one place, fs_install():
 *   EEXIST   the page is already there (the other path, or a racing
 *            install): count it, UFFDIO_WAKE it, go on with the next page;
 *   short    uffdio_copy.copy / uffdio_continue.mapped < len (the kernel
 *            reports EAGAIN with a positive count): continue after it;
 *   EAGAIN   the target's mappings are changing (an event is queued but not
 *            read yet): retry later, after the fault thread read events;
 *   ENOENT   no registered vma covers the whole range: a multi-page range
 *            may just straddle two vmas (the target split one with
 *            mprotect), so the length is halved until an ioctl succeeds
 *            (then the rest is tried whole again): a boundary costs
 *            O(log^2 n) ioctls. A single page means "not registered any
 *            more" (unmapped or moved);
 *   ESRCH    the target's mm is gone: stop quietly ("target-exited");
 *   EFAULT   in MINOR mode, no page-cache page to map (a hole).
 *
 * The background thread and ENOENT: the event that explains an ENOENT
 * (UNMAP or REMAP) may have been read by the fault thread and not applied
 * yet. loop_seq is odd while the fault thread reads and handles messages,
 * so the background thread waits for it to become even (or change), then
 * retries the page once; only a second ENOENT with no layout change in
 * between marks the page gone (for targets that did not enable the UNMAP
 * event).
 */
#define FTR_LOG_PREFIX "faultsrv"

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "common/common.h"
#include "uffd/faultsrv.h"

/* Debian 12's linux-libc-dev (6.1) predates UFFDIO_POISON (Linux 6.6). */
#ifndef UFFDIO_POISON
#define FTR_FS_UFFDIO_POISON_NR 0x08
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, FTR_FS_UFFDIO_POISON_NR, struct uffdio_poison)
#endif

#define FS_MSG_BATCH 64			/* uffd_msg per read() */
#define FS_READS_PER_ITER 16		/* read() rounds before re-polling */
#define FS_POLL_MS 1000			/* safety bound of the fault thread's poll */
#define FS_FAULT_RUN_BYTES (256u << 10)	/* one fault ioctl at most (with prefault) */
#define FS_BG_MIN_PAGES 16u		/* background chunk floor (64 KiB) */
#define FS_BG_MAX_BYTES (64u << 20)	/* cap of max_chunk_pages */
/*
 * A background chunk should take about this long: long enough to amortise
 * the ioctl (64 pages per UFFDIO_COPY already reach ~3.5x the 1-page
 * throughput), short enough that a fault arriving meanwhile is not
 * noticeably delayed on a 2-vCPU guest. Grow x2 while below, halve above
 * twice this, drop to FS_BG_MIN_PAGES when faults are waiting (CRIU's
 * update_xfer_len() does the same dance).
 */
#define FS_BG_TARGET_NS 500000ull
#define FS_BG_YIELD_NS 2000000ull	/* longest wait for the fault thread to go idle */
#define FS_RETRY_MIN_US 100u		/* EAGAIN back-off, per fault */
#define FS_RETRY_MAX_US 10000u
#define FS_BG_IDLE_MIN_US 100u		/* back-off when a sweep made no progress */
#define FS_BG_IDLE_MAX_US 10000u
#define FS_STRAY_SLOTS 8

enum fs_op { FS_OP_COPY, FS_OP_CONTINUE, FS_OP_POISON };

enum fs_verdict {
	FS_V_DONE,	/* every page in place (installed or EEXIST) */
	FS_V_RETRY,	/* ioctl EAGAIN (mappings changing) or ENOMEM: later */
	FS_V_SRC_AGAIN,	/* the source said -EAGAIN */
	FS_V_UNREG,	/* ENOENT on a single page: not registered any more */
	FS_V_HOLE,	/* MINOR: no page-cache page */
	FS_V_EXITED,	/* ESRCH: the target's mm is gone */
	FS_V_FATAL,
};

enum fs_fstate { FS_F_WAIT, FS_F_READY, FS_F_STRAY, FS_F_DONE };

struct fs_region {
	uint64_t addr, size;
	uint32_t id;
	uint64_t g0, npages;
};

struct fs_seg {
	uint64_t start, end;	/* addresses in the target, [start, end) */
	uint64_t g;		/* global page at start */
	unsigned ridx;
};

/* A fault message read and not yet resolved (the fault thread's own). */
struct fs_fault {
	uint64_t addr;		/* page aligned */
	uint64_t t_read;
	uint64_t next_try;	/* EAGAIN back-off: not before this time */
	uint32_t backoff_us;
	bool solo;		/* retry alone (its multi-page run got -EAGAIN) */
	/* per serve pass */
	uint8_t state;
	int segi;
	uint64_t g;
};

struct fs_run {
	int segi;
	uint64_t g, n;
	size_t k0, k1;		/* its faults: ready[k0..k1) */
	uint64_t nfaulted;	/* distinct faulted pages in it */
	uint64_t span;		/* pages from g to its last faulted page */
};

struct ftr_fs {
	/* fixed at create */
	int uffd, stop_efd, pidfd;
	enum ftr_fs_mode mode;
	uint64_t ps;
	struct fs_region *regions;
	unsigned nregions;
	uint64_t total;
	const struct ftr_page_source_ops *ops;
	void *ctx;
	bool background, poison_on_error;
	unsigned max_chunk, prefault, run_max, bg_min;
	char *fbuf, *bbuf;		/* fault / background bounce buffers (MISSING) */
	size_t fbuf_len, bbuf_len;

	pthread_t fault_th, bg_th;
	bool fault_started, bg_started;

	atomic_bool stop_flag;		/* mirror of stopping, read without the lock */
	atomic_uint fault_busy;		/* the fault thread is handling messages */
	atomic_uint_fast64_t loop_seq;	/* odd while it is (see the top) */
	atomic_uint_fast64_t last_fault_g; /* background pivot */

	pthread_mutex_t lock;
	pthread_cond_t cv;		/* any state change; broadcast only */
	/* under lock */
	struct fs_seg *segs;
	unsigned nsegs, segs_cap;
	uint64_t layout_gen;		/* bumped by UNMAP/REMAP */
	uint64_t *settled, *busy_ft, *busy_bg, *resident, *gone;
	size_t maps_len;		/* one mapping holds the five maps */
	uint64_t n_need, n_resident, n_gone;
	bool started, stopping, joining, joined;
	bool bg_waiting;		/* the background waits for the fault thread */
	enum ftr_fs_state state;
	int error;
	char last_error[192];
	struct ftr_fs_stats st;		/* counters (the rest is computed) */
	uint64_t lat[FTR_FS_LAT_SAMPLES];
	unsigned lat_n, lat_pos;
	uint64_t bg_start_ns, bg_end_ns;
	uint64_t bg_grace_ns;		/* the fill's wait for the first fault */
	unsigned bg_chunk;

	/* fault thread only */
	struct fs_fault *pend;
	size_t npend, pend_cap;
	size_t *ready;
	struct fs_run *runs;
	uint64_t stray[FS_STRAY_SLOTS];
	unsigned stray_pos;
	struct uffd_msg msgs[FS_MSG_BATCH];
};

/* ---- small helpers --------------------------------------------------------------- */

const char *ftr_fs_state_name(enum ftr_fs_state st)
{
	switch (st) {
	case FTR_FS_CREATED:
		return "created";
	case FTR_FS_RUNNING:
		return "running";
	case FTR_FS_STOPPED:
		return "stopped";
	case FTR_FS_TARGET_EXITED:
		return "target-exited";
	case FTR_FS_FAILED:
		return "failed";
	}
	return "?";
}

static struct timespec fs_deadline_ns(uint64_t ns)
{
	uint64_t t = ftr_now_ns() + ns;
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000ull),
			       .tv_nsec = (long)(t % 1000000000ull) };
	return ts;
}

static void fs_efd_write(int fd)
{
	uint64_t one = 1;
	ssize_t r;

	do {
		r = write(fd, &one, sizeof(one));
	} while (r < 0 && errno == EINTR);
	/* EAGAIN: the counter is saturated, i.e. already readable. */
}

static void fs_wake(struct ftr_fs *fs, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = { .start = addr, .len = len };

	/* Nothing to do on failure: the only errors are a bad range (a bug
	 * caught elsewhere) or a target that has gone. */
	(void)ioctl(fs->uffd, UFFDIO_WAKE, &r);
}

static bool fs_uffd_readable(struct ftr_fs *fs)
{
	struct pollfd p = { .fd = fs->uffd, .events = POLLIN };

	return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* Any state change: wake everything that waits on cv. */
static void fs_broadcast(struct ftr_fs *fs)
{
	pthread_cond_broadcast(&fs->cv);
}

/* Stops both threads with a final state (first reason wins; errors after
 * a stop, an exit or another failure are ignored). Takes the lock. */
static bool fs_set_final(struct ftr_fs *fs, enum ftr_fs_state state, int err, const char *msg)
{
	pthread_mutex_lock(&fs->lock);
	if (fs->stopping) {
		pthread_mutex_unlock(&fs->lock);
		return false;
	}
	fs->stopping = true;
	atomic_store(&fs->stop_flag, true);
	fs->state = state;
	fs->error = err;
	ftr_strlcpy(fs->last_error, msg, sizeof(fs->last_error));
	fs_broadcast(fs);
	pthread_mutex_unlock(&fs->lock);
	fs_efd_write(fs->stop_efd);
	return true;
}

static void fs_poison_rest(struct ftr_fs *fs);

static void fs_fail(struct ftr_fs *fs, int err, const char *fmt, ...) FTR_PRINTF(3, 4);
static void fs_fail(struct ftr_fs *fs, int err, const char *fmt, ...)
{
	char msg[192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!fs_set_final(fs, FTR_FS_FAILED, err, msg))
		return;
	pr_err("%s", msg);
	if (fs->poison_on_error)
		fs_poison_rest(fs);
}

static void fs_target_exited(struct ftr_fs *fs, const char *how)
{
	char msg[192];

	snprintf(msg, sizeof(msg), "target exited (%s)", how);
	if (fs_set_final(fs, FTR_FS_TARGET_EXITED, 0, msg))
		pr_info("%s: stopped serving", msg);
}

/* ---- segments and bitmaps (under lock) --------------------------------------------- */

static uint64_t fs_seg_pages(const struct ftr_fs *fs, const struct fs_seg *s)
{
	return (s->end - s->start) / fs->ps;
}

/* The segment that holds addr, or -1. Segments are sorted by address. */
static int fs_seg_by_addr(const struct ftr_fs *fs, uint64_t addr)
{
	unsigned lo = 0, hi = fs->nsegs;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct fs_seg *s = &fs->segs[mid];

		if (addr < s->start)
			hi = mid;
		else if (addr >= s->end)
			lo = mid + 1;
		else
			return (int)mid;
	}
	return -1;
}

/* The segment that holds global page g, or -1 (a gone page). */
static int fs_seg_by_g(const struct ftr_fs *fs, uint64_t g)
{
	unsigned i;

	for (i = 0; i < fs->nsegs; i++) {
		const struct fs_seg *s = &fs->segs[i];

		if (g >= s->g && g < s->g + fs_seg_pages(fs, s))
			return (int)i;
	}
	return -1;
}

static uint64_t fs_seg_addr(const struct ftr_fs *fs, const struct fs_seg *s, uint64_t g)
{
	return s->start + (g - s->g) * fs->ps;
}

static bool fs_claimable(const struct ftr_fs *fs, uint64_t g)
{
	return !ftr_bit_test(fs->settled, g) && !ftr_bit_test(fs->busy_ft, g) &&
	       !ftr_bit_test(fs->busy_bg, g);
}

static uint64_t fs_claimable_word(const struct ftr_fs *fs, size_t w)
{
	return ~(fs->settled[w] | fs->busy_ft[w] | fs->busy_bg[w]);
}

/* First claimable page in [from, total), or UINT64_MAX. */
static uint64_t fs_next_claimable(const struct ftr_fs *fs, uint64_t from)
{
	size_t w, nw = ftr_bitmap_words(fs->total);
	uint64_t bits;

	if (from >= fs->total)
		return UINT64_MAX;
	w = from >> 6;
	bits = fs_claimable_word(fs, w) & (~0ull << (from & 63));
	for (;;) {
		if (bits) {
			uint64_t g = ((uint64_t)w << 6) + (uint64_t)__builtin_ctzll(bits);

			return g < fs->total ? g : UINT64_MAX;
		}
		if (++w >= nw)
			return UINT64_MAX;
		bits = fs_claimable_word(fs, w);
	}
}

/* Last claimable page in [0, before), or UINT64_MAX. */
static uint64_t fs_prev_claimable(const struct ftr_fs *fs, uint64_t before)
{
	size_t w;
	uint64_t bits;

	if (before == 0)
		return UINT64_MAX;
	if (before > fs->total)
		before = fs->total;
	w = (before - 1) >> 6;
	bits = fs_claimable_word(fs, w);
	if (((before - 1) & 63) != 63)
		bits &= (1ull << ((before - 1) & 63) << 1) - 1;
	for (;;) {
		if (bits)
			return ((uint64_t)w << 6) + 63 - (uint64_t)__builtin_clzll(bits);
		if (w == 0)
			return UINT64_MAX;
		w--;
		bits = fs_claimable_word(fs, w);
	}
}

static void fs_claim(uint64_t *busy, uint64_t g, uint64_t n)
{
	for (uint64_t p = g; p < g + n; p++)
		ftr_bit_set(busy, p);
}

static void fs_release(uint64_t *busy, uint64_t g, uint64_t n)
{
	for (uint64_t p = g; p < g + n; p++)
		ftr_bit_clear(busy, p);
}

/* Pages [g, g+n) are in place now. */
static void fs_mark_resident(struct ftr_fs *fs, uint64_t g, uint64_t n)
{
	bool had_need = fs->n_need != 0;

	for (uint64_t p = g; p < g + n; p++) {
		if (ftr_bit_test(fs->gone, p))
			continue;
		if (!ftr_bit_test(fs->resident, p)) {
			ftr_bit_set(fs->resident, p);
			fs->n_resident++;
		}
		if (!ftr_bit_test(fs->settled, p)) {
			ftr_bit_set(fs->settled, p);
			fs->n_need--;
		}
	}
	if (had_need && !fs->n_need)
		fs_broadcast(fs);
}

/* Page g needs no more work but is not resident (a MINOR hole, an
 * unregistered page). */
static void fs_mark_settled(struct ftr_fs *fs, uint64_t g, bool gone)
{
	if (!ftr_bit_test(fs->settled, g)) {
		ftr_bit_set(fs->settled, g);
		if (!--fs->n_need)
			fs_broadcast(fs);
	}
	if (gone && !ftr_bit_test(fs->gone, g)) {
		ftr_bit_set(fs->gone, g);
		fs->n_gone++;
		if (ftr_bit_test(fs->resident, g)) {
			ftr_bit_clear(fs->resident, g);
			fs->n_resident--;
		}
	}
}

static void fs_lat_add(struct ftr_fs *fs, uint64_t ns)
{
	fs->lat[fs->lat_pos] = ns;
	fs->lat_pos = (fs->lat_pos + 1) % FTR_FS_LAT_SAMPLES;
	if (fs->lat_n < FTR_FS_LAT_SAMPLES)
		fs->lat_n++;
}

/* ---- the one place for ioctl outcomes ---------------------------------------------- */

/*
 * Installs npages pages at addr in the target: UFFDIO_COPY from src,
 * UFFDIO_CONTINUE of the page cache, or UFFDIO_POISON. *done gets the
 * number of leading pages now in place (copied, continued or already
 * there); the verdict says why it stopped before npages. Each ioctl wakes
 * the threads faulting in what it installed.
 */
static enum fs_verdict fs_install(struct ftr_fs *fs, enum fs_op op, uint64_t addr,
				  const char *src, uint64_t npages, uint64_t *done,
				  uint64_t *eexist, int *err)
{
	const uint64_t ps = fs->ps;
	uint64_t off = 0, limit = UINT64_MAX;	/* ENOENT halving, in pages */

	*done = 0;
	*eexist = 0;
	*err = 0;
	while (off < npages) {
		uint64_t len = FTR_MIN(limit, npages - off) * ps;
		int64_t got;
		int rc, e;

		if (op == FS_OP_COPY) {
			struct uffdio_copy c = { .dst = addr + off * ps,
						 .src = (uint64_t)(uintptr_t)(src + off * ps),
						 .len = len };

			rc = ioctl(fs->uffd, UFFDIO_COPY, &c);
			got = c.copy;
		} else if (op == FS_OP_CONTINUE) {
			struct uffdio_continue c = { .range = { .start = addr + off * ps,
								.len = len } };

			rc = ioctl(fs->uffd, UFFDIO_CONTINUE, &c);
			got = c.mapped;
		} else {
			struct uffdio_poison c = { .range = { .start = addr + off * ps,
							      .len = len } };

			rc = ioctl(fs->uffd, UFFDIO_POISON, &c);
			got = c.updated;
		}
		if (rc == 0) {
			off += len / ps;
			limit = UINT64_MAX;
			continue;
		}
		e = errno;
		if (got >= (int64_t)ps) {	/* short: the rest is tried again */
			off += (uint64_t)got / ps;
			continue;
		}
		switch (e) {
		case EEXIST:
			fs_wake(fs, addr + off * ps, ps);
			(*eexist)++;
			off++;
			continue;
		case ENOENT:
			if (len > ps) {		/* maybe two vmas: halve */
				limit = len / ps / 2;
				continue;
			}
			*done = off;
			return FS_V_UNREG;
		case EAGAIN:
		case ENOMEM:
		case EINTR:
			*done = off;
			return FS_V_RETRY;
		case ESRCH:
			*done = off;
			return FS_V_EXITED;
		case EFAULT:
			if (op == FS_OP_CONTINUE) {
				*done = off;
				return FS_V_HOLE;
			}
			/* fall through */
		default:
			*done = off;
			*err = -e;
			return FS_V_FATAL;
		}
	}
	*done = npages;
	return FS_V_DONE;
}

/* MISSING: read the pages into buf; MINOR: prepare them. 0 or -errno. */
static int fs_fill(struct ftr_fs *fs, const struct fs_seg *s, uint64_t g, uint64_t n, char *buf)
{
	const struct fs_region *r = &fs->regions[s->ridx];

	if (fs->mode == FTR_FS_MISSING)
		return fs->ops->read(fs->ctx, r->id, g - r->g0, (uint32_t)n, buf);
	if (fs->ops->prepare)
		return fs->ops->prepare(fs->ctx, r->id, g - r->g0, (uint32_t)n);
	return 0;
}

static enum fs_op fs_fill_op(const struct ftr_fs *fs)
{
	return fs->mode == FTR_FS_MISSING ? FS_OP_COPY : FS_OP_CONTINUE;
}

static void fs_poison_rest(struct ftr_fs *fs)
{
	uint64_t poisoned = 0;
	unsigned i;

	pthread_mutex_lock(&fs->lock);
	for (i = 0; i < fs->nsegs; i++) {
		struct fs_seg s = fs->segs[i];
		uint64_t g = s.g, gend = s.g + fs_seg_pages(fs, &s);

		while (g < gend) {
			uint64_t n = 0, done, eexist;
			enum fs_verdict v;
			int err, tries = 0;

			if (ftr_bit_test(fs->resident, g)) {
				g++;
				continue;
			}
			while (g + n < gend && !ftr_bit_test(fs->resident, g + n))
				n++;
			pthread_mutex_unlock(&fs->lock);
			do {
				v = fs_install(fs, FS_OP_POISON, fs_seg_addr(fs, &s, g), NULL, n,
					       &done, &eexist, &err);
				if (v == FS_V_RETRY)
					usleep(100);
			} while (v == FS_V_RETRY && ++tries < 100);
			pthread_mutex_lock(&fs->lock);
			poisoned += done;
			if (v == FS_V_DONE || v == FS_V_UNREG) {
				g += done + (v == FS_V_UNREG);
				continue;
			}
			pthread_mutex_unlock(&fs->lock);
			pr_err("poisoning the pages not yet resident stopped at %#" PRIx64
			       ": %s (faulting threads may stay blocked)",
			       fs_seg_addr(fs, &s, g + done), err ? strerror(-err) : "target gone");
			return;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	pr_info("poisoned %" PRIu64 " pages not yet resident: accessing them raises SIGBUS",
		poisoned);
}

/* ---- events (fault thread, under lock) --------------------------------------------- */

static int fs_seg_reserve(struct ftr_fs *fs, unsigned more)
{
	struct fs_seg *n;
	unsigned cap;

	if (fs->nsegs + more <= fs->segs_cap)
		return 0;
	cap = FTR_MAX(fs->segs_cap * 2, fs->nsegs + more);
	n = realloc(fs->segs, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	fs->segs = n;
	fs->segs_cap = cap;
	return 0;
}

/* Makes addr a segment boundary (splits the segment that holds it). */
static int fs_seg_split(struct ftr_fs *fs, uint64_t addr)
{
	int i = fs_seg_by_addr(fs, addr);
	struct fs_seg *s;

	if (i < 0 || fs->segs[i].start == addr)
		return 0;
	if (fs_seg_reserve(fs, 1))
		return -ENOMEM;
	s = &fs->segs[i];
	memmove(s + 2, s + 1, (fs->nsegs - (unsigned)i - 1) * sizeof(*s));
	s[1] = (struct fs_seg){ .start = addr, .end = s->end, .ridx = s->ridx,
				.g = s->g + (addr - s->start) / fs->ps };
	s->end = addr;
	fs->nsegs++;
	return 0;
}

/* Drops every segment inside [start, end) (boundaries already split);
 * their pages are gone. */
static void fs_seg_drop(struct ftr_fs *fs, uint64_t start, uint64_t end)
{
	unsigned i = 0;

	while (i < fs->nsegs) {
		struct fs_seg *s = &fs->segs[i];

		if (s->start >= start && s->end <= end) {
			for (uint64_t g = s->g; g < s->g + fs_seg_pages(fs, s); g++)
				fs_mark_settled(fs, g, true);
			memmove(s, s + 1, (fs->nsegs - i - 1) * sizeof(*s));
			fs->nsegs--;
			continue;
		}
		i++;
	}
}

static int fs_seg_cmp(const void *a, const void *b)
{
	const struct fs_seg *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static uint64_t fs_align_down(const struct ftr_fs *fs, uint64_t a)
{
	return a & ~(fs->ps - 1);
}

static uint64_t fs_align_up(const struct ftr_fs *fs, uint64_t a)
{
	return (a + fs->ps - 1) & ~(fs->ps - 1);
}

static void fs_on_unmap(struct ftr_fs *fs, uint64_t start, uint64_t end)
{
	start = fs_align_down(fs, start);
	end = fs_align_up(fs, end);
	if (fs_seg_split(fs, start) || fs_seg_split(fs, end)) {
		pthread_mutex_unlock(&fs->lock);
		fs_fail(fs, -ENOMEM, "out of memory applying an unmap event");
		pthread_mutex_lock(&fs->lock);
		return;
	}
	fs_seg_drop(fs, start, end);
	fs->layout_gen++;
	fs->st.events_unmap++;
}

static void fs_on_remap(struct ftr_fs *fs, uint64_t from, uint64_t to, uint64_t len)
{
	uint64_t end = from + len;
	unsigned i;
	int ret;

	/* The destination first: MREMAP_FIXED over memory of ours replaced
	 * it (already dropped if the UNMAP event is enabled: it comes first). */
	ret = fs_seg_split(fs, to);

	if (!ret)
		ret = fs_seg_split(fs, to + len);
	if (!ret) {
		fs_seg_drop(fs, to, to + len);
		ret = fs_seg_split(fs, from);
	}
	if (!ret)
		ret = fs_seg_split(fs, end);
	if (ret) {
		pthread_mutex_unlock(&fs->lock);
		fs_fail(fs, -ENOMEM, "out of memory applying a remap event");
		pthread_mutex_lock(&fs->lock);
		return;
	}
	for (i = 0; i < fs->nsegs; i++) {
		struct fs_seg *s = &fs->segs[i];

		if (s->start >= from && s->end <= end) {
			s->start = s->start - from + to;
			s->end = s->end - from + to;
		}
	}
	qsort(fs->segs, fs->nsegs, sizeof(*fs->segs), fs_seg_cmp);
	fs->layout_gen++;
	fs->st.events_remap++;
}

/* madvise(DONTNEED/REMOVE): the pages must be installed again. */
static void fs_on_remove(struct ftr_fs *fs, uint64_t start, uint64_t end)
{
	bool was_done = fs->n_need == 0;
	unsigned i;

	start = fs_align_down(fs, start);
	end = fs_align_up(fs, end);
	for (i = 0; i < fs->nsegs; i++) {
		const struct fs_seg *s = &fs->segs[i];
		uint64_t a = FTR_MAX(start, s->start), b = FTR_MIN(end, s->end);

		for (; a < b; a += fs->ps) {
			uint64_t g = s->g + (a - s->start) / fs->ps;

			if (ftr_bit_test(fs->resident, g)) {
				ftr_bit_clear(fs->resident, g);
				fs->n_resident--;
			}
			if (ftr_bit_test(fs->settled, g)) {
				ftr_bit_clear(fs->settled, g);
				fs->n_need++;
			}
		}
	}
	fs->st.events_remove++;
	if (was_done && fs->n_need)
		fs_broadcast(fs);	/* the background has work again */
}

/* ---- the fault thread ---------------------------------------------------------------- */

static int fs_fault_cmp(const void *a, const void *b)
{
	const struct fs_fault *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int fs_pend_add(struct ftr_fs *fs, uint64_t addr, uint64_t now)
{
	if (fs->npend == fs->pend_cap) {
		size_t cap = fs->pend_cap ? fs->pend_cap * 2 : 64;
		struct fs_fault *p = realloc(fs->pend, cap * sizeof(*p));
		size_t *r;
		struct fs_run *ru;

		if (!p)
			return -ENOMEM;
		fs->pend = p;
		r = realloc(fs->ready, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		fs->ready = r;
		ru = realloc(fs->runs, cap * sizeof(*ru));
		if (!ru)
			return -ENOMEM;
		fs->runs = ru;
		fs->pend_cap = cap;
	}
	fs->pend[fs->npend++] = (struct fs_fault){ .addr = fs_align_down(fs, addr), .t_read = now };
	return 0;
}

/* A fault resolved (by an install, EEXIST or the background). Under lock. */
static void fs_fault_resolved(struct ftr_fs *fs, struct fs_fault *f, uint64_t now)
{
	f->state = FS_F_DONE;
	fs_lat_add(fs, now - f->t_read);
	if (!fs->st.first_fault_ns)
		fs->st.first_fault_ns = now;
}

static void fs_fault_backoff(struct fs_fault *f, uint64_t now)
{
	f->backoff_us = f->backoff_us ? FTR_MIN(f->backoff_us * 2, FS_RETRY_MAX_US)
				      : FS_RETRY_MIN_US;
	f->next_try = now + (uint64_t)f->backoff_us * 1000;
	f->state = FS_F_WAIT;
}

/*
 * Groups the ready faults (sorted by address) into runs of contiguous
 * pages of one segment: duplicates and neighbouring faults merge, and up to
 * prefault claimable pages after the last faulted page come along. Claims
 * every page of every run. Under lock; returns the number of runs.
 */
static size_t fs_build_runs(struct ftr_fs *fs, size_t nready)
{
	size_t k = 0, nruns = 0;

	while (k < nready) {
		struct fs_fault *f = &fs->pend[fs->ready[k]];
		const struct fs_seg *s = &fs->segs[f->segi];
		struct fs_run *r = &fs->runs[nruns++];
		uint64_t cap = FTR_MIN(s->g + fs_seg_pages(fs, s), f->g + fs->run_max);
		uint64_t last = f->g;
		bool solo = f->solo;

		*r = (struct fs_run){ .segi = f->segi, .g = f->g, .n = 1, .k0 = k, .nfaulted = 1 };
		for (k++;; k++) {
			struct fs_fault *nf = k < nready ? &fs->pend[fs->ready[k]] : NULL;
			uint64_t next = r->g + r->n;

			if (nf && nf->segi == r->segi && nf->g < next)
				continue;	/* another thread on a page of this run */
			if (solo || next >= cap)
				break;
			if (nf && nf->segi == r->segi && nf->g == next && !nf->solo) {
				r->n++;
				r->nfaulted++;
				last = next;
				continue;
			}
			if (next - last <= fs->prefault && fs_claimable(fs, next)) {
				r->n++;
				k--;	/* nf not consumed */
				continue;
			}
			break;
		}
		r->k1 = k;
		r->span = last - r->g + 1;
		fs_claim(fs->busy_ft, r->g, r->n);
	}
	return nruns;
}

/* Installs one run and settles its faults. Returns true when some of its
 * faults should be retried alone at once. */
static bool fs_serve_run(struct ftr_fs *fs, struct fs_run *r)
{
	const struct fs_seg s = fs->segs[r->segi];
	uint64_t addr = fs_seg_addr(fs, &s, r->g), done = 0, eexist = 0, now;
	enum fs_verdict v = FS_V_FATAL;
	bool again = false;
	int err = 0, rc;
	size_t k;

	rc = fs_fill(fs, &s, r->g, r->n, fs->fbuf);
	if (rc == FTR_FS_SRC_INSTALLED) {
		/* Mapped and woken by the source's own path: nothing to do
		 * but count, at the time the last page went in. */
		v = FS_V_DONE;
		done = r->n;
		now = fs->ops->installed_ns ? fs->ops->installed_ns(fs->ctx) : 0;
		if (!now)
			now = ftr_now_ns();
	} else if (rc == 0) {
		/* The faulted pages first, so their threads wake before the
		 * prefault tail is installed: one more ioctl, less latency. */
		uint64_t head = FTR_MIN(r->span, r->n);

		v = fs_install(fs, fs_fill_op(fs), addr, fs->fbuf, head, &done, &eexist, &err);
		now = ftr_now_ns();
		if (v == FS_V_DONE && done == head && head < r->n) {
			uint64_t done2 = 0, eexist2 = 0;

			v = fs_install(fs, fs_fill_op(fs), addr + head * fs->ps,
				       fs->fbuf ? fs->fbuf + head * fs->ps : NULL, r->n - head,
				       &done2, &eexist2, &err);
			done += done2;
			eexist += eexist2;
		}
	} else {
		if (rc == -EAGAIN)
			v = FS_V_SRC_AGAIN;
		else
			err = rc;
		now = ftr_now_ns();
	}

	pthread_mutex_lock(&fs->lock);
	if (rc == FTR_FS_SRC_INSTALLED) {
		fs_mark_resident(fs, r->g, done);
		fs->st.src_installed += done;
	} else if (done) {
		uint64_t faulted_done = 0, prev = UINT64_MAX;

		fs_mark_resident(fs, r->g, done);
		for (k = r->k0; k < r->k1; k++) {
			struct fs_fault *f = &fs->pend[fs->ready[k]];

			if (f->g < r->g + done && f->g != prev)
				faulted_done++;
			prev = f->g;
		}
		fs->st.pages_faulted += done;
		fs->st.pages_prefaulted += done - faulted_done;
	}
	fs->st.eexist += eexist;
	fs_release(fs->busy_ft, r->g, r->n);
	if (v == FS_V_SRC_AGAIN || v == FS_V_RETRY)
		fs->st.eagain_retries++;
	for (k = r->k0; k < r->k1; k++) {
		struct fs_fault *f = &fs->pend[fs->ready[k]];

		if (f->g < r->g + done) {
			fs_fault_resolved(fs, f, now);
			continue;
		}
		switch (v) {
		case FS_V_SRC_AGAIN:
			if (r->n > 1 && !f->solo) {
				f->solo = true;
				f->next_try = 0;
				again = true;
			} else {
				fs_fault_backoff(f, now);
			}
			break;
		case FS_V_RETRY:
			fs_fault_backoff(f, now);
			break;
		case FS_V_UNREG:
			/* Not registered any more (unmapped or moved before we
			 * read the event): wake it; the access is retried against
			 * the new layout and faults again if still ours. */
			fs_wake(fs, f->addr, fs->ps);
			fs->st.stray_faults++;
			f->state = FS_F_DONE;
			break;
		default:
			break;	/* stopping: left blocked (see the liveness contract) */
		}
	}
	pthread_mutex_unlock(&fs->lock);

	switch (v) {
	case FS_V_DONE:
	case FS_V_SRC_AGAIN:
	case FS_V_RETRY:
	case FS_V_UNREG:
		break;
	case FS_V_EXITED:
		fs_target_exited(fs, "ESRCH from an install");
		break;
	case FS_V_HOLE:
		fs_fail(fs, -EFAULT, "UFFDIO_CONTINUE at %#" PRIx64 ": no page-cache page "
			"(prepare() did not provide region %u page %" PRIu64 ")",
			addr + done * fs->ps, fs->regions[s.ridx].id,
			r->g + done - fs->regions[s.ridx].g0);
		break;
	case FS_V_FATAL:
		if (rc)
			fs_fail(fs, err, "source %s of region %u pages %" PRIu64 "+%" PRIu64
				" failed: %s", fs->mode == FTR_FS_MISSING ? "read" : "prepare",
				fs->regions[s.ridx].id, r->g - fs->regions[s.ridx].g0, r->n,
				strerror(-err));
		else
			fs_fail(fs, err, "%s at %#" PRIx64 " failed: %s",
				fs->mode == FTR_FS_MISSING ? "UFFDIO_COPY" : "UFFDIO_CONTINUE",
				addr + done * fs->ps, strerror(-err));
		break;
	}
	return again;
}

/* A fault on no segment of ours: wake it once (it was unmapped or moved);
 * the same address again means a registered range we were not told about,
 * which we cannot serve: fatal rather than a thread blocked forever. */
static void fs_serve_stray(struct ftr_fs *fs, struct fs_fault *f)
{
	unsigned i;

	for (i = 0; i < FS_STRAY_SLOTS; i++) {
		if (fs->stray[i] == f->addr + 1) {
			fs_fail(fs, -EFAULT, "fault at %#" PRIx64 " outside every region "
				"(registered range not given to the server?)", f->addr);
			return;
		}
	}
	fs->stray[fs->stray_pos] = f->addr + 1;	/* +1: 0 is an empty slot */
	fs->stray_pos = (fs->stray_pos + 1) % FS_STRAY_SLOTS;
	fs_wake(fs, f->addr, fs->ps);
	pthread_mutex_lock(&fs->lock);
	fs->st.stray_faults++;
	f->state = FS_F_DONE;
	pthread_mutex_unlock(&fs->lock);
}

/* One pass over the pending faults. Returns true if another pass is due
 * at once (faults to retry alone). */
static bool fs_serve_pass(struct ftr_fs *fs)
{
	uint64_t now = ftr_now_ns();
	size_t i, nready = 0, nruns;
	bool again = false;

	qsort(fs->pend, fs->npend, sizeof(*fs->pend), fs_fault_cmp);
	pthread_mutex_lock(&fs->lock);
	for (i = 0; i < fs->npend; i++) {
		struct fs_fault *f = &fs->pend[i];

		f->segi = fs_seg_by_addr(fs, f->addr);
		if (f->segi < 0) {
			f->state = FS_F_STRAY;
			continue;
		}
		f->g = fs->segs[f->segi].g + (f->addr - fs->segs[f->segi].start) / fs->ps;
		if (f->next_try > now) {
			f->state = FS_F_WAIT;
		} else {
			f->state = FS_F_READY;
			fs->ready[nready++] = i;
		}
	}
	nruns = nready ? fs_build_runs(fs, nready) : 0;
	pthread_mutex_unlock(&fs->lock);

	for (i = 0; i < fs->npend && !atomic_load(&fs->stop_flag); i++) {
		if (fs->pend[i].state == FS_F_STRAY)
			fs_serve_stray(fs, &fs->pend[i]);
	}
	for (i = 0; i < nruns; i++) {
		if (atomic_load(&fs->stop_flag)) {
			/* release the claims of the runs left */
			pthread_mutex_lock(&fs->lock);
			for (; i < nruns; i++)
				fs_release(fs->busy_ft, fs->runs[i].g, fs->runs[i].n);
			pthread_mutex_unlock(&fs->lock);
			break;
		}
		if (fs_serve_run(fs, &fs->runs[i]))
			again = true;
	}
	return again;
}

static void fs_serve(struct ftr_fs *fs)
{
	bool again;

	do {
		size_t i, j = 0;

		again = fs->npend ? fs_serve_pass(fs) : false;
		for (i = 0; i < fs->npend; i++) {
			if (fs->pend[i].state != FS_F_DONE)
				fs->pend[j++] = fs->pend[i];
		}
		fs->npend = j;
	} while (again && !atomic_load(&fs->stop_flag));
	pthread_mutex_lock(&fs->lock);
	fs->st.faults_pending = fs->npend;
	pthread_mutex_unlock(&fs->lock);
}

/* How long the fault thread may sleep in poll, in ns (-1: until an fd). */
static int64_t fs_poll_wait_ns(struct ftr_fs *fs)
{
	uint64_t now = ftr_now_ns(), first = UINT64_MAX;
	size_t i;

	for (i = 0; i < fs->npend; i++) {
		first = FTR_MIN(first, fs->pend[i].next_try);
	}
	if (first == UINT64_MAX)
		return -1;
	return first > now ? (int64_t)(first - now) : 0;
}

static void fs_handle_msgs(struct ftr_fs *fs, size_t nmsgs, uint64_t now)
{
	uint64_t last_addr = UINT64_MAX;
	size_t i;

	pthread_mutex_lock(&fs->lock);
	for (i = 0; i < nmsgs; i++) {
		const struct uffd_msg *m = &fs->msgs[i];

		switch (m->event) {
		case UFFD_EVENT_PAGEFAULT:
			fs->st.faults++;
			if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
				pthread_mutex_unlock(&fs->lock);
				fs_fail(fs, -EINVAL, "write-protect fault at %#llx: not served "
					"by this server",
					(unsigned long long)m->arg.pagefault.address);
				return;
			}
			if (fs_pend_add(fs, m->arg.pagefault.address, now)) {
				pthread_mutex_unlock(&fs->lock);
				fs_fail(fs, -ENOMEM, "out of memory queueing a fault");
				return;
			}
			last_addr = fs_align_down(fs, m->arg.pagefault.address);
			break;
		case UFFD_EVENT_REMOVE:
			fs_on_remove(fs, m->arg.remove.start, m->arg.remove.end);
			break;
		case UFFD_EVENT_UNMAP:
			fs_on_unmap(fs, m->arg.remove.start, m->arg.remove.end);
			break;
		case UFFD_EVENT_REMAP:
			fs_on_remap(fs, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
			break;
		case UFFD_EVENT_FORK:
			/* read() installed the child's uffd in our fd table. */
			close((int)m->arg.fork.ufd);
			fs->st.events_fork++;
			break;
		default:
			break;
		}
	}
	/* The background pivots around the most recent fault. */
	if (last_addr != UINT64_MAX) {
		int si = fs_seg_by_addr(fs, last_addr);

		if (si >= 0)
			atomic_store(&fs->last_fault_g,
				     fs->segs[si].g + (last_addr - fs->segs[si].start) / fs->ps);
	}
	pthread_mutex_unlock(&fs->lock);
}

/* Reads and handles every queued message, serving faults after each batch. */
static void fs_fault_iteration(struct ftr_fs *fs)
{
	unsigned round;

	atomic_fetch_add(&fs->loop_seq, 1);	/* odd: reading */
	atomic_store(&fs->fault_busy, 1);
	for (round = 0; round < FS_READS_PER_ITER && !atomic_load(&fs->stop_flag); round++) {
		ssize_t r = read(fs->uffd, fs->msgs, sizeof(fs->msgs));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				fs_fail(fs, -errno, "read from the uffd: %s", strerror(errno));
			break;
		}
		if (r == 0 || (size_t)r % sizeof(struct uffd_msg)) {
			fs_fail(fs, -EIO, "read from the uffd returned %zd bytes", r);
			break;
		}
		fs_handle_msgs(fs, (size_t)r / sizeof(struct uffd_msg), ftr_now_ns());
		fs_serve(fs);
	}
	if (!atomic_load(&fs->stop_flag))
		fs_serve(fs);	/* deferred faults whose time came */
	atomic_fetch_add(&fs->loop_seq, 1);	/* even: idle */
	atomic_store(&fs->fault_busy, 0);
	pthread_mutex_lock(&fs->lock);
	if (fs->bg_waiting)
		fs_broadcast(fs);
	pthread_mutex_unlock(&fs->lock);
}

static void *fs_fault_main(void *arg)
{
	struct ftr_fs *fs = arg;
	enum { P_UFFD, P_STOP, P_PID };
	struct pollfd pfd[3] = {
		[P_UFFD] = { .fd = fs->uffd, .events = POLLIN },
		[P_STOP] = { .fd = fs->stop_efd, .events = POLLIN },
		[P_PID] = { .fd = fs->pidfd, .events = POLLIN },
	};
	nfds_t nfds = fs->pidfd >= 0 ? 3 : 2;

	ftr_thread_name("ftr-fs-fault");

	while (!atomic_load(&fs->stop_flag)) {
		int64_t wait = fs_poll_wait_ns(fs);
		struct timespec ts;
		int n;

		if (wait < 0 || wait > (int64_t)FS_POLL_MS * 1000000)
			wait = (int64_t)FS_POLL_MS * 1000000;
		ts.tv_sec = wait / 1000000000;
		ts.tv_nsec = wait % 1000000000;
		n = ppoll(pfd, nfds, &ts, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fs_fail(fs, -errno, "poll: %s", strerror(errno));
			break;
		}
		if (pfd[P_STOP].revents)
			break;
		if (nfds > P_PID && pfd[P_PID].revents) {
			fs_target_exited(fs, "pidfd");
			break;
		}
		if (pfd[P_UFFD].revents & (POLLERR | POLLNVAL)) {
			fs_fail(fs, -EIO, "poll on the uffd reports an error (not a uffd, or "
				"UFFDIO_API not done?)");
			break;
		}
		fs_fault_iteration(fs);
	}
	return NULL;
}

/* ---- the background thread ----------------------------------------------------------- */

struct fs_bg {
	uint64_t pivot, fwd, bwd;
	bool back;
	uint64_t retry_g;		/* UINT64_MAX or a page to retry alone */
	uint64_t enoent_g, enoent_gen;	/* the last ENOENT and the layout then */
	uint64_t gone_next;		/* page after the last one found gone */
	uint64_t sweep_pages;		/* installed since the last sweep restart */
	unsigned idle_us;
};

/* Picks and claims the next run, outwards from the pivot. Under lock.
 * Returns false when nothing is claimable from the cursors. */
static bool fs_bg_pick(struct ftr_fs *fs, struct fs_bg *b, uint64_t *g, uint64_t *n, int *segi)
{
	uint64_t x, chunk = fs->bg_chunk;
	int i;

	if (b->retry_g != UINT64_MAX) {
		x = b->retry_g;
		b->retry_g = UINT64_MAX;
		if (x < fs->total && fs_claimable(fs, x) && (i = fs_seg_by_g(fs, x)) >= 0) {
			*g = x;
			*n = 1;
			*segi = i;
			fs_claim(fs->busy_bg, x, 1);
			return true;
		}
	}
	for (int tries = 0; tries < 2; tries++, b->back = !b->back) {
		const struct fs_seg *s;

		x = b->back ? fs_prev_claimable(fs, b->bwd) : fs_next_claimable(fs, b->fwd);
		if (x == UINT64_MAX)
			continue;
		i = fs_seg_by_g(fs, x);
		if (i < 0) {	/* needed but on no segment: cannot happen; settle it */
			fs_mark_settled(fs, x, true);
			return fs_bg_pick(fs, b, g, n, segi);
		}
		s = &fs->segs[i];
		if (b->back) {
			uint64_t lo = x + 1 > chunk ? x + 1 - chunk : 0, st = x;

			lo = FTR_MAX(lo, s->g);
			while (st > lo && fs_claimable(fs, st - 1))
				st--;
			*g = st;
			*n = x + 1 - st;
			b->bwd = st;
		} else {
			uint64_t hi = FTR_MIN(x + chunk, s->g + fs_seg_pages(fs, s)), e = x + 1;

			while (e < hi && fs_claimable(fs, e))
				e++;
			*g = x;
			*n = e - x;
			b->fwd = e;
		}
		*segi = i;
		b->back = !b->back;	/* alternate: outwards on both sides */
		fs_claim(fs->busy_bg, *g, *n);
		return true;
	}
	return false;
}

/* The background thread's wait on fs->cv, at most ns; the fault thread
 * broadcasts at the end of each of its rounds while bg_waiting is set.
 * Under lock. */
static void fs_bg_wait(struct ftr_fs *fs, uint64_t ns)
{
	struct timespec ts = fs_deadline_ns(ns);

	fs->bg_waiting = true;
	pthread_cond_timedwait(&fs->cv, &fs->lock, &ts);
	fs->bg_waiting = false;
}

/* Waits (bounded) while the fault thread has work. Called without lock. */
static bool fs_bg_yield(struct ftr_fs *fs)
{
	uint64_t until;

	if (!atomic_load(&fs->fault_busy) && !fs_uffd_readable(fs))
		return false;
	until = ftr_now_ns() + FS_BG_YIELD_NS;
	pthread_mutex_lock(&fs->lock);
	fs->bg_chunk = fs->bg_min;
	while (!fs->stopping && ftr_now_ns() < until) {
		if (!atomic_load(&fs->fault_busy)) {
			bool readable;

			pthread_mutex_unlock(&fs->lock);
			readable = fs_uffd_readable(fs);
			pthread_mutex_lock(&fs->lock);
			if (!readable)
				break;
		}
		fs_bg_wait(fs, 200000);
	}
	pthread_mutex_unlock(&fs->lock);
	return true;
}

/* After an ENOENT: let the fault thread finish applying what it read. */
static void fs_bg_wait_events(struct ftr_fs *fs)
{
	uint64_t seq = atomic_load(&fs->loop_seq), until = ftr_now_ns() + 100000000ull;

	if (!(seq & 1))
		return;
	pthread_mutex_lock(&fs->lock);
	while (!fs->stopping && atomic_load(&fs->loop_seq) == seq && ftr_now_ns() < until)
		fs_bg_wait(fs, 1000000);
	pthread_mutex_unlock(&fs->lock);
}

static void fs_bg_adapt(struct ftr_fs *fs, uint64_t n, uint64_t dt)
{
	if (n == fs->bg_chunk && dt < FS_BG_TARGET_NS)
		fs->bg_chunk = FTR_MIN(fs->bg_chunk * 2, fs->max_chunk);
	else if (dt > 2 * FS_BG_TARGET_NS)
		fs->bg_chunk = FTR_MAX(fs->bg_chunk / 2, fs->bg_min);
}

/* Installs one claimed run; settles pages and handles the verdict. Called
 * and returns with the lock held. */
static void fs_bg_run(struct ftr_fs *fs, struct fs_bg *b, uint64_t g, uint64_t n, int segi)
{
	const struct fs_seg s = fs->segs[segi];
	const struct fs_region *reg = &fs->regions[s.ridx];
	uint64_t addr = fs_seg_addr(fs, &s, g), lgen = fs->layout_gen;
	uint64_t done = 0, eexist = 0, t0, dt;
	enum fs_verdict v = FS_V_FATAL;
	int err = 0, rc;

	pthread_mutex_unlock(&fs->lock);
	t0 = ftr_now_ns();
	rc = fs_fill(fs, &s, g, n, fs->bbuf);
	if (rc == FTR_FS_SRC_INSTALLED) {
		v = FS_V_DONE;
		done = n;
	} else if (rc == 0)
		v = fs_install(fs, fs_fill_op(fs), addr, fs->bbuf, n, &done, &eexist, &err);
	else if (rc == -EAGAIN)
		v = FS_V_SRC_AGAIN;
	else
		err = rc;
	dt = ftr_now_ns() - t0;
	pthread_mutex_lock(&fs->lock);

	fs_mark_resident(fs, g, done);
	if (rc == FTR_FS_SRC_INSTALLED)
		fs->st.src_installed += n;
	else
		fs->st.pages_background += done;
	fs->st.eexist += eexist;
	b->sweep_pages += done;
	fs_release(fs->busy_bg, g, n);
	if (v == FS_V_DONE)
		fs_bg_adapt(fs, n, dt);
	switch (v) {
	case FS_V_DONE:
		break;
	case FS_V_SRC_AGAIN:
		/* Some page of the chunk is not available yet: go on in single
		 * pages for a while (the chunk grows back while all is well). */
		fs->st.eagain_retries++;
		fs->bg_chunk = 1;
		break;
	case FS_V_RETRY:
		fs->st.eagain_retries++;
		b->retry_g = g + done;
		pthread_mutex_unlock(&fs->lock);
		usleep(FS_RETRY_MIN_US);	/* an event is on its way */
		pthread_mutex_lock(&fs->lock);
		break;
	case FS_V_HOLE:
		fs_mark_settled(fs, g + done, false);
		break;
	case FS_V_UNREG:
		pthread_mutex_unlock(&fs->lock);
		fs_bg_wait_events(fs);
		pthread_mutex_lock(&fs->lock);
		if (fs->layout_gen != lgen)
			break;		/* moved or dropped: picked again where it is now */
		/* Single pages while in what may be a hole in the layout:
		 * each costs a source read before its ioctl fails. */
		fs->bg_chunk = 1;
		if ((b->enoent_g == g + done || b->gone_next == g + done) &&
		    b->enoent_gen == lgen) {
			/* Twice with the same layout, or right after a page found
			 * gone so: the target unmapped it without an UNMAP event
			 * (not enabled). */
			fs_mark_settled(fs, g + done, true);
			b->gone_next = g + done + 1;
			b->retry_g = b->gone_next;
			break;
		}
		b->enoent_g = g + done;
		b->enoent_gen = lgen;
		b->retry_g = g + done;
		break;
	case FS_V_EXITED:
		pthread_mutex_unlock(&fs->lock);
		fs_target_exited(fs, "ESRCH from a background install");
		pthread_mutex_lock(&fs->lock);
		break;
	case FS_V_FATAL:
		pthread_mutex_unlock(&fs->lock);
		if (rc)
			fs_fail(fs, err, "source %s of region %u pages %" PRIu64 "+%" PRIu64
				" failed: %s", fs->mode == FTR_FS_MISSING ? "read" : "prepare",
				reg->id, g - reg->g0, n, strerror(-err));
		else
			fs_fail(fs, err, "%s at %#" PRIx64 " failed: %s",
				fs->mode == FTR_FS_MISSING ? "UFFDIO_COPY" : "UFFDIO_CONTINUE",
				addr + done * fs->ps, strerror(-err));
		pthread_mutex_lock(&fs->lock);
		break;
	}
}

static void *fs_bg_main(void *arg)
{
	struct ftr_fs *fs = arg;
	struct fs_bg b = { .pivot = UINT64_MAX, .retry_g = UINT64_MAX, .enoent_g = UINT64_MAX,
			   .gone_next = UINT64_MAX };
	uint64_t grace_end;

	ftr_thread_name("ftr-fs-bg");

	/* Faults first: on a busy machine the fill must not take the CPU
	 * from the fault thread or from the resumed workload. */
	ftr_thread_background();

	pthread_mutex_lock(&fs->lock);
	/* Faults first from the start, too: the workload resuming now takes
	 * its first faults within a millisecond or so, and a fill running
	 * meanwhile would hold the CPU its wake-up lands on (a nice +10
	 * thread keeps a CPU for its whole slice once running, ~1 ms here).
	 * So the fill waits until the first fault is served (its page is
	 * then the pivot) or the grace (bg_grace_ms) has passed. */
	grace_end = ftr_now_ns() + fs->bg_grace_ns;
	while (!fs->stopping && (!fs->st.faults || atomic_load(&fs->fault_busy)) &&
	       ftr_now_ns() < grace_end)
		fs_bg_wait(fs, 1000000);
	fs->bg_start_ns = ftr_now_ns();
	while (!fs->stopping) {
		uint64_t g, n, p;
		int segi;

		if (!fs->n_need) {
			if (!fs->bg_end_ns)
				fs->bg_end_ns = ftr_now_ns();
			pthread_cond_wait(&fs->cv, &fs->lock);
			continue;
		}
		p = atomic_load(&fs->last_fault_g);
		if (p != b.pivot) {
			b.pivot = p;
			b.fwd = b.bwd = p;
		}
		if (!fs_bg_pick(fs, &b, &g, &n, &segi)) {
			/* Cursors exhausted: sweep again from the pivot. A sweep
			 * that installed nothing (pages the source keeps saying
			 * -EAGAIN for, or all claimed by the fault thread) backs
			 * off before the next. */
			b.fwd = b.bwd = b.pivot == UINT64_MAX ? 0 : b.pivot;
			if (b.sweep_pages) {
				b.idle_us = 0;
			} else {
				struct timespec ts;

				b.idle_us = b.idle_us ? FTR_MIN(b.idle_us * 2, FS_BG_IDLE_MAX_US)
						      : FS_BG_IDLE_MIN_US;
				ts = fs_deadline_ns((uint64_t)b.idle_us * 1000);
				pthread_cond_timedwait(&fs->cv, &fs->lock, &ts);
			}
			b.sweep_pages = 0;
			continue;
		}
		fs_bg_run(fs, &b, g, n, segi);
		if (fs->stopping)
			break;
		pthread_mutex_unlock(&fs->lock);
		fs_bg_yield(fs);	/* faults first */
		pthread_mutex_lock(&fs->lock);
	}
	if (!fs->bg_end_ns)
		fs->bg_end_ns = ftr_now_ns();
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

/* ---- public API ---------------------------------------------------------------------- */

static int fs_reg_addr_cmp(const void *a, const void *b)
{
	const struct fs_region *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int fs_check_opts(const struct ftr_fs_opts *o, char *err, size_t errlen)
{
	uint64_t ps = o->page_size;
	unsigned i;

#define FS_BAD(...)                                          \
	do {                                                 \
		if (errlen)                                  \
			snprintf(err, errlen, __VA_ARGS__);  \
		return -EINVAL;                              \
	} while (0)
	if (o->uffd < 0)
		FS_BAD("no uffd");
	if (o->mode != FTR_FS_MISSING && o->mode != FTR_FS_MINOR)
		FS_BAD("unknown mode %d", (int)o->mode);
	if (ps < 4096 || (ps & (ps - 1)))
		FS_BAD("page size %" PRIu64 " is not a power of two >= 4096", ps);
	if (!o->regions || !o->nregions)
		FS_BAD("no region");
	if (!o->ops || (o->mode == FTR_FS_MISSING && !o->ops->read))
		FS_BAD("MISSING mode needs a source with read()");
	if (o->prefault_pages > FTR_FS_PREFAULT_MAX)
		FS_BAD("prefault window %u pages is over the maximum %u", o->prefault_pages,
		       FTR_FS_PREFAULT_MAX);
	if (o->bg_grace_ms > FTR_FS_BG_GRACE_MAX_MS)
		FS_BAD("background grace %u ms is over the maximum %u ms", o->bg_grace_ms,
		       FTR_FS_BG_GRACE_MAX_MS);
	for (i = 0; i < o->nregions; i++) {
		const struct ftr_fs_region *r = &o->regions[i];

		if (!r->size || (r->addr | r->size) & (ps - 1))
			FS_BAD("region %u (id %u): address %#" PRIx64 " and size %" PRIu64
			       " must be non-zero multiples of the page size", i, r->id, r->addr,
			       r->size);
		if (r->addr + r->size < r->addr)
			FS_BAD("region %u (id %u) wraps around the address space", i, r->id);
	}
#undef FS_BAD
	return 0;
}

static void *fs_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int ftr_fs_create(const struct ftr_fs_opts *o, struct ftr_fs **out, char *err, size_t errlen)
{
	struct ftr_fs *fs;
	struct fs_region *sorted = NULL;
	size_t words;
	unsigned i;
	int ret, fl;

	*out = NULL;
	if (errlen)
		err[0] = '\0';
	ret = fs_check_opts(o, err, errlen);
	if (ret)
		return ret;

	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->uffd = fs->stop_efd = fs->pidfd = -1;
	fs->mode = o->mode;
	fs->ps = o->page_size;
	fs->ops = o->ops;
	fs->ctx = o->ctx;
	fs->background = o->background;
	fs->poison_on_error = o->poison_on_error;
	fs->prefault = o->prefault_pages;
	fs->bg_grace_ns = (uint64_t)(o->bg_grace_ms ? o->bg_grace_ms : FTR_FS_BG_GRACE_DEFAULT_MS) *
			  1000000ull;
	fs->max_chunk = o->max_chunk_pages
				? o->max_chunk_pages
				: (unsigned)FTR_MAX(1, FTR_FS_CHUNK_DEFAULT_BYTES / fs->ps);
	fs->max_chunk = (unsigned)FTR_MIN(fs->max_chunk, FTR_MAX(1, FS_BG_MAX_BYTES / fs->ps));
	fs->bg_min = FTR_MIN(FS_BG_MIN_PAGES, fs->max_chunk);
	fs->bg_chunk = fs->bg_min;
	fs->run_max = (unsigned)FTR_MAX(fs->prefault + 1, FS_FAULT_RUN_BYTES / fs->ps);
	fs->state = FTR_FS_CREATED;
	atomic_init(&fs->stop_flag, false);
	atomic_init(&fs->fault_busy, 0);
	atomic_init(&fs->loop_seq, 0);
	atomic_init(&fs->last_fault_g, 0);

	ret = -ENOMEM;
	fs->nregions = o->nregions;
	fs->regions = calloc(o->nregions, sizeof(*fs->regions));
	sorted = calloc(o->nregions, sizeof(*sorted));
	if (!fs->regions || !sorted)
		goto out_free;
	for (i = 0; i < o->nregions; i++) {
		fs->regions[i] = (struct fs_region){ .addr = o->regions[i].addr,
						     .size = o->regions[i].size,
						     .id = o->regions[i].id,
						     .g0 = fs->total,
						     .npages = o->regions[i].size / fs->ps };
		fs->total += fs->regions[i].npages;
	}
	memcpy(sorted, fs->regions, o->nregions * sizeof(*sorted));
	qsort(sorted, o->nregions, sizeof(*sorted), fs_reg_addr_cmp);
	for (i = 1; i < o->nregions; i++) {
		if (sorted[i - 1].addr + sorted[i - 1].size > sorted[i].addr) {
			if (errlen)
				snprintf(err, errlen, "regions %u and %u overlap", sorted[i - 1].id,
					 sorted[i].id);
			ret = -EINVAL;
			goto out_free;
		}
	}
	fs->segs_cap = o->nregions;
	fs->segs = calloc(fs->segs_cap, sizeof(*fs->segs));
	if (!fs->segs)
		goto out_free;
	for (i = 0; i < o->nregions; i++) {
		unsigned ridx;

		/* sorted[i] is a copy: find its index in the given order by g0 */
		for (ridx = 0; fs->regions[ridx].g0 != sorted[i].g0; ridx++)
			;
		fs->segs[i] = (struct fs_seg){ .start = sorted[i].addr,
					       .end = sorted[i].addr + sorted[i].size,
					       .g = sorted[i].g0, .ridx = ridx };
	}
	fs->nsegs = o->nregions;

	words = ftr_bitmap_words(fs->total);
	/* The five page maps share one anonymous mapping. Every page is needed
	 * (none settled), so they start as the kernel hands them out: zero
	 * pages, touched only where the server works. Setting up costs no
	 * time per page and resume latency does not grow with the cache. */
	fs->maps_len = 5 * words * sizeof(uint64_t);
	fs->settled = fs_map(fs->maps_len);
	if (!fs->settled)
		goto out_free;
	fs->busy_ft = fs->settled + words;
	fs->busy_bg = fs->busy_ft + words;
	fs->resident = fs->busy_bg + words;
	fs->gone = fs->resident + words;
	fs->n_need = fs->total;

	if (fs->mode == FTR_FS_MISSING) {
		fs->fbuf_len = (size_t)fs->run_max * fs->ps;
		fs->fbuf = fs_map(fs->fbuf_len);
		if (!fs->fbuf)
			goto out_free;
		if (fs->background) {
			fs->bbuf_len = (size_t)fs->max_chunk * fs->ps;
			fs->bbuf = fs_map(fs->bbuf_len);
			if (!fs->bbuf)
				goto out_free;
		}
	}

	ret = pthread_mutex_init(&fs->lock, NULL);
	if (ret) {
		ret = -ret;
		goto out_free;
	}
	ret = ftr_cond_init_monotonic(&fs->cv);
	if (ret)
		goto out_mutex;

	fs->uffd = fcntl(o->uffd, F_DUPFD_CLOEXEC, 3);
	if (fs->uffd < 0) {
		ret = -errno;
		if (errlen)
			snprintf(err, errlen, "dup of uffd %d: %s", o->uffd, strerror(errno));
		goto out_cond;
	}
	fl = fcntl(fs->uffd, F_GETFL);
	if (fl < 0 || fcntl(fs->uffd, F_SETFL, fl | O_NONBLOCK) < 0) {
		ret = -errno;
		goto out_close;
	}
	if (o->target_pidfd > 0) {
		fs->pidfd = fcntl(o->target_pidfd, F_DUPFD_CLOEXEC, 3);
		if (fs->pidfd < 0) {
			ret = -errno;
			goto out_close;
		}
	}
	fs->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fs->stop_efd < 0) {
		ret = -errno;
		goto out_close;
	}
	free(sorted);
	*out = fs;
	return 0;

out_close:
	if (fs->stop_efd >= 0)
		close(fs->stop_efd);
	if (fs->pidfd >= 0)
		close(fs->pidfd);
	close(fs->uffd);
out_cond:
	pthread_cond_destroy(&fs->cv);
out_mutex:
	pthread_mutex_destroy(&fs->lock);
out_free:
	if (fs->fbuf)
		munmap(fs->fbuf, fs->fbuf_len);
	if (fs->bbuf)
		munmap(fs->bbuf, fs->bbuf_len);
	if (fs->settled)
		munmap(fs->settled, fs->maps_len);
	free(fs->segs);
	free(fs->regions);
	free(sorted);
	free(fs);
	if (ret == -ENOMEM && errlen && !err[0])
		snprintf(err, errlen, "out of memory");
	return ret;
}

int ftr_fs_start(struct ftr_fs *fs)
{
	sigset_t all, old;
	int ret;

	pthread_mutex_lock(&fs->lock);
	if (fs->started || fs->stopping) {
		pthread_mutex_unlock(&fs->lock);
		return -EALREADY;
	}
	fs->started = true;
	fs->state = FTR_FS_RUNNING;
	pthread_mutex_unlock(&fs->lock);

	/* The server threads take no signal: they stop through the eventfd. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&fs->fault_th, NULL, fs_fault_main, fs);
	if (!ret) {
		fs->fault_started = true;
		if (fs->background) {
			ret = pthread_create(&fs->bg_th, NULL, fs_bg_main, fs);
			if (!ret)
				fs->bg_started = true;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		fs_fail(fs, -ret, "cannot start a server thread: %s", strerror(ret));
		ftr_fs_stop(fs);
		return -ret;
	}
	pr_info("serving %u region(s), %" PRIu64 " pages of %" PRIu64 " bytes, %s mode%s",
		fs->nregions, fs->total, fs->ps, fs->mode == FTR_FS_MISSING ? "MISSING" : "MINOR",
		fs->background ? ", background push" : "");
	return 0;
}

void ftr_fs_stop(struct ftr_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	if (fs->joining) {
		while (!fs->joined)
			pthread_cond_wait(&fs->cv, &fs->lock);
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	fs->joining = true;
	if (!fs->stopping) {
		fs->stopping = true;
		atomic_store(&fs->stop_flag, true);
		fs->state = FTR_FS_STOPPED;
	}
	fs_broadcast(fs);
	pthread_mutex_unlock(&fs->lock);

	fs_efd_write(fs->stop_efd);
	if (fs->ops->cancel && fs->started)
		fs->ops->cancel(fs->ctx);
	if (fs->fault_started)
		pthread_join(fs->fault_th, NULL);
	if (fs->bg_started)
		pthread_join(fs->bg_th, NULL);

	pthread_mutex_lock(&fs->lock);
	fs->joined = true;
	fs->st.faults_pending = fs->npend;
	fs_broadcast(fs);
	pthread_mutex_unlock(&fs->lock);
	if (fs->started)
		pr_info("stopped (%s): %" PRIu64 " faults, %" PRIu64 " of %" PRIu64
			" pages resident, %" PRIu64 " still blocked",
			ftr_fs_state_name(fs->state), fs->st.faults, fs->n_resident, fs->total,
			(uint64_t)fs->npend);
}

void ftr_fs_destroy(struct ftr_fs *fs)
{
	if (!fs)
		return;
	ftr_fs_stop(fs);
	close(fs->stop_efd);
	if (fs->pidfd >= 0)
		close(fs->pidfd);
	close(fs->uffd);
	pthread_cond_destroy(&fs->cv);
	pthread_mutex_destroy(&fs->lock);
	if (fs->fbuf)
		munmap(fs->fbuf, fs->fbuf_len);
	if (fs->bbuf)
		munmap(fs->bbuf, fs->bbuf_len);
	if (fs->settled)
		munmap(fs->settled, fs->maps_len);
	free(fs->segs);
	free(fs->regions);
	free(fs->pend);
	free(fs->ready);
	free(fs->runs);
	free(fs);
}

int ftr_fs_wait_resident(struct ftr_fs *fs, int timeout_ms)
{
	struct timespec ts = ftr_deadline_ms(timeout_ms);
	int ret = 0;

	pthread_mutex_lock(&fs->lock);
	for (;;) {
		if (!fs->n_need) {
			ret = 0;
			break;
		}
		if (fs->state == FTR_FS_FAILED) {
			ret = fs->error ? fs->error : -EIO;
			break;
		}
		if (fs->state == FTR_FS_TARGET_EXITED) {
			ret = -ESRCH;
			break;
		}
		if (fs->stopping || !fs->started) {
			ret = -ECANCELED;
			break;
		}
		if (timeout_ms < 0) {
			pthread_cond_wait(&fs->cv, &fs->lock);
		} else if (pthread_cond_timedwait(&fs->cv, &fs->lock, &ts) == ETIMEDOUT) {
			ret = fs->n_need ? -ETIMEDOUT : 0;
			break;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

static int fs_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void ftr_fs_get_stats(struct ftr_fs *fs, struct ftr_fs_stats *st)
{
	uint64_t *lat, now = ftr_now_ns();
	unsigned n;

	lat = malloc(FTR_FS_LAT_SAMPLES * sizeof(*lat));
	pthread_mutex_lock(&fs->lock);
	*st = fs->st;
	st->pages_resident = fs->n_resident;
	st->pages_gone = fs->n_gone;
	st->pages_total = fs->total;
	st->bg_chunk_pages = fs->bg_chunk;
	st->done = fs->n_need == 0;
	st->state = fs->state;
	st->error = fs->error;
	ftr_strlcpy(st->last_error, fs->last_error, sizeof(st->last_error));
	if (fs->bg_start_ns && st->pages_background) {
		uint64_t end = fs->bg_end_ns ? fs->bg_end_ns : now;

		if (end > fs->bg_start_ns)
			st->bg_pages_per_s = (double)st->pages_background * 1e9 /
					     (double)(end - fs->bg_start_ns);
	}
	n = lat ? fs->lat_n : 0;
	if (n)
		memcpy(lat, fs->lat, n * sizeof(*lat));
	pthread_mutex_unlock(&fs->lock);

	if (n) {
		qsort(lat, n, sizeof(*lat), fs_u64_cmp);
		st->fault_lat_median_ns = lat[n / 2];
		st->fault_lat_p99_ns = lat[FTR_MIN(n - 1, (unsigned)((uint64_t)n * 99 / 100))];
		st->fault_lat_max_ns = lat[n - 1];
	}
	free(lat);
}
