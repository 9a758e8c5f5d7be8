/* SPDX-License-Identifier: MIT */
/*
 * Unit suite: attached workloads (src/checkpoint/workload_attach.c) and the
 * client library (src/checkpoint/client.c).
 *
 * Each case forks a child that acts as the workload process: a real client
 * (include/ftrepl/client.h) driven by commands on a pipe, or a "raw" client
 * that writes protocol lines by hand (for the hostile cases). The test
 * process plays the sender: it calls ftr_attach_workload_create() and then
 * the workload ops directly, in the order the primary's epoch engine does
 * (pause, harvest, epoch_cut, resume, acked), and checks:
 *   - harvest equals exactly the pages the child wrote since the previous
 *     harvest, and the sender's mapping shows the child's bytes, for both
 *     trackings (wp-async: the child's own uffd, scan: shadow compare);
 *   - output commit: a held output is released only after acked() of its
 *     epoch, and dropped (never released) after session_lost();
 *   - ftrepl_sync_now() makes cut_fd readable;
 *   - bad attach lines (malformed JSON, wrong descriptor count, unaligned
 *     size, pid mismatch, not a memfd, unsealed memfd, private mapping,
 *     over-long line, silence) each end in a named error, in the reply and
 *     in the creator's error text, within a bounded time; the creator keeps
 *     accepting and a good client then attaches;
 *   - a child that never reaches a safe point makes pause() fail with
 *     -ETIMEDOUT in bounded time; a child that exits makes it fail with
 *     -ECONNRESET at once; hostile lines after the attach get error
 *     replies and the workload still pauses.
 * Children report on a pipe as fixed-size messages. CK_FORK stays on.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <ftrepl/attach.h>
#include <ftrepl/client.h>

#include "checkpoint/workload.h"
#include "common/common.h"
#include "testutil.h"
#include "uffd/probe.h"

#define PS 4096u
#define NPAGES0 16
#define NPAGES1 8

/* ---- the pipes between the test and its child ------------------------------ */

struct msg {
	char op;	/* child -> test: 'a' attached, 'w' wrote, 'r' released,
			 * 'd' dropped, 's' synced, 'e' error, 'x' exiting;
			 * test -> child: 'W' write step, 'S' sync, 'Q' quit */
	int64_t k;
	char text[200];
};

struct chan {
	int cmd[2];	/* test -> child */
	int rep[2];	/* child -> test */
};

static char *tmpdir;
static char sock_path[108]; /* sun_path */

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	tmpdir = ftr_test_mkdtemp("ftr-attach");
	if (snprintf(sock_path, sizeof(sock_path), "%s/a.sock", tmpdir) >= (int)sizeof(sock_path))
		abort();
}

static void teardown(void)
{
	ftr_test_rmtree(tmpdir);
	free(tmpdir);
}

