/* SPDX-License-Identifier: MIT */
/*
 * The userfaultfd fault server (src/uffd/faultsrv.c) against real
 * userfaultfd: every test registers memory, lets threads (or a child
 * process) touch it, and checks what they read against a deterministic
 * page generator, plus the server's counters.
 *
 *   missing_inproc      MISSING, 4 threads touching random pages, no background
 *   missing_background  background push to full residency, every page checked
 *   missing_child       the faulting side is another process (uffd over SCM_RIGHTS),
 *                       its exit noticed through a pidfd
 *   minor_memfd         MINOR on a memfd: prepare() rewrites "pending" pages
 *                       before UFFDIO_CONTINUE (with and without background)
 *   minor_holes         MINOR, memfd with holes: the background skips them
 *   source_eagain       the source says -EAGAIN a few times, the fault completes
 *   stop_blocked        stop while a child's fault is blocked (source blocking until
 *                       cancel / -EAGAIN forever): bounded, child stays blocked
 *   event_remove        madvise(DONTNEED) in the target: pages served again
 *   eexist_race         two threads on the same pages + prefault + background
 *   fatal_poison        the source fails: state failed, the child gets SIGBUS
 *   remap_unmap         mremap then munmap of half the region during background push
 *                       (with the events; and munmap without the UNMAP event)
 *   latency             prints fault service latency vs a bare UFFDIO_COPY handler
 *
 * The suite exits 77 (skipped) when userfaultfd cannot be used here.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "common/common.h"
#include "uffd/faultsrv.h"
#include "testutil.h"

#define PS 4096u
#define SALT 0x5eedull
#define STALE_SALT 0x57a1eull
#define NEW_SALT 0x4e3ull

#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif

static uint64_t kernel_features;	/* what UFFDIO_API advertises here */

/* ---- helpers ------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void gen_page(uint32_t region, uint64_t page, uint64_t salt, void *dst)
{
	uint64_t *w = dst;
	uint64_t b = mix64(((uint64_t)region << 40) ^ (page * 0x9E3779B97F4A7C15ull) ^ salt);

	for (unsigned i = 0; i < PS / 8; i++)
		w[i] = b + i * 0x9E3779B97F4A7C15ull;
}

static bool page_ok(const char *base, uint32_t region, uint64_t page, uint64_t salt)
{
	uint64_t want[PS / 8];

	gen_page(region, page, salt, want);
	return memcmp(base + page * PS, want, PS) == 0;
}

/* Pages in [first, first+n) of base whose content is not region's. */
static uint64_t bad_pages(const char *base, uint32_t region, uint64_t first, uint64_t n)
{
	uint64_t bad = 0;

	for (uint64_t p = first; p < first + n; p++)
		bad += !page_ok(base, region, p, SALT);
	return bad;
}

