/* SPDX-License-Identifier: MIT */
/*
 * ftrepl wire format, version 1.
 *
 * Every record is a 40-byte header, a body of body_len bytes and an
 * optional data part of data_len bytes (page payloads, blob bytes, bitmap
 * bits). All integers are fixed-width little-endian. Record type values and
 * flag bits are fixed once released and never renumbered.
 *
 * Header layout (offsets in bytes):
 *    0  u32 magic      FTR_WIRE_MAGIC (the bytes "FTR1")
 *    4  u16 version    FTR_WIRE_VERSION
 *    6  u16 type       enum ftr_rec_type
 *    8  u32 flags      FTR_WF_*; unknown bits are rejected
 *   12  u32 body_len   bytes of body that follow the header
 *   16  u32 data_len   bytes of data that follow the body
 *   20  u32 data_crc   CRC32C of the data part when FTR_WF_DATA_CRC, else 0
 *   24  u64 seq        epoch number (PAGES, ZERO_PAGES, BLOB, COMMIT, ACK)
 *                      or a per-channel sequence number (other types)
 *   32  u32 crc        CRC32C of header bytes 0..31 followed by the body
 *   36  u32 reserved   must be 0
 *
 * A reader can skip any record it does not want: 40 + body_len + data_len.
 * The header CRC covers the body, so the body (which holds the page
 * descriptors) is always protected; the data part is protected by data_crc
 * when the session negotiated FTR_FEAT_DATA_CRC.
 *
 * Body layouts, by type (all fields little-endian, all reserved fields 0):
 *
 * HELLO (both directions; the standby's reply carries FTR_WF_REPLY)
 *    0  u8[16] session uuid
 *   16  u64 generation        >= 1; a standby never mixes generations
 *   24  u64 features          FTR_FEAT_* bits offered (request) / accepted (reply)
 *   32  u32 page_size         power of two, 4096 .. 1 GiB
 *   36  u8  role              FTR_ROLE_PRIMARY or FTR_ROLE_STANDBY
 *   37  u8  channel           which channel this connection is (FTR_CHAN_*)
 *   38  u8  nchannels         data channels in the session, 1 .. FTR_WIRE_MAX_CHANNELS
 *   39  u8  reserved
 *   40  u32 staging_slots     standby: page slots in its staging ring
 *   44  u32 nregions          1 .. FTR_WIRE_MAX_REGIONS (0 allowed in a reply)
 *   48  u64 last_committed    standby: last committed epoch, FTR_EPOCH_NONE if none
 *   56  u64 cache_size        standby: bytes of cache
 *   64  region[nregions], 48 bytes each:
 *         0 u32 id (== index), 4 u32 flags (0), 8 u64 size (bytes, multiple of
 *         page_size, > 0), 16 u64 reserved, 24 char name[24] (NUL-padded, NUL-terminated)
 *
 * PAGES (primary -> standby, data channel): page payloads in the data part
 *    0  u32 region
 *    4  u32 count              1 .. FTR_WIRE_MAX_BATCH; data_len == count * page_size
 *    8  entry[count], 16 bytes each: 0 u64 page (index in region), 8 u64 pos
 *         pos: absolute staging ring position (slot = pos % staging_slots);
 *         with FTR_WF_DIRECT (initial sync, straight to cache) pos must be 0.
 *
 * ZERO_PAGES (primary -> standby): pages whose every byte is one value
 *    0  u32 region
 *    4  u32 count              1 .. FTR_WIRE_MAX_BATCH; data_len == 0
 *    8  entry[count], 16 bytes each: 0 u64 page, 8 u8 fill, 9 u8[7] reserved
 *
 * BLOB (primary -> standby, control channel): the epoch's state blob in data
 *    0  u32 len                == data_len, <= FTR_WIRE_MAX_BLOB
 *    4  u32 reserved
 *
 * COMMIT (primary -> standby, control channel), seq = epoch
 *    0  u32 nchannels          must equal the session's data channel count
 *    4  u32 blob_len           bytes of blob sent for this epoch (0 = none)
 *    8  u64 pages              PAGES entries in the epoch (all channels)
 *   16  u64 zero_pages         ZERO_PAGES entries in the epoch
 *   24  u64 slot_end           ring position after the epoch's last slot
 *   32  u32 batches[nchannels] records (PAGES + ZERO_PAGES) each channel carried
 *
 * ACK (standby -> primary), seq = epoch: body is empty.
 *
 * CREDIT (standby -> primary)
 *    0  u64 released           ring positions < released are free again
 *
 * HEARTBEAT (both directions)
 *    0  u64 time_ns            sender's CLOCK_MONOTONIC (informational)
 *    8  u64 committed          last committed epoch, FTR_EPOCH_NONE if none
 *   16  u64 acked              last acked epoch (primary's view), FTR_EPOCH_NONE
 *
 * FAULT_REQ (standby -> primary, urgent channel)
 *    0  u32 region
 *    4  u32 count              1 .. FTR_WIRE_MAX_FAULT
 *    8  u64 page[count]
 *
 * BITMAP (either direction): one bit per page, LSB first, in the data part
 *    0  u32 region
 *    4  u32 reserved
 *    8  u64 first_page
 *   16  u64 nbits              data_len == (nbits + 7) / 8; first_page + nbits <= region pages
 *
 * ERROR (either direction)
 *    0  i32 code               enum ftr_wire_errcode (positive)
 *    4  u32 len                1 .. FTR_WIRE_MAX_ERRMSG bytes of UTF-8 text, no NUL
 *    8  char msg[len]
 *
 * BYE (either direction)
 *    0  u32 reason             enum ftr_bye_reason
 *    4  u32 reserved
 */
