/* SPDX-License-Identifier: MIT */
/*
 * RDMA suite: the rdma transport over a real verbs device. Runs where a
 * device is named by FTREPL_RDMA_DEV (or RXE_DEV, set inside
 * ../shared/rxe-vm) and its address by FTREPL_RDMA_IP (or RXE_IP);
 * anywhere else it exits 77 (skipped) saying why. Label "rdma", not "unit".
 *
 *   ../shared/rxe-vm/run-in-rxe-vm.sh --dir build --add /usr/bin/ctest \
 *       --cmd 'ctest -L rdma --output-on-failure'
 *
 * Cases in "modes" run once per rdma mode (write, send). Threads: a pair is
 * opened with an accept thread (connect blocks until the other side
 * accepts); data cases receive in the test thread while a helper thread
 * sends (sender_main); peer-death cases fork a peer process before any
 * RDMA call of the test (a forked child must not use its parent's verbs
 * contexts) and kill it mid-batch. CK_FORK stays on: every case gets a
 * fresh process, so RDMA state never crosses cases.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <infiniband/verbs.h>

#include <ftrepl/transport.h>
#include <ftrepl/wire.h>

#include "transport/rdma_hooks.h"

#define PAGE 4096u
#define REC_PAGES 64u
#define HEAD_CAP (FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY)
/* Staging slots: one per page of the largest image sent one-sided (slots
 * in flight must never be reused: granting them is ftrepl's CREDIT job). */
#define RING_SLOTS (24u * REC_PAGES)

static const char *modes[] = { "write", "send" };
static const int nmodes = 2;

/* Where to run: set once in main() from the environment. */
static const char *rdma_dev;
static const char *rdma_ip;

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts))
		;
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void fill_page(void *p, uint64_t seed, uint64_t n)
{
	uint64_t *w = p;

	for (unsigned i = 0; i < PAGE / 8; i++)
		w[i] = mix64(seed ^ (n * 0x9E3779B97F4A7C15ull + i));
}

static struct ftr_tp_opts opts_for(const char *mode)
{
	struct ftr_tp_opts o = { .transport = "rdma", .mode = mode, .device = rdma_dev };

	return o;
}

static char *addr_of(uint16_t port)
{
	static char buf[96];

	snprintf(buf, sizeof(buf), "%s:%u", rdma_ip, port);
	return buf;
}

struct pair {
	struct ftr_listener *l;
	struct ftr_chan *tx; /* the connecting side sends (the primary) */
	struct ftr_chan *rx;
};

struct acceptor {
	struct ftr_listener *l;
	struct ftr_chan *c;
	int ret;
	pthread_t th;
};

static void *accept_main(void *arg)
{
	struct acceptor *a = arg;

	a->ret = ftr_tp_accept(a->l, 10000, &a->c);
	return NULL;
}

/* Connects a new channel to p's listener (accepting it in a thread). */
static void pair_add(struct pair *p, const struct ftr_tp_opts *o, struct ftr_chan **tx,
		     struct ftr_chan **rx)
{
	struct acceptor a = { .l = p->l };

	ck_assert_int_eq(pthread_create(&a.th, NULL, accept_main, &a), 0);
	ck_assert_int_eq(ftr_tp_connect(o, addr_of(ftr_listener_port(p->l)), 10000, tx), 0);
	pthread_join(a.th, NULL);
	ck_assert_int_eq(a.ret, 0);
	*rx = a.c;
}

static void pair_open_opts(struct pair *p, const struct ftr_tp_opts *o)
{
	char addr[96];

	memset(p, 0, sizeof(*p));
	snprintf(addr, sizeof(addr), "%s:0", rdma_ip);
	ck_assert_int_eq(ftr_tp_listen(o, addr, &p->l), 0);
	ck_assert_uint_ne(ftr_listener_port(p->l), 0);
	pair_add(p, o, &p->tx, &p->rx);
}

static void pair_open(struct pair *p, const char *mode)
{
	struct ftr_tp_opts o = opts_for(mode);

	pair_open_opts(p, &o);
}

static void pair_close(struct pair *p)
{
	if (p->tx)
		ftr_chan_close(p->tx);
	if (p->rx)
		ftr_chan_close(p->rx);
	if (p->l)
		ftr_listener_close(p->l);
	memset(p, 0, sizeof(*p));
}

static size_t encode_pages(unsigned char *head, uint64_t seq, uint32_t count, uint64_t first_page)
{
	struct ftr_rec *rec = calloc(1, sizeof(*rec));
	ssize_t n;

	ck_assert_ptr_nonnull(rec);
	rec->hdr.type = FTR_REC_PAGES;
	rec->hdr.seq = seq;
	rec->hdr.data_len = count * PAGE;
	rec->u.pages.region = 0;
	rec->u.pages.count = count;
	for (uint32_t i = 0; i < count; i++) {
		rec->u.pages.ent[i].page = first_page + i;
		rec->u.pages.ent[i].pos = first_page + i;
	}
	n = ftr_wire_encode(head, FTR_WIRE_MAX_ENCODED, rec);
	free(rec);
	ck_assert_int_gt(n, FTR_WIRE_HDR_LEN);
	return (size_t)n;
}

static int send_heartbeat(struct ftr_chan *c, uint64_t seq)
{
	struct ftr_rec *rec = calloc(1, sizeof(*rec));
	int ret;

	ck_assert_ptr_nonnull(rec);
	rec->hdr.type = FTR_REC_HEARTBEAT;
	rec->hdr.seq = seq;
	rec->u.heartbeat.time_ns = seq * 1000;
	rec->u.heartbeat.committed = FTR_EPOCH_NONE;
	rec->u.heartbeat.acked = FTR_EPOCH_NONE;
	ret = ftr_chan_send_rec(c, rec, NULL, 0);
	free(rec);
	return ret;
}

static ssize_t recv_head(struct ftr_chan *c, unsigned char *buf, struct ftr_wire_hdr *hdr, int ms)
{
	struct ftr_wire_error err;

	return ftr_chan_recv_head(c, buf, HEAD_CAP, hdr, ms, &err);
}

/* A test image: npages pages, one PAGES record per REC_PAGES, and a staging
 * slot per page (slot_of) when the records are sent one-sided. */