static int make_uffd(uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

static int uffd_register(int uffd, void *addr, size_t len, uint64_t mode)
{
	struct uffdio_register r = { .range = { .start = (uint64_t)(uintptr_t)addr, .len = len },
				     .mode = mode };

	return ioctl(uffd, UFFDIO_REGISTER, &r) ? -errno : 0;
}

static char *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	ck_assert_msg(p != MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

/* Anonymous memory registered MISSING on a fresh uffd. */
static char *setup_missing(size_t len, uint64_t features, int *uffd)
{
	char *base = map_anon(len);

	*uffd = make_uffd(features);
	ck_assert_msg(*uffd >= 0, "uffd: %s", strerror(-*uffd));
	ck_assert_int_eq(uffd_register(*uffd, base, len, UFFDIO_REGISTER_MODE_MISSING), 0);
	return base;
}

static void sleep_ms(unsigned ms)
{
	usleep(ms * 1000u);
}

static void print_stats(const char *what, const struct ftr_fs_stats *st)
{
	fprintf(stderr,
		"%s: state %s faults %" PRIu64 " faulted %" PRIu64 " (prefault %" PRIu64
		") bg %" PRIu64 " resident %" PRIu64 "/%" PRIu64 " gone %" PRIu64 " eexist %" PRIu64
		" eagain %" PRIu64 " lat median %.1f us p99 %.1f us bg %.0f pages/s%s%s\n",
		what, ftr_fs_state_name(st->state), st->faults, st->pages_faulted,
		st->pages_prefaulted, st->pages_background, st->pages_resident, st->pages_total,
		st->pages_gone, st->eexist, st->eagain_retries, st->fault_lat_median_ns / 1e3,
		st->fault_lat_p99_ns / 1e3, st->bg_pages_per_s, st->last_error[0] ? " error: " : "",
		st->last_error);
}

/* ---- a test page source -------------------------------------------------------------- */

struct tsrc {
	uint64_t salt;
	atomic_uint_fast64_t reads, pages_read;
	unsigned delay_ns_per_page;
	/* -EAGAIN for any request covering again_page, again_left times (-1: forever) */
	uint64_t again_page;
	atomic_int again_left;
	/* a fatal error for any request covering fail_page */
	uint64_t fail_page;
	int fail_err;
	/* block any request covering block_page until cancel */
	bool block_on;
	uint64_t block_page;
	pthread_mutex_t m;
	pthread_cond_t c;
	bool cancelled;
	atomic_int blocked;
	/* copy this template instead of generating (latency runs) */
	const void *templ;
	/* MISSING: install even pages itself (UFFDIO_COPY on this uffd) and
	 * answer FTR_FS_SRC_INSTALLED, as a migration destination's receiver
	 * does; -1: off */
	int self_uffd;
	char *self_base;
	atomic_uint_fast64_t self_pages, self_ns;
	/* MINOR: the cache view and the pending pages */
	char *cache;
	atomic_uchar *pstate;	/* 0 pending, 1 being applied, 2 applied, 3 not pending */
	atomic_uint_fast64_t applied;
};

static void tsrc_init(struct tsrc *s, uint64_t salt)
{
	memset(s, 0, sizeof(*s));
	s->salt = salt;
	s->again_page = s->fail_page = s->block_page = UINT64_MAX;
	s->self_uffd = -1;
	pthread_mutex_init(&s->m, NULL);
	pthread_cond_init(&s->c, NULL);
}

static bool covers(uint64_t first, uint32_t n, uint64_t page)
{
	return page >= first && page < first + n;
}

/* Injections shared by read and prepare: 0 or the error to return. */
static int tsrc_inject(struct tsrc *s, uint64_t first, uint32_t n)
{
	if (covers(first, n, s->fail_page))
		return s->fail_err;
	if (covers(first, n, s->again_page)) {
		int left = atomic_load(&s->again_left);

		if (left < 0)
			return -EAGAIN;
		while (left > 0 && !atomic_compare_exchange_weak(&s->again_left, &left, left - 1))
			;
		if (left > 0)
			return -EAGAIN;
	}
	if (s->block_on && covers(first, n, s->block_page)) {
		pthread_mutex_lock(&s->m);
		atomic_store(&s->blocked, 1);
		while (!s->cancelled)
			pthread_cond_wait(&s->c, &s->m);
		pthread_mutex_unlock(&s->m);
		return -ECANCELED;
	}
	if (s->delay_ns_per_page) {
		struct timespec ts = { .tv_nsec = (long)s->delay_ns_per_page * n };

		while (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int tsrc_read(void *ctx, uint32_t region, uint64_t first, uint32_t n, void *dst)
{
	struct tsrc *s = ctx;
	int ret;

	atomic_fetch_add(&s->reads, 1);
	ret = tsrc_inject(s, first, n);
	if (ret)
		return ret;
	if (s->self_uffd >= 0 && first % 2 == 0) {
		for (uint32_t i = 0; i < n; i++) {
			struct uffdio_copy c = {
				.dst = (uint64_t)(uintptr_t)(s->self_base + (first + i) * PS),
				.src = (uint64_t)(uintptr_t)dst, .len = PS };

			gen_page(region, first + i, s->salt, dst);
			if (!ioctl(s->self_uffd, UFFDIO_COPY, &c))
				atomic_fetch_add(&s->self_pages, 1);
			else if (errno != EEXIST)	/* there already: in place too */
				return -errno;
		}
		atomic_store(&s->self_ns, ftr_now_ns());
		return FTR_FS_SRC_INSTALLED;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (s->templ)
			memcpy((char *)dst + (size_t)i * PS, s->templ, PS);
		else
			gen_page(region, first + i, s->salt, (char *)dst + (size_t)i * PS);
	}
	atomic_fetch_add(&s->pages_read, n);
	return 0;
}

/* MINOR: apply the pending pages of the range into the cache, once each;
 * a racing caller waits for the page to be complete. */
static int tsrc_prepare(void *ctx, uint32_t region, uint64_t first, uint32_t n)
{
	struct tsrc *s = ctx;
	int ret;

	atomic_fetch_add(&s->reads, 1);
	ret = tsrc_inject(s, first, n);
	if (ret)
		return ret;
	for (uint64_t p = first; p < first + n; p++) {
		unsigned char st = 0;

		if (atomic_compare_exchange_strong(&s->pstate[p], &st, 1)) {
			gen_page(region, p, NEW_SALT, s->cache + p * PS);
			atomic_store(&s->pstate[p], 2);
			atomic_fetch_add(&s->applied, 1);
			continue;
		}
		while (atomic_load(&s->pstate[p]) == 1)
			;
	}
	return 0;
}

static void tsrc_cancel(void *ctx)
{
	struct tsrc *s = ctx;

	pthread_mutex_lock(&s->m);
	s->cancelled = true;
	pthread_cond_broadcast(&s->c);
	pthread_mutex_unlock(&s->m);
}

static uint64_t tsrc_installed_ns(void *ctx)
{
	struct tsrc *s = ctx;

	return atomic_load(&s->self_ns);
}

static const struct ftr_page_source_ops tsrc_ops = {
	.read = tsrc_read,
	.prepare = tsrc_prepare,
	.installed_ns = tsrc_installed_ns,
	.cancel = tsrc_cancel,
};

static struct ftr_fs *start_server_o(const struct ftr_fs_opts *o)
{
	struct ftr_fs *fs;
	char err[256];
	int ret;

	ret = ftr_fs_create(o, &fs, err, sizeof(err));
	ck_assert_msg(ret == 0, "create: %s (%s)", strerror(-ret), err);
	ck_assert_int_eq(ftr_fs_start(fs), 0);
	return fs;
}

static struct ftr_fs *start_server(int uffd, enum ftr_fs_mode mode, char *base, size_t len,
				   uint32_t id, struct tsrc *src, bool background,
				   unsigned prefault)
{
	struct ftr_fs_region reg = { .addr = (uint64_t)(uintptr_t)base, .size = len, .id = id };
	struct ftr_fs_opts o = { .uffd = uffd, .mode = mode, .page_size = PS, .regions = &reg,
				 .nregions = 1, .ops = &tsrc_ops, .ctx = src,
				 .background = background, .prefault_pages = prefault };

	return start_server_o(&o);
}

/* ---- toucher threads ----------------------------------------------------------------- */

struct toucher {
	pthread_t th;
	char *base;
	uint64_t npages, count, first;
	uint32_t region;
	uint64_t salt;
	unsigned seed;
	bool sequential;
	pthread_barrier_t *bar;
	atomic_uchar *seen;	/* optional: distinct pages touched */
	uint64_t bad;
	uint64_t bad_page;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;

	if (t->bar)
		pthread_barrier_wait(t->bar);
	for (uint64_t i = 0; i < t->count; i++) {
		uint64_t p = t->sequential ? (t->first + i) % t->npages
					   : (uint64_t)rand_r(&t->seed) % t->npages;

		if (t->seen)
			atomic_store(&t->seen[p], 1);
		if (!page_ok(t->base, t->region, p, t->salt)) {
			if (!t->bad++)
				t->bad_page = p;
		}
	}
	return NULL;
}

static void run_touchers(struct toucher *t, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		ck_assert_int_eq(pthread_create(&t[i].th, NULL, toucher_main, &t[i]), 0);
	for (unsigned i = 0; i < n; i++) {
		pthread_join(t[i].th, NULL);
		ck_assert_msg(t[i].bad == 0, "toucher %u: %" PRIu64 " bad pages, first %" PRIu64, i,
			      t[i].bad, t[i].bad_page);
	}
}

/* n touchers made like the given one, toucher i seeded like.seed + i * seed_step. */
static void run_touchers_like(struct toucher *t, unsigned n, struct toucher like,
			      unsigned seed_step)
{
	for (unsigned i = 0; i < n; i++) {
		t[i] = like;
		t[i].seed = like.seed + i * seed_step;
	}
	run_touchers(t, n);
}

/* ---- a faulting child process -------------------------------------------------------- */

typedef int (*child_body)(char *base, size_t len, void *arg);

struct child {
	pid_t pid;
	int uffd;
	char *base;	/* in the child */
};

static int send_fd(int sock, int fd, const void *data, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;

	memset(cbuf, 0, sizeof(cbuf));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &mh, 0) == (ssize_t)len ? 0 : -1;
}

static int recv_fd(int sock, void *data, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = data, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd = -1;

	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != (ssize_t)len)
		return -1;
	c = CMSG_FIRSTHDR(&mh);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* Forks a child that registers len bytes of its own anonymous memory on
 * its own uffd, sends the uffd and the address over a socketpair, then runs
 * body and exits with its return value. The child dies after 30 s anyway. */
static void spawn_child(struct child *ch, size_t len, uint64_t features, child_body body, void *arg)
{
	int sv[2];
	uint64_t addr;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ch->pid = fork();
	ck_assert_int_ge(ch->pid, 0);
	if (ch->pid == 0) {
		char *base;
		int uffd;

		alarm(30);
		close(sv[0]);
		base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uffd = make_uffd(features);
		if (base == MAP_FAILED || uffd < 0 ||
		    uffd_register(uffd, base, len, UFFDIO_REGISTER_MODE_MISSING))
			_exit(10);
		addr = (uint64_t)(uintptr_t)base;
		if (send_fd(sv[1], uffd, &addr, sizeof(addr)))
			_exit(11);
		_exit(body(base, len, arg));
	}
	close(sv[1]);
	ch->uffd = recv_fd(sv[0], &addr, sizeof(addr));
	close(sv[0]);
	ck_assert_msg(ch->uffd >= 0, "no uffd from the child");
	ch->base = (char *)(uintptr_t)addr;
}

/* waitpid with a bound; kills the child on timeout. Returns 0 or -ETIMEDOUT. */
static int wait_child(pid_t pid, int timeout_ms, int *status)
{
	uint64_t until = ftr_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (ftr_now_ms() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return -ETIMEDOUT;
		}
		sleep_ms(1);
	}
}

static int wait_stats(struct ftr_fs *fs, struct ftr_fs_stats *st, int timeout_ms,
		      bool (*cond)(const struct ftr_fs_stats *, const void *), const void *arg)
{
	uint64_t until = ftr_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		ftr_fs_get_stats(fs, st);
		if (cond(st, arg))
			return 0;
		if (ftr_now_ms() > until)
			return -ETIMEDOUT;
		sleep_ms(1);
	}
}

static bool cond_faults_ge(const struct ftr_fs_stats *st, const void *arg)
{
	return st->faults >= *(const uint64_t *)arg;
}

static bool cond_state(const struct ftr_fs_stats *st, const void *arg)
{
	return st->state == *(const enum ftr_fs_state *)arg;
}

/* The faulting thread is woken by the ioctl, before the server's
 * bookkeeping: counters may lag the touches by a few microseconds. */
static bool cond_resident_eq(const struct ftr_fs_stats *st, const void *arg)
{
	return st->pages_resident == *(const uint64_t *)arg;
}

static bool cond_removes_ge(const struct ftr_fs_stats *st, const void *arg)
{
	return st->events_remove >= *(const uint64_t *)arg;
}

/* ---- 1. MISSING, in-process, faults only --------------------------------------------- */

START_TEST(test_missing_inproc)
{
	const size_t len = 64u << 20;
	const uint64_t npages = len / PS;
	struct toucher t[4];
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	atomic_uchar *seen = calloc(npages, 1);
	uint64_t distinct = 0;
	int uffd;
	char *base = setup_missing(len, 0, &uffd);

	tsrc_init(&src, SALT);
	fs = start_server(uffd, FTR_FS_MISSING, base, len, 7, &src, false, 0);
	run_touchers_like(t, 4, (struct toucher){ .base = base, .npages = npages, .count = 600,
						  .region = 7, .salt = SALT, .seed = 100,
						  .seen = seen }, 1);
	for (uint64_t p = 0; p < npages; p++)
		distinct += seen[p];

	ck_assert_int_eq(wait_stats(fs, &st, 2000, cond_resident_eq, &distinct), 0);
	print_stats("missing_inproc", &st);
	ck_assert_int_eq(st.state, FTR_FS_RUNNING);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_ge(st.faults, distinct);
	ck_assert_uint_eq(st.pages_resident, distinct);	/* no prefault, no background */
	ck_assert_uint_eq(st.pages_faulted, distinct);
	ck_assert_uint_eq(st.pages_background, 0);
	ck_assert_uint_eq(st.pages_total, npages);
	ck_assert_uint_gt(st.fault_lat_median_ns, 0);
	ck_assert_uint_ge(st.fault_lat_p99_ns, st.fault_lat_median_ns);
	ck_assert_uint_gt(st.first_fault_ns, 0);
	ck_assert(!st.done);
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 10), -ETIMEDOUT);

	ftr_fs_destroy(fs);
	close(uffd);
	munmap(base, len);
	free(seen);
}
END_TEST

