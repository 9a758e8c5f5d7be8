/* SPDX-License-Identifier: MIT */
/*
 * The standby: cache, staging ring, atomic commit of epochs, background
 * apply, promotion.
 *
 * Threads (all created here, all stopped through sb->stop + channel
 * shutdown, never cancelled):
 *   - listener: accepts connections and starts a connection thread each;
 *     reaps finished connection threads.
 *   - connection thread (one per accepted connection): reads the HELLO
 *     within handshake_timeout, attaches the connection to the session as
 *     its control or a data channel (or rejects it with an ERROR record),
 *     then reads records until the session ends.
 *   - applier: copies pages of committed epochs from staging into the
 *     cache, in epoch order, and returns their slots with CREDIT.
 *   - monitor: sends heartbeats and promotes on heartbeat silence.
 *
 * Guarantee 1 at every instant: the committed image is the cache plus the
 * pending (committed, not yet applied) epochs in order. Pages of an epoch
 * that is not committed only ever live in staging slots, so discarding it
 * is dropping its slot list. Only initial-sync (epoch 0, FTR_WF_DIRECT)
 * pages are written straight to the cache, and only before any commit of
 * the session, when the standby claims no consistent image.
 *
 * Staging is a ring of slots. The primary allocates absolute positions
 * contiguously, epoch after epoch; slot = pos % nslots. Every slot records
 * which epoch holds it (slot_owner), so a position that is out of the
 * granted window or already held is rejected before a byte lands in it:
 * a record can never overwrite a page of a committed epoch.
 *
 * Lock order: apply_lock, then lock. Neither is held across network I/O
 * except that payload reads land in slots that are already reserved.
 */
#define FTR_LOG_PREFIX "standby"

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <ftrepl/checkpoint.h>

#include "checkpoint/session.h"
#include "common/common.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SB_WINDOW FTR_WIRE_MAX_INFLIGHT /* epochs in flight at once */
#define SB_POLL_MS 200		/* how often idle threads look at stop flags */

struct sb_ent {
	uint64_t page;
	uint64_t pos;		/* ring position (page entries) */
	uint32_t region;
	uint8_t is_fill;
	uint8_t fill;
};

struct sb_epoch {
	uint64_t epoch;
	bool used;
	uint32_t batches[FTR_WIRE_MAX_CHANNELS + 1]; /* by channel number */
	uint64_t pages, zero_pages;
	struct sb_ent *ent;
	size_t nent, cap;
	void *blob;
	uint32_t blob_len;
	bool has_blob;
	uint64_t slot_begin, slot_end;
	uint64_t npages_staged; /* entries holding a slot */
	uint32_t *hidx;		/* resume index: entry + 1 by page hash, 0 = empty */
	uint64_t hmask;
	_Atomic uint8_t *est;	/* resume claim state per entry */
	struct sb_epoch *next;	/* pending queue */
};

struct sb_conn {
	struct ftr_standby *sb;
	struct ftr_chan *chan;
	pthread_t thread;
	atomic_int refs;
	atomic_bool done;
	uint64_t sess_seq;	/* session it belongs to, 0 = none yet */
	int channel;		/* FTR_CHAN_CONTROL or 1..n, -1 before HELLO */
	struct ftr_mr *staging_mr; /* data channels: staging, open to one-sided writes */
	struct ftr_rec *rec;	/* receive buffer (large) */
	uint8_t *head;		/* raw header+body */
	struct sb_conn *next;	/* sb->conns */
};

struct ftr_standby {
	struct ftr_standby_opts o;
	char listen_addr[256];
	struct ftr_listener *listener;

	/* memory */
	int cache_fd;
	uint8_t *cache;
	uint64_t cache_size;
	uint8_t *staging;
	uint64_t staging_bytes;

	pthread_mutex_t lock;
	pthread_cond_t cv;	   /* batches arrived, state changes, pending */
	pthread_mutex_t apply_lock; /* held while pages move into the cache */

	enum ftr_state state;
	bool started;
	atomic_bool stop;

	/* session (under lock) */
	uint64_t sess_seq;	/* increments per session; 0 = none ever */
	bool sess_active;
	bool sess_failing;	/* a channel has claimed the session's failure */
	bool fenced;
	uint8_t session[16];
	uint64_t generation;
	struct ftr_hello hello;	/* the primary's HELLO (layout) */
	struct ftr_wire_limits lim;
	uint64_t region_off[FTR_WIRE_MAX_REGIONS];
	uint64_t image_size;
	uint32_t page_size;
	uint64_t features;
	struct sb_conn *ctl;
	struct sb_conn *data[FTR_WIRE_MAX_CHANNELS + 1];
	uint64_t rx_syscalls_closed;	/* receive syscalls of channels already closed */
	uint64_t rx_placed_closed;	/* one-sided bytes of channels already closed */
	uint32_t nconnected;
	uint64_t last_rx_ns;

	/* epochs */
	uint64_t committed;	/* FTR_EPOCH_NONE */
	uint64_t applied;
	struct sb_epoch *inflight[SB_WINDOW];
	struct sb_epoch *pend_head, *pend_tail;
	uint64_t pending_pages, pending_epochs;
	uint64_t committed_slot_end;
	void *blob;
	uint32_t blob_len;

	/* per FTR_WIRE_MIN_PAGE of the cache: committed entries not yet in
	 * the cache (saturating at UINT16_MAX, which then stays: "maybe") */
	uint16_t *pend_cnt;
	uint64_t pend_cnt_n;
	/* resume: the pending pages frozen into an overlay (see below) */
	struct sb_overlay *_Atomic overlay;
	atomic_bool resume_req;	/* a resume is starting: apply_next yields */

	/* staging ring */
	uint64_t nslots;
	uint64_t released;	/* positions < released are free */
	uint64_t *slot_owner;	/* epoch + 1 holding the slot, 0 = free */
	uint64_t slots_used;

	/* threads */
	pthread_t listener_th, applier_th, monitor_th;
	struct sb_conn *conns;

	/* stats (under lock) */
	uint64_t pages_received, zero_pages, bytes_received;
	uint64_t epochs_committed, epochs_discarded, sessions_rejected;
	uint64_t commit_wait_ns_last;
	char last_error[256];
	char promote_reason[128];
	uint64_t promoted_ns;	/* CLOCK_MONOTONIC of the promotion, 0 = never */
	char peer[96];
};

/*
 * The resume overlay. Once a promoted standby starts serving a resuming
 * workload, the committed image is the cache plus the pending epochs still
 * in staging. Applying those epochs in order would make the first fault on
 * a pending page wait for every epoch before it. Instead each committed
 * epoch gets a small hash index of its entries at its commit (O(its
 * entries), paid then, not at the failover), and a resume only freezes the
 * list of pending epochs: O(pending epochs), independent of the cache size
 * and of the number of pending pages. The latest pending copy of a page is
 * found by probing the epochs newest first; each entry is applied at most
 * once, by whichever comes first: a fault that needs the page, or the
 * applier walking the epochs (which skips copies a newer epoch supersedes).
 * The claim (state 0 -> 1 -> 2) makes the two paths agree without a lock.
 * A count per cache page of the committed entries not yet applied (bumped
 * at commit, dropped once an entry is in the cache) answers "not pending"
 * for most pages without probing any epoch: with many pending epochs a
 * fault's prefault window would otherwise probe every epoch for every page.
 */
enum { OV_PENDING = 0, OV_APPLYING = 1, OV_APPLIED = 2, OV_SUPERSEDED = 3 };

struct sb_overlay {
	struct sb_epoch **eps;	/* pending epochs, oldest first, frozen */
	size_t neps;
	uint64_t n;		/* entries in them when the resume began */
	atomic_uint_fast64_t remaining; /* entries neither applied nor superseded */
	atomic_uint_fast64_t on_demand;	/* applied by a fault first */
};

static void sb_set_error(struct ftr_standby *sb, const char *fmt, ...)
	FTR_PRINTF(2, 3);

static void sb_set_error(struct ftr_standby *sb, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sb->last_error, sizeof(sb->last_error), fmt, ap);
	va_end(ap);
}

/* ---- connections ---------------------------------------------------------- */

static uint64_t chan_rx_syscalls(struct sb_conn *c)
{
	struct ftr_chan_stats cs;

	ftr_chan_get_stats(c->chan, &cs);
	return cs.rx_syscalls;
}

static uint64_t chan_rx_placed(struct sb_conn *c)
{
	struct ftr_chan_stats cs;

	ftr_chan_get_stats(c->chan, &cs);
	return cs.rx_placed_bytes;
}

static void conn_put(struct sb_conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	if (c->staging_mr)
		ftr_mr_dereg(c->staging_mr);
	ftr_chan_close(c->chan);
	free(c->rec);
	free(c->head);
	free(c);
}

/* Returns the session's control connection with a reference, or NULL.
 * Called with sb->lock held. */
static struct sb_conn *ctl_get_locked(struct ftr_standby *sb)
{
	struct sb_conn *c = sb->sess_active ? sb->ctl : NULL;

	if (c)
		atomic_fetch_add(&c->refs, 1);
	return c;
}

/* ---- epochs ------------------------------------------------------------- */

static void epoch_free(struct sb_epoch *ep)
{
	if (!ep)
		return;
	free(ep->ent);
	free(ep->blob);
	free(ep->hidx);
	free((void *)ep->est);
	free(ep);
}

/* Releases the slots an epoch holds. Called with lock held. */
static void epoch_release_slots(struct ftr_standby *sb, struct sb_epoch *ep)
{
	for (size_t i = 0; i < ep->nent; i++) {
		if (ep->ent[i].is_fill)
			continue;
		sb->slot_owner[ep->ent[i].pos % sb->nslots] = 0;
		sb->slots_used--;
	}
}

/* Drops every uncommitted epoch. Called with lock held. */
static void discard_inflight(struct ftr_standby *sb)
{
	for (int i = 0; i < SB_WINDOW; i++) {
		struct sb_epoch *ep = sb->inflight[i];

		if (!ep)
			continue;
		epoch_release_slots(sb, ep);
		if (ep->nent || ep->pages || ep->zero_pages || ep->has_blob)
			sb->epochs_discarded++;
		epoch_free(ep);
		sb->inflight[i] = NULL;
	}
}

