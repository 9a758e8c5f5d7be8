/* SPDX-License-Identifier: MIT */
/*
 * The client library (include/ftrepl/client.h): protected regions, the
 * attach handshake, pauses at safe points and output commit, on the
 * application's side of the attach protocol (include/ftrepl/attach.h).
 *
 * Threads:
 *   - "ftrepl-client" (started by ftrepl_attach) reads the sender's lines:
 *     a pause raises the attention flag and ftrepl_fd(), a resume wakes
 *     the parked threads, "cut" moves the epoch outputs are tagged with,
 *     "acked" releases held outputs, "lost"/"stop"/EOF end the session. In
 *     callback mode it also calls the application's pause/resume
 *     callbacks, and by default it runs the output callbacks;
 *   - application threads call ftrepl_safe_point(), ftrepl_output_hold(),
 *     ftrepl_sync_now(), ftrepl_dispatch().
 * Lines to the sender are written under wlock (the library's thread, the
 * thread that completes a pause and ftrepl_sync_now() all write), never
 * with `lock` held, so a slow socket never stalls ftrepl_output_hold().
 *
 * Output commit: an output is tagged with the epoch after the last one
 * cut. The application holds it after writing the state it depends on,
 * from a thread that pauses, so that state is in the tagged epoch or an
 * earlier one: "cut E" is handled while every such thread is parked, and
 * they read the tag after their safe point returns. Acks arrive in epoch
 * order and the queue is in tag order, so releases are in hold order.
 */
#define FTR_LOG_PREFIX "client"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include <ftrepl/client.h>
#include <ftrepl/wire.h>

#include "checkpoint/attach_proto.h"
#include "common/common.h"
#include "uffd/probe.h"
#include "uffd/uffd_io.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define CL_ATTACH_TIMEOUT_MS 10000

struct cl_output {
	struct cl_output *next;
	uint64_t epoch;
	ftrepl_output_cb cb;
	void *arg;
	int status;		/* when delivered: 0 release, -ECANCELED drop */
	size_t len;
	unsigned char data[];
};

struct cl_list {
	struct cl_output *head, *tail;
};

struct cl_region {
	void *base;
	size_t size;
	int fd;
	char name[FTREPL_REGION_NAME];
};

/* The process's one attachment (see client.h for why it is process-wide). */
static struct {
	pthread_mutex_t api;	/* serializes attach/detach/region changes */
	struct cl_region reg[FTREPL_MAX_REGIONS];
	unsigned nreg;

	/* set by attach, torn down by detach (under api) */
	bool attached;
	int sock, efd, stop_fd, uffd;
	pthread_t thread;
	struct ftr_linebuf lb;
	struct ftrepl_attach_opts o;
	char tracking[16];

	pthread_mutex_t wlock;	/* one writer on sock */

	pthread_mutex_t lock;	/* everything below */
	pthread_cond_t cv;
	enum ftrepl_state state;
	bool pause_pending;	/* asked, not resumed */
	uint64_t pause_seq;
	uint64_t answered_seq;
	uint64_t resume_gen;	/* bumped by every resume and by the end */
	unsigned parked;
	bool cb_paused;		/* callback mode: pause_cb returned 0, no resume_cb yet */
	uint64_t last_cut, acked;
	struct cl_list held;	/* waiting for their epoch, tag order */
	struct cl_list ready;	/* due, for ftrepl_dispatch() */
	uint64_t nheld, released, dropped, pauses;
	bool efd_set;
	char error[256];

	pthread_mutex_t dispatch; /* one dispatcher at a time: keeps the order */
	atomic_bool attention;	/* fast path of ftrepl_safe_point(): */
	_Atomic int state_pub;	/* a copy of state readable without lock */
	_Atomic uint64_t progress;
} cl = {
	.api = PTHREAD_MUTEX_INITIALIZER,
	.wlock = PTHREAD_MUTEX_INITIALIZER,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.dispatch = PTHREAD_MUTEX_INITIALIZER,
	.sock = -1, .efd = -1, .stop_fd = -1, .uffd = -1,
	.last_cut = FTR_EPOCH_NONE, .acked = FTR_EPOCH_NONE,
};

