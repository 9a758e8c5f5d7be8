/* SPDX-License-Identifier: MIT */
/*
 * Unit suite: the transport layer and the tcp backend, over real loopback
 * sockets (127.0.0.1, port 0).
 *
 * Cases in the "modes" test case run once per tcp mode (write, writev,
 * zerocopy, uring and uring-zc when built and io_uring works here; the
 * zero-copy modes also as "MODE+keep", with the fallback to the copying
 * mode disabled) through tcase_add_loop_test. The "zerocopy" test case
 * runs once per zero-copy mode: completions, flush, copied counts and the
 * fallback.
 * Threads: in most cases the test thread receives and a helper thread
 * sends (sender_main), or the test thread calls ftr_chan_shutdown() /
 * ftr_listener_shutdown() while a helper is blocked (blocked_main); each
 * helper is joined before the case ends. CK_FORK stays on: a crash fails
 * one case, not the suite.
 */
#include <check.h>
#include <errno.h>
#include <ifaddrs.h>
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
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ftrepl/transport.h>
#include <ftrepl/wire.h>

#define PAGE 4096u
#define REC_PAGES 256u
#define HEAD_CAP (FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY)

/* Every mode this build has; probe_modes() keeps those usable here in
 * modes[] and the zero-copy ones in zc_modes[]. */
static const char *const all_modes[] = {
	"write",
	"writev",
	"zerocopy",
	"zerocopy+keep",
#ifdef FTREPL_HAVE_URING
	"uring",
	"uring-zc",
	"uring-zc+keep",
#endif
};
#define ALL_MODES (int)(sizeof(all_modes) / sizeof(all_modes[0]))
static const char *modes[ALL_MODES];
static int nmodes;
static const char *zc_modes[2];
static int nzc_modes;

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

/* Page number n of a test image: every word distinct across pages. */
static void fill_page(void *p, uint64_t seed, uint64_t n)
{
	uint64_t *w = p;

	for (unsigned i = 0; i < PAGE / 8; i++)
		w[i] = mix64(seed ^ (n * 0x9E3779B97F4A7C15ull + i));
}

/* Order-sensitive checksum of a byte range (FNV-1a over 64-bit words). */
static uint64_t csum(uint64_t h, const void *p, size_t len)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < len / 8; i++)
		h = (h ^ w[i]) * 0x100000001B3ull;
	return h;
}

struct pair {
	struct ftr_listener *l;
	struct ftr_chan *tx; /* the connecting side sends (the primary) */
	struct ftr_chan *rx;
};

static void pair_open_opts(struct pair *p, const struct ftr_tp_opts *o)
{
	char addr[64];

	ck_assert_int_eq(ftr_tp_listen(o, "127.0.0.1:0", &p->l), 0);
	ck_assert_uint_ne(ftr_listener_port(p->l), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ftr_listener_port(p->l));
	ck_assert_int_eq(ftr_tp_connect(o, addr, 2000, &p->tx), 0);
	ck_assert_int_eq(ftr_tp_accept(p->l, 2000, &p->rx), 0);
}

/* "MODE" or "MODE+keep" (zero copy without the fallback) into o; the mode
 * name is written to base. */
static void mode_opts(const char *name, struct ftr_tp_opts *o, char *base, size_t len)
{
	const char *plus = strchr(name, '+');

	snprintf(base, len, "%.*s", plus ? (int)(plus - name) : (int)strlen(name), name);
	o->mode = base;
	o->zc_no_fallback = plus && !strcmp(plus, "+keep");
}

static void pair_open(struct pair *p, const char *mode)
{
	struct ftr_tp_opts o = { .transport = "tcp" };
	char base[32];

	mode_opts(mode, &o, base, sizeof(base));
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

/* Encodes a PAGES record for count pages first_page.. into head. */
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

static void heartbeat(struct ftr_rec *rec, uint64_t seq)
{
	memset(rec, 0, sizeof(*rec));
	rec->hdr.type = FTR_REC_HEARTBEAT;
	rec->hdr.seq = seq;
	rec->u.heartbeat.time_ns = seq * 1000;
	rec->u.heartbeat.committed = FTR_EPOCH_NONE;
	rec->u.heartbeat.acked = FTR_EPOCH_NONE;
}

static int send_heartbeat(struct ftr_chan *c, uint64_t seq)
{
	struct ftr_rec *rec = malloc(sizeof(*rec));
	int ret;

	ck_assert_ptr_nonnull(rec);
	heartbeat(rec, seq);
	ret = ftr_chan_send_rec(c, rec, NULL, 0);
	free(rec);
	return ret;
}

/* Sends len raw bytes as if they were a record head (malformed on purpose). */
static int send_raw(struct ftr_chan *c, const void *buf, size_t len, const struct iovec *data,
		    int ndata)
{
	struct ftr_tx_rec tx = { .head = buf, .head_len = len, .data = data, .ndata = ndata };

	return ftr_chan_send(c, &tx, 1);
}

/* ---- a sender thread ----------------------------------------------------------- */

struct sender {
	struct ftr_chan *c;
	const struct ftr_tx_rec *recs;
	int nrecs;
	int per_call;	/* records per ftr_chan_send */
	int repeat;	/* send recs this many times */
	int ret;
	atomic_bool done;
	pthread_t th;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;

	s->ret = 0;
	for (int rep = 0; rep < (s->repeat > 0 ? s->repeat : 1) && !s->ret; rep++)
		for (int i = 0; i < s->nrecs && !s->ret; i += s->per_call)
			s->ret = ftr_chan_send(s->c, s->recs + i,
					       s->nrecs - i < s->per_call ? s->nrecs - i : s->per_call);
	if (!s->ret)
		s->ret = ftr_chan_flush(s->c);
	atomic_store(&s->done, true);
	return NULL;
}

static void sender_start(struct sender *s)
{
	atomic_init(&s->done, false);
	ck_assert_int_eq(pthread_create(&s->th, NULL, sender_main, s), 0);
}

static int sender_join(struct sender *s)
{
	pthread_join(s->th, NULL);
	return s->ret;
}

/* A test image of npages pages and one record per REC_PAGES of it. */
struct image {
	unsigned char *pages;
	size_t npages;
	int nrecs;
	unsigned char (*heads)[FTR_WIRE_MAX_ENCODED];
	struct iovec *iov;
	struct ftr_tx_rec *recs;
};

static void image_make(struct image *im, size_t npages, uint64_t seed)
{
	im->npages = npages;
	im->nrecs = (int)(npages / REC_PAGES);
	im->pages = aligned_alloc(PAGE, npages * PAGE);
	im->heads = calloc((size_t)im->nrecs, sizeof(*im->heads));
	im->iov = calloc(npages, sizeof(*im->iov));
	im->recs = calloc((size_t)im->nrecs, sizeof(*im->recs));
	ck_assert(im->pages && im->heads && im->iov && im->recs);
	for (size_t n = 0; n < npages; n++) {
		fill_page(im->pages + n * PAGE, seed, n);
		im->iov[n] = (struct iovec){ im->pages + n * PAGE, PAGE };
	}
	for (int r = 0; r < im->nrecs; r++) {
		im->recs[r] = (struct ftr_tx_rec){
			.head = im->heads[r],
			.head_len = encode_pages(im->heads[r], (uint64_t)r, REC_PAGES,
						 (uint64_t)r * REC_PAGES),
			.data = im->iov + (size_t)r * REC_PAGES,
			.ndata = REC_PAGES,
		};
	}
}

static void image_free(struct image *im)
{
	free(im->pages);
	free(im->heads);
	free(im->iov);
	free(im->recs);
}

/* ---- records arrive intact, data scattered into separate slots ------------------ */

#define RING_SLOTS 512u

/* Slot of page i of record r: 37 is odd, so a record's 256 pages get
 * distinct slots, spread over the ring in no particular order. */
static unsigned slot_of(int r, unsigned i)
{
	return (i * 37u + (unsigned)r * 11u) % RING_SLOTS;
}

START_TEST(test_records_intact)
{
	const char *mode = modes[_i];
	const int nrecs = 9;
	struct image im;
	struct pair p;
	struct sender s = { 0 };
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char *ring[RING_SLOTS];
	struct iovec dst[REC_PAGES];
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	struct ftr_chan_stats ts, rs;
	uint64_t bytes = 0;

	ck_assert_ptr_nonnull(buf);
	/* Slots are separate allocations: nothing is contiguous by luck. */
	for (unsigned i = 0; i < RING_SLOTS; i++)
		ck_assert_ptr_nonnull(ring[i] = malloc(PAGE));
	image_make(&im, (size_t)nrecs * REC_PAGES, 0x1234);
	pair_open(&p, mode);

	s = (struct sender){ .c = p.tx, .recs = im.recs, .nrecs = nrecs, .per_call = 3 };
	sender_start(&s);
	for (int r = 0; r < nrecs; r++) {
		ssize_t n = ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 5000, &err);

		ck_assert_int_eq(n, (ssize_t)im.recs[r].head_len);
		ck_assert_mem_eq(buf, im.recs[r].head, (size_t)n);
		ck_assert_uint_eq(hdr.type, FTR_REC_PAGES);
		ck_assert_uint_eq(hdr.seq, (uint64_t)r);
		ck_assert_uint_eq(hdr.body_len, 8 + 16 * REC_PAGES);
		ck_assert_uint_eq(hdr.data_len, REC_PAGES * PAGE);
		for (unsigned i = 0; i < REC_PAGES; i++) {
			dst[i] = (struct iovec){ ring[slot_of(r, i)], PAGE };
			memset(ring[slot_of(r, i)], 0xee, PAGE);
		}
		ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, dst, REC_PAGES), 0);
		for (unsigned i = 0; i < REC_PAGES; i++)
			ck_assert_msg(!memcmp(ring[slot_of(r, i)],
					      im.pages + ((size_t)r * REC_PAGES + i) * PAGE, PAGE),
				      "record %d page %u differs", r, i);
		bytes += (uint64_t)n + hdr.data_len;
	}
	ck_assert_int_eq(sender_join(&s), 0);

	ftr_chan_get_stats(p.tx, &ts);
	ftr_chan_get_stats(p.rx, &rs);
	ck_assert_uint_eq(ts.tx_records, (uint64_t)nrecs);
	ck_assert_uint_eq(rs.rx_records, (uint64_t)nrecs);
	ck_assert_uint_eq(ts.tx_bytes, bytes);
	ck_assert_uint_eq(rs.rx_bytes, bytes);
	ck_assert_uint_gt(ts.tx_syscalls, 0);
	ck_assert_uint_gt(rs.rx_syscalls, 0);

	pair_close(&p);
	image_free(&im);
	for (unsigned i = 0; i < RING_SLOTS; i++)
		free(ring[i]);
	free(buf);
}
END_TEST

