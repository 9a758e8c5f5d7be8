/* SPDX-License-Identifier: MIT */
/*
 * The primary's epoch engine.
 *
 * Threads:
 *   - the caller of ftr_primary_run() ("engine"): connects, runs the
 *     initial sync (epoch 0), then cuts epochs: quiesce, harvest, blob,
 *     snapshot strategy, send the pages, BLOB, COMMIT;
 *   - "control reader": reads ACK/CREDIT/HEARTBEAT/ERROR from the standby,
 *     sends heartbeats, and fails the session on standby silence.
 *
 * Epoch 0 (initial sync) is sent with FTR_WF_DIRECT straight into the
 * standby's cache: first every page while the workload runs, then, paused,
 * the pages written meanwhile. Later epochs go through staging slots: ring
 * positions are allocated contiguously and only within the credit the
 * standby granted, and the workload's dirty budget keeps every epoch within
 * the staging capacity, so an epoch always fits.
 *
 * Initial-sync pages are striped over data channels by page number (a
 * page always travels on the same channel, so a resend can never be
 * overtaken by its older copy); staged epochs go round-robin.
 */
#define FTR_LOG_PREFIX "primary"

#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <ftrepl/checkpoint.h>

#include "checkpoint/session.h"
#include "checkpoint/workload.h"
#include "common/common.h"
#include "checkpoint/cow.h"
#include "uffd/track.h"

#define PR_STRIPE_SHIFT 10	/* initial-sync stripe: 1024 pages per channel turn */
#define PR_PAUSE_TIMEOUT_MS 5000
#define PR_SYNC_PASSES 5	/* live passes before the final paused one */
#define PR_HELLO_TIMEOUT_MS 15000

/* One record being filled for one channel. */
struct pr_builder {
	struct ftr_rec pages;
	struct ftr_rec zero;
	struct iovec iov[FTR_WIRE_MAX_BATCH];
	uint64_t slot[FTR_WIRE_MAX_BATCH];	/* staging slot of each page (not direct) */
	uint8_t head[FTR_WIRE_HDR_LEN + 8 + 16 * FTR_WIRE_MAX_BATCH];
};

/* A page captured while paused (copy-out). */
struct pr_item {
	uint64_t page;
	uint32_t region;
	uint8_t is_fill;
	uint8_t fill;
	const void *src;
};

struct ftr_primary {
	struct ftr_primary_opts o;
	char connect_addr[256];
	struct ftr_workload *wl;
	uint32_t page_size;
	uint32_t nch;

	struct ftr_chan *ctl;
	struct ftr_chan *data[FTR_WIRE_MAX_CHANNELS + 1];
	uint8_t session[16];
	uint64_t generation;
	uint64_t features;
	uint64_t nslots;
	uint64_t total_pages;

	pthread_mutex_t lock;
	pthread_cond_t cv;
	enum ftr_state state;
	atomic_bool stop_req;
	int wake_fd;		/* eventfd: stop requests wake the engine */
	bool failed;
	bool bye_sent;		/* the session ended in order */
	bool lost_notified;	/* workload told the session failed */
	struct ftr_track *track; /* kernel dirty tracking, NULL: the workload's own */
	struct ftr_cow *cow;	/* --snapshot cow */
	struct ftr_mr **mrs;	/* page sources registered on the data channels */
	uint32_t nmrs, mrs_cap;
	char dirty_name[16];
	uint64_t harvest_ns;	/* last harvest (engine thread; read racily for stats) */
	char err[256];

	/* ring and acks (under lock) */
	uint64_t next_pos;
	uint64_t released;
	uint64_t epoch;		/* last epoch cut, FTR_EPOCH_NONE before sync */
	uint64_t acked;
	uint64_t commit_ns[64];	/* COMMIT send time by epoch % 64 */
	uint64_t last_rx_ns;

	pthread_t reader;
	bool reader_started;

	/* the epoch being sent (engine only) */
	struct pr_builder *b;	/* one per channel, index 0 = channel 1 */
	uint32_t rr;
	uint64_t tx_epoch;
	bool tx_direct;
	uint32_t batches[FTR_WIRE_MAX_CHANNELS];
	uint64_t tx_pages, tx_zero;
	uint64_t **maps;
	uint8_t *bounce;
	struct pr_item *items;	/* copy-out: what the bounce buffer holds */
	uint64_t items_cap, items_n;
	uint64_t hard;		/* most pages an epoch may hold (staging) */
	bool tx_stable;		/* sources cannot change until sent (CRC ok) */
	uint8_t blob[4096];

	/* stats (under lock) */
	uint64_t t_start, t_synced, t_done;
	uint64_t sync_pages;
	struct ftr_lat pause_lat, ack_lat;
	uint64_t pages_sent, zero_sent, bytes_sent;
	uint64_t cut_early, credit_waits, inflight_waits;
};

static void pr_fail(struct ftr_primary *p, const char *fmt, ...) FTR_PRINTF(2, 3);

static void pr_fail(struct ftr_primary *p, const char *fmt, ...)
{
	uint64_t one = 1;
	bool notify;
	va_list ap;

	pthread_mutex_lock(&p->lock);
	/* After BYE the session is over: the standby closing its end is
	 * expected and nothing can fail any more. */
	if (!p->failed && !p->bye_sent) {
		p->failed = true;
		va_start(ap, fmt);
		vsnprintf(p->err, sizeof(p->err), fmt, ap);
		va_end(ap);
		pr_err("%s", p->err);
		p->state = FTR_STATE_FAILED;
		if (p->ctl)
			ftr_chan_shutdown(p->ctl);
		for (uint32_t i = 1; i <= p->nch; i++)
			if (p->data[i])
				ftr_chan_shutdown(p->data[i]);
	}
	notify = p->failed && !p->lost_notified;
	if (notify)
		p->lost_notified = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
	if (notify && p->wl->ops->session_lost)
		p->wl->ops->session_lost(p->wl, p->err);
	if (write(p->wake_fd, &one, sizeof(one)) < 0) {
		/* already signalled */
	}
}

static bool pr_failed(struct ftr_primary *p)
{
	bool f;

	pthread_mutex_lock(&p->lock);
	f = p->failed;
	pthread_mutex_unlock(&p->lock);
	return f;
}

/* ---- control reader ------------------------------------------------------ */

static int on_ack(struct ftr_primary *p, uint64_t e)
{
	uint64_t want;

	pthread_mutex_lock(&p->lock);
	want = p->acked == FTR_EPOCH_NONE ? 0 : p->acked + 1;
	if (e != want || p->epoch == FTR_EPOCH_NONE || e > p->epoch) {
		pthread_mutex_unlock(&p->lock);
		pr_fail(p, "standby sent ACK %" PRIu64 ", expected %" PRIu64, e, want);
		return -EPROTO;
	}
	p->acked = e;
	ftr_lat_add(&p->ack_lat, (ftr_now_ns() - p->commit_ns[e % 64]) / 1000);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
	if (p->wl->ops->acked)
		p->wl->ops->acked(p->wl, e);
	return 0;
}

