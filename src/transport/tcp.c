/* SPDX-License-Identifier: MIT */
/*
 * The tcp transport: one TCP connection per channel.
 *
 * Send modes (opts.mode; the first is the default):
 *   writev  the heads and data iovecs of all records of one send call are
 *           gathered into arrays of up to IOV_MAX iovecs (opts.max_iov if
 *           set; heads count as iovecs), one sendmsg() per array.
 *   write   one send() per record head and one per data iovec: the
 *           deliberate baseline of the write-vs-writev measurement (do not
 *           batch it).
 *   uring   the same arrays as writev, each carried by an IORING_OP_SENDMSG
 *           SQE; up to TCP_URING_DEPTH of them are linked per
 *           io_uring_enter. send() submits and reaps all its completions
 *           before it returns, so nothing references the caller's data
 *           afterwards and flush has nothing to wait for (ops.flush = NULL).
 * send()/sendmsg() with MSG_NOSIGNAL stand for write()/writev(): they are
 * the same system calls with flags, and a library must not let a peer that
 * went away kill the process with SIGPIPE.
 *
 * Receive (every mode): recvmsg(MSG_DONTWAIT) scatters straight into the
 * caller's iovecs (the standby's staging slots: no bounce buffer); when the
 * socket is empty, poll() on the socket and the channel's wake-up eventfd,
 * bounded by the first-byte idle timeout until a byte of the call has
 * arrived and by the stall timeout after that.
 *
 * Wake-ups: ftr_chan_shutdown() writes the channel's eventfd (a receiver in
 * poll() wakes; the eventfd is never read, so it stays readable and no later
 * wait can miss it) and calls shutdown(SHUT_RDWR), which wakes a sender
 * blocked inside sendmsg() or waiting for io_uring completions (its sends
 * fail with EPIPE at once). ftr_listener_shutdown() writes the listener's
 * eventfd, which accept() polls together with the listening socket.
 *
 * Sends block in the kernel (fewer system calls than poll + retry); a peer
 * that accepts no byte for the stall timeout makes send return -ETIMEDOUT
 * (SO_SNDTIMEO for write/writev; for uring, no completion and no newly
 * acknowledged byte for one to two stall periods). After any send error
 * the stream may hold part of a record: the channel is only good for close.
 *
 * ftr_chan_close() must not race with other calls on the channel: shut it
 * down, join the threads that use it, then close.
 */
#define FTR_LOG_PREFIX "tcp"

#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked, TCP_NODELAY */
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#ifdef FTREPL_HAVE_URING
#include <liburing.h>
#endif

#include "transport/transport_impl.h"

#ifndef IOV_MAX
#define IOV_MAX 1024 /* UIO_MAXIOV */
#endif

#define TCP_BACKLOG 64
/* Linked SENDMSG SQEs per io_uring_enter (FACTS.md: 8 per submit). */
#define TCP_URING_DEPTH 8
/* Iovecs copied to patch a partly filled first entry on receive. */
#define TCP_RX_WIN 64
/*
 * SO_SNDBUF/SO_RCVBUF in bytes, 0 = leave the kernel's autotuning alone.
 * Measured on loopback (1 GiB of 1 MiB records): explicit sizes up to
 * net.core.[rw]mem_max brought nothing over autotuning (which grows the
 * receive buffer to tcp_rmem[2], 32 MiB here, past rmem_max) and fixed
 * sizes disable that growth. Override with -DFTR_TCP_SOCKBUF=N to measure.
 */
#ifndef FTR_TCP_SOCKBUF
#define FTR_TCP_SOCKBUF 0
#endif

enum tcp_mode {
	TCP_WRITEV,
	TCP_WRITE,
	TCP_URING,
};

static const char *const tcp_modes[] = {
	[TCP_WRITEV] = "writev",
	[TCP_WRITE] = "write",
#ifdef FTREPL_HAVE_URING
	[TCP_URING] = "uring",
#endif
	NULL,
};