/* Small records, odd sizes, records without data, send_rec and skip_data. */
START_TEST(test_mixed_records)
{
	const char *mode = modes[_i];
	struct pair p;
	struct ftr_rec *rec = calloc(1, sizeof(*rec));
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char blob[1000 + 1 + 5003], got[sizeof(blob)];
	struct iovec parts[3] = {
		{ blob, 1000 }, { blob + 1000, 1 }, { blob + 1001, 5003 },
	};
	struct iovec dst[2] = { { got, 17 }, { got + 17, sizeof(got) - 17 } };
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;

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
	/* A data part that does not add up to data_len is refused. */
	ck_assert_int_eq(ftr_chan_send_rec(p.tx, rec, parts, 2), -EINVAL);
	rec->hdr.seq = 3;
	ck_assert_int_eq(ftr_chan_send_rec(p.tx, rec, parts, 3), 0); /* skipped below */
	ck_assert_int_eq(send_heartbeat(p.tx, 4), 0);

	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 2000, &err), 40 + 24);
	ck_assert_uint_eq(hdr.type, FTR_REC_HEARTBEAT);
	ck_assert_uint_eq(hdr.seq, 1);
	ck_assert_uint_eq(hdr.data_len, 0);
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, NULL, 0), 0);

	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 2000, &err), 40 + 8);
	ck_assert_uint_eq(hdr.type, FTR_REC_BLOB);
	ck_assert_uint_eq(hdr.data_len, sizeof(blob));
	/* iovecs that do not total data_len are refused before any read */
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, dst, 1), -EINVAL);
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, dst, 2), 0);
	ck_assert_mem_eq(got, blob, sizeof(blob));

	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 2000, &err), 40 + 8);
	ck_assert_uint_eq(hdr.seq, 3);
	ck_assert_int_eq(ftr_chan_skip_data(p.rx, hdr.data_len), 0);

	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 2000, &err), 40 + 24);
	ck_assert_uint_eq(hdr.seq, 4);

	/* Argument checks, and flush of a synchronous backend. */
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, FTR_WIRE_HDR_LEN - 1, &hdr, 0, &err), -EINVAL);
	ck_assert_int_eq(ftr_chan_send(p.tx, NULL, 1), -EINVAL);
	ck_assert_int_eq(ftr_chan_send(p.tx, NULL, 0), 0);
	ck_assert_int_eq(ftr_chan_flush(p.tx), 0);

	ck_assert_str_eq(ftr_chan_transport(p.rx), "tcp");
	ck_assert_msg(!strncmp(ftr_chan_peer(p.rx), "tcp:127.0.0.1:", 14), "peer %s",
		      ftr_chan_peer(p.rx));
	pair_close(&p);
	free(rec);
	free(buf);
}
END_TEST

/* ---- 64 MiB verified by checksum ------------------------------------------------ */

START_TEST(test_bulk_64m)
{
	const char *mode = modes[_i];
	const size_t npages = (64u << 20) / PAGE;
	const unsigned slots = 1024; /* 4 MiB ring */
	struct image im;
	struct pair p;
	struct sender s;
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char *ring = aligned_alloc(PAGE, (size_t)slots * PAGE);
	struct iovec dst[REC_PAGES];
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	uint64_t want = 0xcbf29ce484222325ull, got = want;
	uint64_t pos = 0, t0;

	ck_assert(buf && ring);
	image_make(&im, npages, 0xfeed);
	want = csum(want, im.pages, npages * PAGE);
	pair_open(&p, mode);

	t0 = now_ms();
	s = (struct sender){ .c = p.tx, .recs = im.recs, .nrecs = im.nrecs, .per_call = 4 };
	sender_start(&s);
	for (int r = 0; r < im.nrecs; r++) {
		ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 10000, &err),
				 (ssize_t)im.recs[r].head_len);
		ck_assert_uint_eq(hdr.seq, (uint64_t)r);
		for (unsigned i = 0; i < REC_PAGES; i++)
			dst[i] = (struct iovec){ ring + ((pos + i) % slots) * PAGE, PAGE };
		ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, dst, REC_PAGES), 0);
		for (unsigned i = 0; i < REC_PAGES; i++)
			got = csum(got, dst[i].iov_base, PAGE);
		pos += REC_PAGES;
	}
	ck_assert_int_eq(sender_join(&s), 0);
	ck_assert_msg(got == want, "checksum %016llx, want %016llx", (unsigned long long)got,
		      (unsigned long long)want);
	fprintf(stderr, "bulk 64 MiB [%s]: %llu ms\n", mode, (unsigned long long)(now_ms() - t0));
	pair_close(&p);
	image_free(&im);
	free(ring);
	free(buf);
}
END_TEST

/* ---- signals interrupt system calls all the time: nothing breaks ----------------- */

static atomic_int sig_count;

static void on_sigusr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&sig_count, 1);
}

struct pest {
	pthread_t targets[2];
	atomic_bool stop;
	pthread_t th;
};

static void *pest_main(void *arg)
{
	struct pest *p = arg;

	while (!atomic_load(&p->stop)) {
		pthread_kill(p->targets[0], SIGUSR1);
		pthread_kill(p->targets[1], SIGUSR1);
		nanosleep(&(struct timespec){ 0, 100000 }, NULL);
	}
	return NULL;
}

/*
 * SIGUSR1 without SA_RESTART hits the sender and the receiver every
 * 100 us while 64 MiB flow: blocked sendmsg() returns short counts or
 * EINTR, poll() and io_uring_enter() return EINTR. The stream must stay
 * byte-exact (short-write advance, EINTR retries).
 */
