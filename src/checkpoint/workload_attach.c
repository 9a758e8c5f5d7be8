/* SPDX-License-Identifier: MIT */
/*
 * The attached workload: another process's memfd regions, handed over on a
 * unix socket (`ftrepl-sender --attach-sock`), replicated by the primary
 * like the in-process synthetic workload. The protocol and the rules for
 * what is accepted are in include/ftrepl/attach.h; the client side is
 * client.c.
 *
 * Threads:
 *   - the creator (sender main) accepts clients until one attaches;
 *   - "attach reader" reads the client's lines: "paused" completes the
 *     pause the engine waits for, "sync" pokes cut_fd, anything else gets
 *     an error reply; EOF marks the client gone and pokes cut_fd so the
 *     engine notices at its next pause, not at the next timer tick;
 *   - "attach monitor" (wp-async with regions larger than the soft dirty
 *     limit only) counts written pages every AT_MONITOR_MS and asks for an
 *     early epoch at the soft limit;
 *   - the engine calls pause/harvest/blob/epoch_cut/resume, the primary's
 *     control reader calls acked, any thread may call session_lost.
 * Every write to the socket goes through at_send() under wlock, so lines
 * from different threads never interleave; no thread holds `lock` while
 * it writes.
 *
 * Pause: the engine sends {"op":"pause"} and waits (bounded) until the
 * reader has seen the matching "paused". The client answers only at a safe
 * point and then stays there until "resume", so the regions do not change
 * between the answer and the resume: harvest and the pages sent are one
 * consistent image.
 */
#define FTR_LOG_PREFIX "attach"

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include <ftrepl/attach.h>
#include <ftrepl/checkpoint.h>

#include "checkpoint/attach_proto.h"
#include "checkpoint/workload.h"
#include "common/common.h"
#include "uffd/probe.h"
#include "uffd/track.h"
#include "uffd/uffd_io.h"

#define AT_HELLO_MS 5000	/* a connected client must attach within this */
#define AT_MONITOR_MS 10	/* soft-limit check period (wp-async) */
#define AT_SCAN_VEC 512		/* PAGEMAP_SCAN ranges per call (<= 512: FACTS.md) */
#define AT_MAX_BAD_LOGS 20	/* bad lines logged per client, then counted */
#define AT_MAX_FDS (FTR_MAX_REGIONS + 1)
#define AT_BLOB_MAGIC 0x3142544154525446ull /* "FTRTATB1" */

/* ---- line plumbing (shared with client.c through attach_proto.h) -------- */

int ftr_linebuf_init(struct ftr_linebuf *lb, size_t max)
{
	memset(lb, 0, sizeof(*lb));
	lb->max = max;
	lb->buf = malloc(max + 1);
	return lb->buf ? 0 : -ENOMEM;
}

void ftr_linebuf_free(struct ftr_linebuf *lb)
{
	free(lb->buf);
	lb->buf = NULL;
}

ssize_t ftr_linebuf_fill(struct ftr_linebuf *lb, int fd, int *fds, unsigned maxfds,
			 unsigned *nfds, bool *extra_fds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * AT_MAX_FDS)];
	struct iovec iov;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	ssize_t r;

	if (lb->consumed) {
		memmove(lb->buf, lb->buf + lb->consumed, lb->len - lb->consumed);
		lb->len -= lb->consumed;
		lb->consumed = 0;
	}
	if (lb->len >= lb->max) /* ftr_linebuf_next() makes room first */
		return -ENOBUFS;
	iov.iov_base = lb->buf + lb->len;
	iov.iov_len = lb->max - lb->len;
	do
		r = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t n;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int got;

			memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fds && *nfds < maxfds) {
				fds[(*nfds)++] = got;
			} else {
				close(got);
				*extra_fds = true;
			}
		}
	}
	if (mh.msg_flags & MSG_CTRUNC)
		*extra_fds = true; /* the kernel closed what did not fit */
	lb->len += (size_t)r;
	return r;
}

ssize_t ftr_linebuf_next(struct ftr_linebuf *lb, char **line)
{
	for (;;) {
		char *start = lb->buf + lb->consumed;
		size_t avail = lb->len - lb->consumed;
		char *nl = memchr(start, '\n', avail);

		if (!nl) {
			if (lb->skipping) {
				lb->len = lb->consumed = 0;
				return -EAGAIN;
			}
			if (avail >= lb->max) {
				/* Over-long: report once, skip the rest. */
				lb->len = lb->consumed = 0;
				lb->skipping = true;
				return -EMSGSIZE;
			}
			return -EAGAIN;
		}
		lb->consumed += (size_t)(nl - start) + 1;
		if (lb->skipping) {
			lb->skipping = false;
			continue;
		}
		*nl = '\0';
		*line = start;
		return nl - start;
	}
}

int ftr_line_send(int sock, json_t *obj, const int *fds, unsigned nfds, int timeout_ms)
{
	char cbuf[CMSG_SPACE(sizeof(int) * AT_MAX_FDS)];
	uint64_t end = ftr_now_ms() + (uint64_t)timeout_ms;
	struct iovec iov;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	char *text = json_dumps(obj, JSON_COMPACT);
	size_t len, off = 0;
	int ret = 0;

	if (!text)
		return -ENOMEM;
	if (nfds > AT_MAX_FDS) {
		free(text);
		return -EINVAL;
	}
	len = strlen(text);
	text[len] = '\n'; /* json_dumps' NUL becomes the line end */
	len++;
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
	while (off < len) {
		ssize_t r;

		iov.iov_base = text + off;
		iov.iov_len = len - off;
		r = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r > 0) {
			off += (size_t)r;
			/* The descriptors went with the first byte. */
			mh.msg_control = NULL;
			mh.msg_controllen = 0;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno != EAGAIN) {
			ret = -errno;
			break;
		}
		{
			struct pollfd p = { .fd = sock, .events = POLLOUT };
			uint64_t now = ftr_now_ms();

			if (now >= end) {
				ret = -ETIMEDOUT;
				break;
			}
			if (poll(&p, 1, (int)(end - now)) < 0 && errno != EINTR) {
				ret = -errno;
				break;
			}
		}
	}
	free(text);
	return ret;
}

