/* SPDX-License-Identifier: MIT */
/*
 * Wire format v1 codec, written from include/ftrepl/wire.h alone: round
 * trips of every record type through the whole-record and the streaming
 * decoders, the byte layout at the documented offsets, every rejection
 * class on records crafted by hand (with the header CRC recomputed so the
 * decoder reaches the check under test), the encoder's refusals, the names,
 * and CRC32C against known answers and a bitwise reference.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <ftrepl/ftrepl.h>
#include <ftrepl/wire.h>

#include "testutil.h"

/* A private copy of the CRC32C implementation, so that the table walk used
 * on CPUs without SSE4.2 (crc_sw) is tested on this one too. */
#define ftr_crc32c crc32c_private_copy
#define ftr_crc32c_use crc32c_use_private_copy
uint32_t crc32c_private_copy(uint32_t crc, const void *buf, size_t len);
#include "common/crc32c.c"
#undef ftr_crc32c
#undef ftr_crc32c_use

#define PAGE 4096u
#define HDR FTR_WIRE_HDR_LEN
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DATA_CAP ((size_t)FTR_WIRE_MAX_BATCH * PAGE)
#define BUFCAP ((size_t)FTR_WIRE_MAX_ENCODED + DATA_CAP + 256)
#define REJ(c) (1u << (c))

/* ---- little-endian access, one byte at a time -------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (unsigned b = 0; b < 4; b++)
		p[b] = (uint8_t)(v >> (8 * b));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (unsigned b = 0; b < 8; b++)
		p[b] = (uint8_t)(v >> (8 * b));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (unsigned b = 0; b < 4; b++)
		v |= (uint32_t)p[b] << (8 * b);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (unsigned b = 0; b < 8; b++)
		v |= (uint64_t)p[b] << (8 * b);
	return v;
}

/* ---- CRC32C reference (bitwise, reflected polynomial 0x82F63B78) -------- */

static uint32_t ref_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

/* Recomputes the header CRC of the record at rec, whose body (body_len
 * bytes, as the header says) follows the header: CRC32C of header bytes
 * 0..31 then the body, stored little-endian at offset 32. */
static void fix_crc(uint8_t *rec)
{
	uint32_t crc = ftr_crc32c(0, rec, 32);

	crc = ftr_crc32c(crc, rec + HDR, get32(rec + 12));
	put32(rec + 32, crc);
}

/* ---- the sample records -------------------------------------------------- */

enum {
	C_HELLO,
	C_HELLO_REPLY,
	C_HELLO_REPLY0,
	C_PAGES_DIRECT,
	C_PAGES,
	C_ZERO,
	C_ZERO_DIRECT,
	C_BLOB,
	C_COMMIT,
	C_ACK,
	C_CREDIT,
	C_HEARTBEAT,
	C_FAULT,
	C_BITMAP_CRC,
	C_BITMAP,
	C_ERROR,
	C_ERROR_MAX,
	C_BYE,
	C_PAGES_FULL,
	NCASES
};

static const char *const case_names[NCASES] = {
	[C_HELLO] = "HELLO request, 3 regions",
	[C_HELLO_REPLY] = "HELLO reply, 3 regions",
	[C_HELLO_REPLY0] = "HELLO reply, 0 regions",
	[C_PAGES_DIRECT] = "PAGES direct with data CRC",
	[C_PAGES] = "PAGES staged",
	[C_ZERO] = "ZERO_PAGES",
	[C_ZERO_DIRECT] = "ZERO_PAGES direct",
	[C_BLOB] = "BLOB with data CRC",
	[C_COMMIT] = "COMMIT, 3 channels",
	[C_ACK] = "ACK",
	[C_CREDIT] = "CREDIT",
	[C_HEARTBEAT] = "HEARTBEAT",
	[C_FAULT] = "FAULT_REQ",
	[C_BITMAP_CRC] = "BITMAP with data CRC",
	[C_BITMAP] = "BITMAP",
	[C_ERROR] = "ERROR",
	[C_ERROR_MAX] = "ERROR, longest message",
	[C_BYE] = "BYE",
	[C_PAGES_FULL] = "PAGES, full batch",
};

/* Session layout the samples fit: 3 regions of 256, 1024 and 16 pages. */
static const uint64_t region_pages[3] = { 256, 1024, 16 };
static const char *const region_names[3] = { "ram", "vga.vram", "abcdefghijklmnopqrstuvw" };

static struct ftr_rec *g_rec, *g_out, *g_out2;
static uint8_t *g_data, *g_buf, *g_buf2;
static struct ftr_wire_limits g_lim;

static void setup(void)
{
	g_rec = calloc(1, sizeof(*g_rec));
	g_out = calloc(1, sizeof(*g_out));
	g_out2 = calloc(1, sizeof(*g_out2));
	g_data = calloc(1, DATA_CAP);
	g_buf = calloc(1, BUFCAP);
	g_buf2 = calloc(1, BUFCAP);
	ck_assert(g_rec && g_out && g_out2 && g_data && g_buf && g_buf2);
	memset(&g_lim, 0, sizeof(g_lim));
	g_lim.page_size = PAGE;
	g_lim.nregions = 3;
	for (int k = 0; k < 3; k++)
		g_lim.region_pages[k] = region_pages[k];
	g_lim.nchannels = 3;
}

static void teardown(void)
{
	free(g_rec);
	free(g_out);
	free(g_out2);
	free(g_data);
	free(g_buf);
	free(g_buf2);
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t k = 0; k < len; k++)
		p[k] = (uint8_t)(k * 131u + seed * 7u + (k >> 8) + (k >> 16));
}

static void set_regions(struct ftr_hello *h, uint32_t n)
{
	h->nregions = n;
	for (uint32_t k = 0; k < n; k++) {
		h->regions[k].id = k;
		h->regions[k].flags = 0;
		h->regions[k].size = region_pages[k] * h->page_size;
		strcpy(h->regions[k].name, region_names[k]);
	}
}

/* Fills *r (and data) with sample i; data_crc is computed when flagged. */
static void make_case(int i, struct ftr_rec *r, uint8_t *data)
{
	memset(r, 0, sizeof(*r));
	switch (i) {
	case C_HELLO:
	case C_HELLO_REPLY:
	case C_HELLO_REPLY0: {
		struct ftr_hello *h = &r->u.hello;

		r->hdr.type = FTR_REC_HELLO;
		r->hdr.seq = 1;
		for (int k = 0; k < 16; k++)
			h->session[k] = (uint8_t)(0x10 + k * 3);
		h->generation = 7;
		h->page_size = PAGE;
		h->nchannels = 3;
		if (i == C_HELLO) {
			h->features = FTR_FEAT_DATA_CRC | FTR_FEAT_ZERO_FILL;
			h->role = FTR_ROLE_PRIMARY;
			h->channel = FTR_CHAN_CONTROL;
			h->last_committed = FTR_EPOCH_NONE;
			set_regions(h, 3);
		} else {
			r->hdr.flags = FTR_WF_REPLY;
			r->hdr.seq = 2;
			h->features = FTR_FEAT_DATA_CRC;
			h->role = FTR_ROLE_STANDBY;
			h->staging_slots = 4096;
			h->last_committed = 41;
			h->cache_size = 1ull << 30;
			if (i == C_HELLO_REPLY) {
				h->channel = 1;
				set_regions(h, 3);
			} else {
				h->channel = FTR_CHAN_URGENT;
				set_regions(h, 0);
			}
		}
		break;
	}
	case C_PAGES_DIRECT:
		r->hdr.type = FTR_REC_PAGES;
		r->hdr.flags = FTR_WF_DIRECT | FTR_WF_DATA_CRC;
		r->hdr.seq = 9;
		r->u.pages.region = 1;
		r->u.pages.count = 3;
		r->u.pages.ent[0].page = 0;
		r->u.pages.ent[1].page = 5;
		r->u.pages.ent[2].page = 1023;
		r->hdr.data_len = 3 * PAGE;
		fill_pattern(data, r->hdr.data_len, 1);
		break;
	case C_PAGES:
		r->hdr.type = FTR_REC_PAGES;
		r->hdr.seq = 10;
		r->u.pages.region = 0;
		r->u.pages.count = 2;
		r->u.pages.ent[0].page = 255;
		r->u.pages.ent[0].pos = 1000;
		r->u.pages.ent[1].page = 3;
		r->u.pages.ent[1].pos = (1ull << 40) + 7;
		r->hdr.data_len = 2 * PAGE;
		fill_pattern(data, r->hdr.data_len, 2);
		break;
	case C_ZERO:
		r->hdr.type = FTR_REC_ZERO_PAGES;
		r->hdr.seq = 10;
		r->u.zero.region = 2;
		r->u.zero.count = 4;
		r->u.zero.ent[0] = (struct ftr_fill_ent){ .page = 0, .fill = 0x00 };
		r->u.zero.ent[1] = (struct ftr_fill_ent){ .page = 1, .fill = 0xff };
		r->u.zero.ent[2] = (struct ftr_fill_ent){ .page = 15, .fill = 0x5a };
		r->u.zero.ent[3] = (struct ftr_fill_ent){ .page = 7, .fill = 0x00 };
		break;
	case C_ZERO_DIRECT:
		r->hdr.type = FTR_REC_ZERO_PAGES;
		r->hdr.flags = FTR_WF_DIRECT;
		r->hdr.seq = 0;
		r->u.zero.region = 0;
		r->u.zero.count = 1;
		r->u.zero.ent[0] = (struct ftr_fill_ent){ .page = 100, .fill = 0x01 };
		break;
	case C_BLOB:
		r->hdr.type = FTR_REC_BLOB;
		r->hdr.flags = FTR_WF_DATA_CRC;
		r->hdr.seq = 10;
		r->u.blob.len = 1000;
		r->hdr.data_len = 1000;
		fill_pattern(data, 1000, 3);
		break;
	case C_COMMIT:
		r->hdr.type = FTR_REC_COMMIT;
		r->hdr.seq = 10;
		r->u.commit.nchannels = 3;
		r->u.commit.blob_len = 1000;
		r->u.commit.pages = 123456;
		r->u.commit.zero_pages = 789;
		r->u.commit.slot_end = (1ull << 33) + 5;
		r->u.commit.batches[0] = 7;
		r->u.commit.batches[1] = 0;
		r->u.commit.batches[2] = UINT32_MAX;
		break;
	case C_ACK:
		r->hdr.type = FTR_REC_ACK;
		r->hdr.seq = 10;
		break;
	case C_CREDIT:
		r->hdr.type = FTR_REC_CREDIT;
		r->hdr.seq = 3;
		r->u.credit.released = 0x0123456789abcdefull;
		break;
	case C_HEARTBEAT:
		r->hdr.type = FTR_REC_HEARTBEAT;
		r->hdr.seq = 99;
		r->u.heartbeat.time_ns = 123456789012345ull;
		r->u.heartbeat.committed = FTR_EPOCH_NONE;
		r->u.heartbeat.acked = 5;
		break;
	case C_FAULT:
		r->hdr.type = FTR_REC_FAULT_REQ;
		r->hdr.seq = 4;
		r->u.fault.region = 1;
		r->u.fault.count = 5;
		r->u.fault.page[0] = 0;
		r->u.fault.page[1] = 1;
		r->u.fault.page[2] = 2;
		r->u.fault.page[3] = 1023;
		r->u.fault.page[4] = 512;
		break;
	case C_BITMAP_CRC:
		r->hdr.type = FTR_REC_BITMAP;
		r->hdr.flags = FTR_WF_DATA_CRC;
		r->hdr.seq = 6;
		r->u.bitmap.region = 1;
		r->u.bitmap.first_page = 64;
		r->u.bitmap.nbits = 77;
		r->hdr.data_len = 10;
		fill_pattern(data, 10, 4);
		break;
	case C_BITMAP:
		r->hdr.type = FTR_REC_BITMAP;
		r->hdr.seq = 7;
		r->u.bitmap.region = 0;
		r->u.bitmap.first_page = 0;
		r->u.bitmap.nbits = 256;
		r->hdr.data_len = 32;
		fill_pattern(data, 32, 5);
		break;
	case C_ERROR: {
		static const char msg[] = "region 1 size 4194304 does not match 8388608";

		r->hdr.type = FTR_REC_ERROR;
		r->hdr.seq = 2;
		r->u.error.code = FTR_WERR_LAYOUT;
		r->u.error.len = sizeof(msg) - 1;
		memcpy(r->u.error.msg, msg, sizeof(msg));
		break;
	}
	case C_ERROR_MAX:
		r->hdr.type = FTR_REC_ERROR;
		r->hdr.seq = 3;
		r->u.error.code = FTR_WERR_TIMEOUT;
		r->u.error.len = FTR_WIRE_MAX_ERRMSG;
		for (int k = 0; k < FTR_WIRE_MAX_ERRMSG; k++)
			r->u.error.msg[k] = (char)('a' + k % 26);
		r->u.error.msg[FTR_WIRE_MAX_ERRMSG] = '\0';
		break;
	case C_BYE:
		r->hdr.type = FTR_REC_BYE;
		r->hdr.seq = 5;
		r->u.bye.reason = FTR_BYE_SWITCHED;
		break;
	case C_PAGES_FULL:
		r->hdr.type = FTR_REC_PAGES;
		r->hdr.flags = FTR_WF_DIRECT | FTR_WF_DATA_CRC;
		r->hdr.seq = 0;
		r->u.pages.region = 1;
		r->u.pages.count = FTR_WIRE_MAX_BATCH;
		for (uint32_t k = 0; k < FTR_WIRE_MAX_BATCH; k++)
			r->u.pages.ent[k].page = FTR_WIRE_MAX_BATCH - 1 - k;
		r->hdr.data_len = FTR_WIRE_MAX_BATCH * PAGE;
		fill_pattern(data, r->hdr.data_len, 6);
		break;
	default:
		ck_abort_msg("no sample %d", i);
	}
	if (r->hdr.flags & FTR_WF_DATA_CRC)
		r->hdr.data_crc = ref_crc32c(0, data, r->hdr.data_len);
}