struct tcp_chan {
	struct ftr_chan c;
	int fd;
	int wake_fd;		/* eventfd written by shutdown, never read */
	enum tcp_mode mode;
	int iov_cap;		/* iovecs per send syscall / per SQE */
	int sndtimeo_ms;	/* stall timeout applied as SO_SNDTIMEO (send_lock) */
	struct iovec *txv;	/* writev: iov_cap entries; uring: DEPTH * iov_cap */
#ifdef FTREPL_HAVE_URING
	bool ring_ready;
	bool ring_broken;	/* io_uring_enter failed: every later send fails */
	struct io_uring ring;
	struct msghdr msg[TCP_URING_DEPTH];
	size_t left[TCP_URING_DEPTH];	/* bytes of msg[i] not yet sent */
	int res[TCP_URING_DEPTH];	/* completion result of msg[i] */
#endif
};

struct tcp_listener {
	struct ftr_listener l;
	int fd;
	int wake_fd;
	enum tcp_mode mode;
	int iov_cap;
};

static inline struct tcp_chan *to_tcp(struct ftr_chan *c)
{
	return container_of(c, struct tcp_chan, c);
}

static inline struct tcp_listener *to_tcp_listener(struct ftr_listener *l)
{
	return container_of(l, struct tcp_listener, l);
}

/* Counters have one writer (see transport.c) and readers in any thread. */
static inline void stat_add(uint64_t *p, uint64_t n)
{
	__atomic_store_n(p, *p + n, __ATOMIC_RELAXED);
}

static inline int stall_ms(const struct ftr_chan *c)
{
	return __atomic_load_n(&c->stall_ms, __ATOMIC_RELAXED);
}

static inline bool is_shut(struct ftr_chan *c)
{
	return atomic_load(&c->shut);
}

/* ---- small helpers ------------------------------------------------------- */

/* Milliseconds left until end_ms (CLOCK_MONOTONIC); -1 stays "forever". */
static int ms_left(int timeout_ms, uint64_t end_ms)
{
	uint64_t now;

	if (timeout_ms < 0)
		return -1;
	now = ftr_now_ms();
	return now >= end_ms ? 0 : (int)FTR_MIN(end_ms - now, (uint64_t)INT_MAX);
}

/*
 * Waits until fd has one of events (or an error/hangup, which the next I/O
 * call reports) or wake_fd becomes readable. Returns 0, -ETIME when
 * timeout_ms (-1 = forever) runs out, -ESHUTDOWN on a wake-up, -errno.
 */
static int wait_fd(int fd, int wake_fd, short events, int timeout_ms, uint64_t *nsys)
{
	struct pollfd p[2] = {
		{ .fd = fd, .events = events },
		{ .fd = wake_fd, .events = POLLIN },
	};
	uint64_t end = ftr_now_ms() + (uint64_t)FTR_MAX(timeout_ms, 0);
	int left = timeout_ms;

	for (;;) {
		int n = poll(p, 2, left);

		if (nsys)
			stat_add(nsys, 1);
		if (n > 0)
			return p[1].revents ? -ESHUTDOWN : 0;
		if (n == 0)
			return -ETIME;
		if (errno != EINTR)
			return -errno;
		left = ms_left(timeout_ms, end);
	}
}

static int set_int_opt(int fd, int level, int name, int val)
{
	return setsockopt(fd, level, name, &val, sizeof(val)) ? -errno : 0;
}

/* Buffer sizes must be set before connect()/listen() to take effect on the
 * window scale; accepted sockets inherit the listener's. */
static void tune_bufs(int fd)
{
	if (FTR_TCP_SOCKBUF > 0) {
		set_int_opt(fd, SOL_SOCKET, SO_SNDBUF, FTR_TCP_SOCKBUF);
		set_int_opt(fd, SOL_SOCKET, SO_RCVBUF, FTR_TCP_SOCKBUF);
	}
}

static void format_peer(const struct sockaddr *sa, socklen_t len, char *buf, size_t n)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		ftr_strlcpy(buf, "tcp:?", n);
		return;
	}
	snprintf(buf, n, sa->sa_family == AF_INET6 ? "tcp:[%s]:%s" : "tcp:%s:%s", host, serv);
}

