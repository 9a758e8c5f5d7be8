/* SPDX-License-Identifier: MIT */
/*
 * Transports: how records and page payloads move between primary and
 * standby. Shaped for one-sided RDMA; a byte stream emulates it cheaply.
 *
 *  - A channel (struct ftr_chan) is one connection: the control channel,
 *    a data channel or the urgent channel of a session.
 *  - Memory is registered explicitly: the sender's page sources and the
 *    receiver's staging slots (a no-op on TCP, memory regions on RDMA).
 *  - A record is sent as its encoded header+body plus a data part given
 *    as iovecs that point into the source memory: the sender never copies
 *    page payloads. Each data piece may name the receiver's staging slot
 *    it is destined for (one-sided transports write it there).
 *  - The receiver reads a record's header+body first, decides where its
 *    data goes (staging slots, the cache) and then has the transport
 *    place the data there directly (readv into the slots on TCP).
 *
 * Threading: one thread may send while another receives on the same
 * channel. Sends from several threads are serialized by the channel.
 * ftr_chan_shutdown() may be called from any thread and wakes both.
 */
#ifndef FTREPL_TRANSPORT_H
#define FTREPL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <ftrepl/wire.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ftr_chan;
struct ftr_listener;
struct ftr_mr;

/* Zero-copy counters summed over every channel made from one ftr_tp_opts
 * (see ftr_tp_opts.zc_totals); the fields of ftr_chan_stats of the same
 * names. Updated with atomic adds; read them with __atomic_load_n or after
 * the channels are closed. */
struct ftr_zc_totals {
	uint64_t sends;
	uint64_t completions;
	uint64_t copied;
	uint64_t fallbacks;	/* channels that switched to their copying mode */
};

struct ftr_tp_opts {
	const char *transport; /* "tcp" (default) or "rdma" */
	/* tcp: "writev" (default), "write", "zerocopy" (sendmsg MSG_ZEROCOPY),
	 * "uring", "uring-zc" (io_uring SENDMSG_ZC) */
	const char *mode;
	const char *device;    /* rdma: device name, e.g. "mlx5_0", "rxe0" */
	unsigned max_iov;      /* pages gathered per send call; 0 = default */
	/* tcp zero-copy modes: a channel whose first 64 completions all say
	 * the kernel copied anyway (loopback, veth) switches to writev (or
	 * uring) for good; true keeps zero copy (tests, benchmarks). The
	 * environment variable FTREPL_ZC_FALLBACK=0 does the same. */
	bool zc_no_fallback;
	/* Optional: every channel made from these options (listeners pass
	 * it to accepted channels) also adds its zero-copy counters here.
	 * Must outlive those channels. */
	struct ftr_zc_totals *zc_totals;
};

/* Counters of one channel (monotonic; read with ftr_chan_stats). */
struct ftr_chan_stats {
	uint64_t tx_bytes;	/* header, body and data bytes handed to the kernel */
	uint64_t tx_records;
	uint64_t tx_syscalls;	/* write/writev/sendmsg/io_uring_enter calls */
	uint64_t rx_bytes;
	uint64_t rx_records;
	uint64_t rx_syscalls;
	/* tcp zero-copy modes (0 elsewhere): */
	uint64_t zc_sends;	/* zero-copy sends (MSG_ZEROCOPY calls, SENDMSG_ZC requests) */
	uint64_t zc_completions; /* their completions reaped so far */
	uint64_t zc_copied;	/* completions saying the kernel copied the data anyway */
	uint64_t zc_fallback;	/* 1 once the channel switched to its copying mode */
	/* one-sided transports (rdma; 0 elsewhere): */
	uint64_t tx_placed_bytes; /* data written straight into the peer's staging */
	uint64_t rx_placed_bytes; /* data found already in place in our staging */
};

/* Names of the registered transports, NULL-terminated (static storage). */
const char *const *ftr_transport_names(void);

/* Checks that opts name a registered transport and a mode it has.
 * Returns 0 or -ENOENT (no such transport) / -EINVAL (no such mode) and
 * writes one line saying which into err. */
int ftr_tp_check_opts(const struct ftr_tp_opts *opts, char *err, size_t errlen);

/* Listens on "ADDR:PORT" (binds only that address). Returns 0 or -errno. */
int ftr_tp_listen(const struct ftr_tp_opts *opts, const char *addr,
		  struct ftr_listener **out);
/* The port actually bound (useful with port 0). */
uint16_t ftr_listener_port(const struct ftr_listener *l);
/* Waits up to timeout_ms (-1 = forever) for a connection. Returns 0,
 * -EAGAIN on timeout, -ESHUTDOWN after ftr_listener_shutdown(), -errno. */
int ftr_tp_accept(struct ftr_listener *l, int timeout_ms, struct ftr_chan **out);
void ftr_listener_shutdown(struct ftr_listener *l);
void ftr_listener_close(struct ftr_listener *l);

