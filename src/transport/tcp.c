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
 *           afterwards and flush has nothing to wait for.
 *   zerocopy  the arrays of writev, each sent with sendmsg(MSG_ZEROCOPY)
 *           on a socket with SO_ZEROCOPY (a kernel without it fails the
 *           channel: an explicit request stays strict). The kernel reads
 *           the pages after sendmsg returned and says when it is done on the
 *           socket's error queue: SO_EE_ORIGIN_ZEROCOPY notifications, each
 *           for the range of send ids ee_info..ee_data (one id per sendmsg
 *           that took bytes), with SO_EE_CODE_ZEROCOPY_COPIED when it copied
 *           after all. flush waits until every id is back. While the
 *           socket's last skb is still unsent the kernel extends one range
 *           over the next sends, so a busy stream may get its notification
 *           only when it pauses (at flush). ENOBUFS (the socket's optmem
 *           limit, which unreaped notifications hold, or RLIMIT_MEMLOCK for
 *           the pinned pages): reap, wait for one completion and retry, up
 *           to TCP_ZC_NOBUFS_TRIES times; then that array goes by copy.
 *   uring-zc  mode uring with IORING_OP_SENDMSG_ZC and
 *           IORING_SEND_ZC_REPORT_USAGE: a request's result CQE carries
 *           IORING_CQE_F_MORE and a later IORING_CQE_F_NOTIF CQE says the
 *           kernel is done with the pages (IORING_NOTIF_USAGE_ZC_COPIED in
 *           its res: it copied). send still reaps the results of each chain
 *           before returning (order, short sends); notifications are taken
 *           whenever the ring is entered, and flush waits for all of them.
 * In both zero-copy modes the record heads are copied into a per-channel
 * arena (callers may reuse heads when send returns, the kernel reads them
 * until the completion); the arena is recycled only when no zero-copy send
 * is outstanding, so filling it waits for every completion. A head larger
 * than the arena goes by copy.
 *
 * Zero-copy fallback: on loopback and veth the kernel copies every send
 * anyway (FACTS.md) and zero copy only adds bookkeeping. When the first
 * TCP_ZC_WARMUP (or more: they come in ranges) completions of a channel
 * all say "copied", the channel logs it once (info) and sends with writev
 * (zerocopy) or uring (uring-zc) for the rest of its life (stats:
 * zc_fallback = 1); sends made before still complete and flush still
 * waits for them. opts.zc_no_fallback, or
 * FTREPL_ZC_FALLBACK=0 in the environment, keeps zero copy (tests,
 * benchmarks). Counters: ftr_chan_stats.zc_* and opts.zc_totals.
 *
 * Who reaps the error queue (zerocopy): the sending thread, in send (once
 * TCP_ZC_REAP_AT sends are outstanding, every TCP_ZC_REAP_EVERY sends) and
 * in flush, and also the receiving
 * thread: a queued notification makes poll() report POLLERR, which would
 * otherwise wake a receiver waiting for data again and again. Both read
 * under zc_lock; a receiver that reaped writes zc_evfd, which a sender
 * waiting for completions polls, so no wake-up is lost. uring-zc
 * notifications are in the ring, which only the sending thread enters.
 *
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
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <linux/errqueue.h> /* struct sock_extended_err, SO_EE_ORIGIN_ZEROCOPY */
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
#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif
#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif
#ifndef SO_EE_CODE_ZEROCOPY_COPIED
#define SO_EE_CODE_ZEROCOPY_COPIED 1
#endif
#ifdef FTREPL_HAVE_URING
/* Linux 6.2 uapi that liburing 2.3 (Debian 12) lacks (FACTS.md). */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif
#endif

#define TCP_BACKLOG 64
/* Linked SENDMSG SQEs per io_uring_enter (FACTS.md: 8 per submit). */
#define TCP_URING_DEPTH 8
/* Iovecs copied to patch a partly filled first entry on receive. */
#define TCP_RX_WIN 64
/* Zero copy: completions looked at before deciding to fall back. */
#define TCP_ZC_WARMUP 64
/* Zero copy: bytes of record heads copied per channel (see the top). */
#define TCP_ZC_ARENA (256u << 10)
/* zerocopy: outstanding sends before send() reaps the error queue, and
 * then sends between two reaps (a busy stream's ids share one range that
 * completes only when it pauses: most reaps there find nothing). */
#define TCP_ZC_REAP_AT 32
#define TCP_ZC_REAP_EVERY 8
/* zerocopy: ENOBUFS retries (each after a completion) before copying. */
#define TCP_ZC_NOBUFS_TRIES 8
/* Longest single sleep of a completion wait: io_uring cannot also wait for
 * the wake-up eventfd, so uring-zc sees a shutdown between slices. */
#define TCP_ZC_SLICE_MS 100
/* uring-zc: CQ ring size, and notifications outstanding before a chain
 * waits for some (room for them plus a chain's results and notifications). */
#define TCP_URING_ZC_CQ 256
#define TCP_URING_ZC_INFLIGHT 128
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

/* The uring modes come last: without liburing the list simply ends early. */
enum tcp_mode {
	TCP_WRITEV,
	TCP_WRITE,
	TCP_ZEROCOPY,
	TCP_URING,
	TCP_URING_ZC,
};