struct image {
	unsigned char *pages;
	size_t npages;
	int nrecs;
	unsigned char (*heads)[FTR_WIRE_MAX_ENCODED];
	struct iovec *iov;
	uint64_t *slots;
	struct ftr_tx_rec *recs;
};

/* Slot of page i of record r, inside the record's own block of REC_PAGES
 * slots: even records take consecutive slots, as the primary allocates
 * them (the sender coalesces them into few WRITEs); odd records spread
 * their pages over the block in no simple order (37 is odd: a permutation). */
static unsigned slot_of(int r, unsigned i)
{
	unsigned base = ((unsigned)r * REC_PAGES) % RING_SLOTS;

	if (r % 2 == 0)
		return base + i;
	return base + (i * 37u + 11u) % REC_PAGES;
}

static void image_make(struct image *im, size_t npages, uint64_t seed, bool with_slots)
{
	im->npages = npages;
	im->nrecs = (int)(npages / REC_PAGES);
	im->pages = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(im->pages != MAP_FAILED);
	im->heads = calloc((size_t)im->nrecs, sizeof(*im->heads));
	im->iov = calloc(npages, sizeof(*im->iov));
	im->slots = calloc(npages, sizeof(*im->slots));
	im->recs = calloc((size_t)im->nrecs, sizeof(*im->recs));
	ck_assert(im->heads && im->iov && im->recs && im->slots);
	for (size_t n = 0; n < npages; n++) {
		fill_page(im->pages + n * PAGE, seed, n);
		im->iov[n] = (struct iovec){ im->pages + n * PAGE, PAGE };
		im->slots[n] = slot_of((int)(n / REC_PAGES), (unsigned)(n % REC_PAGES));
	}
	for (int r = 0; r < im->nrecs; r++) {
		im->recs[r] = (struct ftr_tx_rec){
			.head = im->heads[r],
			.head_len = encode_pages(im->heads[r], (uint64_t)r, REC_PAGES,
						 (uint64_t)r * REC_PAGES),
			.data = im->iov + (size_t)r * REC_PAGES,
			.ndata = REC_PAGES,
			.slot = with_slots ? im->slots + (size_t)r * REC_PAGES : NULL,
		};
	}
}

static void image_free(struct image *im)
{
	munmap(im->pages, im->npages * PAGE);
	free(im->heads);
	free(im->iov);
	free(im->slots);
	free(im->recs);
}

/* ---- a sender thread ----------------------------------------------------------- */

struct sender {
	struct ftr_chan *c;
	const struct ftr_tx_rec *recs;
	int nrecs;
	int per_call;
	int ret;
	pthread_t th;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;

	s->ret = 0;
	for (int i = 0; i < s->nrecs && !s->ret; i += s->per_call)
		s->ret = ftr_chan_send(s->c, s->recs + i,
				       s->nrecs - i < s->per_call ? s->nrecs - i : s->per_call);
	if (!s->ret)
		s->ret = ftr_chan_flush(s->c);
	return NULL;
}

static void sender_start(struct sender *s)
{
	ck_assert_int_eq(pthread_create(&s->th, NULL, sender_main, s), 0);
}

static int sender_join(struct sender *s)
{
	pthread_join(s->th, NULL);
	return s->ret;
}

/* Staging on the receiver: RING_SLOTS pages, registered and advertised.
 * The receiver then sends a heartbeat that the sender reads: the advert
 * travels ahead of it, so the sender knows the staging before it sends. */
struct staging {
	unsigned char *mem;	/* guard page, RING_SLOTS slots, guard page */
	unsigned char *slots;
	struct ftr_mr *mr;
};

static void staging_open(struct staging *st, struct pair *p, unsigned nslots)
{
	unsigned char buf[256];
	struct ftr_wire_hdr hdr;
	size_t len = ((size_t)RING_SLOTS + 2) * PAGE;

	st->mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(st->mem != MAP_FAILED);
	memset(st->mem, 0x5a, len);
	st->slots = st->mem + PAGE;
	ck_assert_int_eq(ftr_chan_reg_mem(p->rx, st->slots, (size_t)nslots * PAGE, FTR_MR_STAGING,
					  &st->mr), 0);
	ck_assert_int_eq(send_heartbeat(p->rx, 99), 0);
	ck_assert_int_eq(recv_head(p->tx, buf, &hdr, 5000), FTR_WIRE_HDR_LEN + 24);
	ck_assert_uint_eq(hdr.seq, 99);
}

static void staging_close(struct staging *st)
{
	if (st->mr)
		ftr_mr_dereg(st->mr);
	munmap(st->mem, ((size_t)RING_SLOTS + 2) * PAGE);
}

static bool all_bytes(const unsigned char *p, size_t len, unsigned char v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* ---- connect, accept, names ---------------------------------------------------- */

START_TEST(test_connect_accept)
{
	struct ftr_tp_opts o = opts_for(NULL);
	unsigned char *buf = malloc(HEAD_CAP);
	struct ftr_wire_hdr hdr;
	struct ftr_rdma_counters rc;
	char want[96];
	struct pair p;

	ck_assert_ptr_nonnull(buf);
	pair_open_opts(&p, &o);
	ck_assert_str_eq(ftr_chan_transport(p.tx), "rdma");
	ck_assert_str_eq(ftr_chan_transport(p.rx), "rdma");
	snprintf(want, sizeof(want), "rdma:%s:%u", rdma_ip, ftr_listener_port(p.l));
	ck_assert_str_eq(ftr_chan_peer(p.tx), want);
	snprintf(want, sizeof(want), "rdma:%s:", rdma_ip);
	ck_assert_msg(!strncmp(ftr_chan_peer(p.rx), want, strlen(want)), "peer %s",
		      ftr_chan_peer(p.rx));

	/* Both directions. */
	ck_assert_int_eq(send_heartbeat(p.tx, 1), 0);
	ck_assert_int_eq(send_heartbeat(p.rx, 2), 0);
	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 5000), FTR_WIRE_HDR_LEN + 24);
	ck_assert_uint_eq(hdr.seq, 1);
	ck_assert_int_eq(recv_head(p.tx, buf, &hdr, 5000), FTR_WIRE_HDR_LEN + 24);
	ck_assert_uint_eq(hdr.seq, 2);

	ck_assert_int_eq(ftr_rdma_get_counters(p.tx, &rc), 0);
	ck_assert_uint_gt(rc.msg_size, 0);
	ck_assert_uint_gt(rc.recv_depth, 1);
	ck_assert_uint_eq(rc.peer_staging, 0);
	pair_close(&p);
	free(buf);
}
END_TEST