/* body_len as the header comment specifies it, computed independently. */
static uint32_t spec_body_len(const struct ftr_rec *r)
{
	switch (r->hdr.type) {
	case FTR_REC_HELLO:
		return 64 + 48 * r->u.hello.nregions;
	case FTR_REC_PAGES:
		return 8 + 16 * r->u.pages.count;
	case FTR_REC_ZERO_PAGES:
		return 8 + 16 * r->u.zero.count;
	case FTR_REC_BLOB:
		return 8;
	case FTR_REC_COMMIT:
		return 32 + 4 * r->u.commit.nchannels;
	case FTR_REC_ACK:
		return 0;
	case FTR_REC_CREDIT:
		return 8;
	case FTR_REC_HEARTBEAT:
		return 24;
	case FTR_REC_FAULT_REQ:
		return 8 + 8 * r->u.fault.count;
	case FTR_REC_BITMAP:
		return 24;
	case FTR_REC_ERROR:
		return 8 + r->u.error.len;
	case FTR_REC_BYE:
		return 8;
	}
	ck_abort_msg("type %u", r->hdr.type);
	return 0;
}

/* Encodes sample i into buf followed by its data part. Returns the record's
 * total length; *hb gets header + body length. g_rec holds the sample. */
static size_t build(int i, uint8_t *buf, size_t *hb)
{
	ssize_t n;

	make_case(i, g_rec, g_data);
	n = ftr_wire_encode(buf, BUFCAP, g_rec);
	ck_assert_msg(n == (ssize_t)(HDR + spec_body_len(g_rec)), "%s: encode returned %zd, want %u",
		      case_names[i], n, HDR + spec_body_len(g_rec));
	memcpy(buf + n, g_data, g_rec->hdr.data_len);
	if (hb)
		*hb = (size_t)n;
	return (size_t)n + g_rec->hdr.data_len;
}

/* ---- comparing records --------------------------------------------------- */

#define EQ(f)                                                                          \
	ck_assert_msg(e->f == g->f, "%s: " #f " (k=%u): want %" PRIu64 ", got %" PRIu64, what, \
		      k, (uint64_t)e->f, (uint64_t)g->f)

/* Every header and body field of decoded g against the encoded e. */
static void check_same(const struct ftr_rec *e, const struct ftr_rec *g, const char *what)
{
	unsigned k = 0;

	ck_assert_msg(g->hdr.magic == FTR_WIRE_MAGIC, "%s: magic %#x", what, g->hdr.magic);
	ck_assert_msg(g->hdr.version == FTR_WIRE_VERSION, "%s: version %u", what, g->hdr.version);
	EQ(hdr.type);
	EQ(hdr.flags);
	EQ(hdr.data_len);
	EQ(hdr.data_crc);
	EQ(hdr.seq);
	ck_assert_msg(g->hdr.body_len == spec_body_len(e), "%s: body_len %u, want %u", what,
		      g->hdr.body_len, spec_body_len(e));
	ck_assert_msg(g->hdr.reserved == 0, "%s: reserved %u", what, g->hdr.reserved);

	switch (e->hdr.type) {
	case FTR_REC_HELLO:
		ck_assert_msg(!memcmp(e->u.hello.session, g->u.hello.session, 16), "%s: session", what);
		EQ(u.hello.generation);
		EQ(u.hello.features);
		EQ(u.hello.page_size);
		EQ(u.hello.role);
		EQ(u.hello.channel);
		EQ(u.hello.nchannels);
		EQ(u.hello.staging_slots);
		EQ(u.hello.nregions);
		EQ(u.hello.last_committed);
		EQ(u.hello.cache_size);
		for (k = 0; k < e->u.hello.nregions; k++) {
			EQ(u.hello.regions[k].id);
			EQ(u.hello.regions[k].flags);
			EQ(u.hello.regions[k].size);
			ck_assert_msg(memchr(g->u.hello.regions[k].name, 0, FTR_WIRE_REGION_NAME),
				      "%s: region %u name not terminated", what, k);
			ck_assert_msg(!strcmp(e->u.hello.regions[k].name, g->u.hello.regions[k].name),
				      "%s: region %u name \"%s\", want \"%s\"", what, k,
				      g->u.hello.regions[k].name, e->u.hello.regions[k].name);
		}
		break;
	case FTR_REC_PAGES:
		EQ(u.pages.region);
		EQ(u.pages.count);
		for (k = 0; k < e->u.pages.count; k++) {
			EQ(u.pages.ent[k].page);
			EQ(u.pages.ent[k].pos);
		}
		break;
	case FTR_REC_ZERO_PAGES:
		EQ(u.zero.region);
		EQ(u.zero.count);
		for (k = 0; k < e->u.zero.count; k++) {
			EQ(u.zero.ent[k].page);
			EQ(u.zero.ent[k].fill);
		}
		break;
	case FTR_REC_BLOB:
		EQ(u.blob.len);
		break;
	case FTR_REC_COMMIT:
		EQ(u.commit.nchannels);
		EQ(u.commit.blob_len);
		EQ(u.commit.pages);
		EQ(u.commit.zero_pages);
		EQ(u.commit.slot_end);
		for (k = 0; k < e->u.commit.nchannels; k++)
			EQ(u.commit.batches[k]);
		break;
	case FTR_REC_ACK:
		break;
	case FTR_REC_CREDIT:
		EQ(u.credit.released);
		break;
	case FTR_REC_HEARTBEAT:
		EQ(u.heartbeat.time_ns);
		EQ(u.heartbeat.committed);
		EQ(u.heartbeat.acked);
		break;
	case FTR_REC_FAULT_REQ:
		EQ(u.fault.region);
		EQ(u.fault.count);
		for (k = 0; k < e->u.fault.count; k++)
			EQ(u.fault.page[k]);
		break;
	case FTR_REC_BITMAP:
		EQ(u.bitmap.region);
		EQ(u.bitmap.first_page);
		EQ(u.bitmap.nbits);
		break;
	case FTR_REC_ERROR:
		ck_assert_msg(e->u.error.code == g->u.error.code, "%s: error code %d, want %d", what,
			      g->u.error.code, e->u.error.code);
		EQ(u.error.len);
		ck_assert_msg(!memcmp(e->u.error.msg, g->u.error.msg, e->u.error.len), "%s: msg", what);
		ck_assert_msg(g->u.error.msg[e->u.error.len] == '\0', "%s: msg not terminated", what);
		break;
	case FTR_REC_BYE:
		EQ(u.bye.reason);
		break;
	default:
		ck_abort_msg("%s: type %u", what, e->hdr.type);
	}
}

/* ---- decoding helpers ---------------------------------------------------- */

static void err_prep(struct ftr_wire_error *err)
{
	memset(err, 0xA5, sizeof(*err));
}

static const char *reject_name(unsigned code)
{
	return code <= FTR_WIRE_BAD_FIELD ? ftr_wire_strerror(code) : "(garbage)";
}

/* A filled-in rejection: class set, one non-empty, terminated line. */
static void err_check(const struct ftr_wire_error *err, const char *what)
{
	ck_assert_msg((unsigned)err->code >= FTR_WIRE_TRUNCATED && (unsigned)err->code <= FTR_WIRE_BAD_FIELD,
		      "%s: err->code %u not a rejection class", what, (unsigned)err->code);
	ck_assert_msg(memchr(err->msg, 0, sizeof(err->msg)), "%s: err->msg not terminated", what);
	ck_assert_msg(err->msg[0] != '\0', "%s: err->msg empty", what);
	ck_assert_msg(!strchr(err->msg, '\n'), "%s: err->msg \"%s\" not one line", what, err->msg);
}

/* Splits data into 4 iovecs (one empty) and checks it. */
static int check_data_split(const struct ftr_wire_hdr *hdr, const uint8_t *data, size_t len,
			    struct ftr_wire_error *err)
{
	size_t a = len / 3, b = len - len / 4;
	struct iovec iov[4] = {
		{ .iov_base = (void *)data, .iov_len = a },
		{ .iov_base = (void *)(data + a), .iov_len = 0 },
		{ .iov_base = (void *)(data + a), .iov_len = b - a },
		{ .iov_base = (void *)(data + b), .iov_len = len - b },
	};

	return ftr_wire_check_data(hdr, iov, 4, err);
}

/* The streaming path over a complete record in buf[0..len): the header and
 * the body are copied into buffers of exactly their size. Returns 0 when
 * every step accepts, -EPROTO (with *err) at the first rejection, 1 when
 * buf is too short for a later step. */
static int stream_decode(const uint8_t *buf, size_t len, const struct ftr_wire_limits *lim,
			 struct ftr_rec *o, struct ftr_wire_error *err)
{
	uint8_t hb[HDR];
	struct ftr_wire_hdr hdr;
	uint8_t *body;
	int ret;

	if (len < HDR)
		return 1;
	memcpy(hb, buf, HDR);
	memset(&hdr, 0x5a, sizeof(hdr));
	err_prep(err);
	ret = ftr_wire_decode_hdr(hb, &hdr, err);
	if (ret)
		return ret;
	if (len - HDR < hdr.body_len)
		return 1;
	body = malloc(hdr.body_len ? hdr.body_len : 1);
	ck_assert_ptr_nonnull(body);
	memcpy(body, buf + HDR, hdr.body_len);
	err_prep(err);
	ret = ftr_wire_decode_body(hb, &hdr, body, lim, o, err);
	free(body);
	if (ret)
		return ret;
	if (len - HDR - hdr.body_len < hdr.data_len)
		return 1;
	err_prep(err);
	return check_data_split(&hdr, buf + HDR + hdr.body_len, hdr.data_len, err);
}

/* buf[0..len) must be rejected with a class in mask by ftr_wire_decode and,
 * when stream is set, by the first rejecting step of the streaming path. */