/* ---- 2. MISSING with background push ------------------------------------------------- */

START_TEST(test_missing_background)
{
	const size_t len = 64u << 20;
	const uint64_t npages = len / PS;
	struct toucher t[2];
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	uint64_t bad = 0;
	int uffd;
	char *base = setup_missing(len, 0, &uffd);

	tsrc_init(&src, SALT);
	fs = start_server(uffd, FTR_FS_MISSING, base, len, 3, &src, true, 4);
	run_touchers_like(t, 2, (struct toucher){ .base = base, .npages = npages, .count = 400,
						  .region = 3, .salt = SALT, .seed = 7 }, 1);
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 60000), 0);
	bad += bad_pages(base, 3, 0, npages);
	ck_assert_uint_eq(bad, 0);

	ftr_fs_get_stats(fs, &st);
	print_stats("missing_background", &st);
	ck_assert(st.done);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_eq(st.pages_resident, npages);
	ck_assert_uint_eq(st.pages_total, npages);
	ck_assert_uint_gt(st.pages_background, 0);
	ck_assert_uint_eq(st.pages_faulted + st.pages_background - st.eexist, npages);
	ck_assert(st.bg_pages_per_s > 0);
	/* Resident: touching again faults nothing. */
	{
		uint64_t before = st.faults;

		for (uint64_t p = 0; p < npages; p += 97)
			ck_assert(page_ok(base, 3, p, SALT));
		ftr_fs_get_stats(fs, &st);
		ck_assert_uint_eq(st.faults, before);
	}
	ftr_fs_destroy(fs);
	close(uffd);
	munmap(base, len);
}
END_TEST

/* The fill waits for the first fault (up to its grace): nothing is pushed
 * while the workload has not started; after the fault, or after the grace
 * with no fault at all, it pushes every other page. */
START_TEST(test_background_waits_first_fault)
{
	const size_t len = 16u << 20;
	const uint64_t npages = len / PS, first = npages / 2;
	struct ftr_fs_region reg;
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	int uffd;
	char *base = setup_missing(len, 0, &uffd);
	struct ftr_fs_opts o = { .uffd = uffd, .mode = FTR_FS_MISSING, .page_size = PS,
				 .regions = &reg, .nregions = 1, .ops = &tsrc_ops, .ctx = &src,
				 .background = true, .bg_grace_ms = FTR_FS_BG_GRACE_MAX_MS };

	reg = (struct ftr_fs_region){ .addr = (uint64_t)(uintptr_t)base, .size = len, .id = 6 };
	tsrc_init(&src, SALT);
	fs = start_server_o(&o);
	usleep(200000);
	ftr_fs_get_stats(fs, &st);
	ck_assert_uint_eq(st.pages_background, 0);
	ck_assert_uint_eq(st.pages_resident, 0);

	/* the first fault; the fill goes on from there */
	ck_assert(page_ok(base, 6, first, SALT));
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 60000), 0);
	ftr_fs_get_stats(fs, &st);
	ck_assert(st.done);
	ck_assert_uint_eq(st.faults, 1);
	ck_assert_uint_eq(st.pages_background, npages - st.pages_faulted);
	ck_assert_uint_eq(bad_pages(base, 6, 0, npages), 0);
	ftr_fs_destroy(fs);

	/* with the default grace and no fault at all, the fill starts alone */
	munmap(base, len);
	close(uffd);
	base = setup_missing(len, 0, &uffd);
	reg.addr = (uint64_t)(uintptr_t)base;
	o.uffd = uffd;
	o.bg_grace_ms = 0;
	fs = start_server_o(&o);
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 60000), 0);
	ftr_fs_get_stats(fs, &st);
	ck_assert_uint_eq(st.faults, 0);
	ck_assert_uint_eq(st.pages_background, npages);
	ftr_fs_destroy(fs);
	ck_assert_uint_eq(bad_pages(base, 6, 0, npages), 0);
	close(uffd);
	munmap(base, len);
}
END_TEST