/* ---- records of every shape, both modes ------------------------------------------ */

START_TEST(test_records_roundtrip)
{
	const char *mode = modes[_i];
	struct pair p;
	struct ftr_rec *rec = calloc(1, sizeof(*rec));
	unsigned char *buf = malloc(HEAD_CAP);
	/* A blob larger than one message, in odd pieces. */
	static unsigned char blob[100000 + 1 + 50003], got[sizeof(blob)];
	struct iovec parts[3] = {
		{ blob, 100000 }, { blob + 100000, 1 }, { blob + 100001, 50003 },
	};
	struct iovec dst[2] = { { got, 17 }, { got + 17, sizeof(got) - 17 } };
	struct ftr_wire_hdr hdr;

	ck_assert(rec && buf);
	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (unsigned char)(i * 7 + 3);
	pair_open(&p, mode);

	ck_assert_int_eq(send_heartbeat(p.tx, 1), 0);
	rec->hdr.type = FTR_REC_BLOB;
	rec->hdr.seq = 2;
	rec->hdr.data_len = sizeof(blob);
	rec->u.blob.len = sizeof(blob);
	ck_assert_int_eq(ftr_chan_send_rec(p.tx, rec, parts, 3), 0);
	ck_assert_int_eq(ftr_chan_send_rec(p.tx, rec, parts, 2), -EINVAL);
	rec->hdr.seq = 3;
	ck_assert_int_eq(ftr_chan_send_rec(p.tx, rec, parts, 3), 0); /* skipped below */
	ck_assert_int_eq(send_heartbeat(p.tx, 4), 0);

	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 5000), 40 + 24);
	ck_assert_uint_eq(hdr.type, FTR_REC_HEARTBEAT);
	ck_assert_uint_eq(hdr.seq, 1);
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, NULL, 0), 0);

	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 5000), 40 + 8);
	ck_assert_uint_eq(hdr.type, FTR_REC_BLOB);
	ck_assert_uint_eq(hdr.data_len, sizeof(blob));
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, dst, 1), -EINVAL);
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, dst, 2), 0);
	ck_assert_mem_eq(got, blob, sizeof(blob));

	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 5000), 40 + 8);
	ck_assert_uint_eq(hdr.seq, 3);
	ck_assert_int_eq(ftr_chan_skip_data(p.rx, hdr.data_len), 0);

	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 5000), 40 + 24);
	ck_assert_uint_eq(hdr.seq, 4);

	ck_assert_int_eq(ftr_chan_send(p.tx, NULL, 0), 0);
	ck_assert_int_eq(ftr_chan_flush(p.tx), 0);
	pair_close(&p);
	free(rec);
	free(buf);
}
END_TEST

/* ---- page batches into staging iovecs ---------------------------------------------- */

enum place {
	PLACE_TWO_SIDED,	/* no staging registered: payload inline */
	PLACE_ONE_SIDED,	/* staging advertised, slots given, bounce on the sender */
	PLACE_ONE_SIDED_ZC,	/* ... and the source registered: zero copy */
	PLACE_ONE_SIDED_COPY,	/* ... but the receiver reads into other memory */
};

static void pages_case(const char *mode, enum place how)
{
	const int nrecs = 24;
	bool slots = how != PLACE_TWO_SIDED;
	bool one_sided = slots && !strcmp(mode, "write");
	struct image im;
	struct staging st = { 0 };
	struct pair p;
	struct sender s;
	struct ftr_mr *src_mr = NULL;
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char *other = malloc((size_t)REC_PAGES * PAGE);
	struct iovec dst[REC_PAGES];
	struct ftr_wire_hdr hdr;
	struct ftr_chan_stats ts, rs;
	struct ftr_rdma_counters tc, rc;
	uint64_t bytes = 0, data = 0;

	ck_assert(buf && other);
	image_make(&im, (size_t)nrecs * REC_PAGES, 0x1234 + how, slots);
	pair_open(&p, mode);
	if (slots)
		staging_open(&st, &p, RING_SLOTS);
	if (how == PLACE_ONE_SIDED_ZC)
		ck_assert_int_eq(ftr_chan_reg_mem(p.tx, im.pages, im.npages * PAGE, FTR_MR_SOURCE,
						  &src_mr), 0);
	if (!slots) {
		/* Scatter into the ring anyway, like the standby does. */
		st.mem = mmap(NULL, ((size_t)RING_SLOTS + 2) * PAGE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ck_assert(st.mem != MAP_FAILED);
		st.slots = st.mem + PAGE;
	}

	s = (struct sender){ .c = p.tx, .recs = im.recs, .nrecs = nrecs, .per_call = 3 };
	sender_start(&s);
	for (int r = 0; r < nrecs; r++) {
		ssize_t n = recv_head(p.rx, buf, &hdr, 10000);

		ck_assert_int_eq(n, (ssize_t)im.recs[r].head_len);
		ck_assert_mem_eq(buf, im.recs[r].head, (size_t)n);
		ck_assert_uint_eq(hdr.seq, (uint64_t)r);
		ck_assert_uint_eq(hdr.data_len, REC_PAGES * PAGE);
		for (unsigned i = 0; i < REC_PAGES; i++) {
			if (how == PLACE_ONE_SIDED_COPY)
				dst[i] = (struct iovec){ other + (size_t)(REC_PAGES - 1 - i) * PAGE, PAGE };
			else
				dst[i] = (struct iovec){ st.slots + (size_t)slot_of(r, i) * PAGE, PAGE };
		}
		ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, dst, REC_PAGES), 0);
		for (unsigned i = 0; i < REC_PAGES; i++)
			ck_assert_msg(!memcmp(dst[i].iov_base,
					      im.pages + ((size_t)r * REC_PAGES + i) * PAGE, PAGE),
				      "record %d page %u differs", r, i);
		bytes += (uint64_t)n + hdr.data_len;
		data += hdr.data_len;
	}
	ck_assert_int_eq(sender_join(&s), 0);
	/* Nothing outside the ring was touched. */
	ck_assert(all_bytes(st.mem, PAGE, slots ? 0x5a : 0));
	ck_assert(all_bytes(st.slots + (size_t)RING_SLOTS * PAGE, PAGE, slots ? 0x5a : 0));

	ftr_chan_get_stats(p.tx, &ts);
	ftr_chan_get_stats(p.rx, &rs);
	ck_assert_uint_eq(ts.tx_records, (uint64_t)nrecs);
	ck_assert_uint_eq(rs.rx_records, (uint64_t)nrecs);
	ck_assert_uint_eq(ts.tx_bytes, bytes);
	ck_assert_uint_eq(rs.rx_bytes, bytes);
	ck_assert_uint_gt(ts.tx_syscalls, 0);
	ck_assert_uint_gt(rs.rx_syscalls, 0);

	ck_assert_int_eq(ftr_rdma_get_counters(p.tx, &tc), 0);
	ck_assert_int_eq(ftr_rdma_get_counters(p.rx, &rc), 0);
	ck_assert_uint_eq(tc.peer_staging, one_sided ? 1 : 0);
	if (one_sided) {
		ck_assert_uint_eq(tc.write_bytes, data);
		ck_assert_uint_gt(tc.writes, 0);
		/* Consecutive pieces with consecutive slots share a WRITE:
		 * the even records need far fewer than one per page. */
		ck_assert_uint_lt(tc.writes, (uint64_t)nrecs * REC_PAGES * 3 / 4);
		ck_assert_uint_eq(tc.write_zc_bytes, how == PLACE_ONE_SIDED_ZC ? data : 0);
		ck_assert_uint_lt(tc.inline_bytes, bytes - data + 1);
		ck_assert_uint_eq(rc.rx_placed_bytes, data);
		ck_assert_uint_eq(rc.rx_placed_copied, how == PLACE_ONE_SIDED_COPY ? data : 0);
	} else {
		ck_assert_uint_eq(tc.writes, 0);
		ck_assert_uint_eq(tc.inline_bytes, bytes);
		ck_assert_uint_eq(rc.rx_placed_bytes, 0);
	}
	fprintf(stderr, "pages [%s/%d]: %llu sends, %llu writes, %llu credit writes by rx, "
		"%llu credit waits\n", mode, how, (unsigned long long)tc.sends,
		(unsigned long long)tc.writes, (unsigned long long)rc.credit_writes,
		(unsigned long long)tc.credit_waits);

	if (src_mr)
		ftr_mr_dereg(src_mr);
	if (slots) {
		staging_close(&st);
	} else {
		munmap(st.mem, ((size_t)RING_SLOTS + 2) * PAGE);
	}
	pair_close(&p);
	image_free(&im);
	free(other);
	free(buf);
}