#ifndef FTREPL_WIRE_H
#define FTREPL_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FTR_WIRE_MAGIC 0x31525446u /* "FTR1" read as little-endian u32 */
#define FTR_WIRE_VERSION 1
#define FTR_WIRE_HDR_LEN 40

#define FTR_WIRE_MAX_BODY (1u << 20)
#define FTR_WIRE_MAX_DATA (64u << 20)
#define FTR_WIRE_MAX_REGIONS 64
#define FTR_WIRE_MAX_CHANNELS 16
#define FTR_WIRE_MAX_BATCH 1024
#define FTR_WIRE_MAX_FAULT 256
#define FTR_WIRE_MAX_BLOB (16u << 20)
#define FTR_WIRE_MAX_ERRMSG 1024
#define FTR_WIRE_REGION_NAME 24
#define FTR_WIRE_MIN_PAGE 4096u
#define FTR_WIRE_MAX_PAGE (1u << 30)

#define FTR_EPOCH_NONE UINT64_MAX
/* Epochs a primary may have sent but not seen acknowledged: epoch e may be
 * started only once e - last acked <= FTR_WIRE_MAX_INFLIGHT (the standby
 * keeps that many epochs in flight and refuses one further ahead). */
#define FTR_WIRE_MAX_INFLIGHT 8

enum ftr_rec_type {
	FTR_REC_HELLO = 1,
	FTR_REC_PAGES = 2,
	FTR_REC_ZERO_PAGES = 3,
	FTR_REC_BLOB = 4,
	FTR_REC_COMMIT = 5,
	FTR_REC_ACK = 6,
	FTR_REC_CREDIT = 7,
	FTR_REC_HEARTBEAT = 8,
	FTR_REC_FAULT_REQ = 9,
	FTR_REC_BITMAP = 10,
	FTR_REC_ERROR = 11,
	FTR_REC_BYE = 12,
	FTR_REC__MAX = 12,
};

/* Header flag bits. */
#define FTR_WF_DATA_CRC (1u << 0) /* data_crc is valid and must be checked */
#define FTR_WF_REPLY (1u << 1)	  /* HELLO: the standby's answer */
#define FTR_WF_DIRECT (1u << 2)	  /* PAGES/ZERO_PAGES: initial sync, to cache */
#define FTR_WF_KNOWN (FTR_WF_DATA_CRC | FTR_WF_REPLY | FTR_WF_DIRECT)

/* Feature bits carried in HELLO. */
#define FTR_FEAT_DATA_CRC (1ull << 0) /* every data part carries a CRC32C */
#define FTR_FEAT_ZERO_FILL (1ull << 1) /* ZERO_PAGES with any fill byte */
#define FTR_FEAT_KNOWN (FTR_FEAT_DATA_CRC | FTR_FEAT_ZERO_FILL)

enum ftr_role {
	FTR_ROLE_PRIMARY = 1,
	FTR_ROLE_STANDBY = 2,
};

