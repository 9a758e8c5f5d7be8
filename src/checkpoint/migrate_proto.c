/* SPDX-License-Identifier: MIT */
/* Pieces both ends of a migration share: see migrate_proto.h. */
#define FTR_LOG_PREFIX "migrate"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint/migrate_proto.h"
#include "common/common.h"

/* ---- names --------------------------------------------------------------- */

static const char *const mode_names[] = {
	[FTR_MIG_HYBRID] = "hybrid",
	[FTR_MIG_PRECOPY] = "precopy",
	[FTR_MIG_POSTCOPY] = "postcopy",
};

int ftr_migrate_mode_parse(const char *s, enum ftr_migrate_mode *out)
{
	for (unsigned i = 0; s && i < FTR_ARRAY_SIZE(mode_names); i++) {
		if (!strcmp(s, mode_names[i])) {
			*out = (enum ftr_migrate_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *ftr_migrate_mode_name(enum ftr_migrate_mode m)
{
	return (unsigned)m < FTR_ARRAY_SIZE(mode_names) ? mode_names[m] : "?";
}

static const char *const phase_names[] = {
	[FTR_MIG_CONNECTING] = "connecting",
	[FTR_MIG_PRECOPY_RUN] = "precopy",
	[FTR_MIG_SWITCHING] = "switching",
	[FTR_MIG_POSTCOPY_RUN] = "postcopy",
	[FTR_MIG_RECOVERING] = "recovering",
	[FTR_MIG_COMPLETED] = "completed",
	[FTR_MIG_FAILED] = "failed",
};

const char *ftr_migrate_phase_name(enum ftr_migrate_phase p)
{
	return (unsigned)p < FTR_ARRAY_SIZE(phase_names) ? phase_names[p] : "?";
}

enum ftr_state ftr_migrate_phase_state(enum ftr_migrate_phase p)
{
	switch (p) {
	case FTR_MIG_CONNECTING:
		return FTR_STATE_CONNECTING;
	case FTR_MIG_PRECOPY_RUN:
	case FTR_MIG_SWITCHING:
		return FTR_STATE_MIGRATING_PRECOPY;
	case FTR_MIG_POSTCOPY_RUN:
	case FTR_MIG_RECOVERING:
		return FTR_STATE_MIGRATING_POSTCOPY;
	case FTR_MIG_COMPLETED:
		return FTR_STATE_COMPLETED;
	case FTR_MIG_FAILED:
		return FTR_STATE_FAILED;
	}
	return FTR_STATE_FAILED;
}

/* JSON string body: the status strings are ours, but last_error may quote a
 * peer's message, so escape what JSON needs. */
static void json_str(char *out, size_t cap, const char *s)
{
	size_t o = 0;

	for (; *s && o + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
		} else {
			out[o++] = (char)ch;
		}
	}
	out[o] = '\0';
}

int ftr_migrate_status_json(const struct ftr_migrate_status *st, char *buf, size_t len)
{
	char err[600];

	json_str(err, sizeof(err), st->last_error);
	return snprintf(buf, len,
		"{\"state\":\"%s\",\"phase\":\"%s\",\"session\":\"%s\",\"round\":%u,"
		"\"nchannels\":%u,\"pages_total\":%" PRIu64 ",\"pages_left\":%" PRIu64 ","
		"\"dirty_bytes_per_s\":%" PRIu64 ",\"bandwidth_bytes_per_s\":%" PRIu64 ","
		"\"push_pace_bytes_per_s\":%" PRIu64 ",\"est_downtime_ms\":%" PRIu64 ",\"pages_sent\":%" PRIu64 ",\"bytes_sent\":%" PRIu64
		",\"precopy_pages\":%" PRIu64 ",\"pushed_pages\":%" PRIu64 ",\"requested_pages\":%"
		PRIu64 ",\"fault_reqs\":%" PRIu64 ",\"pages_received\":%" PRIu64 ",\"dup_pages\":%"
		PRIu64 ",\"moved_pages\":%" PRIu64 ",\"faults\":%" PRIu64 ",\"fault_lat_median_us\":%" PRIu64
		",\"fault_lat_p99_us\":%" PRIu64 ",\"fault_lat_max_us\":%" PRIu64
		",\"downtime_us\":%" PRIu64 ",\"precopy_ms\":%" PRIu64 ",\"postcopy_ms\":%" PRIu64
		",\"total_ms\":%" PRIu64 ",\"recoveries\":%u,\"workload_writes\":%" PRIu64
		",\"transport\":\"%s\",\"last_error\":\"%s\"}",
		ftr_state_name(st->state), ftr_migrate_phase_name(st->phase), st->session, st->round,
		st->nchannels, st->pages_total, st->pages_left, st->dirty_bytes_per_s,
		st->bandwidth_bytes_per_s, st->push_pace_bytes_per_s, st->est_downtime_ms, st->pages_sent, st->bytes_sent,
		st->precopy_pages, st->pushed_pages, st->requested_pages, st->fault_reqs,
		st->pages_received, st->dup_pages, st->moved_pages, st->faults, st->fault_lat_median_us,
		st->fault_lat_p99_us, st->fault_lat_max_us, st->downtime_us, st->precopy_ms,
		st->postcopy_ms, st->total_ms, st->recoveries, st->workload_writes, st->transport,
		err);
}

/* ---- layout --------------------------------------------------------------- */

int mig_layout_finish(struct mig_layout *l)
{
	uint64_t g = 0, off = 0;

	if (!l->nregions || l->nregions > FTR_WIRE_MAX_REGIONS || !l->page_size)
		return -EINVAL;
	for (uint32_t r = 0; r < l->nregions; r++) {
		if (!l->size[r] || l->size[r] % l->page_size)
			return -EINVAL;
		l->npages[r] = l->size[r] / l->page_size;
		l->g0[r] = g;
		l->off[r] = off;
		g = (g + l->npages[r] + 63) & ~63ull;
		off += l->size[r];
	}
	l->bits = g;
	l->bytes = off;
	l->total_pages = 0;
	for (uint32_t r = 0; r < l->nregions; r++)
		l->total_pages += l->npages[r];
	return 0;
}

void mig_layout_from_hello(struct mig_layout *l, const struct ftr_hello *h)
{
	memset(l, 0, sizeof(*l));
	l->page_size = h->page_size;
	l->nregions = h->nregions;
	for (uint32_t r = 0; r < h->nregions; r++) {
		l->size[r] = h->regions[r].size;
		ftr_strlcpy(l->name[r], h->regions[r].name, FTR_WIRE_REGION_NAME);
	}
	/* The decoder checked sizes: a non-zero multiple of page_size. */
	(void)mig_layout_finish(l);
}

int mig_layout_region(const struct mig_layout *l, uint64_t g)
{
	uint32_t lo = 0, hi = l->nregions;

	while (hi - lo > 1) {
		uint32_t mid = (lo + hi) / 2;

		if (g >= l->g0[mid])
			lo = mid;
		else
			hi = mid;
	}
	return g >= l->g0[lo] && g < l->g0[lo] + l->npages[lo] ? (int)lo : -1;
}

void mig_layout_limits(const struct mig_layout *l, uint32_t nchannels,
		       struct ftr_wire_limits *lim)
{
	memset(lim, 0, sizeof(*lim));
	lim->page_size = l->page_size;
	lim->nregions = l->nregions;
	for (uint32_t r = 0; r < l->nregions; r++)
		lim->region_pages[r] = l->npages[r];
	lim->nchannels = nchannels;
}

/* ---- bitmaps --------------------------------------------------------------- */

uint64_t *mig_bitmap_alloc(const struct mig_layout *l)
{
	return calloc(ftr_bitmap_words(l->bits) + 1, sizeof(uint64_t));
}

void mig_bitmap_fill(const struct mig_layout *l, uint64_t *map)
{
	for (uint32_t r = 0; r < l->nregions; r++) {
		uint64_t g = l->g0[r], n = l->npages[r];

		memset(&map[g / 64], 0xff, (size_t)(n / 64) * 8);
		if (n % 64)
			map[(g + n) / 64] |= (1ull << (n % 64)) - 1;
	}
}

uint64_t mig_bitmap_count(const struct mig_layout *l, const uint64_t *map)
{
	uint64_t n = 0;

	for (size_t w = 0; w < ftr_bitmap_words(l->bits); w++)
		n += (uint64_t)__builtin_popcountll(map[w]);
	return n;
}

/* Bits [first, first + nbits) of region r, as LSB-first bytes. first is a
 * multiple of 64 (chunks are), and so is g0[r]. */
static void bits_to_bytes(const uint64_t *map, uint64_t g, uint64_t nbits, uint8_t *out)
{
	uint64_t nbytes = (nbits + 7) / 8;

	for (uint64_t i = 0; i < nbytes; i++)
		out[i] = (uint8_t)(map[(g + i * 8) / 64] >> ((i % 8) * 8));
	if (nbits % 8)
		out[nbytes - 1] &= (uint8_t)((1u << (nbits % 8)) - 1);
}

int mig_send_bitmap(struct ftr_chan *c, const struct mig_layout *l, const uint64_t *map,
		    uint64_t seq, bool data_crc)
{
	uint8_t *buf = malloc(MIG_BITMAP_CHUNK / 8);
	struct ftr_rec *rec = calloc(1, sizeof(*rec));
	int ret = 0;

	if (!buf || !rec) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t r = 0; r < l->nregions && !ret; r++) {
		for (uint64_t first = 0; first < l->npages[r] && !ret; first += MIG_BITMAP_CHUNK) {
			uint64_t n = FTR_MIN((uint64_t)MIG_BITMAP_CHUNK, l->npages[r] - first);
			struct iovec iov = { .iov_base = buf, .iov_len = (size_t)((n + 7) / 8) };

			bits_to_bytes(map, l->g0[r] + first, n, buf);
			memset(rec, 0, sizeof(*rec));
			rec->hdr.type = FTR_REC_BITMAP;
			rec->hdr.seq = seq;
			rec->hdr.data_len = (uint32_t)iov.iov_len;
			if (data_crc) {
				rec->hdr.flags = FTR_WF_DATA_CRC;
				rec->hdr.data_crc = ftr_wire_data_crc(&iov, 1);
			}
			rec->u.bitmap.region = r;
			rec->u.bitmap.first_page = first;
			rec->u.bitmap.nbits = n;
			ret = ftr_chan_send_rec(c, rec, &iov, 1);
		}
	}
out:
	free(buf);
	free(rec);
	return ret;
}

void mig_bitmap_rx_init(struct mig_bitmap_rx *rx)
{
	memset(rx, 0, sizeof(*rx));
}

int mig_bitmap_rx_add(struct mig_bitmap_rx *rx, const struct mig_layout *l,
		      const struct ftr_rec *rec, const uint8_t *data, uint64_t *map, char *msg,
		      size_t mlen)
{
	const struct ftr_bitmap *b = &rec->u.bitmap;
	uint64_t g;

	if (rx->done) {
		snprintf(msg, mlen, "BITMAP after the bitmap was complete");
		return -EPROTO;
	}
	/* The decoder (with limits) checked region and range. */
	if (b->region != rx->region || b->first_page != rx->next) {
		snprintf(msg, mlen, "BITMAP region %u pages %" PRIu64 "+%" PRIu64
			 " out of order (expected region %u from page %" PRIu64 ")", b->region,
			 b->first_page, b->nbits, rx->region, rx->next);
		return -EPROTO;
	}
	g = l->g0[b->region] + b->first_page;
	if (!(g % 8)) {		/* byte-aligned (always from our sender): by bytes */
		uint64_t full = b->nbits / 8;

		for (uint64_t i = 0; i < full; i++)
			map[(g + i * 8) / 64] |= (uint64_t)data[i] << ((g + i * 8) % 64);
		for (uint64_t i = full * 8; i < b->nbits; i++)
			if ((data[i / 8] >> (i % 8)) & 1)
				ftr_bit_set(map, g + i);
	} else {
		for (uint64_t i = 0; i < b->nbits; i++)
			if ((data[i / 8] >> (i % 8)) & 1)
				ftr_bit_set(map, g + i);
	}
	rx->next += b->nbits;
	while (rx->region < l->nregions && rx->next == l->npages[rx->region]) {
		rx->region++;
		rx->next = 0;
	}
	rx->done = rx->region == l->nregions;
	return 0;
}

/* ---- HELLO ----------------------------------------------------------------- */

void mig_fill_hello(struct ftr_hello *h, const struct mig_layout *l, const uint8_t session[16],
		    uint64_t generation, uint64_t features, uint8_t channel, uint8_t nchannels,
		    uint64_t last_committed)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->session, session, 16);
	h->generation = generation;
	h->features = features;
	h->page_size = l->page_size;
	h->role = FTR_ROLE_PRIMARY;
	h->channel = channel;
	h->nchannels = nchannels;
	h->nregions = l->nregions;
	h->last_committed = last_committed;
	for (uint32_t r = 0; r < l->nregions; r++) {
		h->regions[r].id = r;
		h->regions[r].size = l->size[r];
		ftr_strlcpy(h->regions[r].name, l->name[r], FTR_WIRE_REGION_NAME);
	}
}

