/* SPDX-License-Identifier: MIT */
/*
 * Live migration (src/checkpoint/migrate_*.c), source and destination in one
 * process over loopback TCP, with the synthetic workload:
 *
 *   precopy_exact       precopy converges; the destination's image equals the
 *                       source's final image byte for byte, and no fault happens
 *   postcopy_exact      pure postcopy (no round), nothing runs on the
 *                       destination: after completion the image equals the
 *                       source's final image (MINOR over memfd, and anonymous)
 *   postcopy_continue   pure postcopy; the destination continues the workload at
 *                       once: faults pull pages on the urgent channel, the rest
 *                       is pushed; oracle at the end, and every page the
 *                       continuation did not write equals the source's final page
 *   hybrid_continue     rounds that cannot converge, then postcopy (3 data
 *                       channels, prefault window both ways, anonymous memory)
 *   hybrid_cut          hybrid without a round count, a workload far faster than
 *                       the link: the first round is cut early (well before it
 *                       sent the image) and postcopy completes
 *   hybrid_converge     hybrid that converges: no postcopy left
 *   hybrid_fill_round   hybrid over an image of mostly fill pages: round 1 sends
 *                       few bytes (its rate is no measure of the link) and is
 *                       cut; postcopy must not be paced by that rate (it then
 *                       crawled at ~0.2 MB/s: 6 MB in 35 s)
 *   discard_after       hybrid and postcopy in both memory modes, then every
 *                       page discarded (MADV_DONTNEED) and read again: anonymous
 *                       memory reads zeros (the pages that came before the switch
 *                       were moved in, the receive buffer freed), never an older
 *                       precopy copy; the memfd keeps every page
 *   move_refused        anonymous precopy: the pages final at the switch are
 *                       moved in; or, where the kernel will not move them
 *                       (shared with a child forked meanwhile), copied; exact
 *                       image, zeros once discarded, either way
 *   explicit_switch     ftr_migrate_src_switch() during a long precopy
 *   no_converge         precopy only, a workload faster than the link can take:
 *                       fails naming dirty rate and bandwidth; the workload keeps
 *                       running at the source
 *   no_background       postcopy serving faults only; abort ends it
 *   kernel_tracking     hybrid with the kernel's dirty tracking (auto)
 *   recovery            postcopy through an in-process proxy that cuts every
 *                       connection three times: completes, oracle and exact pages
 *   precopy_cut         a break during precopy aborts on both sides; the workload
 *                       keeps running at the source
 *   dst_refuses_layout  an image bigger than the destination's cache: clear error
 *
 * Exits 77 (skipped) when userfaultfd cannot be used here.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include <ftrepl/migrate.h>
#include <ftrepl/synth.h>

#include "checkpoint/workload.h"
#include "common/common.h"
#include "uffd/uffd_compat.h"

#define MIB (1ull << 20)

static bool kernel_move;	/* this kernel has UFFDIO_MOVE (Linux >= 6.8) */

struct mcase {
	enum ftr_migrate_mode mode;
	unsigned rounds;
	unsigned channels;
	enum ftr_migrate_mem mem;
	enum ftr_dirty_mode dirty;
	uint64_t size;
	uint64_t rate;		/* source workload writes/s (0 = flat out) */
	uint64_t pre_writes;	/* writes before the migration starts */
	uint64_t synth_writes;	/* continuation on the destination (0 = none) */
	unsigned fwd, bwd;
	bool no_bg;
	uint64_t precopy_bw;
	uint64_t postcopy_bw;
	unsigned cuts;		/* proxy cuts during postcopy */
	int switch_after_ms;	/* explicit switch (0 = none) */
	unsigned downtime_ms;
};

struct run {
	struct ftr_workload *wl;
	struct ftr_synth_spec spec;
	struct ftr_migrate_dst *dst;
	struct ftr_migrate_src *src;
	int src_ret;
	struct ftr_migrate_status sst, dstst;
	pthread_t th;
};

/* ---- an in-process TCP proxy that can cut every connection ------------------------ */

struct relay;

struct proxy {
	int lfd;
	uint16_t port, to_port;
	pthread_t th;
	atomic_bool stop;
	pthread_mutex_t lock;
	struct relay *relays[128];	/* live relays; each closes its own fds */
	atomic_uint nrelays;
};

struct relay {
	struct proxy *p;
	int a, b;
	unsigned slot;
};

/* Each relay owns its two sockets and closes them itself (closing them
 * from another thread would let a new connection reuse the numbers while
 * this one still reads them). A cut only shuts them down. */