/* Channel numbers: 0 is control, 1..nchannels are data, then urgent. */
#define FTR_CHAN_CONTROL 0
#define FTR_CHAN_URGENT 255

enum ftr_bye_reason {
	FTR_BYE_DONE = 1,     /* the workload finished or the user stopped it */
	FTR_BYE_SHUTDOWN = 2, /* the peer is shutting down */
	FTR_BYE_SWITCHED = 3, /* migration completed */
};

/* Codes carried in ERROR records (and used by the standby's logs). */
enum ftr_wire_errcode {
	FTR_WERR_PROTOCOL = 1,	  /* malformed or unexpected record */
	FTR_WERR_SESSION = 2,	  /* peer belongs to another session/generation */
	FTR_WERR_FENCED = 3,	  /* standby was promoted; session fenced */
	FTR_WERR_LAYOUT = 4,	  /* region layout does not fit or does not match */
	FTR_WERR_BUSY = 5,	  /* a session is already active */
	FTR_WERR_INTERNAL = 6,	  /* the peer failed internally */
	FTR_WERR_TIMEOUT = 7,	  /* a wait ran out */
};

/* What a decoder can reject; ftr_wire_strerror() names each. */
enum ftr_wire_reject {
	FTR_WIRE_OK = 0,
	FTR_WIRE_TRUNCATED,	/* fewer bytes than the header/body/data need */
	FTR_WIRE_OVERSIZED,	/* body_len/data_len/count over the limits */
	FTR_WIRE_BAD_MAGIC,
	FTR_WIRE_BAD_VERSION,
	FTR_WIRE_BAD_CRC,	/* header+body CRC mismatch */
	FTR_WIRE_BAD_DATA_CRC,	/* data part CRC mismatch */
	FTR_WIRE_UNKNOWN_TYPE,
	FTR_WIRE_BAD_FLAGS,	/* unknown flag bit or a flag invalid for the type */
	FTR_WIRE_BAD_LENGTH,	/* body/data length inconsistent with contents */
	FTR_WIRE_OUT_OF_RANGE,	/* a region, page, channel or value out of range */
	FTR_WIRE_BAD_FIELD,	/* a reserved field not zero, a bad string */
};

/* A rejection: its class and one line naming the field and values. */
struct ftr_wire_error {
	enum ftr_wire_reject code;
	char msg[192];
};

/* Returns the class name, e.g. "bad CRC" (static string). */
const char *ftr_wire_strerror(enum ftr_wire_reject code);
/* Returns "HELLO", "PAGES", ... or "unknown" (static string). */
const char *ftr_rec_type_name(unsigned type);

/* ---- decoded records (host byte order) ------------------------------- */

struct ftr_wire_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t flags;
	uint32_t body_len;
	uint32_t data_len;
	uint32_t data_crc;
	uint64_t seq;
	uint32_t crc;
	uint32_t reserved;
};

struct ftr_wire_region {
	uint32_t id;
	uint32_t flags;
	uint64_t size;
	char name[FTR_WIRE_REGION_NAME];
};

struct ftr_hello {
	uint8_t session[16];
	uint64_t generation;
	uint64_t features;
	uint32_t page_size;
	uint8_t role;
	uint8_t channel;
	uint8_t nchannels;
	uint32_t staging_slots;
	uint32_t nregions;
	uint64_t last_committed;
	uint64_t cache_size;
	struct ftr_wire_region regions[FTR_WIRE_MAX_REGIONS];
};

struct ftr_page_ent {
	uint64_t page;
	uint64_t pos;
};

struct ftr_fill_ent {
	uint64_t page;
	uint8_t fill;
};

struct ftr_pages {
	uint32_t region;
	uint32_t count;
	struct ftr_page_ent ent[FTR_WIRE_MAX_BATCH];
};

struct ftr_zero_pages {
	uint32_t region;
	uint32_t count;
	struct ftr_fill_ent ent[FTR_WIRE_MAX_BATCH];
};

struct ftr_commit {
	uint32_t nchannels;
	uint32_t blob_len;
	uint64_t pages;
	uint64_t zero_pages;
	uint64_t slot_end;
	uint32_t batches[FTR_WIRE_MAX_CHANNELS];
};

struct ftr_fault_req {
	uint32_t region;
	uint32_t count;
	uint64_t page[FTR_WIRE_MAX_FAULT];
};