START_TEST(test_signals_mid_stream)
{
	const char *mode = modes[_i];
	struct sigaction sa = { .sa_handler = on_sigusr1 }; /* no SA_RESTART */
	const size_t npages = (32u << 20) / PAGE;
	struct image im;
	struct pair p;
	struct sender s;
	struct pest pest;
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char *got = malloc(REC_PAGES * PAGE);
	struct iovec dst = { got, REC_PAGES * PAGE };
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	uint64_t want = 0xcbf29ce484222325ull, sum = want;

	ck_assert(buf && got);
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	image_make(&im, npages, 0xabc);
	want = csum(csum(want, im.pages, npages * PAGE), im.pages, npages * PAGE);
	pair_open(&p, mode);

	s = (struct sender){ .c = p.tx, .recs = im.recs, .nrecs = im.nrecs, .per_call = 4,
			     .repeat = 2 };
	sender_start(&s);
	pest.targets[0] = s.th;
	pest.targets[1] = pthread_self();
	atomic_init(&pest.stop, false);
	ck_assert_int_eq(pthread_create(&pest.th, NULL, pest_main, &pest), 0);
	for (int r = 0; r < 2 * im.nrecs; r++) {
		ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 10000, &err),
				 (ssize_t)im.recs[r % im.nrecs].head_len);
		ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, &dst, 1), 0);
		sum = csum(sum, got, REC_PAGES * PAGE);
	}
	atomic_store(&pest.stop, true);
	pthread_join(pest.th, NULL);
	ck_assert_int_eq(sender_join(&s), 0);
	ck_assert_msg(sum == want, "stream corrupted under signals");
	ck_assert_int_gt(atomic_load(&sig_count), 10);
	pair_close(&p);
	image_free(&im);
	free(buf);
	free(got);
}
END_TEST

/* ---- timeouts ----------------------------------------------------------------- */

START_TEST(test_idle_eagain)
{
	const char *mode = modes[_i];
	unsigned char *buf = malloc(HEAD_CAP);
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	struct pair p;
	uint64_t t0, dt;

	ck_assert_ptr_nonnull(buf);
	pair_open(&p, mode);
	t0 = now_ms();
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 150, &err), -EAGAIN);
	dt = now_ms() - t0;
	ck_assert_msg(dt >= 140 && dt < 1500, "idle timeout of 150 ms took %llu ms",
		      (unsigned long long)dt);
	t0 = now_ms();
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 0, &err), -EAGAIN);
	ck_assert_uint_lt(now_ms() - t0, 100);
	/* The channel is still good after an idle timeout. */
	ck_assert_int_eq(send_heartbeat(p.tx, 7), 0);
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 2000, &err), 64);
	ck_assert_uint_eq(hdr.seq, 7);
	pair_close(&p);
	free(buf);
}
END_TEST

/* A peer stalls after `cut` bytes of a PAGES record: what the reader sees. */
static void stall_case(const char *mode, size_t cut)
{
	static unsigned char page[PAGE];
	unsigned char head[FTR_WIRE_MAX_ENCODED];
	unsigned char *buf = malloc(HEAD_CAP);
	struct iovec data[2] = { { page, PAGE }, { page, PAGE } };
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	struct pair p;
	size_t hl = encode_pages(head, 1, 2, 0);
	uint64_t t0, dt;
	int ret;

	ck_assert_ptr_nonnull(buf);
	pair_open(&p, mode);
	ftr_chan_set_stall_timeout(p.rx, 200);
	if (cut <= hl) {
		ck_assert_int_eq(send_raw(p.tx, head, cut, NULL, 0), 0);
	} else {
		data[1].iov_len = cut - hl - PAGE;
		ck_assert_int_eq(send_raw(p.tx, head, hl, data, 2), 0);
	}
	t0 = now_ms();
	ret = (int)ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 5000, &err);
	if (cut > hl) {
		ck_assert_int_eq(ret, (int)hl);
		t0 = now_ms();
		data[0].iov_base = buf;
		data[1] = (struct iovec){ buf + PAGE, PAGE };
		ret = ftr_chan_recv_data(p.rx, &hdr, data, 2);
	}
	dt = now_ms() - t0;
	ck_assert_msg(ret == -ETIMEDOUT, "cut at %zu: got %d", cut, ret);
	ck_assert_msg(dt >= 190 && dt < 2000, "stall of 200 ms took %llu ms at cut %zu",
		      (unsigned long long)dt, cut);
	pair_close(&p);
	free(buf);
}

START_TEST(test_stall_timeout)
{
	const char *mode = modes[_i];

	stall_case(mode, 20);			 /* half a header */
	stall_case(mode, FTR_WIRE_HDR_LEN + 20); /* header, half the body */
	stall_case(mode, 40 + 40 + PAGE + 100);	 /* head, a page and a bit */
}
END_TEST

/* ---- shutdown wakes blocked threads ------------------------------------------------ */

enum blocked_op { OP_RECV_HEAD, OP_RECV_DATA, OP_SEND, OP_ACCEPT };

struct blocked {
	enum blocked_op op;
	struct ftr_chan *c;
	struct ftr_listener *l;
	const struct ftr_tx_rec *recs;
	int nrecs, repeat;
	int ret;
	uint64_t t_end;
	atomic_bool done;
	pthread_t th;
};

static void *blocked_main(void *arg)
{
	struct blocked *b = arg;
	unsigned char *buf = malloc(HEAD_CAP);
	struct ftr_wire_hdr hdr = { 0 };
	struct ftr_wire_error err;
	struct iovec iov;
	struct ftr_chan *c;

	switch (b->op) {
	case OP_RECV_HEAD:
		b->ret = (int)ftr_chan_recv_head(b->c, buf, HEAD_CAP, &hdr, -1, &err);
		break;
	case OP_RECV_DATA:
		b->ret = (int)ftr_chan_recv_head(b->c, buf, HEAD_CAP, &hdr, 5000, &err);
		if (b->ret > 0) {
			iov = (struct iovec){ buf, hdr.data_len <= HEAD_CAP ? hdr.data_len : 0 };
			b->ret = ftr_chan_recv_data(b->c, &hdr, &iov, 1);
		}
		break;
	case OP_SEND:
		b->ret = 0;
		for (int i = 0; i < b->repeat && !b->ret; i++)
			b->ret = ftr_chan_send(b->c, b->recs, b->nrecs);
		break;
	case OP_ACCEPT:
		b->ret = ftr_tp_accept(b->l, -1, &c);
		if (!b->ret)
			ftr_chan_close(c);
		break;
	}
	b->t_end = now_ms();
	atomic_store(&b->done, true);
	free(buf);
	return NULL;
}

static void blocked_start(struct blocked *b)
{
	atomic_init(&b->done, false);
	ck_assert_int_eq(pthread_create(&b->th, NULL, blocked_main, b), 0);
}

START_TEST(test_shutdown_wakes_recv)
{
	const char *mode = modes[_i];
	static unsigned char page[PAGE];
	unsigned char head[FTR_WIRE_MAX_ENCODED];
	unsigned char buf[64];
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	struct blocked b = { .op = OP_RECV_HEAD };
	struct iovec one = { page, PAGE };
	struct pair p;
	uint64_t t0;

	/* Blocked waiting for a record, no idle limit. */
	pair_open(&p, mode);
	b.c = p.rx;
	blocked_start(&b);
	sleep_ms(150);
	ck_assert(!atomic_load(&b.done));
	t0 = now_ms();
	ftr_chan_shutdown(p.rx);
	pthread_join(b.th, NULL);
	ck_assert_int_eq(b.ret, -ESHUTDOWN);
	ck_assert_msg(b.t_end - t0 < 500, "woke after %llu ms", (unsigned long long)(b.t_end - t0));
	/* Later calls fail at once. */
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, sizeof(buf), &hdr, -1, &err), -ESHUTDOWN);
	ck_assert_int_eq(send_heartbeat(p.rx, 1), -ESHUTDOWN);
	pair_close(&p);

	/* Blocked mid-record (waiting for data), generous stall limit. */
	pair_open(&p, mode);
	ftr_chan_set_stall_timeout(p.rx, 60000);
	ck_assert_int_eq(send_raw(p.tx, head, encode_pages(head, 1, 1, 0), &one, 0), 0);
	b = (struct blocked){ .op = OP_RECV_DATA, .c = p.rx };
	blocked_start(&b);
	sleep_ms(150);
	ck_assert(!atomic_load(&b.done));
	t0 = now_ms();
	ftr_chan_shutdown(p.rx);
	pthread_join(b.th, NULL);
	ck_assert_int_eq(b.ret, -ESHUTDOWN);
	ck_assert_uint_lt(b.t_end - t0, 500);
	pair_close(&p);
}
END_TEST

