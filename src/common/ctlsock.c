/* SPDX-License-Identifier: MIT */
/*
 * The control socket: JSON lines over a unix stream socket (see ctlsock.h
 * for the protocol).
 *
 * Server: one thread polls the stop eventfd, the listening socket and up
 * to FTR_CTL_MAX_CLIENTS clients. Every client socket is non-blocking; the
 * thread never waits on one client for long: reads take what is there,
 * writes wait at most CTL_WRITE_MS for buffer space, a partial line may
 * stay incomplete for at most FTR_CTL_STALL_MS. Handlers run on this
 * thread, one request at a time.
 *
 * Client: connect, one request line, one reply line, all bounded by one
 * overall deadline.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define FTR_LOG_PREFIX "ctl"
#include "common/common.h"
#include "common/ctlsock.h"

/* A client gets this long to make room for one reply before it is dropped. */
#define CTL_WRITE_MS 2000
/* After accept() fails for lack of descriptors, stop polling the listener
 * this long instead of spinning on it. */
#define CTL_ACCEPT_PAUSE_MS 100
#define CTL_BACKLOG 16
/* One full line plus its '\n'. */
#define CTL_BUF_SIZE (FTR_CTL_MAX_LINE + 1)
/* Largest reply ftr_ctl_request() accepts. */
#define CTL_MAX_REPLY (16u << 20)
#define CTL_NO_DEADLINE UINT64_MAX

struct ctl_client {
	int fd;			/* -1: slot free */
	char *buf;		/* CTL_BUF_SIZE bytes */
	size_t len;		/* bytes of the unfinished line in buf */
	uint64_t partial_ms;	/* when that line began; 0 when len == 0 */
};

struct ftr_ctl_server {
	char *path;
	dev_t dev;		/* identity of the socket file we bound, so */
	ino_t ino;		/* stop unlinks only our own */
	int lfd;
	int stopfd;
	pthread_t thread;
	ftr_ctl_handler handler;
	void *arg;
	uint64_t accept_resume_ms; /* 0: accepting */
	struct ctl_client clients[FTR_CTL_MAX_CLIENTS];
};

/* ---- shared I/O helpers -------------------------------------------------- */

static int ms_until(uint64_t deadline)
{
	uint64_t now = ftr_now_ms();

	if (deadline == CTL_NO_DEADLINE)
		return -1;
	if (deadline <= now)
		return 0;
	return (int)FTR_MIN(deadline - now, (uint64_t)INT32_MAX);
}

/* Waits until fd is ready for events, the deadline passes (-ETIMEDOUT) or,
 * when stopfd >= 0, the server is being stopped (-ECANCELED). */
static int wait_fd(int fd, short events, uint64_t deadline, int stopfd)
{
	struct pollfd pfd[2] = {
		{ .fd = fd, .events = events },
		{ .fd = stopfd, .events = POLLIN },
	};
	int n;

	for (;;) {
		n = poll(pfd, stopfd >= 0 ? 2 : 1, ms_until(deadline));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ETIMEDOUT;
		if (stopfd >= 0 && pfd[1].revents)
			return -ECANCELED;
		/* POLLERR/POLLHUP included: the next send/recv says what. */
		return 0;
	}
}

/* Sends all of buf on a non-blocking socket, waiting for room until the
 * deadline. MSG_NOSIGNAL: a vanished peer is an -EPIPE, not a SIGPIPE. */
static int send_all(int fd, const char *buf, size_t len, uint64_t deadline, int stopfd)
{
	ssize_t n;
	int ret;

	while (len) {
		n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		ret = wait_fd(fd, POLLOUT, deadline, stopfd);
		if (ret)
			return ret;
	}
	return 0;
}

/* json_dumps() plus the line's '\n'. NULL when out of memory or when the
 * value cannot be encoded. */
