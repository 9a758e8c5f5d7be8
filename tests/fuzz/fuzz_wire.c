/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the wire format v1 codec (include/ftrepl/wire.h).
 *
 * Every input is fed, as it is and again with the first record's header
 * CRC and data CRC recomputed (so that mutations reach the body checks
 * instead of stopping at BAD_CRC), to:
 *   1. ftr_wire_decode() without limits and with three fixed session
 *      layouts, walking records placed back to back;
 *   2. the streaming path (ftr_wire_decode_hdr, ftr_wire_decode_body,
 *      ftr_wire_check_data over split iovecs), which must agree with the
 *      whole-record decoder: same verdict, same rejection class, and
 *      TRUNCATED from the whole-record decoder when bytes are missing;
 *   3. ftr_wire_encode() with the input read as a raw struct ftr_rec: the
 *      encoder either refuses (-EINVAL) or produces a record the decoder
 *      accepts with the same fields.
 * Every accepted record is re-encoded: the encoder must accept it, the
 * re-encoded bytes must decode to the same fields, and encoding is
 * canonical (encode(decode(encode(r))) == encode(r)). Every rejection is
 * -EPROTO with a class and a non-empty message. A broken property aborts.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <ftrepl/ftrepl.h>
#include <ftrepl/wire.h>

#define HDR FTR_WIRE_HDR_LEN
#define NLIMS 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "fuzz_wire: %s:%d: property failed: %s\n",    \
				__FILE__, __LINE__, #cond);                           \
			abort();                                                      \
		}                                                                     \
	} while (0)

/* Allocated once: struct ftr_rec is large. */
static struct ftr_rec *rec, *rec2, *rec3;
static uint8_t *enc, *enc2, *body_copy, *fixed;
static size_t enc_cap, fixed_cap;
static struct ftr_wire_limits lims[NLIMS];

static void init(void)
{
	rec = calloc(1, sizeof(*rec));
	rec2 = calloc(1, sizeof(*rec2));
	rec3 = calloc(1, sizeof(*rec3));
	enc2 = malloc(FTR_WIRE_MAX_ENCODED);
	body_copy = malloc(FTR_WIRE_MAX_BODY);
	CHECK(rec && rec2 && rec3 && enc2 && body_copy);

	/* the layout the seed corpus is written for */
	lims[0].page_size = 4096;
	lims[0].nregions = 3;
	lims[0].region_pages[0] = 256;
	lims[0].region_pages[1] = 1024;
	lims[0].region_pages[2] = 16;
	lims[0].nchannels = 3;
	/* one tiny region of big pages, one channel */
	lims[1].page_size = 65536;
	lims[1].nregions = 1;
	lims[1].region_pages[0] = 1;
	lims[1].nchannels = 1;
	/* every region, sizes up to the largest page index */
	lims[2].page_size = 4096;
	lims[2].nregions = FTR_WIRE_MAX_REGIONS;
	for (int k = 0; k < FTR_WIRE_MAX_REGIONS; k++)
		lims[2].region_pages[k] = (uint64_t)k * k * 37;
	lims[2].region_pages[FTR_WIRE_MAX_REGIONS - 1] = UINT64_MAX;
	lims[2].nchannels = FTR_WIRE_MAX_CHANNELS;
}

/* Room for a re-encoded record followed by its data part. */
static void enc_reserve(size_t need)
{
	if (need <= enc_cap)
		return;
	free(enc);
	enc = malloc(need);
	CHECK(enc);
	enc_cap = need;
}

static void check_rejection(long ret, const struct ftr_wire_error *err)
{
	CHECK(ret == -EPROTO);
	CHECK(err->code >= FTR_WIRE_TRUNCATED && err->code <= FTR_WIRE_BAD_FIELD);
	CHECK(memchr(err->msg, 0, sizeof(err->msg)) != NULL);
	CHECK(err->msg[0] != '\0');
	CHECK(ftr_wire_strerror(err->code)[0] != '\0');
}

/* Same record: header type, flags, lengths, data CRC, seq, every body
 * field. Fields the decoder fills in from the header (magic, version,
 * crc) are not compared. */