/* ---- 3. MISSING, the faulting side is another process ------------------------------- */

static int body_touch_all(char *base, size_t len, void *arg)
{
	uint64_t npages = len / PS;
	unsigned seed = 42;

	(void)arg;
	for (int i = 0; i < 1500; i++) {
		uint64_t p = (uint64_t)rand_r(&seed) % npages;

		if (!page_ok(base, 5, p, SALT))
			return 1;
	}
	for (uint64_t p = 0; p < npages; p++) {
		if (!page_ok(base, 5, p, SALT))
			return 1;
	}
	return 0;
}

START_TEST(test_missing_child)
{
	const size_t len = 16u << 20;
	struct ftr_fs_region reg;
	struct ftr_fs_opts o;
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	struct child ch;
	enum ftr_fs_state exited = FTR_FS_TARGET_EXITED;
	char err[256];
	int status, pidfd;

	tsrc_init(&src, SALT);
	spawn_child(&ch, len, 0, body_touch_all, NULL);
	pidfd = (int)syscall(SYS_pidfd_open, ch.pid, 0);
	ck_assert_int_ge(pidfd, 0);
	reg = (struct ftr_fs_region){ .addr = (uint64_t)(uintptr_t)ch.base, .size = len, .id = 5 };
	o = (struct ftr_fs_opts){ .uffd = ch.uffd, .mode = FTR_FS_MISSING, .page_size = PS,
				  .regions = &reg, .nregions = 1, .ops = &tsrc_ops, .ctx = &src,
				  .prefault_pages = 8, .target_pidfd = pidfd };
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), 0);
	ck_assert_int_eq(ftr_fs_start(fs), 0);

	ck_assert_int_eq(wait_child(ch.pid, 30000, &status), 0);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child status %#x (exit 1 = wrong page content)", status);
	/* The pidfd tells the server its target has gone. */
	ck_assert_int_eq(wait_stats(fs, &st, 2000, cond_state, &exited), 0);
	print_stats("missing_child", &st);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_gt(st.faults, 0);
	ck_assert_uint_gt(st.pages_prefaulted, 0);
	ck_assert_uint_eq(st.pages_resident, len / PS);	/* the child read every page */
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 100), 0);

	ftr_fs_destroy(fs);
	close(pidfd);
	close(ch.uffd);
}
END_TEST

/* ---- 4. MINOR on a memfd ------------------------------------------------------------- */

static bool is_pending(uint64_t p)
{
	return p % 3 == 1;
}

struct minor_toucher {
	pthread_t th;
	const char *view;
	uint64_t npages;
	unsigned seed;
	uint64_t bad;
};

static bool minor_page_ok(const char *view, uint64_t p)
{
	return page_ok(view, 0, p, is_pending(p) ? NEW_SALT : STALE_SALT);
}

static void *minor_toucher_main(void *arg)
{
	struct minor_toucher *t = arg;

	for (int i = 0; i < 800; i++) {
		uint64_t p = (uint64_t)rand_r(&t->seed) % t->npages;

		t->bad += !minor_page_ok(t->view, p);
	}
	return NULL;
}

START_TEST(test_minor_memfd)
{
	const bool background = _i == 1;
	const size_t len = 16u << 20;
	const uint64_t npages = len / PS;
	struct minor_toucher t[2];
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	char *cache, *view;
	uint64_t bad = 0, npending = 0;
	int mfd, uffd;

	if (!(kernel_features & UFFD_FEATURE_MINOR_SHMEM)) {
		fprintf(stderr, "minor_memfd: UFFD_FEATURE_MINOR_SHMEM not available, skipped\n");
		return;
	}
	mfd = memfd_create("faultsrv-minor", MFD_CLOEXEC);
	ck_assert_int_ge(mfd, 0);
	ck_assert_int_eq(ftruncate(mfd, (off_t)len), 0);
	cache = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	view = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	ck_assert(cache != MAP_FAILED && view != MAP_FAILED);
	for (uint64_t p = 0; p < npages; p++)
		gen_page(0, p, STALE_SALT, cache + p * PS);

	tsrc_init(&src, SALT);
	src.cache = cache;
	src.pstate = calloc(npages, 1);
	for (uint64_t p = 0; p < npages; p++) {
		if (!is_pending(p))
			src.pstate[p] = 3;
		else
			npending++;
	}
	uffd = make_uffd(UFFD_FEATURE_MINOR_SHMEM);
	ck_assert_int_ge(uffd, 0);
	ck_assert_int_eq(uffd_register(uffd, view, len, UFFDIO_REGISTER_MODE_MINOR), 0);
	fs = start_server(uffd, FTR_FS_MINOR, view, len, 0, &src, background, 2);

	for (unsigned i = 0; i < 2; i++) {
		t[i] = (struct minor_toucher){ .view = view, .npages = npages, .seed = 11 + i };
		ck_assert_int_eq(pthread_create(&t[i].th, NULL, minor_toucher_main, &t[i]), 0);
	}
	for (unsigned i = 0; i < 2; i++) {
		pthread_join(t[i].th, NULL);
		ck_assert_msg(t[i].bad == 0, "toucher %u read %" PRIu64 " wrong pages", i,
			      t[i].bad);
	}
	if (background) {
		ck_assert_int_eq(ftr_fs_wait_resident(fs, 60000), 0);
		for (uint64_t p = 0; p < npages; p++)
			bad += !minor_page_ok(view, p);
		ck_assert_uint_eq(bad, 0);
		ck_assert_uint_eq(atomic_load(&src.applied), npending);
	} else {
		/* only what was touched (and its prefault window) was applied */
		ck_assert_uint_lt(atomic_load(&src.applied), npending);
	}
	ftr_fs_get_stats(fs, &st);
	print_stats(background ? "minor_memfd(bg)" : "minor_memfd", &st);
	ck_assert_int_eq(st.error, 0);
	if (!background) {	/* the background may have been faster than any touch */
		ck_assert_uint_gt(st.faults, 0);
		ck_assert_uint_gt(st.fault_lat_median_ns, 0);
	} else {
		ck_assert_uint_eq(st.pages_resident, npages);
	}
	/* Pages never pending still hold the memfd's own content. */
	ck_assert(page_ok(cache, 0, 0, STALE_SALT));

	ftr_fs_destroy(fs);
	close(uffd);
	munmap(view, len);
	munmap(cache, len);
	close(mfd);
	free(src.pstate);
}
END_TEST

/* MINOR with holes in the memfd: the background cannot CONTINUE a page that
 * has no page-cache page (EFAULT) and must skip it, not fail; touching such
 * a page is no minor fault at all (the kernel allocates a zero page). */