static void chan_open(struct chan *c)
{
	ck_assert_int_eq(pipe2(c->cmd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(c->rep, O_CLOEXEC), 0);
}

static void put(int fd, char op, int64_t k, const char *text)
{
	struct msg m = { .op = op, .k = k };

	if (text)
		snprintf(m.text, sizeof(m.text), "%s", text);
	if (write(fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		_exit(99);
}

/* Reads one message within ms; op '\0' on timeout or EOF. */
static struct msg get(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct msg m = { 0 };

	if (poll(&p, 1, ms) == 1 && read(fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		memset(&m, 0, sizeof(m));
	return m;
}

static struct msg expect(struct chan *c, char op, int ms)
{
	struct msg m = get(c->rep[0], ms);

	ck_assert_msg(m.op == op, "expected '%c' from the child, got '%c' (%s)", op,
		      m.op ? m.op : '0', m.text);
	return m;
}

static int reap(pid_t pid, int ms)
{
	uint64_t end = ftr_now_ms() + (uint64_t)ms;
	int st;

	while (ftr_now_ms() < end) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* ---- a real client -------------------------------------------------------- */

/* The pages step k writes: two in region 0, one in region 1. */
static void step_pages(int64_t k, uint64_t *p0a, uint64_t *p0b, uint64_t *p1)
{
	*p0a = (uint64_t)k % NPAGES0;
	*p0b = (uint64_t)(3 * k + 1) % NPAGES0;
	*p1 = (uint64_t)(5 * k + 2) % NPAGES1;
}

static int rep_fd = -1;

static void output_cb(void *arg, const void *buf, size_t len, int status)
{
	int64_t k = (int64_t)(intptr_t)arg;

	/* the bytes are the library's copy of what was held */
	if (len != sizeof(k) || memcmp(buf, &k, sizeof(k)))
		put(rep_fd, 'e', k, "output bytes changed");
	put(rep_fd, status == 0 ? 'r' : 'd', k, NULL);
}

/* Attaches with two regions, then serves commands; the main thread is the
 * only safe-point thread. mode: 0 normal, 1 never answers a pause. */
static void client_child(struct chan *c, enum ftrepl_tracking tracking, int mode)
{
	struct ftrepl_attach_opts o = { .tracking = tracking };
	uint64_t *r0, *r1;
	int ret;

	rep_fd = c->rep[1];
	if ((ret = ftrepl_region_create("alpha", NPAGES0 * PS, (void **)&r0)) ||
	    (ret = ftrepl_region_create("beta", NPAGES1 * PS, (void **)&r1))) {
		put(rep_fd, 'e', ret, "region_create");
		_exit(1);
	}
	/* one page, created and destroyed: must not show in the layout */
	{
		void *tmp;

		if (ftrepl_region_create("gone", PS, &tmp) || ftrepl_region_destroy(tmp))
			_exit(1);
	}
	for (int tries = 0; (ret = ftrepl_attach(sock_path, &o)) == -ENOENT ||
			    ret == -ECONNREFUSED; tries++) {
		if (tries > 500)
			break;
		usleep(10000);
	}
	if (ret) {
		put(rep_fd, 'e', ret, ftrepl_last_error());
		_exit(1);
	}
	put(rep_fd, 'a', 0, NULL);
	for (bool ended = false;;) {
		struct pollfd p[2] = { { .fd = c->cmd[0], .events = POLLIN },
				       { .fd = ftrepl_fd(), .events = POLLIN } };
		struct msg m;

		/* mode 1 never gets to a safe point; after the end, the fd
		 * stays readable: only commands then (and the library's
		 * thread still delivers dropped outputs). */
		poll(p, mode == 1 || ended ? 1 : 2, -1);
		if (mode != 1 && !ended && (p[1].revents & POLLIN)) {
			ret = ftrepl_safe_point();
			if (ret) {
				put(rep_fd, 'x', ret, NULL);
				ended = true;
			}
		}
		if (!(p[0].revents & POLLIN))
			continue;
		m = get(c->cmd[0], 0);
		if (m.op == 'W') {
			uint64_t a, b, q, v = (uint64_t)m.k + 1;
			int64_t k = m.k;

			step_pages(m.k, &a, &b, &q);
			r0[a * (PS / 8)] = v;
			r0[b * (PS / 8) + 1] = v;
			r1[q * (PS / 8) + 7] = v;
			ftrepl_set_progress((uint64_t)m.k);
			ret = ftrepl_output_hold(&k, sizeof(k), output_cb, (void *)(intptr_t)k);
			put(rep_fd, ret ? 'e' : 'w', m.k, ret ? "output_hold" : NULL);
		} else if (m.op == 'S') {
			ret = ftrepl_sync_now();
			put(rep_fd, ret ? 'e' : 's', ret, NULL);
		} else {
			_exit(0);
		}
	}
}

static pid_t spawn_client(struct chan *c, enum ftrepl_tracking tracking, int mode)
{
	pid_t pid;

	chan_open(c);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		client_child(c, tracking, mode);
		_exit(0);
	}
	return pid;
}

static bool wp_async_here(void)
{
	const struct ftr_kprobe *kp;

	return !ftr_kprobe_get(&kp) && kp->wp_async_shmem && kp->pagemap_scan_wp;
}

static uint64_t **maps_alloc(struct ftr_workload *wl)
{
	uint64_t **maps = calloc(wl->nregions, sizeof(*maps));

	for (uint32_t r = 0; r < wl->nregions; r++)
		maps[r] = calloc(ftr_bitmap_words(wl->regions[r].size / PS), 8);
	return maps;
}

static void maps_clear(struct ftr_workload *wl, uint64_t **maps)
{
	for (uint32_t r = 0; r < wl->nregions; r++)
		memset(maps[r], 0, ftr_bitmap_words(wl->regions[r].size / PS) * 8);
}

static void maps_free(struct ftr_workload *wl, uint64_t **maps)
{
	for (uint32_t r = 0; r < wl->nregions; r++)
		free(maps[r]);
	free(maps);
}

static unsigned popcount_map(const uint64_t *m, size_t words)
{
	unsigned n = 0;

	for (size_t i = 0; i < words; i++)
		n += (unsigned)__builtin_popcountll(m[i]);
	return n;
}

static struct ftr_workload *attach_or_fail(int ms)
{
	struct ftr_workload *wl = NULL;
	char err[512];
	int ret = ftr_attach_workload_create(sock_path, ms, &wl, err, sizeof(err));

	ck_assert_msg(ret == 0, "attach: %s (%d)", err, ret);
	return wl;
}

/* ---- cases: a real client -------------------------------------------------- */

static const enum ftrepl_tracking trackings[] = { FTREPL_TRACK_WP_ASYNC, FTREPL_TRACK_SCAN };

START_TEST(epochs_harvest_and_output_commit)
{
	enum ftrepl_tracking tr = trackings[_i];
	struct ftr_workload *wl;
	struct chan c;
	uint64_t **maps;
	char blob[64];
	pid_t pid;

	if (tr == FTREPL_TRACK_WP_ASYNC && !wp_async_here()) {
		printf("SKIP: wp-async unavailable here\n");
		return;
	}
	pid = spawn_client(&c, tr, 0);
	wl = attach_or_fail(10000);
	expect(&c, 'a', 5000);
	ck_assert_str_eq(ftr_attach_tracking(wl), tr == FTREPL_TRACK_SCAN ? "scan" : "wp-async");
	ck_assert_int_eq(ftr_attach_pid(wl), pid);
	ck_assert_uint_eq(wl->nregions, 2);
	ck_assert_str_eq(wl->regions[0].name, "alpha");
	ck_assert_str_eq(wl->regions[1].name, "beta");
	ck_assert_uint_eq(wl->regions[0].size, NPAGES0 * PS);
	ck_assert_uint_eq(wl->regions[1].size, NPAGES1 * PS);
	ck_assert_uint_eq(wl->page_size, PS);
	maps = maps_alloc(wl);

	wl->ops->set_dirty_limits(wl, UINT64_MAX, UINT64_MAX);
	ck_assert_int_eq(wl->ops->start(wl), 0);
	/* Epoch 0: the first harvest reports every page. */
	ck_assert_int_eq(wl->ops->pause(wl, 3000), 0);
	ck_assert_int_eq(wl->ops->harvest(wl, maps), NPAGES0 + NPAGES1);
	wl->ops->epoch_cut(wl, 0);
	wl->ops->resume(wl);
	wl->ops->acked(wl, 0);

	for (int64_t k = 1; k <= 6; k++) {
		uint64_t a, b, q;
		unsigned want0;
		int64_t n;

		put(c.cmd[1], 'W', k, NULL);
		expect(&c, 'w', 5000);
		ck_assert_int_eq(wl->ops->pause(wl, 3000), 0);
		maps_clear(wl, maps);
		n = wl->ops->harvest(wl, maps);
		step_pages(k, &a, &b, &q);
		want0 = a == b ? 1 : 2;
		ck_assert_msg(n == want0 + 1, "step %ld: harvested %ld pages, wrote %u", (long)k,
			      (long)n, want0 + 1);
		ck_assert(ftr_bit_test(maps[0], a) && ftr_bit_test(maps[0], b));
		ck_assert(ftr_bit_test(maps[1], q));
		ck_assert_uint_eq(popcount_map(maps[0], ftr_bitmap_words(NPAGES0)), want0);
		ck_assert_uint_eq(popcount_map(maps[1], ftr_bitmap_words(NPAGES1)), 1);
		/* The sender's own mapping shows the child's bytes. */
		ck_assert_uint_eq(((uint64_t *)wl->regions[0].base)[a * (PS / 8) + (a == b)],
				  (uint64_t)k + 1);
		ck_assert_uint_eq(((uint64_t *)wl->regions[1].base)[q * (PS / 8) + 7],
				  (uint64_t)k + 1);
		ck_assert_int_eq(wl->ops->blob(wl, blob, sizeof(blob)), 32);
		wl->ops->epoch_cut(wl, (uint64_t)k);
		wl->ops->resume(wl);
		ck_assert_uint_eq(wl->ops->progress(wl), (uint64_t)k);
		if (k == 6)
			break;
		/* Held in epoch k: nothing before acked(k). */
		ck_assert_int_eq(get(c.rep[0], 100).op, 0);
		wl->ops->acked(wl, (uint64_t)k);
		ck_assert_int_eq(expect(&c, 'r', 3000).k, k);
	}

	/* Kemari's sync: the client asks, cut_fd becomes readable. */
	{
		struct pollfd p = { .fd = wl->cut_fd, .events = POLLIN };
		uint64_t v;

		while (read(wl->cut_fd, &v, sizeof(v)) > 0)
			;
		put(c.cmd[1], 'S', 0, NULL);
		expect(&c, 's', 3000);
		ck_assert_int_eq(poll(&p, 1, 3000), 1);
	}

	/* The output of epoch 6 was never acked: a lost session drops it
	 * (reported from the library's thread, the end from the main one). */
	wl->ops->session_lost(wl, "test: standby gone");
	{
		struct msg m1 = get(c.rep[0], 3000), m2 = get(c.rep[0], 3000);
		struct msg *d = m1.op == 'd' ? &m1 : &m2, *x = m1.op == 'd' ? &m2 : &m1;

		ck_assert_msg(d->op == 'd' && d->k == 6, "dropped: '%c' %ld", d->op, (long)d->k);
		ck_assert_msg(x->op == 'x' && x->k == -ECONNRESET, "end: '%c' %ld", x->op,
			      (long)x->k);
	}
	ck_assert_int_eq(get(c.rep[0], 100).op, 0); /* nothing else, never released */
	put(c.cmd[1], 'Q', 0, NULL);
	ck_assert_int_eq(reap(pid, 3000), 0);
	wl->ops->stop(wl);
	wl->ops->stop(wl); /* the primary calls it twice */
	maps_free(wl, maps);
	ftr_workload_destroy(wl);
}
END_TEST

/* wp-async with regions larger than the soft limit: the monitor asks for
 * an early epoch; a harvest beyond the hard limit fails by name. */
START_TEST(dirty_budget)
{
	struct ftr_workload *wl;
	struct pollfd p;
	struct chan c;
	uint64_t **maps, v;
	char err[256];
	pid_t pid;

	if (!wp_async_here()) {
		printf("SKIP: wp-async unavailable here\n");
		return;
	}
	pid = spawn_client(&c, FTREPL_TRACK_WP_ASYNC, 0);
	wl = attach_or_fail(10000);
	expect(&c, 'a', 5000);
	maps = maps_alloc(wl);
	wl->ops->set_dirty_limits(wl, UINT64_MAX, UINT64_MAX);
	ck_assert_int_eq(wl->ops->pause(wl, 3000), 0);
	ck_assert_int_eq(wl->ops->harvest(wl, maps), NPAGES0 + NPAGES1);
	wl->ops->resume(wl);
	while (read(wl->cut_fd, &v, sizeof(v)) > 0)
		;
	wl->ops->set_dirty_limits(wl, 2, 2);
	put(c.cmd[1], 'W', 1, NULL); /* three pages */
	expect(&c, 'w', 5000);
	p = (struct pollfd){ .fd = wl->cut_fd, .events = POLLIN };
	ck_assert_int_eq(poll(&p, 1, 2000), 1);
	ck_assert_int_eq(wl->ops->pause(wl, 3000), 0);
	maps_clear(wl, maps);
	ck_assert_int_eq(wl->ops->harvest(wl, maps), -EFBIG);
	ftr_attach_last_error(wl, err, sizeof(err));
	ck_assert_msg(strstr(err, "staging"), "error: %s", err);
	wl->ops->resume(wl);
	wl->ops->session_lost(wl, "epoch too big");
	put(c.cmd[1], 'Q', 0, NULL);
	ck_assert_int_eq(reap(pid, 3000), 0);
	maps_free(wl, maps);
	ftr_workload_destroy(wl);
}
END_TEST

/* Callback mode: the library's thread stops the application's writer
 * thread through pause_cb (a lock the writer holds per write) and lets it
 * go in resume_cb; the main thread never calls ftrepl_safe_point(). */
static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *cb_region;
static int cb_pauses, cb_resumes;

static int cb_pause(void *arg)
{
	pthread_mutex_lock(&cb_lock);
	cb_pauses++;
	return arg == (void *)&cb_lock ? 0 : -EINVAL;
}

static void cb_resume(void *arg)
{
	cb_resumes++;
	pthread_mutex_unlock(&cb_lock);
}

static void *cb_writer(void *arg)
{
	for (uint64_t k = 1;; k++) {
		pthread_mutex_lock(&cb_lock);
		cb_region[(k % NPAGES0) * (PS / 8) + 2] = k;
		cb_region[1] = k; /* page 0: the write count */
		pthread_mutex_unlock(&cb_lock);
		usleep(200);
	}
	return arg;
}

static void callback_child(struct chan *c)
{
	struct ftrepl_attach_opts o = { .tracking = FTREPL_TRACK_AUTO, .pause_cb = cb_pause,
					.resume_cb = cb_resume, .cb_arg = &cb_lock };
	pthread_t t;
	int ret;

	rep_fd = c->rep[1];
	if (ftrepl_region_create("cb", NPAGES0 * PS, (void **)&cb_region))
		_exit(1);
	for (int tries = 0; (ret = ftrepl_attach(sock_path, &o)) == -ENOENT ||
			    ret == -ECONNREFUSED; tries++) {
		if (tries > 500)
			break;
		usleep(10000);
	}
	if (ret || pthread_create(&t, NULL, cb_writer, NULL)) {
		put(rep_fd, 'e', ret, ftrepl_last_error());
		_exit(1);
	}
	put(rep_fd, 'a', 0, NULL);
	for (;;) {
		struct msg m = get(c->cmd[0], -1);

		if (m.op == 'S') {
			struct ftrepl_status st;

			ftrepl_get_status(&st);
			put(rep_fd, 's', (int64_t)st.pauses * 1000 + cb_pauses * 100 + cb_resumes,
			    NULL);
		} else {
			_exit(0);
		}
	}
}

START_TEST(callback_mode_pauses_writer_thread)
{
	struct ftr_workload *wl;
	volatile uint64_t *count;
	uint64_t **maps, v1, v2;
	struct chan c;
	pid_t pid;

	chan_open(&c);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		callback_child(&c);
	wl = attach_or_fail(10000);
	expect(&c, 'a', 5000);
	maps = maps_alloc(wl);
	count = (volatile uint64_t *)wl->regions[0].base + 1;
	wl->ops->set_dirty_limits(wl, UINT64_MAX, UINT64_MAX);
	for (int round = 0; round < 3; round++) {
		usleep(30000);
		ck_assert_int_eq(wl->ops->pause(wl, 3000), 0);
		v1 = *count;
		usleep(30000);
		v2 = *count;
		ck_assert_msg(v1 == v2, "round %d: the writer ran while paused (%lu -> %lu)", round,
			      (unsigned long)v1, (unsigned long)v2);
		maps_clear(wl, maps);
		ck_assert_int_ge(wl->ops->harvest(wl, maps), 1);
		ck_assert(ftr_bit_test(maps[0], 0));
		wl->ops->resume(wl);
		usleep(30000);
		ck_assert_msg(*count > v2, "round %d: the writer did not resume", round);
	}
	/* The final epoch of an orderly stop: the workload stays paused until
	 * "stop", then its writer must run again (resume_cb at the end). */
	ck_assert_int_eq(wl->ops->pause(wl, 3000), 0);
	v1 = *count;
	wl->ops->epoch_cut(wl, 0);
	wl->ops->acked(wl, 0);
	usleep(30000);
	ck_assert_uint_eq(*count, v1);
	wl->ops->stop(wl);
	usleep(50000);
	ck_assert_msg(*count > v1, "the writer stays stopped after the end");
	put(c.cmd[1], 'S', 0, NULL);
	/* 4 pauses answered, pause_cb 4 times, resume_cb 4 times */
	ck_assert_int_eq(expect(&c, 's', 3000).k, 4 * 1000 + 4 * 100 + 4);
	put(c.cmd[1], 'Q', 0, NULL);
	ck_assert_int_eq(reap(pid, 3000), 0);
	maps_free(wl, maps);
	ftr_workload_destroy(wl);
}
END_TEST

START_TEST(orderly_stop_releases_and_ends)
{
	struct ftr_workload *wl;
	struct chan c;
	uint64_t **maps;
	pid_t pid;

	pid = spawn_client(&c, FTREPL_TRACK_SCAN, 0);
	wl = attach_or_fail(10000);
	expect(&c, 'a', 5000);
	maps = maps_alloc(wl);
	wl->ops->set_dirty_limits(wl, UINT64_MAX, UINT64_MAX);
	put(c.cmd[1], 'W', 1, NULL);
	expect(&c, 'w', 5000);
	/* The final epoch: cut, acked, the workload stays paused, stop. */
	ck_assert_int_eq(wl->ops->pause(wl, 3000), 0);
	ck_assert_int_ge(wl->ops->harvest(wl, maps), 1);
	wl->ops->epoch_cut(wl, 0);
	wl->ops->acked(wl, 0);
	ck_assert_int_eq(expect(&c, 'r', 3000).k, 1);
	wl->ops->stop(wl);
	ck_assert_int_eq(expect(&c, 'x', 3000).k, -ESHUTDOWN);
	put(c.cmd[1], 'Q', 0, NULL);
	ck_assert_int_eq(reap(pid, 3000), 0);
	maps_free(wl, maps);
	ftr_workload_destroy(wl);
}
END_TEST

START_TEST(pause_times_out_when_no_safe_point)
{
	struct ftr_workload *wl;
	struct chan c;
	char err[256];
	uint64_t t0;
	pid_t pid;

	pid = spawn_client(&c, FTREPL_TRACK_SCAN, 1);
	wl = attach_or_fail(10000);
	expect(&c, 'a', 5000);
	t0 = ftr_now_ms();
	ck_assert_int_eq(wl->ops->pause(wl, 300), -ETIMEDOUT);
	ck_assert_uint_lt(ftr_now_ms() - t0, 1500);
	ck_assert_int_eq(ftr_attach_last_error(wl, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "did not reach a safe point"), "error: %s", err);
	/* The primary fails the session; the sender side goes on. */
	wl->ops->session_lost(wl, "pause timed out");
	put(c.cmd[1], 'Q', 0, NULL);
	ck_assert_int_eq(reap(pid, 3000), 0);
	ftr_workload_destroy(wl);
}
END_TEST

START_TEST(client_exit_fails_the_pause_at_once)
{
	struct ftr_workload *wl;
	struct pollfd p;
	struct chan c;
	char err[256];
	uint64_t t0;
	pid_t pid;

	pid = spawn_client(&c, trackings[_i], 0);
	if (trackings[_i] == FTREPL_TRACK_WP_ASYNC && !wp_async_here()) {
		kill(pid, SIGKILL);
		reap(pid, 1000);
		return;
	}
	wl = attach_or_fail(10000);
	expect(&c, 'a', 5000);
	put(c.cmd[1], 'Q', 0, NULL);
	ck_assert_int_eq(reap(pid, 3000), 0);
	p = (struct pollfd){ .fd = wl->cut_fd, .events = POLLIN };
	ck_assert_int_eq(poll(&p, 1, 3000), 1); /* the engine is woken */
	t0 = ftr_now_ms();
	ck_assert_int_eq(wl->ops->pause(wl, 3000), -ECONNRESET);
	ck_assert_uint_lt(ftr_now_ms() - t0, 500);
	ftr_attach_last_error(wl, err, sizeof(err));
	ck_assert_msg(strstr(err, "disconnected"), "error: %s", err);
	wl->ops->session_lost(wl, "workload gone");
	ftr_workload_destroy(wl);
}
END_TEST

/* ---- cases: raw, hostile clients --------------------------------------------- */

enum raw_kind {
	RAW_MALFORMED, RAW_FD_COUNT, RAW_UNALIGNED, RAW_PID, RAW_NOT_MEMFD, RAW_UNSEALED,
	RAW_PRIVATE, RAW_OVERSIZE, RAW_SILENT, RAW_BAD_TRACKING, RAW_COUNT
};

static const struct {
	const char *name;
	const char *expect; /* in the error reply and in the creator's error */
} raw_cases[RAW_COUNT] = {
	[RAW_MALFORMED] = { "malformed JSON", "not valid JSON" },
	[RAW_FD_COUNT] = { "wrong fd count", "expected 2 descriptors" },
	[RAW_UNALIGNED] = { "unaligned size", "not a positive multiple of the page size" },
	[RAW_PID] = { "pid mismatch", "does not match the peer's pid" },
	[RAW_NOT_MEMFD] = { "not a memfd", "not a memfd" },
	[RAW_UNSEALED] = { "unsealed memfd", "not sealed against shrinking" },
	[RAW_PRIVATE] = { "private mapping", "private (copy-on-write) mapping" },
	[RAW_OVERSIZE] = { "over-long line", "longer than" },
	[RAW_SILENT] = { "no attach line", "no attach line within" },
	[RAW_BAD_TRACKING] = { "unknown tracking", "\"tracking\" must be" },
};

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	for (int i = 0; i < 500; i++) {
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return s;
		usleep(10000);
	}
	_exit(90);
}

static int raw_memfd(size_t size, bool seal)
{
	int fd = memfd_create("raw", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)size) ||
	    (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)))
		_exit(91);
	return fd;
}

static void raw_send(int s, const char *text, const int *fds, unsigned nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { (void *)text, strlen(text) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		struct cmsghdr *cm;

		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	while (iov.iov_len) {
		ssize_t r = sendmsg(s, &mh, MSG_NOSIGNAL);

		if (r <= 0)
			return; /* the sender may hang up on an over-long line */
		iov.iov_base = (char *)iov.iov_base + r;
		iov.iov_len -= (size_t)r;
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
	}
}

/* Reads one line (up to 4 KiB) within ms; "" if none. */
static void raw_line(int s, char *buf, size_t cap, int ms)
{
	size_t len = 0;
	uint64_t end = ftr_now_ms() + (uint64_t)ms;

	buf[0] = '\0';
	while (len + 1 < cap && ftr_now_ms() < end) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 50) != 1)
			continue;
		r = read(s, buf + len, 1);
		if (r <= 0 || buf[len] == '\n')
			break;
		len++;
	}
	buf[len] = '\0';
}

