/* SPDX-License-Identifier: MIT */
/*
 * Migration destination, the session side: listener, channels, precopy
 * rounds, the switch, postcopy recovery (protocol in ftrepl/migrate.h,
 * memory in migrate_dstmem.c).
 *
 * Threads:
 *   - "listener": accepts connections, starts a thread per connection,
 *     reaps finished ones, and fails the migration when a broken postcopy
 *     connection is not back within recover_timeout_ms;
 *   - one thread per connection: reads its HELLO, attaches it to the
 *     current incarnation as control, data or urgent channel, then:
 *       control  BLOB / BITMAP / COMMIT (round ends and the switch),
 *                heartbeats, BYE; on a reconnection it first waits for every
 *                channel, then sends the bitmap of the pages still lacking;
 *       data     PAGES / ZERO_PAGES into the store (md_take_pages);
 *       urgent   the answers to page requests, the same way.
 * Incarnations: a postcopy reconnection starts a new one only after every
 * thread of the broken one has exited (so no old receiver can still be
 * placing a page when the bitmap of missing pages is computed).
 */
#define FTR_LOG_PREFIX "migrate-dst"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <ftrepl/migrate.h>

#include "checkpoint/migrate_dst.h"
#include "checkpoint/session.h"
#include "common/common.h"

#define MD_ACCEPT_MS 100
#define MD_DATA_IDLE_MS 200

/*
 * Fails the migration with the first reason given. When tell is set, the
 * peer is sent an ERROR naming it after the reason is recorded and before
 * the channels are shut, so a peer that closes on reading it cannot replace
 * the reason with "connection closed".
 */
static void md_fail_tellv(struct ftr_migrate_dst *d, struct ftr_chan *tell, const char *fmt,
			  va_list ap) FTR_PRINTF(3, 0);

static void md_fail_tellv(struct ftr_migrate_dst *d, struct ftr_chan *tell, const char *fmt,
			  va_list ap)
{
	bool claimed = false;

	pthread_mutex_lock(&d->lock);
	if (!d->failed && d->phase != FTR_MIG_COMPLETED) {
		d->failed = true;
		claimed = true;
		vsnprintf(d->err, sizeof(d->err), fmt, ap);
		pr_err("%s", d->err);
		d->phase = FTR_MIG_FAILED;
		if (!d->t_done)
			d->t_done = ftr_now_ns();
	}
	pthread_mutex_unlock(&d->lock);
	if (claimed && tell)
		ftr_send_error(tell, FTR_WERR_PROTOCOL, "%s", d->err);
	pthread_mutex_lock(&d->lock);
	if (claimed)
		for (struct md_conn *c = d->conns; c; c = c->next)
			if (c->chan)
				ftr_chan_shutdown(c->chan);
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->lock);
	md_wake_waiters(d);
}

void md_fail(struct ftr_migrate_dst *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	md_fail_tellv(d, NULL, fmt, ap);
	va_end(ap);
}

static void md_fail_tell(struct ftr_migrate_dst *d, struct ftr_chan *tell, const char *fmt, ...)
	FTR_PRINTF(3, 4);

static void md_fail_tell(struct ftr_migrate_dst *d, struct ftr_chan *tell, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	md_fail_tellv(d, tell, fmt, ap);
	va_end(ap);
}

void md_set_completed_if_done(struct ftr_migrate_dst *d)
{
	pthread_mutex_lock(&d->lock);
	if (!d->failed && atomic_load(&d->n_installed) == d->lay.total_pages &&
	    atomic_load(&d->inst_done) &&
	    (d->phase == FTR_MIG_POSTCOPY_RUN || d->phase == FTR_MIG_RECOVERING ||
	     d->phase == FTR_MIG_SWITCHING)) {
		d->phase = FTR_MIG_COMPLETED;
		d->t_done = ftr_now_ns();
		pr_info("completed: every page in place, %" PRIu64 " ms after the switch",
			(d->t_done - d->t_running) / 1000000);
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->lock);
}

void md_maybe_bye(struct ftr_migrate_dst *d)
{
	struct ftr_rec rec;

	pthread_mutex_lock(&d->lock);
	if (d->bye_ok && !d->bye_sent && !atomic_load(&d->n_need) && d->ctl && !d->inc_broken &&
	    !d->failed) {
		d->bye_sent = true;
		memset(&rec, 0, sizeof(rec));
		rec.u.bye.reason = FTR_BYE_SWITCHED;
		ftr_send_simple(d->ctl->chan, FTR_REC_BYE, 0, &rec);
		pr_info("every page received: said BYE");
	}
	pthread_mutex_unlock(&d->lock);
}

/* A channel of incarnation inc broke (err: the transport's). Before the
 * switch that ends the migration; after it the source reconnects. */
static void md_conn_broken(struct ftr_migrate_dst *d, uint64_t inc, int err, const char *fmt, ...)
	FTR_PRINTF(4, 5);
static void md_conn_broken(struct ftr_migrate_dst *d, uint64_t inc, int err, const char *fmt, ...)
{
	char why[192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&d->lock);
	if (d->inc != inc || d->inc_broken || d->failed || atomic_load(&d->stopping)) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (d->switch_round == FTR_EPOCH_NONE || !mig_err_is_conn(err)) {
		pthread_mutex_unlock(&d->lock);
		md_fail(d, "%s%s", why, d->switch_round == FTR_EPOCH_NONE ?
			" (before the switch: the migration is off, the source keeps the workload)" : "");
		return;
	}
	d->inc_broken = true;
	if (d->bye_sent && !atomic_load(&d->n_need))
		d->source_done = true;	/* it closes after our BYE: expected */
	if (d->source_done) {
		/* Everything was said: nothing to recover. */
		pthread_mutex_unlock(&d->lock);
		return;
	}
	d->broken_ns = ftr_now_ns();
	if (d->phase == FTR_MIG_POSTCOPY_RUN)
		d->phase = FTR_MIG_RECOVERING;
	pr_warn("connection lost in postcopy (%s): waiting for the source to reconnect", why);
	for (struct md_conn *c = d->conns; c; c = c->next)
		if (c->inc == inc && c->chan)
			ftr_chan_shutdown(c->chan);
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_lock(&d->req_lock);
	d->req_chan = NULL;
	pthread_mutex_unlock(&d->req_lock);
	md_wake_waiters(d);
}