START_TEST(test_pages_two_sided)
{
	pages_case(modes[_i], PLACE_TWO_SIDED);
}
END_TEST

START_TEST(test_pages_staging)
{
	pages_case(modes[_i], PLACE_ONE_SIDED);
}
END_TEST

START_TEST(test_pages_zero_copy)
{
	pages_case("write", PLACE_ONE_SIDED_ZC);
}
END_TEST

START_TEST(test_pages_copy_out)
{
	pages_case("write", PLACE_ONE_SIDED_COPY);
}
END_TEST

/* ---- many small records: flow control over and over ------------------------------- */

struct hb_sender {
	struct ftr_chan *c;
	int n;
	int ret;
	pthread_t th;
};

static void *hb_main(void *arg)
{
	struct hb_sender *h = arg;

	h->ret = 0;
	for (int i = 0; i < h->n && !h->ret; i++)
		h->ret = send_heartbeat(h->c, (uint64_t)i);
	return NULL;
}

START_TEST(test_many_records)
{
	const int n = 20000;
	unsigned char *buf = malloc(HEAD_CAP);
	struct hb_sender h;
	struct ftr_wire_hdr hdr;
	struct ftr_rdma_counters rc;
	struct pair p;

	ck_assert_ptr_nonnull(buf);
	pair_open(&p, modes[_i]);
	h = (struct hb_sender){ .c = p.tx, .n = n };
	ck_assert_int_eq(pthread_create(&h.th, NULL, hb_main, &h), 0);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 10000), 40 + 24);
		ck_assert_uint_eq(hdr.seq, (uint64_t)i);
		/* A slow reader now and then: the sender must wait, not overrun. */
		if (i % 5000 == 17)
			sleep_ms(200);
	}
	pthread_join(h.th, NULL);
	ck_assert_int_eq(h.ret, 0);
	ck_assert_int_eq(ftr_rdma_get_counters(p.rx, &rc), 0);
	ck_assert_uint_gt(rc.credit_writes, 0);
	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 50), -EAGAIN);
	pair_close(&p);
	free(buf);
}
END_TEST

/* ---- several channels of one session at once -------------------------------------- */

struct chan_job {
	struct ftr_chan *tx, *rx;
	struct image im;
	unsigned char *ring;
	int ret;
	pthread_t sth, rth;
};

static void *job_recv(void *arg)
{
	struct chan_job *j = arg;
	unsigned char *buf = malloc(HEAD_CAP);
	struct ftr_wire_hdr hdr;
	struct iovec dst[REC_PAGES];

	j->ret = buf ? 0 : -ENOMEM;
	for (int r = 0; r < j->im.nrecs && !j->ret; r++) {
		ssize_t n = recv_head(j->rx, buf, &hdr, 10000);

		if (n != (ssize_t)j->im.recs[r].head_len || hdr.seq != (uint64_t)r) {
			j->ret = n < 0 ? (int)n : -EPROTO;
			break;
		}
		for (unsigned i = 0; i < REC_PAGES; i++)
			dst[i] = (struct iovec){ j->ring + (size_t)i * PAGE, PAGE };
		j->ret = ftr_chan_recv_data(j->rx, &hdr, dst, REC_PAGES);
		if (!j->ret && memcmp(j->ring, j->im.pages + (size_t)r * REC_PAGES * PAGE,
				      (size_t)REC_PAGES * PAGE))
			j->ret = -EILSEQ;
	}
	free(buf);
	return NULL;
}