/* 256 MiB toward a reader that never reads: the sender blocks for good. */
static void blocked_sender(struct blocked *b, struct ftr_chan *c, struct image *im)
{
	*b = (struct blocked){ .op = OP_SEND, .c = c, .recs = im->recs, .nrecs = im->nrecs,
			       .repeat = 64 };
	blocked_start(b);
}

START_TEST(test_shutdown_wakes_send)
{
	const char *mode = modes[_i];
	struct blocked b;
	struct image im;
	struct pair p;
	uint64_t t0;

	image_make(&im, 4 * REC_PAGES, 5);
	pair_open(&p, mode);
	ftr_chan_set_stall_timeout(p.tx, 60000);
	blocked_sender(&b, p.tx, &im);
	sleep_ms(300);
	ck_assert_msg(!atomic_load(&b.done), "sender did not block (ret %d)", b.ret);
	t0 = now_ms();
	ftr_chan_shutdown(p.tx);
	pthread_join(b.th, NULL);
	ck_assert_int_eq(b.ret, -ESHUTDOWN);
	ck_assert_msg(b.t_end - t0 < 500, "woke after %llu ms", (unsigned long long)(b.t_end - t0));
	ck_assert_int_eq(ftr_chan_send(p.tx, im.recs, 1), -ESHUTDOWN);
	pair_close(&p);
	image_free(&im);
}
END_TEST

START_TEST(test_send_stall_timeout)
{
	const char *mode = modes[_i];
	struct blocked b;
	struct image im;
	struct pair p;
	uint64_t t0;

	image_make(&im, 4 * REC_PAGES, 6);
	pair_open(&p, mode);
	ftr_chan_set_stall_timeout(p.tx, 300);
	t0 = now_ms();
	blocked_sender(&b, p.tx, &im);
	pthread_join(b.th, NULL);
	ck_assert_int_eq(b.ret, -ETIMEDOUT);
	ck_assert_msg(b.t_end - t0 >= 290 && b.t_end - t0 < 5000, "gave up after %llu ms",
		      (unsigned long long)(b.t_end - t0));
	pair_close(&p);
	image_free(&im);
}
END_TEST

/* ---- end of stream ----------------------------------------------------------------- */

START_TEST(test_close_clean_and_midway)
{
	const char *mode = modes[_i];
	static unsigned char page[PAGE];
	unsigned char head[FTR_WIRE_MAX_ENCODED];
	unsigned char *buf = malloc(HEAD_CAP);
	struct iovec data[2] = { { page, PAGE }, { page, PAGE } };
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	struct pair p;
	size_t hl = encode_pages(head, 1, 2, 0);

	ck_assert_ptr_nonnull(buf);
	/* Orderly close between records: -ENOTCONN after the last record. */
	pair_open(&p, mode);
	ck_assert_int_eq(send_heartbeat(p.tx, 1), 0);
	ftr_chan_close(p.tx);
	p.tx = NULL;
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 2000, &err), 64);
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 2000, &err), -ENOTCONN);
	pair_close(&p);

	/* Close in the middle of a header. */
	pair_open(&p, mode);
	ck_assert_int_eq(send_raw(p.tx, head, 25, NULL, 0), 0);
	ftr_chan_close(p.tx);
	p.tx = NULL;
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 2000, &err), -ECONNRESET);
	pair_close(&p);

	/* Close in the middle of the data part. */
	pair_open(&p, mode);
	ck_assert_int_eq(send_raw(p.tx, head, hl, data, 1), 0);
	ftr_chan_close(p.tx);
	p.tx = NULL;
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 2000, &err), (ssize_t)hl);
	data[0].iov_base = buf;
	data[1].iov_base = buf + PAGE;
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, data, 2), -ECONNRESET);
	pair_close(&p);
	free(buf);
}
END_TEST

START_TEST(test_garbage_header)
{
	const char *mode = modes[_i];
	static const char junk[41] = "this is not an ftrepl record header!!!!!";
	unsigned char head[FTR_WIRE_MAX_ENCODED];
	unsigned char *buf = malloc(HEAD_CAP);
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	struct pair p;

	ck_assert_ptr_nonnull(buf);
	pair_open(&p, mode);
	memset(&err, 0, sizeof(err));
	ck_assert_int_eq(send_raw(p.tx, junk, 40, NULL, 0), 0);
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 2000, &err), -EPROTO);
	ck_assert_int_eq(err.code, FTR_WIRE_BAD_MAGIC);
	ck_assert_msg(err.msg[0], "no message");
	pair_close(&p);

	/* A sound header whose body does not fit the caller's buffer. */
	pair_open(&p, mode);
	memset(&err, 0, sizeof(err));
	ck_assert_int_eq(send_raw(p.tx, head, encode_pages(head, 1, 4, 0), NULL, 0), 0);
	ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, 40 + 32, &hdr, 2000, &err), -EPROTO);
	ck_assert_int_eq(err.code, FTR_WIRE_OVERSIZED);
	ck_assert_msg(strstr(err.msg, "receive buffer"), "message: %s", err.msg);
	pair_close(&p);
	free(buf);
}
END_TEST

/* Two threads send on one channel: records never interleave. */
struct racer {
	struct ftr_chan *c;
	struct image *im;
	int ret;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;

	r->ret = 0;
	for (int i = 0; i < r->im->nrecs && !r->ret; i++)
		r->ret = ftr_chan_send(r->c, &r->im->recs[i], 1);
	return NULL;
}

START_TEST(test_concurrent_senders)
{
	const char *mode = modes[_i];
	struct image im[2];
	struct racer rc[2];
	pthread_t th[2];
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char *got = malloc(REC_PAGES * PAGE);
	struct iovec dst = { got, REC_PAGES * PAGE };
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	int next[2] = { 0, 0 };
	struct pair p;

	ck_assert(buf && got);
	image_make(&im[0], 16 * REC_PAGES, 100);
	image_make(&im[1], 16 * REC_PAGES, 200);
	pair_open(&p, mode);
	for (int k = 0; k < 2; k++) {
		rc[k] = (struct racer){ .c = p.tx, .im = &im[k] };
		ck_assert_int_eq(pthread_create(&th[k], NULL, racer_main, &rc[k]), 0);
	}
	for (int n = 0; n < 32; n++) {
		int k, r;

		ck_assert_int_gt(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 5000, &err), 0);
		ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, &dst, 1), 0);
		/* Which sender? Its pages say it. */
		k = !memcmp(got, im[0].pages + hdr.seq * REC_PAGES * PAGE, PAGE) ? 0 : 1;
		r = next[k]++;
		ck_assert_uint_eq(hdr.seq, (uint64_t)r);
		ck_assert_msg(!memcmp(got, im[k].pages + (size_t)r * REC_PAGES * PAGE,
				      REC_PAGES * PAGE), "record %d of sender %d mixed", r, k);
	}
	for (int k = 0; k < 2; k++) {
		pthread_join(th[k], NULL);
		ck_assert_int_eq(rc[k].ret, 0);
	}
	pair_close(&p);
	image_free(&im[0]);
	image_free(&im[1]);
	free(buf);
	free(got);
}
END_TEST

/* ---- syscall counters: write vs writev vs uring ---------------------------------------- */

/* Sends the image in one ftr_chan_send while a thread drains the peer;
 * returns the sender's counters. */
static void count_send(const struct ftr_tp_opts *o, struct image *im, struct ftr_chan_stats *st)
{
	struct pair p;
	struct blocked drain;
	unsigned char *sink = malloc(REC_PAGES * PAGE);
	unsigned char *buf = malloc(HEAD_CAP);
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	struct iovec dst = { sink, REC_PAGES * PAGE };
	struct ftr_chan_stats rs;

	ck_assert(sink && buf);
	pair_open_opts(&p, o);
	drain = (struct blocked){ .op = OP_SEND, .c = p.tx, .recs = im->recs, .nrecs = im->nrecs,
				  .repeat = 1 };
	blocked_start(&drain);
	for (int r = 0; r < im->nrecs; r++) {
		ck_assert_int_gt(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 5000, &err), 0);
		ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, &dst, 1), 0);
	}
	pthread_join(drain.th, NULL);
	ck_assert_int_eq(drain.ret, 0);
	ftr_chan_get_stats(p.tx, st);
	ftr_chan_get_stats(p.rx, &rs);
	ck_assert_uint_eq(st->tx_bytes, rs.rx_bytes);
	ck_assert_uint_eq(st->tx_records, (uint64_t)im->nrecs);
	pair_close(&p);
	free(sink);
	free(buf);
}

