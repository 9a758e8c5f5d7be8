/* SPDX-License-Identifier: MIT */
/*
 * Migration source: precopy rounds, the switch, and serving postcopy (the
 * protocol is in include/ftrepl/migrate.h).
 *
 * Threads (one set per connection "incarnation"; a postcopy reconnection
 * joins them all and starts a new set):
 *   - the caller of ftr_migrate_src_run() ("main"): connects, runs the
 *     rounds (pause, harvest, decide, resume), switches, then waits for the
 *     end of postcopy and reconnects when the connection breaks;
 *   - "control": reads ACK / BYE / ERROR / HEARTBEAT, sends heartbeats,
 *     notices a silent destination;
 *   - "urgent": reads FAULT_REQ, checks it and answers with the pages on the
 *     urgent channel at once (never behind background pages);
 *   - one "tx" thread per data channel: sends its stripe of a precopy round,
 *     or pushes postcopy pages picked outwards from the latest fault.
 *
 * Page sets (global page numbering of migrate_proto.h):
 *   stale   precopy: pages whose current content has not been sent. Round r
 *           sends (and clears) them; the harvest after it sets what the
 *           workload wrote meanwhile. Each stripe's words belong to one tx
 *           thread during a round, and the main thread harvests only
 *           between rounds, so no lock is needed.
 *   push    postcopy: pages the destination may still lack and that were
 *           neither pushed nor asked for on this connection (push_lock).
 *           A reconnection replaces it with the destination's own bitmap.
 *
 * Nothing sent after the switch can be older than the switch: the workload
 * is paused for good at the switch, so its memory is the final image, and
 * every postcopy page is read from it.
 */
#define FTR_LOG_PREFIX "migrate-src"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <ftrepl/migrate.h>

#include "checkpoint/migrate_proto.h"
#include "checkpoint/session.h"
#include "checkpoint/workload.h"
#include "common/common.h"
#include "uffd/track.h"

#define MS_PAUSE_TIMEOUT_MS 5000
#define MS_URGENT_IDLE_MS 200
/* A rate measured on fewer than MS_MIN_BW_BYTES of payload (a round's or
 * a window's) is no measure of the link: an image of mostly fill pages
 * sends few bytes in a round's time. Postcopy is then paced by nothing
 * rather than by such a rate. */
#define MS_MIN_BW_BYTES (4ull << 20)
#define MS_PROBE_MS 50			/* dirty-rate probe into a round */
/* Hybrid: the link's rate is measured over [MS_BW_FROM_MS, +MS_BW_SPAN_MS]
 * of a round (past the burst that fills the socket buffers) to decide
 * early whether the round can pay off at all. */
#define MS_BW_FROM_MS 150
#define MS_BW_SPAN_MS 300
/* Before that window, every MS_CUT_STEP_MS the round's average rate so far
 * (burst included: never below the link's rate) is checked against the
 * dirty rate (MS_PAYOFF_DIV below): a round that cannot pay off even at
 * that rate is cut at once. */
#define MS_CUT_STEP_MS 25
/* Hybrid: a round pays off only while the workload dirties memory slower
 * than 1/MS_PAYOFF_DIV of the rate the link moves it. A round that sends
 * the stale set in time T while the workload dirties r_d bytes/s leaves up
 * to r_d * T of it to send again; at r_d >= r_link / 2 that is half or more
 * of what the round sent, and postcopy moves every page once. */
#define MS_PAYOFF_DIV FTR_MIG_HYBRID_PAYOFF_DIV
/* Postcopy: background pages go out at this share of the link's rate, so
 * that the link's queue stays short and a fault's request and its pages
 * (the urgent channel) never wait behind a queue of pushed pages. The
 * pushed pages leave in bursts (the kernel's pacing sends ~1 ms of data
 * at a time per connection), so the share is a trade between the push's
 * speed and the faults' wait. Measured on a tbf-shaped 1 Gbit/s veth with
 * two data channels: at 90 % a page request's reply waited 250-500 us in
 * the link's queue in 4 of 7 runs (fault median 101-490 us); at 85 %
 * 60-72 us (median 73-84 us in 7 of 7 runs, p99 0.7-0.9 ms; pure postcopy
 * at a low dirty rate 9.8 s against 9.1-9.3 s at 90 %); at 80 % about the
 * same medians, 10.4 s. */
#define MS_PUSH_SHARE_PCT 85

enum ms_job { MS_JOB_NONE, MS_JOB_ROUND, MS_JOB_PUSH, MS_JOB_EXIT };

struct ms_tx {
	struct ftr_migrate_src *src;
	unsigned idx;			/* data channel 1..N */
	pthread_t th;
	bool started;
	uint64_t seen_gen;
	struct mig_builder b;
};

struct ftr_migrate_src {
	struct ftr_migrate_src_opts o;
	char connect_addr[256];
	struct ftr_workload *wl;
	struct mig_layout lay;
	struct ftr_wire_limits lim;
	uint32_t nch;
	uint8_t session[16];
	uint64_t generation;
	uint64_t features;		/* accepted by the destination */
	struct ftr_track *track;
	uint64_t **maps;		/* harvest maps, one per region */

	pthread_mutex_t lock;
	pthread_cond_t cv;
	/* under lock */
	enum ftr_migrate_phase phase;
	bool failed;
	char err[256];
	bool lost;			/* this incarnation broke (postcopy) */
	char lost_why[192];
	bool switch_sent;		/* COMMIT(s) on its way: never resume here */
	bool completed;			/* the destination said BYE(SWITCHED) */
	uint64_t acked;			/* last ACK, FTR_EPOCH_NONE */
	uint64_t last_rx_ns;
	uint64_t switch_round;
	atomic_bool switch_req;
	atomic_bool abort_req;
	atomic_bool round_cut;		/* hybrid: this round cannot pay off, stop it */
	_Atomic uint64_t round_bytes;	/* payload sent in the current round so far */
	bool cut_for_rate;		/* main only: the last round was cut so */

	/* the connection (set by main between incarnations; threads read) */
	uint64_t inc;
	struct ftr_chan *ctl, *urg;
	struct ftr_chan *data[FTR_WIRE_MAX_CHANNELS + 1];
	pthread_t ctl_th, urg_th;
	bool ctl_started, urg_started;
	struct ms_tx tx[FTR_WIRE_MAX_CHANNELS];
	struct mig_builder *ub;		/* the urgent thread's builder */

	/* tx jobs (under lock) */
	enum ms_job job;
	uint64_t job_gen;
	unsigned jobs_running;
	bool job_stable;		/* round: the workload is paused */

	/* page sets */
	uint64_t *stale;
	uint64_t *push;
	uint64_t *probe;		/* dirty-rate probe of the round (main only) */
	uint64_t probe_bps;
	uint64_t bw_sample;		/* payload bytes of the round bw_bps was measured on (main only) */
	bool bw_paces;			/* bw_bps rests on enough bytes to pace postcopy by (lock) */
	uint64_t push_pace_bps;		/* the automatic postcopy cap in force, 0 = none (lock) */
	pthread_mutex_t push_lock;
	uint64_t n_push;		/* under push_lock */
	uint64_t pivot, fwd, bwd;	/* push cursors, under push_lock */
	bool pivot_new, back;
	uint64_t bw_t0, bw_bytes;	/* pace(): precopy_bw, push_cap; under push_lock */
	_Atomic uint64_t push_cap;	/* automatic push cap (bytes/s) paced here when
					 * the transport cannot pace; 0: none */

	/* counters */
	_Atomic uint64_t precopy_pages, pushed_pages, requested_pages, bytes_sent, fault_reqs;
	/* under lock */
	uint32_t round;
	uint64_t dirty_bps, bw_bps, est_ms, stale_left;
	uint64_t t_start, t_pause, t_running, t_done;
	uint32_t recoveries;
	uint64_t k_at_switch;
	char transport[32];
};

static void ms_fail(struct ftr_migrate_src *s, const char *fmt, ...) FTR_PRINTF(2, 3);

/* Wakes every thread blocked on a channel of this incarnation. Under lock. */
static void shutdown_chans_locked(struct ftr_migrate_src *s)
{
	if (s->ctl)
		ftr_chan_shutdown(s->ctl);
	if (s->urg)
		ftr_chan_shutdown(s->urg);
	for (uint32_t i = 1; i <= s->nch; i++)
		if (s->data[i])
			ftr_chan_shutdown(s->data[i]);
}

