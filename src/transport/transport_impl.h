/* SPDX-License-Identifier: MIT */
/*
 * Internal header for transport backends. Users see only the opaque
 * handles of <ftrepl/transport.h>; backends embed the generic structs
 * below in their own and get back with container_of().
 *
 * A backend is one file that fills a `static const struct
 * ftr_transport_ops` (designated initializers, unused ops written as
 * explicit NULL: the generic layer substitutes -EOPNOTSUPP) and registers
 * it by name in registry.c.
 */
#ifndef FTR_TRANSPORT_IMPL_H
#define FTR_TRANSPORT_IMPL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include <ftrepl/transport.h>

#include "common/common.h"

struct ftr_transport_ops;

struct ftr_chan {
	const struct ftr_transport_ops *ops;
	pthread_mutex_t send_lock; /* serializes send/flush across threads */
	int stall_ms;
	atomic_bool shut;
	char peer[96];
	/* Counters are updated by the backend: tx_* and zc_sends under
	 * send_lock by the sending thread, rx_* by the single receiving
	 * thread; a backend that reaps completions from either thread
	 * (tcp zerocopy) serializes zc_completions/zc_copied itself. */
	struct ftr_chan_stats st;
};

struct ftr_listener {
	const struct ftr_transport_ops *ops;
	uint16_t port;
	atomic_bool shut;
};

struct ftr_mr {
	struct ftr_chan *chan;
	void *addr;
	size_t len;
	unsigned flags;
};

struct ftr_transport_ops {
	const char *name;
	/* NULL-terminated list of modes; modes[0] is the default. */
	const char *const *modes;

	int (*listen)(const struct ftr_tp_opts *o, const char *host, uint16_t port,
		      struct ftr_listener **out);
	int (*accept)(struct ftr_listener *l, int timeout_ms, struct ftr_chan **out);
	void (*listener_shutdown)(struct ftr_listener *l);
	void (*listener_close)(struct ftr_listener *l);
	int (*connect)(const struct ftr_tp_opts *o, const char *host, uint16_t port,
		       int timeout_ms, struct ftr_chan **out);

	/* Optional: default is bookkeeping only (TCP needs nothing). */
	int (*reg_mem)(struct ftr_chan *c, struct ftr_mr *mr);
	void (*dereg_mem)(struct ftr_mr *mr);

	/* Called with send_lock held. */
	int (*send)(struct ftr_chan *c, const struct ftr_tx_rec *recs, int nrecs);
	/* Optional (synchronous backends): called with send_lock held. */
	int (*flush)(struct ftr_chan *c);

	/* Receive exactly the bytes iov describes. first_idle_ms bounds the
	 * wait for the first byte (-1 forever; -EAGAIN when it runs out and
	 * nothing was read); every later wait is bounded by c->stall_ms
	 * (-ETIMEDOUT). Orderly EOF before the first byte: -ENOTCONN; EOF
	 * mid-way: -ECONNRESET. After shutdown: -ESHUTDOWN. */
	int (*recv_iov)(struct ftr_chan *c, const struct iovec *iov, int iovcnt,
			int first_idle_ms);

	void (*shutdown)(struct ftr_chan *c);
	void (*close)(struct ftr_chan *c);

	/* Optional: caps the channel's send rate (bytes/s, 0 = none) in the
	 * transport or the kernel; NULL: -EOPNOTSUPP. */
	int (*set_pacing)(struct ftr_chan *c, uint64_t bytes_per_s);
	/* Optional: true when the peer is on this host (NULL: false). */
	bool (*peer_is_local)(struct ftr_chan *c);
};

/* Channel counters have one writer each (tx_* under send_lock, rx_* the
 * receiving thread; rdma: under its lk) while ftr_chan_get_stats() reads
 * them from any thread: relaxed atomic stores and loads, no lock prefix. */
static inline void ftr_stat_add(uint64_t *p, uint64_t n)
{
	__atomic_store_n(p, *p + n, __ATOMIC_RELAXED);
}

static inline int ftr_chan_stall_ms(const struct ftr_chan *c)
{
	return __atomic_load_n(&c->stall_ms, __ATOMIC_RELAXED);
}

static inline bool ftr_chan_is_shut(struct ftr_chan *c)
{
	return atomic_load(&c->shut);
}

/* Milliseconds left until end_ms (CLOCK_MONOTONIC); -1 stays "forever". */
static inline int ftr_ms_left(int timeout_ms, uint64_t end_ms)
{
	uint64_t now;

	if (timeout_ms < 0)
		return -1;
	now = ftr_now_ms();
	return now >= end_ms ? 0 : (int)FTR_MIN(end_ms - now, (uint64_t)INT_MAX);
}

/* Initializes the generic part of a channel a backend created. */
void ftr_chan_init(struct ftr_chan *c, const struct ftr_transport_ops *ops,
		   const char *peer);
/* Releases the generic part (the backend frees its own struct). */
void ftr_chan_fini(struct ftr_chan *c);

/* True for a loopback address: 127/8, ::1, or ::ffff:127/104 (transport.c). */
struct sockaddr;
bool ftr_addr_is_loopback(const struct sockaddr *sa);

/* Registry (registry.c). Returns NULL when no backend has that name. */
const struct ftr_transport_ops *ftr_transport_find(const char *name);

extern const struct ftr_transport_ops ftr_tcp_transport;
#ifdef FTREPL_HAVE_RDMA
extern const struct ftr_transport_ops ftr_rdma_transport; /* rdma.c */
#endif

#endif