static char *dump_line(const json_t *obj, size_t *len)
{
	char *s = json_dumps(obj, JSON_COMPACT);
	char *line;
	size_t n;

	if (!s)
		return NULL;
	n = strlen(s);
	line = realloc(s, n + 2);
	if (!line) {
		free(s);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*len = n + 1;
	return line;
}

static int check_path(const char *path, struct sockaddr_un *sa)
{
	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

char *ftr_ctl_errorf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

/* ---- server: replies ----------------------------------------------------- */

static void client_close(struct ctl_client *c)
{
	if (c->fd < 0)
		return;
	close(c->fd);
	free(c->buf);
	c->fd = -1;
	c->buf = NULL;
	c->len = 0;
	c->partial_ms = 0;
}

static int client_send(struct ftr_ctl_server *srv, struct ctl_client *c, const json_t *obj)
{
	static const char encode_error[] =
		"{\"ok\":false,\"error\":\"internal error: reply cannot be encoded\"}\n";
	size_t len;
	char *line = dump_line(obj, &len);
	int ret;

	/* Out of memory: the client still gets its one reply line. */
	if (!line) {
		pr_err("cannot encode a control reply");
		line = strdup(encode_error);
		if (!line)
			return -ENOMEM;
		len = strlen(line);
	}
	ret = send_all(c->fd, line, len, ftr_now_ms() + CTL_WRITE_MS, srv->stopfd);
	free(line);
	/* A client that left before its reply is routine; one that does not
	 * read its replies is worth a warning. */
	if (ret == -EPIPE || ret == -ECONNRESET)
		pr_debug("control client left before its reply");
	else if (ret && ret != -ECANCELED)
		pr_warn("dropping a control client: reply not delivered: %s", strerror(-ret));
	return ret;
}

/* jansson only takes UTF-8; a message quoting a user's bytes (a file name)
 * may not be. Such bytes become '?' rather than losing the whole reply. */
static json_t *error_object(const char *msg)
{
	json_t *obj = json_pack("{s:b, s:s}", "ok", 0, "error", msg);
	char *copy;

	if (obj)
		return obj;
	copy = strdup(msg);
	if (!copy)
		return NULL;
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	obj = json_pack("{s:b, s:s}", "ok", 0, "error", copy);
	free(copy);
	return obj;
}

static int client_error(struct ftr_ctl_server *srv, struct ctl_client *c, const char *msg)
{
	json_t *obj = error_object(msg);
	int ret;

	if (!obj)
		return -ENOMEM;
	ret = client_send(srv, c, obj);
	json_decref(obj);
	return ret;
}

/* Runs the handler and sends {"ok":true, ...its fields} or the error. */
static int dispatch(struct ftr_ctl_server *srv, struct ctl_client *c, const char *cmd,
		    json_t *req)
{
	char *errmsg = NULL;
	json_t *rep, *out;
	int ret;

	rep = srv->handler(srv->arg, cmd, req, &errmsg);
	if (rep && !json_is_object(rep)) {
		pr_err("handler for \"%s\" returned a non-object reply", cmd);
		json_decref(rep);
		rep = NULL;
	}
	if (!rep) {
		ret = client_error(srv, c, errmsg ? errmsg : "internal error");
		free(errmsg);
		return ret;
	}
	free(errmsg); /* a handler may set it and still succeed */

	/* "ok" goes in first so it leads the line (jansson keeps insertion
	 * order); the handler's fields follow and cannot override it. */
	out = json_object();
	if (!out || json_object_set_new(out, "ok", json_true()) || json_object_update(out, rep) ||
	    json_object_set_new(out, "ok", json_true()))
		ret = client_error(srv, c, "internal error: out of memory");
	else
		ret = client_send(srv, c, out);
	json_decref(out);
	json_decref(rep);
	return ret;
}

/* One complete line (without its '\n'). Returns 0 to keep the client. */
static int handle_line(struct ftr_ctl_server *srv, struct ctl_client *c, const char *line,
		       size_t len)
{
	json_error_t jerr;
	json_t *req, *cmd;
	char *msg;
	int ret;

	/* JSON_DECODE_ANY: a bare 42 or "x" is valid JSON, and deserves
	 * "must be an object" rather than a parser message. */
	req = json_loadb(line, len, JSON_DECODE_ANY, &jerr);
	if (!req) {
		msg = ftr_ctl_errorf("invalid JSON: %s (line %d column %d)", jerr.text, jerr.line,
				     jerr.column);
		ret = client_error(srv, c, msg ? msg : "invalid JSON");
		free(msg);
		return ret;
	}
	cmd = json_object_get(req, "cmd");
	if (!json_is_object(req))
		ret = client_error(srv, c, "request must be a JSON object");
	else if (!json_is_string(cmd))
		ret = client_error(srv, c, "request needs a \"cmd\" string");
	else
		ret = dispatch(srv, c, json_string_value(cmd), req);
	json_decref(req);
	return ret;
}

/* ---- server: clients ----------------------------------------------------- */

/* Reads what the client sent and answers every complete line. Closes the
 * client on EOF, error, an overlong line or a failed reply. */
static void client_input(struct ftr_ctl_server *srv, struct ctl_client *c)
{
	size_t start = 0;
	char *nl;
	ssize_t n;

	n = recv(c->fd, c->buf + c->len, CTL_BUF_SIZE - c->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		if (n < 0)
			pr_debug("control client: %s", strerror(errno));
		client_close(c);
		return;
	}
	c->len += (size_t)n;
	while ((nl = memchr(c->buf + start, '\n', c->len - start))) {
		size_t linelen = (size_t)(nl - (c->buf + start));

		if (handle_line(srv, c, c->buf + start, linelen)) {
			client_close(c);
			return;
		}
		start += linelen + 1;
	}
	memmove(c->buf, c->buf + start, c->len - start);
	c->len -= start;
	if (c->len == CTL_BUF_SIZE) {
		char msg[64];

		snprintf(msg, sizeof(msg), "request line longer than %d bytes", FTR_CTL_MAX_LINE);
		pr_warn("dropping a control client: %s", msg);
		client_error(srv, c, msg);
		client_close(c);
		return;
	}
	/* The stall clock runs from the first byte of the unfinished line. */
	if (!c->len)
		c->partial_ms = 0;
	else if (start || !c->partial_ms)
		c->partial_ms = ftr_now_ms();
}

/* Refuses a client over the limit with one line. MSG_DONTWAIT only: a
 * fresh socket always has room for it, and an unwanted client must not
 * hold up the others. */
static void refuse_client(int fd)
{
	static const char msg[] = "{\"ok\":false,\"error\":\"too many control clients\"}\n";

	if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		pr_debug("refusing a control client: %s", strerror(errno));
	close(fd);
}

static void accept_client(struct ftr_ctl_server *srv)
{
	struct ctl_client *c = NULL;
	int fd;

	fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
		    errno == ECONNABORTED)
			return;
		pr_warn("accepting a control client: %s", strerror(errno));
		srv->accept_resume_ms = ftr_now_ms() + CTL_ACCEPT_PAUSE_MS;
		return;
	}
	for (size_t i = 0; i < FTR_ARRAY_SIZE(srv->clients); i++) {
		if (srv->clients[i].fd < 0) {
			c = &srv->clients[i];
			break;
		}
	}
	if (!c) {
		pr_warn("refusing a control client: already %d connected", FTR_CTL_MAX_CLIENTS);
		refuse_client(fd);
		return;
	}
	c->buf = malloc(CTL_BUF_SIZE);
	if (!c->buf) {
		pr_warn("refusing a control client: out of memory");
		close(fd);
		return;
	}
	c->fd = fd;
	c->len = 0;
	c->partial_ms = 0;
	pr_debug("control client connected");
}