/* First epoch number the standby will take next. */
static uint64_t next_epoch(const struct ftr_standby *sb)
{
	return sb->committed == FTR_EPOCH_NONE ? 0 : sb->committed + 1;
}

/* Finds or creates the in-flight epoch e. Called with lock held.
 * Returns NULL with *why set when e is outside the window. */
static struct sb_epoch *epoch_get(struct ftr_standby *sb, uint64_t e, const char **why)
{
	uint64_t base = next_epoch(sb);
	struct sb_epoch *ep;

	if (e < base) {
		*why = "epoch already committed";
		return NULL;
	}
	if (e - base >= SB_WINDOW) {
		*why = "epoch too far ahead of the last commit";
		return NULL;
	}
	ep = sb->inflight[e % SB_WINDOW];
	if (ep) {
		if (ep->epoch != e) {
			*why = "epoch window slot taken";
			return NULL;
		}
		return ep;
	}
	ep = calloc(1, sizeof(*ep));
	if (!ep) {
		*why = "out of memory";
		return NULL;
	}
	ep->epoch = e;
	ep->used = true;
	sb->inflight[e % SB_WINDOW] = ep;
	return ep;
}

static int epoch_add_ent(struct sb_epoch *ep, const struct sb_ent *e)
{
	if (ep->nent == ep->cap) {
		size_t cap = ep->cap ? ep->cap * 2 : 1024;
		struct sb_ent *n = realloc(ep->ent, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		ep->ent = n;
		ep->cap = cap;
	}
	ep->ent[ep->nent++] = *e;
	return 0;
}

static inline uint8_t *cache_page(struct ftr_standby *sb, uint32_t region, uint64_t page)
{
	return sb->cache + sb->region_off[region] + page * sb->page_size;
}

static inline uint16_t *pend_cnt(struct ftr_standby *sb, uint32_t region, uint64_t page)
{
	uint64_t i = (sb->region_off[region] + page * sb->page_size) / FTR_WIRE_MIN_PAGE;

	return sb->pend_cnt && i < sb->pend_cnt_n ? &sb->pend_cnt[i] : NULL;
}

static void pend_cnt_add(struct ftr_standby *sb, uint32_t region, uint64_t page, int d)
{
	uint16_t *c = pend_cnt(sb, region, page);
	uint16_t v;

	if (!c)
		return;
	v = __atomic_load_n(c, __ATOMIC_RELAXED);
	while (v != UINT16_MAX && (d > 0 || v != 0) &&
	       !__atomic_compare_exchange_n(c, &v, (uint16_t)(v + d), false, __ATOMIC_ACQ_REL,
					    __ATOMIC_RELAXED))
		;
}

static inline uint8_t *slot_addr(struct ftr_standby *sb, uint64_t pos)
{
	return sb->staging + (pos % sb->nslots) * sb->page_size;
}

/* ---- apply ---------------------------------------------------------------- */

/* Applies the oldest pending epoch to the cache. Caller holds apply_lock
 * (not lock). Returns true if an epoch was applied. */
static bool apply_next(struct ftr_standby *sb)
{
	struct sb_epoch *ep;

	/* Once resuming, the overlay owns the pending pages: applying them
	 * epoch by epoch could put an older copy over one a fault applied. */
	if (atomic_load(&sb->overlay))
		return false;
	pthread_mutex_lock(&sb->lock);
	ep = sb->pend_head;
	pthread_mutex_unlock(&sb->lock);
	if (!ep)
		return false;

#ifdef FTREPL_TEST_HOOKS
	{
		const char *d = getenv("FTREPL_TEST_APPLY_DELAY_MS");

		for (int t = d ? atoi(d) : 0; t > 0; t -= 5) {
			if (atomic_load(&sb->resume_req))
				return false;
			usleep(5000);
		}
	}
#endif
	/* The epoch stays at the head of the queue while its pages move, so
	 * a reader of the committed image (the overlay of pending pages) never
	 * misses it. Its slots are not reused until it leaves the queue. A
	 * resume that starts meanwhile interrupts the copy: the overlay then
	 * takes the whole epoch, and copying a page twice is harmless. */
	for (size_t i = 0; i < ep->nent; i++) {
		const struct sb_ent *e = &ep->ent[i];
		uint8_t *dst = cache_page(sb, e->region, e->page);

		if ((i & 255) == 255 && atomic_load(&sb->resume_req))
			return false;

		if (e->is_fill)
			memset(dst, e->fill, sb->page_size);
		else
			memcpy(dst, slot_addr(sb, e->pos), sb->page_size);
	}
	/* Whole epoch in the cache (a resume cannot start before it leaves
	 * the queue: we hold apply_lock). */
	for (size_t i = 0; i < ep->nent; i++)
		pend_cnt_add(sb, ep->ent[i].region, ep->ent[i].page, -1);

	pthread_mutex_lock(&sb->lock);
	sb->pend_head = ep->next;
	if (!sb->pend_head)
		sb->pend_tail = NULL;
	epoch_release_slots(sb, ep);
	if (ep->slot_end > sb->released)
		sb->released = ep->slot_end;
	sb->applied = ep->epoch;
	sb->pending_pages -= ep->npages_staged;
	sb->pending_epochs--;
	pthread_cond_broadcast(&sb->cv);
	pthread_mutex_unlock(&sb->lock);
	epoch_free(ep);
	return true;
}

static void send_credit(struct ftr_standby *sb)
{
	struct ftr_rec rec;
	struct sb_conn *c;

	pthread_mutex_lock(&sb->lock);
	c = ctl_get_locked(sb);
	memset(&rec, 0, sizeof(rec));
	rec.u.credit.released = sb->released;
	pthread_mutex_unlock(&sb->lock);
	if (!c)
		return;
	ftr_send_simple(c->chan, FTR_REC_CREDIT, 0, &rec);
	conn_put(c);
}

static void ov_drain(struct ftr_standby *sb, struct sb_overlay *ov);

static void *applier_main(void *arg)
{
	struct ftr_standby *sb = arg;

	ftr_thread_name("ftr-sb-apply");

	while (!atomic_load(&sb->stop)) {
		bool did = false;

		pthread_mutex_lock(&sb->lock);
		if (!sb->pend_head) {
			struct timespec dl = ftr_deadline_ms(SB_POLL_MS);

			pthread_cond_timedwait(&sb->cv, &sb->lock, &dl);
		}
		pthread_mutex_unlock(&sb->lock);

		/* One epoch per hold of apply_lock, so that a resume, a dump or a
		 * verify never waits behind a long backlog. */
		while (!atomic_load(&sb->stop)) {
			bool one;

			pthread_mutex_lock(&sb->apply_lock);
			one = apply_next(sb);
			pthread_mutex_unlock(&sb->apply_lock);
			if (!one)
				break;
			did = true;
		}
		pthread_mutex_lock(&sb->apply_lock);
		if (atomic_load(&sb->overlay) && sb->pend_head) {
			/* A resume is served: faults apply what they need at
			 * once; catching up gives way to them (and to the
			 * resumed workload). For good: a promoted standby
			 * never replicates again. */
			ftr_thread_background();
			ov_drain(sb, atomic_load(&sb->overlay));
			did = true;
		}
		pthread_mutex_unlock(&sb->apply_lock);
		if (did)
			send_credit(sb);
	}
	return NULL;
}

/* ---- resume overlay ------------------------------------------------------- */

static inline uint64_t ov_key(uint32_t region, uint64_t page)
{
	return (((uint64_t)region << 48) | page) + 1;
}

static inline uint64_t ov_hash(uint64_t key)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	return key;
}

/* Builds an epoch's resume index. Called at its commit, with lock held:
 * O(entries), a few ms for the largest epoch. On allocation failure the
 * epoch simply has no index and a resume builds it then. */
static int epoch_index(struct sb_epoch *ep)
{
	uint64_t size = 16;

	if (ep->hidx || !ep->nent)
		return 0;
	while (size < 2 * (uint64_t)ep->nent)
		size <<= 1;
	ep->hidx = calloc(size, sizeof(uint32_t));
	ep->est = calloc(ep->nent, 1);
	if (!ep->hidx || !ep->est) {
		free(ep->hidx);
		free((void *)ep->est);
		ep->hidx = NULL;
		ep->est = NULL;
		return -ENOMEM;
	}
	ep->hmask = size - 1;
	for (size_t i = 0; i < ep->nent; i++) {
		uint64_t key = ov_key(ep->ent[i].region, ep->ent[i].page);

		for (uint64_t h = ov_hash(key) & ep->hmask;; h = (h + 1) & ep->hmask) {
			uint32_t j = ep->hidx[h];

			/* A page sent twice in one epoch: the later copy wins, as
			 * when the epoch is applied in order. */
			if (!j || ov_key(ep->ent[j - 1].region, ep->ent[j - 1].page) == key) {
				ep->hidx[h] = (uint32_t)i + 1;
				break;
			}
		}
	}
	return 0;
}

static long epoch_lookup(const struct sb_epoch *ep, uint64_t key)
{
	if (!ep->hidx)
		return -1;
	for (uint64_t h = ov_hash(key) & ep->hmask;; h = (h + 1) & ep->hmask) {
		uint32_t j = ep->hidx[h];

		if (!j)
			return -1;
		if (ov_key(ep->ent[j - 1].region, ep->ent[j - 1].page) == key)
			return (long)j - 1;
	}
}

/* The latest pending copy of a page: epochs newest first. */
static bool ov_find(struct ftr_standby *sb, const struct sb_overlay *ov, uint64_t key, size_t *k,
		    size_t *i)
{
	uint16_t *c = pend_cnt(sb, (uint32_t)((key - 1) >> 48), (key - 1) & ((1ull << 48) - 1));

	if (c && !__atomic_load_n(c, __ATOMIC_ACQUIRE))
		return false;
	for (size_t e = ov->neps; e-- > 0;) {
		long j = epoch_lookup(ov->eps[e], key);

		if (j >= 0) {
			*k = e;
			*i = (size_t)j;
			return true;
		}
	}
	return false;
}

/* Copies one entry into the cache, exactly once whoever asks. A caller that
 * loses the claim waits for the winner's single page copy. */
