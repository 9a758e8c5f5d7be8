/* SPDX-License-Identifier: MIT */
/*
 * Internal view into an rdma channel, for the rdma check suite and
 * benchmarks: which path carried the bytes (one-sided WRITE or two-sided
 * SEND, zero copy or bounce), flow-control counters, and fault-injection
 * knobs that make the sender misbehave on purpose so the suite can show
 * that the receiver and the NIC catch it. Not part of the public API.
 */
#ifndef FTR_TRANSPORT_RDMA_HOOKS_H
#define FTR_TRANSPORT_RDMA_HOOKS_H

#include <stdint.h>

#include <ftrepl/transport.h>

struct ftr_rdma_counters {
	uint64_t sends;		  /* SEND work requests (messages) */
	uint64_t writes;	  /* RDMA WRITE work requests carrying page data */
	uint64_t write_bytes;	  /* data bytes placed one-sided by those writes */
	uint64_t write_zc_bytes;  /* of which read in place from a SOURCE registration */
	uint64_t inline_bytes;	  /* stream bytes carried inside SEND messages */
	uint64_t rx_placed_bytes; /* data bytes received one-sided (from staging) */
	uint64_t rx_placed_copied; /* of which copied because the caller's iovec was
				    * not the staging slot itself */
	uint64_t credit_waits;	  /* times a send waited for receive credits */
	uint64_t credit_writes;	  /* credit updates written to the peer */
	uint32_t msg_size;	  /* bytes per message (receive buffer size) */
	uint32_t recv_depth;	  /* receive buffers posted */
	uint32_t peer_staging;	  /* 1 when the peer advertised staging memory */
};

/* Fills *out. Returns 0, or -EINVAL when c is not an rdma channel. */
int ftr_rdma_get_counters(const struct ftr_chan *c, struct ftr_rdma_counters *out);

enum ftr_rdma_knob {
	/* The sender XORs this value into the peer's staging rkey. */
	FTR_RDMA_KNOB_RKEY_XOR = 1,
	/* Nonzero: the sender skips its own check that a slot lies inside the
	 * peer's advertised staging (the NIC must then refuse the write). */
	FTR_RDMA_KNOB_NO_RANGE_CHECK = 2,
};

/* Sets a fault-injection knob on a channel. Returns 0 or -EINVAL. */
int ftr_rdma_set_knob(struct ftr_chan *c, enum ftr_rdma_knob k, uint64_t val);

#endif