static void expect_reject_mask(const char *what, const uint8_t *buf, size_t len,
			       const struct ftr_wire_limits *lim, unsigned mask, bool stream)
{
	struct ftr_wire_error err;
	const void *dp = NULL;
	ssize_t n;
	int ret;

	err_prep(&err);
	n = ftr_wire_decode(buf, len, lim, g_out, &dp, &err);
	ck_assert_msg(n == -EPROTO, "%s: ftr_wire_decode returned %zd, want -EPROTO", what, n);
	err_check(&err, what);
	ck_assert_msg(mask & REJ(err.code), "%s: ftr_wire_decode rejected as %u (%s: %s)", what,
		      (unsigned)err.code, reject_name(err.code), err.msg);
	if (!stream)
		return;
	ret = stream_decode(buf, len, lim, g_out, &err);
	ck_assert_msg(ret != 1, "%s: record incomplete for the streaming path", what);
	ck_assert_msg(ret == -EPROTO, "%s: streaming path returned %d, want -EPROTO", what, ret);
	err_check(&err, what);
	ck_assert_msg(mask & REJ(err.code), "%s: streaming path rejected as %u (%s: %s)", what,
		      (unsigned)err.code, reject_name(err.code), err.msg);
}

static void expect_reject(const char *what, const uint8_t *buf, size_t len,
			  const struct ftr_wire_limits *lim, enum ftr_wire_reject code)
{
	expect_reject_mask(what, buf, len, lim, REJ(code), true);
}

/* buf[0..len) is exactly one record both paths accept. */
static void expect_accept(const char *what, const uint8_t *buf, size_t len,
			  const struct ftr_wire_limits *lim)
{
	struct ftr_wire_error err;
	const void *dp = NULL;
	ssize_t n;
	int ret;

	err_prep(&err);
	n = ftr_wire_decode(buf, len, lim, g_out, &dp, &err);
	ck_assert_msg(n == (ssize_t)len, "%s: ftr_wire_decode returned %zd (%s), want %zu", what, n,
		      n < 0 ? err.msg : "", len);
	ret = stream_decode(buf, len, lim, g_out, &err);
	ck_assert_msg(ret == 0, "%s: streaming path returned %d (%s)", what, ret, ret ? err.msg : "");
}

/* Moves the data part so the body becomes newlen bytes (new bytes zero);
 * updates body_len and the CRC. Returns the new total length. */
static size_t resize_body(uint8_t *buf, size_t total, uint32_t newlen)
{
	uint32_t oldlen = get32(buf + 12);
	size_t dlen = total - HDR - oldlen;

	memmove(buf + HDR + newlen, buf + HDR + oldlen, dlen);
	if (newlen > oldlen)
		memset(buf + HDR + oldlen, 0, newlen - oldlen);
	put32(buf + 12, newlen);
	fix_crc(buf);
	return HDR + newlen + dlen;
}

/* Sets data_len to newlen (appending pattern bytes if it grows). */
static size_t resize_data(uint8_t *buf, size_t total, uint32_t newlen)
{
	size_t off = HDR + get32(buf + 12);

	if (off + newlen > total)
		fill_pattern(buf + total, off + newlen - total, 9);
	put32(buf + 16, newlen);
	fix_crc(buf);
	return off + newlen;
}

/* ---- round trips ---------------------------------------------------------- */

START_TEST(test_roundtrip_whole)
{
	const struct ftr_wire_limits *lims[2] = { NULL, &g_lim };
	struct ftr_wire_error err;
	size_t hb, total;
	const void *dp;
	ssize_t n, n2;
	char what[128];

	for (int l = 0; l < 2; l++) {
		snprintf(what, sizeof(what), "%s, %s limits", case_names[_i], l ? "with" : "no");
		total = build(_i, g_buf, &hb);
		/* trailing bytes of a next record are not consumed */
		memset(g_buf + total, 0xAB, 16);
		err_prep(&err);
		dp = NULL;
		memset(g_out, 0x5a, sizeof(*g_out));
		n = ftr_wire_decode(g_buf, total + 16, lims[l], g_out, &dp, &err);
		ck_assert_msg(n == (ssize_t)total, "%s: decode returned %zd (%s), want %zu", what, n,
			      n < 0 ? err.msg : "", total);
		if (g_rec->hdr.data_len) {
			ck_assert_msg(dp == g_buf + hb, "%s: data pointer %p, want %p", what, dp,
				      (void *)(g_buf + hb));
		}
		check_same(g_rec, g_out, what);
		ck_assert_uint_eq(g_out->hdr.crc, get32(g_buf + 32));

		/* exactly the record, no spare byte */
		n = ftr_wire_decode(g_buf, total, lims[l], g_out, &dp, &err);
		ck_assert_int_eq(n, (ssize_t)total);

		/* the decoded record encodes to the same bytes */
		n2 = ftr_wire_encode(g_buf2, BUFCAP, g_out);
		ck_assert_int_eq(n2, (ssize_t)hb);
		ck_assert_msg(!memcmp(g_buf, g_buf2, hb), "%s: re-encoded bytes differ", what);
	}
}
END_TEST

START_TEST(test_roundtrip_stream)
{
	const struct ftr_wire_limits *lims[2] = { NULL, &g_lim };
	struct ftr_wire_error err;
	struct ftr_wire_hdr hdr;
	uint8_t hbuf[HDR];
	uint8_t *body;
	size_t hb, total;
	char what[128];
	int ret;

	for (int l = 0; l < 2; l++) {
		snprintf(what, sizeof(what), "%s, %s limits (stream)", case_names[_i], l ? "with" : "no");
		total = build(_i, g_buf, &hb);
		memcpy(hbuf, g_buf, HDR);
		memset(&hdr, 0x5a, sizeof(hdr));
		err_prep(&err);
		ret = ftr_wire_decode_hdr(hbuf, &hdr, &err);
		ck_assert_msg(ret == 0, "%s: decode_hdr %d (%s)", what, ret, ret ? err.msg : "");
		ck_assert_uint_eq(hdr.magic, FTR_WIRE_MAGIC);
		ck_assert_uint_eq(hdr.version, FTR_WIRE_VERSION);
		ck_assert_uint_eq(hdr.type, g_rec->hdr.type);
		ck_assert_uint_eq(hdr.flags, g_rec->hdr.flags);
		ck_assert_uint_eq(hdr.body_len, hb - HDR);
		ck_assert_uint_eq(hdr.data_len, g_rec->hdr.data_len);
		ck_assert_uint_eq(hdr.data_crc, g_rec->hdr.data_crc);
		ck_assert_uint_eq(hdr.seq, g_rec->hdr.seq);
		ck_assert_uint_eq(hdr.crc, get32(g_buf + 32));
		ck_assert_uint_eq(hdr.reserved, 0);

		body = malloc(hdr.body_len ? hdr.body_len : 1);
		ck_assert_ptr_nonnull(body);
		memcpy(body, g_buf + HDR, hdr.body_len);
		memset(g_out, 0x5a, sizeof(*g_out));
		err_prep(&err);
		ret = ftr_wire_decode_body(hbuf, &hdr, body, lims[l], g_out, &err);
		free(body);
		ck_assert_msg(ret == 0, "%s: decode_body %d (%s)", what, ret, ret ? err.msg : "");
		check_same(g_rec, g_out, what);
		ck_assert_uint_eq(g_out->hdr.crc, hdr.crc);

		err_prep(&err);
		ret = check_data_split(&hdr, g_buf + hb, total - hb, &err);
		ck_assert_msg(ret == 0, "%s: check_data %d (%s)", what, ret, ret ? err.msg : "");
		/* one iovec, and (when the data is empty) none at all */
		{
			struct iovec iov = { .iov_base = g_buf + hb, .iov_len = total - hb };

			ck_assert_int_eq(ftr_wire_check_data(&hdr, &iov, 1, &err), 0);
			if (total == hb)
				ck_assert_int_eq(ftr_wire_check_data(&hdr, NULL, 0, &err), 0);
		}
	}
}
END_TEST

/* Bytes at the offsets wire.h documents, for every sample. */
START_TEST(test_layout)
{
	size_t hb;
	const struct ftr_rec *r = g_rec;
	const uint8_t *b = g_buf, *p = g_buf + HDR;
	uint32_t crc;

	build(_i, g_buf, &hb);
	ck_assert(!memcmp(b, "FTR1", 4));
	ck_assert_uint_eq(get32(b), FTR_WIRE_MAGIC);
	ck_assert_uint_eq(get16(b + 4), FTR_WIRE_VERSION);
	ck_assert_uint_eq(get16(b + 6), r->hdr.type);
	ck_assert_uint_eq(get32(b + 8), r->hdr.flags);
	ck_assert_uint_eq(get32(b + 12), spec_body_len(r));
	ck_assert_uint_eq(get32(b + 16), r->hdr.data_len);
	ck_assert_uint_eq(get32(b + 20), r->hdr.data_crc);
	ck_assert_uint_eq(get64(b + 24), r->hdr.seq);
	crc = ref_crc32c(ref_crc32c(0, b, 32), p, spec_body_len(r));
	ck_assert_msg(get32(b + 32) == crc, "%s: header CRC %#x, want %#x", case_names[_i],
		      get32(b + 32), crc);
	ck_assert_uint_eq(get32(b + 36), 0);

	switch (r->hdr.type) {
	case FTR_REC_HELLO: {
		const struct ftr_hello *h = &r->u.hello;

		ck_assert(!memcmp(p, h->session, 16));
		ck_assert_uint_eq(get64(p + 16), h->generation);
		ck_assert_uint_eq(get64(p + 24), h->features);
		ck_assert_uint_eq(get32(p + 32), h->page_size);
		ck_assert_uint_eq(p[36], h->role);
		ck_assert_uint_eq(p[37], h->channel);
		ck_assert_uint_eq(p[38], h->nchannels);
		ck_assert_uint_eq(p[39], 0);
		ck_assert_uint_eq(get32(p + 40), h->staging_slots);
		ck_assert_uint_eq(get32(p + 44), h->nregions);
		ck_assert_uint_eq(get64(p + 48), h->last_committed);
		ck_assert_uint_eq(get64(p + 56), h->cache_size);
		for (uint32_t k = 0; k < h->nregions; k++) {
			const uint8_t *q = p + 64 + 48 * k;
			char name[FTR_WIRE_REGION_NAME] = { 0 };

			strcpy(name, h->regions[k].name);
			ck_assert_uint_eq(get32(q), k);
			ck_assert_uint_eq(get32(q + 4), 0);
			ck_assert_uint_eq(get64(q + 8), h->regions[k].size);
			ck_assert_uint_eq(get64(q + 16), 0);
			ck_assert_msg(!memcmp(q + 24, name, sizeof(name)),
				      "region %u name not NUL-padded at 24", k);
		}
		break;
	}
	case FTR_REC_PAGES:
		ck_assert_uint_eq(get32(p), r->u.pages.region);
		ck_assert_uint_eq(get32(p + 4), r->u.pages.count);
		for (uint32_t k = 0; k < r->u.pages.count; k++) {
			ck_assert_uint_eq(get64(p + 8 + 16 * k), r->u.pages.ent[k].page);
			ck_assert_uint_eq(get64(p + 16 + 16 * k), r->u.pages.ent[k].pos);
		}
		break;
	case FTR_REC_ZERO_PAGES:
		ck_assert_uint_eq(get32(p), r->u.zero.region);
		ck_assert_uint_eq(get32(p + 4), r->u.zero.count);
		for (uint32_t k = 0; k < r->u.zero.count; k++) {
			const uint8_t *q = p + 8 + 16 * k;

			ck_assert_uint_eq(get64(q), r->u.zero.ent[k].page);
			ck_assert_uint_eq(q[8], r->u.zero.ent[k].fill);
			for (int z = 9; z < 16; z++)
				ck_assert_uint_eq(q[z], 0);
		}
		break;
	case FTR_REC_BLOB:
		ck_assert_uint_eq(get32(p), r->u.blob.len);
		ck_assert_uint_eq(get32(p + 4), 0);
		break;
	case FTR_REC_COMMIT:
		ck_assert_uint_eq(get32(p), r->u.commit.nchannels);
		ck_assert_uint_eq(get32(p + 4), r->u.commit.blob_len);
		ck_assert_uint_eq(get64(p + 8), r->u.commit.pages);
		ck_assert_uint_eq(get64(p + 16), r->u.commit.zero_pages);
		ck_assert_uint_eq(get64(p + 24), r->u.commit.slot_end);
		for (uint32_t k = 0; k < r->u.commit.nchannels; k++)
			ck_assert_uint_eq(get32(p + 32 + 4 * k), r->u.commit.batches[k]);
		break;
	case FTR_REC_ACK:
		break;
	case FTR_REC_CREDIT:
		ck_assert_uint_eq(get64(p), r->u.credit.released);
		break;
	case FTR_REC_HEARTBEAT:
		ck_assert_uint_eq(get64(p), r->u.heartbeat.time_ns);
		ck_assert_uint_eq(get64(p + 8), r->u.heartbeat.committed);
		ck_assert_uint_eq(get64(p + 16), r->u.heartbeat.acked);
		break;
	case FTR_REC_FAULT_REQ:
		ck_assert_uint_eq(get32(p), r->u.fault.region);
		ck_assert_uint_eq(get32(p + 4), r->u.fault.count);
		for (uint32_t k = 0; k < r->u.fault.count; k++)
			ck_assert_uint_eq(get64(p + 8 + 8 * k), r->u.fault.page[k]);
		break;
	case FTR_REC_BITMAP:
		ck_assert_uint_eq(get32(p), r->u.bitmap.region);
		ck_assert_uint_eq(get32(p + 4), 0);
		ck_assert_uint_eq(get64(p + 8), r->u.bitmap.first_page);
		ck_assert_uint_eq(get64(p + 16), r->u.bitmap.nbits);
		break;
	case FTR_REC_ERROR:
		ck_assert_uint_eq(get32(p), (uint32_t)r->u.error.code);
		ck_assert_uint_eq(get32(p + 4), r->u.error.len);
		ck_assert(!memcmp(p + 8, r->u.error.msg, r->u.error.len));
		break;
	case FTR_REC_BYE:
		ck_assert_uint_eq(get32(p), r->u.bye.reason);
		ck_assert_uint_eq(get32(p + 4), 0);
		break;
	}
}
END_TEST