static void ov_apply(struct ftr_standby *sb, struct sb_overlay *ov, struct sb_epoch *ep,
		     size_t i, bool demand)
{
	uint8_t expect = OV_PENDING;

	if (atomic_compare_exchange_strong(&ep->est[i], &expect, OV_APPLYING)) {
		const struct sb_ent *se = &ep->ent[i];
		uint8_t *dst = cache_page(sb, se->region, se->page);

		if (se->is_fill)
			memset(dst, se->fill, sb->page_size);
		else
			memcpy(dst, slot_addr(sb, se->pos), sb->page_size);
		atomic_store_explicit(&ep->est[i], OV_APPLIED, memory_order_release);
		pend_cnt_add(sb, se->region, se->page, -1);
		atomic_fetch_sub(&ov->remaining, 1);
		if (demand)
			atomic_fetch_add(&ov->on_demand, 1);
		return;
	}
	while (atomic_load_explicit(&ep->est[i], memory_order_acquire) == OV_APPLYING)
		sched_yield();
}

/* Applies every entry not applied yet (skipping copies a newer epoch
 * supersedes), then gives the pending epochs' slots back. Caller holds
 * apply_lock. */
static void ov_drain(struct ftr_standby *sb, struct sb_overlay *ov)
{
#ifdef FTREPL_TEST_HOOKS
	{
		/* A slow applier: faults must then find pages still pending. */
		const char *d = getenv("FTREPL_TEST_APPLY_DELAY_MS");

		if (d && atomic_load(&ov->remaining))
			usleep((useconds_t)atoi(d) * 1000);
	}
#endif
	for (size_t k = 0; k < ov->neps; k++) {
		struct sb_epoch *ep = ov->eps[k];

		for (size_t i = 0; i < ep->nent; i++) {
			uint64_t key = ov_key(ep->ent[i].region, ep->ent[i].page);
			uint8_t expect = OV_PENDING;
			size_t kk, ii;

			if (atomic_load(&sb->stop))
				return;
			if (atomic_load(&ep->est[i]) != OV_PENDING)
				continue;
			if (ov_find(sb, ov, key, &kk, &ii) && (kk != k || ii != i)) {
				if (atomic_compare_exchange_strong(&ep->est[i], &expect,
								   OV_SUPERSEDED)) {
					pend_cnt_add(sb, ep->ent[i].region, ep->ent[i].page, -1);
					atomic_fetch_sub(&ov->remaining, 1);
				}
				continue;
			}
			ov_apply(sb, ov, ep, i, false);
		}
	}
	pthread_mutex_lock(&sb->lock);
	while (sb->pend_head) {
		struct sb_epoch *ep = sb->pend_head;

		sb->pend_head = ep->next;
		epoch_release_slots(sb, ep);
		sb->applied = ep->epoch;
		/* The overlay keeps pointing at it: freed with the overlay. */
	}
	sb->pend_tail = NULL;
	sb->pending_pages = 0;
	sb->pending_epochs = 0;
	pthread_cond_broadcast(&sb->cv);
	pthread_mutex_unlock(&sb->lock);
}

int ftr_standby_resume_begin(struct ftr_standby *sb)
{
	struct sb_overlay *ov = NULL;
	struct sb_epoch *ep;
	size_t n = 0;
	int ret = 0;

	/* Makes an epoch copy in progress stop within 256 pages. */
	atomic_store(&sb->resume_req, true);
	pthread_mutex_lock(&sb->apply_lock);
	pthread_mutex_lock(&sb->lock);
	if (atomic_load(&sb->overlay))
		ret = -EALREADY;
	else if (sb->committed == FTR_EPOCH_NONE)
		ret = -ENODATA;
	else if (sb->state != FTR_STATE_PROMOTED)
		ret = -EBUSY;
	if (ret) {
		if (!atomic_load(&sb->overlay))
			atomic_store(&sb->resume_req, false);
		goto out;
	}
	for (ep = sb->pend_head; ep; ep = ep->next)
		n++;
	ov = calloc(1, sizeof(*ov));
	if (ov)
		ov->eps = calloc(n ? n : 1, sizeof(*ov->eps));
	if (!ov || !ov->eps) {
		free(ov);
		atomic_store(&sb->resume_req, false);
		ret = -ENOMEM;
		goto out;
	}
	for (ep = sb->pend_head; ep; ep = ep->next) {
		if (epoch_index(ep)) {	/* only if it failed at commit */
			free(ov->eps);
			free(ov);
			atomic_store(&sb->resume_req, false);
			ret = -ENOMEM;
			goto out;
		}
		ov->eps[ov->neps++] = ep;
		ov->n += ep->nent;
	}
	atomic_store(&ov->remaining, ov->n);
	atomic_store(&sb->overlay, ov);
	sb->state = FTR_STATE_RESUMING;
	pr_info("resuming epoch %" PRIu64 ": %" PRIu64 " page(s) of %zu pending epoch(s) served "
		"from staging on demand", sb->committed, ov->n, ov->neps);
	pthread_cond_broadcast(&sb->cv);
out:
	pthread_mutex_unlock(&sb->lock);
	pthread_mutex_unlock(&sb->apply_lock);
	return ret;
}

int ftr_standby_page_ready(struct ftr_standby *sb, uint32_t region, uint64_t first,
			   uint64_t npages)
{
	struct sb_overlay *ov = atomic_load(&sb->overlay);

	if (!ov)
		return -ENODATA;
	if (region >= sb->hello.nregions ||
	    first > sb->lim.region_pages[region] ||
	    npages > sb->lim.region_pages[region] - first)
		return -ERANGE;
	if (!atomic_load(&ov->remaining))
		return 0;
	for (uint64_t p = first; p < first + npages; p++) {
		size_t k, i;

		if (ov_find(sb, ov, ov_key(region, p), &k, &i) &&
		    atomic_load_explicit(&ov->eps[k]->est[i], memory_order_acquire) != OV_APPLIED)
			ov_apply(sb, ov, ov->eps[k], i, true);
	}
	return 0;
}

int ftr_standby_layout(struct ftr_standby *sb, struct ftr_standby_layout *out)
{
	int ret = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&sb->lock);
	if (sb->committed == FTR_EPOCH_NONE) {
		ret = -ENODATA;
	} else {
		out->cache_fd = sb->cache_fd;
		out->cache = sb->cache;
		out->cache_size = sb->cache_size;
		out->page_size = sb->page_size;
		out->epoch = sb->committed;
		out->nregions = sb->hello.nregions;
		for (uint32_t r = 0; r < out->nregions; r++) {
			out->regions[r].offset = sb->region_off[r];
			out->regions[r].size = sb->hello.regions[r].size;
			memcpy(out->regions[r].name, sb->hello.regions[r].name,
			       sizeof(out->regions[r].name));
		}
		out->blob_len = FTR_MIN(sb->blob_len, (uint32_t)sizeof(out->blob));
		if (sb->blob)
			memcpy(out->blob, sb->blob, out->blob_len);
	}
	pthread_mutex_unlock(&sb->lock);
	return ret;
}

/* Applies everything committed up to now. Caller holds apply_lock. */
static uint64_t drain_committed(struct ftr_standby *sb)
{
	struct sb_overlay *ov = atomic_load(&sb->overlay);
	uint64_t e;

	pthread_mutex_lock(&sb->lock);
	e = sb->committed;
	pthread_mutex_unlock(&sb->lock);
	if (ov)
		ov_drain(sb, ov);
	else
		while (apply_next(sb))
			;
	return e;
}

/* ---- promotion and session end ------------------------------------------- */

/* Ends the current session: shuts its channels, discards the uncommitted
 * epoch. With a committed epoch the standby is promoted (fenced), unless
 * the session ended with BYE (degraded). Called with lock held. */
static void session_end_locked(struct ftr_standby *sb, bool orderly, const char *reason)
{
	if (!sb->sess_active)
		return;
	sb->sess_active = false;
	discard_inflight(sb);
	if (sb->ctl) {
		ftr_chan_shutdown(sb->ctl->chan);
		sb->rx_syscalls_closed += chan_rx_syscalls(sb->ctl);
		sb->rx_placed_closed += chan_rx_placed(sb->ctl);
		conn_put(sb->ctl);
		sb->ctl = NULL;
	}
	for (int i = 1; i <= FTR_WIRE_MAX_CHANNELS; i++) {
		if (sb->data[i]) {
			ftr_chan_shutdown(sb->data[i]->chan);
			sb->rx_syscalls_closed += chan_rx_syscalls(sb->data[i]);
			sb->rx_placed_closed += chan_rx_placed(sb->data[i]);
			conn_put(sb->data[i]);
			sb->data[i] = NULL;
		}
	}
	sb->nconnected = 0;
	if (sb->state == FTR_STATE_PROMOTED)
		;
	else if (orderly)
		sb->state = FTR_STATE_DEGRADED;
	else if (sb->committed != FTR_EPOCH_NONE) {
		sb->state = FTR_STATE_PROMOTED;
		sb->promoted_ns = ftr_now_ns();
		sb->fenced = true;
		ftr_strlcpy(sb->promote_reason, reason, sizeof(sb->promote_reason));
		pr_warn("promoted: %s; holding committed epoch %" PRIu64, reason, sb->committed);
	} else {
		/* Nothing was ever consistent: wait for a new primary. */
		sb->state = FTR_STATE_CONNECTING;
		pr_warn("session lost before its first commit (%s); waiting for a primary", reason);
	}
	pthread_cond_broadcast(&sb->cv);
}

/*
 * A failure of session sess_seq: logs, records and ends it. The first
 * channel to fail claims the failure, so its reason is the one recorded even
 * when the primary, told of it by an ERROR record (sent when tell is set),
 * closes its other channels before the session is ended.
 */
static void session_fail_tell(struct ftr_standby *sb, uint64_t sess_seq, struct ftr_chan *tell,
			      const char *fmt, ...) FTR_PRINTF(4, 5);

static void session_fail_tell(struct ftr_standby *sb, uint64_t sess_seq, struct ftr_chan *tell,
			      const char *fmt, ...)
{
	bool claimed = false;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&sb->lock);
	if (sb->sess_active && sb->sess_seq == sess_seq && !sb->sess_failing) {
		sb->sess_failing = true;
		claimed = true;
		pr_err("session failed: %s", msg);
		sb_set_error(sb, "%s", msg);
	}
	pthread_mutex_unlock(&sb->lock);
	if (!claimed)
		return;
	if (tell)
		ftr_send_error(tell, FTR_WERR_PROTOCOL, "%s", msg);
	pthread_mutex_lock(&sb->lock);
	if (sb->sess_active && sb->sess_seq == sess_seq)
		session_end_locked(sb, false, msg);
	pthread_mutex_unlock(&sb->lock);
}