static const char *const tcp_modes[] = {
	[TCP_WRITEV] = "writev",
	[TCP_WRITE] = "write",
	[TCP_ZEROCOPY] = "zerocopy",
#ifdef FTREPL_HAVE_URING
	[TCP_URING] = "uring",
	[TCP_URING_ZC] = "uring-zc",
#endif
	NULL,
};

/* What a channel takes from ftr_tp_opts (a listener keeps it for accept). */
struct tcp_cfg {
	enum tcp_mode mode;
	int iov_cap;
	bool zc_keep;			/* never fall back */
	struct ftr_zc_totals *totals;	/* optional, the caller's */
};

struct tcp_chan {
	struct ftr_chan c;
	int fd;
	int wake_fd;		/* eventfd written by shutdown, never read */
	enum tcp_mode mode0;	/* the mode asked for */
	enum tcp_mode mode;	/* the mode sending now (send_lock; may fall back) */
	int iov_cap;		/* iovecs per send syscall / per SQE */
	int sndtimeo_ms;	/* stall timeout applied as SO_SNDTIMEO (send_lock) */
	struct iovec *txv;	/* writev, zerocopy: iov_cap entries; uring: DEPTH * iov_cap */
	/* Zero copy (modes zerocopy, uring-zc). Expected completions are
	 * c.st.zc_sends, reaped ones c.st.zc_completions. */
	bool zc_on;		/* still sending with zero copy (send_lock) */
	bool zc_keep;
	bool zc_decided;	/* the warm-up verdict is taken (send_lock) */
	bool zc_lock_ready;
	pthread_mutex_t zc_lock; /* zerocopy: error-queue reading, either thread */
	int zc_evfd;		/* zerocopy: written by a receiver that reaped */
	unsigned zc_unreaped;	/* zerocopy: sends since send() last reaped */
	unsigned char *arena;	/* copies of record heads (send_lock) */
	size_t arena_used;
	struct ftr_zc_totals *zc_totals;
#ifdef FTREPL_TEST_HOOKS
	unsigned test_nobufs;	/* FTREPL_TEST_ZC_ENOBUFS: every Nth zc sendmsg fails */
	unsigned long test_calls;
#endif
#ifdef FTREPL_HAVE_URING
	bool ring_ready;
	bool ring_broken;	/* io_uring_enter failed: every later send fails */
	struct io_uring ring;
	struct msghdr msg[TCP_URING_DEPTH];
	bool copy[TCP_URING_DEPTH];	/* uring-zc: msg[i] goes by copy (a big head) */
	size_t left[TCP_URING_DEPTH];	/* bytes of msg[i] not yet sent */
	int res[TCP_URING_DEPTH];	/* completion result of msg[i] */
#endif
};

struct tcp_listener {
	struct ftr_listener l;
	int fd;
	int wake_fd;
	struct tcp_cfg cfg;
};

static inline struct tcp_chan *to_tcp(struct ftr_chan *c)
{
	return container_of(c, struct tcp_chan, c);
}

static inline struct tcp_listener *to_tcp_listener(struct ftr_listener *l)
{
	return container_of(l, struct tcp_listener, l);
}

/* ---- small helpers ------------------------------------------------------- */

/*
 * Waits until fd has one of events (or an error/hangup, which the next I/O
 * call reports) or wake_fd becomes readable. Returns 0 (fd's revents in
 * *revents when not NULL), -ETIME when timeout_ms (-1 = forever) runs out,
 * -ESHUTDOWN on a wake-up, -errno.
 */
static int wait_fd(int fd, int wake_fd, short events, int timeout_ms, uint64_t *nsys,
		   short *revents)
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
			ftr_stat_add(nsys, 1);
		if (n > 0 && revents)
			*revents = p[0].revents;
		if (n > 0)
			return p[1].revents ? -ESHUTDOWN : 0;
		if (n == 0)
			return -ETIME;
		if (errno != EINTR)
			return -errno;
		left = ftr_ms_left(timeout_ms, end);
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

static struct tcp_cfg cfg_from_opts(const struct ftr_tp_opts *o)
{
	const char *env = getenv("FTREPL_ZC_FALLBACK");
	unsigned m = o ? o->max_iov : 0;

	return (struct tcp_cfg){
		.mode = mode_from_opts(o),
		/* The kernel refuses more than IOV_MAX iovecs per call. */
		.iov_cap = m == 0 || m > IOV_MAX ? IOV_MAX : (int)m,
		.zc_keep = (o && o->zc_no_fallback) || (env && !strcmp(env, "0")),
		.totals = o ? o->zc_totals : NULL,
	};
}

static inline bool is_uring_mode(enum tcp_mode m)
{
	return m == TCP_URING || m == TCP_URING_ZC;
}

/* ---- channels --------------------------------------------------------------- */