static bool same(const struct ftr_rec *a, const struct ftr_rec *b)
{
	if (a->hdr.type != b->hdr.type || a->hdr.flags != b->hdr.flags ||
	    a->hdr.data_len != b->hdr.data_len || a->hdr.data_crc != b->hdr.data_crc ||
	    a->hdr.seq != b->hdr.seq)
		return false;
	switch (a->hdr.type) {
	case FTR_REC_HELLO: {
		const struct ftr_hello *x = &a->u.hello, *y = &b->u.hello;

		if (memcmp(x->session, y->session, 16) || x->generation != y->generation ||
		    x->features != y->features || x->page_size != y->page_size ||
		    x->role != y->role || x->channel != y->channel ||
		    x->nchannels != y->nchannels || x->staging_slots != y->staging_slots ||
		    x->nregions != y->nregions || x->last_committed != y->last_committed ||
		    x->cache_size != y->cache_size || x->nregions > FTR_WIRE_MAX_REGIONS)
			return false;
		for (uint32_t k = 0; k < x->nregions; k++) {
			if (x->regions[k].id != y->regions[k].id ||
			    x->regions[k].flags != y->regions[k].flags ||
			    x->regions[k].size != y->regions[k].size ||
			    strncmp(x->regions[k].name, y->regions[k].name, FTR_WIRE_REGION_NAME))
				return false;
		}
		return true;
	}
	case FTR_REC_PAGES:
		if (a->u.pages.region != b->u.pages.region || a->u.pages.count != b->u.pages.count ||
		    a->u.pages.count > FTR_WIRE_MAX_BATCH)
			return false;
		for (uint32_t k = 0; k < a->u.pages.count; k++)
			if (a->u.pages.ent[k].page != b->u.pages.ent[k].page ||
			    a->u.pages.ent[k].pos != b->u.pages.ent[k].pos)
				return false;
		return true;
	case FTR_REC_ZERO_PAGES:
		if (a->u.zero.region != b->u.zero.region || a->u.zero.count != b->u.zero.count ||
		    a->u.zero.count > FTR_WIRE_MAX_BATCH)
			return false;
		for (uint32_t k = 0; k < a->u.zero.count; k++)
			if (a->u.zero.ent[k].page != b->u.zero.ent[k].page ||
			    a->u.zero.ent[k].fill != b->u.zero.ent[k].fill)
				return false;
		return true;
	case FTR_REC_BLOB:
		return a->u.blob.len == b->u.blob.len;
	case FTR_REC_COMMIT:
		if (a->u.commit.nchannels != b->u.commit.nchannels ||
		    a->u.commit.nchannels > FTR_WIRE_MAX_CHANNELS ||
		    a->u.commit.blob_len != b->u.commit.blob_len ||
		    a->u.commit.pages != b->u.commit.pages ||
		    a->u.commit.zero_pages != b->u.commit.zero_pages ||
		    a->u.commit.slot_end != b->u.commit.slot_end)
			return false;
		for (uint32_t k = 0; k < a->u.commit.nchannels; k++)
			if (a->u.commit.batches[k] != b->u.commit.batches[k])
				return false;
		return true;
	case FTR_REC_ACK:
		return true;
	case FTR_REC_CREDIT:
		return a->u.credit.released == b->u.credit.released;
	case FTR_REC_HEARTBEAT:
		return a->u.heartbeat.time_ns == b->u.heartbeat.time_ns &&
		       a->u.heartbeat.committed == b->u.heartbeat.committed &&
		       a->u.heartbeat.acked == b->u.heartbeat.acked;
	case FTR_REC_FAULT_REQ:
		if (a->u.fault.region != b->u.fault.region || a->u.fault.count != b->u.fault.count ||
		    a->u.fault.count > FTR_WIRE_MAX_FAULT)
			return false;
		for (uint32_t k = 0; k < a->u.fault.count; k++)
			if (a->u.fault.page[k] != b->u.fault.page[k])
				return false;
		return true;
	case FTR_REC_BITMAP:
		return a->u.bitmap.region == b->u.bitmap.region &&
		       a->u.bitmap.first_page == b->u.bitmap.first_page &&
		       a->u.bitmap.nbits == b->u.bitmap.nbits;
	case FTR_REC_ERROR:
		return a->u.error.code == b->u.error.code && a->u.error.len == b->u.error.len &&
		       a->u.error.len <= FTR_WIRE_MAX_ERRMSG &&
		       !memcmp(a->u.error.msg, b->u.error.msg, a->u.error.len) &&
		       b->u.error.msg[b->u.error.len] == '\0';
	case FTR_REC_BYE:
		return a->u.bye.reason == b->u.bye.reason;
	}
	return false;
}