static void list_add(struct cl_list *l, struct cl_output *o)
{
	o->next = NULL;
	if (l->tail)
		l->tail->next = o;
	else
		l->head = o;
	l->tail = o;
}

static void list_splice(struct cl_list *dst, struct cl_list *src)
{
	if (!src->head)
		return;
	if (dst->tail)
		dst->tail->next = src->head;
	else
		dst->head = src->head;
	dst->tail = src->tail;
	src->head = src->tail = NULL;
}

/* Calls and frees every output of the list, in order. */
static int deliver(struct cl_list *l)
{
	struct cl_output *o = l->head, *next;
	int n = 0;

	l->head = l->tail = NULL;
	for (; o; o = next, n++) {
		next = o->next;
		o->cb(o->arg, o->data, o->len, o->status);
		free(o);
	}
	return n;
}

/* Under lock: ftrepl_fd() is readable exactly while the application has
 * something to do: a pause to answer, outputs to dispatch, or the end. */
static void update_attention(void)
{
	bool need = (cl.pause_pending && !cl.o.pause_cb) || cl.ready.head ||
		    cl.state == FTREPL_STOPPED || cl.state == FTREPL_LOST;
	uint64_t v = 1;

	atomic_store(&cl.attention, need);
	if (cl.efd < 0 || need == cl.efd_set)
		return;
	if (need) {
		if (write(cl.efd, &v, sizeof(v)) < 0) {
			/* cannot saturate with one write */
		}
	} else if (read(cl.efd, &v, sizeof(v)) < 0) {
		/* already drained */
	}
	cl.efd_set = need;
}

static void set_error_locked(const char *fmt, ...) FTR_PRINTF(1, 2);

static void set_error_locked(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cl.error, sizeof(cl.error), fmt, ap);
	va_end(ap);
}

/* Sends one line (obj consumed). */
static int cl_send(json_t *obj)
{
	int ret;

	if (!obj)
		return -ENOMEM;
	pthread_mutex_lock(&cl.wlock);
	ret = cl.sock >= 0 ? ftr_line_send(cl.sock, obj, NULL, 0, FTR_ATTACH_SEND_MS) : -ENOTCONN;
	pthread_mutex_unlock(&cl.wlock);
	json_decref(obj);
	return ret;
}

static int send_paused(uint64_t seq)
{
	return cl_send(json_pack("{s:s, s:I, s:I}", "op", "paused", "seq", (json_int_t)seq,
				 "progress", (json_int_t)atomic_load(&cl.progress)));
}

/* Ends the session (first caller only): every output still held is
 * dropped, parked threads are released. Called without lock. */
static void end_session(enum ftrepl_state st, const char *why)
{
	struct cl_list drop = { 0 };
	int reason = st == FTREPL_STOPPED ? -ESHUTDOWN : -ECONNRESET;
	bool resume_writers;

	pthread_mutex_lock(&cl.lock);
	if (cl.state != FTREPL_PROTECTED) {
		pthread_mutex_unlock(&cl.lock);
		return;
	}
	cl.state = st;
	atomic_store(&cl.state_pub, st);
	if (why && *why)
		set_error_locked("%s", why);
	for (struct cl_output *o = cl.held.head; o; o = o->next) {
		o->status = -ECANCELED;
		cl.dropped++;
	}
	cl.nheld = 0;
	list_splice(&drop, &cl.held);
	cl.pause_pending = false;
	cl.resume_gen++;
	pthread_cond_broadcast(&cl.cv);
	/* The final epoch of an orderly stop leaves the workload paused: the
	 * writers the callback stopped must run again. */
	resume_writers = cl.cb_paused;
	cl.cb_paused = false;
	if (cl.o.release_in_dispatch)
		list_splice(&cl.ready, &drop);
	update_attention();
	pthread_mutex_unlock(&cl.lock);
	if (resume_writers && cl.o.resume_cb)
		cl.o.resume_cb(cl.o.cb_arg);
	deliver(&drop);
	if (cl.o.on_end)
		cl.o.on_end(cl.o.cb_arg, reason);
}