START_TEST(test_several_channels)
{
	enum { NCH = 4 };	/* control, two data, urgent */
	struct ftr_tp_opts o = opts_for(NULL);
	struct chan_job job[NCH];
	struct sender snd[NCH];
	struct pair p;

	pair_open_opts(&p, &o);
	for (int k = 0; k < NCH; k++) {
		memset(&job[k], 0, sizeof(job[k]));
		if (k == 0) {
			job[k].tx = p.tx;
			job[k].rx = p.rx;
		} else {
			pair_add(&p, &o, &job[k].tx, &job[k].rx);
		}
		image_make(&job[k].im, (size_t)8 * REC_PAGES, 100 + (uint64_t)k, false);
		job[k].ring = malloc((size_t)REC_PAGES * PAGE);
		ck_assert_ptr_nonnull(job[k].ring);
	}
	for (int k = 0; k < NCH; k++) {
		snd[k] = (struct sender){ .c = job[k].tx, .recs = job[k].im.recs,
					  .nrecs = job[k].im.nrecs, .per_call = 2 };
		sender_start(&snd[k]);
		ck_assert_int_eq(pthread_create(&job[k].rth, NULL, job_recv, &job[k]), 0);
	}
	for (int k = 0; k < NCH; k++) {
		ck_assert_int_eq(sender_join(&snd[k]), 0);
		pthread_join(job[k].rth, NULL);
		ck_assert_msg(job[k].ret == 0, "channel %d: %s", k, strerror(-job[k].ret));
	}
	for (int k = 1; k < NCH; k++) {
		ftr_chan_close(job[k].tx);
		ftr_chan_close(job[k].rx);
	}
	for (int k = 0; k < NCH; k++) {
		image_free(&job[k].im);
		free(job[k].ring);
	}
	pair_close(&p);
}
END_TEST

/* ---- timeouts and wake-ups ------------------------------------------------------- */

START_TEST(test_idle_and_stall)
{
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char *page = calloc(1, PAGE);
	unsigned char head[FTR_WIRE_MAX_ENCODED];
	struct ftr_tx_rec tx;
	struct ftr_wire_hdr hdr;
	struct iovec dst[2];
	uint64_t t0;
	struct pair p;

	ck_assert(buf && page);
	pair_open(&p, "write");
	t0 = now_ms();
	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 150), -EAGAIN);
	ck_assert_uint_ge(now_ms() - t0, 140);

	/* A head announcing two pages, followed by only one: the reader
	 * stalls mid-record. */
	tx = (struct ftr_tx_rec){
		.head = head, .head_len = encode_pages(head, 5, 2, 0),
		.data = &(struct iovec){ page, PAGE }, .ndata = 1,
	};
	ck_assert_int_eq(ftr_chan_send(p.tx, &tx, 1), 0);
	ftr_chan_set_stall_timeout(p.rx, 300);
	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 5000), (ssize_t)tx.head_len);
	dst[0] = (struct iovec){ buf, PAGE };
	dst[1] = (struct iovec){ buf + PAGE, PAGE };
	t0 = now_ms();
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, dst, 2), -ETIMEDOUT);
	ck_assert_uint_ge(now_ms() - t0, 280);
	ck_assert_uint_lt(now_ms() - t0, 3000);
	pair_close(&p);
	free(page);
	free(buf);
}
END_TEST

struct blocked {
	struct ftr_chan *c;
	bool send;
	int ret;
	uint64_t ms;
	struct image *im;
	pthread_t th;
};

static void *blocked_main(void *arg)
{
	struct blocked *b = arg;
	uint64_t t0 = now_ms();

	if (b->send) {
		b->ret = 0;
		/* The peer reads nothing: credits run out and the send waits. */
		for (int i = 0; i < 1000 && !b->ret; i++)
			b->ret = ftr_chan_send(b->c, b->im->recs, b->im->nrecs);
	} else {
		unsigned char buf[128];
		struct ftr_wire_hdr hdr;

		b->ret = (int)ftr_chan_recv_head(b->c, buf, sizeof(buf), &hdr, -1, NULL);
	}
	b->ms = now_ms() - t0;
	return NULL;
}

START_TEST(test_shutdown_wakes)
{
	struct blocked br = { 0 }, bs = { 0 };
	struct image im;
	struct pair p;

	image_make(&im, (size_t)4 * REC_PAGES, 7, false);
	pair_open(&p, "write");
	ftr_chan_set_stall_timeout(p.tx, -1);
	br = (struct blocked){ .c = p.rx, .send = false };
	bs = (struct blocked){ .c = p.tx, .send = true, .im = &im };
	ck_assert_int_eq(pthread_create(&br.th, NULL, blocked_main, &br), 0);
	sleep_ms(300);
	ftr_chan_shutdown(p.rx);
	pthread_join(br.th, NULL);
	ck_assert_int_eq(br.ret, -ESHUTDOWN);

	ck_assert_int_eq(pthread_create(&bs.th, NULL, blocked_main, &bs), 0);
	sleep_ms(1500);
	ftr_chan_shutdown(p.tx);
	pthread_join(bs.th, NULL);
	ck_assert_int_eq(bs.ret, -ESHUTDOWN);
	ck_assert_int_eq(ftr_chan_send(p.tx, im.recs, 1), -ESHUTDOWN);
	pair_close(&p);
	image_free(&im);
}
END_TEST

START_TEST(test_send_stall_timeout)
{
	struct blocked bs;
	struct image im;
	struct ftr_rdma_counters tc;
	struct pair p;

	image_make(&im, (size_t)4 * REC_PAGES, 8, false);
	pair_open(&p, "write");
	ftr_chan_set_stall_timeout(p.tx, 500);
	bs = (struct blocked){ .c = p.tx, .send = true, .im = &im };
	ck_assert_int_eq(pthread_create(&bs.th, NULL, blocked_main, &bs), 0);
	pthread_join(bs.th, NULL);
	ck_assert_int_eq(bs.ret, -ETIMEDOUT);
	ck_assert_uint_lt(bs.ms, 10000);
	ck_assert_int_eq(ftr_rdma_get_counters(p.tx, &tc), 0);
	ck_assert_uint_gt(tc.credit_waits, 0);
	pair_close(&p);
	image_free(&im);
}
END_TEST

/* ---- orderly close at a boundary and mid-record -------------------------------------- */

