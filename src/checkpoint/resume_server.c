// SPDX-License-Identifier: MIT
/*
 * The resume socket: lets a workload run on a promoted standby's committed
 * image at once (include/ftrepl/resume.h has the protocol).
 *
 * Threads: one accept thread, one thread per connection (requests are
 * short; "wait" may block its own connection only), and the fault server's
 * threads per served uffd. All stop through eventfds and bounded polls.
 *
 * The page source behind every fault server is the standby itself:
 * ftr_standby_page_ready() applies a pending page from staging into the
 * cache (once), after which the cache page is the committed content.
 */
#define FTR_LOG_PREFIX "resume"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/resume.h>

#include "common/common.h"
#include "common/ctlsock.h"
#include "uffd/faultsrv.h"

#define RS_MAX_MSG (256 * 1024)
#define RS_FIRST_MSG_MS 10000	/* a connection must say something by then */
#define RS_MSG_STALL_MS 5000	/* and finish a message it started */
#define RS_MAX_CONNS 64

/* A slice of the image served at one address range: pages of fs region id
 * map to image region `region`, starting at page `first`. */
struct rs_map {
	uint32_t region;
	uint64_t first;
};

struct rs_conn {
	struct ftr_resume_server *srv;
	int fd;
	pid_t peer_pid;
	pthread_t th;
	atomic_bool done;
	struct ftr_fs *fs;
	struct rs_map *maps;
	unsigned nmaps;
	bool firecracker;
	struct rs_conn *next;
};

struct ftr_resume_server {
	struct ftr_resume_server_opts o;
	char path[108];
	int lfd;
	dev_t dev;		/* the socket file we made, to unlink only it */
	ino_t ino;
	int stop_fd;
	pthread_t accept_th;
	bool started;

	pthread_mutex_t lock;
	struct rs_conn *conns;
	unsigned nconns;
	struct ftr_standby_layout layout;
	bool resuming;
	struct ftr_resume_stats st;
	struct ftr_fs *latest;	/* for latency stats */
	struct ftr_resume_stats retired; /* counts of clients already freed */
};

/* ---- page source: the standby's committed image ----------------------- */

static int src_prepare(void *ctx, uint32_t id, uint64_t first, uint32_t npages)
{
	struct rs_conn *c = ctx;
	const struct rs_map *m = &c->maps[id];

	return ftr_standby_page_ready(c->srv->o.sb, m->region, m->first + first, npages);
}

static int src_read(void *ctx, uint32_t id, uint64_t first, uint32_t npages, void *dst)
{
	struct rs_conn *c = ctx;
	const struct ftr_standby_layout *l = &c->srv->layout;
	const struct rs_map *m = &c->maps[id];
	int ret = src_prepare(ctx, id, first, npages);

	if (ret)
		return ret;
	memcpy(dst, l->cache + l->regions[m->region].offset + (m->first + first) * l->page_size,
	       (size_t)npages * l->page_size);
	return 0;
}

static const struct ftr_page_source_ops standby_source = {
	.read = src_read,
	.prepare = src_prepare,
};

/* ---- messages with an optional fd -------------------------------------- */

/* Reads one message: a JSON line, or (Firecracker) a JSON array sent
 * without a newline in one go. Returns its length (NUL-terminated in buf),
 * 0 on EOF before any byte, or -errno. *fd gets a passed descriptor (the
 * first one; extras are closed) or stays -1. */