/* A CREDIT, byte by byte. */
START_TEST(test_layout_credit_bytes)
{
	static const uint8_t want_hdr[32] = {
		'F', 'T', 'R', '1',		/* magic */
		1, 0,				/* version */
		7, 0,				/* type CREDIT */
		0, 0, 0, 0,			/* flags */
		8, 0, 0, 0,			/* body_len */
		0, 0, 0, 0,			/* data_len */
		0, 0, 0, 0,			/* data_crc */
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* seq */
	};
	static const uint8_t want_body[8] = { 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11 };
	uint8_t buf[64];
	uint32_t crc;
	ssize_t n;

	memset(g_rec, 0, sizeof(*g_rec));
	g_rec->hdr.type = FTR_REC_CREDIT;
	g_rec->hdr.seq = 0x0102030405060708ull;
	g_rec->u.credit.released = 0x1122334455667788ull;
	memset(buf, 0xEE, sizeof(buf));
	n = ftr_wire_encode(buf, sizeof(buf), g_rec);
	ck_assert_int_eq(n, 48);
	ck_assert(!memcmp(buf, want_hdr, 32));
	crc = ref_crc32c(ref_crc32c(0, want_hdr, 32), want_body, 8);
	ck_assert_uint_eq(buf[32], crc & 0xff);
	ck_assert_uint_eq(buf[33], (crc >> 8) & 0xff);
	ck_assert_uint_eq(buf[34], (crc >> 16) & 0xff);
	ck_assert_uint_eq(buf[35], crc >> 24);
	for (int k = 36; k < 40; k++)
		ck_assert_uint_eq(buf[k], 0);
	ck_assert(!memcmp(buf + 40, want_body, 8));
	for (int k = 48; k < 64; k++)
		ck_assert_msg(buf[k] == 0xEE, "encode wrote byte %d past the record", k);
}
END_TEST

/* All samples back to back in one buffer, decoded one after another. */
START_TEST(test_stream_of_records)
{
	size_t off = 0, ends[NCASES];
	struct ftr_wire_error err;
	const void *dp;

	for (int i = 0; i < NCASES; i++) {
		if (i == C_PAGES_FULL)
			continue;
		off += build(i, g_buf + off, NULL);
		ends[i] = off;
	}
	for (size_t pos = 0, i = 0; i < NCASES; i++) {
		ssize_t n;

		if (i == C_PAGES_FULL)
			continue;
		n = ftr_wire_decode(g_buf + pos, off - pos, &g_lim, g_out, &dp, &err);
		ck_assert_msg(n > 0, "record %zu: %zd (%s)", i, n, n < 0 ? err.msg : "");
		pos += (size_t)n;
		ck_assert_uint_eq(pos, ends[i]);
		make_case((int)i, g_rec, g_data);
		check_same(g_rec, g_out, case_names[i]);
	}
}
END_TEST

/* ---- rejections ----------------------------------------------------------- */

/* Every proper prefix of a valid record is TRUNCATED. */
START_TEST(test_truncated)
{
	size_t hb, total;
	char what[128];
	struct ftr_wire_error err;
	const void *dp;
	ssize_t n;

	total = build(_i, g_buf, &hb);
	for (size_t len = 0; len < total; len++) {
		/* the full batch's 4 MiB data part: every prefix up to the
		 * body's end + 64, then one length per 4093 and the last */
		if (total > 65536 && len > hb + 64 && len % 4093 && len != total - 1)
			continue;
		snprintf(what, sizeof(what), "%s cut to %zu of %zu", case_names[_i], len, total);
		err_prep(&err);
		n = ftr_wire_decode(g_buf, len, NULL, g_out, &dp, &err);
		ck_assert_msg(n == -EPROTO, "%s: returned %zd", what, n);
		err_check(&err, what);
		ck_assert_msg(err.code == FTR_WIRE_TRUNCATED, "%s: rejected as %s (%s)", what,
			      reject_name(err.code), err.msg);
		err_prep(&err);
		n = ftr_wire_decode(g_buf, len, &g_lim, g_out, &dp, &err);
		ck_assert_msg(n == -EPROTO && err.code == FTR_WIRE_TRUNCATED,
			      "%s (limits): %zd %s", what, n, err.msg);
	}
}
END_TEST

START_TEST(test_oversized_body_len)
{
	size_t len = HDR + FTR_WIRE_MAX_BODY + 1;
	uint8_t *buf = calloc(1, len);
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;

	ck_assert_ptr_nonnull(buf);
	build(C_PAGES, g_buf, NULL);
	memcpy(buf, g_buf, HDR);
	put32(buf + 12, FTR_WIRE_MAX_BODY + 1);
	put32(buf + 16, 0);
	put32(buf + 40, 0);
	put32(buf + 44, 1);
	fix_crc(buf);
	err_prep(&err);
	ck_assert_int_eq(ftr_wire_decode_hdr(buf, &hdr, &err), -EPROTO);
	err_check(&err, "body_len over the limit (decode_hdr)");
	ck_assert_msg(err.code == FTR_WIRE_OVERSIZED, "decode_hdr: %s (%s)", reject_name(err.code),
		      err.msg);
	expect_reject("body_len over the limit", buf, len, NULL, FTR_WIRE_OVERSIZED);

	/* body_len 4 GiB - 1 with only the header at hand: the header
	 * alone says it, a streaming reader must not wait for the body */
	put32(buf + 12, UINT32_MAX);
	err_prep(&err);
	ck_assert_int_eq(ftr_wire_decode_hdr(buf, &hdr, &err), -EPROTO);
	ck_assert_msg(err.code == FTR_WIRE_OVERSIZED, "decode_hdr: %s", reject_name(err.code));
	free(buf);
}
END_TEST

START_TEST(test_oversized_data_len)
{
	size_t hb, len;
	uint8_t *buf;
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;

	build(C_PAGES, g_buf, &hb);
	len = hb + FTR_WIRE_MAX_DATA + 1;
	buf = calloc(1, len);
	ck_assert_ptr_nonnull(buf);
	memcpy(buf, g_buf, hb);
	put32(buf + 16, FTR_WIRE_MAX_DATA + 1);
	fix_crc(buf);
	err_prep(&err);
	ck_assert_int_eq(ftr_wire_decode_hdr(buf, &hdr, &err), -EPROTO);
	err_check(&err, "data_len over the limit (decode_hdr)");
	ck_assert_msg(err.code == FTR_WIRE_OVERSIZED, "decode_hdr: %s (%s)", reject_name(err.code),
		      err.msg);
	expect_reject("data_len over the limit", buf, len, NULL, FTR_WIRE_OVERSIZED);
	put32(buf + 16, UINT32_MAX);
	err_prep(&err);
	ck_assert_int_eq(ftr_wire_decode_hdr(buf, &hdr, &err), -EPROTO);
	ck_assert_msg(err.code == FTR_WIRE_OVERSIZED, "decode_hdr: %s", reject_name(err.code));
	free(buf);
}
END_TEST

/* PAGES with 1025 entries, written by hand, with a valid CRC. */
START_TEST(test_oversized_pages_count)
{
	uint32_t count = FTR_WIRE_MAX_BATCH + 1;
	uint32_t body_len = 8 + 16 * count, data_len = count * PAGE;
	size_t len = HDR + body_len + (size_t)data_len;
	uint8_t *buf = calloc(1, len);

	ck_assert_ptr_nonnull(buf);
	memcpy(buf, "FTR1", 4);
	put16(buf + 4, FTR_WIRE_VERSION);
	put16(buf + 6, FTR_REC_PAGES);
	put32(buf + 8, FTR_WF_DIRECT);
	put32(buf + 12, body_len);
	put32(buf + 16, data_len);
	put64(buf + 24, 1);
	put32(buf + 40, 1);
	put32(buf + 44, count);
	for (uint32_t k = 0; k < count; k++)
		put64(buf + 48 + 16 * k, k);
	fix_crc(buf);
	expect_reject("PAGES count 1025", buf, len, NULL, FTR_WIRE_OVERSIZED);
	/* the same, one entry less, is fine */
	put32(buf + 44, count - 1);
	put32(buf + 12, body_len - 16);
	put32(buf + 16, data_len - PAGE);
	fix_crc(buf);
	expect_accept("PAGES count 1024", buf, len - 16 - PAGE, NULL);
	free(buf);
}
END_TEST

/* Other counts over their limits, and lengths that would need them. */
START_TEST(test_oversized_counts)
{
	size_t total;
	unsigned big = REJ(FTR_WIRE_OVERSIZED) | REJ(FTR_WIRE_OUT_OF_RANGE) | REJ(FTR_WIRE_BAD_LENGTH);

	total = build(C_ZERO, g_buf, NULL);
	put32(g_buf + 44, FTR_WIRE_MAX_BATCH + 1);
	total = resize_body(g_buf, total, 8 + 16 * (FTR_WIRE_MAX_BATCH + 1));
	expect_reject("ZERO_PAGES count 1025", g_buf, total, NULL, FTR_WIRE_OVERSIZED);

	total = build(C_FAULT, g_buf, NULL);
	put32(g_buf + 44, FTR_WIRE_MAX_FAULT + 1);
	total = resize_body(g_buf, total, 8 + 8 * (FTR_WIRE_MAX_FAULT + 1));
	expect_reject("FAULT_REQ count 257", g_buf, total, NULL, FTR_WIRE_OVERSIZED);

	total = build(C_ERROR_MAX, g_buf, NULL);
	put32(g_buf + 44, FTR_WIRE_MAX_ERRMSG + 1);
	total = resize_body(g_buf, total, 8 + FTR_WIRE_MAX_ERRMSG + 1);
	g_buf[HDR + 8 + FTR_WIRE_MAX_ERRMSG] = 'x';
	fix_crc(g_buf);
	expect_reject_mask("ERROR len 1025", g_buf, total, NULL, big, true);

	total = build(C_HELLO, g_buf, NULL);
	put32(g_buf + HDR + 44, FTR_WIRE_MAX_REGIONS + 1);
	total = resize_body(g_buf, total, 64 + 48 * (FTR_WIRE_MAX_REGIONS + 1));
	for (uint32_t k = 3; k <= FTR_WIRE_MAX_REGIONS; k++) {
		uint8_t *q = g_buf + HDR + 64 + 48 * k;

		put32(q, k);
		put64(q + 8, PAGE);
		q[24] = 'r';
	}
	fix_crc(g_buf);
	expect_reject_mask("HELLO nregions 65", g_buf, total, NULL, big, true);
}
END_TEST