/* Connects to "ADDR:PORT" within timeout_ms. Returns 0 or -errno
 * (-ECONNREFUSED, -ETIMEDOUT, ...). */
int ftr_tp_connect(const struct ftr_tp_opts *opts, const char *addr,
		   int timeout_ms, struct ftr_chan **out);

/* Registers memory for sending from it (sender) or receiving into it
 * (receiver staging/cache). TCP: bookkeeping only. The channel must stay
 * open while the registration is used. */
#define FTR_MR_SOURCE (1u << 0)
#define FTR_MR_STAGING (1u << 1)
int ftr_chan_reg_mem(struct ftr_chan *c, void *addr, size_t len, unsigned flags,
		     struct ftr_mr **out);
void ftr_mr_dereg(struct ftr_mr *mr);

/* One record to send: the encoded header+body, and its data part as
 * iovecs referencing the source in place. slot[i], when slot is not NULL,
 * is the receiver staging slot index data[i] goes to. */
struct ftr_tx_rec {
	const void *head;
	size_t head_len;
	const struct iovec *data;
	int ndata;
	const uint64_t *slot;
};

/* Sends the records in order. Returns 0 or -errno (-EPIPE, -ECONNRESET,
 * -ESHUTDOWN ...). On return the record heads may be reused; the data may
 * be reused only after ftr_chan_flush() (asynchronous modes). */
int ftr_chan_send(struct ftr_chan *c, const struct ftr_tx_rec *recs, int nrecs);
/* Waits until every earlier send no longer references its data. */
int ftr_chan_flush(struct ftr_chan *c);

/* Caps the rate at which the channel puts bytes on the wire (bytes/s; 0
 * lifts the cap), spreading them evenly rather than in bursts, so that
 * another channel's small records do not queue behind this one's on a
 * shared link. tcp: SO_MAX_PACING_RATE (TCP's own pacing, or the fq
 * qdisc). Returns 0, or -EOPNOTSUPP when the transport cannot (the caller
 * may pace itself). */
int ftr_chan_set_pacing(struct ftr_chan *c, uint64_t bytes_per_s);
/* True when the channel's peer is on this host, so no link lies between
 * them whose queue one channel's bytes could make another's wait in (tcp:
 * a loopback address, or the peer's address is this end's own). False
 * when unknown. */
bool ftr_chan_peer_is_local(struct ftr_chan *c);

/* Mid-record stall limit: once a record has started arriving, each further
 * wait for bytes is bounded by this (default 10000 ms). */
void ftr_chan_set_stall_timeout(struct ftr_chan *c, int ms);

/* Receives the next record's header and body into buf (cap must be at
 * least FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY for arbitrary peers) and
 * decodes the header into *hdr (the body is left for the caller to decode
 * with ftr_wire_decode_body()). idle_ms bounds the wait for the record's
 * first byte (-1 = forever).
 * Returns the head length (40 + body_len) or:
 *   -EAGAIN     nothing arrived within idle_ms
 *   -ETIMEDOUT  the record stalled mid-way (stall timeout)
 *   -EPROTO     the header is bad: *err says why
 *   -ECONNRESET / -EPIPE / 0-length end: -ENOTCONN on orderly close
 *   -ESHUTDOWN  ftr_chan_shutdown() was called
 */
ssize_t ftr_chan_recv_head(struct ftr_chan *c, void *buf, size_t cap,
			   struct ftr_wire_hdr *hdr, int idle_ms,
			   struct ftr_wire_error *err);
/* Places the current record's data part (hdr->data_len bytes) into iov,
 * which must total exactly that. Same errors as above (bounded by the stall
 * timeout). */
int ftr_chan_recv_data(struct ftr_chan *c, const struct ftr_wire_hdr *hdr,
		       const struct iovec *iov, int iovcnt);
/* Reads and discards len bytes of the current record's data part. */
int ftr_chan_skip_data(struct ftr_chan *c, size_t len);

/* Wakes any thread blocked on c; later calls return -ESHUTDOWN. */
void ftr_chan_shutdown(struct ftr_chan *c);
void ftr_chan_close(struct ftr_chan *c);

/* "tcp:127.0.0.1:4000" style description of the peer, for logs. */
const char *ftr_chan_peer(const struct ftr_chan *c);
const char *ftr_chan_transport(const struct ftr_chan *c);
void ftr_chan_get_stats(const struct ftr_chan *c, struct ftr_chan_stats *out);

/* Convenience: encode rec and send it with an optional data part.
 * Returns 0 or -errno. */
int ftr_chan_send_rec(struct ftr_chan *c, const struct ftr_rec *rec,
		      const struct iovec *data, int ndata);

#ifdef __cplusplus
}
#endif
#endif