/* ---- record builder ---------------------------------------------------------- */

void mig_builder_init(struct mig_builder *b, uint32_t page_size, unsigned batch)
{
	memset(b, 0, sizeof(*b));
	b->pages.hdr.type = FTR_REC_PAGES;
	b->zero.hdr.type = FTR_REC_ZERO_PAGES;
	b->page_size = page_size;
	b->batch = batch ? FTR_MIN(batch, (unsigned)FTR_WIRE_MAX_BATCH) : FTR_WIRE_MAX_BATCH;
}

static int send_built(struct mig_builder *b, struct ftr_chan *c, struct ftr_rec *rec,
		      const struct iovec *iov, int niov)
{
	struct ftr_tx_rec tx = { .head = b->head, .data = iov, .ndata = niov };
	ssize_t len;
	int ret;

	rec->hdr.seq = b->seq;
	rec->hdr.flags = FTR_WF_DIRECT;
	rec->hdr.data_len = (uint32_t)niov * b->page_size;
	rec->hdr.data_crc = 0;
	if (niov && b->crc) {
		rec->hdr.flags |= FTR_WF_DATA_CRC;
		rec->hdr.data_crc = ftr_wire_data_crc(iov, niov);
	}
	len = ftr_wire_encode(b->head, sizeof(b->head), rec);
	if (len < 0)
		return (int)len;
	tx.head_len = (size_t)len;
	ret = ftr_chan_send(c, &tx, 1);
	if (!ret)
		b->records++;
	return ret;
}