/* The attach line for one region. */
static char *layout(const void *base, uint64_t size, int pid, const char *tracking)
{
	char *s;

	if (asprintf(&s, "{\"op\":\"attach\",\"pid\":%d,\"uffd\":false,\"tracking\":\"%s\","
		     "\"regions\":[{\"base_host_virt_addr\":%lu,\"size\":%lu,\"offset\":0,"
		     "\"page_size\":4096,\"name\":\"raw\"}]}\n", pid, tracking,
		     (unsigned long)(uintptr_t)base, (unsigned long)size) < 0)
		_exit(92);
	return s;
}

/* A raw client that sends one kind of bad attach line and checks that the
 * reply is an error naming the problem. Exits 0 when it is. */
static void raw_bad_child(enum raw_kind kind)
{
	int s = raw_connect(), fd = raw_memfd(4 * PS, kind != RAW_UNSEALED), fds[2];
	void *base = mmap(NULL, 4 * PS, PROT_READ | PROT_WRITE,
			  kind == RAW_PRIVATE ? MAP_PRIVATE : MAP_SHARED, fd, 0);
	char reply[4096], *line = NULL;
	unsigned nfds = 1;

	fds[0] = fd;
	switch (kind) {
	case RAW_MALFORMED:
		line = strdup("{\"regions\": [ nope\n");
		break;
	case RAW_FD_COUNT:
		if (asprintf(&line, "{\"pid\":%d,\"tracking\":\"scan\",\"regions\":["
			     "{\"base_host_virt_addr\":%lu,\"size\":16384,\"offset\":0},"
			     "{\"base_host_virt_addr\":%lu,\"size\":16384,\"offset\":0}]}\n",
			     (int)getpid(), (unsigned long)(uintptr_t)base,
			     (unsigned long)(uintptr_t)base) < 0)
			_exit(92);
		break;
	case RAW_UNALIGNED:
		line = layout(base, 4097, (int)getpid(), "scan");
		break;
	case RAW_PID:
		line = layout(base, 4 * PS, (int)getpid() + 100000, "scan");
		break;
	case RAW_NOT_MEMFD: {
		int p[2];

		if (pipe(p))
			_exit(93);
		fds[0] = p[0];
		line = layout(base, 4 * PS, (int)getpid(), "scan");
		break;
	}
	case RAW_OVERSIZE: {
		size_t n = 100 * 1024;

		line = malloc(n + 2);
		memset(line, ' ', n);
		line[n] = '\n';
		line[n + 1] = '\0';
		break;
	}
	case RAW_SILENT:
		nfds = 0;
		break;
	case RAW_BAD_TRACKING:
		line = layout(base, 4 * PS, (int)getpid(), "magic");
		break;
	default: /* unsealed, private: the layout itself is right */
		line = layout(base, 4 * PS, (int)getpid(), "scan");
		break;
	}
	if (line)
		raw_send(s, line, fds, nfds);
	free(line);
	raw_line(s, reply, sizeof(reply), 8000);
	{
		json_t *o = json_loads(reply, 0, NULL);
		const char *op = json_string_value(json_object_get(o, "op"));
		const char *e = json_string_value(json_object_get(o, "error"));
		bool ok = op && !strcmp(op, "error") && e && strstr(e, raw_cases[kind].expect);

		json_decref(o);
		if (ok)
			_exit(0);
	}
	{
		fprintf(stderr, "raw client (%s): reply \"%s\"\n", raw_cases[kind].name, reply);
		_exit(1);
	}
	_exit(0);
}