START_TEST(test_syscall_counts)
{
	const unsigned nrecs = 8;
	struct image im;
	struct ftr_chan_stats w, v, v64;
	uint64_t pieces = nrecs * (1 + REC_PAGES);
	uint64_t bytes;
	struct ftr_tp_opts o = { .transport = "tcp" };

	image_make(&im, nrecs * REC_PAGES, 77);
	bytes = nrecs * (uint64_t)(im.recs[0].head_len + REC_PAGES * PAGE);

	o.mode = "write";
	count_send(&o, &im, &w);
	o.mode = "writev";
	count_send(&o, &im, &v);
	o.max_iov = 64;
	count_send(&o, &im, &v64);

	ck_assert_uint_eq(w.tx_bytes, bytes);
	ck_assert_uint_eq(v.tx_bytes, bytes);
	/* write: at least one system call per head and per page. */
	ck_assert_msg(w.tx_syscalls >= pieces, "write: %llu syscalls for %llu pieces",
		      (unsigned long long)w.tx_syscalls, (unsigned long long)pieces);
	/* writev: 2056 iovecs in arrays of IOV_MAX: a handful of calls. */
	ck_assert_msg(v.tx_syscalls <= 16, "writev: %llu syscalls",
		      (unsigned long long)v.tx_syscalls);
	ck_assert_msg(w.tx_syscalls >= 10 * v.tx_syscalls, "write %llu vs writev %llu",
		      (unsigned long long)w.tx_syscalls, (unsigned long long)v.tx_syscalls);
	/* max_iov bounds the arrays: at least pieces / 64 calls. */
	ck_assert_msg(v64.tx_syscalls >= (pieces + 63) / 64 && v64.tx_syscalls <= 2 * pieces / 64,
		      "writev max_iov 64: %llu syscalls", (unsigned long long)v64.tx_syscalls);
#ifdef FTREPL_HAVE_URING
	for (int m = 0; m < nmodes; m++) {
		struct ftr_chan_stats u;

		if (strcmp(modes[m], "uring"))
			continue;
		o.mode = "uring";
		o.max_iov = 0;
		count_send(&o, &im, &u);
		ck_assert_uint_eq(u.tx_bytes, bytes);
		ck_assert_msg(u.tx_syscalls <= 8 && w.tx_syscalls >= 10 * u.tx_syscalls,
			      "uring: %llu syscalls", (unsigned long long)u.tx_syscalls);
	}
#endif
	image_free(&im);
}
END_TEST

/* ---- listeners, connect, options ---------------------------------------------------- */

START_TEST(test_check_opts)
{
	struct ftr_tp_opts o = { 0 };
	const char *const *names = ftr_transport_names();
	struct ftr_listener *l;
	char err[256];

	ck_assert_str_eq(names[0], "tcp");
	ck_assert_int_eq(ftr_tp_check_opts(NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(ftr_tp_check_opts(&o, err, sizeof(err)), 0);
	o.transport = "tcp";
	for (int m = 0; m < ALL_MODES; m++) {
		char base[32];

		mode_opts(all_modes[m], &o, base, sizeof(base));
		ck_assert_int_eq(ftr_tp_check_opts(&o, err, sizeof(err)), 0);
		ck_assert_str_eq(err, "");
	}

	o = (struct ftr_tp_opts){ .transport = "foo" };
	ck_assert_int_eq(ftr_tp_check_opts(&o, err, sizeof(err)), -ENOENT);
	ck_assert_msg(!strncmp(err, "unknown transport \"foo\" (have: tcp", 34) &&
			      err[strlen(err) - 1] == ')', "message: %s", err);
	ck_assert_int_eq(ftr_tp_listen(&o, "127.0.0.1:0", &l), -ENOENT);

	o = (struct ftr_tp_opts){ .transport = "tcp", .mode = "bar" };
	ck_assert_int_eq(ftr_tp_check_opts(&o, err, sizeof(err)), -EINVAL);
	ck_assert_msg(!strncmp(err, "tcp has no mode \"bar\" (modes: writev, write, zerocopy", 53),
		      "message: %s", err);
#ifdef FTREPL_HAVE_URING
	ck_assert_msg(strstr(err, ", uring, uring-zc)"), "message: %s", err);
#endif
	ck_assert_int_eq(ftr_tp_listen(&o, "127.0.0.1:0", &l), -EINVAL);
	/* A short buffer truncates, never overflows. */
	ck_assert_int_eq(ftr_tp_check_opts(&o, err, 8), -EINVAL);
	ck_assert_uint_eq(strlen(err), 7);
	ck_assert_int_eq(ftr_tp_check_opts(&o, NULL, 0), -EINVAL);
}
END_TEST

START_TEST(test_bad_addresses)
{
	struct ftr_tp_opts o = { .transport = "tcp" };
	struct ftr_listener *l;
	struct ftr_chan *c;

	ck_assert_int_eq(ftr_tp_listen(&o, "127.0.0.1", &l), -EINVAL);
	ck_assert_int_eq(ftr_tp_listen(&o, "127.0.0.1:70000", &l), -EINVAL);
	ck_assert_int_eq(ftr_tp_connect(&o, "127.0.0.1:0", 100, &c), -EINVAL);
	ck_assert_int_eq(ftr_tp_connect(&o, "::1:5000", 100, &c), -EINVAL);
	/* Not an address of this host: bind only what is given. */
	ck_assert_int_eq(ftr_tp_listen(&o, "192.0.2.1:0", &l), -EADDRNOTAVAIL);
}
END_TEST

START_TEST(test_connect_refused)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct ftr_chan *c;
	char addr[64];
	int fd;

	/* A port that was just free and has no listener. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	ck_assert_int_eq(ftr_tp_connect(NULL, addr, 1000, &c), -ECONNREFUSED);
}
END_TEST

START_TEST(test_connect_timeout)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct ftr_chan *c;
	char addr[64];
	uint64_t t0, dt;
	int lfd, cfd;

	/* A listener with a full accept queue drops SYNs: connect hangs. */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 0), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(cfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	sleep_ms(20);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	t0 = now_ms();
	ck_assert_int_eq(ftr_tp_connect(NULL, addr, 300, &c), -ETIMEDOUT);
	dt = now_ms() - t0;
	ck_assert_msg(dt >= 290 && dt < 2000, "took %llu ms", (unsigned long long)dt);
	close(cfd);
	close(lfd);
}
END_TEST

START_TEST(test_accept_timeout_and_shutdown)
{
	struct ftr_listener *l;
	struct ftr_chan *c;
	struct blocked b = { .op = OP_ACCEPT };
	uint64_t t0, dt;

	ck_assert_int_eq(ftr_tp_listen(NULL, "127.0.0.1:0", &l), 0);
	t0 = now_ms();
	ck_assert_int_eq(ftr_tp_accept(l, 100, &c), -EAGAIN);
	dt = now_ms() - t0;
	ck_assert_msg(dt >= 90 && dt < 1000, "took %llu ms", (unsigned long long)dt);

	b.l = l;
	blocked_start(&b);
	sleep_ms(150);
	ck_assert(!atomic_load(&b.done));
	t0 = now_ms();
	ftr_listener_shutdown(l);
	pthread_join(b.th, NULL);
	ck_assert_int_eq(b.ret, -ESHUTDOWN);
	ck_assert_uint_lt(b.t_end - t0, 500);
	ck_assert_int_eq(ftr_tp_accept(l, 0, &c), -ESHUTDOWN);
	ftr_listener_close(l);
}
END_TEST

/* Both ends of a loopback connection, and of one to this host's own
 * non-loopback address, know their peer is local (a migration source then
 * leaves its postcopy push unpaced); no channel: false. */
START_TEST(test_peer_is_local)
{
	struct ifaddrs *ifs, *ifa;
	struct pair p = { 0 };
	char addr[80], host[INET_ADDRSTRLEN];
	bool other = false;

	pair_open(&p, "writev");
	ck_assert(ftr_chan_peer_is_local(p.tx));
	ck_assert(ftr_chan_peer_is_local(p.rx));
	pair_close(&p);
	ck_assert(!ftr_chan_peer_is_local(NULL));

	/* the first IPv4 address of an interface that is not loopback */
	ck_assert_int_eq(getifaddrs(&ifs), 0);
	for (ifa = ifs; ifa && !other; ifa = ifa->ifa_next) {
		struct ftr_listener *l;
		struct ftr_chan *tx, *rx;

		if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != AF_INET ||
		    (ifa->ifa_flags & IFF_LOOPBACK) || !(ifa->ifa_flags & IFF_UP))
			continue;
		inet_ntop(AF_INET, &((struct sockaddr_in *)ifa->ifa_addr)->sin_addr, host,
			  sizeof(host));
		snprintf(addr, sizeof(addr), "%s:0", host);
		if (ftr_tp_listen(NULL, addr, &l))
			continue;
		snprintf(addr, sizeof(addr), "%s:%u", host, ftr_listener_port(l));
		ck_assert_int_eq(ftr_tp_connect(NULL, addr, 2000, &tx), 0);
		ck_assert_int_eq(ftr_tp_accept(l, 2000, &rx), 0);
		ck_assert_msg(ftr_chan_peer_is_local(tx) && ftr_chan_peer_is_local(rx),
			      "a connection to this host's %s is not taken as local", host);
		ftr_chan_close(tx);
		ftr_chan_close(rx);
		ftr_listener_close(l);
		other = true;
	}
	freeifaddrs(ifs);
	if (!other)
		fprintf(stderr, "no IPv4 address but loopback here: that part skipped\n");
}
END_TEST