START_TEST(test_close_clean_and_midway)
{
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char head[FTR_WIRE_MAX_ENCODED];
	unsigned char *page = calloc(1, PAGE);
	struct ftr_wire_hdr hdr;
	struct ftr_tx_rec tx;
	struct iovec dst[2];
	struct pair p;

	ck_assert(buf && page);
	pair_open(&p, "write");
	ck_assert_int_eq(send_heartbeat(p.tx, 1), 0);
	ftr_chan_close(p.tx);
	p.tx = NULL;
	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 5000), 40 + 24);
	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 5000), -ENOTCONN);
	ck_assert_int_eq(send_heartbeat(p.rx, 2), -EPIPE);
	ftr_chan_close(p.rx);
	p.rx = NULL;

	/* Mid-record: the head promises two pages, one comes, then FIN. */
	pair_add(&p, &(struct ftr_tp_opts){ .transport = "rdma", .device = rdma_dev },
		 &p.tx, &p.rx);
	tx = (struct ftr_tx_rec){
		.head = head, .head_len = encode_pages(head, 1, 2, 0),
		.data = &(struct iovec){ page, PAGE }, .ndata = 1,
	};
	ck_assert_int_eq(ftr_chan_send(p.tx, &tx, 1), 0);
	ftr_chan_close(p.tx);
	p.tx = NULL;
	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 5000), (ssize_t)tx.head_len);
	dst[0] = (struct iovec){ buf, PAGE };
	dst[1] = (struct iovec){ buf + PAGE, PAGE };
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, dst, 2), -ECONNRESET);
	pair_close(&p);
	free(page);
	free(buf);
}
END_TEST

/* ---- a peer process dies mid-batch --------------------------------------------------- */

/* Forks a peer before this process touches RDMA. The child waits for a
 * port on the pipe, connects, runs role, and dies without closing. */
enum peer_role {
	PEER_SEND_HALF,	/* sends a record head and half of its data, then dies */
	PEER_READ_SOME,	/* accepts records, reads two, then dies */
};

static pid_t fork_peer(enum peer_role role, int *wfd)
{
	int pfd[2];
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct ftr_tp_opts o = opts_for("write");
		unsigned char *buf = malloc(HEAD_CAP);
		struct ftr_wire_hdr hdr;
		struct ftr_chan *c;
		struct image im;
		uint16_t port;

		close(pfd[1]);
		if (read(pfd[0], &port, sizeof(port)) != sizeof(port))
			_exit(2);
		if (ftr_tp_connect(&o, addr_of(port), 10000, &c))
			_exit(3);
		if (role == PEER_SEND_HALF) {
			unsigned char head[FTR_WIRE_MAX_ENCODED];
			struct ftr_tx_rec tx;

			image_make(&im, REC_PAGES, 3, false);
			tx = (struct ftr_tx_rec){
				.head = head, .head_len = encode_pages(head, 0, REC_PAGES, 0),
				.data = im.iov, .ndata = REC_PAGES / 2,
			};
			if (ftr_chan_send(c, &tx, 1) || ftr_chan_flush(c))
				_exit(4);
		} else {
			for (int i = 0; i < 2; i++)
				if (recv_head(c, buf, &hdr, 10000) < 0 ||
				    ftr_chan_skip_data(c, hdr.data_len))
					_exit(5);
		}
		sleep_ms(200);
		/* Dies like a crash: the kernel tears the connection down. */
		kill(getpid(), SIGKILL);
		_exit(6);
	}
	close(pfd[0]);
	*wfd = pfd[1];
	return pid;
}

static struct ftr_chan *accept_peer(struct ftr_listener **l, int wfd)
{
	char addr[96];
	uint16_t port;
	struct ftr_chan *c;
	struct ftr_tp_opts o = opts_for("write");

	snprintf(addr, sizeof(addr), "%s:0", rdma_ip);
	ck_assert_int_eq(ftr_tp_listen(&o, addr, l), 0);
	port = ftr_listener_port(*l);
	ck_assert_int_eq(write(wfd, &port, sizeof(port)), (ssize_t)sizeof(port));
	close(wfd);
	ck_assert_int_eq(ftr_tp_accept(*l, 10000, &c), 0);
	return c;
}

START_TEST(test_peer_dies_mid_record)
{
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char *ring = malloc((size_t)REC_PAGES * PAGE);
	struct iovec dst[REC_PAGES];
	struct ftr_listener *l;
	struct ftr_wire_hdr hdr;
	struct ftr_chan *c;
	uint64_t t0;
	int wfd, st, ret;
	pid_t pid;

	ck_assert(buf && ring);
	pid = fork_peer(PEER_SEND_HALF, &wfd);
	c = accept_peer(&l, wfd);
	ftr_chan_set_stall_timeout(c, 20000); /* the error must come from the death */
	ck_assert_int_gt(recv_head(c, buf, &hdr, 10000), 0);
	for (unsigned i = 0; i < REC_PAGES; i++)
		dst[i] = (struct iovec){ ring + (size_t)i * PAGE, PAGE };
	t0 = now_ms();
	ret = ftr_chan_recv_data(c, &hdr, dst, REC_PAGES);
	ck_assert_msg(ret == -ECONNRESET, "recv_data after the peer died: %d (%s)", ret,
		      strerror(-ret));
	ck_assert_uint_lt(now_ms() - t0, 10000);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFSIGNALED(st));
	ftr_chan_close(c);
	ftr_listener_close(l);
	free(ring);
	free(buf);
}
END_TEST

START_TEST(test_peer_dies_while_sending)
{
	struct ftr_listener *l;
	struct ftr_chan *c;
	struct image im;
	uint64_t t0;
	int wfd, st, ret = 0;
	pid_t pid;

	pid = fork_peer(PEER_READ_SOME, &wfd);
	image_make(&im, (size_t)16 * REC_PAGES, 4, false);
	c = accept_peer(&l, wfd);
	ftr_chan_set_stall_timeout(c, 20000);
	t0 = now_ms();
	for (int i = 0; i < 1000 && !ret; i++)
		ret = ftr_chan_send(c, im.recs, im.nrecs);
	ck_assert_msg(ret == -EPIPE || ret == -ECONNRESET, "send after the peer died: %d (%s)",
		      ret, strerror(-ret));
	ck_assert_uint_lt(now_ms() - t0, 15000);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ftr_chan_close(c);
	ftr_listener_close(l);
	image_free(&im);
}
END_TEST

/* ---- misdirected one-sided writes are errors, never silent corruption ------------- */

/* A pair with staging of nslots advertised, and a one-page record whose
 * slot is *slot. */