static bool get_u64(json_t *o, const char *key, uint64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*v = (uint64_t)json_integer_value(j);
	return true;
}

static void on_pause(uint64_t seq)
{
	int ret;

	pthread_mutex_lock(&cl.lock);
	if (cl.state != FTREPL_PROTECTED) {
		pthread_mutex_unlock(&cl.lock);
		return;
	}
	cl.pause_seq = seq;
	cl.pause_pending = true;
	update_attention();
	pthread_mutex_unlock(&cl.lock);
	if (!cl.o.pause_cb)
		return; /* the last thread to park in ftrepl_safe_point() answers */
	ret = cl.o.pause_cb(cl.o.cb_arg);
	pthread_mutex_lock(&cl.lock);
	cl.answered_seq = seq;
	cl.cb_paused = !ret;
	if (!ret)
		cl.pauses++;
	else
		set_error_locked("the pause callback refused: %s", strerror(-ret));
	pthread_mutex_unlock(&cl.lock);
	if (!ret)
		send_paused(seq);
	else
		cl_send(json_pack("{s:s, s:I, s:s}", "op", "refused", "seq", (json_int_t)seq,
				  "error", strerror(-ret)));
}

static void on_resume(void)
{
	bool was;

	pthread_mutex_lock(&cl.lock);
	was = cl.cb_paused;
	cl.cb_paused = false;
	cl.pause_pending = false;
	cl.resume_gen++;
	pthread_cond_broadcast(&cl.cv);
	update_attention();
	pthread_mutex_unlock(&cl.lock);
	if (was && cl.o.resume_cb)
		cl.o.resume_cb(cl.o.cb_arg);
}

static void on_acked(uint64_t e)
{
	struct cl_list due = { 0 };

	pthread_mutex_lock(&cl.lock);
	if (cl.acked == FTR_EPOCH_NONE || e > cl.acked)
		cl.acked = e;
	while (cl.held.head && cl.held.head->epoch <= e) {
		struct cl_output *o = cl.held.head;

		cl.held.head = o->next;
		if (!cl.held.head)
			cl.held.tail = NULL;
		o->status = 0;
		list_add(&due, o);
		cl.nheld--;
		cl.released++;
	}
	if (cl.o.release_in_dispatch) {
		list_splice(&cl.ready, &due);
		update_attention();
	}
	pthread_mutex_unlock(&cl.lock);
	deliver(&due);
}

static void handle_line(const char *line)
{
	json_t *o = json_loads(line, 0, NULL);
	const char *op = json_string_value(json_object_get(o, "op"));
	uint64_t v = 0;

	if (!op) {
		pthread_mutex_lock(&cl.lock);
		set_error_locked("the sender sent a line that is not an op: %.80s", line);
		pthread_mutex_unlock(&cl.lock);
	} else if (!strcmp(op, "pause")) {
		get_u64(o, "seq", &v);
		on_pause(v);
	} else if (!strcmp(op, "resume")) {
		on_resume();
	} else if (!strcmp(op, "cut") && get_u64(o, "epoch", &v)) {
		pthread_mutex_lock(&cl.lock);
		cl.last_cut = v;
		pthread_mutex_unlock(&cl.lock);
	} else if (!strcmp(op, "acked") && get_u64(o, "epoch", &v)) {
		on_acked(v);
	} else if (!strcmp(op, "lost")) {
		const char *why = json_string_value(json_object_get(o, "why"));
		char msg[256];

		snprintf(msg, sizeof(msg), "session lost: %s", why ? why : "no reason given");
		end_session(FTREPL_LOST, msg);
	} else if (!strcmp(op, "stop")) {
		end_session(FTREPL_STOPPED, NULL);
	} else if (!strcmp(op, "error")) {
		const char *e = json_string_value(json_object_get(o, "error"));

		pthread_mutex_lock(&cl.lock);
		set_error_locked("the sender says: %s", e ? e : "(no text)");
		pthread_mutex_unlock(&cl.lock);
	}
	/* unknown ops from a newer sender are ignored */
	json_decref(o);
}