static bool md_conn_over(struct ftr_migrate_dst *d, uint64_t inc)
{
	bool r;

	pthread_mutex_lock(&d->lock);
	r = d->failed || d->inc != inc || d->inc_broken || atomic_load(&d->stopping);
	pthread_mutex_unlock(&d->lock);
	return r;
}

static const char *errname(int err)
{
	return err == -EAGAIN ? "timed out" : err == -ENOTCONN ? "closed by the source"
								: strerror(-err);
}

/* ---- handshake ------------------------------------------------------------------------ */

static int send_hello_reply(struct ftr_migrate_dst *d, struct ftr_chan *c, const struct ftr_hello *req,
			    uint64_t last_committed)
{
	struct ftr_rec *rec = calloc(1, sizeof(*rec));
	struct ftr_hello *h;
	int ret;

	if (!rec)
		return -ENOMEM;
	h = &rec->u.hello;
	rec->hdr.type = FTR_REC_HELLO;
	rec->hdr.flags = FTR_WF_REPLY;
	memcpy(h->session, req->session, 16);
	h->generation = req->generation;
	h->features = d->features;
	h->page_size = req->page_size;
	h->role = FTR_ROLE_STANDBY;
	h->channel = req->channel;
	h->nchannels = req->nchannels;
	h->last_committed = last_committed;
	h->cache_size = d->o.cache_size;
	ret = ftr_chan_send_rec(c, rec, NULL, 0);
	free(rec);
	return ret;
}

/* A new migration: check the layout, set up memory and page sets. Under
 * lock (memory setup included: nothing else runs yet). */
static int session_begin_locked(struct ftr_migrate_dst *d, const struct ftr_hello *h, char *msg,
				size_t mlen, enum ftr_wire_errcode *code)
{
	int ret;

	*code = FTR_WERR_LAYOUT;
	if (h->last_committed != FTR_EPOCH_NONE) {
		*code = FTR_WERR_SESSION;
		snprintf(msg, mlen, "no migration of this session to resume here");
		return -EPROTO;
	}
	mig_layout_from_hello(&d->lay, h);
	if (d->lay.bytes > d->o.cache_size) {
		snprintf(msg, mlen, "the image needs %" PRIu64 " bytes, this destination takes %"
			 PRIu64, d->lay.bytes, d->o.cache_size);
		return -ENOSPC;
	}
	d->nch = h->nchannels;
	mig_layout_limits(&d->lay, d->nch, &d->lim);
	d->pstate = calloc(d->lay.bits + 64, 1);
	d->seen = mig_bitmap_alloc(&d->lay);
	d->need = mig_bitmap_alloc(&d->lay);
	d->installed = mig_bitmap_alloc(&d->lay);
	d->bounced = mig_bitmap_alloc(&d->lay);
	d->requested = mig_bitmap_alloc(&d->lay);
	d->blob = malloc(FTR_WIRE_MAX_BLOB);
	d->req_rec = calloc(1, sizeof(*d->req_rec));
	if (!d->pstate || !d->seen || !d->need || !d->installed || !d->bounced || !d->requested ||
	    !d->blob || !d->req_rec) {
		*code = FTR_WERR_INTERNAL;
		snprintf(msg, mlen, "out of memory for the page maps");
		return -ENOMEM;
	}
	ret = md_mem_setup(d, msg, mlen);
	if (ret) {
		*code = FTR_WERR_INTERNAL;
		return ret;
	}
	memcpy(d->session, h->session, 16);
	d->generation = h->generation;
	d->features = h->features & (FTR_FEAT_DATA_CRC | FTR_FEAT_ZERO_FILL);
	d->have_session = true;
	d->inc = 1;
	d->inc_threads = 0;
	d->phase = FTR_MIG_PRECOPY_RUN;
	d->t_first = ftr_now_ns();
	mig_bitmap_rx_init(&d->brx);
	d->brx_seq = FTR_EPOCH_NONE;
	pthread_cond_broadcast(&d->cv);
	return 0;
}

/* Waits (lock held) until the threads of the broken incarnation are gone. */
static int wait_inc_drained_locked(struct ftr_migrate_dst *d)
{
	uint64_t end = ftr_now_ms() + (uint64_t)d->o.timeout_ms;

	while (d->inc_threads) {
		struct timespec ts = ftr_deadline_ms(20);

		if (ftr_now_ms() > end || d->failed || atomic_load(&d->stopping))
			return -ETIMEDOUT;
		pthread_cond_timedwait(&d->cv, &d->lock, &ts);
	}
	return 0;
}

/* Attaches conn (whose HELLO is h) to the session. Returns 0 (reply sent),
 * 1 (reply sent, nothing more to do on this connection), or -errno after
 * sending an ERROR. */