#define session_fail(sb, seq, ...) session_fail_tell(sb, seq, NULL, __VA_ARGS__)

int ftr_standby_promote(struct ftr_standby *sb, const char *reason)
{
	int ret = 0;

	pthread_mutex_lock(&sb->lock);
	if (sb->state == FTR_STATE_PROMOTED || sb->state == FTR_STATE_RESUMING) {
		ret = -EALREADY;
	} else if (sb->committed == FTR_EPOCH_NONE) {
		ret = -ENODATA;
	} else if (sb->sess_active) {
		session_end_locked(sb, false, reason);
	} else {
		sb->state = FTR_STATE_PROMOTED;
		sb->promoted_ns = ftr_now_ns();
		sb->fenced = true;
		ftr_strlcpy(sb->promote_reason, reason, sizeof(sb->promote_reason));
		pr_warn("promoted: %s; holding committed epoch %" PRIu64, reason, sb->committed);
		pthread_cond_broadcast(&sb->cv);
	}
	pthread_mutex_unlock(&sb->lock);
	return ret;
}

/* ---- handshake ------------------------------------------------------------ */

static int hello_reply(struct ftr_standby *sb, struct sb_conn *c)
{
	struct ftr_rec *rec = calloc(1, sizeof(*rec));
	int ret;

	if (!rec)
		return -ENOMEM;
	rec->hdr.type = FTR_REC_HELLO;
	rec->hdr.flags = FTR_WF_REPLY;
	memcpy(rec->u.hello.session, sb->session, 16);
	rec->u.hello.generation = sb->generation;
	rec->u.hello.features = sb->features;
	rec->u.hello.page_size = sb->page_size;
	rec->u.hello.role = FTR_ROLE_STANDBY;
	rec->u.hello.channel = (uint8_t)c->channel;
	rec->u.hello.nchannels = sb->hello.nchannels;
	rec->u.hello.staging_slots = (uint32_t)sb->nslots;
	rec->u.hello.nregions = 0;
	rec->u.hello.last_committed = sb->committed;
	rec->u.hello.cache_size = sb->cache_size;
	ret = ftr_chan_send_rec(c->chan, rec, NULL, 0);
	free(rec);
	return ret;
}

static void populate_cache(struct ftr_standby *sb)
{
	/* Faults cost ~10 us each under this kind of hypervisor; populating
	 * the image range once in the kernel is much cheaper than faulting
	 * it in page by page during the initial sync. */
	if (madvise(sb->cache, sb->image_size, MADV_POPULATE_WRITE))
		pr_debug("MADV_POPULATE_WRITE on the cache: %s", strerror(errno));
}

/* Starts a new session from a control channel HELLO. Called with lock held.
 * Returns 0, or a wire error code with msg filled. */
static int session_begin_locked(struct ftr_standby *sb, struct sb_conn *c,
				const struct ftr_hello *h, char *msg, size_t mlen)
{
	uint64_t total = 0, nslots;
	char s1[37], s2[37];

	uuid_unparse_lower(h->session, s1);
	if (sb->fenced) {
		snprintf(msg, mlen, "standby was promoted (%s); session %s is fenced",
			 sb->promote_reason, s1);
		return FTR_WERR_FENCED;
	}
	if (sb->sess_active) {
		uuid_unparse_lower(sb->session, s2);
		snprintf(msg, mlen, "standby is busy with session %s generation %" PRIu64
			 "; refusing session %s generation %" PRIu64,
			 s2, sb->generation, s1, h->generation);
		return memcmp(sb->session, h->session, 16) ? FTR_WERR_SESSION : FTR_WERR_BUSY;
	}
	for (uint32_t i = 0; i < h->nregions; i++) {
		if (h->regions[i].size > sb->cache_size - total) {
			snprintf(msg, mlen, "region layout needs more than the cache of %" PRIu64
				 " bytes (region %u '%s' of %" PRIu64 " bytes does not fit)",
				 sb->cache_size, i, h->regions[i].name, h->regions[i].size);
			return FTR_WERR_LAYOUT;
		}
		total += h->regions[i].size;
	}
	nslots = sb->staging_bytes / h->page_size;
	if (nslots < 1 || nslots > UINT32_MAX) {
		snprintf(msg, mlen, "staging of %" PRIu64 " bytes holds no %u-byte page",
			 sb->staging_bytes, h->page_size);
		return FTR_WERR_LAYOUT;
	}

	/* Everything committed before belongs to an earlier session: move it
	 * into the cache so the ring can start over at position 0. */
	pthread_mutex_unlock(&sb->lock);
	pthread_mutex_lock(&sb->apply_lock);
	drain_committed(sb);
	pthread_mutex_unlock(&sb->apply_lock);
	pthread_mutex_lock(&sb->lock);
	if (sb->sess_active || sb->fenced) {
		snprintf(msg, mlen, "standby state changed during handshake");
		return FTR_WERR_BUSY;
	}

	if (sb->sess_seq) {
		uuid_unparse_lower(sb->session, s2);
		pr_warn("session %s generation %" PRIu64 " replaces session %s (ended at epoch %" PRIu64 ")",
			s1, h->generation, s2, sb->committed);
	}
	sb->sess_seq++;
	sb->sess_active = true;
	sb->sess_failing = false;
	memcpy(sb->session, h->session, 16);
	sb->generation = h->generation;
	sb->hello = *h;
	ftr_session_limits(h, &sb->lim);
	sb->page_size = h->page_size;
	sb->features = h->features & FTR_FEAT_KNOWN;
	sb->image_size = total;
	for (uint32_t i = 0, off = 0; i < h->nregions; i++) {
		sb->region_off[i] = off;
		off += h->regions[i].size;
	}
	sb->committed = FTR_EPOCH_NONE;
	sb->applied = FTR_EPOCH_NONE;
	sb->committed_slot_end = 0;
	sb->nslots = nslots;
	sb->released = 0;
	free(sb->slot_owner);
	sb->slot_owner = calloc(nslots, sizeof(uint64_t));
	sb->slots_used = 0;
	free(sb->blob);
	sb->blob = NULL;
	sb->blob_len = 0;
	sb->last_error[0] = '\0';
	sb->ctl = c;
	atomic_fetch_add(&c->refs, 1);
	c->sess_seq = sb->sess_seq;
	sb->last_rx_ns = ftr_now_ns();
	sb->state = FTR_STATE_SYNCING;
	ftr_strlcpy(sb->peer, ftr_chan_peer(c->chan), sizeof(sb->peer));
	if (!sb->slot_owner) {
		session_end_locked(sb, false, "out of memory");
		snprintf(msg, mlen, "standby out of memory");
		return FTR_WERR_INTERNAL;
	}
	pr_info("session %s generation %" PRIu64 " from %s: %u region(s), %" PRIu64
		" bytes, %u data channel(s), %" PRIu64 " staging slots",
		s1, h->generation, sb->peer, h->nregions, total, h->nchannels, nslots);
	pthread_cond_broadcast(&sb->cv);
	return 0;
}

static int session_attach_data_locked(struct ftr_standby *sb, struct sb_conn *c,
				      const struct ftr_hello *h, char *msg, size_t mlen)
{
	char s1[37];

	uuid_unparse_lower(h->session, s1);
	if (sb->fenced) {
		snprintf(msg, mlen, "standby was promoted; session %s is fenced", s1);
		return FTR_WERR_FENCED;
	}
	if (!sb->sess_active || memcmp(sb->session, h->session, 16) ||
	    sb->generation != h->generation) {
		snprintf(msg, mlen, "data channel %u of session %s generation %" PRIu64
			 " matches no active session", h->channel, s1, h->generation);
		return FTR_WERR_SESSION;
	}
	if (h->nchannels != sb->hello.nchannels || h->page_size != sb->page_size) {
		snprintf(msg, mlen, "data channel %u disagrees with the control channel's HELLO",
			 h->channel);
		return FTR_WERR_PROTOCOL;
	}
	if (sb->data[h->channel]) {
		snprintf(msg, mlen, "data channel %u is already connected", h->channel);
		return FTR_WERR_PROTOCOL;
	}
	sb->data[h->channel] = c;
	atomic_fetch_add(&c->refs, 1);
	c->sess_seq = sb->sess_seq;
	sb->nconnected++;
	return 0;
}

/* Reads and checks the HELLO of a new connection; attaches it or rejects
 * it. Returns 0 when attached. */