/* Applies the stall timeout to blocking sends. Called with send_lock held. */
static void sync_sndtimeo(struct tcp_chan *t)
{
	int ms = ftr_chan_stall_ms(&t->c);
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
static int uring_init(struct tcp_chan *t, unsigned flags)
{
	struct io_uring_params p = { .flags = flags };

	if (t->mode0 == TCP_URING_ZC) {
		/* notifications outlive their chain: room for them */
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = TCP_URING_ZC_CQ;
	}
	return io_uring_queue_init_params(2 * TCP_URING_DEPTH, &t->ring, &p);
}

static int uring_setup(struct tcp_chan *t)
{
	const char *name = tcp_modes[t->mode0];
	struct io_uring_probe *probe;
	bool zc_ok;
	/* COOP_TASKRUN: completions are only needed while this thread waits
	 * in io_uring_enter anyway, so skip the IPIs (5.19+; else plain). */
	int ret = uring_init(t, IORING_SETUP_COOP_TASKRUN);

	if (ret == -EINVAL)
		ret = uring_init(t, 0);
	if (ret) {
		pr_err("io_uring unavailable for mode %s: %s", name, strerror(-ret));
		return ret;
	}
	t->ring_ready = true;
	if (t->mode0 != TCP_URING_ZC)
		return 0;
	probe = io_uring_get_probe_ring(&t->ring);
	zc_ok = probe && io_uring_opcode_supported(probe, IORING_OP_SENDMSG_ZC);
	if (probe)
		io_uring_free_probe(probe);
	if (!zc_ok) {
		pr_err("io_uring here has no SENDMSG_ZC (Linux 6.1+; usage reports 6.2+) "
		       "for mode %s", name);
		return -EOPNOTSUPP;
	}
	return 0;
}
#endif

/* Mode zerocopy: SO_ZEROCOPY, the lock and eventfd of error-queue reaping. */
static int zerocopy_setup(struct tcp_chan *t)
{
	int ret = set_int_opt(t->fd, SOL_SOCKET, SO_ZEROCOPY, 1);

	if (ret) {
		pr_err("SO_ZEROCOPY refused (%s): mode zerocopy needs Linux 4.14+",
		       strerror(-ret));
		return ret;
	}
	t->zc_evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->zc_evfd < 0)
		return -errno;
	ret = -pthread_mutex_init(&t->zc_lock, NULL);
	if (ret)
		return ret;
	t->zc_lock_ready = true;
	return 0;
}

static void tcp_chan_free(struct tcp_chan *t)
{
#ifdef FTREPL_HAVE_URING
	if (t->ring_ready)
		io_uring_queue_exit(&t->ring);
#endif
	if (t->zc_lock_ready)
		pthread_mutex_destroy(&t->zc_lock);
	if (t->zc_evfd >= 0)
		close(t->zc_evfd);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	if (t->fd >= 0)
		close(t->fd);
	free(t->arena);
	free(t->txv);
	free(t);
}

/* Wraps a connected socket (owned from now on, closed on failure). */
static int tcp_chan_new(int fd, const struct tcp_cfg *cfg, const struct sockaddr *peer,
			socklen_t peerlen, struct ftr_chan **out)
{
	enum tcp_mode mode = cfg->mode;
	struct tcp_chan *t;
	char name[sizeof(t->c.peer)];
	int ret;

	t = calloc(1, sizeof(*t));
	if (!t) {
		close(fd);
		return -ENOMEM;
	}
	t->fd = fd;
	t->mode0 = t->mode = mode;
	t->iov_cap = cfg->iov_cap;
	t->sndtimeo_ms = 0;
	t->zc_on = mode == TCP_ZEROCOPY || mode == TCP_URING_ZC;
	t->zc_keep = cfg->zc_keep;
	t->zc_totals = cfg->totals;
	t->zc_evfd = -1;
	t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->wake_fd < 0) {
		ret = -errno;
		goto out_free;
	}
	ret = set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	if (ret)
		goto out_free;
	if (mode == TCP_WRITEV || mode == TCP_ZEROCOPY)
		t->txv = calloc((size_t)t->iov_cap, sizeof(*t->txv));
	else if (is_uring_mode(mode))
		t->txv = calloc((size_t)t->iov_cap * TCP_URING_DEPTH, sizeof(*t->txv));
	if (t->zc_on)
		t->arena = malloc(TCP_ZC_ARENA);
	if ((mode != TCP_WRITE && !t->txv) || (t->zc_on && !t->arena)) {
		ret = -ENOMEM;
		goto out_free;
	}
	if (mode == TCP_ZEROCOPY) {
		ret = zerocopy_setup(t);
		if (ret)
			goto out_free;
	}
#ifdef FTREPL_TEST_HOOKS
	if (t->zc_on && getenv("FTREPL_TEST_ZC_ENOBUFS"))
		t->test_nobufs = (unsigned)strtoul(getenv("FTREPL_TEST_ZC_ENOBUFS"), NULL, 10);
#endif
#ifdef FTREPL_HAVE_URING
	if (is_uring_mode(mode)) {
		ret = uring_setup(t);
		if (ret)
			goto out_free;
	}