START_TEST(test_minor_holes)
{
	const size_t len = 4u << 20;
	const uint64_t npages = len / PS;
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	char *cache, *view;
	uint64_t bad = 0;
	int mfd, uffd;

	if (!(kernel_features & UFFD_FEATURE_MINOR_SHMEM)) {
		fprintf(stderr, "minor_holes: UFFD_FEATURE_MINOR_SHMEM not available, skipped\n");
		return;
	}
	mfd = memfd_create("faultsrv-holes", MFD_CLOEXEC);
	ck_assert_int_ge(mfd, 0);
	ck_assert_int_eq(ftruncate(mfd, (off_t)len), 0);
	cache = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	view = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	ck_assert(cache != MAP_FAILED && view != MAP_FAILED);
	for (uint64_t p = 0; p < npages; p += 2)	/* odd pages stay holes */
		gen_page(0, p, STALE_SALT, cache + p * PS);

	tsrc_init(&src, SALT);
	src.cache = cache;
	src.pstate = calloc(npages, 1);
	memset(src.pstate, 3, npages);	/* nothing pending: prepare() is a no-op */
	uffd = make_uffd(UFFD_FEATURE_MINOR_SHMEM);
	ck_assert_int_ge(uffd, 0);
	ck_assert_int_eq(uffd_register(uffd, view, len, UFFDIO_REGISTER_MODE_MINOR), 0);
	fs = start_server(uffd, FTR_FS_MINOR, view, len, 0, &src, true, 0);
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 30000), 0);
	ftr_fs_get_stats(fs, &st);
	print_stats("minor_holes", &st);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_eq(st.pages_resident, npages / 2);
	for (uint64_t p = 0; p < npages; p++) {
		if (p % 2 == 0) {
			bad += !page_ok(view, 0, p, STALE_SALT);
		} else {
			for (unsigned i = 0; i < PS; i++)
				bad += view[p * PS + i] != 0;
		}
	}
	ck_assert_uint_eq(bad, 0);
	ftr_fs_destroy(fs);
	close(uffd);
	munmap(view, len);
	munmap(cache, len);
	close(mfd);
	free(src.pstate);
}
END_TEST

/* ---- 5. the source says -EAGAIN a few times ------------------------------------------ */

START_TEST(test_source_eagain)
{
	const bool background = _i == 1;
	const size_t len = 8u << 20;
	const uint64_t page = 77;
	struct toucher t;
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	int uffd;
	char *base = setup_missing(len, 0, &uffd);

	tsrc_init(&src, SALT);
	src.again_page = page;
	atomic_store(&src.again_left, 5);
	/* A prefault window: the first attempt is a multi-page run, retried alone. */
	fs = start_server(uffd, FTR_FS_MISSING, base, len, 1, &src, background, 4);
	t = (struct toucher){ .base = base, .npages = len / PS, .count = 1, .first = page,
			      .sequential = true, .region = 1, .salt = SALT };
	run_touchers(&t, 1);
	ck_assert_int_eq(atomic_load(&src.again_left), 0);
	if (background) {
		ck_assert_int_eq(ftr_fs_wait_resident(fs, 30000), 0);
		ftr_fs_get_stats(fs, &st);
	} else {
		const uint64_t one = 1;

		ck_assert_int_eq(wait_stats(fs, &st, 2000, cond_resident_eq, &one), 0);
	}
	print_stats(background ? "source_eagain(bg)" : "source_eagain", &st);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_ge(st.eagain_retries, 5);
	ck_assert_uint_ge(st.faults, 1);
	ck_assert(page_ok(base, 1, page, SALT));
	if (!background) {
		/* five -EAGAIN: the multi-page run is retried alone at once,
		 * then back-off 100+200+400+800 us */
		ck_assert_uint_ge(st.fault_lat_max_ns, 1500000);
	}
	ftr_fs_destroy(fs);
	close(uffd);
	munmap(base, len);
}
END_TEST

/* ---- 6. stop while a fault is blocked ------------------------------------------------ */

static int body_touch_page5(char *base, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	return page_ok(base, 2, 5, SALT) ? 20 : 21;	/* must never return */
}

START_TEST(test_stop_blocked)
{
	const bool blocking_source = _i == 0;
	const size_t len = 4u << 20;
	const uint64_t one = 1;
	struct ftr_fs_region reg;
	struct ftr_fs_opts o;
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	struct child ch;
	uint64_t t0, dt;
	char err[256];
	int status;

	tsrc_init(&src, SALT);
	if (blocking_source) {
		src.block_on = true;
		src.block_page = 5;
	} else {
		src.again_page = 5;
		atomic_store(&src.again_left, -1);
	}
	spawn_child(&ch, len, 0, body_touch_page5, NULL);
	reg = (struct ftr_fs_region){ .addr = (uint64_t)(uintptr_t)ch.base, .size = len, .id = 2 };
	o = (struct ftr_fs_opts){ .uffd = ch.uffd, .mode = FTR_FS_MISSING, .page_size = PS,
				  .regions = &reg, .nregions = 1, .ops = &tsrc_ops, .ctx = &src };
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), 0);
	ck_assert_int_eq(ftr_fs_start(fs), 0);

	ck_assert_int_eq(wait_stats(fs, &st, 5000, cond_faults_ge, &one), 0);
	sleep_ms(100);
	ck_assert_int_eq(waitpid(ch.pid, &status, WNOHANG), 0);	/* blocked in its fault */
	if (blocking_source)
		ck_assert_int_eq(atomic_load(&src.blocked), 1);

	t0 = ftr_now_ns();
	ftr_fs_stop(fs);
	dt = ftr_now_ns() - t0;
	ck_assert_msg(dt < 2000000000ull, "stop took %" PRIu64 " ms", dt / 1000000);
	ftr_fs_stop(fs);	/* twice is fine */

	ftr_fs_get_stats(fs, &st);
	print_stats(blocking_source ? "stop_blocked(blocking)" : "stop_blocked(eagain)", &st);
	ck_assert_int_eq(st.state, FTR_FS_STOPPED);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_eq(st.faults_pending, 1);
	ck_assert_uint_eq(st.pages_resident, 0);
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 100), -ECANCELED);

	/* The child is still blocked (the uffd stays open): kill it. */
	sleep_ms(50);
	ck_assert_int_eq(waitpid(ch.pid, &status, WNOHANG), 0);
	kill(ch.pid, SIGKILL);
	ck_assert_int_eq(wait_child(ch.pid, 5000, &status), 0);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	ftr_fs_destroy(fs);
	close(ch.uffd);
}
END_TEST

/* ---- 7. UFFD_EVENT_REMOVE ------------------------------------------------------------ */

