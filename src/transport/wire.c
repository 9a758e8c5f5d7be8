// SPDX-License-Identifier: MIT
/*
 * Wire format v1 codec: the only place that converts between the
 * little-endian bytes on the wire and host structures.
 *
 * The decoder trusts nothing. Every length is checked before it is used,
 * the header+body CRC is checked before any body field is looked at, and
 * each rejection names the field and the values that were wrong so that a
 * log line is enough to see what a bad peer sent. The encoder applies the
 * same rules, so ftrepl never puts a record on the wire that its own
 * decoder would refuse.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <ftrepl/ftrepl.h>
#include <ftrepl/wire.h>

#define HELLO_FIXED 64u
#define HELLO_REGION 48u
#define PAGES_FIXED 8u
#define PAGE_ENT 16u
#define COMMIT_FIXED 32u
#define FAULT_FIXED 8u
#define ERROR_FIXED 8u

_Static_assert(FTR_WIRE_HDR_LEN == 40, "header is 40 bytes");
_Static_assert(HELLO_FIXED + HELLO_REGION * FTR_WIRE_MAX_REGIONS <= FTR_WIRE_MAX_BODY,
	       "a full HELLO fits a body");
_Static_assert(PAGES_FIXED + PAGE_ENT * FTR_WIRE_MAX_BATCH + FTR_WIRE_HDR_LEN <=
		       FTR_WIRE_MAX_ENCODED, "a full PAGES record fits FTR_WIRE_MAX_ENCODED");
_Static_assert(HELLO_FIXED + HELLO_REGION * FTR_WIRE_MAX_REGIONS + FTR_WIRE_HDR_LEN <=
		       FTR_WIRE_MAX_ENCODED, "a full HELLO fits FTR_WIRE_MAX_ENCODED");
_Static_assert(ERROR_FIXED + FTR_WIRE_MAX_ERRMSG + FTR_WIRE_HDR_LEN <= FTR_WIRE_MAX_ENCODED,
	       "a full ERROR fits FTR_WIRE_MAX_ENCODED");
_Static_assert(FTR_WIRE_MAX_CHANNELS <= 254, "channel numbers fit a byte below URGENT");
_Static_assert((uint64_t)FTR_WIRE_MAX_BATCH * FTR_WIRE_MAX_PAGE / FTR_WIRE_MAX_BATCH ==
		       FTR_WIRE_MAX_PAGE, "batch sizes computed in 64 bits");

/* ---- byte order ------------------------------------------------------- */

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* ---- names and errors ------------------------------------------------- */

static const char *const reject_names[] = {
	[FTR_WIRE_OK] = "no error",
	[FTR_WIRE_TRUNCATED] = "truncated record",
	[FTR_WIRE_OVERSIZED] = "oversized record",
	[FTR_WIRE_BAD_MAGIC] = "bad magic",
	[FTR_WIRE_BAD_VERSION] = "unsupported version",
	[FTR_WIRE_BAD_CRC] = "bad CRC",
	[FTR_WIRE_BAD_DATA_CRC] = "bad data CRC",
	[FTR_WIRE_UNKNOWN_TYPE] = "unknown record type",
	[FTR_WIRE_BAD_FLAGS] = "bad flags",
	[FTR_WIRE_BAD_LENGTH] = "bad length",
	[FTR_WIRE_OUT_OF_RANGE] = "value out of range",
	[FTR_WIRE_BAD_FIELD] = "bad field",
};

const char *ftr_wire_strerror(enum ftr_wire_reject code)
{
	if ((unsigned)code < sizeof(reject_names) / sizeof(reject_names[0]))
		return reject_names[code];
	return "unknown wire error";
}

static const char *const type_names[] = {
	[FTR_REC_HELLO] = "HELLO",	   [FTR_REC_PAGES] = "PAGES",
	[FTR_REC_ZERO_PAGES] = "ZERO_PAGES", [FTR_REC_BLOB] = "BLOB",
	[FTR_REC_COMMIT] = "COMMIT",	   [FTR_REC_ACK] = "ACK",
	[FTR_REC_CREDIT] = "CREDIT",	   [FTR_REC_HEARTBEAT] = "HEARTBEAT",
	[FTR_REC_FAULT_REQ] = "FAULT_REQ", [FTR_REC_BITMAP] = "BITMAP",
	[FTR_REC_ERROR] = "ERROR",	   [FTR_REC_BYE] = "BYE",
};

const char *ftr_rec_type_name(unsigned type)
{
	if (type >= 1 && type <= FTR_REC__MAX)
		return type_names[type];
	return "unknown";
}