static void oneside_fixture(struct pair *p, struct staging *st, unsigned nslots,
			    unsigned char *head, struct iovec *piece, struct ftr_tx_rec *tx,
			    uint64_t *slot)
{
	pair_open(p, "write");
	staging_open(st, p, nslots);
	fill_page(piece->iov_base, 77, 0);
	*tx = (struct ftr_tx_rec){
		.head = head, .head_len = encode_pages(head, 1, 1, 0),
		.data = piece, .ndata = 1, .slot = slot,
	};
}

START_TEST(test_slot_out_of_range)
{
	const unsigned nslots = 8;
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char head[FTR_WIRE_MAX_ENCODED];
	unsigned char *page = malloc(PAGE);
	struct iovec piece;
	struct staging st = { 0 };
	struct ftr_tx_rec tx;
	struct ftr_wire_hdr hdr;
	struct iovec dst;
	uint64_t slot;
	struct pair p;
	int ret;

	ck_assert(buf && page);
	piece = (struct iovec){ page, PAGE };
	oneside_fixture(&p, &st, nslots, head, &piece, &tx, &slot);

	/* The last granted slot works. */
	slot = nslots - 1;
	ck_assert_int_eq(ftr_chan_send(p.tx, &tx, 1), 0);
	ck_assert_int_gt(recv_head(p.rx, buf, &hdr, 5000), 0);
	dst = (struct iovec){ st.slots + (size_t)slot * PAGE, PAGE };
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, &dst, 1), 0);
	ck_assert_mem_eq(dst.iov_base, page, PAGE);

	/* One past it is refused before anything is posted... */
	slot = nslots;
	ck_assert_int_eq(ftr_chan_send(p.tx, &tx, 1), -ERANGE);
	slot = UINT64_MAX / 2;
	ck_assert_int_eq(ftr_chan_send(p.tx, &tx, 1), -ERANGE);
	/* ...and the channel goes on. */
	ck_assert_int_eq(send_heartbeat(p.tx, 5), 0);
	ck_assert_int_eq(recv_head(p.rx, buf, &hdr, 5000), 40 + 24);
	ck_assert_uint_eq(hdr.seq, 5);

	/* Without the sender's check, the NIC refuses the write: both ends
	 * fail, and the memory right after the staging stays untouched. */
	ck_assert_int_eq(ftr_rdma_set_knob(p.tx, FTR_RDMA_KNOB_NO_RANGE_CHECK, 1), 0);
	slot = nslots;
	ret = ftr_chan_send(p.tx, &tx, 1);
	if (!ret)
		ret = ftr_chan_flush(p.tx);
	ck_assert_int_eq(ret, -EIO);
	ret = (int)recv_head(p.rx, buf, &hdr, 5000);
	ck_assert_msg(ret == -ECONNRESET || ret == -EIO, "receiver: %d (%s)", ret, strerror(-ret));
	ck_assert(all_bytes(st.slots + (size_t)nslots * PAGE, PAGE, 0x5a));
	ck_assert(all_bytes(st.mem, PAGE, 0x5a));

	staging_close(&st);
	pair_close(&p);
	free(page);
	free(buf);
}
END_TEST

START_TEST(test_wrong_rkey)
{
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char head[FTR_WIRE_MAX_ENCODED];
	unsigned char *page = malloc(PAGE);
	struct iovec piece;
	struct staging st = { 0 };
	struct ftr_tx_rec tx;
	struct ftr_wire_hdr hdr;
	uint64_t slot = 3, t0;
	struct pair p;
	int ret;

	ck_assert(buf && page);
	piece = (struct iovec){ page, PAGE };
	oneside_fixture(&p, &st, RING_SLOTS, head, &piece, &tx, &slot);
	ck_assert_int_eq(ftr_rdma_set_knob(p.tx, FTR_RDMA_KNOB_RKEY_XOR, 0x5a5a00), 0);
	t0 = now_ms();
	ret = ftr_chan_send(p.tx, &tx, 1);
	if (!ret)
		ret = ftr_chan_flush(p.tx);
	ck_assert_int_eq(ret, -EIO);
	/* Broken for good. */
	ck_assert_int_eq(send_heartbeat(p.tx, 1), -EIO);
	ret = (int)recv_head(p.rx, buf, &hdr, 5000);
	ck_assert_msg(ret == -ECONNRESET || ret == -EIO, "receiver: %d (%s)", ret, strerror(-ret));
	ck_assert_uint_lt(now_ms() - t0, 5000);
	ck_assert(all_bytes(st.slots, (size_t)RING_SLOTS * PAGE, 0x5a));
	staging_close(&st);
	pair_close(&p);
	free(page);
	free(buf);
}
END_TEST

/* ---- api: options, errors, registration limits -------------------------------------- */

START_TEST(test_check_opts_and_errors)
{
	struct ftr_tp_opts o = opts_for("write");
	struct ftr_listener *l;
	struct ftr_chan *c;
	char err[256], addr[96];
	uint64_t t0;

	ck_assert_int_eq(ftr_tp_check_opts(&o, err, sizeof(err)), 0);
	o.mode = "send";
	ck_assert_int_eq(ftr_tp_check_opts(&o, err, sizeof(err)), 0);
	o.mode = "writev";
	ck_assert_int_eq(ftr_tp_check_opts(&o, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "write, send"), "%s", err);

	/* No such device. */
	o = opts_for(NULL);
	o.device = "nosuchdev9";
	snprintf(addr, sizeof(addr), "%s:0", rdma_ip);
	ck_assert_int_eq(ftr_tp_listen(&o, addr, &l), -ENODEV);
	ck_assert_int_eq(ftr_tp_connect(&o, addr_of(9), 1000, &c), -ENODEV);

	/* Nobody listens: refused, quickly. */
	o = opts_for(NULL);
	ck_assert_int_eq(ftr_tp_listen(&o, addr, &l), 0);
	snprintf(addr, sizeof(addr), "%s:%u", rdma_ip, ftr_listener_port(l));
	ftr_listener_close(l);
	t0 = now_ms();
	ck_assert_int_eq(ftr_tp_connect(&o, addr, 5000, &c), -ECONNREFUSED);
	ck_assert_uint_lt(now_ms() - t0, 5000);

	/* An address no RDMA device has. */
	ck_assert_int_ne(ftr_tp_listen(&o, "192.0.2.1:0", &l), 0);
	/* Loopback cannot be routed by rdma_cm: an error, not a hang. */
	t0 = now_ms();
	ck_assert_int_ne(ftr_tp_connect(&o, "127.0.0.1:4791", 3000, &c), 0);
	ck_assert_uint_lt(now_ms() - t0, 6000);
}
END_TEST