static int flush_pages(struct mig_builder *b, struct ftr_chan *c)
{
	struct ftr_pages *pg = &b->pages.u.pages;
	int ret;

	if (!pg->count)
		return 0;
	ret = send_built(b, c, &b->pages, b->iov, (int)pg->count);
	if (!ret) {
		b->npages += pg->count;
		b->bytes += (uint64_t)pg->count * b->page_size;
	}
	pg->count = 0;
	return ret;
}

static int flush_zero(struct mig_builder *b, struct ftr_chan *c)
{
	struct ftr_zero_pages *z = &b->zero.u.zero;
	int ret;

	if (!z->count)
		return 0;
	ret = send_built(b, c, &b->zero, NULL, 0);
	if (!ret)
		b->fills += z->count;
	z->count = 0;
	return ret;
}

int mig_builder_flush(struct mig_builder *b, struct ftr_chan *c)
{
	int ret = flush_pages(b, c);

	return ret ? ret : flush_zero(b, c);
}

int mig_builder_add(struct mig_builder *b, struct ftr_chan *c, uint32_t region, uint64_t page,
		    const void *src)
{
	uint8_t fill;
	int ret;

	if (ftr_page_is_fill(src, b->page_size, &fill)) {
		struct ftr_zero_pages *z = &b->zero.u.zero;

		if (z->count && z->region != region && (ret = flush_zero(b, c)))
			return ret;
		z->region = region;
		z->ent[z->count].page = page;
		z->ent[z->count].fill = fill;
		return ++z->count == FTR_WIRE_MAX_BATCH ? flush_zero(b, c) : 0;
	} else {
		struct ftr_pages *pg = &b->pages.u.pages;

		if (pg->count && pg->region != region && (ret = flush_pages(b, c)))
			return ret;
		pg->region = region;
		pg->ent[pg->count].page = page;
		pg->ent[pg->count].pos = 0;
		b->iov[pg->count].iov_base = (void *)src;
		b->iov[pg->count].iov_len = b->page_size;
		return ++pg->count >= b->batch ? flush_pages(b, c) : 0;
	}
}

/* ---- receiving ---------------------------------------------------------------- */

int mig_recv_rec(struct ftr_chan *c, uint8_t *head, int idle_ms,
		 const struct ftr_wire_limits *lim, struct ftr_rec *rec,
		 struct ftr_wire_error *werr)
{
	struct ftr_wire_hdr hdr;
	ssize_t n = ftr_chan_recv_head(c, head, MIG_HEAD_CAP, &hdr, idle_ms, werr);

	if (n < 0)
		return (int)n;
	return ftr_wire_decode_body(head, &hdr, head + FTR_WIRE_HDR_LEN, lim, rec, werr);
}

bool mig_err_is_conn(int err)
{
	switch (err) {
	case -ENOTCONN:
	case -ECONNRESET:
	case -EPIPE:
	case -ETIMEDOUT:
	case -ECONNREFUSED:
	case -ECONNABORTED:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -ENETDOWN:
	case -EIO:
		return true;
	default:
		return false;
	}
}