/* Fills *err (which may be NULL) and returns -EPROTO. */
__attribute__((format(printf, 3, 4)))
static int reject(struct ftr_wire_error *err, enum ftr_wire_reject code, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -EPROTO;
}

/* ---- per-type rules shared by encoder and decoder --------------------- */

static bool type_has_data(unsigned type)
{
	return type == FTR_REC_PAGES || type == FTR_REC_BLOB || type == FTR_REC_BITMAP;
}

static uint32_t type_allowed_flags(unsigned type)
{
	uint32_t f = FTR_WF_DATA_CRC;

	if (type == FTR_REC_HELLO)
		f |= FTR_WF_REPLY;
	if (type == FTR_REC_PAGES || type == FTR_REC_ZERO_PAGES)
		f |= FTR_WF_DIRECT;
	return f;
}

/* Header checks that do not need the body. */
static int check_hdr(const struct ftr_wire_hdr *h, struct ftr_wire_error *err)
{
	const char *tn;

	if (h->magic != FTR_WIRE_MAGIC)
		return reject(err, FTR_WIRE_BAD_MAGIC, "magic 0x%08x, expected 0x%08x (\"FTR1\")",
			      h->magic, FTR_WIRE_MAGIC);
	if (h->version != FTR_WIRE_VERSION)
		return reject(err, FTR_WIRE_BAD_VERSION, "version %u, this build speaks %u",
			      h->version, FTR_WIRE_VERSION);
	if (h->type < 1 || h->type > FTR_REC__MAX)
		return reject(err, FTR_WIRE_UNKNOWN_TYPE, "record type %u (known 1..%u)",
			      h->type, FTR_REC__MAX);
	tn = ftr_rec_type_name(h->type);
	if (h->body_len > FTR_WIRE_MAX_BODY)
		return reject(err, FTR_WIRE_OVERSIZED, "%s body_len %u over the limit %u", tn,
			      h->body_len, FTR_WIRE_MAX_BODY);
	if (h->data_len > FTR_WIRE_MAX_DATA)
		return reject(err, FTR_WIRE_OVERSIZED, "%s data_len %u over the limit %u", tn,
			      h->data_len, FTR_WIRE_MAX_DATA);
	if (h->reserved)
		return reject(err, FTR_WIRE_BAD_FIELD, "%s header reserved field is 0x%x, must be 0",
			      tn, h->reserved);
	if (h->flags & ~FTR_WF_KNOWN)
		return reject(err, FTR_WIRE_BAD_FLAGS, "%s flags 0x%x have unknown bits 0x%x", tn,
			      h->flags, h->flags & ~FTR_WF_KNOWN);
	if (h->flags & ~type_allowed_flags(h->type))
		return reject(err, FTR_WIRE_BAD_FLAGS, "%s flags 0x%x: 0x%x not valid for this type",
			      tn, h->flags, h->flags & ~type_allowed_flags(h->type));
	if (h->data_len && !type_has_data(h->type))
		return reject(err, FTR_WIRE_BAD_LENGTH, "%s carries no data part, data_len is %u",
			      tn, h->data_len);
	if ((h->flags & FTR_WF_DATA_CRC) && !h->data_len)
		return reject(err, FTR_WIRE_BAD_FLAGS, "%s has DATA_CRC set but no data part", tn);
	if (!(h->flags & FTR_WF_DATA_CRC) && h->data_crc)
		return reject(err, FTR_WIRE_BAD_FIELD,
			      "%s data_crc is 0x%08x without the DATA_CRC flag, must be 0", tn,
			      h->data_crc);
	return 0;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* The body length a type needs, from its fixed part; 0 with *ok false when
 * the body is too short to hold even the count. */
static int check_body_len(const struct ftr_wire_hdr *h, const uint8_t *body,
			  struct ftr_wire_error *err)
{
	const char *tn = ftr_rec_type_name(h->type);
	uint64_t want = 0, fixed = 0;

	switch (h->type) {
	case FTR_REC_HELLO:
		fixed = HELLO_FIXED;
		if (h->body_len >= fixed)
			want = fixed + (uint64_t)HELLO_REGION * get32(body + 44);
		break;
	case FTR_REC_PAGES:
	case FTR_REC_ZERO_PAGES:
		fixed = PAGES_FIXED;
		if (h->body_len >= fixed)
			want = fixed + (uint64_t)PAGE_ENT * get32(body + 4);
		break;
	case FTR_REC_BLOB:
	case FTR_REC_CREDIT:
	case FTR_REC_BYE:
		fixed = want = 8;
		break;
	case FTR_REC_COMMIT:
		fixed = COMMIT_FIXED;
		if (h->body_len >= fixed)
			want = fixed + 4ull * get32(body);
		break;
	case FTR_REC_ACK:
		fixed = want = 0;
		break;
	case FTR_REC_HEARTBEAT:
	case FTR_REC_BITMAP:
		fixed = want = 24;
		break;
	case FTR_REC_FAULT_REQ:
		fixed = FAULT_FIXED;
		if (h->body_len >= fixed)
			want = fixed + 8ull * get32(body + 4);
		break;
	case FTR_REC_ERROR:
		fixed = ERROR_FIXED;
		if (h->body_len >= fixed)
			want = fixed + (uint64_t)get32(body + 4);
		break;
	}
	if (h->body_len < fixed)
		return reject(err, FTR_WIRE_BAD_LENGTH, "%s body_len %u shorter than its fixed part %u",
			      tn, h->body_len, (unsigned)fixed);
	if (want != h->body_len)
		return reject(err, FTR_WIRE_BAD_LENGTH, "%s body_len %u, its contents need %llu", tn,
			      h->body_len, (unsigned long long)want);
	return 0;
}

static int check_region(const char *tn, uint32_t region, const struct ftr_wire_limits *lim,
			struct ftr_wire_error *err)
{
	if (lim && region >= lim->nregions)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "%s region %u, session has %u regions", tn,
			      region, lim->nregions);
	return 0;
}