static ssize_t read_msg(struct rs_conn *c, char *buf, size_t cap, int first_ms, int *fd)
{
	size_t len = 0;
	uint64_t t0 = ftr_now_ms();

	*fd = -1;
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = c->srv->stop_fd, .events = POLLIN },
		};
		int limit = len ? RS_MSG_STALL_MS : first_ms;
		int waited = (int)(ftr_now_ms() - t0), n;
		char cbuf[CMSG_SPACE(sizeof(int) * 4)];
		struct iovec iov = { buf + len, cap - 1 - len };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
		};
		ssize_t r;

		if (limit >= 0 && waited >= limit)
			return -ETIMEDOUT;
		n = poll(pfd, 2, limit < 0 ? 500 : FTR_MIN(limit - waited, 500));
		if (n < 0 && errno != EINTR)
			return -errno;
		if (pfd[1].revents)
			return -ECANCELED;
		if (n <= 0)
			continue;
		r = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fds[4];

			memcpy(fds, CMSG_DATA(cm), FTR_MIN(nfd, 4) * sizeof(int));
			for (size_t i = 0; i < FTR_MIN(nfd, 4); i++) {
				if (*fd < 0)
					*fd = fds[i];
				else
					close(fds[i]);
			}
		}
		if (r == 0) {
			if (*fd >= 0)
				close(*fd), *fd = -1;
			return len ? -EPROTO : 0;
		}
		len += (size_t)r;
		buf[len] = '\0';
		if (memchr(buf, '\n', len))
			return (ssize_t)len;
		if (buf[0] == '[') {
			/* Firecracker sends its array in one message, no newline. */
			json_t *j = json_loadb(buf, len, 0, NULL);

			if (j) {
				json_decref(j);
				return (ssize_t)len;
			}
		}
		if (len >= cap - 1) {
			if (*fd >= 0)
				close(*fd), *fd = -1;
			return -EMSGSIZE;
		}
	}
}