struct ftr_bitmap {
	uint32_t region;
	uint64_t first_page;
	uint64_t nbits;
};

struct ftr_errrec {
	int32_t code;
	uint32_t len;
	char msg[FTR_WIRE_MAX_ERRMSG + 1]; /* NUL-terminated copy */
};

/* One decoded record. Large (the PAGES arm holds a full batch): allocate it
 * once per channel, not on small stacks. */
struct ftr_rec {
	struct ftr_wire_hdr hdr;
	union {
		struct ftr_hello hello;
		struct ftr_pages pages;
		struct ftr_zero_pages zero;
		struct { uint32_t len; } blob;
		struct ftr_commit commit;
		struct { uint64_t released; } credit;
		struct { uint64_t time_ns, committed, acked; } heartbeat;
		struct ftr_fault_req fault;
		struct ftr_bitmap bitmap;
		struct ftr_errrec error;
		struct { uint32_t reason; } bye;
	} u;
};

/*
 * Session limits for range checks. Pass NULL to the decoders to check only
 * what a record says about itself (structure, lengths, CRC, flags).
 * With limits: PAGES/ZERO_PAGES/FAULT_REQ/BITMAP regions and pages are
 * checked against the layout, data_len against page_size, COMMIT's
 * nchannels against nchannels, PAGES pos against staging_slots is left to
 * the standby (it is stateful).
 */
struct ftr_wire_limits {
	uint32_t page_size;
	uint32_t nregions;
	uint64_t region_pages[FTR_WIRE_MAX_REGIONS];
	uint32_t nchannels;
};

/* ---- encoding ---------------------------------------------------------
 * Encodes rec (header fields type, flags, seq, data_len and data_crc are
 * taken from rec->hdr; magic, version, body_len, crc and reserved are
 * filled in) into buf as header + body. The data part is not copied: the
 * caller sends it after the returned bytes.
 * Returns the number of bytes written (40 + body_len) or -EINVAL (a field
 * out of range: the encoder refuses to produce a record the decoder would
 * reject) / -ENOSPC (cap too small).
 */
ssize_t ftr_wire_encode(void *buf, size_t cap, const struct ftr_rec *rec);

/* Upper bound of ftr_wire_encode() output for any record. */
#define FTR_WIRE_MAX_ENCODED (FTR_WIRE_HDR_LEN + 8 + 16 * FTR_WIRE_MAX_BATCH + 64)

/* ---- decoding ---------------------------------------------------------
 * Streaming use: read FTR_WIRE_HDR_LEN bytes, ftr_wire_decode_hdr(), read
 * body_len bytes, ftr_wire_decode_body(), then receive data_len bytes where
 * the record says and check them with ftr_wire_check_data().
 * Each returns 0, or -EPROTO with *err filled in.
 */
int ftr_wire_decode_hdr(const void *hdrbuf, struct ftr_wire_hdr *hdr,
			struct ftr_wire_error *err);

/* hdrbuf is the raw 40-byte header (its CRC covers it), body the raw body
 * of hdr->body_len bytes. Fills out->u for hdr->type and copies hdr into
 * out->hdr. */
int ftr_wire_decode_body(const void *hdrbuf, const struct ftr_wire_hdr *hdr,
			 const void *body, const struct ftr_wire_limits *lim,
			 struct ftr_rec *out, struct ftr_wire_error *err);

/* Checks the data part (given as iovecs totalling hdr->data_len) against
 * hdr->data_crc when FTR_WF_DATA_CRC is set; always 0 otherwise. */
int ftr_wire_check_data(const struct ftr_wire_hdr *hdr, const struct iovec *iov,
			int iovcnt, struct ftr_wire_error *err);

/* Whole-record convenience (tests, fuzzing, files): decodes the record at
 * the start of buf[0..len), including its data part (checked and pointed
 * to by *data). Returns bytes consumed (> 0), or -EPROTO with *err
 * (FTR_WIRE_TRUNCATED when len is too short for the record). */
ssize_t ftr_wire_decode(const void *buf, size_t len,
			const struct ftr_wire_limits *lim, struct ftr_rec *out,
			const void **data, struct ftr_wire_error *err);

/* CRC32C of a data part given as iovecs. */
uint32_t ftr_wire_data_crc(const struct iovec *iov, int iovcnt);

#ifdef __cplusplus
}
#endif
#endif