START_TEST(test_ipv6_and_reg_mem)
{
	struct ftr_listener *l;
	struct ftr_chan *tx, *rx;
	struct ftr_mr *mr;
	unsigned char buf[128];
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	char addr[64];
	int ret;

	ret = ftr_tp_listen(NULL, "[::1]:0", &l);
	if (ret == -EADDRNOTAVAIL || ret == -EAFNOSUPPORT) {
		fprintf(stderr, "no IPv6 loopback here: IPv6 part skipped\n");
	} else {
		ck_assert_int_eq(ret, 0);
		snprintf(addr, sizeof(addr), "[::1]:%u", ftr_listener_port(l));
		ck_assert_int_eq(ftr_tp_connect(NULL, addr, 2000, &tx), 0);
		ck_assert_int_eq(ftr_tp_accept(l, 2000, &rx), 0);
		ck_assert_msg(!strncmp(ftr_chan_peer(tx), "tcp:[::1]:", 10), "peer %s",
			      ftr_chan_peer(tx));
		ck_assert_int_eq(send_heartbeat(tx, 9), 0);
		ck_assert_int_eq(ftr_chan_recv_head(rx, buf, sizeof(buf), &hdr, 2000, &err), 64);
		ck_assert_uint_eq(hdr.seq, 9);
		ck_assert(ftr_chan_peer_is_local(tx) && ftr_chan_peer_is_local(rx));

		ck_assert_int_eq(ftr_chan_reg_mem(rx, buf, sizeof(buf), FTR_MR_STAGING, &mr), 0);
		ftr_mr_dereg(mr);
		ck_assert_int_eq(ftr_chan_reg_mem(rx, buf, sizeof(buf), 0x80, &mr), -EINVAL);
		ck_assert_int_eq(ftr_chan_reg_mem(rx, buf, 0, FTR_MR_SOURCE, &mr), -EINVAL);
		ftr_chan_close(tx);
		ftr_chan_close(rx);
		ftr_listener_close(l);
	}
}
END_TEST

/* ---- zero copy: completions, flush, copied, fallback ---------------------------- */

/* Sends recs (per_call records per ftr_chan_send, then a flush) from a
 * helper thread while this thread receives them on rx and compares every
 * byte with the image. */
static void zc_stream(struct pair *p, struct image *im, int per_call)
{
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char *got = malloc(REC_PAGES * PAGE);
	struct iovec dst = { got, REC_PAGES * PAGE };
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	struct sender s;

	ck_assert(buf && got);
	s = (struct sender){ .c = p->tx, .recs = im->recs, .nrecs = im->nrecs,
			     .per_call = per_call };
	sender_start(&s);
	for (int r = 0; r < im->nrecs; r++) {
		ck_assert_int_eq(ftr_chan_recv_head(p->rx, buf, HEAD_CAP, &hdr, 10000, &err),
				 (ssize_t)im->recs[r].head_len);
		ck_assert_mem_eq(buf, im->recs[r].head, im->recs[r].head_len);
		ck_assert_int_eq(ftr_chan_recv_data(p->rx, &hdr, &dst, 1), 0);
		ck_assert_msg(!memcmp(got, im->pages + (size_t)r * REC_PAGES * PAGE,
				      REC_PAGES * PAGE), "record %d differs", r);
	}
	ck_assert_int_eq(sender_join(&s), 0);
	free(buf);
	free(got);
}

static void print_zc(const char *what, const char *mode, const struct ftr_chan_stats *st)
{
	fprintf(stderr, "%s [%s]: %llu zero-copy sends, %llu completions, %llu copied, "
		"fallback %llu, %llu send syscalls\n", what, mode,
		(unsigned long long)st->zc_sends, (unsigned long long)st->zc_completions,
		(unsigned long long)st->zc_copied, (unsigned long long)st->zc_fallback,
		(unsigned long long)st->tx_syscalls);
}

/*
 * Sources may be reused once flush returned: records sent from a buffer
 * (each head encoded into the same scratch buffer, reused as soon as send
 * returns), flush, then the pages and the scratch are overwritten before the
 * receiver reads a byte; it must see the old content. On loopback the
 * kernel copies anyway, so the counters carry the proof that flush waited:
 * every zero-copy send's completion was reaped when it returned.
 */
START_TEST(test_zc_flush_then_reuse)
{
	const char *mode = zc_modes[_i];
	struct ftr_tp_opts o = { .transport = "tcp", .mode = mode, .zc_no_fallback = true };
	const unsigned nrec = 4, per = 4, npages = nrec * per;
	unsigned char *pages = aligned_alloc(PAGE, npages * PAGE);
	unsigned char *want = malloc(npages * PAGE);
	unsigned char *buf = malloc(HEAD_CAP);
	unsigned char head[FTR_WIRE_MAX_ENCODED], heads[4][FTR_WIRE_MAX_ENCODED];
	size_t hl[4];
	struct iovec iov[16], dst;
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	struct ftr_chan_stats st;
	struct pair p;

	ck_assert(pages && want && buf);
	for (unsigned n = 0; n < npages; n++) {
		fill_page(pages + n * PAGE, 0x5eed, n);
		iov[n] = (struct iovec){ pages + n * PAGE, PAGE };
	}
	memcpy(want, pages, npages * PAGE);
	pair_open_opts(&p, &o);
	for (unsigned r = 0; r < nrec; r++) {
		struct ftr_tx_rec tx = { .head = head, .data = iov + r * per, .ndata = (int)per };

		tx.head_len = hl[r] = encode_pages(head, r, per, r * per);
		memcpy(heads[r], head, hl[r]);
		ck_assert_int_eq(ftr_chan_send(p.tx, &tx, 1), 0);
		memset(head, 0xa5, sizeof(head)); /* heads may be reused at once */
	}
	ck_assert_int_eq(ftr_chan_flush(p.tx), 0);
	ftr_chan_get_stats(p.tx, &st);
	print_zc("flush", mode, &st);
	ck_assert_uint_gt(st.zc_sends, 0);
	ck_assert_uint_eq(st.zc_completions, st.zc_sends);
	ck_assert_uint_gt(st.zc_copied, 0);	/* loopback always copies */
	ck_assert_uint_le(st.zc_copied, st.zc_completions);
	ck_assert_uint_eq(st.zc_fallback, 0);
	memset(pages, 0x5a, npages * PAGE);

	for (unsigned r = 0; r < nrec; r++) {
		ck_assert_int_eq(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 5000, &err),
				 (ssize_t)hl[r]);
		ck_assert_mem_eq(buf, heads[r], hl[r]);
		dst = (struct iovec){ buf, hdr.data_len };
		ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, &dst, 1), 0);
		ck_assert_msg(!memcmp(buf, want + (size_t)r * per * PAGE, per * PAGE),
			      "record %u: the receiver saw memory written after flush", r);
	}
	/* A flush with nothing outstanding returns at once. */
	ck_assert_int_eq(ftr_chan_flush(p.tx), 0);
	pair_close(&p);
	free(pages);
	free(want);
	free(buf);
}
END_TEST

/* A head larger than the channel's head arena (256 KiB) goes by copy, in
 * order with the zero-copy pieces around it. */