/* An accepted record r (its data part at payload) re-encodes, decodes back
 * to the same fields under the same limits, and encodes canonically. */
static void roundtrip(const struct ftr_rec *r, const uint8_t *payload,
		      const struct ftr_wire_limits *lim)
{
	struct ftr_wire_error err;
	const void *dp = NULL;
	size_t dlen = r->hdr.data_len;
	ssize_t n, got, n2;

	enc_reserve(FTR_WIRE_MAX_ENCODED + dlen);
	n = ftr_wire_encode(enc, FTR_WIRE_MAX_ENCODED, r);
	CHECK(n == (ssize_t)(HDR + r->hdr.body_len));
	if (dlen)
		memcpy(enc + n, payload, dlen);
	got = ftr_wire_decode(enc, (size_t)n + dlen, lim, rec3, &dp, &err);
	if (got < 0)
		fprintf(stderr, "fuzz_wire: re-encoded %s rejected: %s\n",
			ftr_rec_type_name(r->hdr.type), err.msg);
	CHECK(got == n + (ssize_t)dlen);
	CHECK(same(r, rec3));
	CHECK(rec3->hdr.body_len == r->hdr.body_len);
	n2 = ftr_wire_encode(enc2, FTR_WIRE_MAX_ENCODED, rec3);
	CHECK(n2 == n);
	CHECK(!memcmp(enc, enc2, (size_t)n));
	/* a cap one byte short is refused */
	CHECK(ftr_wire_encode(enc2, (size_t)n - 1, r) == -ENOSPC);
}

/* Splits data into up to 3 iovecs at points taken from the data itself. */
static int check_data_split(const struct ftr_wire_hdr *hdr, const uint8_t *d, size_t len,
			    struct ftr_wire_error *err)
{
	size_t a = len ? d[0] % (len + 1) : 0;
	size_t b = len ? a + d[len - 1] % (len - a + 1) : 0;
	struct iovec iov[3] = {
		{ .iov_base = (void *)d, .iov_len = a },
		{ .iov_base = (void *)(d + a), .iov_len = b - a },
		{ .iov_base = (void *)(d + b), .iov_len = len - b },
	};

	return ftr_wire_check_data(hdr, iov, 3, err);
}

/* The streaming path over buf[0..len), against the whole-record decoder. */
static void stream(const uint8_t *buf, size_t len, const struct ftr_wire_limits *lim)
{
	struct ftr_wire_error err, werr;
	struct ftr_wire_hdr hdr;
	uint8_t hb[HDR];
	const void *dp = NULL;
	ssize_t whole;
	size_t need;
	int ret;

	if (len < HDR)
		return;
	whole = ftr_wire_decode(buf, len, lim, rec2, &dp, &werr);
	memcpy(hb, buf, HDR);
	ret = ftr_wire_decode_hdr(hb, &hdr, &err);
	if (ret) {
		check_rejection(ret, &err);
		CHECK(whole == -EPROTO && werr.code == err.code);
		return;
	}
	CHECK(hdr.body_len <= FTR_WIRE_MAX_BODY && hdr.data_len <= FTR_WIRE_MAX_DATA);
	need = HDR + (size_t)hdr.body_len + hdr.data_len;
	if (len < need) {
		/* too short for the record the header announces */
		CHECK(whole == -EPROTO && werr.code == FTR_WIRE_TRUNCATED);
		if (len - HDR < hdr.body_len)
			return;
	}
	/* the body in a buffer of exactly its size */
	memcpy(body_copy, buf + HDR, hdr.body_len);
	ret = ftr_wire_decode_body(hb, &hdr, body_copy, lim, rec, &err);
	if (ret) {
		check_rejection(ret, &err);
		if (len >= need)
			CHECK(whole == -EPROTO && werr.code == err.code);
		return;
	}
	CHECK(rec->hdr.type == hdr.type && rec->hdr.body_len == hdr.body_len);
	if (len < need)
		return;
	ret = check_data_split(&hdr, buf + HDR + hdr.body_len, hdr.data_len, &err);
	if (ret) {
		check_rejection(ret, &err);
		CHECK(whole == -EPROTO && werr.code == err.code);
		return;
	}
	CHECK(whole == (ssize_t)need);
	CHECK(same(rec, rec2));
}