static void *client_main(void *arg)
{
	ftr_thread_name("ftr-client");

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = cl.sock, .events = POLLIN },
			{ .fd = cl.stop_fd, .events = POLLIN },
		};
		char *line;
		ssize_t n;

		while ((n = ftr_linebuf_next(&cl.lb, &line)) != -EAGAIN)
			if (n >= 0)
				handle_line(line);
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (!pfd[0].revents)
			continue;
		n = ftr_linebuf_fill(&cl.lb, cl.sock, NULL, 0, &(unsigned){ 0 }, &(bool){ false });
		if (n == -EAGAIN)
			continue;
		if (n <= 0) {
			char msg[128];

			snprintf(msg, sizeof(msg), "the sender went away (%s)",
				 n ? strerror((int)-n) : "connection closed");
			end_session(FTREPL_LOST, msg);
			break;
		}
	}
	return arg;
}

/* Library threads take no process signals: those are the program's. */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int ret;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

/* ---- regions ------------------------------------------------------------ */

int ftrepl_region_create(const char *name, size_t size, void **addr)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	struct cl_region *g;
	int ret;

	if (!name || !*name || strlen(name) >= FTREPL_REGION_NAME || !size || !addr ||
	    size > SIZE_MAX - ps)
		return -EINVAL;
	size = (size + ps - 1) / ps * ps;
	pthread_mutex_lock(&cl.api);
	if (cl.attached) {
		ret = -EBUSY;
		goto out;
	}
	if (cl.nreg >= FTREPL_MAX_REGIONS) {
		ret = -E2BIG;
		goto out;
	}
	g = &cl.reg[cl.nreg];
	g->fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (g->fd < 0) {
		ret = -errno;
		goto out;
	}
	/* Sealed: the sender maps it, a shrink would kill the sender. */
	if (ftruncate(g->fd, (off_t)size) < 0 ||
	    fcntl(g->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		ret = -errno;
		goto out_close;
	}
	g->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
	if (g->base == MAP_FAILED) {
		ret = -errno;
		goto out_close;
	}
	/* Real pages now rather than first-touch faults in the hot path. */
	madvise(g->base, size, MADV_POPULATE_WRITE);
	g->size = size;
	ftr_strlcpy(g->name, name, sizeof(g->name));
	cl.nreg++;
	*addr = g->base;
	ret = 0;
	goto out;

out_close:
	close(g->fd);
	g->fd = -1;
out:
	pthread_mutex_unlock(&cl.api);
	return ret;
}

int ftrepl_region_destroy(void *addr)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&cl.api);
	for (unsigned i = 0; i < cl.nreg; i++) {
		if (cl.reg[i].base != addr)
			continue;
		if (cl.attached) {
			ret = -EBUSY;
			break;
		}
		munmap(cl.reg[i].base, cl.reg[i].size);
		close(cl.reg[i].fd);
		memmove(&cl.reg[i], &cl.reg[i + 1], (cl.nreg - i - 1) * sizeof(cl.reg[0]));
		cl.nreg--;
		ret = 0;
		break;
	}
	pthread_mutex_unlock(&cl.api);
	return ret;
}

/* ---- attach / detach ---------------------------------------------------- */

/* Registers every region for async write-protect on a new uffd and
 * protects it, so the sender's first harvest re-arms only what changed. */