static int on_credit(struct ftr_primary *p, uint64_t released)
{
	pthread_mutex_lock(&p->lock);
	if (released > p->next_pos) {
		uint64_t np = p->next_pos;

		pthread_mutex_unlock(&p->lock);
		pr_fail(p, "standby released staging up to %" PRIu64 ", only %" PRIu64
			" were ever used", released, np);
		return -EPROTO;
	}
	if (released > p->released) {
		p->released = released;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static void send_heartbeat(struct ftr_primary *p)
{
	struct ftr_rec rec;

	memset(&rec, 0, sizeof(rec));
	pthread_mutex_lock(&p->lock);
	rec.u.heartbeat.time_ns = ftr_now_ns();
	rec.u.heartbeat.committed = FTR_EPOCH_NONE;
	rec.u.heartbeat.acked = p->acked;
	pthread_mutex_unlock(&p->lock);
	ftr_send_simple(p->ctl, FTR_REC_HEARTBEAT, 0, &rec);
}

static void *reader_main(void *arg)
{
	struct ftr_primary *p = arg;
	uint8_t *head = malloc(FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY);
	struct ftr_rec *rec = malloc(sizeof(*rec));
	uint64_t last_hb = 0;

	ftr_thread_name("ftr-pri-reader");

	if (!head || !rec) {
		pr_fail(p, "out of memory in the control reader");
		goto out;
	}
	while (!pr_failed(p)) {
		struct ftr_wire_error werr;
		struct ftr_wire_hdr hdr;
		uint64_t now = ftr_now_ns();
		ssize_t n;

		if (now - last_hb >= (uint64_t)p->o.heartbeat_ms * 1000000ull) {
			send_heartbeat(p);
			last_hb = now;
		}
		n = ftr_chan_recv_head(p->ctl, head, FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY, &hdr,
				       FTR_MIN(p->o.heartbeat_ms, 50), &werr);
		if (n == -EAGAIN) {
			pthread_mutex_lock(&p->lock);
			now = ftr_now_ns();
			bool silent = now > p->last_rx_ns && now - p->last_rx_ns >
				      (uint64_t)p->o.failover_timeout_ms * 1000000ull;
			pthread_mutex_unlock(&p->lock);
			if (silent)
				pr_fail(p, "standby silent for %d ms", p->o.failover_timeout_ms);
			continue;
		}
		if (n < 0) {
			if (n == -ESHUTDOWN)
				break;
			if (n == -EPROTO)
				pr_fail(p, "bad record from the standby: %s", werr.msg);
			else if (n == -ENOTCONN || n == -ECONNRESET)
				pr_fail(p, "standby closed the connection");
			else
				pr_fail(p, "control channel: %s", strerror((int)-n));
			break;
		}
		if (ftr_wire_decode_body(head, &hdr, head + FTR_WIRE_HDR_LEN, NULL, rec, &werr)) {
			pr_fail(p, "bad record from the standby: %s", werr.msg);
			break;
		}
		pthread_mutex_lock(&p->lock);
		p->last_rx_ns = ftr_now_ns();
		pthread_mutex_unlock(&p->lock);
		switch (hdr.type) {
		case FTR_REC_ACK:
			on_ack(p, hdr.seq);
			break;
		case FTR_REC_CREDIT:
			on_credit(p, rec->u.credit.released);
			break;
		case FTR_REC_HEARTBEAT:
			break;
		case FTR_REC_ERROR:
			pr_fail(p, "standby reported: %s", rec->u.error.msg);
			break;
		case FTR_REC_BYE:
			pr_fail(p, "standby said BYE (reason %u)", rec->u.bye.reason);
			break;
		default:
			pr_fail(p, "unexpected %s from the standby", ftr_rec_type_name(hdr.type));
			break;
		}
		if (hdr.data_len && !pr_failed(p) && ftr_chan_skip_data(p->ctl, hdr.data_len))
			pr_fail(p, "control channel: short data part");
	}
out:
	free(head);
	free(rec);
	return NULL;
}

/* ---- connecting ------------------------------------------------------------ */

static void fill_hello(struct ftr_primary *p, struct ftr_hello *h, uint8_t channel)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->session, p->session, 16);
	h->generation = p->generation;
	h->features = FTR_FEAT_ZERO_FILL | (p->o.no_data_crc ? 0 : FTR_FEAT_DATA_CRC);
	h->page_size = p->page_size;
	h->role = FTR_ROLE_PRIMARY;
	h->channel = channel;
	h->nchannels = (uint8_t)p->nch;
	h->nregions = p->wl->nregions;
	h->last_committed = FTR_EPOCH_NONE;
	for (uint32_t i = 0; i < p->wl->nregions; i++) {
		h->regions[i].id = i;
		h->regions[i].size = p->wl->regions[i].size;
		ftr_strlcpy(h->regions[i].name, p->wl->regions[i].name,
			    sizeof(h->regions[i].name));
	}
}

/* Connects one channel and exchanges HELLOs. */
static int open_channel(struct ftr_primary *p, uint8_t channel, struct ftr_chan **out,
			struct ftr_hello *reply)
{
	struct ftr_rec *rec = calloc(1, sizeof(*rec));
	char msg[256];
	int ret;

	if (!rec)
		return -ENOMEM;
	rec->hdr.type = FTR_REC_HELLO;
	fill_hello(p, &rec->u.hello, channel);
	ret = ftr_session_connect(&p->o.tp, p->o.connect, p->o.connect_timeout_ms,
				  p->o.failover_timeout_ms, PR_HELLO_TIMEOUT_MS, "standby", rec, out,
				  msg, sizeof(msg));
	if (ret) {
		pr_fail(p, "%s", msg);
		if (ret == -EREMOTEIO)
			ret = -ECONNREFUSED;
	} else if (reply) {
		*reply = rec->u.hello;
	}
	free(rec);
	return ret;
}

/* Registers [addr, addr+len) as a page source on every data channel, so a
 * one-sided transport sends from it in place (TCP: bookkeeping only). */
static int reg_source(struct ftr_primary *p, void *addr, size_t len, const char *what)
{
	for (uint32_t ch = 1; ch <= p->nch; ch++) {
		int ret;

		if (p->nmrs == p->mrs_cap) {
			uint32_t cap = p->mrs_cap ? p->mrs_cap * 2 : 16;
			struct ftr_mr **m = realloc(p->mrs, cap * sizeof(*m));

			if (!m)
				return -ENOMEM;
			p->mrs = m;
			p->mrs_cap = cap;
		}
		ret = ftr_chan_reg_mem(p->data[ch], addr, len, FTR_MR_SOURCE, &p->mrs[p->nmrs]);
		if (ret) {
			pr_fail(p, "cannot register %s (%zu bytes) on data channel %u: %s", what,
				len, ch, strerror(-ret));
			return ret;
		}
		p->nmrs++;
	}
	return 0;
}

static void dereg_sources(struct ftr_primary *p)
{
	while (p->nmrs)
		ftr_mr_dereg(p->mrs[--p->nmrs]);
	free(p->mrs);
	p->mrs = NULL;
	p->mrs_cap = 0;
}