static int check_page(const char *tn, uint32_t region, uint64_t page,
		      const struct ftr_wire_limits *lim, struct ftr_wire_error *err)
{
	if (lim && page >= lim->region_pages[region])
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "%s page %llu out of range: region %u has %llu pages",
			      tn, (unsigned long long)page, region,
			      (unsigned long long)lim->region_pages[region]);
	return 0;
}

/* ---- per-type body decoders ------------------------------------------- */

static int dec_hello(const struct ftr_wire_hdr *h, const uint8_t *b, struct ftr_hello *o,
		     struct ftr_wire_error *err)
{
	bool reply = h->flags & FTR_WF_REPLY;

	memcpy(o->session, b, 16);
	o->generation = get64(b + 16);
	o->features = get64(b + 24);
	o->page_size = get32(b + 32);
	o->role = b[36];
	o->channel = b[37];
	o->nchannels = b[38];
	o->staging_slots = get32(b + 40);
	o->nregions = get32(b + 44);
	o->last_committed = get64(b + 48);
	o->cache_size = get64(b + 56);

	if (o->nregions > FTR_WIRE_MAX_REGIONS)
		return reject(err, FTR_WIRE_OVERSIZED, "HELLO nregions %u over the limit %u",
			      o->nregions, FTR_WIRE_MAX_REGIONS);
	if (!o->nregions && !reply)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "HELLO request with 0 regions");
	if (!o->generation)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "HELLO generation 0 (must be >= 1)");
	if (o->features & ~FTR_FEAT_KNOWN)
		return reject(err, FTR_WIRE_BAD_FIELD, "HELLO features 0x%llx have unknown bits 0x%llx",
			      (unsigned long long)o->features,
			      (unsigned long long)(o->features & ~FTR_FEAT_KNOWN));
	if (!is_pow2(o->page_size) || o->page_size < FTR_WIRE_MIN_PAGE ||
	    o->page_size > FTR_WIRE_MAX_PAGE)
		return reject(err, FTR_WIRE_OUT_OF_RANGE,
			      "HELLO page_size %u (must be a power of two, %u..%u)", o->page_size,
			      FTR_WIRE_MIN_PAGE, FTR_WIRE_MAX_PAGE);
	if (o->role != FTR_ROLE_PRIMARY && o->role != FTR_ROLE_STANDBY)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "HELLO role %u (1 primary, 2 standby)",
			      o->role);
	if (o->nchannels < 1 || o->nchannels > FTR_WIRE_MAX_CHANNELS)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "HELLO nchannels %u (1..%u)", o->nchannels,
			      FTR_WIRE_MAX_CHANNELS);
	if (o->channel != FTR_CHAN_URGENT && o->channel > o->nchannels)
		return reject(err, FTR_WIRE_OUT_OF_RANGE,
			      "HELLO channel %u (0 control, 1..%u data, %u urgent)", o->channel,
			      o->nchannels, FTR_CHAN_URGENT);
	if (b[39])
		return reject(err, FTR_WIRE_BAD_FIELD, "HELLO reserved byte is %u, must be 0", b[39]);

	for (uint32_t i = 0; i < o->nregions; i++) {
		const uint8_t *r = b + HELLO_FIXED + HELLO_REGION * i;
		struct ftr_wire_region *reg = &o->regions[i];

		reg->id = get32(r);
		reg->flags = get32(r + 4);
		reg->size = get64(r + 8);
		if (reg->id != i)
			return reject(err, FTR_WIRE_BAD_FIELD, "HELLO region %u has id %u", i, reg->id);
		if (reg->flags)
			return reject(err, FTR_WIRE_BAD_FIELD, "HELLO region %u flags 0x%x, must be 0",
				      i, reg->flags);
		if (get64(r + 16))
			return reject(err, FTR_WIRE_BAD_FIELD, "HELLO region %u reserved field not 0", i);
		if (!reg->size || reg->size % o->page_size)
			return reject(err, FTR_WIRE_OUT_OF_RANGE,
				      "HELLO region %u size %llu (must be a non-zero multiple of page size %u)",
				      i, (unsigned long long)reg->size, o->page_size);
		if (!memchr(r + 24, 0, FTR_WIRE_REGION_NAME))
			return reject(err, FTR_WIRE_BAD_FIELD,
				      "HELLO region %u name is not NUL-terminated within %u bytes", i,
				      FTR_WIRE_REGION_NAME);
		memcpy(reg->name, r + 24, FTR_WIRE_REGION_NAME);
	}
	return 0;
}

