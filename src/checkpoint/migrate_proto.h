/* SPDX-License-Identifier: MIT */
/*
 * Pieces both ends of a migration share (the protocol itself is described
 * in include/ftrepl/migrate.h): the image layout and its global page
 * numbering, page bitmaps on the wire, HELLO, and a PAGES/ZERO_PAGES record
 * builder that references page memory in place.
 */
#ifndef FTR_MIGRATE_PROTO_H
#define FTR_MIGRATE_PROTO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <ftrepl/migrate.h>
#include <ftrepl/transport.h>
#include <ftrepl/wire.h>

/* A page travels on data channel 1 + (page >> MIG_STRIPE_SHIFT) % N during
 * precopy. At least 64 pages, so that one bitmap word belongs to one
 * channel's sender. */
#define MIG_STRIPE_SHIFT 10
#define MIG_BITMAP_CHUNK (1u << 20)	/* bits per BITMAP record */
#define MIG_HEAD_CAP (FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY)
#define MIG_RECONNECT_MS 200

/*
 * The image: regions of whole pages. Pages are numbered globally: region r
 * starts at global page g0[r], which is rounded up to a multiple of 64 so
 * that each region begins on a bitmap word (the padding bits are never set).
 * off[r] is the region's byte offset when the regions are laid out one after
 * the other (the destination's memory).
 */
struct mig_layout {
	uint32_t page_size;
	uint32_t nregions;
	uint64_t npages[FTR_WIRE_MAX_REGIONS];
	uint64_t g0[FTR_WIRE_MAX_REGIONS];
	uint64_t off[FTR_WIRE_MAX_REGIONS];
	uint64_t size[FTR_WIRE_MAX_REGIONS];
	char name[FTR_WIRE_MAX_REGIONS][FTR_WIRE_REGION_NAME];
	uint64_t total_pages;	/* real pages */
	uint64_t bits;		/* global numbering span (with padding) */
	uint64_t bytes;		/* sum of the region sizes */
};

/* Fills l->g0/off/total/bits/bytes from page_size, nregions, size[], name[].
 * Returns 0 or -EINVAL (empty or misaligned region). */
int mig_layout_finish(struct mig_layout *l);
void mig_layout_from_hello(struct mig_layout *l, const struct ftr_hello *h);
/* The region holding global page g (g must be a real page), -1 for padding. */
int mig_layout_region(const struct mig_layout *l, uint64_t g);
void mig_layout_limits(const struct mig_layout *l, uint32_t nchannels,
		       struct ftr_wire_limits *lim);

/* Bitmaps of l->bits bits (ftr_bitmap_words(bits) words). */
uint64_t *mig_bitmap_alloc(const struct mig_layout *l);
/* Sets every real page of the layout. */
void mig_bitmap_fill(const struct mig_layout *l, uint64_t *map);
uint64_t mig_bitmap_count(const struct mig_layout *l, const uint64_t *map);

/* Atomic bit ops for bitmaps shared between threads. */
static inline bool mig_bit_test_atomic(uint64_t *map, uint64_t bit)
{
	return (__atomic_load_n(&map[bit >> 6], __ATOMIC_ACQUIRE) >> (bit & 63)) & 1;
}

/* Sets the bit; returns true if it was clear. */
static inline bool mig_bit_set_atomic(uint64_t *map, uint64_t bit)
{
	uint64_t m = 1ull << (bit & 63);

	return !(__atomic_fetch_or(&map[bit >> 6], m, __ATOMIC_ACQ_REL) & m);
}

/* Clears the bit; returns true if it was set. */
static inline bool mig_bit_clear_atomic(uint64_t *map, uint64_t bit)
{
	uint64_t m = 1ull << (bit & 63);

	return __atomic_fetch_and(&map[bit >> 6], ~m, __ATOMIC_ACQ_REL) & m;
}

/* Sends map (global numbering) as BITMAP records with seq, region by
 * region, in chunks of MIG_BITMAP_CHUNK bits. Returns 0 or -errno. */
int mig_send_bitmap(struct ftr_chan *c, const struct mig_layout *l, const uint64_t *map,
		    uint64_t seq, bool data_crc);

/* Receives a whole bitmap, one BITMAP record at a time, in order. */
struct mig_bitmap_rx {
	uint32_t region;	/* region expected next */
	uint64_t next;		/* page expected next in it */
	bool done;		/* every page of every region covered */
};
void mig_bitmap_rx_init(struct mig_bitmap_rx *rx);
/*
 * Takes one decoded BITMAP record whose data part (hdr.data_len bytes) is
 * at data, ORs its bits into map. Records must come region by region, each
 * starting where the previous one ended. Returns 0, or -EPROTO with why
 * (one line) in msg.
 */
int mig_bitmap_rx_add(struct mig_bitmap_rx *rx, const struct mig_layout *l,
		      const struct ftr_rec *rec, const uint8_t *data, uint64_t *map, char *msg,
		      size_t mlen);

/* HELLO of a channel of this session (source side). */
void mig_fill_hello(struct ftr_hello *h, const struct mig_layout *l, const uint8_t session[16],
		    uint64_t generation, uint64_t features, uint8_t channel, uint8_t nchannels,
		    uint64_t last_committed);

/* ---- record builder ----------------------------------------------------- */

/* One PAGES and one ZERO_PAGES record being filled for one channel. The
 * page payloads are referenced (iovecs into the image), never copied. */
struct mig_builder {
	struct ftr_rec pages;
	struct ftr_rec zero;
	struct iovec iov[FTR_WIRE_MAX_BATCH];
	uint8_t head[FTR_WIRE_HDR_LEN + 8 + 16 * FTR_WIRE_MAX_BATCH];
	unsigned batch;		/* pages per PAGES record (<= FTR_WIRE_MAX_BATCH) */
	uint32_t page_size;
	bool crc;		/* checksum the payloads (the source is paused) */
	uint64_t seq;
	/* counters, for the owner */
	uint64_t records, npages, fills, bytes;
};

void mig_builder_init(struct mig_builder *b, uint32_t page_size, unsigned batch);
/* Queues page `page` of `region` whose content is at src: as a fill entry
 * when every byte is equal, as a payload otherwise; sends a record when
 * one is full. Returns 0 or -errno (the send's). */
int mig_builder_add(struct mig_builder *b, struct ftr_chan *c, uint32_t region, uint64_t page,
		    const void *src);
/* Sends what is queued. 0 or -errno. */
int mig_builder_flush(struct mig_builder *b, struct ftr_chan *c);

/* Reads one record's head and decodes its body (data part left unread).
 * Returns 0, or the transport's -errno (-EAGAIN on idle timeout), or -EPROTO
 * with werr filled in. */
int mig_recv_rec(struct ftr_chan *c, uint8_t *head, int idle_ms,
		 const struct ftr_wire_limits *lim, struct ftr_rec *rec,
		 struct ftr_wire_error *werr);

/* True for errors that mean "the connection is gone" (as opposed to a bad
 * peer): candidates for postcopy recovery. */
bool mig_err_is_conn(int err);

#endif