/* ---- the workload ------------------------------------------------------- */

struct at_region {
	uint64_t client_base;	/* the mapping in the client's address space */
	uint64_t offset;	/* into the memfd */
};

struct attach_wl {
	struct ftr_workload wl;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t sock_dev;
	ino_t sock_ino;
	int lfd;		/* listener, until a client attached */
	int sock;		/* the attached client */
	pid_t pid;
	int uffd;		/* passed by the client (wp-async), or -1 */
	int pagemap;		/* /proc/PID/pagemap (wp-async), or -1 */
	bool wp_async;
	struct ftr_track *scan;	/* scan tracking, on our own mappings */
	struct at_region reg[FTR_MAX_REGIONS];
	uint64_t total_pages;
	bool first_harvest;
	struct page_region *hvec; /* harvest's PAGEMAP_SCAN output */
	struct page_region *mvec; /* the monitor's */
	struct ftr_linebuf lb;

	pthread_mutex_t wlock;	/* one writer on sock at a time */

	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool gone;		/* the connection ended */
	bool ended;		/* "stop" or "lost" was sent */
	bool paused;		/* answered the current pause, not resumed */
	bool refused;		/* answered the current pause with "refused" */
	uint64_t pause_seq;	/* last pause asked */
	uint64_t paused_seq;	/* last pause answered */
	uint64_t last_cut;	/* FTR_EPOCH_NONE before epoch 0 */
	uint64_t progress;	/* the client's counter */
	uint64_t bad_lines;
	char last_error[256];

	int stop_fd;		/* eventfd: ends the reader and the monitor */
	pthread_t reader;
	bool reader_started;
	pthread_t monitor;
	bool monitor_started;
	bool stopped;

	_Atomic uint64_t soft, hard;
	atomic_bool cut_signaled;
};

static const struct ftr_workload_ops attach_ops;

static inline struct attach_wl *to_at(struct ftr_workload *wl)
{
	return container_of(wl, struct attach_wl, wl);
}

static void poke(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0) {
		/* saturated: already signalled */
	}
}

static void set_error(struct attach_wl *a, const char *fmt, ...) FTR_PRINTF(2, 3);

/* Records the latest failure (for ftr_attach_last_error) and logs it. */
static void set_error(struct attach_wl *a, const char *fmt, ...)
{
	char msg[sizeof(a->last_error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&a->lock);
	ftr_strlcpy(a->last_error, msg, sizeof(a->last_error));
	pthread_mutex_unlock(&a->lock);
	pr_err("%s", msg);
}

/* The connection is over (EOF, error, or a peer that does not read). */
static void mark_gone(struct attach_wl *a, const char *why)
{
	bool first, quiet;

	pthread_mutex_lock(&a->lock);
	first = !a->gone;
	quiet = a->ended;
	a->gone = true;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->lock);
	if (!first)
		return;
	shutdown(a->sock, SHUT_RDWR);
	if (quiet)
		pr_debug("workload process %d: connection closed after the end (%s)", (int)a->pid,
			 why);
	else
		set_error(a, "workload process %d disconnected: %s", (int)a->pid, why);
	/* The engine's next pause fails at once instead of after a tick. */
	poke(a->wl.cut_fd);
}

/* Sends one line to the client; a failure ends the connection. */
static int at_send(struct attach_wl *a, json_t *obj)
{
	bool gone;
	int ret;

	if (!obj)
		return -ENOMEM;
	pthread_mutex_lock(&a->lock);
	gone = a->gone;
	pthread_mutex_unlock(&a->lock);
	if (gone) {
		json_decref(obj);
		return -ECONNRESET;
	}
	pthread_mutex_lock(&a->wlock);
	ret = ftr_line_send(a->sock, obj, NULL, 0, FTR_ATTACH_SEND_MS);
	pthread_mutex_unlock(&a->wlock);
	json_decref(obj);
	if (ret == -ENOMEM)
		return ret;
	if (ret) {
		char why[96];

		snprintf(why, sizeof(why), "%s", ret == -ETIMEDOUT ?
			 "it stopped reading its socket" : strerror(-ret));
		mark_gone(a, why);
		return -ECONNRESET;
	}
	return 0;
}

static void bad_line(struct attach_wl *a, const char *fmt, ...) FTR_PRINTF(2, 3);

/* A bad line after the attach: error reply, log line, otherwise ignored. */
static void bad_line(struct attach_wl *a, const char *fmt, ...)
{
	char msg[200];
	uint64_t n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&a->lock);
	n = ++a->bad_lines;
	snprintf(a->last_error, sizeof(a->last_error), "workload process %d sent a bad line: %s",
		 (int)a->pid, msg);
	pthread_mutex_unlock(&a->lock);
	if (n <= AT_MAX_BAD_LOGS)
		pr_warn("workload process %d sent a bad line: %s%s", (int)a->pid, msg,
			n == AT_MAX_BAD_LOGS ? " (further bad lines are not logged)" : "");
	at_send(a, json_pack("{s:s, s:s}", "op", "error", "error", msg));
}

static bool get_u64(json_t *o, const char *key, uint64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*v = (uint64_t)json_integer_value(j);
	return true;
}

static void handle_line(struct attach_wl *a, const char *line)
{
	json_error_t jerr;
	json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
	const char *op;
	uint64_t seq = 0, progress;
	bool has_seq;

	if (!o) {
		bad_line(a, "malformed JSON: %s", jerr.text);
		return;
	}
	op = json_string_value(json_object_get(o, "op"));
	has_seq = get_u64(o, "seq", &seq);
	if (!json_is_object(o) || !op) {
		bad_line(a, "not a JSON object with a string \"op\"");
	} else if (!strcmp(op, "paused") || !strcmp(op, "refused")) {
		bool refused = op[0] == 'r', ok, late;

		pthread_mutex_lock(&a->lock);
		ok = a->pause_seq > a->paused_seq && !a->refused &&
		     (!has_seq || seq == a->pause_seq);
		late = has_seq && seq < a->pause_seq;
		if (ok && refused) {
			const char *why = json_string_value(json_object_get(o, "error"));

			a->refused = true;
			snprintf(a->last_error, sizeof(a->last_error),
				 "workload process %d refused to pause: %s", (int)a->pid,
				 why ? why : "no reason given");
		} else if (ok) {
			a->paused_seq = a->pause_seq;
			a->paused = true;
			if (get_u64(o, "progress", &progress))
				a->progress = progress;
		}
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->lock);
		/* A late answer to a pause that timed out is not an error. */
		if (!ok && !late)
			bad_line(a, "\"%s\" but no pause is pending", op);
	} else if (!strcmp(op, "sync")) {
		poke(a->wl.cut_fd);
	} else {
		bad_line(a, "unknown op \"%.40s\" (paused, refused, sync)", op);
	}
	json_decref(o);
}