static int dec_pages(const struct ftr_wire_hdr *h, const uint8_t *b, const struct ftr_wire_limits *lim,
		     struct ftr_pages *o, struct ftr_wire_error *err)
{
	o->region = get32(b);
	o->count = get32(b + 4);
	if (!o->count)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "PAGES count 0");
	if (o->count > FTR_WIRE_MAX_BATCH)
		return reject(err, FTR_WIRE_OVERSIZED, "PAGES count %u over the limit %u", o->count,
			      FTR_WIRE_MAX_BATCH);
	if (check_region("PAGES", o->region, lim, err))
		return -EPROTO;
	if (lim && (uint64_t)o->count * lim->page_size != h->data_len)
		return reject(err, FTR_WIRE_BAD_LENGTH,
			      "PAGES data_len %u, %u pages of %u bytes need %llu", h->data_len,
			      o->count, lim->page_size,
			      (unsigned long long)o->count * lim->page_size);
	if (!lim && (!h->data_len || h->data_len % o->count))
		return reject(err, FTR_WIRE_BAD_LENGTH, "PAGES data_len %u is not %u equal pages",
			      h->data_len, o->count);
	for (uint32_t i = 0; i < o->count; i++) {
		const uint8_t *e = b + PAGES_FIXED + PAGE_ENT * i;

		o->ent[i].page = get64(e);
		o->ent[i].pos = get64(e + 8);
		if ((h->flags & FTR_WF_DIRECT) && o->ent[i].pos)
			return reject(err, FTR_WIRE_BAD_FIELD,
				      "PAGES entry %u: DIRECT record with staging pos %llu (must be 0)",
				      i, (unsigned long long)o->ent[i].pos);
		if (check_page("PAGES", o->region, o->ent[i].page, lim, err))
			return -EPROTO;
	}
	return 0;
}

static int dec_zero(const uint8_t *b, const struct ftr_wire_limits *lim,
		    struct ftr_zero_pages *o, struct ftr_wire_error *err)
{
	o->region = get32(b);
	o->count = get32(b + 4);
	if (!o->count)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "ZERO_PAGES count 0");
	if (o->count > FTR_WIRE_MAX_BATCH)
		return reject(err, FTR_WIRE_OVERSIZED, "ZERO_PAGES count %u over the limit %u",
			      o->count, FTR_WIRE_MAX_BATCH);
	if (check_region("ZERO_PAGES", o->region, lim, err))
		return -EPROTO;
	for (uint32_t i = 0; i < o->count; i++) {
		const uint8_t *e = b + PAGES_FIXED + PAGE_ENT * i;
		static const uint8_t zero7[7];

		o->ent[i].page = get64(e);
		o->ent[i].fill = e[8];
		if (memcmp(e + 9, zero7, 7))
			return reject(err, FTR_WIRE_BAD_FIELD,
				      "ZERO_PAGES entry %u reserved bytes not 0", i);
		if (check_page("ZERO_PAGES", o->region, o->ent[i].page, lim, err))
			return -EPROTO;
	}
	return 0;
}