static int handshake(struct sb_conn *c)
{
	struct ftr_standby *sb = c->sb;
	struct ftr_wire_error werr;
	struct ftr_wire_hdr hdr;
	struct ftr_hello *h;
	char msg[320];
	ssize_t n;
	int code;

	n = ftr_chan_recv_head(c->chan, c->head, FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY, &hdr,
			       sb->o.handshake_timeout_ms, &werr);
	if (n == -EPROTO) {
		snprintf(msg, sizeof(msg), "bad record instead of HELLO: %s", werr.msg);
		code = FTR_WERR_PROTOCOL;
		goto reject;
	}
	if (n < 0) {
		/* Nothing usable arrived: a truncated or stalled HELLO, or a
		 * connection that closed at once. Counted as a rejection. */
		pr_warn("rejected connection from %s: no HELLO (%s)", ftr_chan_peer(c->chan),
			n == -EAGAIN ? "handshake timeout" :
			n == -ETIMEDOUT ? "stalled mid-record" : strerror((int)-n));
		pthread_mutex_lock(&sb->lock);
		sb->sessions_rejected++;
		pthread_mutex_unlock(&sb->lock);
		return (int)n;
	}
	if (ftr_wire_decode_body(c->head, &hdr, c->head + FTR_WIRE_HDR_LEN, NULL, c->rec, &werr)) {
		snprintf(msg, sizeof(msg), "bad HELLO: %s", werr.msg);
		code = FTR_WERR_PROTOCOL;
		goto reject;
	}
	if (hdr.type != FTR_REC_HELLO) {
		snprintf(msg, sizeof(msg), "expected HELLO, got %s", ftr_rec_type_name(hdr.type));
		code = FTR_WERR_PROTOCOL;
		goto reject;
	}
	h = &c->rec->u.hello;
	if (h->role != FTR_ROLE_PRIMARY || (hdr.flags & FTR_WF_REPLY)) {
		snprintf(msg, sizeof(msg), "HELLO from a peer that is not a primary");
		code = FTR_WERR_PROTOCOL;
		goto reject;
	}
	if (h->channel == FTR_CHAN_URGENT) {
		snprintf(msg, sizeof(msg), "this standby has no urgent channel (postcopy is not enabled)");
		code = FTR_WERR_PROTOCOL;
		goto reject;
	}
	if (h->nregions == 0) {
		snprintf(msg, sizeof(msg), "HELLO without regions");
		code = FTR_WERR_LAYOUT;
		goto reject;
	}

	c->channel = h->channel;
	pthread_mutex_lock(&sb->lock);
	if (h->channel == FTR_CHAN_CONTROL)
		code = session_begin_locked(sb, c, h, msg, sizeof(msg));
	else
		code = session_attach_data_locked(sb, c, h, msg, sizeof(msg));
	if (!code) {
		/* Reply under the lock: the primary must see the reply before
		 * any record of the session can be answered. */
		int ret = hello_reply(sb, c);
		uint64_t seq = sb->sess_seq;

		pthread_mutex_unlock(&sb->lock);
		if (h->channel == FTR_CHAN_CONTROL && ret == 0) {
			populate_cache(sb);
			pthread_mutex_lock(&sb->lock);
			if (sb->sess_seq == seq)
				sb->last_rx_ns = ftr_now_ns();
			pthread_mutex_unlock(&sb->lock);
		}
		if (ret) {
			session_fail(sb, seq, "cannot answer HELLO on channel %d: %s", c->channel,
				     strerror(-ret));
			return ret;
		}
		if (h->channel != FTR_CHAN_CONTROL)
			pr_info("data channel %u of %u connected from %s", h->channel,
				h->nchannels, ftr_chan_peer(c->chan));
		return 0;
	}
	pthread_mutex_unlock(&sb->lock);
reject:
	pr_warn("rejected connection from %s: %s", ftr_chan_peer(c->chan), msg);
	ftr_send_error(c->chan, code, "%s", msg);
	pthread_mutex_lock(&sb->lock);
	sb->sessions_rejected++;
	pthread_mutex_unlock(&sb->lock);
	return -EPROTO;
}

/* ---- records of an established session ------------------------------------- */

/* Checks and reserves the slots of a staged PAGES record and builds the
 * iovecs its payloads go to. Called with lock held. */
static int stage_pages_locked(struct ftr_standby *sb, struct sb_epoch *ep,
			      const struct ftr_pages *pg, struct iovec *iov,
			      char *msg, size_t mlen)
{
	uint32_t i;

	for (i = 0; i < pg->count; i++) {
		uint64_t pos = pg->ent[i].pos;
		uint64_t *owner = &sb->slot_owner[pos % sb->nslots];

		if (pos < sb->released || pos - sb->released >= sb->nslots) {
			snprintf(msg, mlen, "PAGES epoch %" PRIu64 ": staging position %" PRIu64
				 " outside the granted window [%" PRIu64 ", %" PRIu64 ")",
				 ep->epoch, pos, sb->released, sb->released + sb->nslots);
			goto undo;
		}
		if (*owner) {
			snprintf(msg, mlen, "PAGES epoch %" PRIu64 ": staging slot of position %" PRIu64
				 " is still held by epoch %" PRIu64, ep->epoch, pos, *owner - 1);
			goto undo;
		}
		*owner = ep->epoch + 1;
		iov[i].iov_base = slot_addr(sb, pos);
		iov[i].iov_len = sb->page_size;
	}
	sb->slots_used += pg->count;
	return 0;
undo:
	while (i--)
		sb->slot_owner[pg->ent[i].pos % sb->nslots] = 0;
	return -EPROTO;
}

static int record_entries_locked(struct sb_epoch *ep, const struct ftr_pages *pg)
{
	for (uint32_t i = 0; i < pg->count; i++) {
		struct sb_ent e = {
			.page = pg->ent[i].page, .pos = pg->ent[i].pos, .region = pg->region,
		};
		int ret = epoch_add_ent(ep, &e);

		if (ret)
			return ret;
		ep->npages_staged++;
	}
	return 0;
}

static int on_pages(struct sb_conn *c, const struct ftr_wire_hdr *hdr, char *msg, size_t mlen)
{
	struct ftr_standby *sb = c->sb;
	const struct ftr_pages *pg = &c->rec->u.pages;
	bool direct = hdr->flags & FTR_WF_DIRECT;
	struct iovec iov[FTR_WIRE_MAX_BATCH];
	struct ftr_wire_error werr;
	struct sb_epoch *ep;
	const char *why;
	int ret;

	pthread_mutex_lock(&sb->lock);
	if (!sb->sess_active || sb->sess_seq != c->sess_seq) {
		pthread_mutex_unlock(&sb->lock);
		return -ESHUTDOWN;
	}
	if (direct != (hdr->seq == 0)) {
		snprintf(msg, mlen, "PAGES epoch %" PRIu64 " %s the initial-sync flag", hdr->seq,
			 direct ? "carries" : "lacks");
		goto proto;
	}
	ep = epoch_get(sb, hdr->seq, &why);
	if (!ep) {
		snprintf(msg, mlen, "PAGES for epoch %" PRIu64 " (next is %" PRIu64 "): %s",
			 hdr->seq, next_epoch(sb), why);
		goto proto;
	}
	if (direct) {
		for (uint32_t i = 0; i < pg->count; i++) {
			iov[i].iov_base = cache_page(sb, pg->region, pg->ent[i].page);
			iov[i].iov_len = sb->page_size;
		}
	} else {
		if (stage_pages_locked(sb, ep, pg, iov, msg, mlen))
			goto proto;
		/* Recorded now, counted as arrived only once the payload is in:
		 * a COMMIT cannot pass before that, and a failure on the way
		 * frees these slots with the rest of the epoch. */
		if (record_entries_locked(ep, pg)) {
			snprintf(msg, mlen, "out of memory recording epoch %" PRIu64, ep->epoch);
			goto proto;
		}
	}
	pthread_mutex_unlock(&sb->lock);

	ret = ftr_chan_recv_data(c->chan, hdr, iov, (int)pg->count);
	if (ret) {
		if (ret == -ETIMEDOUT)
			snprintf(msg, mlen, "record stalled mid-way for %d ms reading %u page(s) of epoch %" PRIu64,
				 sb->o.stall_timeout_ms, pg->count, hdr->seq);
		else
			snprintf(msg, mlen, "reading %u page(s) of epoch %" PRIu64 ": %s", pg->count,
				 hdr->seq, ret == -ENOTCONN ? "connection closed" : strerror(-ret));
		return ret;
	}
	if (ftr_wire_check_data(hdr, iov, (int)pg->count, &werr)) {
		snprintf(msg, mlen, "epoch %" PRIu64 ": %s", hdr->seq, werr.msg);
		return -EPROTO;
	}

	pthread_mutex_lock(&sb->lock);
	if (sb->sess_active && sb->sess_seq == c->sess_seq &&
	    sb->inflight[hdr->seq % SB_WINDOW] == ep) {
		ep->batches[c->channel]++;
		ep->pages += pg->count;
		sb->pages_received += pg->count;
		sb->bytes_received += hdr->data_len;
		pthread_cond_broadcast(&sb->cv);
	}
	pthread_mutex_unlock(&sb->lock);
	return 0;
proto:
	pthread_mutex_unlock(&sb->lock);
	return -EPROTO;
}

static int on_zero_pages(struct sb_conn *c, const struct ftr_wire_hdr *hdr, char *msg, size_t mlen)
{
	struct ftr_standby *sb = c->sb;
	const struct ftr_zero_pages *z = &c->rec->u.zero;
	bool direct = hdr->flags & FTR_WF_DIRECT;
	struct sb_epoch *ep;
	const char *why;

	pthread_mutex_lock(&sb->lock);
	if (!sb->sess_active || sb->sess_seq != c->sess_seq) {
		pthread_mutex_unlock(&sb->lock);
		return -ESHUTDOWN;
	}
	if (direct != (hdr->seq == 0)) {
		snprintf(msg, mlen, "ZERO_PAGES epoch %" PRIu64 " %s the initial-sync flag",
			 hdr->seq, direct ? "carries" : "lacks");
		goto proto;
	}
	ep = epoch_get(sb, hdr->seq, &why);
	if (!ep) {
		snprintf(msg, mlen, "ZERO_PAGES for epoch %" PRIu64 ": %s", hdr->seq, why);
		goto proto;
	}
	for (uint32_t i = 0; i < z->count; i++) {
		if (direct) {
			memset(cache_page(sb, z->region, z->ent[i].page), z->ent[i].fill,
			       sb->page_size);
		} else {
			struct sb_ent e = { .page = z->ent[i].page, .region = z->region,
					    .is_fill = 1, .fill = z->ent[i].fill };

			if (epoch_add_ent(ep, &e)) {
				snprintf(msg, mlen, "out of memory recording epoch %" PRIu64, hdr->seq);
				goto proto;
			}
		}
	}
	ep->batches[c->channel]++;
	ep->zero_pages += z->count;
	sb->zero_pages += z->count;
	pthread_cond_broadcast(&sb->cv);
	pthread_mutex_unlock(&sb->lock);
	return 0;
proto:
	pthread_mutex_unlock(&sb->lock);
	return -EPROTO;
}