static int send_msg(int sock, const char *text, int fd)
{
	struct iovec iov = { (void *)text, strlen(text) };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	for (;;) {
		ssize_t r = sendmsg(sock, &mh, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if ((size_t)r == iov.iov_len)
			return 0;
		/* The fd went with the first byte; finish the text. */
		iov.iov_base = (char *)iov.iov_base + r;
		iov.iov_len -= (size_t)r;
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
	}
}

static int reply(struct rs_conn *c, json_t *obj, int fd)
{
	char *text;
	int ret;

	json_object_set_new(obj, "ok", json_true());
	text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (!text)
		return -ENOMEM;
	size_t n = strlen(text);
	char *line = realloc(text, n + 2);

	if (!line) {
		free(text);
		return -ENOMEM;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	ret = send_msg(c->fd, line, fd);
	free(line);
	return ret;
}

static int reply_error(struct rs_conn *c, const char *fmt, ...) FTR_PRINTF(2, 3);

static int reply_error(struct rs_conn *c, const char *fmt, ...)
{
	char msg[256];
	json_t *o;
	char *text;
	va_list ap;
	int ret;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pr_warn("client pid %d: %s", (int)c->peer_pid, msg);
	pthread_mutex_lock(&c->srv->lock);
	ftr_strlcpy(c->srv->st.last_error, msg, sizeof(c->srv->st.last_error));
	pthread_mutex_unlock(&c->srv->lock);
	o = json_pack("{s:b, s:s}", "ok", 0, "error", msg);
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!text)
		return -ENOMEM;
	size_t n = strlen(text);
	char *line = realloc(text, n + 2);

	if (!line) {
		free(text);
		return -ENOMEM;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	ret = send_msg(c->fd, line, -1);
	free(line);
	return ret;
}

/* ---- requests ------------------------------------------------------------ */

/* Starts the resume on the first request of a promoted standby and loads
 * the layout. Returns 0 or a message in msg. */
static int ensure_resuming(struct ftr_resume_server *srv, char *msg, size_t mlen)
{
	int ret = 0;

	pthread_mutex_lock(&srv->lock);
	if (!srv->resuming) {
		ret = ftr_standby_resume_begin(srv->o.sb);
		if (ret == -EBUSY)
			snprintf(msg, mlen, "the standby is not promoted: nothing to resume yet");
		else if (ret == -ENODATA)
			snprintf(msg, mlen, "the standby has no committed epoch");
		else if (ret && ret != -EALREADY)
			snprintf(msg, mlen, "cannot start the resume: %s", strerror(-ret));
		if (!ret || ret == -EALREADY)
			ret = ftr_standby_layout(srv->o.sb, &srv->layout);
		if (!ret) {
			srv->resuming = true;
			srv->st.resume_begin_ns = ftr_now_ns();
		}
	}
	pthread_mutex_unlock(&srv->lock);
	return ret;
}

static json_t *layout_json(const struct ftr_standby_layout *l)
{
	json_t *regs = json_array();
	char *hex = malloc((size_t)l->blob_len * 2 + 1);
	json_t *o;

	for (uint32_t r = 0; r < l->nregions; r++)
		json_array_append_new(regs, json_pack("{s:I, s:s, s:I, s:I}", "id", (json_int_t)r,
						      "name", l->regions[r].name, "size",
						      (json_int_t)l->regions[r].size, "offset",
						      (json_int_t)l->regions[r].offset));
	if (hex) {
		for (uint32_t i = 0; i < l->blob_len; i++)
			sprintf(hex + 2 * i, "%02x", l->blob[i]);
		hex[2 * l->blob_len] = '\0';
	}
	o = json_pack("{s:I, s:I, s:o, s:s}", "epoch", (json_int_t)l->epoch, "page_size",
		      (json_int_t)l->page_size, "regions", regs, "blob", hex ? hex : "");
	free(hex);
	return o;
}

static bool get_u64(json_t *o, const char *key, uint64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*v = (uint64_t)json_integer_value(j);
	return true;
}

/* Starts a fault server on uffd for the given ranges. Takes uffd. */
static int start_serving(struct rs_conn *c, int uffd, enum ftr_fs_mode mode, bool background,
			 const struct ftr_fs_region *regs, unsigned n)
{
	struct ftr_resume_server *srv = c->srv;
	struct ftr_fs_opts fo = {
		.uffd = uffd,
		.mode = mode,
		.page_size = srv->layout.page_size,
		.regions = regs,
		.nregions = n,
		.ops = &standby_source,
		.ctx = c,
		.background = background,
		.poison_on_error = true,
		.prefault_pages = srv->o.prefault_pages,
		.target_pidfd = -1,
	};
	char err[192];
	int ret, pidfd;

	pidfd = (int)syscall(SYS_pidfd_open, c->peer_pid, 0);
	fo.target_pidfd = pidfd;
	ret = ftr_fs_create(&fo, &c->fs, err, sizeof(err));
	if (!ret)
		ret = ftr_fs_start(c->fs);
	if (pidfd >= 0)
		close(pidfd);
	close(uffd);
	if (ret) {
		reply_error(c, "cannot serve: %s", c->fs ? strerror(-ret) : err);
		ftr_fs_destroy(c->fs);
		c->fs = NULL;
		return ret;
	}
	pthread_mutex_lock(&srv->lock);
	srv->st.clients++;
	if (c->firecracker)
		srv->st.firecracker++;
	srv->latest = c->fs;
	pthread_mutex_unlock(&srv->lock);
	pr_info("serving pid %d (%s): %u range(s), %s mode%s", (int)c->peer_pid,
		c->firecracker ? "Firecracker handshake" : "ftrepl client", n,
		mode == FTR_FS_MINOR ? "minor" : "missing", background ? ", background fill" : "");
	return 0;
}

/* Firecracker: [{base_host_virt_addr, size, offset, page_size|page_size_kib}].
 * offset is into the concatenated image; a mapping may span regions. */
static int do_firecracker(struct rs_conn *c, const char *text, int uffd)
{
	const struct ftr_standby_layout *l = &c->srv->layout;
	struct ftr_fs_region regs[FTR_WIRE_MAX_REGIONS];
	json_error_t jerr;
	json_t *arr = json_loads(text, 0, &jerr);
	size_t i, n = 0;
	json_t *m;
	int ret = -EPROTO;

	c->firecracker = true;
	if (uffd < 0) {
		reply_error(c, "Firecracker handshake without a uffd (SCM_RIGHTS)");
		goto out;
	}
	if (!json_is_array(arr) || !json_array_size(arr)) {
		reply_error(c, "Firecracker handshake: expected a non-empty JSON array of mappings");
		goto out;
	}
	c->maps = calloc(FTR_WIRE_MAX_REGIONS, sizeof(*c->maps));
	if (!c->maps) {
		ret = -ENOMEM;
		goto out;
	}
	json_array_foreach(arr, i, m) {
		uint64_t base, size, off, psz = 0, kib;

		if (!json_is_object(m) || !get_u64(m, "base_host_virt_addr", &base) ||
		    !get_u64(m, "size", &size) || !get_u64(m, "offset", &off)) {
			reply_error(c, "Firecracker mapping %zu: needs base_host_virt_addr, size and offset",
				    i);
			goto out;
		}
		if (!get_u64(m, "page_size", &psz) && get_u64(m, "page_size_kib", &kib))
			psz = kib * 1024;
		if (psz && psz != l->page_size) {
			reply_error(c, "Firecracker mapping %zu: page size %" PRIu64
				    ", the image has %u", i, psz, l->page_size);
			goto out;
		}
		if (!size || base % l->page_size || size % l->page_size || off % l->page_size) {
			reply_error(c, "Firecracker mapping %zu: base, size and offset must be multiples of %u",
				    i, l->page_size);
			goto out;
		}
		/* Cut the mapping along the image's regions. */
		uint64_t img = 0, covered = 0;

		for (uint32_t r = 0; r < l->nregions; r++) {
			uint64_t rs = img, re = img + l->regions[r].size;
			uint64_t s = FTR_MAX(rs, off), e = FTR_MIN(re, off + size);

			img = re;
			if (s >= e)
				continue;
			if (n == FTR_WIRE_MAX_REGIONS) {
				reply_error(c, "Firecracker handshake: too many mapping pieces");
				goto out;
			}
			regs[n].addr = base + (s - off);
			regs[n].size = e - s;
			regs[n].id = (uint32_t)n;
			c->maps[n].region = r;
			c->maps[n].first = (s - rs) / l->page_size;
			covered += e - s;
			n++;
		}
		if (covered != size) {
			reply_error(c, "Firecracker mapping %zu: offset %" PRIu64 " + size %" PRIu64
				    " is beyond the image (%" PRIu64 " bytes)", i, off, size, img);
			goto out;
		}
	}
	c->nmaps = (unsigned)n;
	ret = start_serving(c, uffd, FTR_FS_MISSING, true, regs, (unsigned)n);
	uffd = -1;
out:
	if (uffd >= 0)
		close(uffd);
	json_decref(arr);
	return ret;
}

static int do_serve(struct rs_conn *c, json_t *req, int uffd)
{
	const struct ftr_standby_layout *l = &c->srv->layout;
	struct ftr_fs_region regs[FTR_WIRE_MAX_REGIONS];
	const char *mode = json_string_value(json_object_get(req, "mode"));
	json_t *arr = json_object_get(req, "regions"), *m;
	json_t *bg = json_object_get(req, "background");
	enum ftr_fs_mode fmode;
	size_t i;

	if (c->fs) {
		reply_error(c, "serve: this connection is already served");
		goto bad;
	}
	if (uffd < 0) {
		reply_error(c, "serve: no uffd passed (SCM_RIGHTS)");
		goto bad;
	}
	if (mode && !strcmp(mode, "minor"))
		fmode = FTR_FS_MINOR;
	else if (mode && !strcmp(mode, "missing"))
		fmode = FTR_FS_MISSING;
	else {
		reply_error(c, "serve: \"mode\" must be \"minor\" or \"missing\"");
		goto bad;
	}
	if (!json_is_array(arr) || !json_array_size(arr) ||
	    json_array_size(arr) > FTR_WIRE_MAX_REGIONS) {
		reply_error(c, "serve: \"regions\" must be an array of 1..%u ranges",
			    FTR_WIRE_MAX_REGIONS);
		goto bad;
	}
	c->maps = calloc(json_array_size(arr), sizeof(*c->maps));
	if (!c->maps)
		goto bad;
	json_array_foreach(arr, i, m) {
		uint64_t id, addr, size;

		if (!get_u64(m, "id", &id) || !get_u64(m, "addr", &addr) ||
		    !get_u64(m, "size", &size)) {
			reply_error(c, "serve: range %zu needs id, addr and size", i);
			goto bad;
		}
		if (id >= l->nregions || size != l->regions[id].size) {
			reply_error(c, "serve: range %zu: region %" PRIu64 " of %" PRIu64
				    " bytes does not match the image", i, id, size);
			goto bad;
		}
		regs[i] = (struct ftr_fs_region){ .addr = addr, .size = size, .id = (uint32_t)i };
		c->maps[i].region = (uint32_t)id;
		c->maps[i].first = 0;
	}
	c->nmaps = (unsigned)i;
	if (start_serving(c, uffd, fmode, !json_is_false(bg), regs, c->nmaps))
		return -EPROTO;
	return reply(c, json_object(), -1);
bad:
	if (uffd >= 0)
		close(uffd);
	return -EPROTO;
}

static json_t *fs_stats_json(struct ftr_fs *fs)
{
	struct ftr_fs_stats st;

	ftr_fs_get_stats(fs, &st);
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b}", "state",
			 ftr_fs_state_name(st.state), "faults", (json_int_t)st.faults,
			 "pages_faulted", (json_int_t)st.pages_faulted, "pages_background",
			 (json_int_t)st.pages_background, "pages_resident",
			 (json_int_t)st.pages_resident, "pages_total", (json_int_t)st.pages_total,
			 "fault_lat_median_ns", (json_int_t)st.fault_lat_median_ns,
			 "fault_lat_p99_ns", (json_int_t)st.fault_lat_p99_ns, "bg_pages_per_s",
			 st.bg_pages_per_s, "done", st.done);
}

