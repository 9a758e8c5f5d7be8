/* SPDX-License-Identifier: MIT */
/* Pieces both ends of a replication session share. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/session.h"
#include "common/common.h"

static const char *const state_names[] = {
	[FTR_STATE_CONNECTING] = "connecting",
	[FTR_STATE_SYNCING] = "syncing",
	[FTR_STATE_PROTECTED] = "protected",
	[FTR_STATE_DEGRADED] = "degraded",
	[FTR_STATE_PROMOTED] = "promoted",
	[FTR_STATE_RESUMING] = "resuming",
	[FTR_STATE_MIGRATING_PRECOPY] = "migrating-precopy",
	[FTR_STATE_MIGRATING_POSTCOPY] = "migrating-postcopy",
	[FTR_STATE_COMPLETED] = "completed",
	[FTR_STATE_FAILED] = "failed",
};

const char *ftr_state_name(enum ftr_state s)
{
	if ((unsigned)s < FTR_ARRAY_SIZE(state_names) && state_names[s])
		return state_names[s];
	return "unknown";
}

void ftr_session_limits(const struct ftr_hello *h, struct ftr_wire_limits *lim)
{
	memset(lim, 0, sizeof(*lim));
	lim->page_size = h->page_size;
	lim->nregions = h->nregions;
	for (uint32_t i = 0; i < h->nregions; i++)
		lim->region_pages[i] = h->regions[i].size / h->page_size;
	lim->nchannels = h->nchannels;
}

int ftr_send_simple(struct ftr_chan *c, uint16_t type, uint64_t seq, const struct ftr_rec *body)
{
	struct ftr_rec rec;

	if (body)
		rec = *body;
	else
		memset(&rec, 0, sizeof(rec));
	memset(&rec.hdr, 0, sizeof(rec.hdr));
	rec.hdr.type = type;
	rec.hdr.seq = seq;
	return ftr_chan_send_rec(c, &rec, NULL, 0);
}

void ftr_send_error(struct ftr_chan *c, enum ftr_wire_errcode code, const char *fmt, ...)
{
	struct ftr_rec *rec = calloc(1, sizeof(*rec));
	va_list ap;
	int n;

	if (!rec)
		return;
	va_start(ap, fmt);
	n = vsnprintf(rec->u.error.msg, sizeof(rec->u.error.msg), fmt, ap);
	va_end(ap);
	if (n <= 0) {
		free(rec);
		return;
	}
	rec->hdr.type = FTR_REC_ERROR;
	rec->u.error.code = code;
	rec->u.error.len = (uint32_t)FTR_MIN((size_t)n, (size_t)FTR_WIRE_MAX_ERRMSG);
	ftr_chan_send_rec(c, rec, NULL, 0);
	free(rec);
}

void ftr_lat_add(struct ftr_lat *l, uint64_t v)
{
	size_t i = l->n % FTR_LAT_SAMPLES;

	if (l->n >= FTR_LAT_SAMPLES)
		l->sum -= l->v[i];
	l->v[i] = v;
	l->sum += v;
	l->n++;
	l->last = v;
}

uint64_t ftr_lat_mean(const struct ftr_lat *l)
{
	uint64_t n = FTR_MIN(l->n, (uint64_t)FTR_LAT_SAMPLES);

	return n ? l->sum / n : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t ftr_lat_pct(const struct ftr_lat *l, unsigned pct)
{
	uint64_t tmp[FTR_LAT_SAMPLES];
	size_t n = (size_t)FTR_MIN(l->n, (uint64_t)FTR_LAT_SAMPLES), idx;

	if (!n)
		return 0;
	memcpy(tmp, l->v, n * sizeof(tmp[0]));
	qsort(tmp, n, sizeof(tmp[0]), cmp_u64);
	idx = (n * pct + 99) / 100;
	return tmp[idx ? idx - 1 : 0];
}

int ftr_session_connect(const struct ftr_tp_opts *tp, const char *addr, int connect_ms,
			int stall_ms, int answer_ms, const char *peer, struct ftr_rec *rec,
			struct ftr_chan **out, char *msg, size_t mlen)
{
	uint8_t channel = rec->u.hello.channel, session[16];
	uint64_t generation = rec->u.hello.generation;
	uint32_t page_size = rec->u.hello.page_size;
	uint8_t *head = malloc(FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY);
	struct ftr_wire_error werr;
	struct ftr_wire_hdr hdr;
	struct ftr_chan *c = NULL;
	ssize_t n;
	int ret;

	memcpy(session, rec->u.hello.session, 16);
	if (!head) {
		snprintf(msg, mlen, "out of memory");
		return -ENOMEM;
	}
	ret = ftr_tp_connect(tp, addr, connect_ms, &c);
	if (ret) {
		snprintf(msg, mlen, "cannot connect channel %u to %s: %s", channel, addr,
			 strerror(-ret));
		goto out;
	}
	ftr_chan_set_stall_timeout(c, stall_ms);
	ret = ftr_chan_send_rec(c, rec, NULL, 0);
	if (ret) {
		snprintf(msg, mlen, "sending HELLO on channel %u: %s", channel, strerror(-ret));
		goto out;
	}
	n = ftr_chan_recv_head(c, head, FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY, &hdr, answer_ms,
			       &werr);
	ret = n < 0 ? (int)n : ftr_wire_decode_body(head, &hdr, head + FTR_WIRE_HDR_LEN, NULL,
						     rec, &werr);
	if (ret == -EPROTO) {
		snprintf(msg, mlen, "bad answer to HELLO on channel %u: %s", channel, werr.msg);
		goto out;
	}
	if (ret) {
		snprintf(msg, mlen, "no answer to HELLO on channel %u: %s", channel,
			 ret == -EAGAIN ? "timed out" : strerror(-ret));
		goto out;
	}
	if (hdr.type == FTR_REC_ERROR) {
		snprintf(msg, mlen, "%s refused channel %u: %.180s", peer, channel,
			 rec->u.error.msg);
		ret = -EREMOTEIO;
		goto out;
	}
	if (hdr.type != FTR_REC_HELLO || !(hdr.flags & FTR_WF_REPLY) ||
	    rec->u.hello.role != FTR_ROLE_STANDBY || memcmp(rec->u.hello.session, session, 16) ||
	    rec->u.hello.generation != generation || rec->u.hello.page_size != page_size) {
		snprintf(msg, mlen, "%s answered channel %u's HELLO with a mismatching %s", peer,
			 channel, ftr_rec_type_name(hdr.type));
		ret = -EPROTO;
		goto out;
	}
	*out = c;
	c = NULL;
out:
	if (c)
		ftr_chan_close(c);
	free(head);
	return ret;
}