#endif
	format_peer(peer, peerlen, name, sizeof(name));
	ftr_chan_init(&t->c, &ftr_tcp_transport, name);
	if (!is_uring_mode(mode))
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
	tl->cfg = cfg_from_opts(o);
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
			return tcp_chan_new(fd, &tl->cfg, (struct sockaddr *)&ss, sl, out);
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
		ret = wait_fd(tl->fd, tl->wake_fd, POLLIN, ftr_ms_left(timeout_ms, end), NULL, NULL);
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
		n = poll(&p, 1, ftr_ms_left(timeout_ms, end));
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
	struct tcp_cfg cfg = cfg_from_opts(o);
	struct addrinfo *res, *ai;
	int fd, ret;

	ret = resolve(host, port, 0, &res);
	if (ret)
		return ret;
	ret = -EHOSTUNREACH;
	/* Every address the name has, in order, within the one timeout. */
	for (ai = res; ai; ai = ai->ai_next) {
		int left = ftr_ms_left(timeout_ms, end);

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
			ret = tcp_chan_new(fd, &cfg, ai->ai_addr, ai->ai_addrlen, out);
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

/*
 * gather() for a zero-copy send: each head is copied into the arena, since
 * the kernel reads it after send returns. Stops before a head the arena
 * has no room for (0 with pieces left: wait for every completion, then
 * recycle the arena). A head larger than the whole arena is returned alone
 * and uncopied with *copy set: send that piece by copy.
 */
static int gather_zc(struct tcp_chan *t, struct tx_cursor *g, struct iovec *v, int cap,
		     size_t *len, bool *copy)
{
	size_t sum = 0;
	int n = 0;

	*copy = false;
	while (n < cap && g->r < g->nrecs) {
		const struct ftr_tx_rec *rec = &g->recs[g->r];
		struct iovec piece;

		if (g->part >= 0) {
			piece = rec->data[g->part];
		} else if (rec->head_len > TCP_ZC_ARENA) {
			if (n)
				break;
			piece = (struct iovec){ (void *)rec->head, rec->head_len };
			*copy = true;
		} else if (rec->head_len > TCP_ZC_ARENA - t->arena_used) {
			break;
		} else {
			piece = (struct iovec){ t->arena + t->arena_used, rec->head_len };
			if (rec->head_len)
				memcpy(piece.iov_base, rec->head, rec->head_len);
			t->arena_used += rec->head_len;
		}
		if (++g->part >= rec->ndata) {
			g->r++;
			g->part = -1;
		}
		if (!piece.iov_len)
			continue;
		v[n++] = piece;
		sum += piece.iov_len;
		if (*copy)
			break;
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
	if (ftr_chan_is_shut(&t->c))
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

		ftr_stat_add(&t->c.st.tx_syscalls, 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return send_errno(t, errno);
		}
		ftr_stat_add(&t->c.st.tx_bytes, (uint64_t)n);
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

		ftr_stat_add(&t->c.st.tx_syscalls, 1);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return send_errno(t, errno);
		}
		ftr_stat_add(&t->c.st.tx_bytes, (uint64_t)k);
		len -= (size_t)k;
		iov_consume(&msg.msg_iov, &msg.msg_iovlen, (size_t)k);
	}
	return 0;
}

/* Mode writev: every record of the call through as few sendmsg() as the
 * iovec limit allows (from where g stands). */