static void *reader_main(void *arg)
{
	struct attach_wl *a = arg;

	ftr_thread_name("ftr-wa-reader");

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = a->sock, .events = POLLIN },
			{ .fd = a->stop_fd, .events = POLLIN },
		};
		unsigned nfds = 0;
		bool extra = false;
		int fds[4];
		char *line;
		ssize_t r, n;

		/* Lines already buffered (e.g. behind the attach line) first. */
		while ((n = ftr_linebuf_next(&a->lb, &line)) != -EAGAIN) {
			if (n == -EMSGSIZE)
				bad_line(a, "line longer than %d bytes", FTR_ATTACH_MAX_LINE);
			else
				handle_line(a, line);
		}
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (!pfd[0].revents)
			continue;
		r = ftr_linebuf_fill(&a->lb, a->sock, fds, FTR_ARRAY_SIZE(fds), &nfds, &extra);
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		if (nfds || extra)
			bad_line(a, "descriptors are accepted with the attach line only");
		if (r == -EAGAIN)
			continue;
		if (r <= 0) {
			mark_gone(a, r == 0 ? "connection closed" : strerror((int)-r));
			break;
		}
	}
	return NULL;
}

/* ---- dirty tracking ------------------------------------------------------ */

/* Sets bits [first, first + count) of map. */
static void set_range(uint64_t *map, uint64_t first, uint64_t count)
{
	uint64_t end = first + count;

	for (; first < end && (first & 63); first++)
		ftr_bit_set(map, first);
	for (; first + 64 <= end; first += 64)
		map[first >> 6] = ~0ull;
	for (; first < end; first++)
		ftr_bit_set(map, first);
}

/* One PAGEMAP_SCAN over [start, end) of the client's address space. */
static int pm_scan(struct attach_wl *a, struct page_region *vec, uint64_t start, uint64_t end,
		   uint64_t flags, uint64_t *walk_end)
{
	struct pm_scan_arg s = {
		.size = sizeof(s),
		.flags = flags,
		.start = start,
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = vec ? AT_SCAN_VEC : 0,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	int n;

	do
		n = ioctl(a->pagemap, PAGEMAP_SCAN, &s);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	*walk_end = s.walk_end;
	if (s.walk_end <= start || s.walk_end > end)
		return -EIO; /* no progress: never loop forever */
	return n;
}

/* Walks region r: with maps, marks (and, with flags WP_MATCHING, re-arms)
 * the written pages; returns how many there were, or -errno. */
static int64_t pm_walk(struct attach_wl *a, uint32_t r, struct page_region *vec, uint64_t flags,
		       uint64_t *map)
{
	const uint32_t ps = a->wl.page_size;
	uint64_t base = a->reg[r].client_base, end = base + a->wl.regions[r].size;
	uint64_t start = base, count = 0, npages = a->wl.regions[r].size / ps;

	while (start < end) {
		uint64_t walk_end = 0;
		int n = pm_scan(a, vec, start, end, flags, &walk_end);

		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			uint64_t s = FTR_MAX(vec[i].start, base), e = FTR_MIN(vec[i].end, end);

			if (e <= s)
				continue;
			count += (e - s) / ps;
			if (map)
				set_range(map, (s - base) / ps,
						     FTR_MIN((e - s) / ps, npages - (s - base) / ps));
		}
		start = walk_end;
	}
	return (int64_t)count;
}

/* Counts the non-fill pages set in maps (only when an epoch looks too big
 * for staging: fill pages need no slot). */
static uint64_t count_payload_pages(struct attach_wl *a, uint64_t **maps)
{
	uint64_t n = 0;
	uint8_t fill;

	for (uint32_t r = 0; r < a->wl.nregions; r++) {
		uint64_t npages = a->wl.regions[r].size / a->wl.page_size;

		for (uint64_t p = 0; p < npages; p++)
			if (ftr_bit_test(maps[r], p) &&
			    !ftr_page_is_fill((uint8_t *)a->wl.regions[r].base +
					      p * a->wl.page_size, a->wl.page_size, &fill))
				n++;
	}
	return n;
}