START_TEST(bad_attach_is_rejected_by_name)
{
	enum raw_kind kind = (enum raw_kind)_i;
	struct ftr_workload *wl = NULL;
	char err[512];
	uint64_t t0 = ftr_now_ms();
	pid_t pid = fork();
	int ret;

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		raw_bad_child(kind);
	ret = ftr_attach_workload_create(sock_path, 1500, &wl, err, sizeof(err));
	ck_assert_int_eq(ret, -ETIMEDOUT);
	ck_assert_uint_lt(ftr_now_ms() - t0, 4000);
	ck_assert_msg(strstr(err, "last rejected") && strstr(err, raw_cases[kind].expect),
		      "%s: creator says \"%s\"", raw_cases[kind].name, err);
	ck_assert_int_eq(reap(pid, 5000), 0);
	/* the listener is gone with the failed create */
	ck_assert_int_ne(access(sock_path, F_OK), 0);
}
END_TEST

START_TEST(good_client_after_a_bad_one)
{
	struct ftr_workload *wl;
	struct chan c;
	pid_t bad, good;

	bad = fork();
	ck_assert_int_ge(bad, 0);
	if (bad == 0)
		raw_bad_child(RAW_MALFORMED);
	chan_open(&c);
	good = fork();
	ck_assert_int_ge(good, 0);
	if (good == 0) {
		usleep(300000); /* after the bad one */
		client_child(&c, FTREPL_TRACK_SCAN, 0);
		_exit(0);
	}
	wl = attach_or_fail(10000);
	ck_assert_int_eq(reap(bad, 5000), 0);
	expect(&c, 'a', 5000);
	ck_assert_int_eq(ftr_attach_pid(wl), good);
	ck_assert_int_eq(wl->ops->pause(wl, 3000), 0);
	wl->ops->resume(wl);
	wl->ops->stop(wl);
	ck_assert_int_eq(expect(&c, 'x', 3000).k, -ESHUTDOWN);
	put(c.cmd[1], 'Q', 0, NULL);
	ck_assert_int_eq(reap(good, 3000), 0);
	ftr_workload_destroy(wl);
}
END_TEST