static int send_writev(struct tcp_chan *t, struct tx_cursor *g)
{
	size_t len;
	int n, ret;

	while ((n = gather(g, t->txv, t->iov_cap, &len)) > 0) {
		ret = send_iov(t, t->txv, n, len);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- zero copy: completions and fallback -------------------------------------- */

static inline uint64_t stat_get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void zc_add_sends(struct tcp_chan *t, uint64_t n)
{
	ftr_stat_add(&t->c.st.zc_sends, n);
	if (t->zc_totals)
		__atomic_fetch_add(&t->zc_totals->sends, n, __ATOMIC_RELAXED);
}

/* Called by one thread at a time (zc_lock for zerocopy, the sender for uring-zc). */
static void zc_add_done(struct tcp_chan *t, uint64_t n, uint64_t copied)
{
	ftr_stat_add(&t->c.st.zc_completions, n);
	ftr_stat_add(&t->c.st.zc_copied, copied);
	if (t->zc_totals) {
		__atomic_fetch_add(&t->zc_totals->completions, n, __ATOMIC_RELAXED);
		__atomic_fetch_add(&t->zc_totals->copied, copied, __ATOMIC_RELAXED);
	}
}

/* Zero-copy sends whose completion has not been reaped yet. */
static uint64_t zc_outstanding(const struct tcp_chan *t)
{
	uint64_t sent = stat_get(&t->c.st.zc_sends), done = stat_get(&t->c.st.zc_completions);

	/* uring-zc may see a notification before its request's result */
	return sent > done ? sent - done : 0;
}

/* The arena may be reused once the kernel is done with every send. */
static void zc_arena_recycle(struct tcp_chan *t)
{
	if (t->arena_used && !zc_outstanding(t))
		t->arena_used = 0;
}

/*
 * After TCP_ZC_WARMUP completions (sending thread, send_lock): if every one
 * was copied, zero copy buys nothing on this path (loopback, veth) and the
 * channel sends in the copying mode from now on. Decided once.
 */
static void zc_check_fallback(struct tcp_chan *t)
{
	uint64_t done, copied;

	if (!t->zc_on || t->zc_decided)
		return;
	if (t->zc_lock_ready)
		pthread_mutex_lock(&t->zc_lock);
	done = stat_get(&t->c.st.zc_completions);
	copied = stat_get(&t->c.st.zc_copied);
	if (t->zc_lock_ready)
		pthread_mutex_unlock(&t->zc_lock);
	if (done < TCP_ZC_WARMUP)
		return;
	t->zc_decided = true;
	if (t->zc_keep || copied < done)
		return;
	t->zc_on = false;
	t->mode = t->mode0 == TCP_URING_ZC ? TCP_URING : TCP_WRITEV;
	ftr_stat_add(&t->c.st.zc_fallback, 1);
	if (t->zc_totals)
		__atomic_fetch_add(&t->zc_totals->fallbacks, 1, __ATOMIC_RELAXED);
	pr_info("%s: the kernel copied all of the first %" PRIu64 " zero-copy sends "
		"(loopback or veth?): mode %s sends with %s from now on", t->c.peer, done,
		tcp_modes[t->mode0], tcp_modes[t->mode]);
}

/*
 * Reads the zero-copy notifications on the socket's error queue, never
 * blocking; zc_lock held. The sender stops as soon as nothing is
 * outstanding (saves the final EAGAIN call); the receiver (all) empties
 * the queue, since what is left there keeps poll() reporting POLLERR.
 * nsys counts the calls. Returns the completions found.
 */
static uint64_t errq_reap_locked(struct tcp_chan *t, uint64_t *nsys, bool all)
{
	uint64_t got = 0, copied = 0;

	while (all || zc_outstanding(t) > got) {
		union {
			char buf[CMSG_SPACE(sizeof(struct sock_extended_err) +
					    sizeof(struct sockaddr_in6))];
			struct cmsghdr align;
		} ctl;
		struct msghdr msg = { .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
		struct cmsghdr *cm;
		ssize_t n = recvmsg(t->fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);

		ftr_stat_add(nsys, 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;	/* EAGAIN: empty; other errors: the next send says */
		}
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			struct sock_extended_err ee;
			uint32_t cnt;

			if (!(cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) &&
			    !(cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_RECVERR))
				continue;
			memcpy(&ee, CMSG_DATA(cm), sizeof(ee));
			if (ee.ee_origin != SO_EE_ORIGIN_ZEROCOPY || ee.ee_errno)
				continue;
			/* send ids ee_info..ee_data, inclusive; 32 bits that wrap */
			cnt = ee.ee_data - ee.ee_info + 1;
			got += cnt;
			if (ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED)
				copied += cnt;
		}
	}
	if (got)
		zc_add_done(t, got, copied);
	return got;
}

/* The sending thread reaps (send_lock held). Returns the completions found. */
static uint64_t errq_reap_tx(struct tcp_chan *t)
{
	uint64_t got;

	pthread_mutex_lock(&t->zc_lock);
	got = errq_reap_locked(t, &t->c.st.tx_syscalls, false);
	pthread_mutex_unlock(&t->zc_lock);
	t->zc_unreaped = 0;
	zc_check_fallback(t);
	return got;
}

/* The receiving thread saw POLLERR: reap, and wake a sender waiting. */
static void errq_reap_rx(struct tcp_chan *t)
{
	uint64_t one = 1, got;

	pthread_mutex_lock(&t->zc_lock);
	got = errq_reap_locked(t, &t->c.st.rx_syscalls, true);
	pthread_mutex_unlock(&t->zc_lock);
	if (got && write(t->zc_evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("%s: zero-copy wake-up write failed: %s", t->c.peer, strerror(errno));
}

/* Milliseconds to sleep in a completion wait with the last progress at
 * last_ms; 0 = the stall timeout ran out. */
static int zc_wait_slice(struct tcp_chan *t, uint64_t last_ms)
{
	int ms = ftr_chan_stall_ms(&t->c);
	uint64_t el = ftr_now_ms() - last_ms;

	if (ms < 0)
		return TCP_ZC_SLICE_MS;
	if (el >= (uint64_t)ms)
		return 0;
	return (int)FTR_MIN((uint64_t)ms - el, (uint64_t)TCP_ZC_SLICE_MS);
}

/*
 * Mode zerocopy: waits until at most max sends are outstanding (send_lock
 * held). Bounded: -ETIMEDOUT when no completion comes for the stall
 * timeout, -ESHUTDOWN after ftr_chan_shutdown(), -EPIPE when the
 * connection is gone (POLLHUP) with sends still outstanding.
 */
static int errq_wait(struct tcp_chan *t, uint64_t max)
{
	uint64_t last = ftr_now_ms();
	bool hup = false;

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = t->fd, .events = 0 },	/* POLLERR: the error queue */
			{ .fd = t->wake_fd, .events = POLLIN },
			{ .fd = t->zc_evfd, .events = POLLIN },
		};
		uint64_t v;
		int left, n;

		if (errq_reap_tx(t))
			last = ftr_now_ms();
		if (zc_outstanding(t) <= max)
			return 0;
		if (ftr_chan_is_shut(&t->c))
			return -ESHUTDOWN;
		if (hup)
			return -EPIPE;
		left = zc_wait_slice(t, last);
		if (!left)
			return -ETIMEDOUT;
		n = poll(p, 3, left);
		ftr_stat_add(&t->c.st.tx_syscalls, 1);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0)
			continue;
		if (p[1].revents)
			return -ESHUTDOWN;
		/* the receiver reaped: drain before the re-check, never after */
		if (p[2].revents && read(t->zc_evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			return -errno;
		hup = p[0].revents & POLLHUP;
	}
}

/* One sendmsg(MSG_ZEROCOPY) (with the ENOBUFS test hook). */
static ssize_t zc_sendmsg(struct tcp_chan *t, const struct msghdr *msg)
{
#ifdef FTREPL_TEST_HOOKS
	if (t->test_nobufs && ++t->test_calls % t->test_nobufs == 0) {
		errno = ENOBUFS;
		return -1;
	}
#endif
	return sendmsg(t->fd, msg, MSG_NOSIGNAL | MSG_ZEROCOPY);
}

/* send_iov() with MSG_ZEROCOPY: the kernel may read v's memory until the
 * completion of each call that took bytes. */
static int send_iov_zc(struct tcp_chan *t, struct iovec *v, int n, size_t len)
{
	struct msghdr msg = { .msg_iov = v, .msg_iovlen = (size_t)n };
	int nobufs = 0, ret;

	while (len) {
		uint64_t out = zc_outstanding(t);
		ssize_t k;

		if (out >= TCP_ZC_REAP_AT && ++t->zc_unreaped >= TCP_ZC_REAP_EVERY)
			errq_reap_tx(t);
		k = zc_sendmsg(t, &msg);
		ftr_stat_add(&t->c.st.tx_syscalls, 1);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno != ENOBUFS)
				return send_errno(t, errno);
			/* Notifications not yet reaped hold the socket's optmem:
			 * wait for one more completion, then retry. */
			out = zc_outstanding(t);
			if (out && ++nobufs <= TCP_ZC_NOBUFS_TRIES) {
				ret = errq_wait(t, out - 1);
				if (ret)
					return ret;
				continue;
			}
			pr_debug("%s: MSG_ZEROCOPY keeps failing with ENOBUFS (%" PRIu64
				 " outstanding): %zu bytes go by copy", t->c.peer, out, len);
			return send_iov(t, msg.msg_iov, (int)msg.msg_iovlen, len);
		}
		if (k > 0)
			zc_add_sends(t, 1); /* one send id per call that took bytes */
		ftr_stat_add(&t->c.st.tx_bytes, (uint64_t)k);
		len -= (size_t)k;
		iov_consume(&msg.msg_iov, &msg.msg_iovlen, (size_t)k);
	}
	return 0;
}