static int attach(struct md_conn *c, const struct ftr_hello *h)
{
	struct ftr_migrate_dst *d = c->dst;
	enum ftr_wire_errcode code = FTR_WERR_PROTOCOL;
	uint64_t reply_lc = FTR_EPOCH_NONE;
	char msg[256] = "";
	int ret = 0, done = 0;

	pthread_mutex_lock(&d->lock);
	if (h->role != FTR_ROLE_PRIMARY) {
		snprintf(msg, sizeof(msg), "HELLO from a %s: a migration source is expected",
			 h->role == FTR_ROLE_STANDBY ? "standby" : "peer of unknown role");
		ret = -EPROTO;
	} else if (!d->have_session) {
		if (h->channel != FTR_CHAN_CONTROL || d->phase != FTR_MIG_CONNECTING) {
			snprintf(msg, sizeof(msg), "channel %u before the control channel", h->channel);
			ret = -EPROTO;
		} else {
			ret = session_begin_locked(d, h, msg, sizeof(msg), &code);
		}
		if (!ret) {
			c->inc = d->inc;
			c->role = FTR_CHAN_CONTROL;
			d->ctl = c;
			d->inc_threads++;
			ftr_strlcpy(d->transport, ftr_chan_transport(c->chan), sizeof(d->transport));
		}
	} else if (memcmp(h->session, d->session, 16) || h->generation != d->generation) {
		code = FTR_WERR_BUSY;
		snprintf(msg, sizeof(msg), "a migration of another session is in progress here");
		ret = -EBUSY;
	} else if (h->nchannels != d->nch || h->page_size != d->lay.page_size ||
		   h->nregions != d->lay.nregions) {
		code = FTR_WERR_LAYOUT;
		snprintf(msg, sizeof(msg), "HELLO does not match the session's layout");
		ret = -EPROTO;
	} else if (h->channel == FTR_CHAN_CONTROL) {
		/* A reconnection. */
		if (h->last_committed == FTR_EPOCH_NONE) {
			snprintf(msg, sizeof(msg), "second control channel of the session");
			ret = -EPROTO;
		} else if (d->switch_round == FTR_EPOCH_NONE) {
			/* Never switched: tell the source, it keeps the workload. */
			done = 1;
		} else if (h->last_committed != d->switch_round) {
			code = FTR_WERR_SESSION;
			snprintf(msg, sizeof(msg), "reconnection for switch round %" PRIu64
				 ", this destination switched at %" PRIu64, h->last_committed,
				 d->switch_round);
			ret = -EPROTO;
		} else if (d->failed) {
			snprintf(msg, sizeof(msg), "the migration failed here: %.200s", d->err);
			code = FTR_WERR_INTERNAL;
			ret = -ECANCELED;
		} else {
			d->inc_broken = true;	/* whatever was left of the old one */
			for (struct md_conn *o = d->conns; o; o = o->next)
				if (o->inc == d->inc && o->chan)
					ftr_chan_shutdown(o->chan);
			ret = wait_inc_drained_locked(d);
			if (ret) {
				/* Transient: close without an ERROR, the source retries. */
				pthread_mutex_unlock(&d->lock);
				pr_warn("reconnection from %s: the previous connection did not "
					"wind down yet", ftr_chan_peer(c->chan));
				return ret;
			} else {
				d->inc++;
				d->inc_broken = false;
				d->bye_sent = false;
				d->bye_ok = false;
				d->ctl = c;
				d->urg = NULL;
				memset(d->data, 0, sizeof(d->data));
				c->inc = d->inc;
				c->role = FTR_CHAN_CONTROL;
				d->inc_threads++;
				reply_lc = d->switch_round;
			}
		}
		if (done)
			reply_lc = FTR_EPOCH_NONE;
	} else {
		bool urgent = h->channel == FTR_CHAN_URGENT;
		struct md_conn **slot = urgent ? &d->urg : &d->data[h->channel];

		if (!d->ctl || d->inc_broken || d->ctl->inc != d->inc || *slot) {
			snprintf(msg, sizeof(msg), "channel %u is not expected now", h->channel);
			ret = -EPROTO;
		} else {
			*slot = c;
			c->inc = d->inc;
			c->role = h->channel;
			d->inc_threads++;
			reply_lc = d->switch_round;
			pthread_cond_broadcast(&d->cv);
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (ret) {
		pr_warn("refused a channel from %s: %s", ftr_chan_peer(c->chan), msg);
		ftr_send_error(c->chan, code, "%s", msg);
		return ret;
	}
	ret = send_hello_reply(d, c->chan, h, reply_lc);
	if (ret)
		return ret;
	return done;
}

/* ---- data and urgent channels ------------------------------------------------------------ */

static void data_loop(struct md_conn *c)
{
	struct ftr_migrate_dst *d = c->dst;
	uint64_t inc = c->inc;

	while (!md_conn_over(d, inc)) {
		struct ftr_wire_error werr;
		char msg[256];
		int ret = mig_recv_rec(c->chan, c->head, MD_DATA_IDLE_MS, &d->lim, c->rec, &werr);

		if (ret == -EAGAIN)
			continue;
		if (ret == -EPROTO) {
			md_fail(d, "bad record on %s channel %u: %s",
				c->role == FTR_CHAN_URGENT ? "the urgent" : "data", c->role, werr.msg);
			break;
		}
		if (ret) {
			if (ret != -ESHUTDOWN)
				md_conn_broken(d, inc, ret, "channel %u: %s", c->role, errname(ret));
			break;
		}
		atomic_store(&d->rx_any_ns, ftr_now_ns());
		switch (c->rec->hdr.type) {
		case FTR_REC_PAGES:
		case FTR_REC_ZERO_PAGES:
			ret = md_take_pages(c, c->rec, msg, sizeof(msg));
			if (ret == -EPROTO) {
				md_fail_tell(d, c->chan, "bad %s on channel %u: %s",
					     ftr_rec_type_name(c->rec->hdr.type), c->role, msg);
			} else if (ret == -ENOMEM) {
				/* this host's memory, not the connection */
				md_fail_tell(d, c->chan, "channel %u: %s", c->role, msg);
			} else if (ret) {
				md_conn_broken(d, inc, ret, "channel %u: %s", c->role, errname(ret));
			}
			break;
		case FTR_REC_HEARTBEAT:
			break;
		case FTR_REC_ERROR:
			md_fail(d, "source reported: %s", c->rec->u.error.msg);
			ret = -EPROTO;
			break;
		default:
			md_fail(d, "unexpected %s on channel %u", ftr_rec_type_name(c->rec->hdr.type),
				c->role);
			ret = -EPROTO;
			break;
		}
		if (ret)
			break;
		if (c->rec->hdr.type == FTR_REC_HEARTBEAT)
			continue;
		atomic_fetch_add(&c->nrec, 1);
		pthread_mutex_lock(&d->lock);
		if (d->barrier_wait)
			pthread_cond_broadcast(&d->cv);
		pthread_mutex_unlock(&d->lock);
	}
}

/* ---- control channel ----------------------------------------------------------------------- */

/* Receives a record's data part (BLOB, BITMAP) into buf (cap bytes). */
static int recv_data_into(struct md_conn *c, void *buf, size_t cap, char *msg, size_t mlen)
{
	struct iovec iov = { .iov_base = buf, .iov_len = c->rec->hdr.data_len };
	struct ftr_wire_error werr;
	int ret;

	if (c->rec->hdr.data_len > cap) {
		snprintf(msg, mlen, "%s data part of %u bytes (at most %zu)",
			 ftr_rec_type_name(c->rec->hdr.type), c->rec->hdr.data_len, cap);
		return -EPROTO;
	}
	ret = ftr_chan_recv_data(c->chan, &c->rec->hdr, &iov, 1);
	if (!ret && ftr_wire_check_data(&c->rec->hdr, &iov, 1, &werr)) {
		snprintf(msg, mlen, "%s", werr.msg);
		ret = -EPROTO;
	}
	return ret;
}

/* Waits until each data channel delivered what COMMIT says it carried. */
static int barrier(struct ftr_migrate_dst *d, uint64_t inc, const struct ftr_commit *cm, char *msg,
		   size_t mlen)
{
	uint64_t last_total = UINT64_MAX, last_change = ftr_now_ms();
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	d->barrier_wait = true;
	for (;;) {
		uint64_t total = 0;
		bool all = true;

		for (uint32_t i = 1; i <= d->nch; i++) {
			uint64_t n = d->data[i] ? atomic_load(&d->data[i]->nrec) : 0;

			total += n;
			if (n > cm->batches[i - 1]) {
				snprintf(msg, mlen, "data channel %u carried %" PRIu64 " records, COMMIT "
					 "%" PRIu64 " says %u", i, n, d->brx_seq, cm->batches[i - 1]);
				ret = -EPROTO;
				goto out;
			}
			all = all && n == cm->batches[i - 1];
		}
		if (all)
			break;
		if (d->failed || d->inc != inc || d->inc_broken || atomic_load(&d->stopping)) {
			ret = -ECANCELED;
			break;
		}
		if (total != last_total) {
			last_total = total;
			last_change = ftr_now_ms();
		} else if (ftr_now_ms() - last_change > (uint64_t)d->o.timeout_ms) {
			snprintf(msg, mlen, "the data channels stalled short of what COMMIT promises");
			ret = -ETIMEDOUT;
			break;
		}
		struct timespec ts = ftr_deadline_ms(50);

		pthread_cond_timedwait(&d->cv, &d->lock, &ts);
	}
out:
	d->barrier_wait = false;
	pthread_mutex_unlock(&d->lock);
	return ret;
}

/* The switch: everything of the precopy is in; the bitmap says what is
 * not. Runs the workload here, then ACK(seq). */
static int do_switch(struct md_conn *c, uint64_t seq, char *msg, size_t mlen)
{
	struct ftr_migrate_dst *d = c->dst;
	const struct mig_layout *l = &d->lay;
	struct ftr_chan *urg;
	uint64_t n_need = 0;
	int ret;

	/* By words: this is part of the downtime. Padding bits are clear in
	 * both maps; their pstate bytes are never looked at. */
	for (uint32_t r = 0; r < l->nregions; r++) {
		uint64_t g0 = l->g0[r], end = g0 + l->npages[r];

		for (uint64_t g = g0; g < end; g += 64) {
			uint64_t n = FTR_MIN(64, end - g);
			uint64_t real = n == 64 ? ~0ull : (1ull << n) - 1;
			uint64_t need = d->need[g / 64] & real, lost = ~need & ~d->seen[g / 64] & real;

			if (lost) {
				snprintf(msg, mlen, "the switch bitmap says region %u page %" PRIu64
					 " is here, but it never arrived", r,
					 g - g0 + (uint64_t)__builtin_ctzll(lost));
				return -EPROTO;
			}
			if (!need || need == real) {
				memset(&d->pstate[g], need ? MD_NEED : MD_FINAL, n);
			} else {
				for (uint64_t i = 0; i < n; i++)
					d->pstate[g + i] = (need >> i) & 1 ? MD_NEED : MD_FINAL;
			}
			n_need += (uint64_t)__builtin_popcountll(need);
		}
	}
	atomic_store(&d->n_need, n_need);
	pthread_mutex_lock(&d->lock);
	d->switch_round = seq;
	d->phase = FTR_MIG_SWITCHING;
	pthread_mutex_unlock(&d->lock);
	atomic_store(&d->switched, true);
	pthread_mutex_lock(&d->lock);
	urg = d->urg ? d->urg->chan : NULL;
	pthread_mutex_unlock(&d->lock);
	md_reset_requests(d, urg);
	ret = md_start_serving(d, msg, mlen);
	if (ret)
		return ret;
	pthread_mutex_lock(&d->lock);
	if (d->phase == FTR_MIG_SWITCHING)	/* broken meanwhile: the source reconnects */
		d->phase = d->inc_broken ? FTR_MIG_RECOVERING : FTR_MIG_POSTCOPY_RUN;
	d->t_running = ftr_now_ns();
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->lock);
	md_set_completed_if_done(d);	/* nothing may be left to install */
	if (d->o.resume_synth && md_synth_start(d))
		return -ECANCELED;
	if (d->o.on_running) {
		struct ftr_migrate_image img;

		ftr_migrate_dst_image(d, &img);
		d->o.on_running(d->o.ctx, &img);
	}
	ret = ftr_send_simple(c->chan, FTR_REC_ACK, seq, NULL);
	pr_info("switched at round %" PRIu64 ": running, %" PRIu64 " of %" PRIu64 " pages still "
		"to come (%" PRIu64 " us since COMMIT)", seq, n_need, l->total_pages,
		(d->t_running - d->t_commit) / 1000);
	pthread_mutex_lock(&d->lock);
	d->bye_ok = true;
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static int on_commit(struct md_conn *c, char *msg, size_t mlen)
{
	struct ftr_migrate_dst *d = c->dst;
	uint64_t seq = c->rec->hdr.seq;
	bool sw;
	int ret;

	pthread_mutex_lock(&d->lock);
	if (d->phase != FTR_MIG_PRECOPY_RUN || seq != d->round + 1) {
		pthread_mutex_unlock(&d->lock);
		snprintf(msg, mlen, "COMMIT %" PRIu64 " unexpected (phase %s, round %" PRIu64 ")", seq,
			 ftr_migrate_phase_name(d->phase), d->round);
		return -EPROTO;
	}
	sw = d->brx.done;
	if (sw && d->brx_seq != seq) {
		pthread_mutex_unlock(&d->lock);
		snprintf(msg, mlen, "COMMIT %" PRIu64 " after the bitmap of %" PRIu64, seq, d->brx_seq);
		return -EPROTO;
	}
	if (!sw && d->brx.region + d->brx.next) {
		pthread_mutex_unlock(&d->lock);
		snprintf(msg, mlen, "COMMIT %" PRIu64 " after an incomplete bitmap", seq);
		return -EPROTO;
	}
	if (sw)
		d->t_commit = ftr_now_ns();
	pthread_mutex_unlock(&d->lock);
	ret = barrier(d, c->inc, &c->rec->u.commit, msg, mlen);
	if (ret)
		return ret;
	if (sw)
		return do_switch(c, seq, msg, mlen);
	pthread_mutex_lock(&d->lock);
	d->round = seq;
	pthread_mutex_unlock(&d->lock);
	return ftr_send_simple(c->chan, FTR_REC_ACK, seq, NULL);
}

/* Reconnected: wait for every channel, then tell the source what is
 * still missing. */
static int recovery_handshake(struct md_conn *c, char *msg, size_t mlen)
{
	struct ftr_migrate_dst *d = c->dst;
	uint64_t end = ftr_now_ms() + (uint64_t)d->o.timeout_ms;
	uint64_t *lack = mig_bitmap_alloc(&d->lay);
	struct ftr_chan *urg;
	int ret = 0;

	if (!lack)
		return -ENOMEM;
	pthread_mutex_lock(&d->lock);
	for (;;) {
		bool all = d->urg != NULL;

		for (uint32_t i = 1; i <= d->nch; i++)
			all = all && d->data[i];
		if (all)
			break;
		if (d->inc != c->inc || d->inc_broken || d->failed || atomic_load(&d->stopping) ||
		    ftr_now_ms() > end) {
			ret = -ETIMEDOUT;
			break;
		}
		struct timespec ts = ftr_deadline_ms(20);

		pthread_cond_timedwait(&d->cv, &d->lock, &ts);
	}
	urg = d->urg ? d->urg->chan : NULL;
	pthread_mutex_unlock(&d->lock);
	if (ret) {
		snprintf(msg, mlen, "not every channel came back");
		goto out;
	}
	/* Every thread of the old connection has exited: no page is RECV. */
	for (uint32_t r = 0; r < d->lay.nregions; r++)
		for (uint64_t p = 0; p < d->lay.npages[r]; p++)
			if (__atomic_load_n(&d->pstate[d->lay.g0[r] + p], __ATOMIC_SEQ_CST) != MD_FINAL)
				ftr_bit_set(lack, d->lay.g0[r] + p);
	ret = mig_send_bitmap(c->chan, &d->lay, lack, d->switch_round,
			      d->features & FTR_FEAT_DATA_CRC);
	if (ret) {
		snprintf(msg, mlen, "sending the bitmap: %s", strerror(-ret));
		goto out;
	}
	pthread_mutex_lock(&d->lock);
	d->recoveries++;
	d->bye_ok = true;
	if (d->phase == FTR_MIG_RECOVERING)
		d->phase = FTR_MIG_POSTCOPY_RUN;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->lock);
	md_reset_requests(d, urg);	/* waiting faults ask again on the new channel */
	pr_info("source reconnected (recovery %u): %" PRIu64 " pages still missing", d->recoveries,
		mig_bitmap_count(&d->lay, lack));
out:
	free(lack);
	return ret;
}

static void send_heartbeat(struct ftr_migrate_dst *d, struct ftr_chan *c)
{
	struct ftr_rec rec;

	memset(&rec, 0, sizeof(rec));
	rec.u.heartbeat.time_ns = ftr_now_ns();
	pthread_mutex_lock(&d->lock);
	rec.u.heartbeat.committed = d->round ? d->round : FTR_EPOCH_NONE;
	pthread_mutex_unlock(&d->lock);
	rec.u.heartbeat.acked = FTR_EPOCH_NONE;
	ftr_send_simple(c, FTR_REC_HEARTBEAT, 0, &rec);
}

static void control_loop(struct md_conn *c)
{
	struct ftr_migrate_dst *d = c->dst;
	uint64_t inc = c->inc, last_hb = 0, last_rx = ftr_now_ns();
	char msg[256];
	int ret;

	if (inc > 1 && (ret = recovery_handshake(c, msg, sizeof(msg)))) {
		md_conn_broken(d, inc, -ECONNRESET, "reconnection: %s", msg);
		return;
	}
	while (!md_conn_over(d, inc)) {
		struct ftr_wire_error werr;
		uint64_t now = ftr_now_ns();

		if (now - last_hb >= (uint64_t)d->o.heartbeat_ms * 1000000ull) {
			send_heartbeat(d, c->chan);
			last_hb = now;
		}
		md_maybe_bye(d);
		ret = mig_recv_rec(c->chan, c->head, FTR_MIN(d->o.heartbeat_ms, 100), &d->lim, c->rec,
				   &werr);
		if (ret == -EAGAIN) {
			uint64_t any = atomic_load(&d->rx_any_ns);

			/* Data channels of this incarnation count too (a page
			 * record of an older one cannot arrive: those are shut). */
			if (any > last_rx)
				last_rx = any;
			if (ftr_now_ns() - last_rx > (uint64_t)d->o.timeout_ms * 1000000ull) {
				md_conn_broken(d, inc, -ETIMEDOUT, "source silent for %d ms",
					       d->o.timeout_ms);
				break;
			}
			continue;
		}
		if (ret == -EPROTO) {
			md_fail(d, "bad record on the control channel: %s", werr.msg);
			break;
		}
		if (ret) {
			if (ret != -ESHUTDOWN)
				md_conn_broken(d, inc, ret, "control channel: %s", errname(ret));
			break;
		}
		last_rx = ftr_now_ns();
		msg[0] = '\0';
		switch (c->rec->hdr.type) {
		case FTR_REC_HEARTBEAT:
			break;
		case FTR_REC_BLOB:
			pthread_mutex_lock(&d->lock);
			ret = d->phase == FTR_MIG_PRECOPY_RUN ? 0 : -EPROTO;
			pthread_mutex_unlock(&d->lock);
			if (ret)
				snprintf(msg, sizeof(msg), "BLOB after the switch");
			else
				ret = recv_data_into(c, d->blob, FTR_WIRE_MAX_BLOB, msg, sizeof(msg));
			if (!ret)
				d->blob_len = c->rec->hdr.data_len;
			break;
		case FTR_REC_BITMAP: {
			uint8_t *buf = malloc(MIG_BITMAP_CHUNK / 8);

			pthread_mutex_lock(&d->lock);
			ret = d->phase == FTR_MIG_PRECOPY_RUN &&
			      (d->brx_seq == FTR_EPOCH_NONE || d->brx_seq == c->rec->hdr.seq) ? 0 : -EPROTO;
			pthread_mutex_unlock(&d->lock);
			if (ret)
				snprintf(msg, sizeof(msg), "BITMAP %" PRIu64 " unexpected now",
					 c->rec->hdr.seq);
			else if (!buf)
				ret = -ENOMEM;
			else
				ret = recv_data_into(c, buf, MIG_BITMAP_CHUNK / 8, msg, sizeof(msg));
			if (!ret) {
				pthread_mutex_lock(&d->lock);
				d->brx_seq = c->rec->hdr.seq;
				ret = mig_bitmap_rx_add(&d->brx, &d->lay, c->rec, buf, d->need, msg,
							sizeof(msg));
				pthread_mutex_unlock(&d->lock);
			}
			free(buf);
			break;
		}
		case FTR_REC_COMMIT:
			ret = on_commit(c, msg, sizeof(msg));
			break;
		case FTR_REC_BYE:
			pthread_mutex_lock(&d->lock);
			if (c->rec->u.bye.reason == FTR_BYE_SWITCHED && d->bye_sent) {
				d->source_done = true;
				pthread_mutex_unlock(&d->lock);
				return;
			}
			pthread_mutex_unlock(&d->lock);
			md_fail(d, "source said BYE (reason %u) before the migration completed",
				c->rec->u.bye.reason);
			return;
		case FTR_REC_ERROR:
			md_fail(d, "source reported: %s", c->rec->u.error.msg);
			return;
		default:
			snprintf(msg, sizeof(msg), "unexpected %s on the control channel",
				 ftr_rec_type_name(c->rec->hdr.type));
			ret = -EPROTO;
			break;
		}
		if (ret == -EPROTO) {
			md_fail_tell(d, c->chan, "%s", msg);
			break;
		}
		if (ret == -ECANCELED)
			break;
		if (ret && msg[0]) {
			md_fail(d, "%s", msg);
			break;
		}
		if (ret) {
			md_conn_broken(d, inc, ret, "control channel: %s", errname(ret));
			break;
		}
	}
}

/* ---- connection threads --------------------------------------------------------------------- */

static void *conn_main(void *arg)
{
	struct md_conn *c = arg;
	struct ftr_migrate_dst *d = c->dst;
	struct ftr_wire_error werr;
	int ret;

	ftr_thread_name("ftr-md-conn");

	c->head = malloc(MIG_HEAD_CAP);
	c->rec = malloc(sizeof(*c->rec));
	if (!c->head || !c->rec)
		goto out;
	ftr_chan_set_stall_timeout(c->chan, d->o.timeout_ms);
	ret = mig_recv_rec(c->chan, c->head, d->o.timeout_ms, NULL, c->rec, &werr);
	if (ret) {
		if (ret == -EPROTO)
			ftr_send_error(c->chan, FTR_WERR_PROTOCOL, "%s", werr.msg);
		pr_warn("connection from %s: no valid HELLO (%s)", ftr_chan_peer(c->chan),
			ret == -EPROTO ? werr.msg : errname(ret));
		goto out;
	}
	if (c->rec->hdr.type != FTR_REC_HELLO || (c->rec->hdr.flags & FTR_WF_REPLY)) {
		ftr_send_error(c->chan, FTR_WERR_PROTOCOL, "expected HELLO, got %s",
			       ftr_rec_type_name(c->rec->hdr.type));
		goto out;
	}
	ret = attach(c, &c->rec->u.hello);
	if (ret)
		goto out;
	if (c->role != FTR_CHAN_CONTROL) {
		data_loop(c);
	} else {
		control_loop(c);
	}
out:
	/* Page requests must not go to a channel about to be freed. */
	pthread_mutex_lock(&d->req_lock);
	if (d->req_chan == c->chan)
		d->req_chan = NULL;
	pthread_mutex_unlock(&d->req_lock);
	pthread_mutex_lock(&d->lock);
	if (c->inc && c->inc == d->inc && d->inc_threads)
		d->inc_threads--;
	if (c->inc == d->inc) {
		/* Forget this channel's slot so the next incarnation can fill it. */
		if (d->ctl == c)
			d->ctl = NULL;
		if (d->urg == c)
			d->urg = NULL;
		for (uint32_t i = 1; i <= d->nch; i++)
			if (d->data[i] == c)
				d->data[i] = NULL;
	}
	atomic_store(&c->done, true);
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

static void conn_free(struct md_conn *c)
{
	ftr_chan_close(c->chan);
	if (c->scratch)
		munmap(c->scratch, (size_t)FTR_WIRE_MAX_BATCH * c->dst->lay.page_size);
	free(c->head);
	free(c->rec);
	free(c);
}

/* Joins and frees finished connection threads (all of them: after stop). */
static void reap_conns(struct ftr_migrate_dst *d, bool all)
{
	for (;;) {
		struct md_conn **pp, *c = NULL;

		pthread_mutex_lock(&d->lock);
		for (pp = &d->conns; *pp; pp = &(*pp)->next) {
			if (all || atomic_load(&(*pp)->done)) {
				c = *pp;
				*pp = c->next;
				break;
			}
		}
		pthread_mutex_unlock(&d->lock);
		if (!c)
			return;
		pthread_join(c->th, NULL);
		conn_free(c);
	}
}

static void *listener_main(void *arg)
{
	struct ftr_migrate_dst *d = arg;

	ftr_thread_name("ftr-md-listen");

	while (!atomic_load(&d->stopping)) {
		struct ftr_chan *ch;
		struct md_conn *c;
		int ret = ftr_tp_accept(d->lis, MD_ACCEPT_MS, &ch);
		bool overdue;

		reap_conns(d, false);
		pthread_mutex_lock(&d->lock);
		overdue = d->inc_broken && !d->source_done && !d->failed &&
			  d->phase == FTR_MIG_RECOVERING &&
			  ftr_now_ns() - d->broken_ns > (uint64_t)d->o.recover_timeout_ms * 1000000ull;
		pthread_mutex_unlock(&d->lock);
		if (overdue)
			md_fail(d, "connection lost in postcopy and the source did not come back "
				"within %d ms: %" PRIu64 " pages are missing", d->o.recover_timeout_ms,
				atomic_load(&d->n_need));
		if (ret == -EAGAIN)
			continue;
		if (ret == -ESHUTDOWN)
			break;
		if (ret) {
			pr_warn("accept: %s", strerror(-ret));
			usleep(10000);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			ftr_chan_close(ch);
			continue;
		}
		c->dst = d;
		c->chan = ch;
		c->role = -1;
		pthread_mutex_lock(&d->lock);
		ret = -pthread_create(&c->th, NULL, conn_main, c);
		if (!ret) {
			c->next = d->conns;
			d->conns = c;
		}
		pthread_mutex_unlock(&d->lock);
		if (ret) {
			ftr_chan_close(ch);
			free(c);
		}
	}
	return NULL;
}

/* ---- public API ---------------------------------------------------------------------------- */

int ftr_migrate_dst_create(const struct ftr_migrate_dst_opts *opts, struct ftr_migrate_dst **out,
			   char *err, size_t errlen)
{
	struct ftr_migrate_dst *d;
	int ret;

	if (!opts || !opts->listen || !opts->cache_size || (unsigned)opts->mem > FTR_MIG_MEM_ANON) {
		if (err && errlen)
			snprintf(err, errlen, "a listen address and a cache size are needed");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->o = *opts;
	ftr_strlcpy(d->listen_addr, opts->listen, sizeof(d->listen_addr));
	d->o.listen = d->listen_addr;
	if (!d->o.recover_timeout_ms)
		d->o.recover_timeout_ms = FTR_MIG_DEFAULT_RECOVER_MS;
	if (!d->o.heartbeat_ms)
		d->o.heartbeat_ms = FTR_MIG_DEFAULT_HEARTBEAT_MS;
	if (!d->o.timeout_ms)
		d->o.timeout_ms = FTR_MIG_DEFAULT_TIMEOUT_MS;
	d->memfd = -1;
	d->uffd = -1;
	d->switch_round = FTR_EPOCH_NONE;
	d->phase = FTR_MIG_CONNECTING;
	pthread_mutex_init(&d->lock, NULL);
	ftr_cond_init_monotonic(&d->cv);
	pthread_mutex_init(&d->arr_lock, NULL);
	ftr_cond_init_monotonic(&d->arr_cv);
	pthread_mutex_init(&d->req_lock, NULL);
	ret = ftr_tp_listen(&d->o.tp, d->o.listen, &d->lis);
	if (ret) {
		if (err && errlen)
			snprintf(err, errlen, "cannot listen on %s: %s", d->o.listen, strerror(-ret));
		ftr_migrate_dst_destroy(d);
		return ret;
	}
	*out = d;
	return 0;
}

uint16_t ftr_migrate_dst_port(const struct ftr_migrate_dst *d)
{
	return ftr_listener_port(d->lis);
}

int ftr_migrate_dst_start(struct ftr_migrate_dst *d)
{
	int ret;

	if (d->lis_started)
		return -EALREADY;
	ret = -pthread_create(&d->lis_th, NULL, listener_main, d);
	if (!ret)
		d->lis_started = true;
	return ret;
}

int ftr_migrate_dst_wait(struct ftr_migrate_dst *d, unsigned mask, int timeout_ms)
{
	uint64_t end = ftr_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
	int ret;

	pthread_mutex_lock(&d->lock);
	while (!(mask & (1u << d->phase))) {
		struct timespec ts = ftr_deadline_ms(50);

		if (timeout_ms >= 0 && ftr_now_ms() >= end) {
			pthread_mutex_unlock(&d->lock);
			return -ETIMEDOUT;
		}
		pthread_cond_timedwait(&d->cv, &d->lock, &ts);
	}
	ret = (int)d->phase;
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int ftr_migrate_dst_image(struct ftr_migrate_dst *d, struct ftr_migrate_image *img)
{
	memset(img, 0, sizeof(*img));
	img->memfd = -1;
	if (!atomic_load(&d->switched) || !d->wmem)
		return -ENODATA;
	img->page_size = d->lay.page_size;
	img->nregions = d->lay.nregions;
	for (uint32_t r = 0; r < d->lay.nregions; r++) {
		img->regions[r].base = d->wmem + d->lay.off[r];
		img->regions[r].size = d->lay.size[r];
		ftr_strlcpy(img->regions[r].name, d->lay.name[r], FTR_WIRE_REGION_NAME);
	}
	img->memfd = d->memfd;
	img->blob = d->blob;
	img->blob_len = d->blob_len;
	img->round = d->switch_round;
	return 0;
}

int ftr_migrate_dst_synth_wait(struct ftr_migrate_dst *d, int timeout_ms)
{
	uint64_t end = ftr_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
	int ret;

	if (!d->o.resume_synth)
		return -ENOENT;
	if (!d->o.synth_writes)
		atomic_store(&d->synth_stop, true);
	pthread_mutex_lock(&d->lock);
	while (!atomic_load(&d->synth_finished)) {
		struct timespec ts = ftr_deadline_ms(50);

		if ((timeout_ms >= 0 && ftr_now_ms() >= end) || d->failed) {
			pthread_mutex_unlock(&d->lock);
			return d->failed ? -ECANCELED : -ETIMEDOUT;
		}
		pthread_cond_timedwait(&d->cv, &d->lock, &ts);
	}
	ret = d->synth_err;
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int ftr_migrate_dst_verify(struct ftr_migrate_dst *d, const struct ftr_synth_spec *expect,
			   struct ftr_synth_verdict *v)
{
	pthread_mutex_lock(&d->lock);
	if (d->phase != FTR_MIG_COMPLETED) {
		pthread_mutex_unlock(&d->lock);
		return d->switch_round == FTR_EPOCH_NONE ? -ENODATA : -EBUSY;
	}
	pthread_mutex_unlock(&d->lock);
	if (d->synth_started && !atomic_load(&d->synth_finished))
		return -EBUSY;
	return ftr_synth_verify(d->wmem + d->lay.off[0], d->lay.size[0], expect, v);
}

const char *ftr_migrate_dst_error(struct ftr_migrate_dst *d)
{
	return d->err;
}

int ftr_migrate_dst_get_status(struct ftr_migrate_dst *d, struct ftr_migrate_status *st)
{
	uint64_t now = ftr_now_ns();

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&d->lock);
	st->phase = d->phase;
	st->state = ftr_migrate_phase_state(d->phase);
	if (d->have_session)
		uuid_unparse_lower(d->session, st->session);
	st->round = (uint32_t)d->round;
	st->nchannels = d->nch;
	st->pages_total = d->lay.total_pages;
	if (d->switch_round != FTR_EPOCH_NONE)
		st->pages_left = atomic_load(&d->n_need);
	else if (d->have_session)
		st->pages_left = d->lay.total_pages;
	if (d->t_commit && d->t_running)
		st->downtime_us = (d->t_running - d->t_commit) / 1000;
	if (d->t_first)
		st->precopy_ms = ((d->t_commit ? d->t_commit : now) - d->t_first) / 1000000;
	if (d->t_running)
		st->postcopy_ms = ((d->t_done ? d->t_done : now) - d->t_running) / 1000000;
	if (d->t_first)
		st->total_ms = ((d->t_done ? d->t_done : now) - d->t_first) / 1000000;
	st->recoveries = d->recoveries;
	ftr_strlcpy(st->last_error, d->err, sizeof(st->last_error));
	ftr_strlcpy(st->transport, d->transport, sizeof(st->transport));
	pthread_mutex_unlock(&d->lock);
	st->pages_received = atomic_load(&d->pages_received);
	st->dup_pages = atomic_load(&d->dup_pages);
	st->moved_pages = atomic_load(&d->moved_pages);
	st->fault_reqs = atomic_load(&d->fault_reqs);
	st->workload_writes = atomic_load(&d->synth_k);
	if (d->fs) {
		struct ftr_fs_stats fst;

		ftr_fs_get_stats(d->fs, &fst);
		st->faults = fst.faults;
		st->fault_lat_median_us = fst.fault_lat_median_ns / 1000;
		st->fault_lat_p99_us = fst.fault_lat_p99_ns / 1000;
		st->fault_lat_max_us = fst.fault_lat_max_ns / 1000;
	}
	return 0;
}

void ftr_migrate_dst_stop(struct ftr_migrate_dst *d)
{
	atomic_store(&d->stopping, true);
	if (d->lis)
		ftr_listener_shutdown(d->lis);
	if (d->lis_started)
		pthread_join(d->lis_th, NULL);
	d->lis_started = false;
	pthread_mutex_lock(&d->lock);
	for (struct md_conn *c = d->conns; c; c = c->next)
		ftr_chan_shutdown(c->chan);
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->lock);
	reap_conns(d, true);
	md_stop_serving(d);
}

void ftr_migrate_dst_destroy(struct ftr_migrate_dst *d)
{
	if (!d)
		return;
	ftr_migrate_dst_stop(d);
	if (d->lis)
		ftr_listener_close(d->lis);
	md_mem_teardown(d);
	free(d->pstate);
	free(d->seen);
	free(d->need);
	free(d->installed);
	free(d->bounced);
	free(d->requested);
	free(d->blob);
	free(d->req_rec);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->arr_lock);
	pthread_cond_destroy(&d->arr_cv);
	pthread_mutex_destroy(&d->req_lock);
	free(d);
}