static bool has_input(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) > 0;
}

/* Drops clients whose unfinished line is older than FTR_CTL_STALL_MS.
 * A client with unread input is spared: the rest of its line may have
 * come while a slow handler kept this thread busy. It is read (and judged
 * again) in the next round. */
static void reap_stalled(struct ftr_ctl_server *srv)
{
	uint64_t now = ftr_now_ms();

	for (size_t i = 0; i < FTR_ARRAY_SIZE(srv->clients); i++) {
		struct ctl_client *c = &srv->clients[i];

		if (c->fd < 0 || !c->partial_ms || c->partial_ms + FTR_CTL_STALL_MS > now)
			continue;
		if (has_input(c->fd))
			continue;
		pr_warn("dropping a control client: request line incomplete after %d ms",
			FTR_CTL_STALL_MS);
		client_close(c);
	}
}

/* The poll timeout: until the oldest unfinished line stalls out or the
 * accept pause ends; -1 when there is neither. */
static int next_timeout(struct ftr_ctl_server *srv)
{
	uint64_t next = CTL_NO_DEADLINE;

	if (srv->accept_resume_ms && srv->accept_resume_ms <= ftr_now_ms())
		srv->accept_resume_ms = 0;
	if (srv->accept_resume_ms)
		next = srv->accept_resume_ms;
	for (size_t i = 0; i < FTR_ARRAY_SIZE(srv->clients); i++) {
		const struct ctl_client *c = &srv->clients[i];

		if (c->fd >= 0 && c->partial_ms)
			next = FTR_MIN(next, c->partial_ms + FTR_CTL_STALL_MS);
	}
	return ms_until(next);
}