static int dec_commit(const uint8_t *b, const struct ftr_wire_limits *lim,
		      struct ftr_commit *o, struct ftr_wire_error *err)
{
	o->nchannels = get32(b);
	o->blob_len = get32(b + 4);
	o->pages = get64(b + 8);
	o->zero_pages = get64(b + 16);
	o->slot_end = get64(b + 24);
	if (o->nchannels < 1 || o->nchannels > FTR_WIRE_MAX_CHANNELS)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "COMMIT nchannels %u (1..%u)",
			      o->nchannels, FTR_WIRE_MAX_CHANNELS);
	if (lim && o->nchannels != lim->nchannels)
		return reject(err, FTR_WIRE_OUT_OF_RANGE,
			      "COMMIT nchannels %u, the session has %u data channels", o->nchannels,
			      lim->nchannels);
	if (o->blob_len > FTR_WIRE_MAX_BLOB)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "COMMIT blob_len %u over the limit %u",
			      o->blob_len, FTR_WIRE_MAX_BLOB);
	for (uint32_t i = 0; i < o->nchannels; i++)
		o->batches[i] = get32(b + COMMIT_FIXED + 4 * i);
	return 0;
}

static int dec_fault(const uint8_t *b, const struct ftr_wire_limits *lim,
		     struct ftr_fault_req *o, struct ftr_wire_error *err)
{
	o->region = get32(b);
	o->count = get32(b + 4);
	if (!o->count)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "FAULT_REQ count 0");
	if (o->count > FTR_WIRE_MAX_FAULT)
		return reject(err, FTR_WIRE_OVERSIZED, "FAULT_REQ count %u over the limit %u",
			      o->count, FTR_WIRE_MAX_FAULT);
	if (check_region("FAULT_REQ", o->region, lim, err))
		return -EPROTO;
	for (uint32_t i = 0; i < o->count; i++) {
		o->page[i] = get64(b + FAULT_FIXED + 8 * i);
		if (check_page("FAULT_REQ", o->region, o->page[i], lim, err))
			return -EPROTO;
	}
	return 0;
}

static int dec_bitmap(const struct ftr_wire_hdr *h, const uint8_t *b,
		      const struct ftr_wire_limits *lim, struct ftr_bitmap *o,
		      struct ftr_wire_error *err)
{
	o->region = get32(b);
	o->first_page = get64(b + 8);
	o->nbits = get64(b + 16);
	if (get32(b + 4))
		return reject(err, FTR_WIRE_BAD_FIELD, "BITMAP reserved field not 0");
	if (!o->nbits)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "BITMAP nbits 0");
	if (o->nbits > (uint64_t)FTR_WIRE_MAX_DATA * 8 || (o->nbits + 7) / 8 != h->data_len)
		return reject(err, FTR_WIRE_BAD_LENGTH, "BITMAP of %llu bits needs %llu data bytes, data_len is %u",
			      (unsigned long long)o->nbits,
			      (unsigned long long)((o->nbits + 7) / 8), h->data_len);
	if (check_region("BITMAP", o->region, lim, err))
		return -EPROTO;
	if (lim && (o->first_page > lim->region_pages[o->region] ||
		    o->nbits > lim->region_pages[o->region] - o->first_page))
		return reject(err, FTR_WIRE_OUT_OF_RANGE,
			      "BITMAP pages %llu+%llu beyond region %u (%llu pages)",
			      (unsigned long long)o->first_page, (unsigned long long)o->nbits,
			      o->region, (unsigned long long)lim->region_pages[o->region]);
	return 0;
}

static int dec_error(const uint8_t *b, struct ftr_errrec *o, struct ftr_wire_error *err)
{
	o->code = (int32_t)get32(b);
	o->len = get32(b + 4);
	if (o->code <= 0)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "ERROR code %d (must be positive)", o->code);
	if (!o->len || o->len > FTR_WIRE_MAX_ERRMSG)
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "ERROR message length %u (1..%u)", o->len,
			      FTR_WIRE_MAX_ERRMSG);
	if (memchr(b + ERROR_FIXED, 0, o->len))
		return reject(err, FTR_WIRE_BAD_FIELD, "ERROR message contains a NUL byte");
	memcpy(o->msg, b + ERROR_FIXED, o->len);
	o->msg[o->len] = '\0';
	return 0;
}

/* ---- decoding entry points -------------------------------------------- */

static void read_hdr(const uint8_t *p, struct ftr_wire_hdr *h)
{
	h->magic = get32(p);
	h->version = get16(p + 4);
	h->type = get16(p + 6);
	h->flags = get32(p + 8);
	h->body_len = get32(p + 12);
	h->data_len = get32(p + 16);
	h->data_crc = get32(p + 20);
	h->seq = get64(p + 24);
	h->crc = get32(p + 32);
	h->reserved = get32(p + 36);
}