/* Mode zerocopy: the arrays of writev, sent with MSG_ZEROCOPY; writev once
 * the channel has fallen back (even in the middle of a call). */
static int send_zerocopy(struct tcp_chan *t, const struct ftr_tx_rec *recs, int nrecs)
{
	struct tx_cursor g = { .recs = recs, .nrecs = nrecs, .r = 0, .part = -1 };
	size_t len;
	bool copy;
	int n, ret;

	for (;;) {
		if (!t->zc_on)
			return send_writev(t, &g);
		zc_arena_recycle(t);
		n = gather_zc(t, &g, t->txv, t->iov_cap, &len, &copy);
		if (n) {
			ret = copy ? send_iov(t, t->txv, n, len) : send_iov_zc(t, t->txv, n, len);
			if (ret)
				return ret;
			continue;
		}
		if (g.r >= g.nrecs)
			return 0;
		/* The arena is full of heads the kernel may still read. */
		ret = errq_wait(t, 0);
		if (ret)
			return ret;
	}
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
		if (t->zc_on && !t->copy[i]) {
			io_uring_prep_sendmsg_zc(sqe, t->fd, &t->msg[i], MSG_NOSIGNAL | MSG_WAITALL);
			sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
		} else {
			io_uring_prep_sendmsg(sqe, t->fd, &t->msg[i], MSG_NOSIGNAL | MSG_WAITALL);
		}
		io_uring_sqe_set_data64(sqe, (uint64_t)i);
		if (i + 1 < k)
			sqe->flags |= IOSQE_IO_LINK;
		t->res[i] = -ECANCELED;
	}
	return 0;
}

/*
 * Takes every CQE in the ring without entering the kernel: request results
 * into t->res[] (returns how many), uring-zc notifications into the
 * counters (a result with IORING_CQE_F_MORE announces one). *seen gets the
 * number of CQEs of any kind.
 */
static int uring_take(struct tcp_chan *t, unsigned *seen)
{
	uint64_t more = 0, notifs = 0, copied = 0;
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int results = 0;

	io_uring_for_each_cqe(&t->ring, head, cqe) {
		uint64_t i = io_uring_cqe_get_data64(cqe);

		n++;
		if (cqe->flags & IORING_CQE_F_NOTIF) {
			notifs++;
			if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED)
				copied++;
			continue;
		}
		if (cqe->flags & IORING_CQE_F_MORE)
			more++;
		if (i < TCP_URING_DEPTH)
			t->res[i] = cqe->res;
		results++;
	}
	io_uring_cq_advance(&t->ring, n);
	if (more)
		zc_add_sends(t, more);
	if (notifs)
		zc_add_done(t, notifs, copied);
	*seen = n;
	return results;
}