static void *relay_main(void *arg)
{
	struct relay *r = arg;
	struct proxy *p = r->p;
	char buf[65536];

	for (;;) {
		struct pollfd pf[2] = { { .fd = r->a, .events = POLLIN }, { .fd = r->b, .events = POLLIN } };

		if (poll(pf, 2, 200) < 0 || atomic_load(&p->stop))
			break;
		for (int i = 0; i < 2; i++) {
			ssize_t n, off = 0;

			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(pf[i].fd, buf, sizeof(buf));
			if (n <= 0)
				goto out;
			while (off < n) {
				ssize_t w = send(pf[1 - i].fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

				if (w <= 0)
					goto out;
				off += w;
			}
		}
	}
out:
	pthread_mutex_lock(&p->lock);
	p->relays[r->slot] = NULL;
	pthread_mutex_unlock(&p->lock);
	shutdown(r->a, SHUT_RDWR);
	shutdown(r->b, SHUT_RDWR);
	close(r->a);
	close(r->b);
	free(r);
	atomic_fetch_sub(&p->nrelays, 1);
	return NULL;
}

static void *proxy_main(void *arg)
{
	struct proxy *p = arg;

	while (!atomic_load(&p->stop)) {
		struct pollfd pf = { .fd = p->lfd, .events = POLLIN };
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(p->to_port),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		struct relay *r;
		pthread_t th;
		int a, b, one = 1;
		unsigned slot;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		a = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (a < 0)
			continue;
		b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (b < 0 || connect(b, (struct sockaddr *)&to, sizeof(to))) {
			close(a);
			if (b >= 0)
				close(b);
			continue;
		}
		setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		r = calloc(1, sizeof(*r));
		r->p = p;
		r->a = a;
		r->b = b;
		pthread_mutex_lock(&p->lock);
		for (slot = 0; slot < FTR_ARRAY_SIZE(p->relays) && p->relays[slot]; slot++)
			;
		ck_assert_uint_lt(slot, FTR_ARRAY_SIZE(p->relays));
		r->slot = slot;
		p->relays[slot] = r;
		atomic_fetch_add(&p->nrelays, 1);
		pthread_mutex_unlock(&p->lock);
		pthread_create(&th, NULL, relay_main, r);
		pthread_detach(th);
	}
	return NULL;
}

static void proxy_start(struct proxy *p, uint16_t to_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1;

	memset(p, 0, sizeof(*p));
	p->to_port = to_port;
	pthread_mutex_init(&p->lock, NULL);
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(p->lfd, 0);
	setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_int_eq(bind(p->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(p->lfd, 64), 0);
	getsockname(p->lfd, (struct sockaddr *)&a, &len);
	p->port = ntohs(a.sin_port);
	pthread_create(&p->th, NULL, proxy_main, p);
}

/* Cuts every relayed connection (both ends see EOF). The proxy keeps
 * accepting: a reconnection goes through. */
static void proxy_cut(struct proxy *p)
{
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < FTR_ARRAY_SIZE(p->relays); i++) {
		if (p->relays[i]) {
			shutdown(p->relays[i]->a, SHUT_RDWR);
			shutdown(p->relays[i]->b, SHUT_RDWR);
		}
	}
	pthread_mutex_unlock(&p->lock);
}

static void proxy_stop(struct proxy *p)
{
	atomic_store(&p->stop, true);
	pthread_join(p->th, NULL);
	proxy_cut(p);
	while (atomic_load(&p->nrelays))
		usleep(10000);
	close(p->lfd);
}

/* ---- running one migration ---------------------------------------------------------- */

static void *src_thread(void *arg)
{
	struct run *r = arg;

	r->src_ret = ftr_migrate_src_run(r->src);
	return NULL;
}

static void run_start(struct run *r, const struct mcase *mc, uint16_t via_port)
{
	struct ftr_migrate_dst_opts dopts = {
		.listen = "127.0.0.1:0",
		.cache_size = 512 * MIB,
		.mem = mc->mem,
		.prefault_forward = mc->fwd,
		.prefault_backward = mc->bwd,
		.resume_synth = mc->synth_writes > 0,
		.synth_writes = mc->synth_writes,
		.timeout_ms = 3000,
		.recover_timeout_ms = 20000,
	};
	struct ftr_migrate_src_opts sopts = {
		.mode = mc->mode,
		.max_rounds = mc->rounds,
		.nchannels = mc->channels,
		.dirty = mc->dirty,
		.no_background = mc->no_bg,
		.precopy_bw = mc->precopy_bw,
		.postcopy_bw = mc->postcopy_bw,
		.target_downtime_ms = mc->downtime_ms,
		.timeout_ms = 3000,
		.recover_timeout_ms = 20000,
	};
	char err[256], addr[64];

	memset(r, 0, sizeof(*r));
	r->spec = (struct ftr_synth_spec){ .size = mc->size, .seed = 77, .rate = mc->rate };
	ck_assert_int_eq(ftr_synth_workload_create(&r->spec, &r->wl), 0);
	if (mc->pre_writes)
		ck_assert_int_eq(ftr_synth_workload_advance(r->wl, mc->pre_writes), 0);
	ck_assert_msg(ftr_migrate_dst_create(&dopts, &r->dst, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(ftr_migrate_dst_start(r->dst), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u",
		 via_port ? via_port : ftr_migrate_dst_port(r->dst));
	sopts.connect = addr;
	ck_assert_int_eq(ftr_migrate_src_create(&sopts, r->wl, &r->src), 0);
	ck_assert_int_eq(pthread_create(&r->th, NULL, src_thread, r), 0);
}

static void run_join(struct run *r)
{
	pthread_join(r->th, NULL);
	ftr_migrate_src_get_status(r->src, &r->sst);
}

static void run_free(struct run *r)
{
	ftr_migrate_src_destroy(r->src);
	ftr_migrate_dst_destroy(r->dst);
	ftr_workload_destroy(r->wl);
}

static void print_status(const char *name, const struct ftr_migrate_status *st)
{
	char buf[2048];

	ftr_migrate_status_json(st, buf, sizeof(buf));
	fprintf(stderr, "%s: %s\n", name, buf);
}

/* The source's final image: k and page p. */
static uint64_t src_k(struct run *r)
{
	return ((const uint64_t *)r->wl->regions[0].base)[1];
}

static const uint8_t *src_page(struct run *r, uint64_t p)
{
	return (const uint8_t *)r->wl->regions[0].base + p * FTR_SYNTH_PAGE;
}

/* Completes the destination side and checks it: exact equality with the
 * source's final image where the continuation did not write, oracle. */
static void check_result(struct run *r, const struct mcase *mc)
{
	struct ftr_migrate_image img;
	struct ftr_synth_verdict v;
	uint64_t k = src_k(r), npages = mc->size / FTR_SYNTH_PAGE, differ = 0;
	uint64_t *written = calloc(ftr_bitmap_words(npages), 8);
	int ph;

	ck_assert_msg(r->src_ret == 0, "source failed: %s", ftr_migrate_src_error(r->src));
	ck_assert_int_eq(r->sst.phase, FTR_MIG_COMPLETED);
	ck_assert_int_eq(r->sst.state, FTR_STATE_COMPLETED);
	ph = ftr_migrate_dst_wait(r->dst, 1u << FTR_MIG_COMPLETED | 1u << FTR_MIG_FAILED, 30000);
	ck_assert_msg(ph == FTR_MIG_COMPLETED, "destination: phase %d: %s", ph,
		      ftr_migrate_dst_error(r->dst));
	if (mc->synth_writes)
		ck_assert_int_eq(ftr_migrate_dst_synth_wait(r->dst, 60000), 0);
	ftr_migrate_dst_get_status(r->dst, &r->dstst);
	ck_assert_int_eq(r->dstst.pages_left, 0);
	ck_assert_uint_eq(r->sst.workload_writes, k);
	ck_assert_int_eq(ftr_migrate_dst_image(r->dst, &img), 0);
	ck_assert_uint_eq(img.regions[0].size, mc->size);

	if (mc->synth_writes) {
		struct ftr_synth_gen g;

		ftr_synth_gen_seek(&g, &r->spec, k);
		for (uint64_t i = 0; i < mc->synth_writes; i++)
			ftr_bit_set(written, ftr_synth_gen_step(&g));
	}
	ftr_bit_set(written, 0);	/* the control page's k moves on */
	for (uint64_t p = 0; p < npages; p++) {
		if (ftr_bit_test(written, p))
			continue;
		if (memcmp((const uint8_t *)img.regions[0].base + p * FTR_SYNTH_PAGE, src_page(r, p),
			   FTR_SYNTH_PAGE)) {
			if (!differ)
				fprintf(stderr, "first differing page %" PRIu64 "\n", p);
			differ++;
		}
	}
	ck_assert_msg(differ == 0, "%" PRIu64 " pages differ from the source's final image", differ);
	if (!mc->synth_writes) {
		/* Nothing ran on the destination: the whole image, control page
		 * included, is the source's. */
		ck_assert(memcmp(img.regions[0].base, r->wl->regions[0].base, mc->size) == 0);
	}
	ck_assert_int_eq(ftr_migrate_dst_verify(r->dst, &r->spec, &v), 0);
	ck_assert_msg(v.ok, "oracle: %s", v.msg);
	ck_assert_uint_eq(v.k, k + mc->synth_writes);
	free(written);
}

/* Runs mc to its end and checks the result (check_result). */
static void run_checked(struct run *r, const struct mcase *mc)
{
	run_start(r, mc, 0);
	run_join(r);
	check_result(r, mc);
}

static void migrate_ok(const char *name, const struct mcase *mc)
{
	struct run r;

	run_checked(&r, mc);
	print_status(name, &r.sst);
	print_status(name, &r.dstst);
	run_free(&r);
}

/* ---- cases -------------------------------------------------------------------------- */

START_TEST(precopy_exact)
{
	struct mcase mc = { .mode = FTR_MIG_PRECOPY, .size = 16 * MIB, .rate = 2000,
			    .pre_writes = 5000 };
	struct run r;

	run_checked(&r, &mc);
	ck_assert_uint_eq(r.sst.pushed_pages + r.sst.requested_pages, 0);
	ck_assert_uint_ge(r.sst.round, 1);
	ck_assert_uint_eq(r.dstst.faults, 0);
	print_status("precopy", &r.sst);
	run_free(&r);
}
END_TEST

START_TEST(postcopy_exact)
{
	struct mcase mc = { .mode = FTR_MIG_POSTCOPY, .size = 16 * MIB, .rate = 20000,
			    .pre_writes = 6000, .mem = (enum ftr_migrate_mem)_i };
	struct run r;

	run_checked(&r, &mc);
	ck_assert_uint_eq(r.sst.round, 0);
	ck_assert_uint_eq(r.sst.precopy_pages, 0);
	ck_assert_uint_eq(r.sst.pushed_pages + r.sst.requested_pages, 16 * MIB / 4096);
	run_free(&r);
}
END_TEST

START_TEST(postcopy_continue)
{
	struct mcase mc = { .mode = FTR_MIG_POSTCOPY, .size = 32 * MIB, .rate = 0,
			    .pre_writes = 10000, .synth_writes = 20000, .fwd = 4 };
	struct run r;

	run_checked(&r, &mc);
	ck_assert_uint_gt(r.dstst.faults, 0);
	ck_assert_uint_gt(r.sst.fault_reqs, 0);
	print_status("postcopy", &r.sst);
	print_status("postcopy-dst", &r.dstst);
	run_free(&r);
}
END_TEST

START_TEST(hybrid_continue)
{
	struct mcase mc = { .mode = FTR_MIG_HYBRID, .rounds = 2, .channels = 3,
			    .mem = FTR_MIG_MEM_ANON, .size = 32 * MIB, .rate = 0,
			    .pre_writes = 10000, .synth_writes = 20000, .fwd = 8, .bwd = 2,
			    .precopy_bw = 100 * MIB };
	struct run r;

	run_checked(&r, &mc);
	ck_assert_uint_eq(r.sst.round, 2);
	ck_assert_uint_gt(r.sst.precopy_pages, 0);
	ck_assert_uint_gt(r.sst.pushed_pages + r.sst.requested_pages, 0);
	print_status("hybrid", &r.sst);
	print_status("hybrid-dst", &r.dstst);
	run_free(&r);
}
END_TEST

START_TEST(hybrid_cut)
{
	struct mcase mc = { .mode = FTR_MIG_HYBRID, .mem = FTR_MIG_MEM_ANON, .size = 32 * MIB,
			    .rate = 0, .pre_writes = 10000, .precopy_bw = 10 * MIB };
	uint64_t npages = mc.size / FTR_SYNTH_PAGE;
	struct run r;

	run_checked(&r, &mc);
	print_status("hybrid-cut", &r.sst);
	ck_assert_uint_eq(r.sst.round, 1);
	/* the whole round would take 3.2 s at 10 MiB/s */
	ck_assert_uint_lt(r.sst.precopy_pages, npages / 2);
	ck_assert_uint_gt(r.sst.pushed_pages + r.sst.requested_pages, npages / 2);
	run_free(&r);
}
END_TEST

START_TEST(hybrid_fill_round)
{
	struct mcase mc = { .mode = FTR_MIG_HYBRID, .size = 32 * MIB, .rate = 50000,
			    .pre_writes = 0, .synth_writes = 20000 };
	struct run r;

	run_checked(&r, &mc);
	print_status("hybrid-fill", &r.sst);
	ck_assert_uint_ge(r.sst.round, 1);
	/* Unpaced (postcopy over before it could measure the link), or paced
	 * by a real measure of loopback, never by the round's few bytes. */
	ck_assert_msg(r.sst.push_pace_bytes_per_s == 0 ||
		      r.sst.push_pace_bytes_per_s >= 50 * MIB,
		      "postcopy paced at %" PRIu64 " bytes/s (round measured %" PRIu64 ")",
		      (uint64_t)r.sst.push_pace_bytes_per_s,
		      (uint64_t)r.sst.bandwidth_bytes_per_s);
	run_free(&r);
}
END_TEST

/* A hybrid (pages that came before the switch, and after it) and a
 * postcopy (every page copied in after it, in MEMFD mode straight into the
 * memfd), in both memory modes (_i: bit 0 the mode, bit 1 postcopy); then
 * every page discarded and read again. ANON: zeros, anonymous memory's own
 * semantics: once every page is in place only the workload's memory holds
 * the image (pages final at the switch were moved in where the kernel has
 * UFFDIO_MOVE, which the hybrid must then have used; the receive buffer is
 * freed either way); MEMFD: always its content, which the memfd itself
 * holds too (read back with pread: what a VMM sharing it would see). */
START_TEST(discard_after)
{
	bool post = _i & 2;
	struct mcase mc = { .mode = post ? FTR_MIG_POSTCOPY : FTR_MIG_HYBRID,
			    .rounds = post ? 0 : 2, .mem = (enum ftr_migrate_mem)(_i & 1),
			    .size = 16 * MIB, .rate = 20000, .pre_writes = 6000,
			    .precopy_bw = 40 * MIB };
	uint64_t npages = mc.size / FTR_SYNTH_PAGE, kept = 0, zeroed = 0, bad = 0, data = 0;
	struct ftr_migrate_image img;
	uint8_t *before = malloc(FTR_SYNTH_PAGE), *zero = calloc(1, FTR_SYNTH_PAGE);
	uint8_t *infd = malloc(FTR_SYNTH_PAGE);
	struct run r;

	ck_assert_ptr_nonnull(before);
	ck_assert_ptr_nonnull(zero);
	ck_assert_ptr_nonnull(infd);
	run_checked(&r, &mc);
	ck_assert_uint_eq(r.sst.precopy_pages > 0, !post);
	ck_assert_uint_gt(r.sst.pushed_pages + r.sst.requested_pages, 0);
	ck_assert_int_eq(ftr_migrate_dst_image(r.dst, &img), 0);
	ck_assert_int_eq(img.memfd >= 0, mc.mem == FTR_MIG_MEM_MEMFD);
	for (uint64_t p = 0; p < npages; p++) {
		uint8_t *pg = (uint8_t *)img.regions[0].base + p * FTR_SYNTH_PAGE;

		memcpy(before, pg, FTR_SYNTH_PAGE);
		data += memcmp(before, zero, FTR_SYNTH_PAGE) != 0;
		if (img.memfd >= 0) {
			ck_assert_int_eq(pread(img.memfd, infd, FTR_SYNTH_PAGE,
					       (off_t)(p * FTR_SYNTH_PAGE)), FTR_SYNTH_PAGE);
			if (memcmp(infd, before, FTR_SYNTH_PAGE) && !bad++)
				fprintf(stderr, "page %" PRIu64 ": the memfd holds other bytes than "
					"the mapping\n", p);
		}
		ck_assert_int_eq(madvise(pg, FTR_SYNTH_PAGE, MADV_DONTNEED), 0);
		if (!memcmp(pg, before, FTR_SYNTH_PAGE))	/* faults: served again */
			kept++;
		else if (!memcmp(pg, zero, FTR_SYNTH_PAGE))
			zeroed++;
		else if (!bad++)
			fprintf(stderr, "page %" PRIu64 ": neither its content nor zeros\n", p);
	}
	fprintf(stderr, "discard_after (%s, %s): %" PRIu64 " pages held data; read again: %"
		PRIu64 " the same, %" PRIu64 " zeros (%" PRIu64 " pushed or requested after the "
		"switch, %" PRIu64 " moved in)\n", post ? "postcopy" : "hybrid",
		mc.mem == FTR_MIG_MEM_ANON ? "anon" : "memfd", data, kept, zeroed,
		r.sst.pushed_pages + r.sst.requested_pages, r.dstst.moved_pages);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_gt(data, npages / 2);
	if (mc.mem == FTR_MIG_MEM_ANON) {
		ck_assert_uint_eq(zeroed, data);	/* every page that held data */
		ck_assert_uint_eq(kept, npages - data);	/* (zeros before and after) */
	} else {
		ck_assert_uint_eq(zeroed, 0);
		ck_assert_uint_eq(kept, npages);
		ck_assert_uint_eq(r.dstst.moved_pages, 0);
	}
	free(before);
	free(zero);
	free(infd);
	run_free(&r);
}
END_TEST

/* A fault on a page whose record is still arriving on a data channel is
 * served over the urgent channel, not when that record is complete. The
 * push is capped at 2 MiB/s and paced by the kernel (1 MiB/s per channel),
 * so each 256-page record trickles in over about a second; the
 * destination's writer faults all over an image of which two records are
 * always on their way. Every fault is served in a fraction of that (a
 * record's pages are claimed only once it arrived whole): with the claim
 * taken when a record's header arrived, the slowest fault waited ~1 s.
 * _i: the destination's memory. */
START_TEST(fault_not_behind_record)
{
	struct mcase mc = { .mode = FTR_MIG_POSTCOPY, .channels = 2,
			    .mem = (enum ftr_migrate_mem)_i, .size = 4 * MIB, .rate = 0,
			    .pre_writes = 3000, .synth_writes = 1000, .postcopy_bw = 2 * MIB };
	struct run r;

	run_checked(&r, &mc);
	print_status("record-dst", &r.dstst);
	ck_assert_msg(r.dstst.fault_lat_max_us < 500000,
		      "the slowest fault took %" PRIu64 " us: it waited for a data record",
		      r.dstst.fault_lat_max_us);
	ck_assert_uint_gt(r.dstst.faults, 100);	/* (each ~1 s when they wait) */
	run_free(&r);
}
END_TEST

START_TEST(hybrid_converge)
{
	struct mcase mc = { .mode = FTR_MIG_HYBRID, .channels = 2, .size = 16 * MIB, .rate = 1000,
			    .pre_writes = 3000, .synth_writes = 5000 };

	migrate_ok("hybrid-converge", &mc);
}
END_TEST

static void *switch_later(void *arg)
{
	struct run *r = arg;

	usleep(300000);
	ck_assert_int_eq(ftr_migrate_src_switch(r->src), 0);
	return NULL;
}

/* A precopy into anonymous memory that converges: the pages were final at
 * the switch in long runs, and are moved in (_i = 0: most of them), unless
 * the kernel will not move them (_i = 1): the destination process forks
 * after precopy round 1 arrived, so the receive buffer's pages are shared
 * with the child (UFFDIO_MOVE refuses a page that is not exclusively this
 * process's) until a later round writes them again. The destination
 * copies those instead. Either way the image is exact and the pages read
 * zeros once discarded (the receive buffer is freed). */
START_TEST(move_refused)
{
	bool fork_child = _i;
	struct mcase mc = { .mode = FTR_MIG_PRECOPY, .mem = FTR_MIG_MEM_ANON, .size = 16 * MIB,
			    .rate = 2000, .pre_writes = 6000, .precopy_bw = 40 * MIB };
	uint64_t npages = mc.size / FTR_SYNTH_PAGE, nonzero = 0;
	struct ftr_migrate_status st;
	struct ftr_migrate_image img;
	uint64_t end = ftr_now_ms() + 20000;
	int pfd[2], wst;
	pid_t child = -1;
	struct run r;

	if (!kernel_move)
		return;		/* every page is copied anyway */
	ck_assert_int_eq(pipe(pfd), 0);
	run_start(&r, &mc, 0);
	do {
		usleep(500);
		ftr_migrate_dst_get_status(r.dst, &st);
	} while (st.round < 1 && st.phase != FTR_MIG_FAILED && ftr_now_ms() < end);
	ck_assert_msg(st.round == 1 && st.phase == FTR_MIG_PRECOPY_RUN,
		      "the destination is at round %u, phase %s: no moment between the rounds",
		      st.round, ftr_migrate_phase_name(st.phase));
	if (fork_child) {
		child = fork();
		ck_assert_int_ge(child, 0);
	}
	if (!child) {
		char c;

		close(pfd[1]);
		alarm(60);
		while (read(pfd[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(pfd[0]);
	run_join(&r);
	check_result(&r, &mc);
	print_status(fork_child ? "move_refused-dst" : "move-dst", &r.dstst);
	if (fork_child)
		ck_assert_msg(r.dstst.moved_pages < npages / 2,
			      "%" PRIu64 " of %" PRIu64 " pages moved though the child shared them",
			      r.dstst.moved_pages, npages);
	else
		ck_assert_msg(r.dstst.moved_pages > npages / 2,
			      "only %" PRIu64 " of %" PRIu64 " pages moved", r.dstst.moved_pages,
			      npages);
	ck_assert_int_eq(ftr_migrate_dst_image(r.dst, &img), 0);
	for (uint64_t p = 1; p < npages; p++) {
		uint8_t *pg = (uint8_t *)img.regions[0].base + p * FTR_SYNTH_PAGE;

		ck_assert_int_eq(madvise(pg, FTR_SYNTH_PAGE, MADV_DONTNEED), 0);
		for (unsigned i = 0; i < FTR_SYNTH_PAGE; i++)
			nonzero += pg[i] != 0;
	}
	ck_assert_uint_eq(nonzero, 0);
	close(pfd[1]);
	if (fork_child)
		ck_assert_int_eq(waitpid(child, &wst, 0), child);
	run_free(&r);
}
END_TEST

START_TEST(explicit_switch)
{
	/* A flat-out workload never converges; 1000 rounds would take long:
	 * the switch call ends precopy. */
	struct mcase mc = { .mode = FTR_MIG_HYBRID, .rounds = 1000, .size = 16 * MIB, .rate = 0,
			    .pre_writes = 4000, .synth_writes = 3000, .precopy_bw = 40 * MIB };
	struct run r;
	pthread_t th;

	run_start(&r, &mc, 0);
	pthread_create(&th, NULL, switch_later, &r);
	pthread_join(th, NULL);
	run_join(&r);
	check_result(&r, &mc);
	ck_assert_uint_lt(r.sst.round, 1000);
	ck_assert_int_eq(ftr_migrate_src_switch(r.src), -EALREADY);
	run_free(&r);
}
END_TEST

START_TEST(no_converge)
{
	struct mcase mc = { .mode = FTR_MIG_PRECOPY, .rounds = 3, .size = 16 * MIB, .rate = 0,
			    .pre_writes = 4000, .precopy_bw = 40 * MIB };
	struct run r;
	uint64_t k0;
	int ph;

	run_start(&r, &mc, 0);
	run_join(&r);
	ck_assert_int_eq(r.src_ret, -EAGAIN);
	ck_assert_int_eq(r.sst.phase, FTR_MIG_FAILED);
	ck_assert_msg(strstr(ftr_migrate_src_error(r.src), "did not converge") &&
		      strstr(ftr_migrate_src_error(r.src), "dirties") &&
		      strstr(ftr_migrate_src_error(r.src), "link carries"),
		      "error: %s", ftr_migrate_src_error(r.src));
	fprintf(stderr, "no_converge: %s\n", ftr_migrate_src_error(r.src));
	/* The workload keeps running at the source. */
	k0 = r.wl->ops->progress(r.wl);
	usleep(50000);
	ck_assert_uint_gt(r.wl->ops->progress(r.wl), k0);
	ph = ftr_migrate_dst_wait(r.dst, 1u << FTR_MIG_FAILED, 10000);
	ck_assert_int_eq(ph, FTR_MIG_FAILED);
	run_free(&r);
}
END_TEST

START_TEST(no_background)
{
	struct mcase mc = { .mode = FTR_MIG_POSTCOPY, .size = 16 * MIB, .rate = 0,
			    .pre_writes = 4000, .synth_writes = 2000, .no_bg = true };
	struct ftr_migrate_status st;
	struct run r;

	run_start(&r, &mc, 0);
	ck_assert_int_eq(ftr_migrate_dst_wait(r.dst, 1u << FTR_MIG_POSTCOPY_RUN, 20000),
			 FTR_MIG_POSTCOPY_RUN);
	ck_assert_int_eq(ftr_migrate_dst_synth_wait(r.dst, 60000), 0);
	ftr_migrate_src_get_status(r.src, &st);
	ck_assert_uint_eq(st.pushed_pages, 0);
	ck_assert_uint_gt(st.requested_pages, 0);
	ck_assert_uint_gt(st.pages_left, 0);
	ftr_migrate_src_abort(r.src);
	run_join(&r);
	ck_assert_int_eq(r.src_ret, -ECANCELED);
	run_free(&r);
}
END_TEST

START_TEST(kernel_tracking)
{
	struct mcase mc = { .mode = FTR_MIG_HYBRID, .rounds = 3, .size = 16 * MIB, .rate = 5000,
			    .pre_writes = 4000, .dirty = FTR_DIRTY_AUTO, .synth_writes = 2000 };

	migrate_ok("kernel-tracking", &mc);
}
END_TEST

START_TEST(recovery)
{
	/* Postcopy slowed to ~16 MB/s so that it lasts long enough to cut it
	 * three times; the continuation faults meanwhile. */
	struct mcase mc = { .mode = FTR_MIG_POSTCOPY, .channels = 2, .size = 32 * MIB, .rate = 0,
			    .pre_writes = 10000, .synth_writes = 3000, .postcopy_bw = 16 * MIB,
			    .fwd = 2, .bwd = 1 };
	struct proxy px;
	struct run r;
	struct ftr_migrate_status st;

	r.dst = NULL;
	{
		/* The proxy needs the destination's port: start in two steps. */
		struct ftr_migrate_dst_opts dopts = {
			.listen = "127.0.0.1:0", .cache_size = 512 * MIB,
			.prefault_forward = mc.fwd, .prefault_backward = mc.bwd,
			.resume_synth = true, .synth_writes = mc.synth_writes, .synth_rate = 2000,
			.timeout_ms = 3000, .recover_timeout_ms = 20000,
		};
		struct ftr_migrate_src_opts sopts = {
			.mode = mc.mode, .nchannels = mc.channels, .postcopy_bw = mc.postcopy_bw,
			.timeout_ms = 3000, .recover_timeout_ms = 20000,
		};
		char err[256], addr[64];

		memset(&r, 0, sizeof(r));
		r.spec = (struct ftr_synth_spec){ .size = mc.size, .seed = 77 };
		ck_assert_int_eq(ftr_synth_workload_create(&r.spec, &r.wl), 0);
		ck_assert_int_eq(ftr_synth_workload_advance(r.wl, mc.pre_writes), 0);
		ck_assert_msg(ftr_migrate_dst_create(&dopts, &r.dst, err, sizeof(err)) == 0, "%s", err);
		ck_assert_int_eq(ftr_migrate_dst_start(r.dst), 0);
		proxy_start(&px, ftr_migrate_dst_port(r.dst));
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", px.port);
		sopts.connect = addr;
		ck_assert_int_eq(ftr_migrate_src_create(&sopts, r.wl, &r.src), 0);
		ck_assert_int_eq(pthread_create(&r.th, NULL, src_thread, &r), 0);
	}
	ck_assert_int_eq(ftr_migrate_dst_wait(r.dst, 1u << FTR_MIG_POSTCOPY_RUN, 20000),
			 FTR_MIG_POSTCOPY_RUN);
	for (unsigned i = 0; i < 3; i++) {
		uint64_t end;

		usleep(250000);
		ftr_migrate_dst_get_status(r.dst, &st);
		ck_assert_msg(st.phase == FTR_MIG_POSTCOPY_RUN, "cut %u: phase %s (%s)", i,
			      ftr_migrate_phase_name(st.phase), st.last_error);
		proxy_cut(&px);
		/* Back in postcopy once the source reconnected. */
		end = ftr_now_ms() + 20000;
		do {
			usleep(10000);
			ftr_migrate_dst_get_status(r.dst, &st);
		} while (st.recoveries < i + 1 && st.phase != FTR_MIG_FAILED && ftr_now_ms() < end);
		ck_assert_msg(st.recoveries == i + 1, "cut %u: not recovered (phase %s: %s)", i,
			      ftr_migrate_phase_name(st.phase), st.last_error);
	}
	mc.synth_writes = 3000;
	run_join(&r);
	check_result(&r, &mc);
	ck_assert_uint_eq(r.sst.recoveries, 3);
	ck_assert_uint_eq(r.dstst.recoveries, 3);
	print_status("recovery", &r.sst);
	print_status("recovery-dst", &r.dstst);
	run_free(&r);
	proxy_stop(&px);
}
END_TEST

START_TEST(precopy_cut)
{
	/* A break before the switch ends the migration on both sides; the
	 * workload goes on at the source. Precopy is capped so that it lasts. */
	struct ftr_migrate_dst_opts dopts = { .listen = "127.0.0.1:0", .cache_size = 64 * MIB,
					      .timeout_ms = 3000 };
	struct ftr_migrate_src_opts sopts = { .mode = FTR_MIG_PRECOPY, .max_rounds = 30,
					      .precopy_bw = 8 * MIB, .timeout_ms = 3000 };
	struct ftr_migrate_status st;
	struct proxy px;
	struct run r;
	char err[256], addr[64];
	uint64_t k0;

	memset(&r, 0, sizeof(r));
	r.spec = (struct ftr_synth_spec){ .size = 16 * MIB, .seed = 9, .rate = 20000 };
	ck_assert_int_eq(ftr_synth_workload_create(&r.spec, &r.wl), 0);
	ck_assert_msg(ftr_migrate_dst_create(&dopts, &r.dst, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(ftr_migrate_dst_start(r.dst), 0);
	proxy_start(&px, ftr_migrate_dst_port(r.dst));
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", px.port);
	sopts.connect = addr;
	ck_assert_int_eq(ftr_migrate_src_create(&sopts, r.wl, &r.src), 0);
	ck_assert_int_eq(pthread_create(&r.th, NULL, src_thread, &r), 0);
	ck_assert_int_eq(ftr_migrate_dst_wait(r.dst, 1u << FTR_MIG_PRECOPY_RUN, 10000),
			 FTR_MIG_PRECOPY_RUN);
	usleep(400000);
	ftr_migrate_src_get_status(r.src, &st);
	ck_assert_int_eq(st.phase, FTR_MIG_PRECOPY_RUN);
	proxy_cut(&px);
	run_join(&r);
	ck_assert_int_ne(r.src_ret, 0);
	ck_assert_int_eq(r.sst.phase, FTR_MIG_FAILED);
	ck_assert_uint_eq(r.sst.recoveries, 0);
	fprintf(stderr, "precopy_cut: %s\n", ftr_migrate_src_error(r.src));
	k0 = r.wl->ops->progress(r.wl);
	usleep(50000);
	ck_assert_uint_gt(r.wl->ops->progress(r.wl), k0);
	ck_assert_int_eq(ftr_migrate_dst_wait(r.dst, 1u << FTR_MIG_FAILED, 10000), FTR_MIG_FAILED);
	ck_assert_int_eq(ftr_migrate_dst_image(r.dst, &(struct ftr_migrate_image){ 0 }), -ENODATA);
	run_free(&r);
	proxy_stop(&px);
}
END_TEST

START_TEST(dst_refuses_layout)
{
	struct ftr_migrate_dst_opts dopts = { .listen = "127.0.0.1:0", .cache_size = 8 * MIB };
	struct ftr_migrate_src_opts sopts = { .timeout_ms = 2000 };
	struct ftr_synth_spec spec = { .size = 16 * MIB, .seed = 3 };
	struct ftr_migrate_dst *dst;
	struct ftr_migrate_src *src;
	struct ftr_workload *wl;
	char err[256], addr[64];

	ck_assert_int_eq(ftr_synth_workload_create(&spec, &wl), 0);
	ck_assert_int_eq(ftr_migrate_dst_create(&dopts, &dst, err, sizeof(err)), 0);
	ck_assert_int_eq(ftr_migrate_dst_start(dst), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ftr_migrate_dst_port(dst));
	sopts.connect = addr;
	ck_assert_int_eq(ftr_migrate_src_create(&sopts, wl, &src), 0);
	ck_assert_int_eq(ftr_migrate_src_run(src), -EREMOTEIO);
	ck_assert_msg(strstr(ftr_migrate_src_error(src), "needs 16777216 bytes"), "%s",
		      ftr_migrate_src_error(src));
	ftr_migrate_src_destroy(src);
	ftr_migrate_dst_destroy(dst);
	ftr_workload_destroy(wl);
}
END_TEST

static Suite *migrate_suite(void)
{
	Suite *s = suite_create("migrate");
	TCase *tc = tcase_create("migrate");

	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, precopy_exact);
	tcase_add_loop_test(tc, postcopy_exact, FTR_MIG_MEM_MEMFD, FTR_MIG_MEM_ANON + 1);
	tcase_add_test(tc, postcopy_continue);
	tcase_add_test(tc, hybrid_continue);
	tcase_add_test(tc, hybrid_converge);
	tcase_add_loop_test(tc, fault_not_behind_record, FTR_MIG_MEM_MEMFD, FTR_MIG_MEM_ANON + 1);
	tcase_add_test(tc, hybrid_cut);
	tcase_add_test(tc, hybrid_fill_round);
	tcase_add_loop_test(tc, discard_after, 0, 4);
	tcase_add_loop_test(tc, move_refused, 0, 2);
	tcase_add_test(tc, explicit_switch);
	tcase_add_test(tc, no_converge);
	tcase_add_test(tc, no_background);
	tcase_add_test(tc, kernel_tracking);
	tcase_add_test(tc, recovery);
	tcase_add_test(tc, precopy_cut);
	tcase_add_test(tc, dst_refuses_layout);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	SRunner *sr;
	int fd, failed;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || ioctl(fd, UFFDIO_API, &api) ||
	    !(api.features & UFFD_FEATURE_MINOR_SHMEM)) {
		fprintf(stderr, "userfaultfd (with MINOR_SHMEM) unusable here: skipped\n");
		return 77;
	}
	close(fd);
	kernel_move = api.features & UFFD_FEATURE_MOVE;
	sr = srunner_create(migrate_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