static int handle(struct rs_conn *c, const char *text, int fd)
{
	json_error_t jerr;
	json_t *req;
	const char *op;
	char msg[192];
	int ret = 0;

	if (ensure_resuming(c->srv, msg, sizeof(msg))) {
		if (fd >= 0)
			close(fd);
		reply_error(c, "%s", msg);
		return -EAGAIN;
	}
	if (text[0] == '[')
		return do_firecracker(c, text, fd);
	req = json_loads(text, 0, &jerr);
	op = json_string_value(json_object_get(req, "op"));
	if (!json_is_object(req) || !op) {
		if (fd >= 0)
			close(fd);
		json_decref(req);
		reply_error(c, "request must be a JSON object with an \"op\" (%s)",
			    req ? "no op" : jerr.text);
		return -EPROTO;
	}
	if (!strcmp(op, "serve")) {
		ret = do_serve(c, req, fd);
		json_decref(req);
		return ret;
	}
	if (fd >= 0)
		close(fd);
	if (!strcmp(op, "layout")) {
		bool shared = json_is_true(json_object_get(req, "shared"));

		ret = reply(c, layout_json(&c->srv->layout), shared ? c->srv->layout.cache_fd : -1);
	} else if (!strcmp(op, "started")) {
		pthread_mutex_lock(&c->srv->lock);
		if (!c->srv->st.started_ns)
			c->srv->st.started_ns = ftr_now_ns();
		pthread_mutex_unlock(&c->srv->lock);
		ret = reply(c, json_object(), -1);
	} else if (!strcmp(op, "wait")) {
		uint64_t t = 10000;

		get_u64(req, "timeout_ms", &t);
		if (!c->fs)
			ret = reply_error(c, "wait: nothing served on this connection");
		else
			ret = reply(c, json_pack("{s:b}", "resident",
						 !ftr_fs_wait_resident(c->fs, (int)FTR_MIN(t, 600000))), -1);
	} else if (!strcmp(op, "stats")) {
		if (!c->fs)
			ret = reply_error(c, "stats: nothing served on this connection");
		else
			ret = reply(c, fs_stats_json(c->fs), -1);
	} else if (!strcmp(op, "bye")) {
		ret = reply(c, json_object(), -1);
		json_decref(req);
		return 1;
	} else {
		ret = reply_error(c, "unknown op \"%s\" (layout, serve, started, wait, stats, bye)", op);
	}
	json_decref(req);
	return ret;
}