START_TEST(test_event_remove)
{
	const bool background = _i == 1;
	const size_t len = 16u << 20;
	const uint64_t npages = len / PS, first = 100, n = 100, one = 1;
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	uint64_t faults_before, bad = 0;
	int uffd;
	char *base = setup_missing(len, UFFD_FEATURE_EVENT_REMOVE, &uffd);

	tsrc_init(&src, SALT);
	fs = start_server(uffd, FTR_FS_MISSING, base, len, 9, &src, background, 0);
	if (background) {
		ck_assert_int_eq(ftr_fs_wait_resident(fs, 60000), 0);
	} else {
		bad += bad_pages(base, 9, 0, npages);
		ck_assert_uint_eq(bad, 0);
	}
	ck_assert_int_eq(wait_stats(fs, &st, 2000, cond_resident_eq, &npages), 0);

	/* Scribble over the pages, then discard them: what comes back must
	 * be the source's content again, neither the scribble nor zeros. */
	memset(base + first * PS, 0xAA, n * PS);
	ck_assert_int_eq(madvise(base + first * PS, n * PS, MADV_DONTNEED), 0);
	ck_assert_int_eq(wait_stats(fs, &st, 2000, cond_removes_ge, &one), 0);
	if (!background) {
		ck_assert_uint_eq(st.pages_resident, npages - n);
		ck_assert(!st.done);
	}
	faults_before = st.faults;
	if (background)
		ck_assert_int_eq(ftr_fs_wait_resident(fs, 60000), 0);
	bad += bad_pages(base, 9, first, n);
	ck_assert_uint_eq(bad, 0);
	ck_assert_int_eq(wait_stats(fs, &st, 2000, cond_resident_eq, &npages), 0);
	print_stats(background ? "event_remove(bg)" : "event_remove", &st);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_eq(st.events_remove, 1);
	if (!background)
		ck_assert_uint_eq(st.faults, faults_before + n);	/* each refaulted once */
	ck_assert_uint_eq(st.pages_resident, npages);
	bad += bad_pages(base, 9, 0, npages);
	ck_assert_uint_eq(bad, 0);

	ftr_fs_destroy(fs);
	close(uffd);
	munmap(base, len);
}
END_TEST

/* ---- 8. two threads on the same pages, with prefault and background ------------------ */

START_TEST(test_eexist_race)
{
	const size_t len = 16u << 20;
	const uint64_t npages = len / PS, other_first = 1000, other_n = 10;
	pthread_barrier_t bar;
	struct toucher t[2];
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	uint64_t bad = 0;
	int uffd;
	char *base = setup_missing(len, 0, &uffd);

	/* Another resolver installs a few pages first, behind the server's
	 * back: the background must find them there (EEXIST), not fail. */
	for (uint64_t p = other_first; p < other_first + other_n; p++) {
		uint64_t page[PS / 8] __attribute__((aligned(64)));
		struct uffdio_copy c = { .dst = (uint64_t)(uintptr_t)(base + p * PS),
					 .src = (uint64_t)(uintptr_t)page, .len = PS };

		gen_page(4, p, SALT, page);
		ck_assert_int_eq(ioctl(uffd, UFFDIO_COPY, &c), 0);
	}
	tsrc_init(&src, SALT);
	src.delay_ns_per_page = 5000;	/* background and faults overlap for a while */
	pthread_barrier_init(&bar, NULL, 2);
	fs = start_server(uffd, FTR_FS_MISSING, base, len, 4, &src, true, 16);
	/* both threads touch the same random pages at the same time */
	run_touchers_like(t, 2, (struct toucher){ .base = base, .npages = npages, .count = 3000,
						  .region = 4, .salt = SALT, .seed = 77,
						  .bar = &bar }, 0);
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 60000), 0);
	bad += bad_pages(base, 4, 0, npages);
	ck_assert_uint_eq(bad, 0);
	ftr_fs_get_stats(fs, &st);
	print_stats("eexist_race", &st);
	ck_assert_int_eq(st.error, 0);
	ck_assert_int_eq(st.state, FTR_FS_RUNNING);
	ck_assert_uint_eq(st.pages_resident, npages);
	ck_assert_uint_ge(st.eexist, other_n);
	/* every page installed once, or found there (EEXIST) */
	ck_assert_uint_eq(st.pages_faulted + st.pages_background - st.eexist, npages - other_n);
	pthread_barrier_destroy(&bar);
	ftr_fs_destroy(fs);
	close(uffd);
	munmap(base, len);
}
END_TEST

/* A source that installs pages itself (FTR_FS_SRC_INSTALLED): the server
 * issues no ioctl for them, yet counts them resident and their faults
 * served; the background path takes the same answer. */
START_TEST(test_source_installed)
{
	const size_t len = 4u << 20;
	const uint64_t npages = len / PS;
	struct toucher t[2];
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	uint64_t bad = 0;
	int uffd;
	char *base = setup_missing(len, 0, &uffd);

	tsrc_init(&src, SALT);
	src.self_uffd = uffd;
	src.self_base = base;
	/* faults only first: every fault is its own read of one page */
	fs = start_server(uffd, FTR_FS_MISSING, base, len, 5, &src, false, 0);
	run_touchers_like(t, 2, (struct toucher){ .base = base, .npages = npages, .count = 400,
						  .region = 5, .salt = SALT, .seed = 31 }, 1);
	for (unsigned i = 0; i < 2; i++)
		ck_assert_uint_eq(t[i].bad, 0);
	ftr_fs_get_stats(fs, &st);
	print_stats("source_installed", &st);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_gt(atomic_load(&src.self_pages), 0);
	/* one page per read: each read installed its page or found it there
	 * (a second thread's fault on it) */
	ck_assert_uint_ge(st.src_installed, atomic_load(&src.self_pages));
	ck_assert_uint_eq(st.pages_faulted + st.src_installed, st.pages_resident);
	ck_assert_uint_gt(st.fault_lat_median_ns, 0);
	ftr_fs_destroy(fs);

	/* then the background, over what the faults left */
	fs = start_server(uffd, FTR_FS_MISSING, base, len, 5, &src, true, 0);
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 60000), 0);
	ftr_fs_get_stats(fs, &st);
	print_stats("source_installed_bg", &st);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_eq(st.pages_resident, npages);
	ck_assert_uint_gt(st.src_installed, 0);	/* chunks starting on an even page */
	ck_assert_uint_eq(st.pages_background + st.src_installed, npages);
	bad += bad_pages(base, 5, 0, npages);
	ck_assert_uint_eq(bad, 0);
	ftr_fs_destroy(fs);
	close(uffd);
	munmap(base, len);
}
END_TEST

/* ---- 9. a fatal source error poisons what is left ------------------------------------ */

static int body_touch_3_then_9(char *base, size_t len, void *arg)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };

	(void)len;
	(void)arg;
	sigaction(SIGBUS, &sa, NULL);	/* sanitizers catch it otherwise */
	if (!page_ok(base, 6, 3, SALT))
		return 2;
	return page_ok(base, 6, 9, SALT) ? 3 : 4;	/* SIGBUS expected before */
}