static int arm_wp_async(char *err, size_t errlen)
{
	const struct ftr_kprobe *kp;
	uint64_t want;
	int rc;

	if (ftr_kprobe_get(&kp) || !kp->wp_async_shmem || !kp->pagemap_scan_wp) {
		snprintf(err, errlen, "wp-async tracking is unavailable here: %s",
			 kp ? (kp->wp_async_shmem ? ftr_kprobe_why(kp, FTR_KF_PAGEMAP_SCAN_WP)
						  : ftr_kprobe_why(kp, FTR_KF_WP_ASYNC_SHMEM))
			    : "the kernel probe failed");
		return -EOPNOTSUPP;
	}
	want = UFFD_FEATURE_WP_ASYNC |
	       (kp->features & (UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_HUGETLBFS_SHMEM));
	/* Async faults never reach user space: a user-mode-only uffd does. */
	rc = ftr_uffd_open(want, true, NULL, NULL, NULL);
	if (rc < 0) {
		snprintf(err, errlen, "userfaultfd with WP_ASYNC: %s", strerror(-rc));
		return rc;
	}
	cl.uffd = rc;
	for (unsigned r = 0; r < cl.nreg; r++) {
		rc = ftr_uffd_register(cl.uffd, cl.reg[r].base, cl.reg[r].size,
				       UFFDIO_REGISTER_MODE_WP, NULL);
		if (!rc)
			rc = ftr_uffd_wp(cl.uffd, cl.reg[r].base, cl.reg[r].size, true, false);
		if (rc) {
			snprintf(err, errlen, "region %s: async write-protect: %s", cl.reg[r].name,
				 strerror(-rc));
			close(cl.uffd); /* unregisters every range */
			cl.uffd = -1;
			return rc;
		}
	}
	return 0;
}

static json_t *attach_json(bool pass_uffd)
{
	json_t *regs = json_array(), *o;

	if (!regs)
		return NULL;
	for (unsigned r = 0; r < cl.nreg; r++)
		json_array_append_new(regs, json_pack("{s:I, s:I, s:I, s:I, s:s}",
			"base_host_virt_addr", (json_int_t)(uintptr_t)cl.reg[r].base,
			"size", (json_int_t)cl.reg[r].size, "offset", (json_int_t)0,
			"page_size", (json_int_t)sysconf(_SC_PAGESIZE), "name", cl.reg[r].name));
	o = json_pack("{s:s, s:i, s:i, s:b, s:s, s:o}", "op", "attach", "version",
		      FTR_ATTACH_VERSION, "pid", (int)getpid(), "uffd", pass_uffd, "tracking",
		      cl.tracking, "regions", regs);
	return o;
}

/* Waits for the sender's one-line answer to the attach. */
static int attach_answer(int timeout_ms, char *err, size_t errlen)
{
	uint64_t end = ftr_now_ms() + (uint64_t)timeout_ms;
	char *line;
	ssize_t n;

	for (;;) {
		struct pollfd p = { .fd = cl.sock, .events = POLLIN };
		uint64_t now = ftr_now_ms();
		json_t *o;
		const char *op;
		int ret;

		n = ftr_linebuf_next(&cl.lb, &line);
		if (n >= 0) {
			o = json_loads(line, 0, NULL);
			op = json_string_value(json_object_get(o, "op"));
			if (op && !strcmp(op, "attached")) {
				ret = 0;
			} else if (op && !strcmp(op, "error")) {
				const char *e = json_string_value(json_object_get(o, "error"));

				snprintf(err, errlen, "the sender refused the attach: %s",
					 e ? e : "(no reason)");
				ret = -EPROTO;
			} else {
				snprintf(err, errlen, "unexpected answer to the attach: %.80s", line);
				ret = -EPROTO;
			}
			json_decref(o);
			return ret;
		}
		if (n == -EMSGSIZE) {
			snprintf(err, errlen, "the sender's answer is too long");
			return -EPROTO;
		}
		if (now >= end) {
			snprintf(err, errlen, "no answer from the sender within %d ms", timeout_ms);
			return -ETIMEDOUT;
		}
		if (poll(&p, 1, (int)(end - now)) <= 0)
			continue;
		n = ftr_linebuf_fill(&cl.lb, cl.sock, NULL, 0, &(unsigned){ 0 }, &(bool){ false });
		if (n == 0 || (n < 0 && n != -EAGAIN)) {
			snprintf(err, errlen, "the sender closed the connection during the attach");
			return n ? (int)n : -ECONNRESET;
		}
	}
}