static void *conn_main(void *arg)
{
	struct rs_conn *c = arg;
	char *buf = malloc(RS_MAX_MSG);
	bool first = true;

	ftr_thread_name("ftr-rs-conn");

	while (buf) {
		int fd;
		ssize_t n = read_msg(c, buf, RS_MAX_MSG, first ? RS_FIRST_MSG_MS : -1, &fd);

		if (n == 0 || n == -ECANCELED)
			break;
		if (n < 0) {
			if (n == -ETIMEDOUT)
				reply_error(c, "no complete request within %d ms",
					    first ? RS_FIRST_MSG_MS : RS_MSG_STALL_MS);
			else if (n == -EMSGSIZE)
				reply_error(c, "request longer than %d bytes", RS_MAX_MSG);
			else
				pr_info("client pid %d: %s", (int)c->peer_pid, strerror((int)-n));
			break;
		}
		first = false;
		if (handle(c, buf, fd) == 1)
			break;
	}
	free(buf);
	/* A served uffd stays served after the connection ends (Firecracker
	 * may close its socket): the server ends when the target exits, on
	 * "bye", or when the resume server stops. */
	atomic_store(&c->done, true);
	return NULL;
}

static void conn_free(struct rs_conn *c)
{
	pthread_join(c->th, NULL);
	if (c->fs) {
		ftr_fs_stop(c->fs);
		ftr_fs_destroy(c->fs);
	}
	if (c->srv->latest == c->fs)
		c->srv->latest = NULL;
	close(c->fd);
	free(c->maps);
	free(c);
}