int ftr_wire_decode_hdr(const void *hdrbuf, struct ftr_wire_hdr *hdr, struct ftr_wire_error *err)
{
	read_hdr(hdrbuf, hdr);
	return check_hdr(hdr, err);
}

int ftr_wire_decode_body(const void *hdrbuf, const struct ftr_wire_hdr *hdr, const void *body,
			 const struct ftr_wire_limits *lim, struct ftr_rec *out,
			 struct ftr_wire_error *err)
{
	const uint8_t *b = body;
	const char *tn;
	uint32_t crc;

	if (check_hdr(hdr, err))
		return -EPROTO;
	tn = ftr_rec_type_name(hdr->type);
	crc = ftr_crc32c(0, hdrbuf, 32);
	crc = ftr_crc32c(crc, body, hdr->body_len);
	if (crc != hdr->crc)
		return reject(err, FTR_WIRE_BAD_CRC, "%s CRC 0x%08x, computed 0x%08x over %u bytes",
			      tn, hdr->crc, crc, 32 + hdr->body_len);
	if (lim && (lim->nregions > FTR_WIRE_MAX_REGIONS || !is_pow2(lim->page_size)))
		return reject(err, FTR_WIRE_OUT_OF_RANGE, "invalid session limits");
	if (check_body_len(hdr, b, err))
		return -EPROTO;

	out->hdr = *hdr;
	switch (hdr->type) {
	case FTR_REC_HELLO:
		return dec_hello(hdr, b, &out->u.hello, err);
	case FTR_REC_PAGES:
		return dec_pages(hdr, b, lim, &out->u.pages, err);
	case FTR_REC_ZERO_PAGES:
		return dec_zero(b, lim, &out->u.zero, err);
	case FTR_REC_BLOB:
		out->u.blob.len = get32(b);
		if (get32(b + 4))
			return reject(err, FTR_WIRE_BAD_FIELD, "BLOB reserved field not 0");
		if (out->u.blob.len > FTR_WIRE_MAX_BLOB)
			return reject(err, FTR_WIRE_OVERSIZED, "BLOB len %u over the limit %u",
				      out->u.blob.len, FTR_WIRE_MAX_BLOB);
		if (out->u.blob.len != hdr->data_len)
			return reject(err, FTR_WIRE_BAD_LENGTH, "BLOB len %u but data_len %u",
				      out->u.blob.len, hdr->data_len);
		return 0;
	case FTR_REC_COMMIT:
		return dec_commit(b, lim, &out->u.commit, err);
	case FTR_REC_ACK:
		return 0;
	case FTR_REC_CREDIT:
		out->u.credit.released = get64(b);
		return 0;
	case FTR_REC_HEARTBEAT:
		out->u.heartbeat.time_ns = get64(b);
		out->u.heartbeat.committed = get64(b + 8);
		out->u.heartbeat.acked = get64(b + 16);
		return 0;
	case FTR_REC_FAULT_REQ:
		return dec_fault(b, lim, &out->u.fault, err);
	case FTR_REC_BITMAP:
		return dec_bitmap(hdr, b, lim, &out->u.bitmap, err);
	case FTR_REC_ERROR:
		return dec_error(b, &out->u.error, err);
	case FTR_REC_BYE:
		out->u.bye.reason = get32(b);
		if (out->u.bye.reason < FTR_BYE_DONE || out->u.bye.reason > FTR_BYE_SWITCHED)
			return reject(err, FTR_WIRE_OUT_OF_RANGE, "BYE reason %u (1..3)",
				      out->u.bye.reason);
		if (get32(b + 4))
			return reject(err, FTR_WIRE_BAD_FIELD, "BYE reserved field not 0");
		return 0;
	}
	return reject(err, FTR_WIRE_UNKNOWN_TYPE, "record type %u", hdr->type);
}

uint32_t ftr_wire_data_crc(const struct iovec *iov, int iovcnt)
{
	uint32_t crc = 0;

	for (int i = 0; i < iovcnt; i++)
		crc = ftr_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
	return crc;
}

int ftr_wire_check_data(const struct ftr_wire_hdr *hdr, const struct iovec *iov, int iovcnt,
			struct ftr_wire_error *err)
{
	uint64_t total = 0;
	uint32_t crc;