static int resolve(const char *host, uint16_t port, int flags, struct addrinfo **res)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = flags | AI_NUMERICSERV,
	};
	char serv[8];
	int ret;

	snprintf(serv, sizeof(serv), "%u", port);
	ret = getaddrinfo(host, serv, &hints, res);
	switch (ret) {
	case 0:
		return 0;
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	case EAI_MEMORY:
		return -ENOMEM;
	default:
		pr_err("cannot resolve \"%s\": %s", host, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
}

static enum tcp_mode mode_from_opts(const struct ftr_tp_opts *o)
{
	/* ftr_tp_check_opts() already refused unknown modes. */
	for (int i = 0; o && o->mode && tcp_modes[i]; i++)
		if (!strcmp(tcp_modes[i], o->mode))
			return (enum tcp_mode)i;
	return TCP_WRITEV;
}

static int iov_cap_from_opts(const struct ftr_tp_opts *o)
{
	unsigned m = o ? o->max_iov : 0;

	/* The kernel refuses more than IOV_MAX iovecs per call. */
	return m == 0 || m > IOV_MAX ? IOV_MAX : (int)m;
}

/* ---- channels --------------------------------------------------------------- */

/* Applies the stall timeout to blocking sends. Called with send_lock held. */
static void sync_sndtimeo(struct tcp_chan *t)
{
	int ms = stall_ms(&t->c);
	struct timeval tv = { 0, 0 }; /* zero = no limit */

	if (ms == t->sndtimeo_ms)
		return;
	if (ms > 0) {
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
	}
	if (!setsockopt(t->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		t->sndtimeo_ms = ms;
}

#ifdef FTREPL_HAVE_URING
static int uring_setup(struct tcp_chan *t)
{
	/* COOP_TASKRUN: completions are only needed while this thread waits
	 * in io_uring_enter anyway, so skip the IPIs (5.19+; else plain). */
	int ret = io_uring_queue_init(2 * TCP_URING_DEPTH, &t->ring, IORING_SETUP_COOP_TASKRUN);

	if (ret == -EINVAL)
		ret = io_uring_queue_init(2 * TCP_URING_DEPTH, &t->ring, 0);
	if (ret) {
		pr_err("io_uring unavailable for mode uring: %s", strerror(-ret));
		return ret;
	}
	t->ring_ready = true;
	return 0;
}
#endif

static void tcp_chan_free(struct tcp_chan *t)
{
#ifdef FTREPL_HAVE_URING
	if (t->ring_ready)
		io_uring_queue_exit(&t->ring);
#endif
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	if (t->fd >= 0)
		close(t->fd);
	free(t->txv);
	free(t);
}

/* Wraps a connected socket (owned from now on, closed on failure). */
static int tcp_chan_new(int fd, enum tcp_mode mode, int iov_cap, const struct sockaddr *peer,
			socklen_t peerlen, struct ftr_chan **out)
{
	struct tcp_chan *t;
	char name[sizeof(t->c.peer)];
	int ret;

	t = calloc(1, sizeof(*t));
	if (!t) {
		close(fd);
		return -ENOMEM;
	}
	t->fd = fd;
	t->mode = mode;
	t->iov_cap = iov_cap;
	t->sndtimeo_ms = 0;
	t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->wake_fd < 0) {
		ret = -errno;
		goto out_free;
	}
	ret = set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	if (ret)
		goto out_free;
	if (mode == TCP_WRITEV) {
		t->txv = calloc((size_t)iov_cap, sizeof(*t->txv));
	} else if (mode == TCP_URING) {
		t->txv = calloc((size_t)iov_cap * TCP_URING_DEPTH, sizeof(*t->txv));
	}
	if (mode != TCP_WRITE && !t->txv) {
		ret = -ENOMEM;
		goto out_free;
	}
#ifdef FTREPL_HAVE_URING
	if (mode == TCP_URING) {
		ret = uring_setup(t);
		if (ret)
			goto out_free;
	}
#endif
	format_peer(peer, peerlen, name, sizeof(name));
	ftr_chan_init(&t->c, &ftr_tcp_transport, name);
	if (mode != TCP_URING)
		sync_sndtimeo(t);
	*out = &t->c;
	return 0;

out_free:
	tcp_chan_free(t);
	return ret;
}

static void tcp_shutdown(struct ftr_chan *c)
{
	struct tcp_chan *t = to_tcp(c);
	uint64_t one = 1;

	/* c->shut is already set. The eventfd wakes poll() in a receiver;
	 * shutdown() wakes a sender asleep in sendmsg() or io_uring (its
	 * send fails with EPIPE) and fails every later socket call. A full
	 * eventfd counter (EAGAIN) is readable already. */
	if (write(t->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("%s: wake-up write failed: %s", c->peer, strerror(errno));
	shutdown(t->fd, SHUT_RDWR);
}

static void tcp_close(struct ftr_chan *c)
{
	struct tcp_chan *t = to_tcp(c);

	ftr_chan_fini(c);
	tcp_chan_free(t);
}

/* ---- listen / accept / connect ------------------------------------------- */

static int listen_one(const struct addrinfo *ai)
{
	int fd, ret;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	ret = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	/* Bind only the address given: "[::]" must not take IPv4 too. */
	if (!ret && ai->ai_family == AF_INET6)
		ret = set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	if (ret)
		goto out_close;
	tune_bufs(fd);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, TCP_BACKLOG)) {
		ret = -errno;
		goto out_close;
	}
	return fd;

out_close:
	close(fd);
	return ret;
}

static int tcp_listen(const struct ftr_tp_opts *o, const char *host, uint16_t port,
		      struct ftr_listener **out)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct tcp_listener *tl;
	struct addrinfo *res, *ai;
	int fd = -EADDRNOTAVAIL, ret;

	ret = resolve(host, port, AI_PASSIVE, &res);
	if (ret)
		return ret;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = listen_one(ai);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		pr_debug("listen on %s:%u: %s", host, port, strerror(-fd));
		return fd;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		ret = -errno;
		goto out_close;
	}
	tl = calloc(1, sizeof(*tl));
	if (!tl) {
		ret = -ENOMEM;
		goto out_close;
	}
	tl->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (tl->wake_fd < 0) {
		ret = -errno;
		free(tl);
		goto out_close;
	}
	tl->fd = fd;
	tl->mode = mode_from_opts(o);
	tl->iov_cap = iov_cap_from_opts(o);
	tl->l.ops = &ftr_tcp_transport;
	tl->l.port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						    : ((struct sockaddr_in *)&ss)->sin_port);
	atomic_init(&tl->l.shut, false);
	*out = &tl->l;
	return 0;