/* Frees connections whose thread ended and whose target is gone. */
static void reap(struct ftr_resume_server *srv, bool all)
{
	struct rs_conn **pp = &srv->conns;

	while (*pp) {
		struct rs_conn *c = *pp;
		bool gone = atomic_load(&c->done);

		if (gone && c->fs && !all) {
			struct ftr_fs_stats st;

			ftr_fs_get_stats(c->fs, &st);
			gone = st.state != FTR_FS_RUNNING;
		}
		if (all || gone) {
			*pp = c->next;
			srv->nconns--;
			if (c->fs) {
				struct ftr_fs_stats fs;

				/* Keep its counts: stats are cumulative. */
				ftr_fs_get_stats(c->fs, &fs);
				srv->retired.faults += fs.faults;
				srv->retired.pages_faulted += fs.pages_faulted;
				srv->retired.pages_background += fs.pages_background;
				srv->retired.pages_resident += fs.pages_resident;
				srv->retired.pages_total += fs.pages_total;
				if (fs.first_fault_ns && (!srv->retired.first_fault_ns ||
							  fs.first_fault_ns < srv->retired.first_fault_ns))
					srv->retired.first_fault_ns = fs.first_fault_ns;
				if (c->fs == srv->latest) {
					srv->retired.fault_lat_median_ns = fs.fault_lat_median_ns;
					srv->retired.fault_lat_p99_ns = fs.fault_lat_p99_ns;
					srv->retired.bg_pages_per_s = fs.bg_pages_per_s;
				}
			}
			pthread_mutex_unlock(&srv->lock);
			conn_free(c);
			pthread_mutex_lock(&srv->lock);
			pp = &srv->conns;
			continue;
		}
		pp = &c->next;
	}
}

static void *accept_main(void *arg)
{
	struct ftr_resume_server *srv = arg;

	ftr_thread_name("ftr-rs-accept");

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = srv->lfd, .events = POLLIN },
			{ .fd = srv->stop_fd, .events = POLLIN },
		};
		struct ucred cr;
		socklen_t crl = sizeof(cr);
		struct rs_conn *c;
		int fd;

		if (poll(pfd, 2, 1000) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		pthread_mutex_lock(&srv->lock);
		reap(srv, false);
		pthread_mutex_unlock(&srv->lock);
		if (!(pfd[0].revents & POLLIN))
			continue;
		fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		c = calloc(1, sizeof(*c));
		if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl)) {
			free(c);
			close(fd);
			continue;
		}
		c->srv = srv;
		c->fd = fd;
		c->peer_pid = cr.pid;
		pthread_mutex_lock(&srv->lock);
		if (srv->nconns >= RS_MAX_CONNS ||
		    pthread_create(&c->th, NULL, conn_main, c)) {
			pthread_mutex_unlock(&srv->lock);
			pr_warn("refusing resume client pid %d: too many connections", (int)cr.pid);
			close(fd);
			free(c);
			continue;
		}
		c->next = srv->conns;
		srv->conns = c;
		srv->nconns++;
		pthread_mutex_unlock(&srv->lock);
	}
	return NULL;
}

/* ---- start / stop ---------------------------------------------------------- */

static int unix_listen(struct ftr_resume_server *srv, char *err, size_t errlen)
{
	int fd = ftr_unix_listen(srv->path, 16, false, &srv->dev, &srv->ino);

	if (fd == -EEXIST)
		snprintf(err, errlen, "%s exists and is not a socket", srv->path);
	else if (fd == -EADDRINUSE)
		snprintf(err, errlen, "%s: another process is listening there", srv->path);
	else if (fd == -ENAMETOOLONG)
		snprintf(err, errlen, "resume socket path too long: %s", srv->path);
	else if (fd < 0)
		snprintf(err, errlen, "cannot listen on %s: %s", srv->path, strerror(-fd));
	return fd;
}

