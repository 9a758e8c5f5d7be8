/* SPDX-License-Identifier: MIT */
/* Pieces both ends of a replication session share. */
#ifndef FTR_SESSION_H
#define FTR_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/transport.h>
#include <ftrepl/wire.h>

/* Builds decoder limits from a primary's HELLO. */
void ftr_session_limits(const struct ftr_hello *h, struct ftr_wire_limits *lim);

/* Sends an ERROR record (best effort) and logs nothing. */
void ftr_send_error(struct ftr_chan *c, enum ftr_wire_errcode code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * The sending side's half of a channel's handshake (replication primary,
 * migration source): connects to addr (within connect_ms), sets the stall
 * limit, sends *rec (a HELLO the caller filled in), waits up to answer_ms
 * for the answer and checks that it is a standby's HELLO reply for the same
 * session, generation and page size. peer names the other side in msg
 * ("standby", "destination").
 * Returns 0 with the channel in *out and the answer in *rec, or -errno with
 * one line in msg: the transport's error (connect, send, -EAGAIN: no answer
 * in time), -EPROTO (a bad or mismatching answer), -EREMOTEIO (the peer
 * refused with an ERROR, which *rec then holds).
 */
int ftr_session_connect(const struct ftr_tp_opts *tp, const char *addr, int connect_ms,
			int stall_ms, int answer_ms, const char *peer, struct ftr_rec *rec,
			struct ftr_chan **out, char *msg, size_t mlen);

/* Sends a record without data. Returns 0 or -errno. */
int ftr_send_simple(struct ftr_chan *c, uint16_t type, uint64_t seq, const struct ftr_rec *body);

/* Keeps the last samples of a latency and answers mean and p99. */
#define FTR_LAT_SAMPLES 1024
struct ftr_lat {
	uint64_t v[FTR_LAT_SAMPLES];
	uint64_t n;	/* samples ever added */
	uint64_t sum;	/* over the kept window */
	uint64_t last;
};
void ftr_lat_add(struct ftr_lat *l, uint64_t v);
uint64_t ftr_lat_mean(const struct ftr_lat *l);
uint64_t ftr_lat_pct(const struct ftr_lat *l, unsigned pct);

#endif