static void *monitor_main(void *arg)
{
	struct attach_wl *a = arg;

	ftr_thread_name("ftr-wa-monitor");

	for (;;) {
		struct pollfd p = { .fd = a->stop_fd, .events = POLLIN };
		uint64_t soft = atomic_load(&a->soft), n = 0;

		if (poll(&p, 1, AT_MONITOR_MS) != 0)
			break;
		if (atomic_load(&a->cut_signaled) || soft >= a->total_pages)
			continue;
		for (uint32_t r = 0; r < a->wl.nregions && n < soft; r++) {
			int64_t c = pm_walk(a, r, a->mvec, 0, NULL);

			if (c < 0)
				break; /* the harvest will say what is wrong */
			n += (uint64_t)c;
		}
		if (n >= soft && !atomic_exchange(&a->cut_signaled, true))
			poke(a->wl.cut_fd);
	}
	return NULL;
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

/* ---- ops ------------------------------------------------------------------- */

static int at_start(struct ftr_workload *wl)
{
	/* The client runs already; the pause handshake is all we drive. */
	return 0;
}

static int at_pause(struct ftr_workload *wl, int timeout_ms)
{
	struct attach_wl *a = to_at(wl);
	uint64_t seq, epoch, end = ftr_now_ms() + (uint64_t)FTR_MAX(timeout_ms, 0);
	int ret;

	pthread_mutex_lock(&a->lock);
	if (a->gone || a->paused) {
		ret = a->gone ? -ECONNRESET : 0;
		pthread_mutex_unlock(&a->lock);
		return ret;
	}
	seq = ++a->pause_seq;
	a->refused = false;
	epoch = a->last_cut == FTR_EPOCH_NONE ? 0 : a->last_cut + 1;
	pthread_mutex_unlock(&a->lock);

	ret = at_send(a, json_pack("{s:s, s:I, s:I}", "op", "pause", "epoch", (json_int_t)epoch,
				   "seq", (json_int_t)seq));
	if (ret)
		return ret;
	pthread_mutex_lock(&a->lock);
	while (a->paused_seq != seq && !a->gone && !a->refused) {
		uint64_t now = ftr_now_ms();
		struct timespec dl;

		if (now >= end)
			break;
		dl = ftr_deadline_ms((int)FTR_MIN(end - now, 50u));
		pthread_cond_timedwait(&a->cv, &a->lock, &dl);
	}
	if (a->paused_seq == seq)
		ret = 0;
	else if (a->gone)
		ret = -ECONNRESET;
	else if (a->refused)
		ret = -ECANCELED;
	else
		ret = -ETIMEDOUT;
	pthread_mutex_unlock(&a->lock);
	if (ret == -ETIMEDOUT)
		set_error(a, "workload process %d did not reach a safe point within %d ms"
			  " (pause %" PRIu64 ")", (int)a->pid, timeout_ms, seq);
	else if (ret == -ECANCELED)
		pr_err("%s", a->last_error);
	return ret;
}

static void at_resume(struct ftr_workload *wl)
{
	struct attach_wl *a = to_at(wl);
	uint64_t seq;

	pthread_mutex_lock(&a->lock);
	if (!a->paused) {
		pthread_mutex_unlock(&a->lock);
		return;
	}
	a->paused = false;
	seq = a->pause_seq;
	pthread_mutex_unlock(&a->lock);
	at_send(a, json_pack("{s:s, s:I}", "op", "resume", "seq", (json_int_t)seq));
}

static int64_t at_harvest(struct ftr_workload *wl, uint64_t **maps)
{
	struct attach_wl *a = to_at(wl);
	uint64_t hard = atomic_load(&a->hard), drain;
	int64_t count = 0;
	bool gone;

	if (a->scan) {
		count = ftr_track_harvest(a->scan, maps);
		if (count < 0) {
			set_error(a, "scan harvest: %s", strerror((int)-count));
			return count;
		}
	} else {
		for (uint32_t r = 0; r < wl->nregions; r++) {
			int64_t n = pm_walk(a, r, a->hvec, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
					    maps[r]);

			if (n < 0) {
				set_error(a, "harvest of region %u (%s) in process %d: PAGEMAP_SCAN: %s%s",
					  r, wl->regions[r].name, (int)a->pid, strerror((int)-n),
					  n == -EPERM ? " (no longer under async write-protect)" : "");
				return n;
			}
			count += n;
		}
		if (a->first_harvest) {
			/* Everything counts as written before the first one. */
			for (uint32_t r = 0; r < wl->nregions; r++)
				set_range(maps[r], 0, wl->regions[r].size / wl->page_size);
			count = (int64_t)a->total_pages;
		}
	}
	a->first_harvest = false;
	atomic_store(&a->cut_signaled, false);
	pthread_mutex_lock(&a->lock);
	gone = a->gone;
	pthread_mutex_unlock(&a->lock);
	/* A cut request belongs to the epoch just harvested (but a
	 * disconnect must still wake the engine). */
	if (!gone && read(wl->cut_fd, &drain, sizeof(drain)) < 0) {
		/* nothing pending */
	}
	if ((uint64_t)count > hard) {
		uint64_t payload = count_payload_pages(a, maps);

		if (payload > hard) {
			set_error(a, "workload process %d wrote %" PRIu64 " pages in one epoch, more"
				  " than the standby's staging holds (%" PRIu64 "); raise the"
				  " receiver's --staging or lower --epoch-ms", (int)a->pid, payload,
				  hard);
			return -EFBIG;
		}
	}
	return count;
}

struct at_blob {
	uint64_t magic;
	uint64_t pid;
	uint64_t progress;
	uint64_t epoch;
};

static ssize_t at_blob_get(struct ftr_workload *wl, void *buf, size_t cap)
{
	struct attach_wl *a = to_at(wl);
	struct at_blob b;

	if (cap < sizeof(b))
		return -ENOSPC;
	pthread_mutex_lock(&a->lock);
	b.magic = htole64(AT_BLOB_MAGIC);
	b.pid = htole64((uint64_t)a->pid);
	b.progress = htole64(a->progress);
	b.epoch = htole64(a->last_cut);
	pthread_mutex_unlock(&a->lock);
	memcpy(buf, &b, sizeof(b));
	return (ssize_t)sizeof(b);
}

static void at_set_limits(struct ftr_workload *wl, uint64_t soft, uint64_t hard)
{
	struct attach_wl *a = to_at(wl);

	atomic_store(&a->soft, soft);
	atomic_store(&a->hard, hard);
	if (a->wp_async && soft < a->total_pages && !a->monitor_started && !a->stopped) {
		int ret = start_thread(&a->monitor, monitor_main, a);

		if (ret)
			pr_warn("cannot start the dirty-budget monitor (%s): epochs are cut by the"
				" timer only", strerror(ret));
		else
			a->monitor_started = true;
	}
}

static void at_epoch_cut(struct ftr_workload *wl, uint64_t epoch)
{
	struct attach_wl *a = to_at(wl);

	pthread_mutex_lock(&a->lock);
	a->last_cut = epoch;
	pthread_mutex_unlock(&a->lock);
	at_send(a, json_pack("{s:s, s:I}", "op", "cut", "epoch", (json_int_t)epoch));
}

static void at_acked(struct ftr_workload *wl, uint64_t epoch)
{
	at_send(to_at(wl), json_pack("{s:s, s:I}", "op", "acked", "epoch", (json_int_t)epoch));
}

static void at_session_lost(struct ftr_workload *wl, const char *why)
{
	struct attach_wl *a = to_at(wl);
	bool first;

	pthread_mutex_lock(&a->lock);
	first = !a->ended;
	a->ended = true;
	pthread_mutex_unlock(&a->lock);
	if (first)
		at_send(a, json_pack("{s:s, s:s}", "op", "lost", "why", why ? why : ""));
}

static uint64_t at_progress(struct ftr_workload *wl)
{
	struct attach_wl *a = to_at(wl);
	uint64_t v;

	pthread_mutex_lock(&a->lock);
	v = a->progress;
	pthread_mutex_unlock(&a->lock);
	return v;
}

static void at_stop(struct ftr_workload *wl)
{
	struct attach_wl *a = to_at(wl);
	bool first;

	pthread_mutex_lock(&a->lock);
	first = !a->ended;
	a->ended = true;
	pthread_mutex_unlock(&a->lock);
	/* An orderly end: every epoch cut so far was acked (or the session
	 * was lost, and "lost" was sent instead). */
	if (first && a->sock >= 0)
		at_send(a, json_pack("{s:s}", "op", "stop"));
	if (a->stopped)
		return;
	a->stopped = true;
	poke(a->stop_fd);
	if (a->reader_started)
		pthread_join(a->reader, NULL);
	if (a->monitor_started)
		pthread_join(a->monitor, NULL);
	a->reader_started = a->monitor_started = false;
}

/* Undoes what an attach attempt set up, so the next client starts clean. */
static void release_client(struct attach_wl *a)
{
	for (uint32_t r = 0; r < a->wl.nregions; r++) {
		struct ftr_region *g = &a->wl.regions[r];

		if (g->base)
			munmap(g->base, g->size);
		if (g->fd >= 0)
			close(g->fd);
		g->base = NULL;
		g->fd = -1;
	}
	a->wl.nregions = 0;
	ftr_track_destroy(a->scan);
	a->scan = NULL;
	if (a->uffd >= 0)
		close(a->uffd);
	if (a->pagemap >= 0)
		close(a->pagemap);
	if (a->sock >= 0)
		close(a->sock);
	a->uffd = a->pagemap = a->sock = -1;
	a->lb.len = a->lb.consumed = 0;
	a->lb.skipping = false;
	a->total_pages = 0;
	a->wp_async = false;
}

static void at_destroy(struct ftr_workload *wl)
{
	struct attach_wl *a = to_at(wl);

	at_stop(wl);
	release_client(a);
	if (a->lfd >= 0)
		close(a->lfd);
	if (a->stop_fd >= 0)
		close(a->stop_fd);
	if (a->wl.cut_fd >= 0)
		close(a->wl.cut_fd);
	ftr_linebuf_free(&a->lb);
	free(a->hvec);
	free(a->mvec);
	pthread_mutex_destroy(&a->wlock);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cv);
	free(a);
}