START_TEST(test_zc_big_head)
{
	const char *mode = zc_modes[_i];
	struct ftr_tp_opts o = { .transport = "tcp", .mode = mode, .zc_no_fallback = true };
	const size_t big = 300u << 10;
	unsigned char *head = malloc(big), *got = malloc(big + 2 * PAGE);
	static unsigned char page[2][PAGE];
	struct iovec data[2] = { { page[0], PAGE }, { page[1], PAGE } };
	struct ftr_wire_hdr hdr = { .data_len = (uint32_t)(big + 2 * PAGE) };
	struct iovec dst = { got, big + 2 * PAGE };
	struct ftr_chan_stats st;
	struct pair p;

	ck_assert(head && got);
	for (size_t i = 0; i < big; i++)
		head[i] = (unsigned char)(i * 13 + 1);
	memset(page[0], 1, PAGE);
	memset(page[1], 2, PAGE);
	pair_open_opts(&p, &o);
	/* a small record first: its head goes through the arena */
	ck_assert_int_eq(send_raw(p.tx, "0123456789", 10, data, 1), 0);
	ck_assert_int_eq(send_raw(p.tx, head, big, data, 2), 0);
	/* read the raw bytes back: only data_len matters to recv_data (a
	 * flush before reading could wait for the window: 300 KiB) */
	hdr.data_len = 10 + PAGE;
	dst.iov_len = hdr.data_len;
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, &dst, 1), 0);
	ck_assert_mem_eq(got, "0123456789", 10);
	ck_assert_mem_eq(got + 10, page[0], PAGE);
	hdr.data_len = (uint32_t)(big + 2 * PAGE);
	dst.iov_len = hdr.data_len;
	ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, &dst, 1), 0);
	ck_assert_mem_eq(got, head, big);
	ck_assert_mem_eq(got + big, page[0], PAGE);
	ck_assert_mem_eq(got + big + PAGE, page[1], PAGE);
	ck_assert_int_eq(ftr_chan_flush(p.tx), 0);
	ftr_chan_get_stats(p.tx, &st);
	ck_assert_uint_eq(st.zc_completions, st.zc_sends);
	pair_close(&p);
	free(head);
	free(got);
}
END_TEST

/*
 * Loopback copies every send: after the warm-up the channel falls back to
 * writev/uring, says so in its stats and in the caller's totals, and the
 * data still arrives intact. max_iov 4 makes about 260 send calls per
 * pass. MSG_ZEROCOPY gives one notification for a whole run of sends made
 * while the socket's tail was unsent (the kernel extends one id range), so
 * on a busy stream the completions, and the verdict, may only come with
 * the flush that ends the first pass; uring-zc decides within it.
 */
START_TEST(test_zc_fallback)
{
	const char *mode = zc_modes[_i];
	struct ftr_zc_totals tot = { 0 };
	struct ftr_tp_opts o = { .transport = "tcp", .mode = mode, .max_iov = 4,
				 .zc_totals = &tot };
	struct ftr_chan_stats st1, st, rs;
	struct image im;
	struct pair p;

	image_make(&im, 4 * REC_PAGES, 0xfa11);
	pair_open_opts(&p, &o);
	zc_stream(&p, &im, 1);
	ftr_chan_get_stats(p.tx, &st1);
	print_zc("fallback, pass 1", mode, &st1);
	ck_assert_uint_eq(st1.zc_fallback, 1);
	ck_assert_uint_ge(st1.zc_completions, 64);
	ck_assert_uint_eq(st1.zc_copied, st1.zc_completions);
	ck_assert_uint_eq(st1.zc_completions, st1.zc_sends);	/* the sender flushed */
	/* pass 2: writev/uring only, intact */
	zc_stream(&p, &im, 1);
	ftr_chan_get_stats(p.tx, &st);
	ftr_chan_get_stats(p.rx, &rs);
	print_zc("fallback, pass 2", mode, &st);
	ck_assert_uint_eq(st.zc_fallback, 1);
	ck_assert_uint_eq(st.zc_sends, st1.zc_sends);
	ck_assert_uint_eq(st.zc_completions, st.zc_sends);
	ck_assert_uint_eq(st.tx_bytes, 2 * st1.tx_bytes);
	ck_assert_uint_eq(st.tx_bytes, rs.rx_bytes);
	/* the accepting side sent nothing: no counts there */
	ck_assert_uint_eq(rs.zc_sends, 0);
	ck_assert_uint_eq(rs.zc_fallback, 0);
	/* both channels add to the totals; only tx sent */
	ck_assert_uint_eq(tot.sends, st.zc_sends);
	ck_assert_uint_eq(tot.completions, st.zc_completions);
	ck_assert_uint_eq(tot.copied, st.zc_copied);
	ck_assert_uint_eq(tot.fallbacks, 1);
	pair_close(&p);
	image_free(&im);
}
END_TEST

/* A peer that reads nothing: send and flush each give up within about the
 * stall timeout (send once the window is full, flush when no completion
 * comes), and the counters say what is still outstanding. */
START_TEST(test_zc_flush_stall)
{
	const char *mode = zc_modes[_i];
	struct ftr_tp_opts o = { .transport = "tcp", .mode = mode, .zc_no_fallback = true };
	struct ftr_chan_stats st;
	struct blocked b;
	struct image im;
	struct pair p;
	uint64_t t0, dt;
	int ret;

	image_make(&im, 4 * REC_PAGES, 0x57a1);
	pair_open_opts(&p, &o);
	ftr_chan_set_stall_timeout(p.tx, 300);
	t0 = now_ms();
	b = (struct blocked){ .op = OP_SEND, .c = p.tx, .recs = im.recs, .nrecs = im.nrecs,
			      .repeat = 4 };	/* 16 MiB: more than the window */
	blocked_start(&b);
	pthread_join(b.th, NULL);
	dt = now_ms() - t0;
	ck_assert_msg(b.ret == 0 || b.ret == -ETIMEDOUT, "send: %d", b.ret);
	ck_assert_msg(dt < 5000, "send gave up after %llu ms", (unsigned long long)dt);
	t0 = now_ms();
	ret = ftr_chan_flush(p.tx);
	dt = now_ms() - t0;
	ftr_chan_get_stats(p.tx, &st);
	print_zc("stalled peer", mode, &st);
	ck_assert_msg(dt < 2000, "flush gave up after %llu ms", (unsigned long long)dt);
	if (ret == 0) {
		ck_assert_uint_eq(st.zc_completions, st.zc_sends);
	} else {
		ck_assert_int_eq(ret, -ETIMEDOUT);
		ck_assert_uint_lt(st.zc_completions, st.zc_sends);
		ck_assert_msg(dt >= 290, "flush gave up after %llu ms", (unsigned long long)dt);
	}
	pair_close(&p);	/* with sends outstanding: the kernel keeps the pages */
	image_free(&im);
}
END_TEST

/* With the fallback disabled (the option, or FTREPL_ZC_FALLBACK=0) every
 * send stays zero copy. */
static void zc_no_fallback_case(const char *mode, bool by_env)
{
	struct ftr_tp_opts o = { .transport = "tcp", .mode = mode, .max_iov = 4,
				 .zc_no_fallback = !by_env };
	struct ftr_chan_stats st;
	struct image im;
	struct pair p;

	if (by_env)
		ck_assert_int_eq(setenv("FTREPL_ZC_FALLBACK", "0", 1), 0);
	image_make(&im, 4 * REC_PAGES, 0x4ee9);
	pair_open_opts(&p, &o);
	zc_stream(&p, &im, 1);
	ftr_chan_get_stats(p.tx, &st);
	print_zc(by_env ? "FTREPL_ZC_FALLBACK=0" : "zc_no_fallback", mode, &st);
	ck_assert_uint_eq(st.zc_fallback, 0);
	ck_assert_msg(st.zc_sends >= 4 * (REC_PAGES + 1) / 4, "only %llu zero-copy sends",
		      (unsigned long long)st.zc_sends);
	/* a second pass stays zero copy too */
	zc_stream(&p, &im, 1);
	ftr_chan_get_stats(p.tx, &st);
	ck_assert_uint_eq(st.zc_fallback, 0);
	ck_assert_uint_ge(st.zc_sends, 2 * 4 * (REC_PAGES + 1) / 4);
	ck_assert_uint_eq(st.zc_completions, st.zc_sends);
	ck_assert_uint_eq(st.zc_copied, st.zc_completions);
	pair_close(&p);
	image_free(&im);
	if (by_env)
		unsetenv("FTREPL_ZC_FALLBACK");
}