	if (!(hdr->flags & FTR_WF_DATA_CRC))
		return 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total != hdr->data_len)
		return reject(err, FTR_WIRE_BAD_LENGTH, "%s data part of %llu bytes, data_len %u",
			      ftr_rec_type_name(hdr->type), (unsigned long long)total, hdr->data_len);
	crc = ftr_wire_data_crc(iov, iovcnt);
	if (crc != hdr->data_crc)
		return reject(err, FTR_WIRE_BAD_DATA_CRC,
			      "%s data CRC 0x%08x, computed 0x%08x over %u bytes",
			      ftr_rec_type_name(hdr->type), hdr->data_crc, crc, hdr->data_len);
	return 0;
}

ssize_t ftr_wire_decode(const void *buf, size_t len, const struct ftr_wire_limits *lim,
			struct ftr_rec *out, const void **data, struct ftr_wire_error *err)
{
	const uint8_t *p = buf;
	struct ftr_wire_hdr hdr;
	struct iovec iov;
	size_t need;

	if (len < FTR_WIRE_HDR_LEN)
		return reject(err, FTR_WIRE_TRUNCATED, "%zu bytes, a header needs %u", len,
			      FTR_WIRE_HDR_LEN);
	if (ftr_wire_decode_hdr(p, &hdr, err))
		return -EPROTO;
	need = (size_t)FTR_WIRE_HDR_LEN + hdr.body_len + hdr.data_len;
	if (len < need)
		return reject(err, FTR_WIRE_TRUNCATED, "%s record needs %zu bytes, have %zu",
			      ftr_rec_type_name(hdr.type), need, len);
	if (ftr_wire_decode_body(p, &hdr, p + FTR_WIRE_HDR_LEN, lim, out, err))
		return -EPROTO;
	iov.iov_base = (void *)(p + FTR_WIRE_HDR_LEN + hdr.body_len);
	iov.iov_len = hdr.data_len;
	if (ftr_wire_check_data(&hdr, &iov, 1, err))
		return -EPROTO;
	if (data)
		*data = hdr.data_len ? iov.iov_base : NULL;
	return (ssize_t)need;
}

/* ---- encoding --------------------------------------------------------- */

/* Writes the type's body into b (which has room for FTR_WIRE_MAX_ENCODED -
 * header); returns its length or -EINVAL. */
static ssize_t enc_body(const struct ftr_rec *r, uint8_t *b)
{
	const struct ftr_hello *hl;
	uint32_t i;

	switch (r->hdr.type) {
	case FTR_REC_HELLO:
		hl = &r->u.hello;
		if (hl->nregions > FTR_WIRE_MAX_REGIONS)
			return -EINVAL;
		memcpy(b, hl->session, 16);
		put64(b + 16, hl->generation);
		put64(b + 24, hl->features);
		put32(b + 32, hl->page_size);
		b[36] = hl->role;
		b[37] = hl->channel;
		b[38] = hl->nchannels;
		b[39] = 0;
		put32(b + 40, hl->staging_slots);
		put32(b + 44, hl->nregions);
		put64(b + 48, hl->last_committed);
		put64(b + 56, hl->cache_size);
		for (i = 0; i < hl->nregions; i++) {
			uint8_t *e = b + HELLO_FIXED + HELLO_REGION * i;
			const struct ftr_wire_region *reg = &hl->regions[i];
			size_t nl = strnlen(reg->name, FTR_WIRE_REGION_NAME);

			if (nl == FTR_WIRE_REGION_NAME)
				return -EINVAL;
			put32(e, reg->id);
			put32(e + 4, reg->flags);
			put64(e + 8, reg->size);
			put64(e + 16, 0);
			memset(e + 24, 0, FTR_WIRE_REGION_NAME);
			memcpy(e + 24, reg->name, nl);
		}
		return HELLO_FIXED + HELLO_REGION * hl->nregions;
	case FTR_REC_PAGES:
		if (r->u.pages.count > FTR_WIRE_MAX_BATCH)
			return -EINVAL;
		put32(b, r->u.pages.region);
		put32(b + 4, r->u.pages.count);
		for (i = 0; i < r->u.pages.count; i++) {
			put64(b + PAGES_FIXED + PAGE_ENT * i, r->u.pages.ent[i].page);
			put64(b + PAGES_FIXED + PAGE_ENT * i + 8, r->u.pages.ent[i].pos);
		}
		return PAGES_FIXED + PAGE_ENT * r->u.pages.count;
	case FTR_REC_ZERO_PAGES:
		if (r->u.zero.count > FTR_WIRE_MAX_BATCH)
			return -EINVAL;
		put32(b, r->u.zero.region);
		put32(b + 4, r->u.zero.count);
		for (i = 0; i < r->u.zero.count; i++) {
			uint8_t *e = b + PAGES_FIXED + PAGE_ENT * i;

			put64(e, r->u.zero.ent[i].page);
			memset(e + 8, 0, 8);
			e[8] = r->u.zero.ent[i].fill;
		}
		return PAGES_FIXED + PAGE_ENT * r->u.zero.count;
	case FTR_REC_BLOB:
		put32(b, r->u.blob.len);
		put32(b + 4, 0);
		return 8;
	case FTR_REC_COMMIT:
		if (r->u.commit.nchannels > FTR_WIRE_MAX_CHANNELS)
			return -EINVAL;
		put32(b, r->u.commit.nchannels);
		put32(b + 4, r->u.commit.blob_len);
		put64(b + 8, r->u.commit.pages);
		put64(b + 16, r->u.commit.zero_pages);
		put64(b + 24, r->u.commit.slot_end);
		for (i = 0; i < r->u.commit.nchannels; i++)
			put32(b + COMMIT_FIXED + 4 * i, r->u.commit.batches[i]);
		return COMMIT_FIXED + 4 * r->u.commit.nchannels;
	case FTR_REC_ACK:
		return 0;
	case FTR_REC_CREDIT:
		put64(b, r->u.credit.released);
		return 8;
	case FTR_REC_HEARTBEAT:
		put64(b, r->u.heartbeat.time_ns);
		put64(b + 8, r->u.heartbeat.committed);
		put64(b + 16, r->u.heartbeat.acked);
		return 24;
	case FTR_REC_FAULT_REQ:
		if (r->u.fault.count > FTR_WIRE_MAX_FAULT)
			return -EINVAL;
		put32(b, r->u.fault.region);
		put32(b + 4, r->u.fault.count);
		for (i = 0; i < r->u.fault.count; i++)
			put64(b + FAULT_FIXED + 8 * i, r->u.fault.page[i]);
		return FAULT_FIXED + 8 * r->u.fault.count;
	case FTR_REC_BITMAP:
		put32(b, r->u.bitmap.region);
		put32(b + 4, 0);
		put64(b + 8, r->u.bitmap.first_page);
		put64(b + 16, r->u.bitmap.nbits);
		return 24;
	case FTR_REC_ERROR:
		if (r->u.error.len > FTR_WIRE_MAX_ERRMSG)
			return -EINVAL;
		put32(b, (uint32_t)r->u.error.code);
		put32(b + 4, r->u.error.len);
		memcpy(b + ERROR_FIXED, r->u.error.msg, r->u.error.len);
		return ERROR_FIXED + r->u.error.len;
	case FTR_REC_BYE:
		put32(b, r->u.bye.reason);
		put32(b + 4, 0);
		return 8;
	}
	return -EINVAL;
}