/* Whole-record decoding of the records placed back to back in data. */
static void whole(const uint8_t *data, size_t size, const struct ftr_wire_limits *lim)
{
	struct ftr_wire_error err;
	size_t off = 0;

	for (int nrec = 0; off < size && nrec < 64; nrec++) {
		const void *dp = NULL;
		ssize_t n = ftr_wire_decode(data + off, size - off, lim, rec, &dp, &err);

		if (n < 0) {
			check_rejection(n, &err);
			return;
		}
		CHECK(n >= HDR && (size_t)n <= size - off);
		CHECK((size_t)n == HDR + (size_t)rec->hdr.body_len + rec->hdr.data_len);
		CHECK(rec->hdr.magic == FTR_WIRE_MAGIC && rec->hdr.version == FTR_WIRE_VERSION);
		CHECK(rec->hdr.type >= 1 && rec->hdr.type <= FTR_REC__MAX);
		CHECK((rec->hdr.flags & ~FTR_WF_KNOWN) == 0 && rec->hdr.reserved == 0);
		if (rec->hdr.data_len)
			CHECK(dp == data + off + (size_t)n - rec->hdr.data_len);
		roundtrip(rec, dp, lim);
		/* accepted with limits implies accepted without */
		if (lim) {
			struct ftr_wire_error e2;

			CHECK(ftr_wire_decode(data + off, (size_t)n, NULL, rec2, NULL, &e2) == n);
			CHECK(same(rec, rec2));
		}
		off += (size_t)n;
	}
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int k = 0; k < 4; k++)
		p[k] = (uint8_t)(v >> (8 * k));
}

/* A copy of the input whose first record carries correct CRCs: data_crc
 * (when flagged and the data part is present), then the header CRC over
 * header bytes 0..31 and the body. NULL when the body is not all there. */
static const uint8_t *fix_crcs(const uint8_t *data, size_t size)
{
	uint32_t body_len, data_len, crc;

	if (size < HDR)
		return NULL;
	body_len = le32(data + 12);
	data_len = le32(data + 16);
	if (body_len > size - HDR)
		return NULL;
	if (size > fixed_cap) {
		free(fixed);
		fixed = malloc(size);
		CHECK(fixed);
		fixed_cap = size;
	}
	memcpy(fixed, data, size);
	if ((le32(fixed + 8) & FTR_WF_DATA_CRC) && data_len <= size - HDR - body_len)
		put_le32(fixed + 20, ftr_crc32c(0, fixed + HDR + body_len, data_len));
	crc = ftr_crc32c(0, fixed, 32);
	crc = ftr_crc32c(crc, fixed + HDR, body_len);
	put_le32(fixed + 32, crc);
	return fixed;
}

/* The input as a raw struct ftr_rec handed to the encoder. */
static void encode_raw(const uint8_t *data, size_t size)
{
	struct ftr_wire_error err;
	struct ftr_wire_hdr hdr;
	ssize_t n;
	int ret;

	memset(rec, 0, sizeof(*rec));
	memcpy(rec, data, size < sizeof(*rec) ? size : sizeof(*rec));
	enc_reserve(FTR_WIRE_MAX_ENCODED);
	n = ftr_wire_encode(enc, FTR_WIRE_MAX_ENCODED, rec);
	if (n < 0) {
		CHECK(n == -EINVAL);
		return;
	}
	CHECK(n >= HDR && n <= (ssize_t)FTR_WIRE_MAX_ENCODED);
	/* the header and body decode (the data part is not at hand) */
	ret = ftr_wire_decode_hdr(enc, &hdr, &err);
	CHECK(ret == 0);
	CHECK(hdr.body_len == (size_t)n - HDR);
	ret = ftr_wire_decode_body(enc, &hdr, enc + HDR, NULL, rec2, &err);
	if (ret)
		fprintf(stderr, "fuzz_wire: encoder produced a %s the decoder rejects: %s\n",
			ftr_rec_type_name(hdr.type), err.msg);
	CHECK(ret == 0);
	CHECK(same(rec, rec2));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	const uint8_t *inputs[2];

	if (!ready) {
		init();
		ready = true;
	}
	inputs[0] = data;
	inputs[1] = fix_crcs(data, size);
	for (int i = 0; i < 2 && inputs[i]; i++) {
		whole(inputs[i], size, NULL);
		stream(inputs[i], size, NULL);
		for (int l = 0; l < NLIMS; l++) {
			whole(inputs[i], size, &lims[l]);
			stream(inputs[i], size, &lims[l]);
		}
	}
	encode_raw(data, size);
	return 0;
}