START_TEST(test_zc_no_fallback)
{
	zc_no_fallback_case(zc_modes[_i], false);
	zc_no_fallback_case(zc_modes[_i], true);
}
END_TEST

/*
 * zerocopy: a channel that sends and also receives. The notifications of
 * its sends wait on its error queue, which makes poll() report POLLERR to
 * its receiving thread: the receiver must reap them rather than spin, and
 * a flush afterwards has nothing left to wait for.
 */
START_TEST(test_zc_receiver_reaps)
{
	struct ftr_tp_opts o = { .transport = "tcp", .mode = "zerocopy", .zc_no_fallback = true };
	unsigned char *buf = malloc(HEAD_CAP);
	struct ftr_chan_stats st0, st;
	struct ftr_wire_hdr hdr;
	struct ftr_wire_error err;
	struct image im;
	struct pair p;

	ck_assert_ptr_nonnull(buf);
	image_make(&im, 8 * REC_PAGES, 0x4ec);
	pair_open_opts(&p, &o);
	/* 8 MiB: the drain below keeps the window open; fewer sends than
	 * TCP_ZC_REAP_AT, so the sender reaps nothing itself */
	struct blocked drain = { .op = OP_SEND, .c = p.tx, .recs = im.recs, .nrecs = im.nrecs,
				 .repeat = 1 };
	unsigned char *sink = malloc(REC_PAGES * PAGE);
	struct iovec dst = { sink, REC_PAGES * PAGE };

	ck_assert_ptr_nonnull(sink);
	blocked_start(&drain);
	for (int r = 0; r < im.nrecs; r++) {
		ck_assert_int_gt(ftr_chan_recv_head(p.rx, buf, HEAD_CAP, &hdr, 5000, &err), 0);
		ck_assert_int_eq(ftr_chan_recv_data(p.rx, &hdr, &dst, 1), 0);
	}
	pthread_join(drain.th, NULL);
	ck_assert_int_eq(drain.ret, 0);
	sleep_ms(50);	/* the last notifications arrive */
	ftr_chan_get_stats(p.tx, &st0);
	ck_assert_uint_gt(st0.zc_sends, 0);
	ck_assert_uint_lt(st0.zc_sends, 32);
	/* Nothing comes back on tx: its receive waits out the idle time. */
	ck_assert_int_eq(ftr_chan_recv_head(p.tx, buf, HEAD_CAP, &hdr, 300, &err), -EAGAIN);
	ftr_chan_get_stats(p.tx, &st);
	fprintf(stderr, "receiver reaps: %llu of %llu completions, %llu receive syscalls\n",
		(unsigned long long)st.zc_completions, (unsigned long long)st.zc_sends,
		(unsigned long long)(st.rx_syscalls - st0.rx_syscalls));
	ck_assert_msg(st.rx_syscalls - st0.rx_syscalls < 20, "receiver spun: %llu syscalls",
		      (unsigned long long)(st.rx_syscalls - st0.rx_syscalls));
	ck_assert_uint_eq(st.zc_completions, st.zc_sends);
	ck_assert_int_eq(ftr_chan_flush(p.tx), 0);
	pair_close(&p);
	image_free(&im);
	free(sink);
	free(buf);
}
END_TEST

#ifdef FTREPL_TEST_HOOKS
/* zerocopy: every third sendmsg fails with ENOBUFS (test hook, as if the
 * optmem limit were reached): reap, wait, retry or copy; nothing is lost
 * or reordered and flush still accounts for every send. */
START_TEST(test_zc_enobufs)
{
	struct ftr_tp_opts o = { .transport = "tcp", .mode = "zerocopy", .max_iov = 16,
				 .zc_no_fallback = true };
	struct ftr_chan_stats st;
	struct image im;
	struct pair p;

	ck_assert_int_eq(setenv("FTREPL_TEST_ZC_ENOBUFS", "3", 1), 0);
	image_make(&im, 8 * REC_PAGES, 0xe0b);
	pair_open_opts(&p, &o);
	zc_stream(&p, &im, 2);
	ftr_chan_get_stats(p.tx, &st);
	print_zc("ENOBUFS every 3rd", "zerocopy", &st);
	ck_assert_uint_gt(st.zc_sends, 0);
	ck_assert_uint_eq(st.zc_completions, st.zc_sends);
	pair_close(&p);
	image_free(&im);
	unsetenv("FTREPL_TEST_ZC_ENOBUFS");
}
END_TEST
#endif

/* ---- main --------------------------------------------------------------------------- */

/* Whether a channel of this mode can be made here: io_uring may be
 * disabled by sysctl, SENDMSG_ZC missing, SO_ZEROCOPY refused. */
static bool mode_usable(const char *mode)
{
	struct ftr_tp_opts o = { .transport = "tcp", .mode = mode };
	struct ftr_listener *l;
	struct ftr_chan *c = NULL;
	char addr[64];
	int ret;

	ret = ftr_tp_listen(&o, "127.0.0.1:0", &l);
	if (ret)
		return true; /* the cases will say what is wrong */
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ftr_listener_port(l));
	ret = ftr_tp_connect(&o, addr, 2000, &c);
	if (ret)
		fprintf(stderr, "mode %s unusable here (%s): not tested\n", mode, strerror(-ret));
	else
		ftr_chan_close(c);
	ftr_listener_close(l);
	return !ret;
}

static void probe_modes(void)
{
	for (int m = 0; m < ALL_MODES; m++) {
		struct ftr_tp_opts o = { 0 };
		char base[32];

		mode_opts(all_modes[m], &o, base, sizeof(base));
		if (!mode_usable(base))
			continue;
		modes[nmodes++] = all_modes[m];
		if ((!strcmp(base, "zerocopy") || !strcmp(base, "uring-zc")) && !strchr(all_modes[m], '+'))
			zc_modes[nzc_modes++] = all_modes[m];
	}
}

static Suite *transport_suite(void)
{
	Suite *s = suite_create("transport");
	TCase *tm = tcase_create("modes");
	TCase *ta = tcase_create("api");
	TCase *tz = tcase_create("zerocopy");

	tcase_set_timeout(tm, 60);
	tcase_add_loop_test(tm, test_records_intact, 0, nmodes);
	tcase_add_loop_test(tm, test_mixed_records, 0, nmodes);
	tcase_add_loop_test(tm, test_bulk_64m, 0, nmodes);
	tcase_add_loop_test(tm, test_signals_mid_stream, 0, nmodes);
	tcase_add_loop_test(tm, test_idle_eagain, 0, nmodes);
	tcase_add_loop_test(tm, test_stall_timeout, 0, nmodes);
	tcase_add_loop_test(tm, test_shutdown_wakes_recv, 0, nmodes);
	tcase_add_loop_test(tm, test_shutdown_wakes_send, 0, nmodes);
	tcase_add_loop_test(tm, test_send_stall_timeout, 0, nmodes);
	tcase_add_loop_test(tm, test_close_clean_and_midway, 0, nmodes);
	tcase_add_loop_test(tm, test_garbage_header, 0, nmodes);
	tcase_add_loop_test(tm, test_concurrent_senders, 0, nmodes);
	suite_add_tcase(s, tm);

	tcase_set_timeout(tz, 60);
	tcase_add_loop_test(tz, test_zc_flush_then_reuse, 0, nzc_modes);
	tcase_add_loop_test(tz, test_zc_big_head, 0, nzc_modes);
	tcase_add_loop_test(tz, test_zc_fallback, 0, nzc_modes);
	tcase_add_loop_test(tz, test_zc_no_fallback, 0, nzc_modes);
	tcase_add_loop_test(tz, test_zc_flush_stall, 0, nzc_modes);
	tcase_add_test(tz, test_zc_receiver_reaps);
#ifdef FTREPL_TEST_HOOKS
	tcase_add_test(tz, test_zc_enobufs);
#endif
	suite_add_tcase(s, tz);

	tcase_set_timeout(ta, 60);
	tcase_add_test(ta, test_syscall_counts);
	tcase_add_test(ta, test_check_opts);
	tcase_add_test(ta, test_bad_addresses);
	tcase_add_test(ta, test_connect_refused);
	tcase_add_test(ta, test_connect_timeout);
	tcase_add_test(ta, test_accept_timeout_and_shutdown);
	tcase_add_test(ta, test_ipv6_and_reg_mem);
	tcase_add_test(ta, test_peer_is_local);
	suite_add_tcase(s, ta);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	probe_modes();
	sr = srunner_create(transport_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