out_close:
	close(fd);
	return ret;
}

static int tcp_accept(struct ftr_listener *l, int timeout_ms, struct ftr_chan **out)
{
	struct tcp_listener *tl = to_tcp_listener(l);
	uint64_t end = ftr_now_ms() + (uint64_t)FTR_MAX(timeout_ms, 0);
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, ret;

	for (;;) {
		if (atomic_load(&l->shut))
			return -ESHUTDOWN;
		sl = sizeof(ss);
		/* Accepted sockets are blocking: O_NONBLOCK is not inherited. */
		fd = accept4(tl->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd >= 0)
			return tcp_chan_new(fd, tl->mode, tl->iov_cap, (struct sockaddr *)&ss, sl,
					    out);
		switch (errno) {
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			break;
		case EINTR:
		case ECONNABORTED: /* the peer gave up while queued */
		/* accept(2): pending network errors of that connection */
		case EPROTO:
		case ENETDOWN:
		case ENOPROTOOPT:
		case EHOSTDOWN:
		case ENONET:
		case EHOSTUNREACH:
		case ENETUNREACH:
			continue;
		default:
			return -errno;
		}
		/* Another accept may take the connection between poll() and
		 * accept4(): the listening socket is non-blocking, so that
		 * only costs one more round. */
		ret = wait_fd(tl->fd, tl->wake_fd, POLLIN, ms_left(timeout_ms, end), NULL);
		if (ret == -ETIME)
			return -EAGAIN;
		if (ret)
			return ret;
	}
}