static const struct ftr_workload_ops attach_ops = {
	.name = "attach",
	.start = at_start,
	.pause = at_pause,
	.resume = at_resume,
	.harvest = at_harvest,
	.blob = at_blob_get,
	.set_dirty_limits = at_set_limits,
	.epoch_cut = at_epoch_cut,
	.acked = at_acked,
	.session_lost = at_session_lost,
	.progress = at_progress,
	.stop = at_stop,
	.destroy = at_destroy,
};

/* ---- the attach handshake ----------------------------------------------- */

#define REJECT(...) (snprintf(why, whylen, __VA_ARGS__), -EPROTO)

/* Is fd a memfd? ("/memfd:NAME (deleted)" is what the kernel calls them.) */
static bool is_memfd(int fd, char *what, size_t len)
{
	char link[64], target[128];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0) {
		snprintf(what, len, "%s", strerror(errno));
		return false;
	}
	target[n] = '\0';
	snprintf(what, len, "%s", target);
	return !strncmp(target, "/memfd:", 7);
}

/* Is [base, base + size) in process pid a shared mapping of the file
 * (dev, ino) at offset, possibly split over several VMAs? */
static int check_mapping(pid_t pid, uint64_t base, uint64_t size, uint64_t offset,
			 const struct stat *st, char *problem, size_t len)
{
	uint64_t need = base, end = base + size;
	char path[64], *line = NULL;
	size_t cap = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f) {
		snprintf(problem, len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	snprintf(problem, len, "nothing is mapped at 0x%" PRIx64, need);
	while (need < end && getline(&line, &cap, f) > 0) {
		unsigned long long s, e, pgoff, ino;
		unsigned maj, mnr;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &s, &e, perms, &pgoff, &maj, &mnr,
			   &ino) != 7)
			continue;
		if (e <= need)
			continue;
		if (s > need)
			break; /* a hole */
		if (ino != st->st_ino || makedev(maj, mnr) != st->st_dev) {
			snprintf(problem, len, "0x%llx maps another file (inode %llu)", s, ino);
			break;
		}
		if (strlen(perms) < 4 || perms[3] != 's') {
			snprintf(problem, len, "0x%llx is a private (copy-on-write) mapping: the"
				 " sender would not see its writes", s);
			break;
		}
		if (pgoff + (need - s) != offset + (need - base)) {
			snprintf(problem, len, "0x%" PRIx64 " maps file offset %llu, expected %"
				 PRIu64, need, pgoff + (need - s), offset + (need - base));
			break;
		}
		need = e;
	}
	free(line);
	fclose(f);
	return need >= end ? 0 : -ENOENT;
}