static int on_blob(struct sb_conn *c, const struct ftr_wire_hdr *hdr, char *msg, size_t mlen)
{
	struct ftr_standby *sb = c->sb;
	struct ftr_wire_error werr;
	struct sb_epoch *ep;
	struct iovec iov;
	const char *why;
	void *buf;
	int ret;

	buf = malloc(hdr->data_len ? hdr->data_len : 1);
	if (!buf) {
		snprintf(msg, mlen, "out of memory for a %u-byte blob", hdr->data_len);
		return -ENOMEM;
	}
	iov.iov_base = buf;
	iov.iov_len = hdr->data_len;
	ret = ftr_chan_recv_data(c->chan, hdr, &iov, 1);
	if (!ret && ftr_wire_check_data(hdr, &iov, 1, &werr)) {
		snprintf(msg, mlen, "BLOB of epoch %" PRIu64 ": %s", hdr->seq, werr.msg);
		ret = -EPROTO;
	} else if (ret) {
		snprintf(msg, mlen, "reading BLOB of epoch %" PRIu64 ": %s", hdr->seq, strerror(-ret));
	}
	if (ret) {
		free(buf);
		return ret;
	}
	pthread_mutex_lock(&sb->lock);
	ep = epoch_get(sb, hdr->seq, &why);
	if (!ep || ep->has_blob) {
		snprintf(msg, mlen, "BLOB for epoch %" PRIu64 ": %s", hdr->seq,
			 ep ? "a second blob for one epoch" : why);
		pthread_mutex_unlock(&sb->lock);
		free(buf);
		return -EPROTO;
	}
	ep->blob = buf;
	ep->blob_len = hdr->data_len;
	ep->has_blob = true;
	pthread_mutex_unlock(&sb->lock);
	return 0;
}

/* Checks that everything COMMIT(e) promises has arrived. Called with lock
 * held. Returns 1 when complete, 0 to keep waiting, -EPROTO on a
 * contradiction. */
static int commit_ready_locked(struct sb_epoch *ep, uint64_t e,
			       const struct ftr_commit *cm, char *msg, size_t mlen)
{
	bool waiting = false;

	for (uint32_t ch = 1; ch <= cm->nchannels; ch++) {
		uint32_t want = cm->batches[ch - 1], got = ep ? ep->batches[ch] : 0;

		if (got > want) {
			snprintf(msg, mlen, "COMMIT %" PRIu64 ": channel %u carried %u batches, "
				 "COMMIT says %u", e, ch, got, want);
			return -EPROTO;
		}
		if (got < want)
			waiting = true;
	}
	return waiting ? 0 : 1;
}

/* Validates the complete epoch against COMMIT. Called with lock held. */
static int commit_check_locked(struct ftr_standby *sb, struct sb_epoch *ep, uint64_t e,
			       const struct ftr_commit *cm, char *msg, size_t mlen)
{
	uint64_t begin = sb->committed_slot_end;
	uint64_t pages = ep ? ep->pages : 0, zero = ep ? ep->zero_pages : 0;

	if (pages != cm->pages || zero != cm->zero_pages) {
		snprintf(msg, mlen, "COMMIT %" PRIu64 " promises %" PRIu64 " pages and %" PRIu64
			 " fill pages, %" PRIu64 " and %" PRIu64 " arrived",
			 e, cm->pages, cm->zero_pages, pages, zero);
		return -EPROTO;
	}
	if ((cm->blob_len != 0) != (ep && ep->has_blob) ||
	    (ep && ep->has_blob && ep->blob_len != cm->blob_len)) {
		snprintf(msg, mlen, "COMMIT %" PRIu64 " says blob of %u bytes, got %u", e,
			 cm->blob_len, ep && ep->has_blob ? ep->blob_len : 0);
		return -EPROTO;
	}
	if (e == 0) {
		if (cm->slot_end != 0) {
			snprintf(msg, mlen, "COMMIT 0 (initial sync) names slot end %" PRIu64,
				 cm->slot_end);
			return -EPROTO;
		}
		return 0;
	}
	if (cm->slot_end < begin || cm->slot_end - begin != pages) {
		snprintf(msg, mlen, "COMMIT %" PRIu64 ": slot range [%" PRIu64 ", %" PRIu64
			 ") does not hold its %" PRIu64 " pages", e, begin, cm->slot_end, pages);
		return -EPROTO;
	}
	for (size_t i = 0; ep && i < ep->nent; i++) {
		const struct sb_ent *en = &ep->ent[i];

		if (!en->is_fill && (en->pos < begin || en->pos >= cm->slot_end)) {
			snprintf(msg, mlen, "COMMIT %" PRIu64 ": page at position %" PRIu64
				 " outside the epoch's slot range", e, en->pos);
			return -EPROTO;
		}
	}
	return 0;
}

static int on_commit(struct sb_conn *c, const struct ftr_wire_hdr *hdr, char *msg, size_t mlen)
{
	struct ftr_standby *sb = c->sb;
	const struct ftr_commit cm = c->rec->u.commit;
	uint64_t e = hdr->seq, t0 = ftr_now_ns();
	uint64_t deadline = t0 + (uint64_t)sb->o.stall_timeout_ms * 1000000ull;
	struct sb_epoch *ep;
	int ret;

	pthread_mutex_lock(&sb->lock);
	if (e != next_epoch(sb)) {
		snprintf(msg, mlen, "COMMIT %" PRIu64 " out of order (next is %" PRIu64 ")", e,
			 next_epoch(sb));
		goto proto;
	}
	/* Batches travel on the data channels and may still be on their way. */
	for (;;) {
		if (!sb->sess_active || sb->sess_seq != c->sess_seq) {
			pthread_mutex_unlock(&sb->lock);
			return -ESHUTDOWN;
		}
		ep = sb->inflight[e % SB_WINDOW];
		if (ep && ep->epoch != e)
			ep = NULL;
		ret = commit_ready_locked(ep, e, &cm, msg, mlen);
		if (ret < 0)
			goto proto;
		if (ret > 0)
			break;
		if (ftr_now_ns() > deadline) {
			snprintf(msg, mlen, "COMMIT %" PRIu64 ": batches still missing after %d ms",
				 e, sb->o.stall_timeout_ms);
			goto proto;
		}
		struct timespec dl = ftr_deadline_ms(50);

		pthread_cond_timedwait(&sb->cv, &sb->lock, &dl);
	}
	if (commit_check_locked(sb, ep, e, &cm, msg, mlen))
		goto proto;
	if (!ep && e > 0) {
		/* An epoch without pages is still queued, so that `applied`
		 * advances in order. */
		ep = calloc(1, sizeof(*ep));
		if (!ep) {
			snprintf(msg, mlen, "out of memory queueing epoch %" PRIu64, e);
			goto proto;
		}
	}

	/* Commit point: from here e is part of the committed image. */
	sb->inflight[e % SB_WINDOW] = NULL;
	sb->committed = e;
	sb->epochs_committed++;
	if (e > 0)
		sb->committed_slot_end = cm.slot_end;
	if (ep && ep->has_blob) {
		free(sb->blob);
		sb->blob = ep->blob;
		sb->blob_len = ep->blob_len;
		ep->blob = NULL;
	}
	if (e == 0) {
		/* The initial sync went straight into the cache. */
		sb->applied = 0;
		epoch_free(ep);
	} else {
		ep->epoch = e;
		ep->slot_begin = cm.slot_end - ep->pages;
		ep->slot_end = cm.slot_end;
		/* Paid now so that a failover never pays it: see the overlay. */
		epoch_index(ep);
		for (size_t i = 0; i < ep->nent; i++)
			pend_cnt_add(sb, ep->ent[i].region, ep->ent[i].page, 1);
		ep->next = NULL;
		if (sb->pend_tail)
			sb->pend_tail->next = ep;
		else
			sb->pend_head = ep;
		sb->pend_tail = ep;
		sb->pending_pages += ep->npages_staged;
		sb->pending_epochs++;
	}
	if (sb->state == FTR_STATE_SYNCING) {
		sb->state = FTR_STATE_PROTECTED;
		pr_info("initial sync committed: standby is protected");
	}
	pthread_cond_broadcast(&sb->cv);
	pthread_mutex_unlock(&sb->lock);

	/* Guarantee 2: the ACK leaves only now, after the commit point. */
	ret = ftr_send_simple(c->chan, FTR_REC_ACK, e, NULL);
	pthread_mutex_lock(&sb->lock);
	sb->commit_wait_ns_last = ftr_now_ns() - t0;
	pthread_mutex_unlock(&sb->lock);
	if (ret)
		snprintf(msg, mlen, "sending ACK %" PRIu64 ": %s", e, strerror(-ret));
	return ret;
proto:
	pthread_mutex_unlock(&sb->lock);
	return -EPROTO;
}

/* Is this record type allowed on this channel? */
static bool type_allowed(int channel, unsigned type)
{
	switch (type) {
	case FTR_REC_HEARTBEAT:
	case FTR_REC_BYE:
	case FTR_REC_ERROR:
		return true;
	case FTR_REC_BLOB:
	case FTR_REC_COMMIT:
		return channel == FTR_CHAN_CONTROL;
	case FTR_REC_PAGES:
	case FTR_REC_ZERO_PAGES:
		return channel != FTR_CHAN_CONTROL;
	default:
		return false;
	}
}

/* Handles one record. Returns 0 to go on, 1 on an orderly end (BYE),
 * -errno with msg set on failure. */
static int on_record(struct sb_conn *c, const struct ftr_wire_hdr *hdr, char *msg, size_t mlen)
{
	struct ftr_standby *sb = c->sb;
	struct ftr_wire_error werr;

	if (ftr_wire_decode_body(c->head, hdr, c->head + FTR_WIRE_HDR_LEN, &sb->lim, c->rec,
				 &werr)) {
		snprintf(msg, mlen, "%s", werr.msg);
		return -EPROTO;
	}
	if (!type_allowed(c->channel, hdr->type)) {
		snprintf(msg, mlen, "unexpected %s on %s channel", ftr_rec_type_name(hdr->type),
			 c->channel == FTR_CHAN_CONTROL ? "the control" : "a data");
		return -EPROTO;
	}
	switch (hdr->type) {
	case FTR_REC_PAGES:
		return on_pages(c, hdr, msg, mlen);
	case FTR_REC_ZERO_PAGES:
		return on_zero_pages(c, hdr, msg, mlen);
	case FTR_REC_BLOB:
		return on_blob(c, hdr, msg, mlen);
	case FTR_REC_COMMIT:
		return on_commit(c, hdr, msg, mlen);
	case FTR_REC_HEARTBEAT:
		return 0;
	case FTR_REC_BYE:
		return 1;
	case FTR_REC_ERROR:
		snprintf(msg, mlen, "primary reported error %d: %.200s", c->rec->u.error.code,
			 c->rec->u.error.msg);
		return -ECONNABORTED;
	}
	return 0;
}