static void tcp_listener_shutdown(struct ftr_listener *l)
{
	struct tcp_listener *tl = to_tcp_listener(l);
	uint64_t one = 1;

	if (write(tl->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("listener wake-up write failed: %s", strerror(errno));
}

static void tcp_listener_close(struct ftr_listener *l)
{
	struct tcp_listener *tl = to_tcp_listener(l);

	close(tl->fd);
	close(tl->wake_fd);
	free(tl);
}

/* Non-blocking connect bounded by timeout_ms. Returns 0 or -errno. */
static int connect_one(int fd, const struct addrinfo *ai, int timeout_ms)
{
	uint64_t end = ftr_now_ms() + (uint64_t)FTR_MAX(timeout_ms, 0);
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	socklen_t len = sizeof(int);
	int err, n;

	if (!connect(fd, ai->ai_addr, ai->ai_addrlen))
		return 0;
	if (errno != EINPROGRESS)
		return -errno;
	for (;;) {
		n = poll(&p, 1, ms_left(timeout_ms, end));
		if (n > 0)
			break;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len))
		return -errno;
	return -err;
}

static int tcp_connect(const struct ftr_tp_opts *o, const char *host, uint16_t port,
		       int timeout_ms, struct ftr_chan **out)
{
	uint64_t end = ftr_now_ms() + (uint64_t)FTR_MAX(timeout_ms, 0);
	struct addrinfo *res, *ai;
	int fd, ret;

	ret = resolve(host, port, 0, &res);
	if (ret)
		return ret;
	ret = -EHOSTUNREACH;
	/* Every address the name has, in order, within the one timeout. */
	for (ai = res; ai; ai = ai->ai_next) {
		int left = ms_left(timeout_ms, end);

		if (left == 0) {
			ret = -ETIMEDOUT;
			break;
		}
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		tune_bufs(fd);
		ret = connect_one(fd, ai, left);
		/* Back to blocking: sends sleep in the kernel (see the top). */
		if (!ret && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK))
			ret = -errno;
		if (!ret) {
			ret = tcp_chan_new(fd, mode_from_opts(o), iov_cap_from_opts(o),
					   ai->ai_addr, ai->ai_addrlen, out);
			break;
		}
		close(fd);
	}
	freeaddrinfo(res);
	if (ret)
		pr_debug("connect to %s:%u: %s", host, port, strerror(-ret));
	return ret;
}

/* ---- sending ------------------------------------------------------------------ */

/* Where gathering stands in the records of one send call. */
struct tx_cursor {
	const struct ftr_tx_rec *recs;
	int nrecs;
	int r;		/* current record */
	int part;	/* -1: its head, else its data[part] */
};

/* Describes the next pieces of the records, in stream order, in v[0..cap).
 * Returns how many (0: all described) and their total length in *len. */
static int gather(struct tx_cursor *g, struct iovec *v, int cap, size_t *len)
{
	size_t sum = 0;
	int n = 0;

	while (n < cap && g->r < g->nrecs) {
		const struct ftr_tx_rec *rec = &g->recs[g->r];
		struct iovec piece;

		if (g->part < 0)
			piece = (struct iovec){ (void *)rec->head, rec->head_len };
		else
			piece = rec->data[g->part];
		if (++g->part >= rec->ndata) {
			g->r++;
			g->part = -1;
		}
		if (!piece.iov_len)
			continue;
		v[n++] = piece;
		sum += piece.iov_len;
	}
	*len = sum;
	return n;
}

/* Drops the first n bytes from an iovec array we own (no payload copy). */
static void iov_consume(struct iovec **v, size_t *cnt, size_t n)
{
	while (n && *cnt) {
		if (n < (*v)->iov_len) {
			(*v)->iov_base = (char *)(*v)->iov_base + n;
			(*v)->iov_len -= n;
			return;
		}
		n -= (*v)->iov_len;
		(*v)++;
		(*cnt)--;
	}
}

/* Maps a failed send to what the caller sees. */
static int send_errno(struct tcp_chan *t, int err)
{
	if (is_shut(&t->c))
		return -ESHUTDOWN;
	if (err == EAGAIN || err == EWOULDBLOCK)
		return -ETIMEDOUT; /* SO_SNDTIMEO ran out without a byte taken */
	return -err;
}

