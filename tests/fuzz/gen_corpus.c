/* SPDX-License-Identifier: MIT */
/*
 * Writes the fuzz_wire seed corpus: one valid encoded record of each type,
 * with its data part, as DIR/<type>.bin (hello.bin, pages.bin, ...).
 *
 *   gen_corpus DIR
 *
 * The records fit the first fixed session layout of fuzz_wire.c (page size
 * 4096; regions of 256, 1024 and 16 pages; 3 data channels), so they are
 * also accepted by the range checks. The output is deterministic.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ftrepl/ftrepl.h>
#include <ftrepl/wire.h>

#define PAGE 4096u

static const uint64_t region_pages[3] = { 256, 1024, 16 };
static const char *const region_names[3] = { "ram", "vga.vram", "rom" };

static uint8_t data[2 * PAGE];

static void pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t k = 0; k < len; k++)
		p[k] = (uint8_t)(k * 167u + seed * 13u + (k >> 7));
}

/* Fills r and data for type t. */
static void make(unsigned t, struct ftr_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->hdr.type = (uint16_t)t;
	r->hdr.seq = 10;
	switch (t) {
	case FTR_REC_HELLO: {
		struct ftr_hello *h = &r->u.hello;

		r->hdr.seq = 1;
		for (int k = 0; k < 16; k++)
			h->session[k] = (uint8_t)(0xA0 + k);
		h->generation = 1;
		h->features = FTR_FEAT_DATA_CRC | FTR_FEAT_ZERO_FILL;
		h->page_size = PAGE;
		h->role = FTR_ROLE_PRIMARY;
		h->channel = FTR_CHAN_CONTROL;
		h->nchannels = 3;
		h->nregions = 3;
		h->last_committed = FTR_EPOCH_NONE;
		for (uint32_t k = 0; k < 3; k++) {
			h->regions[k].id = k;
			h->regions[k].size = region_pages[k] * PAGE;
			strcpy(h->regions[k].name, region_names[k]);
		}
		break;
	}
	case FTR_REC_PAGES:
		r->hdr.flags = FTR_WF_DATA_CRC;
		r->u.pages.region = 1;
		r->u.pages.count = 2;
		r->u.pages.ent[0].page = 7;
		r->u.pages.ent[0].pos = 100;
		r->u.pages.ent[1].page = 1023;
		r->u.pages.ent[1].pos = 101;
		r->hdr.data_len = 2 * PAGE;
		break;
	case FTR_REC_ZERO_PAGES:
		r->u.zero.region = 2;
		r->u.zero.count = 3;
		r->u.zero.ent[0].page = 0;
		r->u.zero.ent[1].page = 9;
		r->u.zero.ent[1].fill = 0xff;
		r->u.zero.ent[2].page = 15;
		r->u.zero.ent[2].fill = 0x5a;
		break;
	case FTR_REC_BLOB:
		r->hdr.flags = FTR_WF_DATA_CRC;
		r->u.blob.len = 100;
		r->hdr.data_len = 100;
		break;
	case FTR_REC_COMMIT:
		r->u.commit.nchannels = 3;
		r->u.commit.blob_len = 100;
		r->u.commit.pages = 2;
		r->u.commit.zero_pages = 3;
		r->u.commit.slot_end = 102;
		r->u.commit.batches[0] = 1;
		r->u.commit.batches[1] = 1;
		r->u.commit.batches[2] = 0;
		break;
	case FTR_REC_ACK:
		break;
	case FTR_REC_CREDIT:
		r->hdr.seq = 4;
		r->u.credit.released = 102;
		break;
	case FTR_REC_HEARTBEAT:
		r->hdr.seq = 5;
		r->u.heartbeat.time_ns = 1234567890123ull;
		r->u.heartbeat.committed = 9;
		r->u.heartbeat.acked = FTR_EPOCH_NONE;
		break;
	case FTR_REC_FAULT_REQ:
		r->hdr.seq = 6;
		r->u.fault.region = 0;
		r->u.fault.count = 3;
		r->u.fault.page[0] = 1;
		r->u.fault.page[1] = 128;
		r->u.fault.page[2] = 255;
		break;
	case FTR_REC_BITMAP:
		r->hdr.flags = FTR_WF_DATA_CRC;
		r->hdr.seq = 7;
		r->u.bitmap.region = 1;
		r->u.bitmap.first_page = 64;
		r->u.bitmap.nbits = 77;
		r->hdr.data_len = 10;
		break;
	case FTR_REC_ERROR: {
		static const char msg[] = "standby fenced: generation 2 was promoted";

		r->hdr.seq = 8;
		r->u.error.code = FTR_WERR_FENCED;
		r->u.error.len = sizeof(msg) - 1;
		memcpy(r->u.error.msg, msg, sizeof(msg));
		break;
	}
	case FTR_REC_BYE:
		r->hdr.seq = 9;
		r->u.bye.reason = FTR_BYE_DONE;
		break;
	}
	pattern(data, r->hdr.data_len, t);
	if (r->hdr.flags & FTR_WF_DATA_CRC)
		r->hdr.data_crc = ftr_crc32c(0, data, r->hdr.data_len);
}

int main(int argc, char **argv)
{
	static struct ftr_rec rec;
	static uint8_t buf[FTR_WIRE_MAX_ENCODED];

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	for (unsigned t = 1; t <= FTR_REC__MAX; t++) {
		char path[4096], name[32];
		const char *tn = ftr_rec_type_name(t);
		ssize_t n;
		FILE *f;
		size_t k;

		make(t, &rec);
		n = ftr_wire_encode(buf, sizeof(buf), &rec);
		if (n < 0) {
			fprintf(stderr, "gen_corpus: encoding %s: %s\n", tn, strerror((int)-n));
			return 1;
		}
		for (k = 0; tn[k] && k < sizeof(name) - 1; k++)
			name[k] = (char)tolower((unsigned char)tn[k]);
		name[k] = '\0';
		snprintf(path, sizeof(path), "%s/%s.bin", argv[1], name);
		f = fopen(path, "wb");
		if (!f) {
			fprintf(stderr, "gen_corpus: %s: %s\n", path, strerror(errno));
			return 1;
		}
		if (fwrite(buf, 1, (size_t)n, f) != (size_t)n ||
		    fwrite(data, 1, rec.hdr.data_len, f) != rec.hdr.data_len || fclose(f)) {
			fprintf(stderr, "gen_corpus: writing %s failed\n", path);
			return 1;
		}
		printf("%s: %zd + %u bytes\n", path, n, rec.hdr.data_len);
	}
	return 0;
}