START_TEST(stale_socket_replaced_live_one_refused)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ftr_workload *wl = NULL;
	char err[512];
	int s = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(s, 1), 0);
	ck_assert_int_eq(ftr_attach_workload_create(sock_path, 100, &wl, err, sizeof(err)),
			 -EADDRINUSE);
	close(s); /* now stale */
	ck_assert_int_eq(ftr_attach_workload_create(sock_path, 100, &wl, err, sizeof(err)),
			 -ETIMEDOUT);
	ck_assert_msg(strstr(err, "no workload attached"), "%s", err);
	/* not a socket: never removed */
	close(open(sock_path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	ck_assert_int_eq(ftr_attach_workload_create(sock_path, 100, &wl, err, sizeof(err)),
			 -EEXIST);
	ck_assert_int_eq(access(sock_path, F_OK), 0);
}
END_TEST

/* Attaches correctly by hand (scan), then misbehaves, then answers two
 * pauses, writing page 1 between them. Exits 0 when it saw the error
 * replies to all six bad lines. */
static void raw_hostile_child(void)
{
	int s = raw_connect(), fd = raw_memfd(4 * PS, true), errors = 0, pauses = 0;
	void *base = mmap(NULL, 4 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	char *line = layout(base, 4 * PS, (int)getpid(), "scan"), buf[4096], *big;
	size_t bign = 70 * 1024;
	int fds[1] = { fd };

	raw_send(s, line, &fd, 1);
	free(line);
	raw_line(s, buf, sizeof(buf), 5000);
	if (!strstr(buf, "\"attached\""))
		_exit(2);
	raw_send(s, "nonsense\n", NULL, 0);
	raw_send(s, "{\"op\":\"bogus\"}\n", NULL, 0);
	raw_send(s, "{\"op\":\"paused\",\"seq\":77}\n", NULL, 0);
	raw_send(s, "[1,2,3]\n", NULL, 0);
	big = malloc(bign + 1);
	memset(big, 'x', bign);
	big[bign] = '\0';
	big[bign - 1] = '\n';
	raw_send(s, big, NULL, 0); /* over-long */
	free(big);
	raw_send(s, "{\"op\":\"sync\"}\n", fds, 1); /* descriptors after the attach */
	for (int i = 0; i < 200; i++) {
		json_t *o;
		const char *op;

		raw_line(s, buf, sizeof(buf), 5000);
		o = json_loads(buf, 0, NULL);
		op = json_string_value(json_object_get(o, "op"));
		if (!op) {
			json_decref(o);
			break;
		}
		if (!strcmp(op, "error")) {
			errors++;
		} else if (!strcmp(op, "pause")) {
			char ans[128];

			if (++pauses == 2 && errors < 6)
				_exit(3);
			snprintf(ans, sizeof(ans), "{\"op\":\"paused\",\"seq\":%lld,\"progress\":42}\n",
				 (long long)json_integer_value(json_object_get(o, "seq")));
			raw_send(s, ans, NULL, 0);
		} else if (!strcmp(op, "resume")) {
			if (pauses == 2)
				_exit(0);
			((char *)base)[PS] = 1; /* page 1 changes before the next pause */
		}
		json_decref(o);
	}
	fprintf(stderr, "hostile client: %d error replies, %d pauses\n", errors, pauses);
	_exit(4);
}

START_TEST(hostile_lines_after_attach)
{
	struct ftr_workload *wl;
	uint64_t **maps;
	char err[256];
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		raw_hostile_child();
	wl = attach_or_fail(10000);
	maps = maps_alloc(wl);
	wl->ops->set_dirty_limits(wl, UINT64_MAX, UINT64_MAX);
	ck_assert_int_eq(wl->ops->pause(wl, 3000), 0);
	ck_assert_int_eq(wl->ops->harvest(wl, maps), 4); /* first: every page */
	wl->ops->resume(wl);
	/* let the garbage arrive and be answered */
	for (int i = 0; i < 100; i++) {
		ftr_attach_last_error(wl, err, sizeof(err));
		if (strstr(err, "descriptors"))
			break;
		usleep(20000);
	}
	ck_assert_msg(strstr(err, "bad line"), "error: %s", err);
	ck_assert_int_eq(wl->ops->pause(wl, 5000), 0);
	maps_clear(wl, maps);
	ck_assert_int_eq(wl->ops->harvest(wl, maps), 1);
	ck_assert(ftr_bit_test(maps[0], 1));
	ck_assert_uint_eq(wl->ops->progress(wl), 42);
	wl->ops->resume(wl);
	ck_assert_int_eq(reap(pid, 5000), 0);
	wl->ops->session_lost(wl, "done");
	maps_free(wl, maps);
	ftr_workload_destroy(wl);
}
END_TEST

static Suite *attach_suite(void)
{
	Suite *s = suite_create("attach");
	TCase *tc = tcase_create("attach");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, epochs_harvest_and_output_commit, 0, 2);
	tcase_add_test(tc, dirty_budget);
	tcase_add_test(tc, callback_mode_pauses_writer_thread);
	tcase_add_test(tc, orderly_stop_releases_and_ends);
	tcase_add_test(tc, pause_times_out_when_no_safe_point);
	tcase_add_loop_test(tc, client_exit_fails_the_pause_at_once, 0, 2);
	tcase_add_loop_test(tc, bad_attach_is_rejected_by_name, 0, RAW_COUNT);
	tcase_add_test(tc, good_client_after_a_bad_one);
	tcase_add_test(tc, stale_socket_replaced_live_one_refused);
	tcase_add_test(tc, hostile_lines_after_attach);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(attach_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