static void *conn_main(void *arg)
{
	struct sb_conn *c = arg;
	struct ftr_standby *sb = c->sb;
	struct ftr_wire_error werr;
	struct ftr_wire_hdr hdr;
	char msg[320];
	ssize_t n;
	int ret;

	ftr_thread_name("ftr-sb-conn");

	if (handshake(c))
		goto out;
	if (c->channel > FTR_CHAN_CONTROL) {
		/* A one-sided transport (RDMA) then writes each page straight
		 * into the slot its PAGES record names; before this lands, or
		 * if it fails, pages come two-sided, just as correct. */
		ret = ftr_chan_reg_mem(c->chan, sb->staging, sb->staging_bytes, FTR_MR_STAGING,
				       &c->staging_mr);
		if (ret) {
			c->staging_mr = NULL;
			pr_warn("data channel %d: staging not registered for one-sided writes "
				"(%s); pages arrive two-sided", c->channel, strerror(-ret));
		}
	}

	while (!atomic_load(&sb->stop)) {
		n = ftr_chan_recv_head(c->chan, c->head, FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY, &hdr,
				       SB_POLL_MS, &werr);
		if (n == -EAGAIN)
			continue;
		if (n == -ESHUTDOWN)
			break;
		if (n < 0) {
			if (n == -EPROTO)
				snprintf(msg, sizeof(msg), "%s", werr.msg);
			else if (n == -ENOTCONN)
				snprintf(msg, sizeof(msg), "connection closed without BYE");
			else if (n == -ECONNRESET || n == -EPIPE)
				snprintf(msg, sizeof(msg), "connection closed without BYE (reset)");
			else if (n == -ETIMEDOUT)
				snprintf(msg, sizeof(msg), "record stalled mid-way for %d ms",
					 sb->o.stall_timeout_ms);
			else
				snprintf(msg, sizeof(msg), "%s", strerror((int)-n));
			session_fail(sb, c->sess_seq, "channel %d (%s): %s", c->channel,
				     ftr_chan_peer(c->chan), msg);
			break;
		}
		pthread_mutex_lock(&sb->lock);
		if (sb->sess_seq == c->sess_seq)
			sb->last_rx_ns = ftr_now_ns();
		pthread_mutex_unlock(&sb->lock);

		msg[0] = '\0';
		ret = on_record(c, &hdr, msg, sizeof(msg));
		if (ret == 1) {
			pthread_mutex_lock(&sb->lock);
			if (sb->sess_active && sb->sess_seq == c->sess_seq) {
				pr_info("primary said BYE on channel %d; committed epoch %" PRIu64,
					c->channel, sb->committed);
				session_end_locked(sb, true, "BYE");
			}
			pthread_mutex_unlock(&sb->lock);
			break;
		}
		if (ret == -ESHUTDOWN)
			break;
		if (ret < 0) {
			session_fail_tell(sb, c->sess_seq, ret == -EPROTO ? c->chan : NULL,
					  "channel %d (%s): %s", c->channel, ftr_chan_peer(c->chan),
					  msg);
			break;
		}
	}
out:
	ftr_chan_shutdown(c->chan);
	atomic_store(&c->done, true);
	conn_put(c);
	return NULL;
}

/* ---- listener, monitor ---------------------------------------------------------- */

static void reap_conns(struct ftr_standby *sb, bool all)
{
	struct sb_conn **pp = &sb->conns;

	while (*pp) {
		struct sb_conn *c = *pp;

		if (all || atomic_load(&c->done)) {
			if (all)
				ftr_chan_shutdown(c->chan);
			pthread_join(c->thread, NULL);
			*pp = c->next;
			conn_put(c);
		} else {
			pp = &c->next;
		}
	}
}

static void *listener_main(void *arg)
{
	struct ftr_standby *sb = arg;

	ftr_thread_name("ftr-sb-listen");

	while (!atomic_load(&sb->stop)) {
		struct ftr_chan *chan;
		struct sb_conn *c;
		int ret;

		reap_conns(sb, false);
		ret = ftr_tp_accept(sb->listener, SB_POLL_MS, &chan);
		if (ret == -EAGAIN || ret == -EINTR)
			continue;
		if (ret == -ESHUTDOWN)
			break;
		if (ret) {
			pr_warn("accept: %s", strerror(-ret));
			usleep(100 * 1000);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c) {
			c->rec = malloc(sizeof(*c->rec));
			c->head = malloc(FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY);
		}
		if (!c || !c->rec || !c->head) {
			pr_err("out of memory for a connection from %s", ftr_chan_peer(chan));
			if (c) {
				free(c->rec);
				free(c->head);
			}
			free(c);
			ftr_chan_close(chan);
			continue;
		}
		c->sb = sb;
		c->chan = chan;
		c->channel = -1;
		atomic_init(&c->refs, 2); /* the list and the thread */
		ftr_chan_set_stall_timeout(chan, sb->o.stall_timeout_ms);
		if (pthread_create(&c->thread, NULL, conn_main, c)) {
			pr_err("cannot start a connection thread");
			atomic_store(&c->refs, 1);
			conn_put(c);
			continue;
		}
		c->next = sb->conns;
		sb->conns = c;
	}
	reap_conns(sb, true);
	return NULL;
}

static void *monitor_main(void *arg)
{
	struct ftr_standby *sb = arg;
	uint64_t last_hb = 0;
	int tick = FTR_MIN(sb->o.heartbeat_ms, 50);

	ftr_thread_name("ftr-sb-monitor");

	while (!atomic_load(&sb->stop)) {
		struct sb_conn *ctl = NULL;
		struct ftr_rec rec;
		uint64_t now, seq;
		bool silent;

		usleep((useconds_t)tick * 1000);
		pthread_mutex_lock(&sb->lock);
		/* Sampled under the lock: a session that starts concurrently sets
		 * last_rx_ns, which must never be ahead of now. */
		now = ftr_now_ns();
		seq = sb->sess_seq;
		silent = sb->sess_active && now > sb->last_rx_ns &&
			 now - sb->last_rx_ns > (uint64_t)sb->o.failover_timeout_ms * 1000000ull;
		if (sb->sess_active && now - last_hb >= (uint64_t)sb->o.heartbeat_ms * 1000000ull) {
			ctl = ctl_get_locked(sb);
			memset(&rec, 0, sizeof(rec));
			rec.u.heartbeat.time_ns = now;
			rec.u.heartbeat.committed = sb->committed;
			rec.u.heartbeat.acked = FTR_EPOCH_NONE;
			last_hb = now;
		}
		pthread_mutex_unlock(&sb->lock);
		if (ctl) {
			ftr_send_simple(ctl->chan, FTR_REC_HEARTBEAT, 0, &rec);
			conn_put(ctl);
		}
		if (silent)
			session_fail(sb, seq, "no record from the primary for %d ms (failover timeout)",
				     sb->o.failover_timeout_ms);
	}
	return NULL;
}

/* ---- create / start / stop -------------------------------------------------------- */