START_TEST(test_fatal_poison)
{
	const size_t len = 4u << 20;
	struct ftr_fs_region reg;
	struct ftr_fs_opts o;
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	struct child ch;
	char err[256];
	int status;

	if (!(kernel_features & UFFD_FEATURE_POISON)) {
		fprintf(stderr, "fatal_poison: UFFD_FEATURE_POISON not available, skipped\n");
		return;
	}
	tsrc_init(&src, SALT);
	src.fail_page = 9;
	src.fail_err = -EIO;
	spawn_child(&ch, len, UFFD_FEATURE_POISON, body_touch_3_then_9, NULL);
	reg = (struct ftr_fs_region){ .addr = (uint64_t)(uintptr_t)ch.base, .size = len, .id = 6 };
	o = (struct ftr_fs_opts){ .uffd = ch.uffd, .mode = FTR_FS_MISSING, .page_size = PS,
				  .regions = &reg, .nregions = 1, .ops = &tsrc_ops, .ctx = &src,
				  .poison_on_error = true };
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), 0);
	ck_assert_int_eq(ftr_fs_start(fs), 0);

	ck_assert_int_eq(wait_child(ch.pid, 10000, &status), 0);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
		      "child status %#x, expected SIGBUS", status);
	ftr_fs_get_stats(fs, &st);
	print_stats("fatal_poison", &st);
	ck_assert_int_eq(st.state, FTR_FS_FAILED);
	ck_assert_int_eq(st.error, -EIO);
	ck_assert_msg(strstr(st.last_error, "read of region 6 pages 9+1"), "last_error: %s",
		      st.last_error);
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 100), -EIO);
	ftr_fs_destroy(fs);
	close(ch.uffd);
}
END_TEST

/* ---- 10. mremap, then munmap of half, during background push ------------------------- */

/*
 * _i == 0: the target enabled REMAP and UNMAP events: mremap the region
 *          elsewhere, touch it there, munmap its second half.
 * _i == 1: no events: munmap the second half behind the server's back; the
 *          background finds it unregistered (ENOENT twice with no layout
 *          change) and counts those pages gone.
 */
START_TEST(test_remap_unmap)
{
	const bool events = _i == 0;
	const size_t len = 64u << 20, half = len / 2;
	const uint64_t npages = len / PS;
	struct ftr_fs_stats st;
	struct tsrc src;
	struct ftr_fs *fs;
	char *base, *moved;
	unsigned seed = 3;
	uint64_t bad = 0;
	int uffd;

	base = setup_missing(len, events ? UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP : 0,
			     &uffd);
	tsrc_init(&src, SALT);
	src.delay_ns_per_page = 40000;	/* background takes ~0.7 s */
	fs = start_server(uffd, FTR_FS_MISSING, base, len, 8, &src, true, 0);
	for (int i = 0; i < 50; i++)
		bad += !page_ok(base, 8, (uint64_t)rand_r(&seed) % npages, SALT);
	sleep_ms(100);

	moved = base;
	if (events) {
		char *dst = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
				 -1, 0);

		ck_assert(dst != MAP_FAILED);
		moved = mremap(base, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
		ck_assert_msg(moved == dst, "mremap: %s", strerror(errno));
		for (int i = 0; i < 200; i++)
			bad += !page_ok(moved, 8, (uint64_t)rand_r(&seed) % npages, SALT);
	}
	ck_assert_uint_eq(bad, 0);
	ck_assert_int_eq(munmap(moved + half, half), 0);

	ck_assert_int_eq(ftr_fs_wait_resident(fs, 60000), 0);
	bad += bad_pages(moved, 8, 0, half / PS);
	ck_assert_uint_eq(bad, 0);
	ftr_fs_get_stats(fs, &st);
	print_stats(events ? "remap_unmap" : "unmap_no_event", &st);
	ck_assert_int_eq(st.error, 0);
	if (events) {
		ck_assert_uint_eq(st.events_remap, 1);
		ck_assert_uint_ge(st.events_unmap, 1);
		ck_assert_uint_eq(st.pages_gone, half / PS);
		ck_assert_uint_eq(st.pages_resident, half / PS);
	} else {
		/* pages installed before the munmap still count as resident */
		ck_assert_uint_gt(st.pages_gone, 0);
		ck_assert_uint_eq(st.pages_gone + st.pages_resident, npages);
	}
	ftr_fs_destroy(fs);
	close(uffd);
	munmap(moved, half);
}
END_TEST

/* ---- API checks ---------------------------------------------------------------------- */

START_TEST(test_bad_opts)
{
	struct ftr_fs_region regs[2] = { { .addr = 0x100000, .size = 0x4000, .id = 1 },
					 { .addr = 0x102000, .size = 0x4000, .id = 2 } };
	struct ftr_page_source_ops none = { 0 };
	struct ftr_fs_opts o = { .uffd = 0, .mode = FTR_FS_MISSING, .page_size = PS,
				 .regions = regs, .nregions = 1, .ops = &tsrc_ops };
	struct ftr_fs *fs = (struct ftr_fs *)1;
	char err[256];

	o.page_size = 3000;
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(fs);
	ck_assert(strstr(err, "page size"));
	o.page_size = PS;
	o.nregions = 2;
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "overlap"), "%s", err);
	o.nregions = 1;
	regs[0].addr = 0x100800;
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), -EINVAL);
	regs[0].addr = 0x100000;
	o.ops = &none;
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), -EINVAL);
	ck_assert(strstr(err, "read()"));
	o.ops = &tsrc_ops;
	o.prefault_pages = FTR_FS_PREFAULT_MAX + 1;
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), -EINVAL);
	o.prefault_pages = 0;
	o.bg_grace_ms = FTR_FS_BG_GRACE_MAX_MS + 1;
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "background grace"), "%s", err);
	o.bg_grace_ms = 0;
	o.uffd = -1;
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), -EINVAL);

	/* created, never started: stop/wait/destroy are fine */
	o.uffd = make_uffd(0);
	ck_assert_int_ge(o.uffd, 0);
	ck_assert_int_eq(ftr_fs_create(&o, &fs, err, sizeof(err)), 0);
	ck_assert_int_eq(ftr_fs_wait_resident(fs, 10), -ECANCELED);
	ftr_fs_stop(fs);
	ck_assert_int_eq(ftr_fs_start(fs), -EALREADY);
	ftr_fs_destroy(fs);
	ftr_fs_destroy(NULL);
	close(o.uffd);
	ck_assert_str_eq(ftr_fs_state_name(FTR_FS_TARGET_EXITED), "target-exited");
}
END_TEST

/* ---- latency: the server vs a bare UFFDIO_COPY handler ------------------------------- */

struct bare {
	pthread_t th;
	int uffd, stop_efd;
	const void *templ;
};