static void *server_thread(void *arg)
{
	struct ftr_ctl_server *srv = arg;
	struct pollfd pfd[2 + FTR_CTL_MAX_CLIENTS];
	struct ctl_client *who[2 + FTR_CTL_MAX_CLIENTS];
	nfds_t n;
	int timeout, ret;

	ftr_thread_name("ftr-ctl");

	for (;;) {
		timeout = next_timeout(srv);
		pfd[0] = (struct pollfd){ .fd = srv->stopfd, .events = POLLIN };
		/* A negative fd is skipped by poll(): that is the accept pause. */
		pfd[1] = (struct pollfd){ .fd = srv->accept_resume_ms ? -1 : srv->lfd,
					  .events = POLLIN };
		n = 2;
		for (size_t i = 0; i < FTR_ARRAY_SIZE(srv->clients); i++) {
			if (srv->clients[i].fd < 0)
				continue;
			who[n] = &srv->clients[i];
			pfd[n++] = (struct pollfd){ .fd = srv->clients[i].fd, .events = POLLIN };
		}
		ret = poll(pfd, n, timeout);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			pr_err("poll: %s", strerror(errno));
			usleep(10000); /* ENOMEM: try again rather than die */
			continue;
		}
		if (pfd[0].revents)
			break;
		/* Clients before accept: a slot freed by a client that just
		 * left can go to a newcomer in the same round instead of the
		 * newcomer being refused. */
		for (nfds_t k = 2; k < n; k++)
			if (pfd[k].revents)
				client_input(srv, who[k]);
		reap_stalled(srv);
		if (pfd[1].revents)
			accept_client(srv);
	}
	return NULL;
}

/* ---- server: setup ------------------------------------------------------- */

/* Is anybody accepting on the socket file at sa? Returns 1 if so, 0 if it
 * is stale (nobody listening), or -errno if that cannot be told. */
static int socket_in_use(const struct sockaddr_un *sa)
{
	int fd, ret;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		ret = 1;
	else if (errno == EAGAIN) /* listening, backlog full */
		ret = 1;
	else if (errno == ECONNREFUSED)
		ret = 0;
	else
		ret = -errno;
	close(fd);
	return ret;
}

/* Makes room for our socket at path: nothing there, or a stale socket
 * that is removed. A live socket is -EADDRINUSE, anything else -EEXIST. */
static int clear_path(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int ret;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	ret = socket_in_use(sa);
	if (ret < 0)
		return ret;
	if (ret)
		return -EADDRINUSE;
	pr_info("removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int ftr_unix_listen(const char *path, int backlog, bool nonblock, dev_t *dev, ino_t *ino)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, ret;

	ret = check_path(path, &sa);
	if (ret)
		return ret;
	ret = clear_path(path, &sa);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	/* chmod rather than umask: umask is process-wide and other threads
	 * may be creating files. The window between bind and chmod is safe
	 * because nobody can connect before listen(). */
	if (chmod(path, 0600) < 0 || lstat(path, &st) < 0 || listen(fd, backlog) < 0) {
		ret = -errno;
		unlink(path);
		close(fd);
		return ret;
	}
	if (dev)
		*dev = st.st_dev;
	if (ino)
		*ino = st.st_ino;
	return fd;
}

void ftr_unix_unlink_own(const char *path, dev_t dev, ino_t ino)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return;
	if (st.st_dev != dev || st.st_ino != ino) {
		pr_warn("%s was replaced; not removing it", path);
		return;
	}
	if (unlink(path) < 0)
		pr_warn("removing %s: %s", path, strerror(errno));
}

static int bind_listen(struct ftr_ctl_server *srv)
{
	int fd = ftr_unix_listen(srv->path, CTL_BACKLOG, true, &srv->dev, &srv->ino);

	if (fd < 0)
		return fd;
	srv->lfd = fd;
	return 0;
}

static void server_free(struct ftr_ctl_server *srv)
{
	for (size_t i = 0; i < FTR_ARRAY_SIZE(srv->clients); i++)
		client_close(&srv->clients[i]);
	if (srv->lfd >= 0) {
		close(srv->lfd);
		ftr_unix_unlink_own(srv->path, srv->dev, srv->ino);
	}
	if (srv->stopfd >= 0)
		close(srv->stopfd);
	free(srv->path);
	free(srv);
}

/* The thread starts with every signal blocked so that process signals
 * (SIGINT, SIGTERM) go to the threads that wait for them. */
