/* SPDX-License-Identifier: MIT */
/* Pieces both ends of a replication session share. */
#ifndef FTR_SESSION_H
#define FTR_SESSION_H

#include <stdint.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/wire.h>

/* Builds decoder limits from a primary's HELLO. */
void ftr_session_limits(const struct ftr_hello *h, struct ftr_wire_limits *lim);

/* Sends an ERROR record (best effort) and logs nothing. */
void ftr_send_error(struct ftr_chan *c, enum ftr_wire_errcode code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

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
