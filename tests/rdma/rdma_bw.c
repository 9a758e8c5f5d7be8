/* SPDX-License-Identifier: MIT */
/*
 * rdma_bw: bulk page transfer through one ftrepl channel, for comparing the
 * transport with perftest's ib_write_bw -s 4096 in the same VM run (under
 * TCG only ratios mean anything). A receiver thread reads PAGES records
 * into staging slots, as the standby does; the main thread sends them.
 *
 *   rdma_bw [--path zc|bounce|send|tcp] [--mb N] [--scatter] [--batch PAGES]
 *
 *   zc      one-sided: staging advertised, record slots given, the source
 *           registered (FTR_MR_SOURCE): the NIC reads the pages in place
 *   bounce  one-sided, the source not registered: copied to bounce buffers
 *   send    two-sided (mode "send"): the pages travel inside messages and
 *           are copied out on the receiver
 *   tcp     the tcp transport (writev) over 127.0.0.1, for reference
 * --scatter gives every page of a record a non-adjacent slot (one RDMA
 * WRITE per page, like ib_write_bw -s 4096); by default a record's slots
 * are consecutive, as the primary allocates them, and its pages go in one
 * WRITE. Staging holds the whole transfer, so no slot is reused (ftrepl's
 * CREDIT records would handle reuse; this measures the transport only).
 * The receiver checks every page. Prints one line: path, MiB, ms, MB/s.
 * Device and address: FTREPL_RDMA_DEV/FTREPL_RDMA_IP or RXE_DEV/RXE_IP.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#include <ftrepl/transport.h>
#include <ftrepl/wire.h>

#include "transport/rdma_hooks.h"

#define PAGE 4096u
#define HEAD_CAP (FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY)

struct ctx {
	struct ftr_chan *rx;
	unsigned char *staging;
	unsigned char *src;
	uint64_t *slots;
	size_t npages;
	unsigned batch;
	int ret;
	unsigned long bad;
};

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *recv_main(void *arg)
{
	struct ctx *x = arg;
	unsigned char *buf = malloc(HEAD_CAP);
	struct iovec *dst = calloc(x->batch, sizeof(*dst));
	struct ftr_wire_error err;
	struct ftr_wire_hdr hdr;

	x->ret = buf && dst ? 0 : -ENOMEM;
	for (size_t done = 0; done < x->npages && !x->ret; done += x->batch) {
		ssize_t n = ftr_chan_recv_head(x->rx, buf, HEAD_CAP, &hdr, 30000, &err);

		if (n < 0) {
			x->ret = (int)n;
			break;
		}
		for (unsigned i = 0; i < x->batch; i++)
			dst[i] = (struct iovec){ x->staging + x->slots[done + i] * PAGE, PAGE };
		x->ret = ftr_chan_recv_data(x->rx, &hdr, dst, (int)x->batch);
		for (unsigned i = 0; !x->ret && i < x->batch; i++)
			if (memcmp(dst[i].iov_base, x->src + (done + i) * PAGE, PAGE))
				x->bad++;
	}
	free(dst);
	free(buf);
	return NULL;
}

struct acc {
	struct ftr_listener *l;
	struct ftr_chan *c;
	int ret;
};

static void *accept_main(void *arg)
{
	struct acc *a = arg;

	a->ret = ftr_tp_accept(a->l, 20000, &a->c);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *dev = getenv("FTREPL_RDMA_DEV"), *ip = getenv("FTREPL_RDMA_IP");
	const char *path = "zc";
	size_t mb = 64;
	unsigned batch = 64;
	bool scatter = false, tcp;
	struct ftr_tp_opts o;
	struct ftr_mr *smr = NULL, *dmr = NULL;
	struct ctx x = { 0 };
	struct acc a = { 0 };
	struct ftr_chan *tx;
	pthread_t th;
	char addr[96];
	unsigned char *heads;
	size_t hlen;
	struct iovec *iov;
	struct ftr_tx_rec *recs;
	struct ftr_rec *rec;
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error werr;
	struct ftr_rdma_counters tc;
	unsigned char hb[256];
	uint64_t t0, us;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--path") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--mb") && i + 1 < argc)
			mb = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
			batch = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--scatter"))
			scatter = true;
		else {
			fprintf(stderr, "usage: rdma_bw [--path zc|bounce|send|tcp] [--mb N] "
				"[--scatter] [--batch PAGES]\n");
			return 2;
		}
	}
	tcp = !strcmp(path, "tcp");
	if (!dev || !*dev)
		dev = getenv("RXE_DEV");
	if (!ip || !*ip)
		ip = getenv("RXE_IP");
	if (!tcp && (!dev || !*dev || !ip || !*ip)) {
		printf("rdma_bw: skipped: no RDMA device/address\n");
		return 77;
	}
	if (!batch || batch > FTR_WIRE_MAX_BATCH)
		batch = 64;
	x.batch = batch;
	x.npages = (mb << 20) / PAGE / batch * batch;
	x.src = mmap(NULL, x.npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	/* Scatter: slots 0, 2, 4, ... then 1, 3, 5: never adjacent in a record. */
	x.staging = mmap(NULL, x.npages * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	x.slots = calloc(x.npages, sizeof(*x.slots));
	heads = calloc(x.npages / batch, FTR_WIRE_MAX_ENCODED);
	iov = calloc(x.npages, sizeof(*iov));
	recs = calloc(x.npages / batch, sizeof(*recs));
	rec = calloc(1, sizeof(*rec));
	if (x.src == MAP_FAILED || x.staging == MAP_FAILED || !x.slots || !heads || !iov ||
	    !recs || !rec)
		return 1;
	for (size_t n = 0; n < x.npages; n++) {
		uint64_t *w = (uint64_t *)(x.src + n * PAGE);

		for (unsigned i = 0; i < PAGE / 8; i++)
			w[i] = n * 0x9E3779B97F4A7C15ull + i;
		x.slots[n] = scatter ? (n < x.npages / 2 ? 2 * n : 2 * (n - x.npages / 2) + 1) : n;
		iov[n] = (struct iovec){ x.src + n * PAGE, PAGE };
	}
	hlen = 0;
	for (size_t r = 0; r < x.npages / batch; r++) {
		ssize_t n;

		memset(rec, 0, sizeof(*rec));
		rec->hdr.type = FTR_REC_PAGES;
		rec->hdr.seq = 1;
		rec->hdr.data_len = batch * PAGE;
		rec->u.pages.count = batch;
		for (unsigned i = 0; i < batch; i++) {
			rec->u.pages.ent[i].page = r * batch + i;
			rec->u.pages.ent[i].pos = x.slots[r * batch + i];
		}
		n = ftr_wire_encode(heads + r * FTR_WIRE_MAX_ENCODED, FTR_WIRE_MAX_ENCODED, rec);
		if (n < 0)
			return 1;
		hlen = (size_t)n;
		recs[r] = (struct ftr_tx_rec){
			.head = heads + r * FTR_WIRE_MAX_ENCODED, .head_len = (size_t)n,
			.data = iov + r * batch, .ndata = (int)batch,
			.slot = tcp || !strcmp(path, "send") ? NULL : x.slots + r * batch,
		};
	}

	o = (struct ftr_tp_opts){ .transport = tcp ? "tcp" : "rdma",
				  .mode = tcp ? "writev" : !strcmp(path, "send") ? "send" : "write",
				  .device = tcp ? NULL : dev };
	snprintf(addr, sizeof(addr), "%s:0", tcp ? "127.0.0.1" : ip);
	ret = ftr_tp_listen(&o, addr, &a.l);
	if (ret) {
		fprintf(stderr, "listen: %s\n", strerror(-ret));
		return 1;
	}
	snprintf(addr, sizeof(addr), "%s:%u", tcp ? "127.0.0.1" : ip, ftr_listener_port(a.l));
	pthread_create(&th, NULL, accept_main, &a);
	ret = ftr_tp_connect(&o, addr, 20000, &tx);
	pthread_join(th, NULL);
	if (ret || a.ret) {
		fprintf(stderr, "connect: %s / accept: %s\n", strerror(-ret), strerror(-a.ret));
		return 1;
	}
	x.rx = a.c;
	ftr_chan_set_stall_timeout(tx, 30000);
	ftr_chan_set_stall_timeout(x.rx, 30000);
	/* Registration is part of the setup, not of the transfer. */
	if (ftr_chan_reg_mem(x.rx, x.staging, x.npages * PAGE, FTR_MR_STAGING, &dmr) ||
	    (!strcmp(path, "zc") &&
	     ftr_chan_reg_mem(tx, x.src, x.npages * PAGE, FTR_MR_SOURCE, &smr))) {
		fprintf(stderr, "registration failed\n");
		return 1;
	}
	/* A record from the receiver: the staging advert is ahead of it. */
	memset(rec, 0, sizeof(*rec));
	rec->hdr.type = FTR_REC_HEARTBEAT;
	rec->u.heartbeat.committed = FTR_EPOCH_NONE;
	rec->u.heartbeat.acked = FTR_EPOCH_NONE;
	if (ftr_chan_send_rec(x.rx, rec, NULL, 0) ||
	    ftr_chan_recv_head(tx, hb, sizeof(hb), &hdr, 20000, &werr) < 0)
		return 1;

	t0 = now_us();
	pthread_create(&th, NULL, recv_main, &x);
	ret = 0;
	for (size_t r = 0; r < x.npages / batch && !ret; r += 4)
		ret = ftr_chan_send(tx, recs + r,
				    x.npages / batch - r < 4 ? (int)(x.npages / batch - r) : 4);
	if (!ret)
		ret = ftr_chan_flush(tx);
	pthread_join(th, NULL);
	us = now_us() - t0;
	if (ret || x.ret || x.bad) {
		fprintf(stderr, "rdma_bw: FAIL: send %s, receive %s, %lu bad pages\n",
			strerror(-ret), strerror(-x.ret), x.bad);
		return 1;
	}
	printf("rdma_bw: path %s%s: %zu MiB in %.1f ms = %.2f MB/s (records of %u pages, "
	       "head %zu bytes)", path, scatter ? " scatter" : "", (x.npages * PAGE) >> 20,
	       (double)us / 1000.0, (double)(x.npages * PAGE) / (double)us, batch, hlen);
	if (!tcp && !ftr_rdma_get_counters(tx, &tc))
		printf(", %llu SENDs, %llu WRITEs, %llu credit waits",
		       (unsigned long long)tc.sends, (unsigned long long)tc.writes,
		       (unsigned long long)tc.credit_waits);
	printf("\n");
	if (smr)
		ftr_mr_dereg(smr);
	if (dmr)
		ftr_mr_dereg(dmr);
	ftr_chan_close(tx);
	ftr_chan_close(x.rx);
	ftr_listener_close(a.l);
	return 0;
}