static int send_buf(struct tcp_chan *t, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(t->fd, p, len, MSG_NOSIGNAL);

		stat_add(&t->c.st.tx_syscalls, 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return send_errno(t, errno);
		}
		stat_add(&t->c.st.tx_bytes, (uint64_t)n);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Mode write: one system call per head and per data iovec, by design. */
static int send_write(struct tcp_chan *t, const struct ftr_tx_rec *recs, int nrecs)
{
	int ret;

	for (int r = 0; r < nrecs; r++) {
		ret = send_buf(t, recs[r].head, recs[r].head_len);
		for (int i = 0; !ret && i < recs[r].ndata; i++)
			ret = send_buf(t, recs[r].data[i].iov_base, recs[r].data[i].iov_len);
		if (ret)
			return ret;
	}
	return 0;
}

static int send_iov(struct tcp_chan *t, struct iovec *v, int n, size_t len)
{
	struct msghdr msg = { .msg_iov = v, .msg_iovlen = (size_t)n };

	while (len) {
		ssize_t k = sendmsg(t->fd, &msg, MSG_NOSIGNAL);

		stat_add(&t->c.st.tx_syscalls, 1);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return send_errno(t, errno);
		}
		stat_add(&t->c.st.tx_bytes, (uint64_t)k);
		len -= (size_t)k;
		iov_consume(&msg.msg_iov, &msg.msg_iovlen, (size_t)k);
	}
	return 0;
}

/* Mode writev: every record of the call through as few sendmsg() as the
 * iovec limit allows. */
static int send_writev(struct tcp_chan *t, const struct ftr_tx_rec *recs, int nrecs)
{
	struct tx_cursor g = { .recs = recs, .nrecs = nrecs, .r = 0, .part = -1 };
	size_t len;
	int n, ret;

	while ((n = gather(&g, t->txv, t->iov_cap, &len)) > 0) {
		ret = send_iov(t, t->txv, n, len);
		if (ret)
			return ret;
	}
	return 0;
}

#ifdef FTREPL_HAVE_URING
static uint64_t tcp_bytes_acked(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return 0;
	return ti.tcpi_bytes_acked;
}

/* Queues msg[first..k) as one chain. The ring has room for 2 * DEPTH and
 * every chain is reaped before the next is queued: it cannot be full. */
static int uring_queue(struct tcp_chan *t, int first, int k)
{
	for (int i = first; i < k; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);

		if (!sqe) {
			t->ring_broken = true;
			return -EIO;
		}
		/*
		 * MSG_WAITALL matters: with it the kernel retries a short send
		 * itself and a send that still ends short fails, which breaks
		 * the link, so later SQEs of the chain complete -ECANCELED
		 * instead of sending their bytes ahead of the missing ones.
		 * Without it a short send would "succeed" and the next SQE
		 * would reorder the stream.
		 */
		io_uring_prep_sendmsg(sqe, t->fd, &t->msg[i], MSG_NOSIGNAL | MSG_WAITALL);
		io_uring_sqe_set_data64(sqe, (uint64_t)i);
		if (i + 1 < k)
			sqe->flags |= IOSQE_IO_LINK;
		t->res[i] = -ECANCELED;
	}
	return 0;
}

/*
 * Submits what is queued and reaps want completions into t->res[]. Never
 * returns while a request may still reference the caller's data.
 *
 * A long chain on a slow link may legitimately take longer than the stall
 * timeout, so a timed-out wait only counts as a stall when the peer also
 * acknowledged no byte (tcpi_bytes_acked) since the previous timed-out
 * wait: a stalled peer is detected after one to two stall periods, and the
 * fast path costs no extra system call. On a stall the sending side is shut
 * so the requests in flight fail at once (EPIPE); they are reaped, then
 * -ETIMEDOUT is returned.
 */