START_TEST(test_oversized_blob)
{
	size_t hb, len;
	uint8_t *buf;

	build(C_BLOB, g_buf, &hb);
	len = hb + FTR_WIRE_MAX_BLOB + 1;
	buf = calloc(1, len);
	ck_assert_ptr_nonnull(buf);
	memcpy(buf, g_buf, hb);
	put32(buf + 8, 0);
	put32(buf + 16, FTR_WIRE_MAX_BLOB + 1);
	put32(buf + 20, 0);
	put32(buf + HDR, FTR_WIRE_MAX_BLOB + 1);
	fix_crc(buf);
	expect_reject_mask("BLOB len 16 MiB + 1", buf, len, NULL,
			   REJ(FTR_WIRE_OVERSIZED) | REJ(FTR_WIRE_OUT_OF_RANGE) | REJ(FTR_WIRE_BAD_LENGTH),
			   true);
	/* exactly 16 MiB is a valid blob */
	put32(buf + 16, FTR_WIRE_MAX_BLOB);
	put32(buf + HDR, FTR_WIRE_MAX_BLOB);
	fix_crc(buf);
	expect_accept("BLOB len 16 MiB", buf, len - 1, NULL);
	free(buf);
}
END_TEST

START_TEST(test_bad_magic)
{
	static const char *const magics[] = { "FTR2", "1RTF", "ftr1", "\0\0\0\0" };
	size_t total;
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;

	for (size_t m = 0; m < ARRAY_SIZE(magics); m++) {
		for (int fix = 0; fix < 2; fix++) {
			total = build(C_CREDIT, g_buf, NULL);
			memcpy(g_buf, magics[m], 4);
			if (fix)
				fix_crc(g_buf);
			expect_reject("bad magic", g_buf, total, NULL, FTR_WIRE_BAD_MAGIC);
			err_prep(&err);
			ck_assert_int_eq(ftr_wire_decode_hdr(g_buf, &hdr, &err), -EPROTO);
			ck_assert_int_eq(err.code, FTR_WIRE_BAD_MAGIC);
		}
	}
	/* a magic alone, before the rest arrives, is enough to reject */
	build(C_CREDIT, g_buf, NULL);
	g_buf[0] = 'X';
	expect_reject_mask("bad magic, 4 bytes", g_buf, 4, NULL,
			   REJ(FTR_WIRE_BAD_MAGIC) | REJ(FTR_WIRE_TRUNCATED), false);
}
END_TEST

START_TEST(test_bad_version)
{
	static const uint16_t versions[] = { 0, 2, 0x100, 0xffff };
	size_t total;
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;

	for (size_t v = 0; v < ARRAY_SIZE(versions); v++) {
		total = build(C_HEARTBEAT, g_buf, NULL);
		put16(g_buf + 4, versions[v]);
		fix_crc(g_buf);
		expect_reject("bad version", g_buf, total, NULL, FTR_WIRE_BAD_VERSION);
		err_prep(&err);
		ck_assert_int_eq(ftr_wire_decode_hdr(g_buf, &hdr, &err), -EPROTO);
		ck_assert_int_eq(err.code, FTR_WIRE_BAD_VERSION);
	}
}
END_TEST

/* Every bit (every byte, for the full batch) of header and body flipped:
 * always rejected. A flipped body byte is BAD_CRC (the CRC is checked
 * before any body field is looked at); a flipped header byte may be caught
 * first by a header check that needs no body (magic, version, type, flags,
 * lengths, reserved), else by the CRC. */
START_TEST(test_bad_crc_flips)
{
	size_t hb, total;
	char what[160];
	bool bits;

	total = build(_i, g_buf, &hb);
	bits = hb <= 4096;
	for (size_t pos = 0; pos < hb; pos++) {
		for (int bit = 0; bit < (bits ? 8 : 2); bit++) {
			uint8_t mask = bits ? (uint8_t)(1u << bit) : (bit ? 0xff : 0x01);
			unsigned want;

			if (pos < HDR)
				want = ~0u & ~REJ(FTR_WIRE_OK);
			else
				want = REJ(FTR_WIRE_BAD_CRC);
			g_buf[pos] ^= mask;
			snprintf(what, sizeof(what), "%s, byte %zu ^ %#x", case_names[_i], pos, mask);
			/* a changed length may make the streaming path wait
			 * for more bytes: judge only the whole-record decoder */
			expect_reject_mask(what, g_buf, total, NULL, want, pos < 12 || pos >= 20);
			g_buf[pos] ^= mask;
		}
	}
	expect_accept(case_names[_i], g_buf, total, NULL);
	/* the stored CRC off by one */
	put32(g_buf + 32, get32(g_buf + 32) + 1);
	expect_reject("CRC + 1", g_buf, total, NULL, FTR_WIRE_BAD_CRC);
}
END_TEST

/* The header CRC covers the body: a body edit with the old CRC fails. */
START_TEST(test_bad_crc_body)
{
	size_t total = build(C_COMMIT, g_buf, NULL);

	put64(g_buf + HDR + 8, 123457);
	expect_reject("COMMIT pages edited", g_buf, total, NULL, FTR_WIRE_BAD_CRC);
	fix_crc(g_buf);
	expect_accept("COMMIT pages edited, CRC fixed", g_buf, total, NULL);
}
END_TEST

START_TEST(test_bad_data_crc)
{
	static const int cases[] = { C_PAGES_DIRECT, C_BLOB, C_BITMAP_CRC, C_PAGES_FULL };
	size_t hb, total;
	char what[128];
	struct ftr_wire_error err;
	struct ftr_wire_hdr hdr;

	for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
		total = build(cases[c], g_buf, &hb);
		ck_assert_int_eq(ftr_wire_decode_hdr(g_buf, &hdr, &err), 0);
		size_t dl = total - hb, at[] = { 0, dl / 2, dl - 1 };

		for (size_t a = 0; a < ARRAY_SIZE(at); a++) {
			snprintf(what, sizeof(what), "%s, data byte %zu flipped", case_names[cases[c]],
				 at[a]);
			g_buf[hb + at[a]] ^= 0x10;
			expect_reject(what, g_buf, total, NULL, FTR_WIRE_BAD_DATA_CRC);
			err_prep(&err);
			ck_assert_int_eq(check_data_split(&hdr, g_buf + hb, dl, &err), -EPROTO);
			err_check(&err, what);
			ck_assert_int_eq(err.code, FTR_WIRE_BAD_DATA_CRC);
			g_buf[hb + at[a]] ^= 0x10;
		}
		/* the data intact but data_crc wrong (header CRC fixed) */
		put32(g_buf + 20, get32(g_buf + 20) ^ 0x80000000u);
		fix_crc(g_buf);
		expect_reject("data_crc wrong", g_buf, total, NULL, FTR_WIRE_BAD_DATA_CRC);
	}

	/* without FTR_WF_DATA_CRC the data part is not checked */
	total = build(C_PAGES, g_buf, &hb);
	g_buf[hb + 5] ^= 0xff;
	expect_accept("PAGES without data CRC, data damaged", g_buf, total, NULL);
	ck_assert_int_eq(ftr_wire_decode_hdr(g_buf, &hdr, &err), 0);
	ck_assert_int_eq(check_data_split(&hdr, g_buf + hb, total - hb, &err), 0);
}
END_TEST

START_TEST(test_unknown_type)
{
	static const uint16_t types[] = { 0, FTR_REC__MAX + 1, 0x100, 0xffff };
	size_t total;

	for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
		total = build(C_ACK, g_buf, NULL);
		put16(g_buf + 6, types[t]);
		fix_crc(g_buf);
		expect_reject("unknown type, empty body", g_buf, total, NULL, FTR_WIRE_UNKNOWN_TYPE);
		total = build(C_CREDIT, g_buf, NULL);
		put16(g_buf + 6, types[t]);
		fix_crc(g_buf);
		expect_reject("unknown type, 8-byte body", g_buf, total, &g_lim,
			      FTR_WIRE_UNKNOWN_TYPE);
	}
}
END_TEST

static void reflag(int c, uint32_t flags, const char *what, unsigned mask)
{
	size_t total = build(c, g_buf, NULL);

	put32(g_buf + 8, flags);
	fix_crc(g_buf);
	expect_reject_mask(what, g_buf, total, NULL, mask, true);
}

START_TEST(test_bad_flags)
{
	unsigned bf = REJ(FTR_WIRE_BAD_FLAGS);
	unsigned loose = bf | REJ(FTR_WIRE_BAD_FIELD) | REJ(FTR_WIRE_BAD_LENGTH);

	reflag(C_CREDIT, 1u << 3, "CREDIT unknown flag 1<<3", bf);
	reflag(C_CREDIT, 1u << 31, "CREDIT unknown flag 1<<31", bf);
	reflag(C_PAGES, FTR_WF_DIRECT | (1u << 4), "PAGES unknown flag 1<<4", bf);
	reflag(C_PAGES, FTR_WF_REPLY, "REPLY on PAGES", bf);
	reflag(C_COMMIT, FTR_WF_DIRECT, "DIRECT on COMMIT", bf);
	reflag(C_BLOB, FTR_WF_DATA_CRC | FTR_WF_REPLY, "REPLY on BLOB", bf);
	reflag(C_ZERO, FTR_WF_REPLY, "REPLY on ZERO_PAGES", bf);
	reflag(C_HELLO, FTR_WF_DIRECT, "DIRECT on HELLO", bf);
	reflag(C_BITMAP_CRC, FTR_WF_DATA_CRC | FTR_WF_DIRECT, "DIRECT on BITMAP", bf);
	reflag(C_BYE, FTR_WF_REPLY, "REPLY on BYE", bf);
	/* DATA_CRC on a record without data */
	reflag(C_ACK, FTR_WF_DATA_CRC, "DATA_CRC on ACK", loose);
	reflag(C_HELLO, FTR_WF_DATA_CRC, "DATA_CRC on HELLO", loose);
}
END_TEST