ssize_t ftr_wire_encode(void *buf, size_t cap, const struct ftr_rec *rec)
{
	/* Large enough for any body; static per thread so that the encoder
	 * needs no big stack frame and stays reentrant. */
	static __thread uint8_t tmp[FTR_WIRE_MAX_ENCODED];
	static __thread struct ftr_rec check;
	struct ftr_wire_hdr h = rec->hdr;
	ssize_t blen;
	uint32_t crc;

	if (rec->hdr.type < 1 || rec->hdr.type > FTR_REC__MAX)
		return -EINVAL;
	blen = enc_body(rec, tmp + FTR_WIRE_HDR_LEN);
	if (blen < 0)
		return blen;
	h.magic = FTR_WIRE_MAGIC;
	h.version = FTR_WIRE_VERSION;
	h.body_len = (uint32_t)blen;
	h.reserved = 0;

	put32(tmp, h.magic);
	put16(tmp + 4, h.version);
	put16(tmp + 6, h.type);
	put32(tmp + 8, h.flags);
	put32(tmp + 12, h.body_len);
	put32(tmp + 16, h.data_len);
	put32(tmp + 20, h.data_crc);
	put64(tmp + 24, h.seq);
	crc = ftr_crc32c(0, tmp, 32);
	crc = ftr_crc32c(crc, tmp + FTR_WIRE_HDR_LEN, (size_t)blen);
	h.crc = crc;
	put32(tmp + 32, crc);
	put32(tmp + 36, 0);

	/* Refuse anything our own decoder would reject (without session
	 * limits: the encoder does not know them). */
	if (ftr_wire_decode_body(tmp, &h, tmp + FTR_WIRE_HDR_LEN, NULL, &check, NULL))
		return -EINVAL;
	if ((size_t)(FTR_WIRE_HDR_LEN + blen) > cap)
		return -ENOSPC;
	memcpy(buf, tmp, FTR_WIRE_HDR_LEN + (size_t)blen);
	return FTR_WIRE_HDR_LEN + blen;
}