static int uring_reap(struct tcp_chan *t, int want)
{
	uint64_t acked = 0;
	bool have_acked = false, stalled = false;
	struct io_uring_cqe *cqe;
	int done = 0, ret;

	while (done < want) {
		struct __kernel_timespec ts, *tsp = NULL;
		int ms = stall_ms(&t->c);
		unsigned head, seen = 0;

		if (ms > 0 && !stalled) {
			ts.tv_sec = ms / 1000;
			ts.tv_nsec = (long long)(ms % 1000) * 1000000;
			tsp = &ts;
		}
		/* One io_uring_enter: submit and wait (IORING_FEAT_EXT_ARG). */
		ret = io_uring_submit_and_wait_timeout(&t->ring, &cqe, (unsigned)(want - done),
						       tsp, NULL);
		stat_add(&t->c.st.tx_syscalls, 1);
		io_uring_for_each_cqe(&t->ring, head, cqe) {
			uint64_t i = io_uring_cqe_get_data64(cqe);

			if (i < TCP_URING_DEPTH)
				t->res[i] = cqe->res;
			seen++;
		}
		io_uring_cq_advance(&t->ring, seen);
		done += (int)seen;
		if (seen) {
			have_acked = false; /* progress: restart the stall clock */
			continue;
		}
		if (ret >= 0 || ret == -EINTR)
			continue;
		if (ret == -ETIME) {
			uint64_t now = tcp_bytes_acked(t->fd);

			if (!have_acked || now != acked) {
				acked = now; /* first look, or slow but moving */
				have_acked = true;
				continue;
			}
		} else {
			/* io_uring_enter itself failed: not expected with so few
			 * requests. SQEs it did not take would go out with a later
			 * send, after bytes that follow them: the channel is done. */
			pr_err("%s: io_uring_enter: %s", t->c.peer, strerror(-ret));
			t->ring_broken = true;
			if (want - done <= (int)io_uring_sq_ready(&t->ring))
				return -EIO; /* none in flight */
		}
		/* Stalled or broken: make the requests in flight end now (EPIPE),
		 * then keep reaping them without a time limit. */
		shutdown(t->fd, SHUT_WR);
		stalled = true;
	}
	if (t->ring_broken)
		return -EIO;
	return stalled ? (is_shut(&t->c) ? -ESHUTDOWN : -ETIMEDOUT) : 0;
}

/* Sends msg[0..k) in order, resubmitting what a short send left. */
static int uring_send_chain(struct tcp_chan *t, int k)
{
	int first = 0, idle_rounds = 0;

	while (first < k) {
		int i, r, ret;

		ret = uring_queue(t, first, k);
		if (!ret)
			ret = uring_reap(t, k - first);
		if (ret)
			return ret;
		for (i = first; i < k; i++) {
			r = t->res[i];
			if (r > 0)
				stat_add(&t->c.st.tx_bytes, (uint64_t)r);
			if (r < 0 || (size_t)r != t->left[i])
				break;
		}
		if (i == k)
			return 0;
		/* Links make every SQE after an incomplete one -ECANCELED: any
		 * other result means bytes went out of order. */
		for (int j = i + 1; j < k; j++) {
			if (t->res[j] != -ECANCELED) {
				pr_err("%s: io_uring chain broke order (sqe %d: %d after %d)",
				       t->c.peer, j, t->res[j], r);
				return -EIO;
			}
		}
		if (r > 0) {
			iov_consume(&t->msg[i].msg_iov, &t->msg[i].msg_iovlen, (size_t)r);
			t->left[i] -= (size_t)r;
			idle_rounds = 0;
		} else if (r == -ECANCELED || r == -EINTR || r == -EAGAIN) {
			if (++idle_rounds > 3)
				return is_shut(&t->c) ? -ESHUTDOWN : -EIO;
		} else {
			return is_shut(&t->c) ? -ESHUTDOWN : (r ? r : -EPIPE);
		}
		first = i;
	}
	return 0;
}

/* Mode uring: chains of up to DEPTH SENDMSG requests over the same arrays
 * as writev; each chain is complete before the next is queued. */
static int send_uring(struct tcp_chan *t, const struct ftr_tx_rec *recs, int nrecs)
{
	struct tx_cursor g = { .recs = recs, .nrecs = nrecs, .r = 0, .part = -1 };
	int k, n, ret;

	if (t->ring_broken)
		return -EIO;
	for (;;) {
		for (k = 0; k < TCP_URING_DEPTH; k++) {
			struct iovec *v = t->txv + (size_t)k * (size_t)t->iov_cap;

			n = gather(&g, v, t->iov_cap, &t->left[k]);
			if (!n)
				break;
			t->msg[k] = (struct msghdr){ .msg_iov = v, .msg_iovlen = (size_t)n };
		}
		if (!k)
			return 0;
		ret = uring_send_chain(t, k);
		if (ret)
			return ret;
	}
}
#endif

static int tcp_send(struct ftr_chan *c, const struct ftr_tx_rec *recs, int nrecs)
{
	struct tcp_chan *t = to_tcp(c);

	switch (t->mode) {
	case TCP_WRITE:
		sync_sndtimeo(t);
		return send_write(t, recs, nrecs);
	case TCP_WRITEV:
		sync_sndtimeo(t);
		return send_writev(t, recs, nrecs);
#ifdef FTREPL_HAVE_URING
	case TCP_URING:
		return send_uring(t, recs, nrecs);
#endif
	default:
		return -EOPNOTSUPP;
	}
}