/*
 * Submits what is queued and reaps want results into t->res[]. Never
 * returns while a request may still reference the caller's data (uring-zc:
 * until its notification, which flush waits for).
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
		int ms = ftr_chan_stall_ms(&t->c);
		unsigned seen = 0;

		if (ms > 0 && !stalled) {
			ts.tv_sec = ms / 1000;
			ts.tv_nsec = (long long)(ms % 1000) * 1000000;
			tsp = &ts;
		}
		/* One io_uring_enter: submit and wait (IORING_FEAT_EXT_ARG). */
		ret = io_uring_submit_and_wait_timeout(&t->ring, &cqe, (unsigned)(want - done),
						       tsp, NULL);
		ftr_stat_add(&t->c.st.tx_syscalls, 1);
		done += uring_take(t, &seen);
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
	return stalled ? (ftr_chan_is_shut(&t->c) ? -ESHUTDOWN : -ETIMEDOUT) : 0;
}

/* Sends msg[0..k) in order, resubmitting what a short send left. */
/*
 * uring-zc: waits until at most max notifications are outstanding (the
 * sending thread, send_lock held). Bounded like errq_wait(): -ETIMEDOUT
 * when none comes for the stall timeout, -ESHUTDOWN after shutdown (seen
 * between slices of at most TCP_ZC_SLICE_MS).
 */
static int uring_zc_wait(struct tcp_chan *t, uint64_t max)
{
	uint64_t last = ftr_now_ms();

	for (;;) {
		struct __kernel_timespec ts;
		struct io_uring_cqe *cqe;
		uint64_t before = stat_get(&t->c.st.zc_completions);
		unsigned seen;
		int left, ret;

		uring_take(t, &seen);
		if (stat_get(&t->c.st.zc_completions) != before)
			last = ftr_now_ms();
		zc_check_fallback(t);
		if (zc_outstanding(t) <= max)
			return 0;
		if (ftr_chan_is_shut(&t->c))
			return -ESHUTDOWN;
		if (t->ring_broken)
			return -EIO;
		left = zc_wait_slice(t, last);
		if (!left)
			return -ETIMEDOUT;
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (long long)(left % 1000) * 1000000;
		ret = io_uring_wait_cqe_timeout(&t->ring, &cqe, &ts);
		ftr_stat_add(&t->c.st.tx_syscalls, 1);
		if (ret && ret != -ETIME && ret != -EINTR && ret != -EAGAIN) {
			pr_err("%s: io_uring_enter: %s", t->c.peer, strerror(-ret));
			t->ring_broken = true;
			return -EIO;
		}
	}
}

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
				ftr_stat_add(&t->c.st.tx_bytes, (uint64_t)r);
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
		} else if (r == -ECANCELED || r == -EINTR || r == -EAGAIN || r == -ENOBUFS) {
			if (++idle_rounds > 3)
				return ftr_chan_is_shut(&t->c) ? -ESHUTDOWN : -EIO;
			/* ENOBUFS: memory held until notifications come back */
			if (r == -ENOBUFS && (ret = uring_zc_wait(t, 0)))
				return ret;
		} else {
			return ftr_chan_is_shut(&t->c) ? -ESHUTDOWN : (r ? r : -EPIPE);
		}
		first = i;
	}
	return 0;
}

/* Mode uring: chains of up to DEPTH SENDMSG requests over the same arrays
 * as writev; each chain is complete before the next is queued. uring-zc:
 * SENDMSG_ZC with the heads in the arena, a bounded number of
 * notifications outstanding (the CQ ring must hold them). */
static int send_uring(struct tcp_chan *t, const struct ftr_tx_rec *recs, int nrecs)
{
	struct tx_cursor g = { .recs = recs, .nrecs = nrecs, .r = 0, .part = -1 };
	int k, n, ret;

	if (t->ring_broken)
		return -EIO;
	for (;;) {
		bool zc = t->zc_on;

		if (zc) {
			if (zc_outstanding(t) > TCP_URING_ZC_INFLIGHT) {
				ret = uring_zc_wait(t, TCP_URING_ZC_INFLIGHT / 2);
				if (ret)
					return ret;
			}
			zc_arena_recycle(t);
		}
		for (k = 0; k < TCP_URING_DEPTH; k++) {
			struct iovec *v = t->txv + (size_t)k * (size_t)t->iov_cap;

			t->copy[k] = false;
			if (zc)
				n = gather_zc(t, &g, v, t->iov_cap, &t->left[k], &t->copy[k]);
			else
				n = gather(&g, v, t->iov_cap, &t->left[k]);
			if (!n)
				break;
			t->msg[k] = (struct msghdr){ .msg_iov = v, .msg_iovlen = (size_t)n };
		}
		if (!k && g.r >= g.nrecs)
			return 0;
		if (!k) {
			/* The arena is full of heads the kernel may still read. */
			ret = uring_zc_wait(t, 0);
		} else {
			ret = uring_send_chain(t, k);
			if (!ret && zc)
				zc_check_fallback(t);
		}
		if (ret)
			return ret;
	}
}
#endif