START_TEST(test_bad_length)
{
	unsigned bl = REJ(FTR_WIRE_BAD_LENGTH);
	size_t total, hb;

	/* PAGES count 2 with one entry, and with three */
	total = build(C_PAGES, g_buf, NULL);
	total = resize_body(g_buf, total, 8 + 16);
	expect_reject("PAGES count 2, 1 entry", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);
	total = build(C_PAGES, g_buf, NULL);
	total = resize_body(g_buf, total, 8 + 16 * 3);
	expect_reject("PAGES count 2, 3 entries", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);
	/* a body too short to hold the count at all */
	total = build(C_PAGES, g_buf, NULL);
	total = resize_body(g_buf, total, 4);
	expect_reject("PAGES body 4", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_ZERO, g_buf, NULL);
	total = resize_body(g_buf, total, 8 + 16 * 3);
	expect_reject("ZERO_PAGES count 4, 3 entries", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_ACK, g_buf, NULL);
	total = resize_body(g_buf, total, 8);
	expect_reject("ACK body 8", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_CREDIT, g_buf, NULL);
	total = resize_body(g_buf, total, 0);
	expect_reject("CREDIT body 0", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);
	total = build(C_CREDIT, g_buf, NULL);
	total = resize_body(g_buf, total, 16);
	expect_reject("CREDIT body 16", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_HEARTBEAT, g_buf, NULL);
	total = resize_body(g_buf, total, 16);
	expect_reject("HEARTBEAT body 16", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_BYE, g_buf, NULL);
	total = resize_body(g_buf, total, 4);
	expect_reject("BYE body 4", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_BLOB, g_buf, NULL);
	total = resize_body(g_buf, total, 16);
	expect_reject("BLOB body 16", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_BITMAP, g_buf, NULL);
	total = resize_body(g_buf, total, 16);
	expect_reject("BITMAP body 16", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_HELLO, g_buf, NULL);
	total = resize_body(g_buf, total, 64 + 48 * 2);
	expect_reject("HELLO nregions 3, 2 regions", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);
	total = build(C_HELLO, g_buf, NULL);
	total = resize_body(g_buf, total, 64 + 48 * 3 + 8);
	expect_reject("HELLO 3 regions + 8 bytes", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_COMMIT, g_buf, NULL);
	total = resize_body(g_buf, total, 32 + 4 * 2);
	expect_reject("COMMIT nchannels 3, 2 batches", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_FAULT, g_buf, NULL);
	total = resize_body(g_buf, total, 8 + 8 * 4);
	expect_reject("FAULT_REQ count 5, 4 pages", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_ERROR, g_buf, NULL);
	total = resize_body(g_buf, total, get32(g_buf + 12) - 1);
	expect_reject("ERROR len one over the body", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);
	total = build(C_ERROR, g_buf, NULL);
	total = resize_body(g_buf, total, get32(g_buf + 12) + 1);
	g_buf[total - 1] = 'x';
	fix_crc(g_buf);
	expect_reject("ERROR body one over len", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	/* data lengths that disagree with the body */
	total = build(C_BITMAP, g_buf, NULL);
	total = resize_data(g_buf, total, 33);
	expect_reject("BITMAP nbits 256, 33 data bytes", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);
	total = build(C_BITMAP, g_buf, NULL);
	total = resize_data(g_buf, total, 31);
	expect_reject("BITMAP nbits 256, 31 data bytes", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	build(C_BLOB, g_buf, &hb);
	put32(g_buf + 8, 0);
	put32(g_buf + 20, 0);
	total = resize_data(g_buf, hb + 1000, 999);
	expect_reject("BLOB len 1000, data 999", g_buf, total, NULL, FTR_WIRE_BAD_LENGTH);

	total = build(C_PAGES, g_buf, NULL);
	total = resize_data(g_buf, total, 2 * PAGE - 1);
	expect_reject("PAGES 2 pages, data 8191 (limits)", g_buf, total, &g_lim, FTR_WIRE_BAD_LENGTH);
	total = build(C_PAGES, g_buf, NULL);
	total = resize_data(g_buf, total, 3 * PAGE);
	expect_reject("PAGES 2 pages, data 12288 (limits)", g_buf, total, &g_lim, FTR_WIRE_BAD_LENGTH);

	/* a data part on a type that has none */
	total = build(C_ACK, g_buf, NULL);
	total = resize_data(g_buf, total, 4);
	expect_reject_mask("ACK with 4 data bytes", g_buf, total, NULL,
			   bl | REJ(FTR_WIRE_BAD_FIELD) | REJ(FTR_WIRE_OVERSIZED), true);
	total = build(C_ZERO, g_buf, NULL);
	total = resize_data(g_buf, total, PAGE);
	expect_reject_mask("ZERO_PAGES with data", g_buf, total, NULL,
			   bl | REJ(FTR_WIRE_BAD_FIELD) | REJ(FTR_WIRE_OVERSIZED), true);
	total = build(C_HELLO, g_buf, NULL);
	total = resize_data(g_buf, total, 1);
	expect_reject_mask("HELLO with data", g_buf, total, NULL,
			   bl | REJ(FTR_WIRE_BAD_FIELD) | REJ(FTR_WIRE_OVERSIZED), true);
}
END_TEST

START_TEST(test_out_of_range)
{
	unsigned oor = REJ(FTR_WIRE_OUT_OF_RANGE);
	unsigned loose = oor | REJ(FTR_WIRE_BAD_FIELD);
	size_t total;

	/* PAGES: page == region pages, region == nregions */
	total = build(C_PAGES, g_buf, NULL);
	put64(g_buf + HDR + 8, 256);
	fix_crc(g_buf);
	expect_reject("PAGES page 256 of 256", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);
	expect_accept("PAGES page 256, no limits", g_buf, total, NULL);
	put64(g_buf + HDR + 8, UINT64_MAX);
	fix_crc(g_buf);
	expect_reject("PAGES page 2^64-1", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);
	total = build(C_PAGES, g_buf, NULL);
	put32(g_buf + HDR, 3);
	fix_crc(g_buf);
	expect_reject("PAGES region 3 of 3", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);
	expect_accept("PAGES region 3, no limits", g_buf, total, NULL);

	total = build(C_ZERO, g_buf, NULL);
	put64(g_buf + HDR + 8 + 16 * 3, 16);
	fix_crc(g_buf);
	expect_reject("ZERO_PAGES page 16 of 16", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);
	expect_accept("ZERO_PAGES page 16, no limits", g_buf, total, NULL);
	total = build(C_ZERO, g_buf, NULL);
	put32(g_buf + HDR, 64);
	fix_crc(g_buf);
	expect_reject("ZERO_PAGES region 64", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);

	total = build(C_FAULT, g_buf, NULL);
	put64(g_buf + HDR + 8 + 8 * 4, 1024);
	fix_crc(g_buf);
	expect_reject("FAULT_REQ page 1024 of 1024", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);
	total = build(C_FAULT, g_buf, NULL);
	put32(g_buf + HDR, 5);
	fix_crc(g_buf);
	expect_reject("FAULT_REQ region 5", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);
	expect_accept("FAULT_REQ region 5, no limits", g_buf, total, NULL);

	/* BITMAP first_page + nbits past the region, also by overflow */
	total = build(C_BITMAP, g_buf, NULL);
	put64(g_buf + HDR + 8, 1);
	fix_crc(g_buf);
	expect_reject("BITMAP 1 + 256 > 256", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);
	expect_accept("BITMAP 1 + 256, no limits", g_buf, total, NULL);
	put64(g_buf + HDR + 8, UINT64_MAX - 100);
	fix_crc(g_buf);
	expect_reject("BITMAP first_page wraps", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);
	total = build(C_BITMAP, g_buf, NULL);
	put32(g_buf + HDR, 3);
	fix_crc(g_buf);
	expect_reject("BITMAP region 3", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);

	/* COMMIT nchannels against the session */
	total = build(C_COMMIT, g_buf, NULL);
	put32(g_buf + HDR, 2);
	total = resize_body(g_buf, total, 32 + 4 * 2);
	expect_reject("COMMIT 2 channels, session 3", g_buf, total, &g_lim, FTR_WIRE_OUT_OF_RANGE);
	expect_accept("COMMIT 2 channels, no limits", g_buf, total, NULL);
	total = build(C_COMMIT, g_buf, NULL);
	put32(g_buf + HDR, 17);
	total = resize_body(g_buf, total, 32 + 4 * 17);
	expect_reject_mask("COMMIT 17 channels", g_buf, total, NULL,
			   oor | REJ(FTR_WIRE_OVERSIZED) | REJ(FTR_WIRE_BAD_LENGTH), true);
	total = build(C_COMMIT, g_buf, NULL);
	put32(g_buf + HDR, 0);
	total = resize_body(g_buf, total, 32);
	expect_reject_mask("COMMIT 0 channels", g_buf, total, NULL, oor | REJ(FTR_WIRE_BAD_LENGTH),
			   true);

	/* HELLO page_size (a reply without regions, so only it is wrong) */
	{
		static const uint32_t sizes[] = { 3000, 0, 2048, 4097, 3u << 12, 1u << 31 };

		for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
			char what[64];

			total = build(C_HELLO_REPLY0, g_buf, NULL);
			put32(g_buf + HDR + 32, sizes[s]);
			fix_crc(g_buf);
			snprintf(what, sizeof(what), "HELLO page_size %u", sizes[s]);
			expect_reject(what, g_buf, total, NULL, FTR_WIRE_OUT_OF_RANGE);
		}
		total = build(C_HELLO_REPLY0, g_buf, NULL);
		put32(g_buf + HDR + 32, FTR_WIRE_MAX_PAGE);
		fix_crc(g_buf);
		expect_accept("HELLO page_size 1 GiB", g_buf, total, NULL);
	}
	/* HELLO nchannels, role */
	total = build(C_HELLO, g_buf, NULL);
	g_buf[HDR + 38] = 0;
	fix_crc(g_buf);
	expect_reject("HELLO nchannels 0", g_buf, total, NULL, FTR_WIRE_OUT_OF_RANGE);
	g_buf[HDR + 38] = FTR_WIRE_MAX_CHANNELS + 1;
	fix_crc(g_buf);
	expect_reject("HELLO nchannels 17", g_buf, total, NULL, FTR_WIRE_OUT_OF_RANGE);
	g_buf[HDR + 38] = FTR_WIRE_MAX_CHANNELS;
	fix_crc(g_buf);
	expect_accept("HELLO nchannels 16", g_buf, total, NULL);
	total = build(C_HELLO, g_buf, NULL);
	g_buf[HDR + 36] = 0;
	fix_crc(g_buf);
	expect_reject_mask("HELLO role 0", g_buf, total, NULL, loose, true);
	g_buf[HDR + 36] = 3;
	fix_crc(g_buf);
	expect_reject_mask("HELLO role 3", g_buf, total, NULL, loose, true);
	/* generation 0, unknown feature, request without regions */
	total = build(C_HELLO, g_buf, NULL);
	put64(g_buf + HDR + 16, 0);
	fix_crc(g_buf);
	expect_reject_mask("HELLO generation 0", g_buf, total, NULL, loose, true);
	total = build(C_HELLO, g_buf, NULL);
	put64(g_buf + HDR + 24, FTR_FEAT_KNOWN + 1);
	fix_crc(g_buf);
	expect_reject_mask("HELLO unknown feature", g_buf, total, NULL,
			   loose | REJ(FTR_WIRE_BAD_FLAGS), true);
	total = build(C_HELLO, g_buf, NULL);
	put32(g_buf + HDR + 44, 0);
	total = resize_body(g_buf, total, 64);
	expect_reject_mask("HELLO request, 0 regions", g_buf, total, NULL,
			   loose | REJ(FTR_WIRE_BAD_LENGTH), true);
	/* region sizes */
	total = build(C_HELLO, g_buf, NULL);
	put64(g_buf + HDR + 64 + 48 + 8, 0);
	fix_crc(g_buf);
	expect_reject_mask("HELLO region size 0", g_buf, total, NULL, loose, true);
	put64(g_buf + HDR + 64 + 48 + 8, 1024 * PAGE + 512);
	fix_crc(g_buf);
	expect_reject_mask("HELLO region size not page multiple", g_buf, total, NULL, loose, true);
	total = build(C_HELLO, g_buf, NULL);
	put32(g_buf + HDR + 64 + 48, 2);
	fix_crc(g_buf);
	expect_reject_mask("HELLO region 1 with id 2", g_buf, total, NULL, loose, true);

	/* BYE reason, ERROR code, counts of 0, nbits 0, DIRECT pos */
	total = build(C_BYE, g_buf, NULL);
	put32(g_buf + HDR, 0);
	fix_crc(g_buf);
	expect_reject_mask("BYE reason 0", g_buf, total, NULL, loose, true);
	put32(g_buf + HDR, FTR_BYE_SWITCHED + 1);
	fix_crc(g_buf);
	expect_reject_mask("BYE reason 4", g_buf, total, NULL, loose, true);
	total = build(C_ERROR, g_buf, NULL);
	put32(g_buf + HDR, 0);
	fix_crc(g_buf);
	expect_reject_mask("ERROR code 0", g_buf, total, NULL, loose, true);
	put32(g_buf + HDR, (uint32_t)-5);
	fix_crc(g_buf);
	expect_reject_mask("ERROR code -5", g_buf, total, NULL, loose, true);
	total = build(C_ERROR, g_buf, NULL);
	put32(g_buf + HDR + 4, 0);
	total = resize_body(g_buf, total, 8);
	expect_reject_mask("ERROR len 0", g_buf, total, NULL, loose | REJ(FTR_WIRE_BAD_LENGTH), true);
	total = build(C_PAGES, g_buf, NULL);
	put32(g_buf + HDR + 4, 0);
	total = resize_body(g_buf, total, 8);
	total = resize_data(g_buf, total, 0);
	expect_reject_mask("PAGES count 0", g_buf, total, NULL,
			   loose | REJ(FTR_WIRE_BAD_LENGTH) | REJ(FTR_WIRE_OVERSIZED), true);
	total = build(C_FAULT, g_buf, NULL);
	put32(g_buf + HDR + 4, 0);
	total = resize_body(g_buf, total, 8);
	expect_reject_mask("FAULT_REQ count 0", g_buf, total, NULL,
			   loose | REJ(FTR_WIRE_BAD_LENGTH) | REJ(FTR_WIRE_OVERSIZED), true);
	total = build(C_BITMAP, g_buf, NULL);
	put64(g_buf + HDR + 16, 0);
	total = resize_data(g_buf, total, 0);
	expect_reject_mask("BITMAP nbits 0", g_buf, total, NULL, loose | REJ(FTR_WIRE_BAD_LENGTH),
			   true);
	total = build(C_PAGES_DIRECT, g_buf, NULL);
	put64(g_buf + HDR + 8 + 16 + 8, 1);
	fix_crc(g_buf);
	expect_reject_mask("PAGES DIRECT with pos 1", g_buf, total, NULL,
			   loose | REJ(FTR_WIRE_BAD_FLAGS), true);
}
END_TEST

START_TEST(test_bad_field)
{
	size_t total, hb;
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;

	/* header reserved (not under the CRC) */
	for (int b = 36; b < 40; b++) {
		total = build(C_CREDIT, g_buf, NULL);
		g_buf[b] = 1;
		expect_reject("header reserved", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
		err_prep(&err);
		ck_assert_int_eq(ftr_wire_decode_hdr(g_buf, &hdr, &err), -EPROTO);
		ck_assert_int_eq(err.code, FTR_WIRE_BAD_FIELD);
	}
	/* data_crc set without the flag */
	total = build(C_PAGES, g_buf, NULL);
	put32(g_buf + 20, 0x12345678);
	fix_crc(g_buf);
	expect_reject("data_crc without DATA_CRC", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
	total = build(C_ACK, g_buf, NULL);
	put32(g_buf + 20, 1);
	fix_crc(g_buf);
	expect_reject("ACK data_crc 1", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);

	/* body reserved fields */
	total = build(C_BLOB, g_buf, NULL);
	put32(g_buf + HDR + 4, 1);
	fix_crc(g_buf);
	expect_reject("BLOB reserved", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
	total = build(C_BYE, g_buf, NULL);
	put32(g_buf + HDR + 4, 0x80000000u);
	fix_crc(g_buf);
	expect_reject("BYE reserved", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
	total = build(C_BITMAP, g_buf, NULL);
	put32(g_buf + HDR + 4, 2);
	fix_crc(g_buf);
	expect_reject("BITMAP reserved", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
	for (int z = 9; z < 16; z++) {
		total = build(C_ZERO, g_buf, NULL);
		g_buf[HDR + 8 + 16 * 2 + z] = 0x40;
		fix_crc(g_buf);
		expect_reject("ZERO_PAGES entry reserved", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
	}
	total = build(C_HELLO, g_buf, NULL);
	g_buf[HDR + 39] = 1;
	fix_crc(g_buf);
	expect_reject("HELLO reserved byte 39", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
	total = build(C_HELLO, g_buf, NULL);
	put32(g_buf + HDR + 64 + 48 * 2 + 4, 1);
	fix_crc(g_buf);
	expect_reject("HELLO region flags", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
	total = build(C_HELLO, g_buf, NULL);
	put64(g_buf + HDR + 64 + 16, 1ull << 63);
	fix_crc(g_buf);
	expect_reject("HELLO region reserved", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);

	/* region name filling all 24 bytes, no NUL */
	total = build(C_HELLO, g_buf, &hb);
	memset(g_buf + HDR + 64 + 48 * 2 + 24, 'n', FTR_WIRE_REGION_NAME);
	fix_crc(g_buf);
	expect_reject("HELLO region name without NUL", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
	/* 23 characters and the NUL are fine */
	g_buf[HDR + 64 + 48 * 2 + 24 + 23] = '\0';
	fix_crc(g_buf);
	expect_accept("HELLO region name of 23", g_buf, total, NULL);

	/* ERROR message with a NUL inside */
	total = build(C_ERROR, g_buf, NULL);
	g_buf[HDR + 8 + 6] = '\0';
	fix_crc(g_buf);
	expect_reject("ERROR msg with NUL", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
	total = build(C_ERROR, g_buf, NULL);
	g_buf[total - 1] = '\0';
	fix_crc(g_buf);
	expect_reject("ERROR msg ending in NUL", g_buf, total, NULL, FTR_WIRE_BAD_FIELD);
}
END_TEST

/* ---- the encoder refuses ------------------------------------------------- */

static void expect_einval(int c, void (*mut)(struct ftr_rec *r), const char *what)
{
	ssize_t n;

	make_case(c, g_rec, g_data);
	mut(g_rec);
	memset(g_buf, 0xEE, 64);
	n = ftr_wire_encode(g_buf, BUFCAP, g_rec);
	ck_assert_msg(n == -EINVAL, "%s: encode returned %zd, want -EINVAL", what, n);
}

#define MUT(name, body) \
	static void name(struct ftr_rec *r) { body; }

MUT(m_type0, r->hdr.type = 0)
MUT(m_type13, r->hdr.type = FTR_REC__MAX + 1)
MUT(m_flag_unknown, r->hdr.flags |= 1u << 3)
MUT(m_flag_reply, r->hdr.flags |= FTR_WF_REPLY)
MUT(m_flag_direct, r->hdr.flags |= FTR_WF_DIRECT)
MUT(m_flag_datacrc, r->hdr.flags |= FTR_WF_DATA_CRC)
MUT(m_datacrc_noflag, r->hdr.data_crc = 0x1234)
MUT(m_data_len, r->hdr.data_len = 16)
MUT(m_data_huge, r->hdr.data_len = FTR_WIRE_MAX_DATA + PAGE)
MUT(m_page_size, r->u.hello.page_size = 3000)
MUT(m_page_small, r->u.hello.page_size = 2048)
MUT(m_nch0, r->u.hello.nchannels = 0)
MUT(m_nch17, r->u.hello.nchannels = FTR_WIRE_MAX_CHANNELS + 1)
MUT(m_role, r->u.hello.role = 3)
MUT(m_gen0, r->u.hello.generation = 0)
MUT(m_feat, r->u.hello.features |= 1ull << 40)
MUT(m_nreg65, r->u.hello.nregions = FTR_WIRE_MAX_REGIONS + 1)
MUT(m_nreg0, r->u.hello.nregions = 0)
MUT(m_reg_size0, r->u.hello.regions[1].size = 0)
MUT(m_reg_size_odd, r->u.hello.regions[1].size += 100)
MUT(m_reg_id, r->u.hello.regions[2].id = 7)
MUT(m_reg_flags, r->u.hello.regions[0].flags = 1)
MUT(m_reg_name, memset(r->u.hello.regions[0].name, 'x', FTR_WIRE_REGION_NAME))
MUT(m_pages_count0, r->u.pages.count = 0)
MUT(m_pages_count1025, r->u.pages.count = FTR_WIRE_MAX_BATCH + 1)
MUT(m_pages_pos, r->u.pages.ent[1].pos = 9)
MUT(m_zero_count0, r->u.zero.count = 0)
MUT(m_blob_len, r->u.blob.len = 999)
MUT(m_blob_huge, r->u.blob.len = r->hdr.data_len = FTR_WIRE_MAX_BLOB + 1; r->hdr.flags = 0;
    r->hdr.data_crc = 0)
MUT(m_commit_nch0, r->u.commit.nchannels = 0)
MUT(m_commit_nch17, r->u.commit.nchannels = FTR_WIRE_MAX_CHANNELS + 1)
MUT(m_fault0, r->u.fault.count = 0)
MUT(m_fault257, r->u.fault.count = FTR_WIRE_MAX_FAULT + 1)
MUT(m_nbits0, r->u.bitmap.nbits = 0)
MUT(m_nbits_len, r->u.bitmap.nbits = 81)
MUT(m_err_len0, r->u.error.len = 0)
MUT(m_err_len_big, r->u.error.len = FTR_WIRE_MAX_ERRMSG + 1)
MUT(m_err_code0, r->u.error.code = 0)
MUT(m_err_code_neg, r->u.error.code = -1)
MUT(m_err_nul, r->u.error.msg[3] = '\0')
MUT(m_bye0, r->u.bye.reason = 0)
MUT(m_bye4, r->u.bye.reason = FTR_BYE_SWITCHED + 1)

START_TEST(test_encode_einval)
{
	expect_einval(C_ACK, m_type0, "type 0");
	expect_einval(C_ACK, m_type13, "type 13");
	expect_einval(C_CREDIT, m_flag_unknown, "unknown flag");
	expect_einval(C_PAGES, m_flag_reply, "REPLY on PAGES");
	expect_einval(C_COMMIT, m_flag_direct, "DIRECT on COMMIT");
	expect_einval(C_ACK, m_flag_datacrc, "DATA_CRC without data");
	expect_einval(C_PAGES, m_datacrc_noflag, "data_crc without DATA_CRC");
	expect_einval(C_ACK, m_data_len, "data on ACK");
	expect_einval(C_HEARTBEAT, m_data_len, "data on HEARTBEAT");
	expect_einval(C_PAGES, m_data_huge, "data_len over the limit");
	expect_einval(C_HELLO, m_page_size, "page_size 3000");
	expect_einval(C_HELLO, m_page_small, "page_size 2048");
	expect_einval(C_HELLO, m_nch0, "HELLO nchannels 0");
	expect_einval(C_HELLO, m_nch17, "HELLO nchannels 17");
	expect_einval(C_HELLO, m_role, "HELLO role 3");
	expect_einval(C_HELLO, m_gen0, "HELLO generation 0");
	expect_einval(C_HELLO, m_feat, "HELLO unknown feature");
	expect_einval(C_HELLO, m_nreg65, "HELLO nregions 65");
	expect_einval(C_HELLO, m_nreg0, "HELLO request nregions 0");
	expect_einval(C_HELLO, m_reg_size0, "region size 0");
	expect_einval(C_HELLO, m_reg_size_odd, "region size not page multiple");
	expect_einval(C_HELLO, m_reg_id, "region id != index");
	expect_einval(C_HELLO, m_reg_flags, "region flags");
	expect_einval(C_HELLO, m_reg_name, "region name without NUL");
	expect_einval(C_PAGES, m_pages_count0, "PAGES count 0");
	expect_einval(C_PAGES, m_pages_count1025, "PAGES count 1025");
	expect_einval(C_PAGES_DIRECT, m_pages_pos, "DIRECT with pos 9");
	expect_einval(C_ZERO, m_zero_count0, "ZERO_PAGES count 0");
	expect_einval(C_ZERO, m_data_len, "data on ZERO_PAGES");
	expect_einval(C_BLOB, m_blob_len, "BLOB len != data_len");
	expect_einval(C_BLOB, m_blob_huge, "BLOB over 16 MiB");
	expect_einval(C_COMMIT, m_commit_nch0, "COMMIT nchannels 0");
	expect_einval(C_COMMIT, m_commit_nch17, "COMMIT nchannels 17");
	expect_einval(C_FAULT, m_fault0, "FAULT_REQ count 0");
	expect_einval(C_FAULT, m_fault257, "FAULT_REQ count 257");
	expect_einval(C_BITMAP, m_nbits0, "BITMAP nbits 0");
	expect_einval(C_BITMAP, m_nbits_len, "BITMAP data_len != (nbits+7)/8");
	expect_einval(C_ERROR, m_err_len0, "ERROR len 0");
	expect_einval(C_ERROR_MAX, m_err_len_big, "ERROR len 1025");
	expect_einval(C_ERROR, m_err_code0, "ERROR code 0");
	expect_einval(C_ERROR, m_err_code_neg, "ERROR code -1");
	expect_einval(C_ERROR, m_err_nul, "ERROR msg with NUL");
	expect_einval(C_BYE, m_bye0, "BYE reason 0");
	expect_einval(C_BYE, m_bye4, "BYE reason 4");
}
END_TEST

/* Every cap short of the record is -ENOSPC and writes nothing past cap. */
START_TEST(test_encode_enospc)
{
	size_t hb;
	ssize_t n;
	size_t caps[] = { 0, 1, HDR - 1, HDR, 0, 0 };

	build(_i, g_buf, &hb);
	caps[4] = hb > HDR ? hb - 1 : 0;
	caps[5] = hb > HDR + 1 ? HDR + (hb - HDR) / 2 : 0;
	for (size_t c = 0; c < ARRAY_SIZE(caps); c++) {
		if (caps[c] >= hb)
			continue;
		memset(g_buf2, 0xEE, hb + 16);
		n = ftr_wire_encode(g_buf2, caps[c], g_rec);
		ck_assert_msg(n == -ENOSPC, "%s: cap %zu of %zu: %zd", case_names[_i], caps[c], hb, n);
		for (size_t k = caps[c]; k < hb + 16; k++)
			ck_assert_msg(g_buf2[k] == 0xEE, "%s: cap %zu: byte %zu written",
				      case_names[_i], caps[c], k);
	}
	memset(g_buf2, 0xEE, hb + 16);
	n = ftr_wire_encode(g_buf2, hb, g_rec);
	ck_assert_int_eq(n, (ssize_t)hb);
	ck_assert(!memcmp(g_buf, g_buf2, hb));
	ck_assert_uint_eq(g_buf2[hb], 0xEE);
	ck_assert_uint_le(hb, FTR_WIRE_MAX_ENCODED);
}
END_TEST

/* ---- names ---------------------------------------------------------------- */

START_TEST(test_strerror)
{
	const char *names[FTR_WIRE_BAD_FIELD + 1];

	for (unsigned c = 0; c <= FTR_WIRE_BAD_FIELD; c++) {
		names[c] = ftr_wire_strerror(c);
		ck_assert_ptr_nonnull(names[c]);
		ck_assert_msg(names[c][0], "class %u has an empty name", c);
		for (unsigned d = 0; d < c; d++)
			ck_assert_msg(strcmp(names[c], names[d]), "classes %u and %u both \"%s\"", d, c,
				      names[c]);
	}
	ck_assert_ptr_nonnull(ftr_wire_strerror(FTR_WIRE_BAD_FIELD + 1));
	ck_assert_ptr_nonnull(ftr_wire_strerror(1000));
}
END_TEST

START_TEST(test_type_names)
{
	const char *names[FTR_REC__MAX + 1];

	ck_assert_str_eq(ftr_rec_type_name(FTR_REC_HELLO), "HELLO");
	ck_assert_str_eq(ftr_rec_type_name(FTR_REC_PAGES), "PAGES");
	for (unsigned t = 1; t <= FTR_REC__MAX; t++) {
		names[t] = ftr_rec_type_name(t);
		ck_assert_ptr_nonnull(names[t]);
		ck_assert_msg(names[t][0], "type %u has an empty name", t);
		ck_assert_msg(strcmp(names[t], "unknown"), "type %u is \"unknown\"", t);
		for (unsigned d = 1; d < t; d++)
			ck_assert_msg(strcmp(names[t], names[d]), "types %u and %u both \"%s\"", d, t,
				      names[t]);
	}
	ck_assert_str_eq(ftr_rec_type_name(0), "unknown");
	ck_assert_str_eq(ftr_rec_type_name(FTR_REC__MAX + 1), "unknown");
	ck_assert_str_eq(ftr_rec_type_name(0xffff), "unknown");
	ck_assert_str_eq(ftr_rec_type_name(UINT32_MAX), "unknown");
}
END_TEST

/* Each rejection's message is a line naming something (checked in
 * err_check); here: two different rejections give different messages. */
START_TEST(test_error_messages_differ)
{
	struct ftr_wire_error e1, e2;
	const void *dp;
	size_t total;

	total = build(C_PAGES, g_buf, NULL);
	put64(g_buf + HDR + 8, 256);
	fix_crc(g_buf);
	ck_assert_int_eq(ftr_wire_decode(g_buf, total, &g_lim, g_out, &dp, &e1), -EPROTO);
	total = build(C_PAGES, g_buf, NULL);
	put32(g_buf + HDR, 3);
	fix_crc(g_buf);
	ck_assert_int_eq(ftr_wire_decode(g_buf, total, &g_lim, g_out, &dp, &e2), -EPROTO);
	ck_assert_int_eq(e1.code, FTR_WIRE_OUT_OF_RANGE);
	ck_assert_int_eq(e2.code, FTR_WIRE_OUT_OF_RANGE);
	ck_assert_str_ne(e1.msg, e2.msg);
	/* the values are named: page 256 is in the first */
	ck_assert_msg(strstr(e1.msg, "256"), "\"%s\" does not name page 256", e1.msg);
}
END_TEST

/* ---- CRC32C --------------------------------------------------------------- */

START_TEST(test_crc32c_known)
{
	uint8_t b[32];

	ck_assert_uint_eq(ftr_crc32c(0, "123456789", 9), 0xE3069283u);
	ck_assert_uint_eq(ref_crc32c(0, "123456789", 9), 0xE3069283u);
	ck_assert_uint_eq(ftr_crc32c(0, "", 0), 0);
	ck_assert_uint_eq(ftr_crc32c(0x12345678u, "", 0), 0x12345678u);
	/* RFC 3720 B.4 */
	memset(b, 0, sizeof(b));
	ck_assert_uint_eq(ftr_crc32c(0, b, 32), 0x8A9136AAu);
	memset(b, 0xff, sizeof(b));
	ck_assert_uint_eq(ftr_crc32c(0, b, 32), 0x62A8AB43u);
	for (int k = 0; k < 32; k++)
		b[k] = (uint8_t)k;
	ck_assert_uint_eq(ftr_crc32c(0, b, 32), 0x46DD794Eu);
	for (int k = 0; k < 32; k++)
		b[k] = (uint8_t)(31 - k);
	ck_assert_uint_eq(ftr_crc32c(0, b, 32), 0x113FDB5Cu);
	/* chaining */
	ck_assert_uint_eq(ftr_crc32c(ftr_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}
END_TEST

/* Against the bitwise reference: every alignment, many lengths, chained
 * at every split point. */
START_TEST(test_crc32c_reference)
{
	enum { N = 4096 + 64 };
	uint8_t *b = malloc(N);

	ck_assert_ptr_nonnull(b);
	for (size_t k = 0; k < N; k++)
		b[k] = (uint8_t)rng();
	for (size_t off = 0; off < 16; off++) {
		for (size_t len = 0; len < 300; len++)
			ck_assert_uint_eq(ftr_crc32c(0, b + off, len), ref_crc32c(0, b + off, len));
		ck_assert_uint_eq(ftr_crc32c(0, b + off, N - 16), ref_crc32c(0, b + off, N - 16));
	}
	for (size_t cut = 0; cut <= 200; cut++) {
		uint32_t c = ftr_crc32c(ftr_crc32c(0, b + 3, cut), b + 3 + cut, 200 - cut);

		ck_assert_uint_eq(c, ref_crc32c(0, b + 3, 200));
	}
	ck_assert_uint_eq(ftr_crc32c(0xdeadbeefu, b, 1000), ref_crc32c(0xdeadbeefu, b, 1000));
	free(b);
}
END_TEST

/* The slicing-by-8 table walk against the reference, every alignment. */
START_TEST(test_crc32c_table_walk)
{
	enum { N = 2048 };
	uint8_t *b = malloc(N);

	ck_assert_ptr_nonnull(b);
	for (size_t k = 0; k < N; k++)
		b[k] = (uint8_t)rng();
	ck_assert_uint_eq(~crc_sw(~0u, (const uint8_t *)"123456789", 9), 0xE3069283u);
	for (size_t off = 0; off < 16; off++) {
		for (size_t len = 0; len < 200; len++)
			ck_assert_uint_eq(~crc_sw(~0u, b + off, len), ref_crc32c(0, b + off, len));
		ck_assert_uint_eq(~crc_sw(~0u, b + off, N - 16), ref_crc32c(0, b + off, N - 16));
	}
	ck_assert_uint_eq(~crc_sw(~0x1234u, b, 999), ref_crc32c(0x1234u, b, 999));
	/* the private copy's dispatch agrees with the library's */
	ck_assert_uint_eq(crc32c_private_copy(7, b, N), ftr_crc32c(7, b, N));
	free(b);
}
END_TEST

START_TEST(test_data_crc_iovecs)
{
	enum { N = 20000 };
	uint8_t *b = malloc(N);
	uint32_t whole;

	ck_assert_ptr_nonnull(b);
	for (size_t k = 0; k < N; k++)
		b[k] = (uint8_t)rng();
	whole = ftr_crc32c(0, b, N);
	{
		struct iovec one = { .iov_base = b, .iov_len = N };

		ck_assert_uint_eq(ftr_wire_data_crc(&one, 1), whole);
	}
	for (int round = 0; round < 200; round++) {
		struct iovec iov[8];
		size_t pos = 0;
		int cnt = 1 + (int)(rng() % 8);

		for (int k = 0; k < cnt; k++) {
			size_t left = N - pos;
			size_t take = k == cnt - 1 ? left : (size_t)(rng() % (left + 1));

			if (rng() % 4 == 0 && k != cnt - 1)
				take = 0;
			iov[k].iov_base = b + pos;
			iov[k].iov_len = take;
			pos += take;
		}
		ck_assert_uint_eq(pos, N);
		ck_assert_uint_eq(ftr_wire_data_crc(iov, cnt), whole);
	}
	ck_assert_uint_eq(ftr_wire_data_crc(NULL, 0), 0);
	free(b);
}
END_TEST

static Suite *wire_suite(void)
{
	Suite *su = suite_create("wire");
	TCase *tc;

	tc = tcase_create("roundtrip");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_roundtrip_whole, 0, NCASES);
	tcase_add_loop_test(tc, test_roundtrip_stream, 0, NCASES);
	tcase_add_loop_test(tc, test_layout, 0, NCASES);
	tcase_add_test(tc, test_layout_credit_bytes);
	tcase_add_test(tc, test_stream_of_records);
	suite_add_tcase(su, tc);

	tc = tcase_create("reject");
	tcase_set_timeout(tc, 300);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_truncated, 0, NCASES);
	tcase_add_test(tc, test_oversized_body_len);
	tcase_add_test(tc, test_oversized_data_len);
	tcase_add_test(tc, test_oversized_pages_count);
	tcase_add_test(tc, test_oversized_counts);
	tcase_add_test(tc, test_oversized_blob);
	tcase_add_test(tc, test_bad_magic);
	tcase_add_test(tc, test_bad_version);
	tcase_add_loop_test(tc, test_bad_crc_flips, 0, NCASES);
	tcase_add_test(tc, test_bad_crc_body);
	tcase_add_test(tc, test_bad_data_crc);
	tcase_add_test(tc, test_unknown_type);
	tcase_add_test(tc, test_bad_flags);
	tcase_add_test(tc, test_bad_length);
	tcase_add_test(tc, test_out_of_range);
	tcase_add_test(tc, test_bad_field);
	tcase_add_test(tc, test_error_messages_differ);
	suite_add_tcase(su, tc);

	tc = tcase_create("encode");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_encode_einval);
	tcase_add_loop_test(tc, test_encode_enospc, 0, NCASES);
	suite_add_tcase(su, tc);

	tc = tcase_create("names_crc");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_strerror);
	tcase_add_test(tc, test_type_names);
	tcase_add_test(tc, test_crc32c_known);
	tcase_add_test(tc, test_crc32c_reference);
	tcase_add_test(tc, test_crc32c_table_walk);
	tcase_add_test(tc, test_data_crc_iovecs);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(wire_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