/* ---- receiving ---------------------------------------------------------------- */

/* The unread part of a caller's (const) iovec array. */
struct iov_cursor {
	const struct iovec *iov;
	int cnt;
	int idx;
	size_t off;	/* bytes already filled in iov[idx] */
};

static void cursor_advance(struct iov_cursor *cur, size_t n)
{
	while (cur->idx < cur->cnt) {
		size_t room = cur->iov[cur->idx].iov_len - cur->off;

		if (n < room) {
			cur->off += n;
			return;
		}
		n -= room;
		cur->idx++;
		cur->off = 0;
	}
}

/*
 * Points *out at iovecs for the unread part: the caller's own array when
 * the first entry is untouched, else a copy of a few entries in win with
 * the first one trimmed. Returns the count; *len gets their total.
 */
static int cursor_window(const struct iov_cursor *cur, struct iovec *win, struct iovec **out,
			 size_t *len)
{
	int n = FTR_MIN(cur->cnt - cur->idx, IOV_MAX);
	size_t sum = 0;

	if (!cur->off) {
		/* recvmsg() only reads the array: the cast drops nothing. */
		*out = (struct iovec *)(cur->iov + cur->idx);
	} else {
		n = FTR_MIN(n, TCP_RX_WIN);
		memcpy(win, cur->iov + cur->idx, (size_t)n * sizeof(*win));
		win[0].iov_base = (char *)win[0].iov_base + cur->off;
		win[0].iov_len -= cur->off;
		*out = win;
	}
	for (int i = 0; i < n; i++)
		sum += (*out)[i].iov_len;
	*len = sum;
	return n;
}

static int tcp_recv_iov(struct ftr_chan *c, const struct iovec *iov, int iovcnt, int first_idle_ms)
{
	struct tcp_chan *t = to_tcp(c);
	struct iov_cursor cur = { .iov = iov, .cnt = iovcnt, .idx = 0, .off = 0 };
	struct iovec win[TCP_RX_WIN];
	bool started = false, try_read = true;
	int ret;

	cursor_advance(&cur, 0); /* skip empty leading entries */
	while (cur.idx < cur.cnt) {
		struct msghdr msg = { 0 };
		size_t want;
		ssize_t n;

		if (is_shut(c))
			return -ESHUTDOWN;
		if (!try_read) {
			ret = wait_fd(t->fd, t->wake_fd, POLLIN,
				      started ? stall_ms(c) : first_idle_ms, &c->st.rx_syscalls);
			if (ret == -ETIME)
				return started ? -ETIMEDOUT : -EAGAIN;
			if (ret)
				return ret;
		}
		msg.msg_iovlen = (size_t)cursor_window(&cur, win, &msg.msg_iov, &want);
		n = recvmsg(t->fd, &msg, MSG_DONTWAIT);
		stat_add(&c->st.rx_syscalls, 1);
		if (n > 0) {
			stat_add(&c->st.rx_bytes, (uint64_t)n);
			cursor_advance(&cur, (size_t)n);
			started = true;
			/* Short: the socket is empty now, wait before reading. */
			try_read = (size_t)n == want;
			continue;
		}
		if (n == 0) {
			if (is_shut(c))
				return -ESHUTDOWN;
			return started ? -ECONNRESET : -ENOTCONN;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			try_read = false;
			continue;
		}
		return is_shut(c) ? -ESHUTDOWN : -errno;
	}
	return 0;
}

/* ---- the ops table ------------------------------------------------------------ */

const struct ftr_transport_ops ftr_tcp_transport = {
	.name = "tcp",
	.modes = tcp_modes,
	.listen = tcp_listen,
	.accept = tcp_accept,
	.listener_shutdown = tcp_listener_shutdown,
	.listener_close = tcp_listener_close,
	.connect = tcp_connect,
	.reg_mem = NULL,	/* TCP reads and writes any memory: bookkeeping only */
	.dereg_mem = NULL,
	.send = tcp_send,
	.flush = NULL,		/* every mode is done with the data when send returns */
	.recv_iov = tcp_recv_iov,
	.shutdown = tcp_shutdown,
	.close = tcp_close,
};