/* Waits until the kernel is done with the data of every earlier send: the
 * zero-copy completions (the other modes are done when send returns). */
static int tcp_flush(struct ftr_chan *c)
{
	struct tcp_chan *t = to_tcp(c);
	int ret = 0;

	switch (t->mode0) {
	case TCP_ZEROCOPY:
		ret = errq_wait(t, 0);
		break;
#ifdef FTREPL_HAVE_URING
	case TCP_URING_ZC:
		ret = uring_zc_wait(t, 0);
		break;
#endif
	default:
		return 0;
	}
	if (!ret)
		t->arena_used = 0;
	return ret;
}

static int tcp_send(struct ftr_chan *c, const struct ftr_tx_rec *recs, int nrecs)
{
	struct tcp_chan *t = to_tcp(c);

	switch (t->mode) {
	case TCP_WRITE:
		sync_sndtimeo(t);
		return send_write(t, recs, nrecs);
	case TCP_WRITEV: {
		struct tx_cursor g = { .recs = recs, .nrecs = nrecs, .r = 0, .part = -1 };

		sync_sndtimeo(t);
		return send_writev(t, &g);
	}
	case TCP_ZEROCOPY:
		sync_sndtimeo(t);
		return send_zerocopy(t, recs, nrecs);
#ifdef FTREPL_HAVE_URING
	case TCP_URING:
	case TCP_URING_ZC:
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

		if (ftr_chan_is_shut(c))
			return -ESHUTDOWN;
		if (!try_read) {
			short rev = 0;

			ret = wait_fd(t->fd, t->wake_fd, POLLIN,
				      started ? ftr_chan_stall_ms(c) : first_idle_ms, &c->st.rx_syscalls, &rev);
			if (ret == -ETIME)
				return started ? -ETIMEDOUT : -EAGAIN;
			if (ret)
				return ret;
			/* zero-copy notifications, not data: reap them, or poll()
			 * would keep returning at once (see the top) */
			if ((rev & POLLERR) && t->mode0 == TCP_ZEROCOPY)
				errq_reap_rx(t);
		}
		msg.msg_iovlen = (size_t)cursor_window(&cur, win, &msg.msg_iov, &want);
		n = recvmsg(t->fd, &msg, MSG_DONTWAIT);
		ftr_stat_add(&c->st.rx_syscalls, 1);
		if (n > 0) {
			ftr_stat_add(&c->st.rx_bytes, (uint64_t)n);
			cursor_advance(&cur, (size_t)n);
			started = true;
			/* Short: the socket is empty now, wait before reading. */
			try_read = (size_t)n == want;
			continue;
		}
		if (n == 0) {
			if (ftr_chan_is_shut(c))
				return -ESHUTDOWN;
			return started ? -ECONNRESET : -ENOTCONN;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			try_read = false;
			continue;
		}
		return ftr_chan_is_shut(c) ? -ESHUTDOWN : -errno;
	}
	return 0;
}

/* The kernel paces the socket (TCP's internal pacing, or fq's). The rate
 * is a u64 since Linux 4.19; ~0 means no cap. */
static int tcp_set_pacing(struct ftr_chan *c, uint64_t bytes_per_s)
{
	struct tcp_chan *t = to_tcp(c);
	uint64_t rate = bytes_per_s ? bytes_per_s : ~0ull;

	if (setsockopt(t->fd, SOL_SOCKET, SO_MAX_PACING_RATE, &rate, sizeof(rate)) < 0)
		return -errno;
	return 0;
}

/* A loopback peer, or one at this end's own address (a connection to the
 * host's own address goes over loopback too). */
static bool tcp_peer_is_local(struct ftr_chan *c)
{
	struct sockaddr_storage me, peer;
	socklen_t ml = sizeof(me), pl = sizeof(peer);
	int fd = to_tcp(c)->fd;

	if (getpeername(fd, (struct sockaddr *)&peer, &pl) ||
	    getsockname(fd, (struct sockaddr *)&me, &ml))
		return false;
	if (ftr_addr_is_loopback((struct sockaddr *)&peer))
		return true;
	if (peer.ss_family != me.ss_family)
		return false;
	if (peer.ss_family == AF_INET)
		return ((struct sockaddr_in *)&peer)->sin_addr.s_addr ==
		       ((struct sockaddr_in *)&me)->sin_addr.s_addr;
	if (peer.ss_family == AF_INET6)
		return !memcmp(&((struct sockaddr_in6 *)&peer)->sin6_addr,
			       &((struct sockaddr_in6 *)&me)->sin6_addr, sizeof(struct in6_addr));
	return false;
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
	.flush = tcp_flush,	/* zero-copy modes: wait for the completions */
	.recv_iov = tcp_recv_iov,
	.shutdown = tcp_shutdown,
	.close = tcp_close,
	.set_pacing = tcp_set_pacing,
	.peer_is_local = tcp_peer_is_local,
};