int ftr_resume_server_start(const struct ftr_resume_server_opts *o,
			    struct ftr_resume_server **out, char *err, size_t errlen)
{
	struct ftr_resume_server *srv;
	int ret;

	if (!o || !o->path || !o->sb) {
		snprintf(err, errlen, "resume server needs a path and a standby");
		return -EINVAL;
	}
	if (strlen(o->path) >= sizeof(srv->path)) {
		snprintf(err, errlen, "resume socket path too long (%zu bytes, at most %zu): %s",
			 strlen(o->path), sizeof(srv->path) - 1, o->path);
		return -ENAMETOOLONG;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->o = *o;
	ftr_strlcpy(srv->path, o->path, sizeof(srv->path));
	srv->o.path = srv->path;
	srv->o.prefault_pages = FTR_MIN(o->prefault_pages, FTR_FS_PREFAULT_MAX);
	pthread_mutex_init(&srv->lock, NULL);
	srv->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	srv->lfd = unix_listen(srv, err, errlen);
	if (srv->stop_fd < 0 || srv->lfd < 0) {
		ret = srv->lfd < 0 ? srv->lfd : -errno;
		if (srv->lfd >= 0)
			close(srv->lfd);
		if (srv->stop_fd >= 0)
			close(srv->stop_fd);
		pthread_mutex_destroy(&srv->lock);
		free(srv);
		return ret;
	}
	ret = -pthread_create(&srv->accept_th, NULL, accept_main, srv);
	if (ret) {
		snprintf(err, errlen, "cannot start the resume thread: %s", strerror(-ret));
		close(srv->lfd);
		unlink(srv->path);
		close(srv->stop_fd);
		free(srv);
		return ret;
	}
	srv->started = true;
	*out = srv;
	return 0;
}

void ftr_resume_server_stop(struct ftr_resume_server *srv)
{
	uint64_t one = 1;

	if (!srv)
		return;
	if (write(srv->stop_fd, &one, sizeof(one)) < 0) {
		/* counter full: already stopping */
	}
	if (srv->started)
		pthread_join(srv->accept_th, NULL);
	pthread_mutex_lock(&srv->lock);
	reap(srv, true);
	pthread_mutex_unlock(&srv->lock);
	close(srv->lfd);
	ftr_unix_unlink_own(srv->path, srv->dev, srv->ino);
	close(srv->stop_fd);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}

void ftr_resume_server_stats(struct ftr_resume_server *srv, struct ftr_resume_stats *st)
{
	pthread_mutex_lock(&srv->lock);
	*st = srv->st;
	st->faults = srv->retired.faults;
	st->pages_faulted = srv->retired.pages_faulted;
	st->pages_background = srv->retired.pages_background;
	st->pages_resident = srv->retired.pages_resident;
	st->pages_total = srv->retired.pages_total;
	st->first_fault_ns = srv->retired.first_fault_ns;
	st->fault_lat_median_ns = srv->retired.fault_lat_median_ns;
	st->fault_lat_p99_ns = srv->retired.fault_lat_p99_ns;
	st->bg_pages_per_s = srv->retired.bg_pages_per_s;
	for (struct rs_conn *c = srv->conns; c; c = c->next) {
		struct ftr_fs_stats fs;

		if (!c->fs)
			continue;
		ftr_fs_get_stats(c->fs, &fs);
		st->faults += fs.faults;
		st->pages_faulted += fs.pages_faulted;
		st->pages_background += fs.pages_background;
		st->pages_resident += fs.pages_resident;
		st->pages_total += fs.pages_total;
		if (fs.first_fault_ns && (!st->first_fault_ns || fs.first_fault_ns < st->first_fault_ns))
			st->first_fault_ns = fs.first_fault_ns;
		if (c->fs == srv->latest) {
			st->fault_lat_median_ns = fs.fault_lat_median_ns;
			st->fault_lat_p99_ns = fs.fault_lat_p99_ns;
			st->bg_pages_per_s = fs.bg_pages_per_s;
		}
	}
	pthread_mutex_unlock(&srv->lock);
}