/* Validates one parsed region and maps its memfd here. */
static int setup_region(struct attach_wl *a, uint32_t r, json_t *m, char *why, size_t whylen)
{
	struct ftr_region *g = &a->wl.regions[r];
	const uint32_t ps = a->wl.page_size;
	const char *name = json_string_value(json_object_get(m, "name"));
	uint64_t base, size, offset = 0, page_size = ps;
	char what[160];
	struct stat st;
	int seals, fd = g->fd;

	if (!json_is_object(m))
		return REJECT("region %u is not an object", r);
	if (json_object_get(m, "name") && (!name || strlen(name) >= sizeof(g->name)))
		return REJECT("region %u: \"name\" must be a string shorter than %zu bytes", r,
			      sizeof(g->name));
	if (name && *name)
		ftr_strlcpy(g->name, name, sizeof(g->name));
	else
		snprintf(g->name, sizeof(g->name), "region%u", r);
	if (!get_u64(m, "base_host_virt_addr", &base) || !get_u64(m, "size", &size) ||
	    (json_object_get(m, "offset") && !get_u64(m, "offset", &offset)) ||
	    (json_object_get(m, "page_size") && !get_u64(m, "page_size", &page_size)))
		return REJECT("region %u (%s): base_host_virt_addr and size are required, and they,"
			      " offset and page_size must be non-negative integers", r, g->name);
	if (page_size != ps)
		return REJECT("region %u (%s): page_size %" PRIu64 ", this system's is %u", r,
			      g->name, page_size, ps);
	if (!size || size % ps || size > (1ull << 46))
		return REJECT("region %u (%s): size %" PRIu64 " is not a positive multiple of the"
			      " page size %u", r, g->name, size, ps);
	if (!base || base % ps || base + size < base)
		return REJECT("region %u (%s): base_host_virt_addr 0x%" PRIx64 " is not a page"
			      " aligned address", r, g->name, base);
	if (offset % ps || offset + size < offset)
		return REJECT("region %u (%s): offset %" PRIu64 " is not page aligned", r, g->name,
			      offset);
	if (!is_memfd(fd, what, sizeof(what)))
		return REJECT("region %u (%s): its descriptor is not a memfd (%s)", r, g->name,
			      what);
	if (fstat(fd, &st) < 0)
		return REJECT("region %u (%s): fstat: %s", r, g->name, strerror(errno));
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return REJECT("region %u (%s): the memfd is not sealed against shrinking"
			      " (F_SEAL_SHRINK); a shrink under the sender's mapping would kill it",
			      r, g->name);
	if ((uint64_t)st.st_size < offset + size)
		return REJECT("region %u (%s): the memfd holds %lld bytes, the region needs %" PRIu64,
			      r, g->name, (long long)st.st_size, offset + size);
	if (check_mapping(a->pid, base, size, offset, &st, what, sizeof(what)))
		return REJECT("region %u (%s): process %d has no shared mapping of its memfd at"
			      " 0x%" PRIx64 "..0x%" PRIx64 " offset %" PRIu64 ": %s", r, g->name,
			      (int)a->pid, base, base + size, offset, what);
	g->base = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, (off_t)offset);
	if (g->base == MAP_FAILED) {
		g->base = NULL;
		return REJECT("region %u (%s): mmap of %" PRIu64 " bytes: %s", r, g->name, size,
			      strerror(errno));
	}
	g->size = size;
	a->reg[r].client_base = base;
	a->reg[r].offset = offset;
	a->total_pages += size / ps;
	return 0;
}

/* wp-async: the kernel can, the uffd is right, every region is armed. */
static int setup_wp_async(struct attach_wl *a, char *why, size_t whylen)
{
	const struct ftr_kprobe *kp;
	char path[64];

	if (ftr_kprobe_get(&kp) || !kp->wp_async_shmem || !kp->pagemap_scan_wp)
		return REJECT("tracking wp-async is unavailable here (%s); attach with tracking"
			      " scan", kp ? (kp->wp_async_shmem ?
					     ftr_kprobe_why(kp, FTR_KF_PAGEMAP_SCAN_WP) :
					     ftr_kprobe_why(kp, FTR_KF_WP_ASYNC_SHMEM)) :
			      "the kernel probe failed");
	if (a->uffd >= 0) {
		uint64_t have = 0;
		int rc = ftr_uffd_fd_features(a->uffd, &have);

		if (rc == -ENOENT)
			return REJECT("the descriptor passed as the uffd is not a userfaultfd");
		if (rc == 0 && !(have & UFFD_FEATURE_WP_ASYNC))
			return REJECT("the uffd was set up without UFFD_FEATURE_WP_ASYNC (features"
				      " 0x%" PRIx64 ")", have);
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)a->pid);
	a->pagemap = open(path, O_RDONLY | O_CLOEXEC);
	if (a->pagemap < 0)
		return REJECT("%s: %s", path, strerror(errno));
	a->hvec = a->hvec ? a->hvec : calloc(AT_SCAN_VEC, sizeof(*a->hvec));
	a->mvec = a->mvec ? a->mvec : calloc(AT_SCAN_VEC, sizeof(*a->mvec));
	if (!a->hvec || !a->mvec)
		return REJECT("out of memory");
	for (uint32_t r = 0; r < a->wl.nregions; r++) {
		/* Reports nothing; fails with EPERM on a page not under async
		 * WP, so a wrong setup shows now, not at the first harvest. */
		int64_t n = pm_walk(a, r, NULL, PM_SCAN_CHECK_WPASYNC, NULL);

		if (n < 0)
			return REJECT("region %u (%s) is not under async write-protect in process %d"
				      " (PAGEMAP_SCAN: %s); register it with UFFDIO_REGISTER_MODE_WP"
				      " on a uffd with UFFD_FEATURE_WP_ASYNC", r,
				      a->wl.regions[r].name, (int)a->pid, strerror((int)-n));
	}
	a->wp_async = true;
	return 0;
}

static int setup_scan(struct attach_wl *a, char *why, size_t whylen)
{
	struct ftr_track_region regs[FTR_MAX_REGIONS];
	char err[192];
	int ret;

	for (uint32_t r = 0; r < a->wl.nregions; r++)
		regs[r] = (struct ftr_track_region){ .base = a->wl.regions[r].base,
						     .size = a->wl.regions[r].size,
						     .fd = a->wl.regions[r].fd };
	ret = ftr_track_create(FTR_TRACK_SCAN, regs, a->wl.nregions, a->wl.page_size, -1,
			       &a->scan, err, sizeof(err));
	if (ret)
		return REJECT("tracking scan: %s", err);
	return 0;
}

/* Checks the attach line and sets the workload up from it. Every fd in
 * fds is either taken over (a->wl.regions[].fd, a->uffd: release_client()
 * closes them) or closed here. */