static void ms_fail(struct ftr_migrate_src *s, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->lock);
	if (!s->failed && !s->completed) {
		s->failed = true;
		va_start(ap, fmt);
		vsnprintf(s->err, sizeof(s->err), fmt, ap);
		va_end(ap);
		pr_err("%s", s->err);
		s->phase = FTR_MIG_FAILED;
		shutdown_chans_locked(s);
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

/* The connection of incarnation inc broke (err: the transport's). Before
 * the switch that ends the migration; after it, main reconnects. */
static void ms_conn_lost(struct ftr_migrate_src *s, uint64_t inc, int err, const char *fmt, ...)
	FTR_PRINTF(4, 5);
static void ms_conn_lost(struct ftr_migrate_src *s, uint64_t inc, int err, const char *fmt, ...)
{
	char why[192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&s->lock);
	if (s->inc != inc || s->lost || s->failed || s->completed) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	if (!s->switch_sent || !mig_err_is_conn(err)) {
		bool before = !s->switch_sent;

		pthread_mutex_unlock(&s->lock);
		ms_fail(s, "%s%s", why, before ? " (before the switch: the migration is off, "
						 "the workload keeps running here)" : "");
		return;
	}
	s->lost = true;
	ftr_strlcpy(s->lost_why, why, sizeof(s->lost_why));
	pr_warn("connection lost in postcopy: %s; reconnecting", why);
	shutdown_chans_locked(s);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

/* True when the threads of incarnation inc should stop. */
static bool ms_stopping(struct ftr_migrate_src *s, uint64_t inc)
{
	bool r;

	pthread_mutex_lock(&s->lock);
	r = s->failed || s->lost || s->inc != inc;
	pthread_mutex_unlock(&s->lock);
	return r;
}

static const char *errname(int err)
{
	return err == -EAGAIN ? "timed out" : strerror(-err);
}

/* ---- control thread -------------------------------------------------------------- */

static void send_heartbeat(struct ftr_migrate_src *s, struct ftr_chan *c)
{
	struct ftr_rec rec;

	memset(&rec, 0, sizeof(rec));
	rec.u.heartbeat.time_ns = ftr_now_ns();
	pthread_mutex_lock(&s->lock);
	rec.u.heartbeat.committed = FTR_EPOCH_NONE;
	rec.u.heartbeat.acked = s->acked;
	pthread_mutex_unlock(&s->lock);
	ftr_send_simple(c, FTR_REC_HEARTBEAT, 0, &rec);
}

static void *ctl_main(void *arg)
{
	struct ftr_migrate_src *s = arg;
	uint8_t *head = malloc(MIG_HEAD_CAP);
	struct ftr_rec *rec = malloc(sizeof(*rec));
	uint64_t inc, last_hb = 0;
	struct ftr_chan *c;

	ftr_thread_name("ftr-ms-ctl");

	pthread_mutex_lock(&s->lock);
	inc = s->inc;
	c = s->ctl;
	s->last_rx_ns = ftr_now_ns();
	pthread_mutex_unlock(&s->lock);
	if (!head || !rec) {
		ms_fail(s, "out of memory in the control thread");
		goto out;
	}
	while (!ms_stopping(s, inc)) {
		struct ftr_wire_error werr;
		uint64_t now = ftr_now_ns(), silent;
		int ret;

		if (now - last_hb >= (uint64_t)s->o.heartbeat_ms * 1000000ull) {
			send_heartbeat(s, c);
			last_hb = now;
		}
		ret = mig_recv_rec(c, head, FTR_MIN(s->o.heartbeat_ms, 100), NULL, rec, &werr);
		if (ret == -EAGAIN) {
			pthread_mutex_lock(&s->lock);
			silent = ftr_now_ns() - s->last_rx_ns;
			pthread_mutex_unlock(&s->lock);
			if (silent > (uint64_t)s->o.timeout_ms * 1000000ull)
				ms_conn_lost(s, inc, -ETIMEDOUT, "destination silent for %d ms",
					     s->o.timeout_ms);
			continue;
		}
		if (ret == -EPROTO) {
			ms_fail(s, "bad record from the destination on the control channel: %s",
				werr.msg);
			break;
		}
		if (ret) {
			if (ret != -ESHUTDOWN)
				ms_conn_lost(s, inc, ret, "control channel: %s",
					     ret == -ENOTCONN ? "closed by the destination" : errname(ret));
			break;
		}
		pthread_mutex_lock(&s->lock);
		s->last_rx_ns = ftr_now_ns();
		pthread_mutex_unlock(&s->lock);
		switch (rec->hdr.type) {
		case FTR_REC_HEARTBEAT:
			break;
		case FTR_REC_ACK:
			pthread_mutex_lock(&s->lock);
			s->acked = rec->hdr.seq;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->lock);
			break;
		case FTR_REC_BYE:
			pthread_mutex_lock(&s->lock);
			if (rec->u.bye.reason == FTR_BYE_SWITCHED && s->switch_sent &&
			    s->acked == s->switch_round && !s->failed) {
				s->completed = true;
				pthread_cond_broadcast(&s->cv);
				pthread_mutex_unlock(&s->lock);
				goto out;
			}
			pthread_mutex_unlock(&s->lock);
			ms_fail(s, "destination said BYE (reason %u) before it held every page",
				rec->u.bye.reason);
			break;
		case FTR_REC_ERROR:
			ms_fail(s, "destination reported: %s", rec->u.error.msg);
			break;
		default:
			ms_fail(s, "unexpected %s from the destination on the control channel",
				ftr_rec_type_name(rec->hdr.type));
			break;
		}
		if (rec->hdr.data_len && ftr_chan_skip_data(c, rec->hdr.data_len))
			ms_conn_lost(s, inc, -ECONNRESET, "control channel: short data part");
	}
out:
	free(head);
	free(rec);
	return NULL;
}

/* ---- postcopy page sets -------------------------------------------------------------- */

/* Collects up to max set bits of push upwards from the forward cursor,
 * within one region. Under push_lock. */
static unsigned pick_fwd(struct ftr_migrate_src *s, uint32_t *region, uint64_t *pages,
			 unsigned max)
{
	const struct mig_layout *l = &s->lay;
	size_t nw = ftr_bitmap_words(l->bits);
	uint64_t g = s->fwd, end;
	unsigned n = 0;
	int r;

	for (;;) {
		size_t w = g >> 6;
		uint64_t bits;

		if (g >= l->bits)
			return 0;
		bits = s->push[w] & (~0ull << (g & 63));
		while (!bits && ++w < nw)
			bits = s->push[w];
		if (!bits) {
			s->fwd = l->bits;
			return 0;
		}
		g = ((uint64_t)w << 6) + (uint64_t)__builtin_ctzll(bits);
		break;
	}
	r = mig_layout_region(l, g);
	if (r < 0)
		return 0;
	end = l->g0[r] + l->npages[r];
	for (; g < end && n < max; g++) {
		if (!(g & 63) && !s->push[g >> 6]) {
			g += 63;
			continue;
		}
		if (ftr_bit_test(s->push, g)) {
			ftr_bit_clear(s->push, g);
			pages[n++] = g - l->g0[r];
		}
	}
	s->fwd = g;
	*region = (uint32_t)r;
	return n;
}

/* The same downwards from the backward cursor (pages come out ascending). */
static unsigned pick_bwd(struct ftr_migrate_src *s, uint32_t *region, uint64_t *pages,
			 unsigned max)
{
	const struct mig_layout *l = &s->lay;
	uint64_t g = s->bwd, lo;
	unsigned n = 0;
	int r = -1;

	while (g > 0) {
		size_t w = (g - 1) >> 6;
		uint64_t bits = s->push[w];

		if (((g - 1) & 63) != 63)
			bits &= (2ull << ((g - 1) & 63)) - 1;
		if (!bits) {
			g = (uint64_t)w << 6;
			continue;
		}
		g = ((uint64_t)w << 6) + 63 - (uint64_t)__builtin_clzll(bits) + 1;
		r = mig_layout_region(l, g - 1);
		break;
	}
	if (r < 0) {
		s->bwd = 0;
		return 0;
	}
	lo = l->g0[r];
	for (; g > lo && n < max; g--) {
		if (!(g & 63) && g - 64 >= lo && !s->push[(g - 1) >> 6]) {
			g -= 63;
			continue;
		}
		if (ftr_bit_test(s->push, g - 1)) {
			ftr_bit_clear(s->push, g - 1);
			pages[n++] = g - 1 - lo;
		}
	}
	s->bwd = g;
	for (unsigned i = 0; i < n / 2; i++) {
		uint64_t t = pages[i];

		pages[i] = pages[n - 1 - i];
		pages[n - 1 - i] = t;
	}
	*region = (uint32_t)r;
	return n;
}

/* Picks the next pages to push, outwards from the latest fault (both
 * directions in turn), and takes them out of the push set. Returns the
 * count (0: nothing left). */
static unsigned pick_push(struct ftr_migrate_src *s, uint32_t *region, uint64_t *pages,
			  unsigned max)
{
	unsigned n = 0;

	pthread_mutex_lock(&s->push_lock);
	if (s->pivot_new) {
		s->fwd = s->bwd = s->pivot;
		s->pivot_new = false;
	}
	for (int tries = 0; s->n_push && !n && tries < 3; tries++) {
		n = s->back ? pick_bwd(s, region, pages, max) : pick_fwd(s, region, pages, max);
		s->back = !s->back;
		if (!n && tries == 1) {	/* both cursors ran out: sweep again */
			s->fwd = 0;
			s->bwd = 0;
			s->back = false;
		}
	}
	s->n_push -= n;
	pthread_mutex_unlock(&s->push_lock);
	return n;
}

/* precopy_bw / postcopy_bw: sleeps until sending bytes more keeps the
 * sum of every tx thread under the cap (bw bytes/s; 0: no cap). */
static void pace(struct ftr_migrate_src *s, uint64_t bw, uint64_t bytes)
{
	uint64_t due, now;

	if (!bw)
		return;
	pthread_mutex_lock(&s->push_lock);
	now = ftr_now_ns();
	if (!s->bw_t0 || now > s->bw_t0 + 100000000ull + s->bw_bytes * 1000000000ull / bw) {
		s->bw_t0 = now;	/* idle for a while: no burst credit */
		s->bw_bytes = 0;
	}
	due = s->bw_t0 + s->bw_bytes * 1000000000ull / bw;
	s->bw_bytes += bytes;
	pthread_mutex_unlock(&s->push_lock);
	while ((now = ftr_now_ns()) < due) {
		uint64_t ns = FTR_MIN(due - now, 20000000ull);
		struct timespec ts = { 0, (long)ns };

		nanosleep(&ts, NULL);
	}
}

static inline const uint8_t *page_addr(const struct ftr_migrate_src *s, uint32_t r, uint64_t page)
{
	return (const uint8_t *)s->wl->regions[r].base + page * s->lay.page_size;
}

/* ---- urgent thread ----------------------------------------------------------------- */

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Checks a FAULT_REQ against the session's state. Returns 0 or -EPROTO
 * with why in msg. (The decoder already checked region and page ranges.) */
static int check_fault_req(struct ftr_migrate_src *s, const struct ftr_fault_req *f, char *msg,
			   size_t mlen)
{
	uint64_t sorted[FTR_WIRE_MAX_FAULT];
	bool sent;

	pthread_mutex_lock(&s->lock);
	sent = s->switch_sent;
	pthread_mutex_unlock(&s->lock);
	if (!sent) {
		snprintf(msg, mlen, "FAULT_REQ for region %u page %" PRIu64 " before the switch",
			 f->region, f->page[0]);
		return -EPROTO;
	}
	memcpy(sorted, f->page, f->count * sizeof(sorted[0]));
	qsort(sorted, f->count, sizeof(sorted[0]), u64_cmp);
	for (uint32_t i = 1; i < f->count; i++) {
		if (sorted[i] == sorted[i - 1]) {
			snprintf(msg, mlen, "FAULT_REQ asks for region %u page %" PRIu64 " twice",
				 f->region, sorted[i]);
			return -EPROTO;
		}
	}
	return 0;
}

/* Answers a request: the faulted page in a record of its own (it is what a
 * thread waits for), then the window. */
static int serve_fault(struct ftr_migrate_src *s, struct ftr_chan *c, const struct ftr_fault_req *f)
{
	struct mig_builder *b = s->ub;
	uint64_t g0 = s->lay.g0[f->region], cleared = 0;
	int ret;

	pthread_mutex_lock(&s->push_lock);
	for (uint32_t i = 0; i < f->count; i++) {
		if (ftr_bit_test(s->push, g0 + f->page[i])) {
			ftr_bit_clear(s->push, g0 + f->page[i]);
			cleared++;
		}
	}
	s->n_push -= cleared;
	s->pivot = g0 + f->page[0];
	s->pivot_new = true;
	pthread_mutex_unlock(&s->push_lock);

	b->seq = s->switch_round;
	ret = mig_builder_add(b, c, f->region, f->page[0], page_addr(s, f->region, f->page[0]));
	if (!ret)
		ret = mig_builder_flush(b, c);
	for (uint32_t i = 1; i < f->count && !ret; i++)
		ret = mig_builder_add(b, c, f->region, f->page[i],
				      page_addr(s, f->region, f->page[i]));
	if (!ret)
		ret = mig_builder_flush(b, c);
	if (!ret) {
		atomic_fetch_add(&s->requested_pages, f->count);
		atomic_fetch_add(&s->fault_reqs, 1);
	}
	return ret;
}

static void *urg_main(void *arg)
{
	struct ftr_migrate_src *s = arg;
	uint8_t *head = malloc(MIG_HEAD_CAP);
	struct ftr_rec *rec = malloc(sizeof(*rec));
	struct ftr_chan *c;
	uint64_t inc, bytes0;

	ftr_thread_name("ftr-ms-urgent");

	pthread_mutex_lock(&s->lock);
	inc = s->inc;
	c = s->urg;
	pthread_mutex_unlock(&s->lock);
	if (!head || !rec) {
		ms_fail(s, "out of memory in the urgent thread");
		goto out;
	}
	while (!ms_stopping(s, inc)) {
		struct ftr_wire_error werr;
		char msg[192];
		int ret = mig_recv_rec(c, head, MS_URGENT_IDLE_MS, &s->lim, rec, &werr);

		if (ret == -EAGAIN)
			continue;
		if (ret == -EPROTO) {
			ftr_send_error(c, FTR_WERR_PROTOCOL, "urgent channel: %s", werr.msg);
			ms_fail(s, "bad record on the urgent channel: %s", werr.msg);
			break;
		}
		if (ret) {
			if (ret != -ESHUTDOWN)
				ms_conn_lost(s, inc, ret, "urgent channel: %s",
					     ret == -ENOTCONN ? "closed by the destination" : errname(ret));
			break;
		}
		if (rec->hdr.type == FTR_REC_HEARTBEAT)
			continue;
		if (rec->hdr.type != FTR_REC_FAULT_REQ) {
			ftr_send_error(c, FTR_WERR_PROTOCOL, "urgent channel carries FAULT_REQ only, got %s",
				       ftr_rec_type_name(rec->hdr.type));
			ms_fail(s, "unexpected %s on the urgent channel (FAULT_REQ only)",
				ftr_rec_type_name(rec->hdr.type));
			break;
		}
		if (check_fault_req(s, &rec->u.fault, msg, sizeof(msg))) {
			ftr_send_error(c, FTR_WERR_PROTOCOL, "%s", msg);
			ms_fail(s, "rejected a page request on the urgent channel: %s", msg);
			break;
		}
		bytes0 = s->ub->bytes;
		ret = serve_fault(s, c, &rec->u.fault);
		atomic_fetch_add(&s->bytes_sent, s->ub->bytes - bytes0);
		if (ret) {
			ms_conn_lost(s, inc, ret, "urgent channel: %s", errname(ret));
			break;
		}
	}
out:
	free(head);
	free(rec);
	return NULL;
}

/* ---- tx threads -------------------------------------------------------------------- */

/* Sends this thread's stripes of the stale set; a live round stops early
 * when a switch or an abort is asked for. */
static int tx_round(struct ms_tx *t, struct ftr_chan *c, bool stable)
{
	struct ftr_migrate_src *s = t->src;
	const struct mig_layout *l = &s->lay;
	uint64_t nstripes = FTR_DIV_ROUND_UP(l->bits, 1ull << MIG_STRIPE_SHIFT);
	uint64_t pages0 = t->b.npages + t->b.fills, bytes0 = t->b.bytes, live = bytes0;
	int ret = 0;

	t->b.crc = stable && (s->features & FTR_FEAT_DATA_CRC);
	for (uint64_t st = t->idx - 1; st < nstripes && !ret; st += s->nch) {
		uint64_t w0 = (st << MIG_STRIPE_SHIFT) >> 6;
		uint64_t w1 = FTR_MIN(((st + 1) << MIG_STRIPE_SHIFT) >> 6, ftr_bitmap_words(l->bits));

		if (!stable && (atomic_load(&s->switch_req) || atomic_load(&s->abort_req) ||
				atomic_load(&s->round_cut)))
			break;
		for (uint64_t w = w0; w < w1 && !ret; w++) {
			uint64_t bits = s->stale[w];
			int r;

			if (!bits)
				continue;
			r = mig_layout_region(l, w << 6);
			if (r < 0)	/* only padding in this word */
				r = mig_layout_region(l, (w << 6) + (uint64_t)__builtin_ctzll(bits));
			s->stale[w] = 0;
			if (!stable)
				pace(s, s->o.precopy_bw, (uint64_t)__builtin_popcountll(bits) *
							     l->page_size);
			while (bits && !ret) {
				uint64_t g = (w << 6) + (uint64_t)__builtin_ctzll(bits);

				bits &= bits - 1;
				ret = mig_builder_add(&t->b, c, (uint32_t)r, g - l->g0[r],
						      page_addr(s, (uint32_t)r, g - l->g0[r]));
			}
			atomic_fetch_add(&s->round_bytes, t->b.bytes - live);
			live = t->b.bytes;
		}
	}
	if (!ret)
		ret = mig_builder_flush(&t->b, c);
	if (!ret)
		ret = ftr_chan_flush(c);
	atomic_fetch_add(&s->precopy_pages, t->b.npages + t->b.fills - pages0);
	atomic_fetch_add(&s->bytes_sent, t->b.bytes - bytes0);
	return ret;
}

static int tx_push(struct ms_tx *t, struct ftr_chan *c, uint64_t inc)
{
	struct ftr_migrate_src *s = t->src;
	uint64_t pages[FTR_WIRE_MAX_BATCH];
	int ret = 0;

	t->b.crc = s->features & FTR_FEAT_DATA_CRC;
	t->b.seq = s->switch_round;
	while (!ret && !ms_stopping(s, inc) && !atomic_load(&s->abort_req)) {
		uint32_t region;
		unsigned n = pick_push(s, &region, pages, t->b.batch);
		uint64_t bytes0 = t->b.bytes;

		if (!n)
			break;
		pace(s, atomic_load(&s->push_cap), (uint64_t)n * s->lay.page_size);
		for (unsigned i = 0; i < n && !ret; i++)
			ret = mig_builder_add(&t->b, c, region, pages[i], page_addr(s, region, pages[i]));
		if (!ret)
			ret = mig_builder_flush(&t->b, c);
		if (!ret) {
			atomic_fetch_add(&s->pushed_pages, n);
			atomic_fetch_add(&s->bytes_sent, t->b.bytes - bytes0);
		}
	}
	if (!ret)
		ret = ftr_chan_flush(c);
	return ret;
}

static void *tx_main(void *arg)
{
	struct ms_tx *t = arg;
	struct ftr_migrate_src *s = t->src;
	struct ftr_chan *c;
	uint64_t inc;

	ftr_thread_name("ftr-ms-tx%u", t->idx);

	pthread_mutex_lock(&s->lock);
	inc = s->inc;
	c = s->data[t->idx];
	pthread_mutex_unlock(&s->lock);
	for (;;) {
		enum ms_job job;
		bool stable;
		int ret = 0;

		pthread_mutex_lock(&s->lock);
		while (s->job_gen == t->seen_gen)
			pthread_cond_wait(&s->cv, &s->lock);
		t->seen_gen = s->job_gen;
		job = s->job;
		stable = s->job_stable;
		pthread_mutex_unlock(&s->lock);
		if (job == MS_JOB_EXIT)
			break;
		if (!ms_stopping(s, inc)) {
			if (job == MS_JOB_ROUND)
				ret = tx_round(t, c, stable);
			else if (job == MS_JOB_PUSH)
				ret = tx_push(t, c, inc);
		}
		if (ret && ret != -ESHUTDOWN)
			ms_conn_lost(s, inc, ret, "data channel %u: %s", t->idx, errname(ret));
		pthread_mutex_lock(&s->lock);
		s->jobs_running--;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static void start_job(struct ftr_migrate_src *s, enum ms_job job, bool stable)
{
	pthread_mutex_lock(&s->lock);
	s->job = job;
	s->job_stable = stable;
	s->job_gen++;
	s->jobs_running = s->nch;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

static void wait_jobs(struct ftr_migrate_src *s)
{
	pthread_mutex_lock(&s->lock);
	while (s->jobs_running)
		pthread_cond_wait(&s->cv, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

/* Waits up to ms for the job to end. Returns true when it did. */
static bool wait_jobs_for(struct ftr_migrate_src *s, int ms)
{
	struct timespec ts = ftr_deadline_ms(ms);
	bool done;

	pthread_mutex_lock(&s->lock);
	while (s->jobs_running && !pthread_cond_timedwait(&s->cv, &s->lock, &ts))
		;
	done = !s->jobs_running;
	pthread_mutex_unlock(&s->lock);
	return done;
}

/* ---- connecting ------------------------------------------------------------------ */

/* Connects one channel and exchanges HELLOs. *reply gets the answer.
 * Returns 0, a transport -errno (worth retrying when reconnecting), or
 * -EPROTO (a bad answer) / -EREMOTEIO (the destination refused with an
 * ERROR) with why in msg. */
static int open_channel(struct ftr_migrate_src *s, uint8_t channel, uint64_t last_committed,
			struct ftr_chan **out, struct ftr_hello *reply, char *msg, size_t mlen)
{
	struct ftr_rec *rec = calloc(1, sizeof(*rec));
	uint64_t offer = FTR_FEAT_ZERO_FILL | (s->o.no_data_crc ? 0 : FTR_FEAT_DATA_CRC);
	int ret;

	if (!rec) {
		snprintf(msg, mlen, "out of memory");
		return -ENOMEM;
	}
	rec->hdr.type = FTR_REC_HELLO;
	mig_fill_hello(&rec->u.hello, &s->lay, s->session, s->generation,
		       channel == FTR_CHAN_CONTROL && last_committed == FTR_EPOCH_NONE ? offer
										 : s->features,
		       channel, (uint8_t)s->nch, last_committed);
	ret = ftr_session_connect(&s->o.tp, s->o.connect, s->o.connect_timeout_ms, s->o.timeout_ms,
				  s->o.timeout_ms, "destination", rec, out, msg, mlen);
	if (!ret)
		*reply = rec->u.hello;
	free(rec);
	return ret;
}

/* Closes the channels of the incarnation (threads joined). */
static void close_chans(struct ftr_migrate_src *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->ctl)
		ftr_chan_close(s->ctl);
	if (s->urg)
		ftr_chan_close(s->urg);
	s->ctl = s->urg = NULL;
	for (uint32_t i = 1; i <= s->nch; i++) {
		if (s->data[i])
			ftr_chan_close(s->data[i]);
		s->data[i] = NULL;
	}
	pthread_mutex_unlock(&s->lock);
}

/* Opens every channel of a new incarnation. On a reconnection
 * (last_committed != NONE) *dst_switched says whether the destination
 * switched. Returns 0 or -errno with msg. */
static int connect_all(struct ftr_migrate_src *s, uint64_t last_committed, bool *dst_switched,
		       char *msg, size_t mlen)
{
	struct ftr_chan *ctl = NULL, *urg = NULL, *data[FTR_WIRE_MAX_CHANNELS + 1] = { 0 };
	struct ftr_hello reply;
	int ret;

	ret = open_channel(s, FTR_CHAN_CONTROL, last_committed, &ctl, &reply, msg, mlen);
	if (ret)
		return ret;
	if (last_committed == FTR_EPOCH_NONE) {
		s->features = reply.features & (FTR_FEAT_ZERO_FILL | FTR_FEAT_DATA_CRC) &
			      (s->o.no_data_crc ? ~FTR_FEAT_DATA_CRC : ~0ull);
		if (!(s->features & FTR_FEAT_ZERO_FILL)) {
			snprintf(msg, mlen, "destination does not accept fill pages (ZERO_FILL)");
			ret = -EPROTO;
			goto out_close;
		}
	} else {
		*dst_switched = reply.last_committed == last_committed;
		if (!*dst_switched)
			goto out_close;	/* the caller decides; nothing more to open */
	}
	for (uint32_t i = 1; i <= s->nch && !ret; i++)
		ret = open_channel(s, (uint8_t)i, last_committed, &data[i], &reply, msg, mlen);
	if (!ret)
		ret = open_channel(s, FTR_CHAN_URGENT, last_committed, &urg, &reply, msg, mlen);
	if (ret)
		goto out_close;
	pthread_mutex_lock(&s->lock);
	s->inc++;
	s->ctl = ctl;
	s->urg = urg;
	memcpy(s->data, data, sizeof(data));
	s->lost = false;
	s->acked = last_committed;
	ftr_strlcpy(s->transport, ftr_chan_transport(ctl), sizeof(s->transport));
	pthread_mutex_unlock(&s->lock);
	return 0;

out_close:
	if (ctl)
		ftr_chan_close(ctl);
	if (urg)
		ftr_chan_close(urg);
	for (uint32_t i = 1; i <= s->nch; i++)
		if (data[i])
			ftr_chan_close(data[i]);
	return ret;
}

/* Starts the threads of the current incarnation. */
static int start_threads(struct ftr_migrate_src *s)
{
	int ret;

	pthread_mutex_lock(&s->lock);
	s->job = MS_JOB_NONE;
	s->jobs_running = 0;
	pthread_mutex_unlock(&s->lock);
	for (uint32_t i = 0; i < s->nch; i++) {
		struct ms_tx *t = &s->tx[i];

		t->src = s;
		t->idx = i + 1;
		t->seen_gen = s->job_gen;
		mig_builder_init(&t->b, s->lay.page_size, s->o.batch_pages);
		ret = -pthread_create(&t->th, NULL, tx_main, t);
		if (ret)
			goto fail;
		t->started = true;
	}
	mig_builder_init(s->ub, s->lay.page_size, s->o.batch_pages);
	s->ub->crc = s->features & FTR_FEAT_DATA_CRC;
	ret = -pthread_create(&s->ctl_th, NULL, ctl_main, s);
	if (ret)
		goto fail;
	s->ctl_started = true;
	ret = -pthread_create(&s->urg_th, NULL, urg_main, s);
	if (ret)
		goto fail;
	s->urg_started = true;
	return 0;
fail:
	ms_fail(s, "cannot start a thread: %s", strerror(-ret));
	return ret;
}

/* Stops and joins the threads of the incarnation, closes its channels. */
static void stop_threads(struct ftr_migrate_src *s)
{
	pthread_mutex_lock(&s->lock);
	shutdown_chans_locked(s);
	s->job = MS_JOB_EXIT;
	s->job_gen++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	for (uint32_t i = 0; i < s->nch; i++) {
		if (s->tx[i].started)
			pthread_join(s->tx[i].th, NULL);
		s->tx[i].started = false;
	}
	if (s->ctl_started)
		pthread_join(s->ctl_th, NULL);
	if (s->urg_started)
		pthread_join(s->urg_th, NULL);
	s->ctl_started = s->urg_started = false;
	close_chans(s);
}

/* ---- dirty tracking ------------------------------------------------------------- */

static int track_kind_of(enum ftr_dirty_mode m)
{
	switch (m) {
	case FTR_DIRTY_AUTO:
		return FTR_TRACK_AUTO;
	case FTR_DIRTY_WP_ASYNC:
		return FTR_TRACK_WP_ASYNC;
	case FTR_DIRTY_WP_SYNC:
		return FTR_TRACK_WP_SYNC;
	case FTR_DIRTY_SCAN:
		return FTR_TRACK_SCAN;
	default:
		return -1;
	}
}

static int start_tracking(struct ftr_migrate_src *s)
{
	struct ftr_track_region regs[FTR_WIRE_MAX_REGIONS];
	int kind = track_kind_of(s->o.dirty);
	char err[192];
	int ret;

	if (kind < 0)
		return 0;
	for (uint32_t r = 0; r < s->wl->nregions; r++)
		regs[r] = (struct ftr_track_region){ .base = s->wl->regions[r].base,
						     .size = s->wl->regions[r].size,
						     .fd = s->wl->regions[r].fd };
	ret = ftr_track_create((enum ftr_track_kind)kind, regs, s->wl->nregions,
			       s->lay.page_size, -1, &s->track, err, sizeof(err));
	if (ret)
		ms_fail(s, "dirty tracking: %s", err);
	else
		pr_info("dirty tracking: %s", ftr_track_kind_name(ftr_track_kind(s->track)));
	return ret;
}

/* While paused: ORs the pages written since the last harvest into `into`
 * (stale, or the probe map). Returns how many pages were harvested, or
 * -errno. */
static int64_t harvest(struct ftr_migrate_src *s, uint64_t *into)
{
	int64_t n;

	for (uint32_t r = 0; r < s->lay.nregions; r++)
		memset(s->maps[r], 0, ftr_bitmap_words(s->lay.npages[r]) * 8);
	/* The workload's own harvest also resets its dirty budget. */
	n = s->wl->ops->harvest(s->wl, s->maps);
	if (n >= 0 && s->track) {
		for (uint32_t r = 0; r < s->lay.nregions; r++)
			memset(s->maps[r], 0, ftr_bitmap_words(s->lay.npages[r]) * 8);
		n = ftr_track_harvest(s->track, s->maps);
	}
	if (n < 0) {
		ms_fail(s, "dirty tracking failed: %s", strerror((int)-n));
		return n;
	}
	if (s->o.dirty == FTR_DIRTY_FULL) {
		mig_bitmap_fill(&s->lay, into);
		return (int64_t)s->lay.total_pages;
	}
	for (uint32_t r = 0; r < s->lay.nregions; r++) {
		uint64_t *dst = &into[s->lay.g0[r] / 64];

		for (size_t w = 0; w < ftr_bitmap_words(s->lay.npages[r]); w++)
			dst[w] |= s->maps[r][w];
	}
	return n;
}

static int pause_wl(struct ftr_migrate_src *s)
{
	int ret = s->wl->ops->pause(s->wl, MS_PAUSE_TIMEOUT_MS);

	if (ret)
		s->wl->ops->resume(s->wl);	/* withdraw the request */
	if (ret)
		ms_fail(s, "the workload did not pause within %d ms: %s", MS_PAUSE_TIMEOUT_MS,
			strerror(-ret));
	return ret;
}

/* ---- precopy --------------------------------------------------------------------- */

static bool ms_failed(struct ftr_migrate_src *s)
{
	bool f;

	pthread_mutex_lock(&s->lock);
	f = s->failed || s->lost;
	pthread_mutex_unlock(&s->lock);
	return f;
}

/* Sends COMMIT(seq) with the records each data channel carried. */
static int send_commit(struct ftr_migrate_src *s, uint64_t seq, uint32_t blob_len, uint64_t pages)
{
	struct ftr_rec rec;

	memset(&rec, 0, sizeof(rec));
	rec.u.commit.nchannels = s->nch;
	rec.u.commit.blob_len = blob_len;
	rec.u.commit.pages = pages;
	for (uint32_t i = 0; i < s->nch; i++)
		rec.u.commit.batches[i] = (uint32_t)s->tx[i].b.records;
	return ftr_send_simple(s->ctl, FTR_REC_COMMIT, seq, &rec);
}

/* Waits for ACK(seq). 0, or -ECANCELED when the session failed. The
 * control thread fails it on silence or a broken connection. */
static int wait_ack(struct ftr_migrate_src *s, uint64_t seq)
{
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	while (!s->failed && !s->lost && (s->acked == FTR_EPOCH_NONE || s->acked < seq))
		pthread_cond_wait(&s->cv, &s->lock);
	if (s->failed || s->lost)
		ret = -ECANCELED;
	else if (s->acked != seq)
		ret = -EPROTO;
	pthread_mutex_unlock(&s->lock);
	if (ret == -EPROTO)
		ms_fail(s, "destination acknowledged round %" PRIu64 ", expected %" PRIu64, s->acked,
			seq);
	return ret;
}

/* The hybrid's rule (MS_PAYOFF_DIV): rounds cannot pay off at this dirty
 * rate over this link rate. */
static bool cannot_pay_off(uint64_t dirty_bps, uint64_t link_bps)
{
	return link_bps && dirty_bps * MS_PAYOFF_DIV >= link_bps;
}

/* Cuts round r for good (its tx threads stop; postcopy follows): the rate
 * the dirty rate was held against is named by what and rate. */
static void cut_round(struct ftr_migrate_src *s, uint64_t r, uint64_t t0, const char *what,
		      uint64_t rate)
{
	pr_info("round %" PRIu64 " after %" PRIu64 " ms: dirty rate %.1f MB/s >= 1/%d of %s, "
		"%.1f MB/s: rounds cannot pay off, switching to postcopy now", r,
		(ftr_now_ns() - t0) / 1000000, s->probe_bps / 1e6, MS_PAYOFF_DIV, what, rate / 1e6);
	s->cut_for_rate = true;
	atomic_store(&s->round_cut, true);
}

/* Keeps a measured link rate (status, stop-and-copy estimate) and whether
 * it rests on enough bytes to pace postcopy by. */
static void set_bw(struct ftr_migrate_src *s, uint64_t bw, bool paces)
{
	pthread_mutex_lock(&s->lock);
	s->bw_bps = bw;
	s->bw_paces = paces;
	pthread_mutex_unlock(&s->lock);
}

/*
 * Hybrid, the first MS_BW_FROM_MS of a round: every MS_CUT_STEP_MS, the
 * bytes the round put into its sockets so far over its time so far. That
 * average counts the burst that fills the socket buffers, so it is never
 * below the link's rate: a dirty rate of 1/MS_PAYOFF_DIV of it or more
 * means the round cannot pay off at the link's rate either, and it is cut
 * then (bw_bps stays unset: the burst makes it no measure for pacing;
 * postcopy measures the link itself). Returns true when the round was cut
 * or is over, false at MS_BW_FROM_MS with it going.
 */
static bool round_outrun(struct ftr_migrate_src *s, uint64_t r, uint64_t t0)
{
	for (;;) {
		uint64_t t = ftr_now_ns(), avg;
		int left = MS_BW_FROM_MS - (int)((t - t0) / 1000000);

		if (left <= 0)
			return false;
		if (wait_jobs_for(s, FTR_MIN(left, MS_CUT_STEP_MS)))
			return true;
		avg = atomic_load(&s->round_bytes) * 1000000000ull / FTR_MAX(ftr_now_ns() - t0, 1ull);
		if (cannot_pay_off(s->probe_bps, avg)) {
			cut_round(s, r, t0, "all the round sent so far", avg);
			return true;
		}
	}
}

/*
 * One live round: the tx threads send the stale set; COMMIT(r); ACK(r).
 *
 * Dirty rate probe: a round's own harvest cannot see a rate above "the
 * whole image per round" (a page written twice counts once), which hides
 * how far a fast workload outruns the link. So MS_PROBE_MS into a round
 * that is still going, the pages written since the last harvest are
 * harvested into the probe map (kept for the round's end, when they join
 * the stale set): few enough to count a rate.
 */
static int live_round(struct ftr_migrate_src *s, uint64_t r, uint64_t t_harv)
{
	int ret;

	uint64_t t0 = ftr_now_ns();

	for (uint32_t i = 0; i < s->nch; i++)
		s->tx[i].b.seq = r;
	atomic_store(&s->round_cut, false);
	atomic_store(&s->round_bytes, 0);
	s->cut_for_rate = false;
	start_job(s, MS_JOB_ROUND, false);
	if (!wait_jobs_for(s, MS_PROBE_MS) && !pause_wl(s)) {
		int64_t n = harvest(s, s->probe);
		uint64_t t = ftr_now_ns();

		s->wl->ops->resume(s->wl);
		if (n > 0)
			s->probe_bps = (uint64_t)n * s->lay.page_size * 1000000000ull /
				       FTR_MAX(t - t_harv, 1ull);
	}
	/* Hybrid without a round count: a round that cannot pay off
	 * (MS_PAYOFF_DIV) only delays the switch; the pages it sent stay
	 * sent. */
	if (s->o.mode == FTR_MIG_HYBRID && !s->o.max_rounds && s->probe_bps &&
	    !round_outrun(s, r, t0)) {
		uint64_t b1 = atomic_load(&s->round_bytes), t1 = ftr_now_ns();

		if (!wait_jobs_for(s, MS_BW_SPAN_MS)) {
			uint64_t t2 = ftr_now_ns(), moved = atomic_load(&s->round_bytes) - b1;
			uint64_t bw = moved * 1000000000ull / FTR_MAX(t2 - t1, 1ull);

			if (cannot_pay_off(s->probe_bps, bw)) {
				set_bw(s, bw, moved >= MS_MIN_BW_BYTES);
				cut_round(s, r, t0, "the link's", bw);
			}
		}
	}
	wait_jobs(s);
	if (ms_failed(s))
		return -ECANCELED;
	ret = send_commit(s, r, 0, 0);
	if (ret) {
		ms_fail(s, "sending COMMIT %" PRIu64 ": %s", r, strerror(-ret));
		return ret;
	}
	return wait_ack(s, r);
}

enum ms_switch { MS_SW_POSTCOPY, MS_SW_STOPCOPY };

/*
 * The precopy rounds. Returns 0 with the workload paused and *how set, or
 * -errno with the workload running (and the session failed).
 */
static int precopy(struct ftr_migrate_src *s, enum ms_switch *how)
{
	uint64_t t_harv, bytes0, pages_r;
	unsigned max = s->o.max_rounds;
	int64_t n;
	int ret;

	/* Reset the tracking: from here on every write lands in a harvest;
	 * what was written before is covered by stale = everything. */
	if ((ret = pause_wl(s)))
		return ret;
	n = harvest(s, s->stale);
	t_harv = ftr_now_ns();
	if (n < 0) {
		s->wl->ops->resume(s->wl);
		return (int)n;
	}
	mig_bitmap_fill(&s->lay, s->stale);
	if (s->o.mode == FTR_MIG_POSTCOPY) {
		s->t_pause = t_harv;
		*how = MS_SW_POSTCOPY;
		return 0;
	}
	s->wl->ops->resume(s->wl);
	if (!max)
		max = s->o.mode == FTR_MIG_PRECOPY ? FTR_MIG_DEFAULT_PRECOPY_ROUNDS
						   : FTR_MIG_DEFAULT_HYBRID_ROUNDS;
	for (uint64_t r = 1;; r++) {
		uint64_t t0 = ftr_now_ns(), t1, left, bw, est_ms, dirty_bps;
		bool cut, measured = false;

		bytes0 = atomic_load(&s->bytes_sent);
		pages_r = mig_bitmap_count(&s->lay, s->stale);
		s->probe_bps = 0;
		ret = live_round(s, r, t_harv);
		if (ret)
			return ret;
		t1 = ftr_now_ns();
		cut = atomic_load(&s->switch_req) || atomic_load(&s->abort_req) || s->cut_for_rate;
		bw = s->bw_bps;
		/* Bandwidth counts payload bytes only, but a round's time also
		 * covers its fill (zero) pages: the first round over a mostly
		 * untouched image moves few bytes in a long time. The pages left
		 * for the stop-and-copy are written ones, so until a round of
		 * MS_MIN_BW_BYTES measures it, the round with the most payload
		 * so far does; a smaller later one never replaces it. */
		if (!cut && t1 > t0) {
			uint64_t moved = atomic_load(&s->bytes_sent) - bytes0;

			if (moved >= MS_MIN_BW_BYTES || moved > s->bw_sample || !bw) {
				bw = moved * 1000000000ull / (t1 - t0);
				s->bw_sample = moved;
				measured = true;
			}
		}
		if ((ret = pause_wl(s)))
			return ret;
		s->t_pause = ftr_now_ns();
		n = harvest(s, s->stale);
		if (n < 0) {
			s->wl->ops->resume(s->wl);
			return (int)n;
		}
		for (size_t w = 0; w < ftr_bitmap_words(s->lay.bits); w++) {
			s->stale[w] |= s->probe[w];
			s->probe[w] = 0;
		}
		dirty_bps = FTR_MAX((uint64_t)n * s->lay.page_size * 1000000000ull /
				    FTR_MAX(s->t_pause - t_harv, 1ull), s->probe_bps);
		t_harv = s->t_pause;
		left = mig_bitmap_count(&s->lay, s->stale);
		est_ms = bw ? left * s->lay.page_size * 1000ull / bw : UINT64_MAX;
		pthread_mutex_lock(&s->lock);
		s->round = (uint32_t)r;
		if (measured)	/* (else bw_bps is a cut's, with its own bw_paces) */
			s->bw_paces = s->bw_sample >= MS_MIN_BW_BYTES;
		s->bw_bps = bw;
		s->dirty_bps = dirty_bps;
		s->est_ms = est_ms;
		s->stale_left = left;
		pthread_mutex_unlock(&s->lock);
		pr_info("round %" PRIu64 ": %" PRIu64 " pages in %" PRIu64 " ms (%.1f MB/s), %" PRId64
			" dirtied (%.1f MB/s), %" PRIu64 " left: ~%" PRIu64 " ms", r, pages_r,
			(t1 - t0) / 1000000, bw / 1e6, n, dirty_bps / 1e6, left,
			est_ms == UINT64_MAX ? 0 : est_ms);
		if (atomic_load(&s->abort_req)) {
			s->wl->ops->resume(s->wl);
			ms_fail(s, "aborted during precopy round %" PRIu64 ": the workload keeps running here", r);
			return -ECANCELED;
		}
		if (!left || (bw && est_ms <= s->o.target_downtime_ms)) {
			*how = MS_SW_STOPCOPY;
			return 0;
		}
		if (atomic_load(&s->switch_req)) {
			*how = s->o.mode == FTR_MIG_PRECOPY ? MS_SW_STOPCOPY : MS_SW_POSTCOPY;
			return 0;
		}
		if (s->cut_for_rate) {
			*how = MS_SW_POSTCOPY;
			return 0;
		}
		/* Hybrid: once the workload dirties memory at least half as fast
		 * as the link moves it (MS_PAYOFF_DIV), a further round sends
		 * most of its pages again: it only adds to the total time
		 * (unless the user asked for a number of rounds). */
		if (s->o.mode == FTR_MIG_HYBRID && !s->o.max_rounds && cannot_pay_off(dirty_bps, bw)) {
			pr_info("round %" PRIu64 ": dirty rate %.1f MB/s >= 1/%d of the link's "
				"%.1f MB/s: rounds cannot pay off, switching to postcopy", r,
				dirty_bps / 1e6, MS_PAYOFF_DIV, bw / 1e6);
			*how = MS_SW_POSTCOPY;
			return 0;
		}
		if (r >= max) {
			if (s->o.mode == FTR_MIG_HYBRID) {
				*how = MS_SW_POSTCOPY;
				return 0;
			}
			s->wl->ops->resume(s->wl);
			ms_fail(s, "precopy did not converge after %" PRIu64 " rounds: the workload "
				"dirties %.1f MB/s, the link carries %.1f MB/s; %" PRIu64 " dirty pages "
				"(%.1f MiB) would take ~%" PRIu64 " ms paused, target %u ms (use "
				"postcopy or hybrid mode)", r, dirty_bps / 1e6, bw / 1e6, left,
				left * (double)s->lay.page_size / (1 << 20), est_ms,
				s->o.target_downtime_ms);
			return -EAGAIN;
		}
		s->wl->ops->resume(s->wl);
	}
}

/* ---- the switch ------------------------------------------------------------------ */

/* With the workload paused: stop-and-copy (optionally), BLOB, the bitmap
 * of what the destination lacks, COMMIT(s); ACK(s). */
static int do_switch(struct ftr_migrate_src *s, enum ms_switch how)
{
	uint8_t *blob = malloc(FTR_WIRE_MAX_BLOB);
	uint64_t seq, need;
	ssize_t blob_len;
	struct ftr_rec rec;
	int ret;

	if (!blob) {
		ms_fail(s, "out of memory for the state blob");
		return -ENOMEM;
	}
	pthread_mutex_lock(&s->lock);
	s->phase = FTR_MIG_SWITCHING;
	seq = s->round + 1;
	s->switch_round = seq;
	pthread_mutex_unlock(&s->lock);
	if (s->wl->ops->progress)
		s->k_at_switch = s->wl->ops->progress(s->wl);

	if (how == MS_SW_STOPCOPY) {
		for (uint32_t i = 0; i < s->nch; i++)
			s->tx[i].b.seq = seq;
		start_job(s, MS_JOB_ROUND, true);
		wait_jobs(s);
		if (ms_failed(s)) {
			ret = -ECANCELED;
			goto out;
		}
	}
	need = mig_bitmap_count(&s->lay, s->stale);
	blob_len = s->wl->ops->blob(s->wl, blob, FTR_WIRE_MAX_BLOB);
	if (blob_len < 0) {
		ms_fail(s, "capturing the state blob: %s", strerror((int)-blob_len));
		ret = (int)blob_len;
		goto out;
	}
	if (blob_len > 0) {
		struct iovec iov = { .iov_base = blob, .iov_len = (size_t)blob_len };

		memset(&rec, 0, sizeof(rec));
		rec.hdr.type = FTR_REC_BLOB;
		rec.hdr.seq = seq;
		rec.hdr.data_len = (uint32_t)blob_len;
		if (s->features & FTR_FEAT_DATA_CRC) {
			rec.hdr.flags = FTR_WF_DATA_CRC;
			rec.hdr.data_crc = ftr_wire_data_crc(&iov, 1);
		}
		rec.u.blob.len = (uint32_t)blob_len;
		ret = ftr_chan_send_rec(s->ctl, &rec, &iov, 1);
		if (ret)
			goto out_send;
	}
	ret = mig_send_bitmap(s->ctl, &s->lay, s->stale, seq, s->features & FTR_FEAT_DATA_CRC);
	if (ret)
		goto out_send;
	/* From the COMMIT on the destination may run the workload: never
	 * resume it here, serve page requests. */
	pthread_mutex_lock(&s->push_lock);
	memcpy(s->push, s->stale, ftr_bitmap_words(s->lay.bits) * 8);
	s->n_push = need;
	s->pivot = 0;
	s->pivot_new = true;
	pthread_mutex_unlock(&s->push_lock);
	pthread_mutex_lock(&s->lock);
	s->switch_sent = true;
	pthread_mutex_unlock(&s->lock);
	ret = send_commit(s, seq, (uint32_t)blob_len, need);
	if (ret)
		goto out_send;
	ret = wait_ack(s, seq);
	if (!ret) {
		pthread_mutex_lock(&s->lock);
		s->t_running = ftr_now_ns();
		s->phase = FTR_MIG_POSTCOPY_RUN;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->lock);
		pr_info("switched after %" PRIu64 " precopy round(s): downtime %" PRIu64 " us, %" PRIu64
			" pages left for postcopy", seq - 1, (s->t_running - s->t_pause) / 1000, need);
	}
	goto out;
out_send:
	if (mig_err_is_conn(ret) && s->switch_sent)
		ms_conn_lost(s, s->inc, ret, "sending the switch: %s", strerror(-ret));
	else
		ms_fail(s, "sending the switch: %s", strerror(-ret));
out:
	free(blob);
	return ret;
}

/* ---- postcopy ------------------------------------------------------------------- */

/* Reads the destination's bitmap of the pages it lacks (a reconnection),
 * on the new control channel, into push. */
static int read_need_bitmap(struct ftr_migrate_src *s, char *msg, size_t mlen)
{
	uint8_t *head = malloc(MIG_HEAD_CAP);
	struct ftr_rec *rec = malloc(sizeof(*rec));
	uint8_t *data = malloc(MIG_BITMAP_CHUNK / 8 + 8);
	struct mig_bitmap_rx rx;
	uint64_t end = ftr_now_ms() + (uint64_t)s->o.timeout_ms;
	int ret = 0;

	if (!head || !rec || !data) {
		ret = -ENOMEM;
		snprintf(msg, mlen, "out of memory");
		goto out;
	}
	mig_bitmap_rx_init(&rx);
	pthread_mutex_lock(&s->push_lock);
	memset(s->push, 0, ftr_bitmap_words(s->lay.bits) * 8);
	while (!rx.done) {
		struct ftr_wire_error werr;
		struct iovec iov;

		if (ftr_now_ms() > end) {
			ret = -ETIMEDOUT;
			snprintf(msg, mlen, "no bitmap from the destination within %d ms",
				 s->o.timeout_ms);
			break;
		}
		ret = mig_recv_rec(s->ctl, head, 100, &s->lim, rec, &werr);
		if (ret == -EAGAIN)
			continue;
		if (ret) {
			snprintf(msg, mlen, "reading the destination's bitmap: %s",
				 ret == -EPROTO ? werr.msg : errname(ret));
			break;
		}
		if (rec->hdr.type == FTR_REC_HEARTBEAT)
			continue;
		if (rec->hdr.type != FTR_REC_BITMAP || rec->hdr.data_len > MIG_BITMAP_CHUNK / 8) {
			snprintf(msg, mlen, "expected the destination's BITMAP, got %s",
				 ftr_rec_type_name(rec->hdr.type));
			ret = -EPROTO;
			break;
		}
		iov.iov_base = data;
		iov.iov_len = rec->hdr.data_len;
		ret = ftr_chan_recv_data(s->ctl, &rec->hdr, &iov, 1);
		if (!ret && ftr_wire_check_data(&rec->hdr, &iov, 1, &werr)) {
			snprintf(msg, mlen, "destination's BITMAP: %s", werr.msg);
			ret = -EPROTO;
		}
		if (!ret)
			ret = mig_bitmap_rx_add(&rx, &s->lay, rec, data, s->push, msg, mlen);
		if (ret)
			break;
	}
	s->n_push = mig_bitmap_count(&s->lay, s->push);
	s->pivot_new = true;
	pthread_mutex_unlock(&s->push_lock);
out:
	free(head);
	free(rec);
	free(data);
	return ret;
}

/* Reconnects after a break in postcopy, within recover_timeout_ms. */
static int recover(struct ftr_migrate_src *s)
{
	uint64_t deadline;
	char why[192], msg[256] = "";
	int ret;

	pthread_mutex_lock(&s->lock);
	ftr_strlcpy(why, s->lost_why, sizeof(why));
	s->phase = FTR_MIG_RECOVERING;
	s->recoveries++;
	pthread_mutex_unlock(&s->lock);
	stop_threads(s);
	deadline = ftr_now_ms() + (uint64_t)s->o.recover_timeout_ms;
	for (;;) {
		bool switched = true;

		if (atomic_load(&s->abort_req)) {
			ms_fail(s, "aborted while reconnecting (%s)", why);
			return -ECANCELED;
		}
		if (ftr_now_ms() > deadline) {
			ms_fail(s, "connection lost in postcopy (%s) and not back within %d ms (last "
				"attempt: %s); the destination lacks the pages it did not get",
				why, s->o.recover_timeout_ms, msg);
			return -ETIMEDOUT;
		}
		ret = connect_all(s, s->switch_round, &switched, msg, sizeof(msg));
		if (!ret && !switched) {
			/* It says so itself: nothing ran there, the workload may
			 * safely go on here. */
			s->wl->ops->resume(s->wl);
			ms_fail(s, "the destination never switched (the connection broke during "
				"the switch: %s); the workload resumes here", why);
			return -ECANCELED;
		}
		if (!ret) {
			ret = read_need_bitmap(s, msg, sizeof(msg));
			if (!ret)
				break;
			close_chans(s);
			if (ret == -EPROTO) {
				ms_fail(s, "reconnecting: %s", msg);
				return ret;
			}
		} else if (ret == -EPROTO || ret == -ENOMEM || ret == -EREMOTEIO) {
			ms_fail(s, "reconnecting: %s", msg);
			return ret;
		}
		usleep(MIG_RECONNECT_MS * 1000);
	}
	ret = start_threads(s);
	if (ret)
		return ret;
	pthread_mutex_lock(&s->lock);
	s->phase = FTR_MIG_POSTCOPY_RUN;
	if (!s->t_running)	/* the ACK of the switch was lost with the connection */
		s->t_running = ftr_now_ns();
	pthread_mutex_unlock(&s->lock);
	pr_info("reconnected (%u recoveries): the destination lacks %" PRIu64 " pages", s->recoveries,
		s->n_push);
	return 0;
}

/* Waits up to ms, or less if postcopy ends or breaks. True if it did. */
static bool postcopy_over_within(struct ftr_migrate_src *s, int ms)
{
	struct timespec ts = ftr_deadline_ms(ms);
	bool over;

	pthread_mutex_lock(&s->lock);
	while (!s->completed && !s->failed && !s->lost && !atomic_load(&s->abort_req) &&
	       !pthread_cond_timedwait(&s->cv, &s->lock, &ts))
		;
	over = s->completed || s->failed || s->lost || atomic_load(&s->abort_req);
	pthread_mutex_unlock(&s->lock);
	return over;
}

/* Caps the postcopy push at cap bytes/s: paced by the transport on every
 * data channel (evenly, no bursts), or else by the tx threads. Returns
 * true when the transport paces. */
static bool cap_push(struct ftr_migrate_src *s, uint64_t cap)
{
	bool kernel = true;

	pthread_mutex_lock(&s->lock);
	s->push_pace_bps = cap;
	for (uint32_t i = 1; i <= s->nch; i++)
		if (s->data[i] && ftr_chan_set_pacing(s->data[i], cap / s->nch))
			kernel = false;
	pthread_mutex_unlock(&s->lock);
	if (!kernel) {
		for (uint32_t i = 1; i <= s->nch; i++)
			if (s->data[i])
				ftr_chan_set_pacing(s->data[i], 0);
		atomic_store(&s->push_cap, cap);
	}
	return kernel;
}

/* postcopy_bw: the push's cap from its first page (UINT64_MAX: none).
 * Only with a push (the caller checks no_background). */
static void fixed_pace_push(struct ftr_migrate_src *s)
{
	uint64_t cap = s->o.postcopy_bw;
	bool kernel;

	if (!cap || cap == UINT64_MAX)
		return;
	kernel = cap_push(s, cap);
	pr_info("postcopy: background pages capped at %.1f MB/s (postcopy_bw, paced by %s)",
		cap / 1e6, kernel ? "the transport" : "ftrepl");
}

/* True when every data channel's peer is on this host. */
static bool dst_is_local(struct ftr_migrate_src *s)
{
	bool local = s->nch > 0;

	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 1; i <= s->nch && local; i++)
		local = s->data[i] && ftr_chan_peer_is_local(s->data[i]);
	pthread_mutex_unlock(&s->lock);
	return local;
}

/* Without postcopy_bw: caps the push at MS_PUSH_SHARE_PCT of the link's
 * rate (measured by precopy, or over the first moments of the push), so
 * that the replies to faults do not wait behind push data in the link's
 * queue. A destination on this host has no link (loopback has no queue:
 * the urgent channel's bytes never wait behind a data channel's): no cap,
 * the push goes as fast as the CPUs move it. */
static void auto_pace_push(struct ftr_migrate_src *s)
{
	uint64_t bw, cap;
	bool kernel;

	if (s->o.postcopy_bw || s->o.no_background)
		return;
	if (dst_is_local(s)) {
		pr_info("postcopy: background pages unpaced: the destination is on this host "
			"(no link queue for a fault's reply to wait in)");
		return;
	}
	pthread_mutex_lock(&s->lock);
	/* rounds capped by precopy_bw measured the cap, not the link */
	bw = s->o.precopy_bw || !s->bw_paces ? 0 : s->bw_bps;
	pthread_mutex_unlock(&s->lock);
	if (!bw) {
		uint64_t b1, t1, moved;

		if (postcopy_over_within(s, MS_BW_FROM_MS))
			return;
		b1 = atomic_load(&s->bytes_sent);
		t1 = ftr_now_ns();
		if (postcopy_over_within(s, MS_BW_SPAN_MS))
			return;
		moved = atomic_load(&s->bytes_sent) - b1;
		set_bw(s, moved * 1000000000ull / FTR_MAX(ftr_now_ns() - t1, 1ull),
		       moved >= MS_MIN_BW_BYTES);
		pthread_mutex_lock(&s->lock);
		bw = s->bw_paces ? s->bw_bps : 0;
		pthread_mutex_unlock(&s->lock);
		if (!bw) {
			pr_info("postcopy: too few bytes to measure the link: background pages "
				"unpaced");
			return;
		}
	}
	cap = bw / 100 * MS_PUSH_SHARE_PCT;
	kernel = cap_push(s, cap);
	pr_info("postcopy: background pages paced at %.1f MB/s (%d %% of the link's %.1f MB/s, "
		"by %s) so that faults do not queue behind them", cap / 1e6, MS_PUSH_SHARE_PCT,
		bw / 1e6, kernel ? "the transport" : "ftrepl");
}

static int postcopy(struct ftr_migrate_src *s)
{
	int ret;

	for (;;) {
		bool lost;

		if (!s->o.no_background) {
			fixed_pace_push(s);
			start_job(s, MS_JOB_PUSH, true);
			auto_pace_push(s);
		}
		pthread_mutex_lock(&s->lock);
		while (!s->completed && !s->failed && !s->lost && !atomic_load(&s->abort_req))
			pthread_cond_wait(&s->cv, &s->lock);
		lost = s->lost && !s->completed && !s->failed;
		pthread_mutex_unlock(&s->lock);
		if (atomic_load(&s->abort_req) && !lost) {
			ms_fail(s, "aborted in postcopy: the destination lacks the pages it did not get");
			return -ECANCELED;
		}
		if (!lost)
			break;
		ret = recover(s);
		if (ret)
			return ret;
	}
	return ms_failed(s) ? -ECANCELED : 0;
}

/* ---- public API ----------------------------------------------------------------- */

int ftr_migrate_src_run(struct ftr_migrate_src *s)
{
	enum ms_switch how = MS_SW_POSTCOPY;
	bool switched = false;
	char msg[256];
	int ret;

	s->t_start = ftr_now_ns();
	ret = start_tracking(s);
	if (ret)
		goto out;
	ret = connect_all(s, FTR_EPOCH_NONE, &switched, msg, sizeof(msg));
	if (ret) {
		ms_fail(s, "%s", msg);
		goto out;
	}
	ret = start_threads(s);
	if (ret)
		goto out;
	s->wl->ops->set_dirty_limits(s->wl, UINT64_MAX, UINT64_MAX);
	ret = s->wl->ops->start(s->wl);
	if (ret && ret != -EALREADY) {
		ms_fail(s, "cannot start the workload: %s", strerror(-ret));
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	s->phase = FTR_MIG_PRECOPY_RUN;
	pthread_mutex_unlock(&s->lock);
	pr_info("migrating %" PRIu64 " pages (%s) to %s over %s, %u data channel(s)",
		s->lay.total_pages, ftr_migrate_mode_name(s->o.mode), s->o.connect, s->transport,
		s->nch);

	ret = precopy(s, &how);
	if (ret)
		goto out;
	ret = do_switch(s, how);
	if (ret && !s->switch_sent) {
		s->wl->ops->resume(s->wl);
		goto out;
	}
	ret = postcopy(s);
	if (ret)
		goto out;
	/* The destination holds every page. */
	{
		struct ftr_rec rec;

		memset(&rec, 0, sizeof(rec));
		rec.u.bye.reason = FTR_BYE_SWITCHED;
		ftr_send_simple(s->ctl, FTR_REC_BYE, 0, &rec);
	}
	pthread_mutex_lock(&s->lock);
	s->phase = FTR_MIG_COMPLETED;
	s->t_done = ftr_now_ns();
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	pr_info("completed in %" PRIu64 " ms: downtime %" PRIu64 " us, %" PRIu64 " pages pushed, %"
		PRIu64 " sent for %" PRIu64 " requests, %u recoveries",
		(s->t_done - s->t_start) / 1000000, (s->t_running - s->t_pause) / 1000,
		atomic_load(&s->pushed_pages), atomic_load(&s->requested_pages),
		atomic_load(&s->fault_reqs), s->recoveries);
	s->wl->ops->stop(s->wl);
out:
	stop_threads(s);
	pthread_mutex_lock(&s->lock);
	if (!s->t_done)
		s->t_done = ftr_now_ns();
	ret = s->phase == FTR_MIG_COMPLETED ? 0 : (ret ? ret : -ECANCELED);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int ftr_migrate_src_switch(struct ftr_migrate_src *s)
{
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	if (s->switch_sent || s->phase == FTR_MIG_SWITCHING || s->failed || s->completed ||
	    atomic_load(&s->switch_req))
		ret = -EALREADY;
	else
		atomic_store(&s->switch_req, true);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void ftr_migrate_src_abort(struct ftr_migrate_src *s)
{
	pthread_mutex_lock(&s->lock);
	atomic_store(&s->abort_req, true);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

const char *ftr_migrate_src_error(struct ftr_migrate_src *s)
{
	return s->err;
}

int ftr_migrate_src_get_status(struct ftr_migrate_src *s, struct ftr_migrate_status *st)
{
	uint64_t now = ftr_now_ns();

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&s->lock);
	st->phase = s->phase;
	st->state = ftr_migrate_phase_state(s->phase);
	uuid_unparse_lower(s->session, st->session);
	st->round = s->round;
	st->nchannels = s->nch;
	st->pages_total = s->lay.total_pages;
	st->dirty_bytes_per_s = s->dirty_bps;
	st->bandwidth_bytes_per_s = s->bw_bps;
	st->push_pace_bytes_per_s = s->o.postcopy_bw && s->o.postcopy_bw != UINT64_MAX
					    ? s->o.postcopy_bw : s->push_pace_bps;
	st->est_downtime_ms = s->est_ms == UINT64_MAX ? 0 : s->est_ms;
	if (s->t_pause && s->t_running)
		st->downtime_us = (s->t_running - s->t_pause) / 1000;
	if (s->t_start)
		st->precopy_ms = ((s->t_pause ? s->t_pause : now) - s->t_start) / 1000000;
	if (s->t_running)
		st->postcopy_ms = ((s->t_done ? s->t_done : now) - s->t_running) / 1000000;
	if (s->t_start)
		st->total_ms = ((s->t_done ? s->t_done : now) - s->t_start) / 1000000;
	st->recoveries = s->recoveries;
	st->workload_writes = s->k_at_switch;
	ftr_strlcpy(st->transport, s->transport, sizeof(st->transport));
	ftr_strlcpy(st->last_error, s->err, sizeof(st->last_error));
	if (s->switch_sent) {
		pthread_mutex_lock(&s->push_lock);
		st->pages_left = s->n_push;
		pthread_mutex_unlock(&s->push_lock);
	} else {
		st->pages_left = s->stale_left;
	}
	pthread_mutex_unlock(&s->lock);
	st->precopy_pages = atomic_load(&s->precopy_pages);
	st->pushed_pages = atomic_load(&s->pushed_pages);
	st->requested_pages = atomic_load(&s->requested_pages);
	st->pages_sent = st->precopy_pages + st->pushed_pages + st->requested_pages;
	st->bytes_sent = atomic_load(&s->bytes_sent);
	st->fault_reqs = atomic_load(&s->fault_reqs);
	if (!st->workload_writes && s->wl->ops->progress)
		st->workload_writes = s->wl->ops->progress(s->wl);
	return 0;
}

int ftr_migrate_src_create(const struct ftr_migrate_src_opts *opts, struct ftr_workload *wl,
			   struct ftr_migrate_src **out)
{
	static const uint8_t zero[16];
	struct ftr_migrate_src *s;

	if (!opts || !opts->connect || !wl || opts->nchannels > FTR_WIRE_MAX_CHANNELS ||
	    (unsigned)opts->mode > FTR_MIG_POSTCOPY || !wl->nregions ||
	    wl->nregions > FTR_WIRE_MAX_REGIONS)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *opts;
	ftr_strlcpy(s->connect_addr, opts->connect, sizeof(s->connect_addr));
	s->o.connect = s->connect_addr;
	s->nch = opts->nchannels ? opts->nchannels : FTR_MIG_DEFAULT_CHANNELS;
	if (!s->o.target_downtime_ms)
		s->o.target_downtime_ms = FTR_MIG_DEFAULT_DOWNTIME_MS;
	if (!s->o.recover_timeout_ms)
		s->o.recover_timeout_ms = FTR_MIG_DEFAULT_RECOVER_MS;
	if (!s->o.heartbeat_ms)
		s->o.heartbeat_ms = FTR_MIG_DEFAULT_HEARTBEAT_MS;
	if (!s->o.timeout_ms)
		s->o.timeout_ms = FTR_MIG_DEFAULT_TIMEOUT_MS;
	if (!s->o.connect_timeout_ms)
		s->o.connect_timeout_ms = 5000;
	if (!s->o.batch_pages)
		s->o.batch_pages = FTR_DEFAULT_BATCH;
	s->o.batch_pages = FTR_MIN(s->o.batch_pages, (unsigned)FTR_WIRE_MAX_BATCH);
	s->generation = opts->generation ? opts->generation : 1;
	if (memcmp(opts->session, zero, 16))
		memcpy(s->session, opts->session, 16);
	else
		uuid_generate_random(s->session);
	s->wl = wl;
	s->lay.page_size = wl->page_size;
	s->lay.nregions = wl->nregions;
	for (uint32_t r = 0; r < wl->nregions; r++) {
		s->lay.size[r] = wl->regions[r].size;
		ftr_strlcpy(s->lay.name[r], wl->regions[r].name, FTR_WIRE_REGION_NAME);
	}
	if (mig_layout_finish(&s->lay)) {
		free(s);
		return -EINVAL;
	}
	mig_layout_limits(&s->lay, s->nch, &s->lim);
	s->phase = FTR_MIG_CONNECTING;
	s->acked = FTR_EPOCH_NONE;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->push_lock, NULL);
	ftr_cond_init_monotonic(&s->cv);
	s->stale = mig_bitmap_alloc(&s->lay);
	s->push = mig_bitmap_alloc(&s->lay);
	s->probe = mig_bitmap_alloc(&s->lay);
	s->maps = calloc(wl->nregions, sizeof(*s->maps));
	s->ub = malloc(sizeof(*s->ub));
	if (!s->stale || !s->push || !s->probe || !s->maps || !s->ub)
		goto out_free;
	for (uint32_t r = 0; r < wl->nregions; r++) {
		s->maps[r] = calloc(ftr_bitmap_words(s->lay.npages[r]), 8);
		if (!s->maps[r])
			goto out_free;
	}
	*out = s;
	return 0;
out_free:
	ftr_migrate_src_destroy(s);
	return -ENOMEM;
}

void ftr_migrate_src_destroy(struct ftr_migrate_src *s)
{
	if (!s)
		return;
	stop_threads(s);
	ftr_track_destroy(s->track);
	if (s->maps)
		for (uint32_t r = 0; r < s->lay.nregions; r++)
			free(s->maps[r]);
	free(s->maps);
	free(s->stale);
	free(s->push);
	free(s->probe);
	free(s->ub);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->push_lock);
	pthread_cond_destroy(&s->cv);
	free(s);
}