static int map_cache(struct ftr_standby *sb, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (sb->o.cache_file) {
		fd = open(sb->o.cache_file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0) {
			snprintf(err, errlen, "cannot open cache file %s: %s", sb->o.cache_file,
				 strerror(errno));
			return -errno;
		}
		if (fstat(fd, &st) == 0 && (uint64_t)st.st_size < sb->cache_size &&
		    ftruncate(fd, (off_t)sb->cache_size)) {
			int e = errno;

			snprintf(err, errlen, "cannot size cache file %s to %" PRIu64 " bytes: %s",
				 sb->o.cache_file, sb->cache_size, strerror(e));
			close(fd);
			return -e;
		}
	} else {
		fd = memfd_create("ftrepl-cache", MFD_CLOEXEC);
		if (fd < 0) {
			snprintf(err, errlen, "memfd_create: %s", strerror(errno));
			return -errno;
		}
		if (ftruncate(fd, (off_t)sb->cache_size)) {
			int e = errno;

			snprintf(err, errlen, "cannot size the %" PRIu64 "-byte cache: %s",
				 sb->cache_size, strerror(e));
			close(fd);
			return -e;
		}
	}
	sb->cache = mmap(NULL, sb->cache_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (sb->cache == MAP_FAILED) {
		int e = errno;

		sb->cache = NULL;
		snprintf(err, errlen, "cannot map the %" PRIu64 "-byte cache: %s", sb->cache_size,
			 strerror(e));
		close(fd);
		return -e;
	}
	sb->cache_fd = fd;
	return 0;
}

int ftr_standby_create(const struct ftr_standby_opts *opts, struct ftr_standby **out,
		       char *err, size_t errlen)
{
	struct ftr_standby *sb;
	char dummy[8];
	int ret;

	if (!err) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (!opts->listen || !opts->cache_size) {
		snprintf(err, errlen, "a listen address and a cache size are required");
		return -EINVAL;
	}
	sb = calloc(1, sizeof(*sb));
	if (!sb)
		return -ENOMEM;
	sb->o = *opts;
	ftr_strlcpy(sb->listen_addr, opts->listen, sizeof(sb->listen_addr));
	sb->o.listen = sb->listen_addr;
	if (!sb->o.staging_size)
		sb->o.staging_size = FTR_MIN(FTR_DEFAULT_STAGING, opts->cache_size);
	if (!sb->o.failover_timeout_ms)
		sb->o.failover_timeout_ms = FTR_DEFAULT_FAILOVER_MS;
	if (!sb->o.heartbeat_ms)
		sb->o.heartbeat_ms = FTR_DEFAULT_HEARTBEAT_MS;
	if (!sb->o.stall_timeout_ms)
		sb->o.stall_timeout_ms = FTR_DEFAULT_STALL_MS;
	if (!sb->o.handshake_timeout_ms)
		sb->o.handshake_timeout_ms = FTR_DEFAULT_HANDSHAKE_MS;
	sb->cache_size = opts->cache_size;
	sb->cache_fd = -1;
	sb->state = FTR_STATE_CONNECTING;
	sb->committed = FTR_EPOCH_NONE;
	sb->applied = FTR_EPOCH_NONE;
	pthread_mutex_init(&sb->lock, NULL);
	pthread_mutex_init(&sb->apply_lock, NULL);
	ftr_cond_init_monotonic(&sb->cv);

	ret = map_cache(sb, err, errlen);
	if (ret)
		goto out_free;
	sb->staging_bytes = sb->o.staging_size & ~(uint64_t)(FTR_WIRE_MIN_PAGE - 1);
	if (sb->staging_bytes < FTR_WIRE_MIN_PAGE) {
		snprintf(err, errlen, "staging of %" PRIu64 " bytes is less than one page",
			 sb->o.staging_size);
		ret = -EINVAL;
		goto out_unmap_cache;
	}
	/* Prefaulted: payloads land here at line rate. */
	sb->staging = mmap(NULL, sb->staging_bytes, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (sb->staging == MAP_FAILED) {
		ret = -errno;
		sb->staging = NULL;
		snprintf(err, errlen, "cannot map %" PRIu64 " bytes of staging: %s",
			 sb->staging_bytes, strerror(-ret));
		goto out_unmap_cache;
	}
	/* Untouched pages of it cost nothing; without it, every fault of a
	 * resume probes every pending epoch. */
	sb->pend_cnt_n = sb->cache_size / FTR_WIRE_MIN_PAGE;
	sb->pend_cnt = mmap(NULL, sb->pend_cnt_n * sizeof(uint16_t), PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sb->pend_cnt == MAP_FAILED) {
		sb->pend_cnt = NULL;
		sb->pend_cnt_n = 0;
	}
	ret = ftr_tp_listen(&sb->o.tp, sb->o.listen, &sb->listener);
	if (ret) {
		snprintf(err, errlen, "cannot listen on %s: %s", sb->o.listen, strerror(-ret));
		goto out_unmap_staging;
	}
	*out = sb;
	return 0;

out_unmap_staging:
	if (sb->pend_cnt)
		munmap(sb->pend_cnt, sb->pend_cnt_n * sizeof(uint16_t));
	munmap(sb->staging, sb->staging_bytes);
out_unmap_cache:
	if (sb->cache)
		munmap(sb->cache, sb->cache_size);
	if (sb->cache_fd >= 0)
		close(sb->cache_fd);
out_free:
	pthread_mutex_destroy(&sb->lock);
	pthread_mutex_destroy(&sb->apply_lock);
	pthread_cond_destroy(&sb->cv);
	free(sb);
	return ret;
}

uint16_t ftr_standby_port(const struct ftr_standby *sb)
{
	return ftr_listener_port(sb->listener);
}

int ftr_standby_start(struct ftr_standby *sb)
{
	int ret;

	if (sb->started)
		return -EALREADY;
	ret = -pthread_create(&sb->applier_th, NULL, applier_main, sb);
	if (ret)
		return ret;
	ret = -pthread_create(&sb->monitor_th, NULL, monitor_main, sb);
	if (ret)
		goto out_applier;
	ret = -pthread_create(&sb->listener_th, NULL, listener_main, sb);
	if (ret)
		goto out_monitor;
	sb->started = true;
	pr_info("listening on %s (port %u), cache %" PRIu64 " bytes, staging %" PRIu64 " bytes",
		sb->o.listen, ftr_standby_port(sb), sb->cache_size, sb->staging_bytes);
	return 0;

out_monitor:
	atomic_store(&sb->stop, true);
	pthread_join(sb->monitor_th, NULL);
out_applier:
	atomic_store(&sb->stop, true);
	pthread_join(sb->applier_th, NULL);
	return ret;
}

void ftr_standby_stop(struct ftr_standby *sb)
{
	if (!sb->started)
		return;
	sb->started = false;
	atomic_store(&sb->stop, true);
	ftr_listener_shutdown(sb->listener);
	pthread_mutex_lock(&sb->lock);
	if (sb->sess_active) {
		/* Stopping is not a failure of the primary: keep the image as
		 * it is (committed epochs stay committed) without promoting. */
		bool was_fenced = sb->fenced;
		enum ftr_state st = sb->state;

		session_end_locked(sb, true, "standby stopping");
		sb->fenced = was_fenced;
		if (st == FTR_STATE_PROMOTED)
			sb->state = st;
	}
	pthread_cond_broadcast(&sb->cv);
	pthread_mutex_unlock(&sb->lock);
	pthread_join(sb->listener_th, NULL);
	pthread_join(sb->monitor_th, NULL);
	pthread_join(sb->applier_th, NULL);
}

void ftr_standby_destroy(struct ftr_standby *sb)
{
	if (!sb)
		return;
	ftr_standby_stop(sb);
	reap_conns(sb, true);
	discard_inflight(sb);
	if (atomic_load(&sb->overlay)) {
		struct sb_overlay *ov = atomic_load(&sb->overlay);

		/* A resume froze every pending epoch into the overlay and no
		 * epoch was committed after it (fenced): it owns them all. */
		for (size_t k = 0; k < ov->neps; k++)
			epoch_free(ov->eps[k]);
		free(ov->eps);
		free(ov);
		sb->pend_head = NULL;
	}
	while (sb->pend_head) {
		struct sb_epoch *ep = sb->pend_head;

		sb->pend_head = ep->next;
		epoch_free(ep);
	}
	ftr_listener_close(sb->listener);
	if (sb->pend_cnt)
		munmap(sb->pend_cnt, sb->pend_cnt_n * sizeof(uint16_t));
	munmap(sb->staging, sb->staging_bytes);
	munmap(sb->cache, sb->cache_size);
	close(sb->cache_fd);
	free(sb->slot_owner);
	free(sb->blob);
	pthread_mutex_destroy(&sb->lock);
	pthread_mutex_destroy(&sb->apply_lock);
	pthread_cond_destroy(&sb->cv);
	free(sb);
}

/* ---- queries ------------------------------------------------------------------------ */

int ftr_standby_wait_state(struct ftr_standby *sb, unsigned mask, int timeout_ms)
{
	uint64_t end = ftr_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
	int ret;

	pthread_mutex_lock(&sb->lock);
	for (;;) {
		if (mask & (1u << sb->state)) {
			ret = (int)sb->state;
			break;
		}
		if (timeout_ms >= 0 && ftr_now_ms() >= end) {
			ret = -ETIMEDOUT;
			break;
		}
		struct timespec dl = ftr_deadline_ms(50);

		pthread_cond_timedwait(&sb->cv, &sb->lock, &dl);
	}
	pthread_mutex_unlock(&sb->lock);
	return ret;
}

int ftr_standby_get_status(struct ftr_standby *sb, struct ftr_standby_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&sb->lock);
	st->state = sb->state;
	if (sb->sess_seq)
		uuid_unparse_lower(sb->session, st->session);
	st->generation = sb->generation;
	st->committed = sb->committed;
	st->applied = sb->applied;
	st->pending_pages = atomic_load(&sb->overlay) ? atomic_load(&atomic_load(&sb->overlay)->remaining)
						   : sb->pending_pages;
	st->pending_epochs = sb->pending_epochs;
	st->promoted_ns = sb->promoted_ns;
	if (atomic_load(&sb->overlay)) {
		st->resume_pending_at_start = atomic_load(&sb->overlay)->n;
		st->resume_applied_on_demand = atomic_load(&atomic_load(&sb->overlay)->on_demand);
	}
	st->channels = sb->nconnected;
	st->nchannels = sb->sess_seq ? sb->hello.nchannels : 0;
	st->staging_slots = sb->nslots;
	st->staging_used = sb->slots_used;
	st->cache_size = sb->cache_size;
	st->image_size = sb->image_size;
	st->nregions = sb->sess_seq ? sb->hello.nregions : 0;
	st->page_size = sb->page_size;
	st->pages_received = sb->pages_received;
	st->zero_pages = sb->zero_pages;
	st->bytes_received = sb->bytes_received;
	st->epochs_committed = sb->epochs_committed;
	st->epochs_discarded = sb->epochs_discarded;
	st->commit_wait_ns_last = sb->commit_wait_ns_last;
	st->blob_len = sb->blob_len;
	st->sessions_rejected = sb->sessions_rejected;
	/* Cumulative: channels of ended sessions were added when closed. */
	st->rx_syscalls = sb->rx_syscalls_closed;
	st->rx_placed_bytes = sb->rx_placed_closed;
	for (int i = 0; i <= FTR_WIRE_MAX_CHANNELS; i++) {
		struct sb_conn *c = i ? sb->data[i] : sb->ctl;

		if (c) {
			st->rx_syscalls += chan_rx_syscalls(c);
			st->rx_placed_bytes += chan_rx_placed(c);
		}
	}
	st->last_rx_ms_ago = sb->sess_active ? (ftr_now_ns() - sb->last_rx_ns) / 1000000ull : 0;
	ftr_strlcpy(st->peer, sb->peer, sizeof(st->peer));
	ftr_strlcpy(st->last_error, sb->last_error, sizeof(st->last_error));
	ftr_strlcpy(st->promote_reason, sb->promote_reason, sizeof(st->promote_reason));
	pthread_mutex_unlock(&sb->lock);
	return 0;
}

int ftr_standby_dump(struct ftr_standby *sb, int fd, uint64_t *epoch)
{
	uint64_t e;
	int ret;

	pthread_mutex_lock(&sb->apply_lock);
	e = drain_committed(sb);
	if (e == FTR_EPOCH_NONE) {
		ret = -ENODATA;
	} else {
		/* Later commits only append to the pending queue while we hold
		 * apply_lock: the cache stays exactly epoch e during the write. */
		ret = ftr_write_all(fd, sb->cache, sb->image_size);
	}
	pthread_mutex_unlock(&sb->apply_lock);
	if (!ret && epoch)
		*epoch = e;
	send_credit(sb);
	return ret;
}

int ftr_standby_verify(struct ftr_standby *sb, const struct ftr_synth_spec *expect,
		       struct ftr_synth_verdict *v, uint64_t *epoch)
{
	uint64_t e;
	int ret;

	pthread_mutex_lock(&sb->apply_lock);
	e = drain_committed(sb);
	if (e == FTR_EPOCH_NONE) {
		ret = -ENODATA;
	} else if (sb->hello.nregions != 1) {
		ret = -EOPNOTSUPP;
	} else {
		ret = ftr_synth_verify(sb->cache, sb->hello.regions[0].size, expect, v);
	}
	pthread_mutex_unlock(&sb->apply_lock);
	if (epoch)
		*epoch = e;
	send_credit(sb);
	return ret;
}