static int connect_session(struct ftr_primary *p)
{
	struct ftr_hello reply;
	char sid[37];
	int ret;

	ret = open_channel(p, FTR_CHAN_CONTROL, &p->ctl, &reply);
	if (ret)
		return ret;
	p->features = reply.features & FTR_FEAT_KNOWN;
	p->nslots = reply.staging_slots;
	if (p->nslots < 2) {
		pr_fail(p, "standby offers %" PRIu64 " staging slots; at least 2 are needed",
			p->nslots);
		return -ENOSPC;
	}
	if (p->o.dirty == FTR_DIRTY_FULL && p->total_pages > p->nslots) {
		pr_fail(p, "--dirty full sends all %" PRIu64 " pages every epoch but the standby's "
			"staging holds %" PRIu64 "; raise the receiver's --staging",
			p->total_pages, p->nslots);
		return -ENOSPC;
	}
	for (uint32_t i = 1; i <= p->nch; i++) {
		ret = open_channel(p, (uint8_t)i, &p->data[i], NULL);
		if (ret)
			return ret;
	}
	for (uint32_t r = 0; r < p->wl->nregions; r++) {
		ret = reg_source(p, p->wl->regions[r].base, p->wl->regions[r].size, "a region");
		if (ret)
			return ret;
	}
	/* No epoch may hold more pages than staging has slots. */
	p->hard = p->nslots;
	if (p->o.snapshot == FTR_SNAP_COW) {
		char err[192];

		if (p->track && ftr_track_kind(p->track) == FTR_TRACK_WP_SYNC)
			ret = ftr_cow_create_tracked(p->wl->regions, p->wl->nregions,
						     p->page_size, FTR_MIN(p->hard, p->total_pages),
						     p->track, &p->cow, err, sizeof(err));
		else
			ret = ftr_cow_create(p->wl->regions, p->wl->nregions, p->page_size,
					     FTR_MIN(p->hard, p->total_pages), &p->cow, err,
					     sizeof(err));
		if (ret) {
			pr_fail(p, "%s", err);
			return ret;
		}
		{
			void *pool;
			size_t len;

			ftr_cow_pool(p->cow, &pool, &len);
			ret = reg_source(p, pool, len, "the cow copy pool");
			if (ret)
				return ret;
		}
	}
	if (p->o.snapshot == FTR_SNAP_COPY_OUT) {
		p->items_cap = p->hard;
		p->items = calloc(p->items_cap, sizeof(*p->items));
		/* Untouched bounce pages cost nothing until an epoch is big. */
		p->bounce = mmap(NULL, p->items_cap * p->page_size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (!p->items || p->bounce == MAP_FAILED) {
			p->bounce = NULL;
			pr_fail(p, "cannot allocate the copy-out buffer of %" PRIu64 " pages",
				p->items_cap);
			return -ENOMEM;
		}
		ret = reg_source(p, p->bounce, p->items_cap * p->page_size,
				 "the copy-out buffer");
		if (ret)
			return ret;
	}
	uuid_unparse_lower(p->session, sid);
	pr_info("session %s generation %" PRIu64 " connected to %s over %s: %u data channel(s), "
		"%" PRIu64 " staging slots, data CRC %s", sid, p->generation, p->o.connect,
		ftr_chan_transport(p->ctl), p->nch, p->nslots,
		p->features & FTR_FEAT_DATA_CRC ? "on" : "off");
	p->last_rx_ns = ftr_now_ns();
	return 0;
}

/* ---- sending an epoch ------------------------------------------------------- */

/* Waits until n more ring positions are granted and takes them. */
static int reserve_slots(struct ftr_primary *p, uint32_t n, uint64_t *first)
{
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	if (p->next_pos + n > p->released + p->nslots)
		p->credit_waits++;
	while (!p->failed && p->next_pos + n > p->released + p->nslots) {
		struct timespec dl = ftr_deadline_ms(100);

		pthread_cond_timedwait(&p->cv, &p->lock, &dl);
	}
	if (p->failed) {
		ret = -ECANCELED;
	} else {
		*first = p->next_pos;
		p->next_pos += n;
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

#ifdef FTREPL_TEST_HOOKS
/* FTREPL_TEST_DIE_AT=POINT:EPOCH makes the primary SIGKILL itself at one of
 * the points of the epoch cycle, for the crash matrix: mid-epoch (after
 * the epoch's second batch), before-commit (every batch sent, no COMMIT),
 * after-commit (COMMIT sent, ACK not awaited). */
static void test_die(struct ftr_primary *p, const char *point)
{
	const char *env = getenv("FTREPL_TEST_DIE_AT");
	size_t n = strlen(point);

	if (env && !strncmp(env, point, n) && env[n] == ':' &&
	    p->tx_epoch >= strtoull(env + n + 1, NULL, 10)) {
		fprintf(stderr, "test hook: dying at %s of epoch %" PRIu64 "\n", point, p->tx_epoch);
		kill(getpid(), SIGKILL);
	}
}
#else
static inline void test_die(struct ftr_primary *p, const char *point)
{
	(void)p;
	(void)point;
}
#endif

static int send_built(struct ftr_primary *p, uint32_t ch, struct ftr_rec *rec,
		      const struct iovec *iov, int niov)
{
	struct pr_builder *b = &p->b[ch - 1];
	struct ftr_tx_rec tx;
	ssize_t len;
	int ret;

	rec->hdr.seq = p->tx_epoch;
	rec->hdr.flags = p->tx_direct ? FTR_WF_DIRECT : 0;
	rec->hdr.data_len = 0;
	rec->hdr.data_crc = 0;
	if (niov) {
		rec->hdr.data_len = (uint32_t)niov * p->page_size;
		/* A page read from memory the workload is still writing can
		 * change between the checksum and the kernel's copy: such
		 * (live initial-sync) records go without a data CRC; the page
		 * is resent, checksummed, once the workload is paused. */
		if ((p->features & FTR_FEAT_DATA_CRC) && p->tx_stable) {
			rec->hdr.flags |= FTR_WF_DATA_CRC;
			rec->hdr.data_crc = ftr_wire_data_crc(iov, niov);
		}
	}
	len = ftr_wire_encode(b->head, sizeof(b->head), rec);
	if (len < 0) {
		pr_fail(p, "encoding a %s record: %s", ftr_rec_type_name(rec->hdr.type),
			strerror((int)-len));
		return (int)len;
	}
	tx.head = b->head;
	tx.head_len = (size_t)len;
	tx.data = iov;
	tx.ndata = niov;
	/* Staging slots, so a one-sided transport writes each page straight
	 * into its slot; direct (initial-sync) pages have none. */
	tx.slot = rec->hdr.type == FTR_REC_PAGES && !p->tx_direct ? b->slot : NULL;
	ret = ftr_chan_send(p->data[ch], &tx, 1);
	if (ret) {
		pr_fail(p, "sending epoch %" PRIu64 " on channel %u: %s", p->tx_epoch, ch,
			strerror(-ret));
		return ret;
	}
	p->batches[ch - 1]++;
	return 0;
}

static int flush_pages(struct ftr_primary *p, uint32_t ch)
{
	struct pr_builder *b = &p->b[ch - 1];
	struct ftr_pages *pg = &b->pages.u.pages;
	uint64_t first;
	int ret;

	if (!pg->count)
		return 0;
	if (!p->tx_direct) {
		ret = reserve_slots(p, pg->count, &first);
		if (ret)
			return ret;
		for (uint32_t i = 0; i < pg->count; i++) {
			pg->ent[i].pos = first + i;
			p->b[ch - 1].slot[i] = (first + i) % p->nslots;
		}
	}
	ret = send_built(p, ch, &b->pages, b->iov, (int)pg->count);
	if (!ret && !p->tx_direct)
		test_die(p, "mid-epoch");
	if (!ret) {
		p->tx_pages += pg->count;
		pthread_mutex_lock(&p->lock);
		p->pages_sent += pg->count;
		p->bytes_sent += (uint64_t)pg->count * p->page_size;
		pthread_mutex_unlock(&p->lock);
	}
	pg->count = 0;
	if (!p->tx_direct)
		p->rr = p->rr % p->nch + 1;
	return ret;
}

static int flush_zero(struct ftr_primary *p, uint32_t ch)
{
	struct pr_builder *b = &p->b[ch - 1];
	struct ftr_zero_pages *z = &b->zero.u.zero;
	int ret;

	if (!z->count)
		return 0;
	ret = send_built(p, ch, &b->zero, NULL, 0);
	if (!ret) {
		p->tx_zero += z->count;
		pthread_mutex_lock(&p->lock);
		p->zero_sent += z->count;
		pthread_mutex_unlock(&p->lock);
	}
	z->count = 0;
	return ret;
}

static void tx_begin(struct ftr_primary *p, uint64_t epoch, bool direct)
{
	p->tx_epoch = epoch;
	p->tx_direct = direct;
	p->tx_pages = 0;
	p->tx_zero = 0;
	memset(p->batches, 0, sizeof(p->batches));
	if (p->rr < 1 || p->rr > p->nch)
		p->rr = 1;
	for (uint32_t i = 0; i < p->nch; i++) {
		p->b[i].pages.hdr.type = FTR_REC_PAGES;
		p->b[i].pages.u.pages.count = 0;
		p->b[i].zero.hdr.type = FTR_REC_ZERO_PAGES;
		p->b[i].zero.u.zero.count = 0;
	}
}

static uint32_t tx_channel(struct ftr_primary *p, uint64_t page)
{
	if (p->tx_direct)
		return (uint32_t)((page >> PR_STRIPE_SHIFT) % p->nch) + 1;
	return p->rr;
}

static int tx_fill(struct ftr_primary *p, uint32_t region, uint64_t page, uint8_t fill)
{
	uint32_t ch = tx_channel(p, page);
	struct ftr_zero_pages *z = &p->b[ch - 1].zero.u.zero;
	int ret;

	if (z->count && z->region != region) {
		ret = flush_zero(p, ch);
		if (ret)
			return ret;
	}
	z->region = region;
	z->ent[z->count].page = page;
	z->ent[z->count].fill = fill;
	if (++z->count == FTR_WIRE_MAX_BATCH)
		return flush_zero(p, ch);
	return 0;
}

/* Queues one page whose content is at src (referenced, not copied, until
 * the batch is sent). */
static int tx_page(struct ftr_primary *p, uint32_t region, uint64_t page, const void *src)
{
	uint32_t ch, batch = p->o.batch_pages;
	struct ftr_pages *pg;
	uint8_t fill;
	int ret;

	if (ftr_page_is_fill(src, p->page_size, &fill))
		return tx_fill(p, region, page, fill);
	ch = tx_channel(p, page);
	pg = &p->b[ch - 1].pages.u.pages;
	if (pg->count && pg->region != region) {
		ret = flush_pages(p, ch);
		if (ret)
			return ret;
		ch = tx_channel(p, page);
		pg = &p->b[ch - 1].pages.u.pages;
	}
	pg->region = region;
	pg->ent[pg->count].page = page;
	pg->ent[pg->count].pos = 0;
	p->b[ch - 1].iov[pg->count].iov_base = (void *)src;
	p->b[ch - 1].iov[pg->count].iov_len = p->page_size;
	if (++pg->count >= batch)
		return flush_pages(p, ch);
	return 0;
}

/* Sends what is left, waits until the channels no longer reference page
 * memory. */
static int tx_end(struct ftr_primary *p)
{
	int ret;

	for (uint32_t ch = 1; ch <= p->nch; ch++) {
		ret = flush_pages(p, ch);
		if (!ret)
			ret = flush_zero(p, ch);
		if (ret)
			return ret;
	}
	for (uint32_t ch = 1; ch <= p->nch; ch++) {
		ret = ftr_chan_flush(p->data[ch]);
		if (ret) {
			pr_fail(p, "flushing channel %u: %s", ch, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* Sends BLOB (if any) and COMMIT for the epoch just sent. */
static int send_commit(struct ftr_primary *p, ssize_t blob_len)
{
	struct ftr_rec rec;
	int ret;

	if (blob_len > 0) {
		struct iovec iov = { .iov_base = p->blob, .iov_len = (size_t)blob_len };

		memset(&rec, 0, sizeof(rec));
		rec.hdr.type = FTR_REC_BLOB;
		rec.hdr.seq = p->tx_epoch;
		rec.hdr.data_len = (uint32_t)blob_len;
		if (p->features & FTR_FEAT_DATA_CRC) {
			rec.hdr.flags = FTR_WF_DATA_CRC;
			rec.hdr.data_crc = ftr_wire_data_crc(&iov, 1);
		}
		rec.u.blob.len = (uint32_t)blob_len;
		ret = ftr_chan_send_rec(p->ctl, &rec, &iov, 1);
		if (ret) {
			pr_fail(p, "sending the blob of epoch %" PRIu64 ": %s", p->tx_epoch,
				strerror(-ret));
			return ret;
		}
	}
	memset(&rec, 0, sizeof(rec));
	rec.hdr.type = FTR_REC_COMMIT;
	rec.hdr.seq = p->tx_epoch;
	rec.u.commit.nchannels = p->nch;
	rec.u.commit.blob_len = blob_len > 0 ? (uint32_t)blob_len : 0;
	rec.u.commit.pages = p->tx_pages;
	rec.u.commit.zero_pages = p->tx_zero;
	pthread_mutex_lock(&p->lock);
	rec.u.commit.slot_end = p->tx_direct ? 0 : p->next_pos;
	p->epoch = p->tx_epoch;
	p->commit_ns[p->tx_epoch % 64] = ftr_now_ns();
	pthread_mutex_unlock(&p->lock);
	memcpy(rec.u.commit.batches, p->batches, sizeof(uint32_t) * p->nch);
	ret = ftr_chan_send_rec(p->ctl, &rec, NULL, 0);
	if (ret)
		pr_fail(p, "sending COMMIT %" PRIu64 ": %s", p->tx_epoch, strerror(-ret));
	return ret;
}

/* Calls fn for every page set in the harvested maps. */
static int for_each_dirty(struct ftr_primary *p,
			  int (*fn)(struct ftr_primary *, uint32_t, uint64_t))
{
	for (uint32_t r = 0; r < p->wl->nregions; r++) {
		uint64_t npages = p->wl->regions[r].size / p->page_size;
		size_t words = ftr_bitmap_words(npages);

		for (size_t w = 0; w < words; w++) {
			uint64_t bits = p->maps[r][w];

			while (bits) {
				uint64_t page = w * 64 + (uint64_t)__builtin_ctzll(bits);
				int ret;

				bits &= bits - 1;
				ret = fn(p, r, page);
				if (ret)
					return ret;
			}
		}
	}
	return 0;
}

/* cow: sends the page from where the cow engine says (live, or the copy a
 * writer caused) and lets the claimed pages go once a batch is out. */
static int send_cow_page(struct ftr_primary *p, uint32_t r, uint64_t page)
{
	uint32_t ch = p->rr;
	int ret = tx_page(p, r, page, ftr_cow_claim(p->cow, r, page));

	/* A flush empties the builder the page went to: every page claimed so
	 * far is then in the kernel's hands (tx_end releases the rest). */
	if (!ret && ch >= 1 && ch <= p->nch && !p->b[ch - 1].pages.u.pages.count) {
		/* An asynchronous transport (one-sided RDMA, zero-copy TCP)
		 * still reads the live pages after the send returned. */
		ret = ftr_chan_flush(p->data[ch]);
		if (ret) {
			pr_fail(p, "flushing channel %u: %s", ch, strerror(-ret));
			return ret;
		}
		ftr_cow_release(p->cow);
	}
	return ret;
}

static int send_live_page(struct ftr_primary *p, uint32_t r, uint64_t page)
{
	return tx_page(p, r, page, (uint8_t *)p->wl->regions[r].base + page * p->page_size);
}

static int capture_page(struct ftr_primary *p, uint32_t r, uint64_t page)
{
	const uint8_t *src = (uint8_t *)p->wl->regions[r].base + page * p->page_size;
	struct pr_item *it;
	uint8_t fill;

	if (p->items_n >= p->items_cap)
		return -ENOSPC;
	it = &p->items[p->items_n];
	it->page = page;
	it->region = r;
	if (ftr_page_is_fill(src, p->page_size, &fill)) {
		it->is_fill = 1;
		it->fill = fill;
		it->src = NULL;
	} else {
		uint8_t *dst = p->bounce + p->items_n * (uint64_t)p->page_size;

		memcpy(dst, src, p->page_size);
		it->is_fill = 0;
		it->src = dst;
	}
	p->items_n++;
	return 0;
}

static void clear_maps(struct ftr_primary *p)
{
	for (uint32_t r = 0; r < p->wl->nregions; r++)
		memset(p->maps[r], 0, ftr_bitmap_words(p->wl->regions[r].size / p->page_size) * 8);
}

static void set_all_maps(struct ftr_primary *p)
{
	for (uint32_t r = 0; r < p->wl->nregions; r++) {
		uint64_t n = p->wl->regions[r].size / p->page_size;

		memset(p->maps[r], 0xff, ftr_bitmap_words(n) * 8);
		if (n % 64)
			p->maps[r][n / 64] = (1ull << (n % 64)) - 1;
	}
}

static int64_t harvest(struct ftr_primary *p)
{
	int64_t n;

	uint64_t t0 = ftr_now_ns();

	clear_maps(p);
	/* The workload's own harvest also resets its dirty budget (early
	 * cuts); with a kernel backend, that backend says which pages. */
	n = p->wl->ops->harvest(p->wl, p->maps);
	if (n >= 0 && p->track) {
		clear_maps(p);
		n = ftr_track_harvest(p->track, p->maps);
	}
	if (n < 0) {
		pr_fail(p, "dirty tracking failed: %s", strerror((int)-n));
		return n;
	}
	p->harvest_ns = ftr_now_ns() - t0;
	if (p->o.dirty == FTR_DIRTY_FULL) {
		set_all_maps(p);
		n = (int64_t)p->total_pages;
	}
	return n;
}

/*
 * Sends the harvested set of the current epoch with the snapshot strategy
 * and commits it. Called with the workload paused; returns with it
 * resumed, unless keep_paused (the final epoch of an orderly stop, so the
 * workload's last image is exactly the last committed epoch).
 * *pause_ns gets how long it stayed paused (from pause_t0).
 */
static int send_epoch_paused(struct ftr_primary *p, uint64_t pause_t0, int64_t ndirty,
			     uint64_t *pause_ns, bool keep_paused)
{
	ssize_t blob_len = p->wl->ops->blob(p->wl, p->blob, sizeof(p->blob));
	bool copy_out = p->o.snapshot == FTR_SNAP_COPY_OUT && (uint64_t)ndirty <= p->items_cap;
	/* cow for the epochs after the initial sync; the final epoch of an
	 * orderly stop keeps the workload paused anyway. */
	bool cow = p->cow && !p->tx_direct && !keep_paused;
	int ret;

	p->tx_stable = true;

	if (blob_len < 0) {
		if (!keep_paused)
			p->wl->ops->resume(p->wl);
		pr_fail(p, "capturing the state blob: %s", strerror((int)-blob_len));
		return (int)blob_len;
	}
	if (cow) {
		ret = ftr_cow_arm(p->cow, p->maps);
		p->wl->ops->resume(p->wl);
		*pause_ns = ftr_now_ns() - pause_t0;
		if (ret) {
			ftr_cow_finish(p->cow);
			pr_fail(p, "cow: write-protecting the epoch: %s", strerror(-ret));
			return ret;
		}
		ret = for_each_dirty(p, send_cow_page);
		if (!ret)
			ret = tx_end(p);
		ftr_cow_finish(p->cow);
	} else if (copy_out) {
		p->items_n = 0;
		ret = for_each_dirty(p, capture_page);
		if (!keep_paused)
			p->wl->ops->resume(p->wl);
		*pause_ns = ftr_now_ns() - pause_t0;
		if (ret) {
			pr_fail(p, "copy-out buffer too small for the dirty set");
			return ret;
		}
		for (uint64_t i = 0; i < p->items_n && !ret; i++) {
			struct pr_item *it = &p->items[i];

			ret = it->is_fill ? tx_fill(p, it->region, it->page, it->fill)
					  : tx_page(p, it->region, it->page, it->src);
		}
		if (!ret)
			ret = tx_end(p);
	} else {
		ret = for_each_dirty(p, send_live_page);
		if (!ret)
			ret = tx_end(p);
		if (!keep_paused)
			p->wl->ops->resume(p->wl);
		*pause_ns = ftr_now_ns() - pause_t0;
	}
	if (ret)
		return ret;
	test_die(p, "before-commit");
	ret = send_commit(p, blob_len);
	if (!ret)
		test_die(p, "after-commit");
	return ret;
}

static int pause_workload(struct ftr_primary *p)
{
	int ret = p->wl->ops->pause(p->wl, PR_PAUSE_TIMEOUT_MS);

	if (ret)
		pr_fail(p, "workload did not pause within %d ms: %s", PR_PAUSE_TIMEOUT_MS,
			strerror(-ret));
	return ret;
}

/* One initial-sync pass over the harvested set while the workload runs.
 * Everything it queued is sent before it returns: a page read live must
 * never ride in a record that is checksummed or sent after the final,
 * paused pass (copy-out resumes the workload before sending). */
static int send_live_pass(struct ftr_primary *p)
{
	int ret = for_each_dirty(p, send_live_page);

	return ret ? ret : tx_end(p);
}

/* Epoch 0: everything, while running, then the rest paused. */
static int initial_sync(struct ftr_primary *p)
{
	uint64_t t0 = 0, pause_ns;
	int64_t n = 0;
	int ret;

	pthread_mutex_lock(&p->lock);
	p->state = FTR_STATE_SYNCING;
	pthread_mutex_unlock(&p->lock);
	p->wl->ops->set_dirty_limits(p->wl, UINT64_MAX, UINT64_MAX);
	ret = p->wl->ops->start(p->wl);
	if (ret && ret != -EALREADY) {
		pr_fail(p, "cannot start the workload: %s", strerror(-ret));
		return ret;
	}
	tx_begin(p, 0, true);
	p->tx_stable = false;
	if ((ret = pause_workload(p)))
		return ret;
	harvest(p);
	p->wl->ops->resume(p->wl);
	set_all_maps(p);
	ret = send_live_pass(p);
	for (int pass = 1; !ret; pass++) {
		ret = pause_workload(p);
		if (ret)
			return ret;
		t0 = ftr_now_ns();
		n = harvest(p);
		if (n < 0)
			return (int)n;
		if ((uint64_t)n <= p->hard || pass >= PR_SYNC_PASSES || p->o.dirty == FTR_DIRTY_FULL)
			break;
		p->wl->ops->resume(p->wl);
		pr_debug("sync pass %d: %" PRId64 " pages written meanwhile", pass, n);
		ret = send_live_pass(p);
	}
	if (ret)
		return ret;
	if (p->wl->ops->epoch_cut)
		p->wl->ops->epoch_cut(p->wl, 0);
	/* From the instant the workload resumes, epoch 1 accumulates: it must
	 * already be bounded by staging, or it could outgrow the slots. */
	p->wl->ops->set_dirty_limits(p->wl, p->hard * 3 / 4, p->hard);
	ret = send_epoch_paused(p, t0, n, &pause_ns, false);
	if (ret)
		return ret;
	pthread_mutex_lock(&p->lock);
	ftr_lat_add(&p->pause_lat, pause_ns / 1000);
	p->state = FTR_STATE_PROTECTED;
	p->t_synced = ftr_now_ns();
	p->sync_pages = p->pages_sent;
	pthread_mutex_unlock(&p->lock);
	pr_info("initial sync sent: %" PRIu64 " pages, %" PRIu64 " fill pages; final pause %" PRIu64
		" us", p->pages_sent, p->zero_sent, pause_ns / 1000);
	return 0;
}

/* Waits for the epoch timer, an early-cut request or a stop. Returns 1 on
 * an early cut, 0 on the timer, -ECANCELED on stop/failure. */
static int wait_epoch(struct ftr_primary *p, uint64_t deadline_ns)
{
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = p->wl->cut_fd, .events = POLLIN },
			{ .fd = p->wake_fd, .events = POLLIN },
		};
		uint64_t now = ftr_now_ns();
		int ms;

		if (atomic_load(&p->stop_req) || pr_failed(p))
			return -ECANCELED;
		if (now >= deadline_ns)
			return 0;
		ms = (int)FTR_DIV_ROUND_UP(deadline_ns - now, 1000000ull);
		if (poll(pfd, 2, ms) > 0 && (pfd[0].revents & POLLIN))
			return 1;
		if (pfd[1].revents & POLLIN) {
			uint64_t v;

			if (read(p->wake_fd, &v, sizeof(v)) < 0) {
				/* drained by someone else */
			}
		}
	}
}

/* Waits until epoch e is within the standby's in-flight window. */
static int wait_inflight(struct ftr_primary *p, uint64_t e)
{
	uint64_t end = ftr_now_ns() + (uint64_t)p->o.failover_timeout_ms * 1000000ull;
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		/* The standby takes epochs [next, next + MAX_INFLIGHT), next
		 * being the one after its last commit (0 before any). */
		uint64_t next = p->acked == FTR_EPOCH_NONE ? 0 : p->acked + 1;

		if (p->failed || e < next + FTR_WIRE_MAX_INFLIGHT)
			break;
		struct timespec dl = ftr_deadline_ms(50);

		if (ftr_now_ns() >= end) {
			ret = -ETIMEDOUT;
			break;
		}
		p->inflight_waits++;
		pthread_cond_timedwait(&p->cv, &p->lock, &dl);
	}
	if (p->failed)
		ret = -ECANCELED;
	pthread_mutex_unlock(&p->lock);
	if (ret == -ETIMEDOUT)
		pr_fail(p, "epoch %" PRIu64 ": no ACK made room in the standby's window of %d epochs "
			"within %d ms", e, FTR_WIRE_MAX_INFLIGHT, p->o.failover_timeout_ms);
	return ret;
}

static int run_epochs(struct ftr_primary *p)
{
	uint64_t start = ftr_now_ns(), e = 1, next_cut;
	uint64_t hard = p->hard, soft = hard * 3 / 4;

	p->wl->ops->set_dirty_limits(p->wl, soft, hard);
	next_cut = ftr_now_ns() + (uint64_t)p->o.epoch_ms * 1000000ull;
	for (;; e++) {
		uint64_t t0, pause_ns;
		bool final;
		int64_t n;
		int ret;

		/* A stop request ends the wait at once: the final epoch is cut
		 * now and the workload stays paused after it. */
		ret = wait_epoch(p, next_cut);
		if (pr_failed(p))
			return -ECANCELED;
		final = atomic_load(&p->stop_req) || (p->o.max_epochs && e >= p->o.max_epochs) ||
			(p->o.duration_ms && ftr_now_ns() - start >= p->o.duration_ms * 1000000ull);
		if (ret == 1) {
			pthread_mutex_lock(&p->lock);
			p->cut_early++;
			pthread_mutex_unlock(&p->lock);
		}
		next_cut = ftr_now_ns() + (uint64_t)p->o.epoch_ms * 1000000ull;
		ret = pause_workload(p);
		if (ret)
			return ret;
		t0 = ftr_now_ns();
		n = harvest(p);
		if (n < 0) {
			p->wl->ops->resume(p->wl);
			return (int)n;
		}
		if ((uint64_t)n > p->hard && p->o.dirty != FTR_DIRTY_FULL) {
			/* An epoch must fit staging whole; sending it would wait for
			 * credits that only its own commit can free. */
			p->wl->ops->resume(p->wl);
			pr_fail(p, "epoch %" PRIu64 " has %" PRId64 " dirty pages, the standby's staging "
				"holds %" PRIu64 "; the workload did not respect its dirty limit", e, n,
				p->hard);
			return -EOVERFLOW;
		}
		if (p->wl->ops->epoch_cut)
			p->wl->ops->epoch_cut(p->wl, e);
		/* The standby holds at most FTR_WIRE_MAX_INFLIGHT epochs in flight:
		 * wait (paused, so the epoch stays this instant) for the ACK that
		 * makes room. */
		ret = wait_inflight(p, e);
		if (ret) {
			p->wl->ops->resume(p->wl);
			return ret;
		}
		tx_begin(p, e, false);
		ret = send_epoch_paused(p, t0, n, &pause_ns, final);
		if (ret)
			return ret;
		/* The workload runs at least half an epoch between two pauses,
		 * even when harvesting and sending took longer than an epoch. */
		if (next_cut < t0 + pause_ns + (uint64_t)p->o.epoch_ms * 500000ull)
			next_cut = t0 + pause_ns + (uint64_t)p->o.epoch_ms * 500000ull;
		pthread_mutex_lock(&p->lock);
		ftr_lat_add(&p->pause_lat, pause_ns / 1000);
		pthread_mutex_unlock(&p->lock);
		if (final)
			break;
	}
	return pr_failed(p) ? -ECANCELED : 0;
}

/* Waits until the last epoch cut is acked. */
static int wait_last_ack(struct ftr_primary *p, int timeout_ms)
{
	uint64_t end = ftr_now_ms() + (uint64_t)timeout_ms;
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	while (!p->failed && p->epoch != FTR_EPOCH_NONE &&
	       (p->acked == FTR_EPOCH_NONE || p->acked < p->epoch)) {
		struct timespec dl = ftr_deadline_ms(50);

		if (ftr_now_ms() > end) {
			ret = -ETIMEDOUT;
			break;
		}
		pthread_cond_timedwait(&p->cv, &p->lock, &dl);
	}
	if (p->failed)
		ret = -ECANCELED;
	pthread_mutex_unlock(&p->lock);
	return ret;
}

static void say_bye(struct ftr_primary *p)
{
	struct ftr_rec rec;

	pthread_mutex_lock(&p->lock);
	p->bye_sent = true;
	pthread_mutex_unlock(&p->lock);
	memset(&rec, 0, sizeof(rec));
	rec.u.bye.reason = FTR_BYE_DONE;
	for (uint32_t ch = 1; ch <= p->nch; ch++)
		if (p->data[ch])
			ftr_send_simple(p->data[ch], FTR_REC_BYE, 0, &rec);
	ftr_send_simple(p->ctl, FTR_REC_BYE, 0, &rec);
}

static int start_tracking(struct ftr_primary *p);

int ftr_primary_run(struct ftr_primary *p)
{
	int ret;

	p->t_start = ftr_now_ns();
	ret = start_tracking(p);
	if (ret)
		goto out;
	ret = connect_session(p);
	if (ret)
		goto out;
	ret = -pthread_create(&p->reader, NULL, reader_main, p);
	if (ret) {
		pr_fail(p, "cannot start the control reader: %s", strerror(-ret));
		goto out;
	}
	p->reader_started = true;

	ret = initial_sync(p);
	if (!ret)
		ret = run_epochs(p);
	if (!ret && !pr_failed(p)) {
		ret = wait_last_ack(p, p->o.failover_timeout_ms);
		if (ret == -ETIMEDOUT)
			pr_fail(p, "epoch %" PRIu64 " not acked within %d ms", p->epoch,
				p->o.failover_timeout_ms);
		pthread_mutex_lock(&p->lock);
		p->t_done = ftr_now_ns();
		pthread_mutex_unlock(&p->lock);
	}
	p->wl->ops->stop(p->wl);
	if (!ret && !pr_failed(p)) {
		say_bye(p);
		pthread_mutex_lock(&p->lock);
		p->state = FTR_STATE_COMPLETED;
		pthread_mutex_unlock(&p->lock);
		pr_info("stopped after epoch %" PRIu64 " (acked), said BYE", p->epoch);
	}
out:
	p->wl->ops->stop(p->wl);
	if (p->reader_started) {
		if (p->ctl)
			ftr_chan_shutdown(p->ctl);
		pthread_join(p->reader, NULL);
		p->reader_started = false;
	}
	if (pr_failed(p))
		return ret ? ret : -ECANCELED;
	return ret;
}

void ftr_primary_stop(struct ftr_primary *p)
{
	uint64_t one = 1;

	atomic_store(&p->stop_req, true);
	if (write(p->wake_fd, &one, sizeof(one)) < 0) {
		/* already signalled */
	}
}

const char *ftr_primary_error(const struct ftr_primary *p)
{
	return p->err;
}

int ftr_primary_create(const struct ftr_primary_opts *opts, struct ftr_workload *wl,
		       struct ftr_primary **out)
{
	struct ftr_primary *p;
	static const uint8_t zero[16];

	if (!opts->connect || !wl)
		return -EINVAL;
	if (opts->nchannels > FTR_WIRE_MAX_CHANNELS)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->o = *opts;
	ftr_strlcpy(p->connect_addr, opts->connect, sizeof(p->connect_addr));
	p->o.connect = p->connect_addr;
	p->nch = opts->nchannels ? opts->nchannels : 1;
	if (!p->o.epoch_ms)
		p->o.epoch_ms = FTR_DEFAULT_EPOCH_MS;
	if (!p->o.heartbeat_ms)
		p->o.heartbeat_ms = FTR_DEFAULT_HEARTBEAT_MS;
	if (!p->o.failover_timeout_ms)
		p->o.failover_timeout_ms = FTR_DEFAULT_FAILOVER_MS;
	if (!p->o.connect_timeout_ms)
		p->o.connect_timeout_ms = 5000;
	if (!p->o.batch_pages)
		p->o.batch_pages = FTR_DEFAULT_BATCH;
	p->o.batch_pages = FTR_MIN(p->o.batch_pages, (unsigned)FTR_WIRE_MAX_BATCH);
	p->generation = opts->generation ? opts->generation : 1;
	if (memcmp(opts->session, zero, 16))
		memcpy(p->session, opts->session, 16);
	else
		uuid_generate_random(p->session);
	p->wl = wl;
	p->page_size = wl->page_size;
	for (uint32_t r = 0; r < wl->nregions; r++)
		p->total_pages += wl->regions[r].size / wl->page_size;
	p->state = FTR_STATE_CONNECTING;
	p->epoch = FTR_EPOCH_NONE;
	p->acked = FTR_EPOCH_NONE;
	p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&p->lock, NULL);
	ftr_cond_init_monotonic(&p->cv);
	p->b = calloc(p->nch, sizeof(*p->b));
	p->maps = calloc(wl->nregions, sizeof(*p->maps));
	if (p->wake_fd < 0 || !p->b || !p->maps)
		goto out_free;
	for (uint32_t r = 0; r < wl->nregions; r++) {
		p->maps[r] = calloc(ftr_bitmap_words(wl->regions[r].size / wl->page_size), 8);
		if (!p->maps[r])
			goto out_free;
	}
	*out = p;
	return 0;

out_free:
	ftr_primary_destroy(p);
	return -ENOMEM;
}

int ftr_primary_get_status(struct ftr_primary *p, struct ftr_primary_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&p->lock);
	st->state = p->state;
	uuid_unparse_lower(p->session, st->session);
	st->generation = p->generation;
	st->epoch = p->epoch;
	st->acked = p->acked;
	st->pages_sent = p->pages_sent;
	st->zero_pages_sent = p->zero_sent;
	st->bytes_sent = p->bytes_sent;
	st->pause_last_us = p->pause_lat.last;
	st->pause_mean_us = ftr_lat_mean(&p->pause_lat);
	st->pause_p99_us = ftr_lat_pct(&p->pause_lat, 99);
	st->ack_last_us = p->ack_lat.last;
	st->ack_mean_us = ftr_lat_mean(&p->ack_lat);
	st->ack_p99_us = ftr_lat_pct(&p->ack_lat, 99);
	st->epochs_cut_early = p->cut_early;
	st->credit_waits = p->credit_waits;
	st->staging_slots = p->nslots;
	st->nchannels = p->nch;
	st->sync_pages = p->sync_pages;
	if (p->t_synced) {
		st->sync_ns = p->t_synced - p->t_start;
		st->epochs_ns = (p->t_done ? p->t_done : ftr_now_ns()) - p->t_synced;
	}
	st->harvest_last_us = p->harvest_ns / 1000;
	if (p->cow)
		ftr_cow_stats(p->cow, &st->cow_copied, &st->cow_faults);
	ftr_strlcpy(st->dirty, p->dirty_name[0] ? p->dirty_name : ftr_dirty_name(p->o.dirty),
		    sizeof(st->dirty));
	ftr_strlcpy(st->last_error, p->err, sizeof(st->last_error));
	for (uint32_t ch = 1; ch <= p->nch; ch++) {
		if (p->data[ch]) {
			struct ftr_chan_stats cs;

			ftr_chan_get_stats(p->data[ch], &cs);
			st->tx_syscalls += cs.tx_syscalls;
			st->tx_placed_bytes += cs.tx_placed_bytes;
		}
	}
	if (p->ctl)
		ftr_strlcpy(st->transport, ftr_chan_transport(p->ctl), sizeof(st->transport));
	pthread_mutex_unlock(&p->lock);
	st->workload_writes = p->wl->ops->progress ? p->wl->ops->progress(p->wl) : 0;
	return 0;
}

void ftr_primary_destroy(struct ftr_primary *p)
{
	if (!p)
		return;
	if (p->reader_started) {
		ftr_chan_shutdown(p->ctl);
		pthread_join(p->reader, NULL);
	}
	dereg_sources(p);
	for (uint32_t ch = 1; ch <= p->nch; ch++)
		if (p->data[ch])
			ftr_chan_close(p->data[ch]);
	if (p->ctl)
		ftr_chan_close(p->ctl);
	ftr_cow_destroy(p->cow);	/* before the tracker it may share */
	ftr_track_destroy(p->track);
	if (p->maps)
		for (uint32_t r = 0; r < p->wl->nregions; r++)
			free(p->maps[r]);
	free(p->maps);
	free(p->b);
	if (p->bounce)
		munmap(p->bounce, p->items_cap * p->page_size);
	free(p->items);
	if (p->wake_fd >= 0)
		close(p->wake_fd);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cv);
	free(p);
}