static int parse_attach(struct attach_wl *a, const char *line, int *fds, unsigned nfds,
			char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &jerr), *regs, *j;
	const char *op, *tracking = "wp-async";
	uint64_t pid, version = FTR_ATTACH_VERSION;
	bool want_uffd = false;
	size_t nreg;
	int ret;

	if (!o) {
		ret = REJECT("attach line is not valid JSON: %s (column %d)", jerr.text,
			     jerr.column);
		goto out_close;
	}
	op = json_string_value(json_object_get(o, "op"));
	regs = json_object_get(o, "regions");
	if (!json_is_object(o)) {
		ret = REJECT("the attach line must be a JSON object");
		goto out_close;
	}
	if (json_object_get(o, "op") && (!op || strcmp(op, "attach"))) {
		ret = REJECT("the first line must be the attach message (\"op\":\"attach\")");
		goto out_close;
	}
	if (json_object_get(o, "version") &&
	    (!get_u64(o, "version", &version) || version != FTR_ATTACH_VERSION)) {
		ret = REJECT("protocol version not supported (this sender speaks %d)",
			     FTR_ATTACH_VERSION);
		goto out_close;
	}
	if (!get_u64(o, "pid", &pid)) {
		ret = REJECT("\"pid\" is missing or not a non-negative integer");
		goto out_close;
	}
	if (pid != (uint64_t)a->pid) {
		ret = REJECT("\"pid\" %" PRIu64 " does not match the peer's pid %d (SO_PEERCRED)",
			     pid, (int)a->pid);
		goto out_close;
	}
	j = json_object_get(o, "uffd");
	if (j && !json_is_boolean(j)) {
		ret = REJECT("\"uffd\" must be true or false");
		goto out_close;
	}
	want_uffd = json_is_true(j);
	j = json_object_get(o, "tracking");
	if (j) {
		tracking = json_string_value(j);
		if (!tracking || (strcmp(tracking, "wp-async") && strcmp(tracking, "scan"))) {
			ret = REJECT("\"tracking\" must be \"wp-async\" or \"scan\"");
			goto out_close;
		}
	}
	nreg = json_array_size(regs);
	if (!json_is_array(regs) || nreg < 1 || nreg > FTR_MAX_REGIONS) {
		ret = REJECT("\"regions\" must be an array of 1 to %d regions", FTR_MAX_REGIONS);
		goto out_close;
	}
	if (nfds != nreg + want_uffd) {
		ret = REJECT("expected %zu descriptors (one memfd per region%s), got %u",
			     nreg + want_uffd, want_uffd ? ", then the uffd" : "", nfds);
		goto out_close;
	}
	/* From here on the descriptors are the workload's. */
	a->wl.nregions = (uint32_t)nreg;
	for (uint32_t r = 0; r < nreg; r++)
		a->wl.regions[r].fd = fds[r];
	a->uffd = want_uffd ? fds[nreg] : -1;
	for (uint32_t r = 0; r < nreg; r++) {
		ret = setup_region(a, r, json_array_get(regs, r), why, whylen);
		if (ret)
			goto out;
	}
	if (!strcmp(tracking, "wp-async"))
		ret = setup_wp_async(a, why, whylen);
	else
		ret = setup_scan(a, why, whylen);
out:
	json_decref(o);
	return ret;

out_close:
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	json_decref(o);
	return ret;
}

/* Reads the attach line (with its descriptors) from a new client and sets
 * the workload up. Returns 0, or -errno with the reason in why. */
static int handshake(struct attach_wl *a, int c, int timeout_ms, char *why, size_t whylen)
{
	uint64_t end = ftr_now_ms() + (uint64_t)timeout_ms;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	int fds[AT_MAX_FDS];
	unsigned nfds = 0;
	bool extra = false;
	char *line = NULL;
	ssize_t n;

	a->sock = c;
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0)
		return REJECT("SO_PEERCRED: %s", strerror(errno));
	a->pid = cred.pid;
	if (cred.uid != 0 && cred.uid != geteuid())
		return REJECT("peer uid %u is neither root nor the sender's user", cred.uid);
	for (;;) {
		struct pollfd p = { .fd = c, .events = POLLIN };
		uint64_t now = ftr_now_ms();
		ssize_t r;

		n = ftr_linebuf_next(&a->lb, &line);
		if (n >= 0 || n == -EMSGSIZE)
			break;
		if (now >= end) {
			n = -ETIMEDOUT;
			break;
		}
		if (poll(&p, 1, (int)(end - now)) <= 0)
			continue;
		r = ftr_linebuf_fill(&a->lb, c, fds, AT_MAX_FDS, &nfds, &extra);
		if (r == -EAGAIN)
			continue;
		if (r <= 0) {
			n = r ? r : -ECONNRESET;
			break;
		}
	}
	if (n < 0 || extra) {
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		if (extra)
			return REJECT("more than %d descriptors (64 regions and a uffd at most)",
				      AT_MAX_FDS);
		if (n == -EMSGSIZE)
			return REJECT("attach line longer than %d bytes", FTR_ATTACH_MAX_LINE);
		if (n == -ETIMEDOUT)
			return REJECT("no attach line within %d ms", timeout_ms);
		return REJECT("connection closed before the attach line (%s)", strerror((int)-n));
	}
	return parse_attach(a, line, fds, nfds, why, whylen);
}

/* Is anybody accepting on the socket file? 1 yes, 0 stale, -errno. */
static int socket_live(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), ret;

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno == EAGAIN)
		ret = 1;
	else
		ret = errno == ECONNREFUSED ? 0 : -errno;
	close(fd);
	return ret;
}