/* Undoes the connection-side state of an attachment (under api). */
static void teardown(void)
{
	if (cl.uffd >= 0) {
		for (unsigned r = 0; r < cl.nreg; r++)
			ftr_uffd_unregister(cl.uffd, cl.reg[r].base, cl.reg[r].size);
		close(cl.uffd);
	}
	pthread_mutex_lock(&cl.wlock);
	if (cl.sock >= 0)
		close(cl.sock);
	cl.sock = -1;
	pthread_mutex_unlock(&cl.wlock);
	if (cl.stop_fd >= 0)
		close(cl.stop_fd);
	pthread_mutex_lock(&cl.lock);
	if (cl.efd >= 0)
		close(cl.efd);
	cl.efd = -1;
	cl.efd_set = false;
	pthread_mutex_unlock(&cl.lock);
	cl.uffd = cl.stop_fd = -1;
	ftr_linebuf_free(&cl.lb);
}

int ftrepl_attach(const char *sock_path, const struct ftrepl_attach_opts *opts)
{
	struct ftrepl_attach_opts o = opts ? *opts : (struct ftrepl_attach_opts){ 0 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fds[FTREPL_MAX_REGIONS + 1], ret;
	char err[256] = "";
	unsigned nfds = 0;
	bool pass_uffd;
	json_t *msg;

	if (!sock_path || strlen(sock_path) >= sizeof(sa.sun_path))
		return -EINVAL;
	if (!o.safe_point_threads)
		o.safe_point_threads = 1;
	if (!o.timeout_ms)
		o.timeout_ms = CL_ATTACH_TIMEOUT_MS;
	pthread_mutex_lock(&cl.api);
	if (cl.attached) {
		pthread_mutex_unlock(&cl.api);
		return -EALREADY;
	}
	if (!cl.nreg) {
		snprintf(err, sizeof(err), "no protected region: create one with ftrepl_region_create()");
		ret = -ENOENT;
		goto out_error;
	}
	cl.o = o;
	if (o.tracking == FTREPL_TRACK_AUTO) {
		const struct ftr_kprobe *kp;

		o.tracking = !ftr_kprobe_get(&kp) && kp->wp_async_shmem && kp->pagemap_scan_wp
				     ? FTREPL_TRACK_WP_ASYNC : FTREPL_TRACK_SCAN;
	}
	ftr_strlcpy(cl.tracking, o.tracking == FTREPL_TRACK_WP_ASYNC ? "wp-async" : "scan",
		    sizeof(cl.tracking));
	ret = ftr_linebuf_init(&cl.lb, FTR_ATTACH_MAX_LINE);
	if (ret)
		goto out_teardown;
	cl.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cl.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (cl.efd < 0 || cl.stop_fd < 0) {
		ret = -errno;
		snprintf(err, sizeof(err), "eventfd: %s", strerror(-ret));
		goto out_teardown;
	}
	if (o.tracking == FTREPL_TRACK_WP_ASYNC) {
		ret = arm_wp_async(err, sizeof(err));
		if (ret)
			goto out_teardown;
	}
	cl.sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ftr_strlcpy(sa.sun_path, sock_path, sizeof(sa.sun_path));
	if (cl.sock < 0 || connect(cl.sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		snprintf(err, sizeof(err), "cannot connect to %s: %s", sock_path, strerror(-ret));
		goto out_teardown;
	}
	pass_uffd = cl.uffd >= 0 && !o.keep_uffd;
	for (unsigned r = 0; r < cl.nreg; r++)
		fds[nfds++] = cl.reg[r].fd;
	if (pass_uffd)
		fds[nfds++] = cl.uffd;
	msg = attach_json(pass_uffd);
	ret = msg ? ftr_line_send(cl.sock, msg, fds, nfds, o.timeout_ms) : -ENOMEM;
	json_decref(msg);
	if (ret) {
		snprintf(err, sizeof(err), "sending the attach to %s: %s", sock_path, strerror(-ret));
		goto out_teardown;
	}
	ret = attach_answer(o.timeout_ms, err, sizeof(err));
	if (ret)
		goto out_teardown;

	pthread_mutex_lock(&cl.lock);
	cl.state = FTREPL_PROTECTED;
	atomic_store(&cl.state_pub, FTREPL_PROTECTED);
	cl.pause_pending = false;
	cl.pause_seq = cl.answered_seq = 0;
	cl.parked = 0;
	cl.cb_paused = false;
	cl.last_cut = cl.acked = FTR_EPOCH_NONE;
	cl.nheld = cl.released = cl.dropped = cl.pauses = 0;
	cl.error[0] = '\0';
	update_attention();
	pthread_mutex_unlock(&cl.lock);
	ret = -start_thread(&cl.thread, client_main, NULL);
	if (ret) {
		snprintf(err, sizeof(err), "cannot start the client thread: %s", strerror(-ret));
		pthread_mutex_lock(&cl.lock);
		cl.state = FTREPL_DETACHED;
		atomic_store(&cl.state_pub, FTREPL_DETACHED);
		pthread_mutex_unlock(&cl.lock);
		goto out_teardown;
	}
	cl.attached = true;
	pthread_mutex_unlock(&cl.api);
	return 0;

out_teardown:
	teardown();
out_error:
	pthread_mutex_lock(&cl.lock);
	ftr_strlcpy(cl.error, err, sizeof(cl.error));
	pthread_mutex_unlock(&cl.lock);
	pthread_mutex_unlock(&cl.api);
	return ret;
}

int ftrepl_detach(void)
{
	struct cl_list drop = { 0 };
	bool resume_writers;
	uint64_t one = 1;

	pthread_mutex_lock(&cl.api);
	if (!cl.attached) {
		pthread_mutex_unlock(&cl.api);
		return -ENOTCONN;
	}
	if (write(cl.stop_fd, &one, sizeof(one)) < 0) {
		/* cannot fail with a fresh eventfd */
	}
	pthread_join(cl.thread, NULL);
	pthread_mutex_lock(&cl.lock);
	for (struct cl_output *o = cl.held.head; o; o = o->next) {
		o->status = -ECANCELED;
		cl.dropped++;
	}
	cl.nheld = 0;
	list_splice(&drop, &cl.ready);
	list_splice(&drop, &cl.held);
	cl.state = FTREPL_DETACHED;
	atomic_store(&cl.state_pub, FTREPL_DETACHED);
	cl.pause_pending = false;
	cl.resume_gen++;
	pthread_cond_broadcast(&cl.cv);
	resume_writers = cl.cb_paused;
	cl.cb_paused = false;
	pthread_mutex_unlock(&cl.lock);
	if (resume_writers && cl.o.resume_cb)
		cl.o.resume_cb(cl.o.cb_arg);
	teardown();
	cl.attached = false;
	pthread_mutex_unlock(&cl.api);
	/* The ready list may hold releases not dispatched yet: they were
	 * acked, so they are still delivered as releases. */
	pthread_mutex_lock(&cl.dispatch);
	deliver(&drop);
	pthread_mutex_unlock(&cl.dispatch);
	return 0;
}

/* ---- the application's calls ------------------------------------------- */

static int state_ret(enum ftrepl_state st)
{
	switch (st) {
	case FTREPL_PROTECTED:
		return 0;
	case FTREPL_STOPPED:
		return -ESHUTDOWN;
	case FTREPL_LOST:
		return -ECONNRESET;
	default:
		return -ENOTCONN;
	}
}

int ftrepl_dispatch(void)
{
	struct cl_list due = { 0 };
	int n;

	if (pthread_mutex_trylock(&cl.dispatch))
		return 0; /* another thread is delivering; order is kept there */
	pthread_mutex_lock(&cl.lock);
	list_splice(&due, &cl.ready);
	update_attention();
	pthread_mutex_unlock(&cl.lock);
	n = deliver(&due);
	pthread_mutex_unlock(&cl.dispatch);
	return n;
}

int ftrepl_safe_point(void)
{
	enum ftrepl_state st;
	bool dispatch;

	/* No pause, nothing due, no end: one atomic load, no lock. */
	if (!atomic_load_explicit(&cl.attention, memory_order_acquire))
		return state_ret((enum ftrepl_state)atomic_load(&cl.state_pub));
	pthread_mutex_lock(&cl.lock);
	while (cl.pause_pending && !cl.o.pause_cb && cl.state == FTREPL_PROTECTED) {
		uint64_t gen = cl.resume_gen, seq = cl.pause_seq;

		cl.parked++;
		if (cl.parked >= cl.o.safe_point_threads && cl.answered_seq != seq) {
			/* Every safe-point thread is parked: the state is quiet. */
			cl.answered_seq = seq;
			cl.pauses++;
			pthread_mutex_unlock(&cl.lock);
			if (send_paused(seq)) {
				/* The library's thread sees the EOF and ends the
				 * session (callbacks stay on its side). */
				pthread_mutex_lock(&cl.wlock);
				if (cl.sock >= 0)
					shutdown(cl.sock, SHUT_RDWR);
				pthread_mutex_unlock(&cl.wlock);
			}
			pthread_mutex_lock(&cl.lock);
		}
		while (cl.resume_gen == gen && cl.state == FTREPL_PROTECTED)
			pthread_cond_wait(&cl.cv, &cl.lock);
		cl.parked--;
	}
	st = cl.state;
	dispatch = cl.o.release_in_dispatch && cl.ready.head;
	pthread_mutex_unlock(&cl.lock);
	if (dispatch)
		ftrepl_dispatch();
	return state_ret(st);
}

int ftrepl_fd(void)
{
	int fd;

	pthread_mutex_lock(&cl.lock);
	fd = cl.state == FTREPL_DETACHED ? -ENOTCONN : cl.efd;
	pthread_mutex_unlock(&cl.lock);
	return fd;
}

int ftrepl_sync_now(void)
{
	enum ftrepl_state st;

	pthread_mutex_lock(&cl.lock);
	st = cl.state;
	pthread_mutex_unlock(&cl.lock);
	if (st != FTREPL_PROTECTED)
		return state_ret(st) == -ESHUTDOWN ? -ENOTCONN : state_ret(st);
	return cl_send(json_pack("{s:s}", "op", "sync")) ? -ECONNRESET : 0;
}

int ftrepl_output_hold(const void *buf, size_t len, ftrepl_output_cb cb, void *arg)
{
	struct cl_output *o;

	if (!cb || (len && !buf))
		return -EINVAL;
	o = malloc(sizeof(*o) + len);
	if (!o)
		return -ENOMEM;
	if (len)
		memcpy(o->data, buf, len);
	o->len = len;
	o->cb = cb;
	o->arg = arg;
	o->status = 0;
	pthread_mutex_lock(&cl.lock);
	if (cl.state != FTREPL_PROTECTED) {
		pthread_mutex_unlock(&cl.lock);
		free(o);
		return -ENOTCONN;
	}
	o->epoch = cl.last_cut == FTR_EPOCH_NONE ? 0 : cl.last_cut + 1;
	list_add(&cl.held, o);
	cl.nheld++;
	pthread_mutex_unlock(&cl.lock);
	return 0;
}

void ftrepl_set_progress(uint64_t value)
{
	atomic_store_explicit(&cl.progress, value, memory_order_relaxed);
}

int ftrepl_get_status(struct ftrepl_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&cl.lock);
	st->state = cl.state;
	ftr_strlcpy(st->tracking, cl.state == FTREPL_DETACHED ? "" : cl.tracking,
		    sizeof(st->tracking));
	st->epoch_cut = cl.last_cut;
	st->epoch_acked = cl.acked;
	st->pauses = cl.pauses;
	st->outputs_held = cl.nheld;
	st->outputs_released = cl.released;
	st->outputs_dropped = cl.dropped;
	ftr_strlcpy(st->error, cl.error, sizeof(st->error));
	pthread_mutex_unlock(&cl.lock);
	return 0;
}

const char *ftrepl_last_error(void)
{
	return cl.error;
}