/* The minimal handler: poll, read one batch, one UFFDIO_COPY per fault. */
static void *bare_main(void *arg)
{
	struct bare *b = arg;
	struct uffd_msg msgs[16];

	for (;;) {
		struct pollfd pfd[2] = { { .fd = b->uffd, .events = POLLIN },
					 { .fd = b->stop_efd, .events = POLLIN } };
		ssize_t r;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		r = read(b->uffd, msgs, sizeof(msgs));
		for (ssize_t i = 0; r > 0 && i < r / (ssize_t)sizeof(msgs[0]); i++) {
			struct uffdio_copy c = {
				.dst = msgs[i].arg.pagefault.address & ~(uint64_t)(PS - 1),
				.src = (uint64_t)(uintptr_t)b->templ, .len = PS };

			if (ioctl(b->uffd, UFFDIO_COPY, &c) && errno == EEXIST) {
				struct uffdio_range w = { .start = c.dst, .len = PS };

				ioctl(b->uffd, UFFDIO_WAKE, &w);
			}
		}
	}
	return NULL;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Writes to n distinct random pages one by one (a read of untouched
 * anonymous memory would just map the zero page); returns the median. */
static uint64_t touch_median(char *base, uint64_t npages, unsigned n, unsigned seed)
{
	uint64_t *lat = calloc(n, sizeof(*lat)), med;
	uint8_t *used = calloc(npages, 1);

	for (unsigned i = 0; i < n; i++) {
		uint64_t p, t0;

		do
			p = (uint64_t)rand_r(&seed) % npages;
		while (used[p]);
		used[p] = 1;
		t0 = ftr_now_ns();
		*(volatile char *)(base + p * PS) = 1;
		lat[i] = ftr_now_ns() - t0;
	}
	qsort(lat, n, sizeof(*lat), u64_cmp);
	med = lat[n / 2];
	free(lat);
	free(used);
	return med;
}

/* Reads one byte of every page in order; returns ns per page. */
static double scan_ns_per_page(char *base, uint64_t npages)
{
	uint64_t t0 = ftr_now_ns();

	for (uint64_t p = 0; p < npages; p++)
		(void)*(volatile char *)(base + p * PS);
	return (double)(ftr_now_ns() - t0) / (double)npages;
}

START_TEST(test_latency)
{
	const size_t len = 64u << 20, scan_len = 16u << 20;
	const uint64_t npages = len / PS;
	const unsigned n = 3000;
	static char templ[PS] __attribute__((aligned(PS)));
	struct ftr_fs_stats st, st16;
	struct tsrc src;
	struct ftr_fs *fs;
	struct bare b;
	uint64_t anon, bare_med, fs_med;
	double bare_scan, fs_scan, fs16_scan, fsbg_scan;
	char *base;
	int uffd;

	memset(templ, 0x5a, sizeof(templ));
	tsrc_init(&src, SALT);
	src.templ = templ;	/* the same source cost as the bare handler: one memcpy */

	/* the primitive: an anonymous first-touch fault, no uffd, no THP */
	base = map_anon(len);
	madvise(base, len, MADV_NOHUGEPAGE);
	anon = touch_median(base, npages, n, 1);
	munmap(base, len);

	/* a bare handler: random touches, then a sequential scan */
	base = setup_missing(len, 0, &uffd);
	b = (struct bare){ .uffd = uffd, .stop_efd = eventfd(0, EFD_CLOEXEC), .templ = templ };
	ck_assert_int_eq(pthread_create(&b.th, NULL, bare_main, &b), 0);
	bare_med = touch_median(base, npages, n, 2);
	bare_scan = scan_ns_per_page(base + len - scan_len, scan_len / PS);
	ck_assert_int_eq(eventfd_write(b.stop_efd, 1), 0);
	pthread_join(b.th, NULL);
	close(b.stop_efd);
	close(uffd);
	munmap(base, len);

	/* the fault server, no prefault */
	base = setup_missing(len, 0, &uffd);
	fs = start_server(uffd, FTR_FS_MISSING, base, len, 0, &src, false, 0);
	fs_med = touch_median(base, npages, n, 3);
	ftr_fs_get_stats(fs, &st);
	fs_scan = scan_ns_per_page(base + len - scan_len, scan_len / PS);
	ftr_fs_destroy(fs);
	close(uffd);
	munmap(base, len);

	/* prefault 16: a sequential scan faults once per 17 pages */
	base = setup_missing(scan_len, 0, &uffd);
	fs = start_server(uffd, FTR_FS_MISSING, base, scan_len, 0, &src, false, 16);
	fs16_scan = scan_ns_per_page(base, scan_len / PS);
	ftr_fs_get_stats(fs, &st16);
	ftr_fs_destroy(fs);
	close(uffd);
	munmap(base, scan_len);

	/* background push racing the scan */
	base = setup_missing(scan_len, 0, &uffd);
	fs = start_server(uffd, FTR_FS_MISSING, base, scan_len, 0, &src, true, 0);
	fsbg_scan = scan_ns_per_page(base, scan_len / PS);
	ftr_fs_destroy(fs);
	close(uffd);
	munmap(base, scan_len);

	fprintf(stderr,
		"latency, 4 KiB pages, median of %u random first touches:\n"
		"  anonymous first touch, no uffd       %7.1f us\n"
		"  bare UFFDIO_COPY handler round trip  %7.1f us\n"
		"  faultsrv round trip                  %7.1f us  (%.2fx bare)\n"
		"  faultsrv service (msg read -> ioctl done): median %.1f us, p99 %.1f us\n"
		"sequential scan of 16 MiB, per page:\n"
		"  bare handler                         %7.1f us\n"
		"  faultsrv                             %7.1f us  (%.2fx bare)\n"
		"  faultsrv prefault 16                 %7.1f us  (%.2fx bare; "
		"service median %.1f us)\n"
		"  faultsrv background push             %7.1f us  (%.2fx bare)\n",
		n, anon / 1e3, bare_med / 1e3, fs_med / 1e3, (double)fs_med / (double)bare_med,
		st.fault_lat_median_ns / 1e3, st.fault_lat_p99_ns / 1e3, bare_scan / 1e3,
		fs_scan / 1e3, fs_scan / bare_scan, fs16_scan / 1e3, fs16_scan / bare_scan,
		st16.fault_lat_median_ns / 1e3, fsbg_scan / 1e3, fsbg_scan / bare_scan);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_gt(st.fault_lat_median_ns, 0);
	/* Loose on a noisy box: the server must not add a poll period or worse. */
	ck_assert_uint_lt(fs_med, 10 * bare_med + 200000);
}
END_TEST

/* ---- main ---------------------------------------------------------------------------- */

static Suite *faultsrv_suite(void)
{
	Suite *s = suite_create("faultsrv");
	TCase *tc = tcase_create("uffd");
	TCase *tl = tcase_create("latency");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_bad_opts);
	tcase_add_test(tc, test_missing_inproc);
	tcase_add_test(tc, test_missing_background);
	tcase_add_test(tc, test_background_waits_first_fault);
	tcase_add_test(tc, test_missing_child);
	tcase_add_loop_test(tc, test_minor_memfd, 0, 2);
	tcase_add_test(tc, test_minor_holes);
	tcase_add_loop_test(tc, test_source_eagain, 0, 2);
	tcase_add_loop_test(tc, test_stop_blocked, 0, 2);
	tcase_add_loop_test(tc, test_event_remove, 0, 2);
	tcase_add_test(tc, test_eexist_race);
	tcase_add_test(tc, test_source_installed);
	tcase_add_test(tc, test_fatal_poison);
	tcase_add_loop_test(tc, test_remap_unmap, 0, 2);
	suite_add_tcase(s, tc);

	tcase_set_timeout(tl, 120);
	tcase_add_test(tl, test_latency);
	suite_add_tcase(s, tl);
	return s;
}

int main(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	SRunner *sr;
	int fd, failed;

	/* UFFDIO_API once per fd: probe on a throwaway one. */
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || ioctl(fd, UFFDIO_API, &api)) {
		fprintf(stderr, "userfaultfd unusable here (%s): skipped\n", strerror(errno));
		return 77;
	}
	kernel_features = api.features;
	close(fd);

	sr = srunner_create(faultsrv_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