static int start_thread(struct ftr_ctl_server *srv)
{
	sigset_t all, old;
	int ret;

	sigfillset(&all);
	ret = pthread_sigmask(SIG_SETMASK, &all, &old);
	if (ret)
		return -ret;
	ret = pthread_create(&srv->thread, NULL, server_thread, srv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -ret;
}

int ftr_ctl_server_start(const char *path, ftr_ctl_handler handler, void *arg,
			 struct ftr_ctl_server **out)
{
	struct ftr_ctl_server *srv;
	int ret;

	if (!path || !handler || !out)
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->lfd = -1;
	srv->handler = handler;
	srv->arg = arg;
	for (size_t i = 0; i < FTR_ARRAY_SIZE(srv->clients); i++)
		srv->clients[i].fd = -1;
	srv->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	srv->path = strdup(path);
	if (srv->stopfd < 0 || !srv->path) {
		ret = srv->stopfd < 0 ? -errno : -ENOMEM;
		goto err;
	}
	ret = bind_listen(srv);
	if (ret)
		goto err;
	ret = start_thread(srv);
	if (ret)
		goto err;
	pr_debug("control socket listening on %s", path);
	*out = srv;
	return 0;
err:
	server_free(srv);
	return ret;
}

void ftr_ctl_server_stop(struct ftr_ctl_server *srv)
{
	uint64_t one = 1;

	if (!srv)
		return;
	/* An eventfd write only fails if the counter would overflow. */
	if (write(srv->stopfd, &one, sizeof(one)) < 0)
		pr_err("stopping the control server: %s", strerror(errno));
	pthread_join(srv->thread, NULL);
	server_free(srv);
}

/* ---- client -------------------------------------------------------------- */

/* Connects within timeout_ms (< 0: no limit). A unix connect only blocks
 * while the listener's backlog is full; SO_SNDTIMEO bounds that wait. */
static int client_connect(const char *path, int timeout_ms)
{
	struct sockaddr_un sa;
	int fd, ret;

	ret = check_path(path, &sa);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (timeout_ms >= 0) {
		int ms = FTR_MAX(timeout_ms, 1); /* 0 would mean "forever" */
		struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
			goto err;
	}
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EINPROGRESS)
			errno = ETIMEDOUT;
		goto err;
	}
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
		goto err;
	return fd;
err:
	ret = -errno;
	close(fd);
	return ret;
}

/* Reads up to the first '\n'. Returns 0 with the malloc'ed line (no '\n',
 * NUL-terminated) in *out and its length in *outlen. */
static int read_line(int fd, uint64_t deadline, char **out, size_t *outlen)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *nl, *bigger;
	ssize_t n;
	int ret;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (len == cap) {
			if (cap > CTL_MAX_REPLY) {
				ret = -EMSGSIZE;
				goto err;
			}
			bigger = realloc(buf, cap * 2);
			if (!bigger) {
				ret = -ENOMEM;
				goto err;
			}
			buf = bigger;
			cap *= 2;
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			ret = wait_fd(fd, POLLIN, deadline, -1);
			if (ret)
				goto err;
			continue;
		}
		if (n < 0) {
			ret = -errno;
			goto err;
		}
		if (n == 0) {
			ret = -EPROTO; /* closed before a whole reply */
			goto err;
		}
		nl = memchr(buf + len, '\n', (size_t)n);
		len += (size_t)n;
		if (nl) {
			*nl = '\0';
			*outlen = (size_t)(nl - buf);
			*out = buf;
			return 0;
		}
	}
err:
	free(buf);
	return ret;
}

int ftr_ctl_request(const char *path, json_t *req, int timeout_ms, json_t **reply)
{
	uint64_t deadline = timeout_ms < 0 ? CTL_NO_DEADLINE : ftr_now_ms() + (uint64_t)timeout_ms;
	char *line = NULL, *in = NULL;
	size_t len, inlen = 0;
	json_t *rep;
	int fd, ret, sret;

	if (!path || !req || !reply)
		return -EINVAL;
	*reply = NULL;
	line = dump_line(req, &len);
	if (!line)
		return -ENOMEM;
	fd = client_connect(path, timeout_ms);
	if (fd < 0) {
		free(line);
		return fd;
	}
	sret = send_all(fd, line, len, deadline, -1);
	free(line);
	if (sret && sret != -EPIPE && sret != -ECONNRESET) {
		close(fd);
		return sret;
	}
	/* Even when the send broke, the server may have said why before it
	 * closed ("too many control clients"): read that. */
	ret = read_line(fd, deadline, &in, &inlen);
	close(fd);
	if (ret)
		return sret ? sret : ret;
	rep = json_loadb(in, inlen, 0, NULL);
	free(in);
	if (!json_is_object(rep)) {
		json_decref(rep);
		return -EPROTO;
	}
	*reply = rep;
	return 0;
}