START_TEST(test_accept_timeout_and_shutdown)
{
	struct ftr_tp_opts o = opts_for(NULL);
	struct ftr_listener *l;
	struct ftr_chan *c;
	char addr[96];
	uint64_t t0;

	snprintf(addr, sizeof(addr), "%s:0", rdma_ip);
	ck_assert_int_eq(ftr_tp_listen(&o, addr, &l), 0);
	t0 = now_ms();
	ck_assert_int_eq(ftr_tp_accept(l, 200, &c), -EAGAIN);
	ck_assert_uint_ge(now_ms() - t0, 190);
	ftr_listener_shutdown(l);
	ck_assert_int_eq(ftr_tp_accept(l, -1, &c), -ESHUTDOWN);
	ftr_listener_close(l);
}
END_TEST

/* Drops CAP_IPC_LOCK from this thread's effective set (root ignores
 * RLIMIT_MEMLOCK otherwise). */
static int drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -errno;
	d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	return syscall(SYS_capset, &h, d) ? -errno : 0;
}

START_TEST(test_memlock_limit)
{
	const size_t len = 16u << 20;
	/* Room for the pair's own buffers (about 2 MiB a channel), not for len. */
	struct rlimit rl = { 8u << 20, 8u << 20 };
	char log[4096] = "";
	unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				  -1, 0);
	struct ftr_mr *mr = NULL;
	int logfd[2], saved, ret;
	ssize_t n;
	struct pair p;

	ck_assert(mem != MAP_FAILED);
	memset(mem, 1, len);
	/* Before any RDMA call: uverbs refuses commands from a thread whose
	 * credentials changed after it opened the device. */
	ck_assert_int_eq(drop_ipc_lock(), 0);
	ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
	pair_open(&p, "write");
	ck_assert_int_eq(pipe2(logfd, O_NONBLOCK), 0);
	saved = dup(2);
	dup2(logfd[1], 2);
	ret = ftr_chan_reg_mem(p.rx, mem, len, FTR_MR_STAGING, &mr);
	dup2(saved, 2);
	close(saved);
	n = read(logfd[0], log, sizeof(log) - 1);
	log[n > 0 ? n : 0] = '\0';
	fprintf(stderr, "%s", log);
	ck_assert_int_eq(ret, -ENOMEM);
	ck_assert_msg(strstr(log, "RLIMIT_MEMLOCK") && strstr(log, "ulimit -l") &&
		      strstr(log, "LimitMEMLOCK"), "log: %s", log);
	/* The channel itself is unharmed. */
	ck_assert_int_eq(send_heartbeat(p.tx, 1), 0);
	pair_close(&p);
	munmap(mem, len);
}
END_TEST

/* ---- main ------------------------------------------------------------------------------ */

/* Exits 77 with the reason when no RDMA device is named or present. */
static void require_rdma(void)
{
	struct ibv_device **list;
	bool found = false;
	int n = 0;

	rdma_dev = getenv("FTREPL_RDMA_DEV");
	if (!rdma_dev || !*rdma_dev)
		rdma_dev = getenv("RXE_DEV");
	rdma_ip = getenv("FTREPL_RDMA_IP");
	if (!rdma_ip || !*rdma_ip)
		rdma_ip = getenv("RXE_IP");
	if (!rdma_dev || !*rdma_dev) {
		printf("check_rdma: skipped: no RDMA device named (set FTREPL_RDMA_DEV and "
		       "FTREPL_RDMA_IP, or run inside ../shared/rxe-vm where RXE_DEV is set)\n");
		exit(77);
	}
	if (!rdma_ip || !*rdma_ip) {
		printf("check_rdma: skipped: no address for %s (set FTREPL_RDMA_IP)\n", rdma_dev);
		exit(77);
	}
	list = ibv_get_device_list(&n);
	for (int i = 0; list && i < n; i++)
		if (!strcmp(ibv_get_device_name(list[i]), rdma_dev))
			found = true;
	if (list)
		ibv_free_device_list(list);
	if (!found) {
		printf("check_rdma: skipped: RDMA device %s not present (%d devices here)\n",
		       rdma_dev, n);
		exit(77);
	}
	printf("check_rdma: device %s, address %s\n", rdma_dev, rdma_ip);
}

static Suite *rdma_suite(void)
{
	Suite *s = suite_create("rdma");
	TCase *tm = tcase_create("modes");
	TCase *tp = tcase_create("placement");
	TCase *tf = tcase_create("failures");
	TCase *ta = tcase_create("api");

	/* TCG-emulated RDMA is slow: generous limits. */
	tcase_set_timeout(tm, 240);
	tcase_add_test(tm, test_connect_accept);
	tcase_add_loop_test(tm, test_records_roundtrip, 0, nmodes);
	tcase_add_loop_test(tm, test_many_records, 0, nmodes);
	tcase_add_test(tm, test_several_channels);
	suite_add_tcase(s, tm);

	tcase_set_timeout(tp, 240);
	tcase_add_loop_test(tp, test_pages_two_sided, 0, nmodes);
	tcase_add_loop_test(tp, test_pages_staging, 0, nmodes);
	tcase_add_test(tp, test_pages_zero_copy);
	tcase_add_test(tp, test_pages_copy_out);
	suite_add_tcase(s, tp);

	tcase_set_timeout(tf, 120);
	tcase_add_test(tf, test_idle_and_stall);
	tcase_add_test(tf, test_shutdown_wakes);
	tcase_add_test(tf, test_send_stall_timeout);
	tcase_add_test(tf, test_close_clean_and_midway);
	tcase_add_test(tf, test_peer_dies_mid_record);
	tcase_add_test(tf, test_peer_dies_while_sending);
	tcase_add_test(tf, test_slot_out_of_range);
	tcase_add_test(tf, test_wrong_rkey);
	suite_add_tcase(s, tf);

	tcase_set_timeout(ta, 60);
	tcase_add_test(ta, test_check_opts_and_errors);
	tcase_add_test(ta, test_accept_timeout_and_shutdown);
	tcase_add_test(ta, test_memlock_limit);
	suite_add_tcase(s, ta);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	setvbuf(stdout, NULL, _IOLBF, 0);
	require_rdma();
	sr = srunner_create(rdma_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