static int listen_on(struct attach_wl *a, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int ret;

	if (strlen(a->path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long for a unix socket", a->path);
		return -EINVAL;
	}
	ftr_strlcpy(sa.sun_path, a->path, sizeof(sa.sun_path));
	if (lstat(a->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", a->path);
			return -EEXIST;
		}
		ret = socket_live(&sa);
		if (ret) {
			snprintf(err, errlen, "%s: %s", a->path, ret > 0 ?
				 "another process listens there" : strerror(-ret));
			return ret > 0 ? -EADDRINUSE : ret;
		}
		pr_info("replacing stale socket %s", a->path);
		unlink(a->path);
	}
	a->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (a->lfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(-ret));
		return ret;
	}
	/* chmod, not umask (process-wide): nobody can connect before listen. */
	if (bind(a->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(a->path, 0600) < 0 ||
	    lstat(a->path, &st) < 0 || listen(a->lfd, 4) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", a->path, strerror(-ret));
		return ret;
	}
	a->sock_dev = st.st_dev;
	a->sock_ino = st.st_ino;
	return 0;
}

/* Closes the listener and removes its path if it is still ours. */
static void unlisten(struct attach_wl *a)
{
	struct stat st;

	if (a->lfd < 0)
		return;
	close(a->lfd);
	a->lfd = -1;
	if (lstat(a->path, &st) == 0 && st.st_dev == a->sock_dev && st.st_ino == a->sock_ino)
		unlink(a->path);
}

int ftr_attach_workload_create(const char *sock_path, int timeout_ms, struct ftr_workload **out,
			       char *err, size_t errlen)
{
	uint64_t end = timeout_ms < 0 ? UINT64_MAX : ftr_now_ms() + (uint64_t)timeout_ms;
	char why[320] = "", dummy[8];
	struct attach_wl *a;
	int ret;

	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (!sock_path || !out) {
		snprintf(err, errlen, "no socket path");
		return -EINVAL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->lfd = a->sock = a->uffd = a->pagemap = -1;
	for (uint32_t r = 0; r < FTR_MAX_REGIONS; r++)
		a->wl.regions[r].fd = -1;
	a->last_cut = FTR_EPOCH_NONE;
	a->first_harvest = true;
	atomic_init(&a->soft, UINT64_MAX);
	atomic_init(&a->hard, UINT64_MAX);
	atomic_init(&a->cut_signaled, false);
	pthread_mutex_init(&a->wlock, NULL);
	pthread_mutex_init(&a->lock, NULL);
	ftr_cond_init_monotonic(&a->cv);
	a->wl.ops = &attach_ops;
	a->wl.page_size = (uint32_t)sysconf(_SC_PAGESIZE);
	a->wl.cut_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	a->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a->wl.cut_fd < 0 || a->stop_fd < 0 || ftr_linebuf_init(&a->lb, FTR_ATTACH_MAX_LINE)) {
		snprintf(err, errlen, "out of descriptors or memory");
		ret = -ENOMEM;
		goto out_destroy;
	}
	ftr_strlcpy(a->path, sock_path, sizeof(a->path));
	if (strlen(sock_path) >= sizeof(a->path)) {
		snprintf(err, errlen, "%s: path too long for a unix socket", sock_path);
		ret = -EINVAL;
		goto out_destroy;
	}
	ret = listen_on(a, err, errlen);
	if (ret)
		goto out_destroy;
	pr_info("waiting for a workload to attach on %s", a->path);
	for (;;) {
		struct pollfd p = { .fd = a->lfd, .events = POLLIN };
		uint64_t now = ftr_now_ms();
		int c, ms = end == UINT64_MAX ? 1000 : (int)FTR_MIN(end - FTR_MIN(now, end), 1000u);

		if (now >= end) {
			snprintf(err, errlen, "no workload attached to %s within %d ms%s%s", a->path,
				 timeout_ms, why[0] ? "; last rejected: " : "", why);
			ret = -ETIMEDOUT;
			goto out_destroy;
		}
		if (poll(&p, 1, ms) <= 0)
			continue;
		c = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue; /* the client went away again, EMFILE...: keep waiting */
		ret = handshake(a, c, (int)FTR_MIN(end - FTR_MIN(ftr_now_ms(), end),
						   (uint64_t)AT_HELLO_MS), why, sizeof(why));
		if (!ret) {
			json_t *ok = json_pack("{s:s, s:i, s:i, s:s}", "op", "attached", "regions",
					       (int)a->wl.nregions, "page_size",
					       (int)a->wl.page_size, "tracking",
					       a->wp_async ? "wp-async" : "scan");

			ret = ok ? ftr_line_send(c, ok, NULL, 0, FTR_ATTACH_SEND_MS) : -ENOMEM;
			json_decref(ok);
		}
		if (!ret)
			break;
		if (!why[0])
			snprintf(why, sizeof(why), "could not answer: %s", strerror(-ret));
		pr_warn("rejected a workload (pid %d) on %s: %s", (int)a->pid, a->path, why);
		{
			json_t *e = json_pack("{s:s, s:s}", "op", "error", "error", why);

			if (e)
				ftr_line_send(c, e, NULL, 0, 200);
			json_decref(e);
		}
		release_client(a); /* closes c */
		a->pid = 0;
	}
	unlisten(a);
	ret = -start_thread(&a->reader, reader_main, a);
	if (ret) {
		snprintf(err, errlen, "cannot start the reader thread: %s", strerror(-ret));
		goto out_destroy;
	}
	a->reader_started = true;
	pr_info("workload process %d attached: %u region(s), %" PRIu64 " pages, tracking %s",
		(int)a->pid, a->wl.nregions, a->total_pages, a->wp_async ? "wp-async" : "scan");
	*out = &a->wl;
	return 0;

out_destroy:
	unlisten(a);
	at_destroy(&a->wl);
	return ret;
}

int ftr_attach_last_error(struct ftr_workload *wl, char *buf, size_t len)
{
	struct attach_wl *a;

	if (!wl || wl->ops != &attach_ops || !len)
		return -EINVAL;
	a = to_at(wl);
	pthread_mutex_lock(&a->lock);
	ftr_strlcpy(buf, a->last_error, len);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

const char *ftr_attach_tracking(struct ftr_workload *wl)
{
	if (!wl || wl->ops != &attach_ops)
		return NULL;
	return to_at(wl)->wp_async ? "wp-async" : "scan";
}

int ftr_attach_pid(struct ftr_workload *wl)
{
	if (!wl || wl->ops != &attach_ops)
		return -1;
	return (int)to_at(wl)->pid;
}