/* ---- option names -------------------------------------------------------------- */

int ftr_snapshot_parse(const char *s, enum ftr_snapshot_mode *out)
{
	if (!strcmp(s, "cow"))
		*out = FTR_SNAP_COW;
	else if (!strcmp(s, "stop-copy"))
		*out = FTR_SNAP_STOP_COPY;
	else if (!strcmp(s, "copy-out"))
		*out = FTR_SNAP_COPY_OUT;
	else
		return -EINVAL;
	return 0;
}

const char *ftr_snapshot_name(enum ftr_snapshot_mode m)
{
	return m == FTR_SNAP_COPY_OUT ? "copy-out" : m == FTR_SNAP_COW ? "cow" : "stop-copy";
}

static const char *const dirty_names[] = {
	[FTR_DIRTY_AUTO] = "auto",	   [FTR_DIRTY_FULL] = "full",
	[FTR_DIRTY_WP_ASYNC] = "wp-async", [FTR_DIRTY_WP_SYNC] = "wp-sync",
	[FTR_DIRTY_SCAN] = "scan",	   [FTR_DIRTY_WORKLOAD] = "workload",
};

int ftr_dirty_parse(const char *s, enum ftr_dirty_mode *out)
{
	for (unsigned i = 0; i < FTR_ARRAY_SIZE(dirty_names); i++) {
		if (!strcmp(s, dirty_names[i])) {
			*out = (enum ftr_dirty_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *ftr_dirty_name(enum ftr_dirty_mode m)
{
	return (unsigned)m < FTR_ARRAY_SIZE(dirty_names) ? dirty_names[m] : "?";
}

/* The kernel tracking backend for a dirty mode, or -1 when the workload's
 * own tracking (or none, for full) is used. */
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

/* Starts the dirty tracking backend before the workload runs: its first
 * harvest then covers every write. */
static int start_tracking(struct ftr_primary *p)
{
	struct ftr_track_region regs[FTR_MAX_REGIONS];
	int kind = track_kind_of(p->o.dirty);
	char err[192];
	int ret;

	if (p->o.snapshot == FTR_SNAP_COW) {
		/* cow write-protects the epoch's pages with its own userfaultfd:
		 * a uffd-based tracker cannot share the same memory. */
		if (p->o.dirty == FTR_DIRTY_WP_ASYNC) {
			pr_fail(p, "--snapshot cow cannot be combined with --dirty wp-async: the "
				"kernel resolves async write-protect faults itself, so no page "
				"could be copied aside before its write; use --dirty wp-sync "
				"(cow then shares its userfaultfd), workload, scan or full");
			return -EINVAL;
		}
		if (p->o.dirty == FTR_DIRTY_AUTO) {
			p->o.dirty = FTR_DIRTY_WORKLOAD;
			kind = -1;
		}
	}
	ftr_strlcpy(p->dirty_name, ftr_dirty_name(p->o.dirty), sizeof(p->dirty_name));
	if (kind < 0)
		return 0;
	for (uint32_t r = 0; r < p->wl->nregions; r++)
		regs[r] = (struct ftr_track_region){ .base = p->wl->regions[r].base,
						     .size = p->wl->regions[r].size,
						     .fd = p->wl->regions[r].fd };
	ret = ftr_track_create((enum ftr_track_kind)kind, regs, p->wl->nregions, p->page_size, -1,
			       &p->track, err, sizeof(err));
	if (ret) {
		pr_fail(p, "--dirty %s: %s", ftr_dirty_name(p->o.dirty), err);
		return ret;
	}
	ftr_strlcpy(p->dirty_name, ftr_track_kind_name(ftr_track_kind(p->track)),
		    sizeof(p->dirty_name));
	pr_info("dirty tracking: %s%s", p->dirty_name,
		p->o.dirty == FTR_DIRTY_AUTO ? " (auto: the best this kernel offers)" : "");
	return 0;
}
