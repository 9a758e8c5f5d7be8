/* SPDX-License-Identifier: MIT */
/*
 * The generic half of the transports: the registry of backends by name,
 * option checks, and the public functions of <ftrepl/transport.h> that
 * every backend shares (locking, record framing, timeouts mapping, stats).
 *
 * A backend only moves bytes: it fills a const struct ftr_transport_ops
 * (transport_impl.h). Optional ops left NULL get the default here: reg_mem
 * is bookkeeping only, flush is a no-op (synchronous backends), anything
 * else returns -EOPNOTSUPP.
 *
 * Threading (see transport.h): one sender and one receiver may use a
 * channel at once; sends are serialized by send_lock; shutdown may come
 * from any thread. Nothing here is per-session global state: the registry
 * and the names list are constant once built.
 */
#define FTR_LOG_PREFIX "transport"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "transport/transport_impl.h"

/* ---- registry ------------------------------------------------------------ */

/* Every built backend, the default first. Optional backends register only
 * when they are compiled in. */
static const struct ftr_transport_ops *const ftr_registry[] = {
	&ftr_tcp_transport,
#ifdef FTREPL_HAVE_RDMA
	&ftr_rdma_transport,
#endif
};

static const char *ftr_registry_names[FTR_ARRAY_SIZE(ftr_registry) + 1];
static pthread_once_t ftr_registry_once = PTHREAD_ONCE_INIT;

static void registry_names_init(void)
{
	for (size_t i = 0; i < FTR_ARRAY_SIZE(ftr_registry); i++)
		ftr_registry_names[i] = ftr_registry[i]->name;
	ftr_registry_names[FTR_ARRAY_SIZE(ftr_registry)] = NULL;
}

const char *const *ftr_transport_names(void)
{
	pthread_once(&ftr_registry_once, registry_names_init);
	return ftr_registry_names;
}

const struct ftr_transport_ops *ftr_transport_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < FTR_ARRAY_SIZE(ftr_registry); i++)
		if (!strcmp(ftr_registry[i]->name, name))
			return ftr_registry[i];
	return NULL;
}

/* Writes "a, b, c" into buf (always NUL-terminated, truncated to fit). */
static void join_names(char *buf, size_t len, const char *const *names)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; names[i] && n < len; i++) {
		int w = snprintf(buf + n, len - n, "%s%s", i ? ", " : "", names[i]);

		if (w < 0)
			break;
		n += (size_t)w;
	}
}

static bool has_mode(const struct ftr_transport_ops *ops, const char *mode)
{
	for (size_t i = 0; ops->modes && ops->modes[i]; i++)
		if (!strcmp(ops->modes[i], mode))
			return true;
	return false;
}

int ftr_tp_check_opts(const struct ftr_tp_opts *opts, char *err, size_t errlen)
{
	const char *tname = opts && opts->transport ? opts->transport : ftr_registry[0]->name;
	const char *mode = opts ? opts->mode : NULL;
	const struct ftr_transport_ops *ops;
	char list[256];

	if (err && errlen)
		err[0] = '\0';
	ops = ftr_transport_find(tname);
	if (!ops) {
		if (err && errlen) {
			join_names(list, sizeof(list), ftr_transport_names());
			snprintf(err, errlen, "unknown transport \"%s\" (have: %s)", tname, list);
		}
		return -ENOENT;
	}
	if (mode && !has_mode(ops, mode)) {
		if (err && errlen) {
			if (ops->modes && ops->modes[0])
				join_names(list, sizeof(list), ops->modes);
			else
				ftr_strlcpy(list, "none", sizeof(list));
			snprintf(err, errlen, "%s has no mode \"%s\" (modes: %s)", tname, mode, list);
		}
		return -EINVAL;
	}
	return 0;
}

/* Resolves opts to a backend, logging why it cannot. */
static int resolve(const struct ftr_tp_opts *opts, const struct ftr_transport_ops **ops)
{
	char err[384];
	int ret;

	ret = ftr_tp_check_opts(opts, err, sizeof(err));
	if (ret) {
		pr_err("%s", err);
		return ret;
	}
	*ops = ftr_transport_find(opts && opts->transport ? opts->transport
							   : ftr_registry[0]->name);
	return 0;
}

/* ---- channel lifetime ---------------------------------------------------- */

#define FTR_DEFAULT_STALL_MS 10000

void ftr_chan_init(struct ftr_chan *c, const struct ftr_transport_ops *ops, const char *peer)
{
	c->ops = ops;
	pthread_mutex_init(&c->send_lock, NULL);
	c->stall_ms = FTR_DEFAULT_STALL_MS;
	atomic_init(&c->shut, false);
	ftr_strlcpy(c->peer, peer ? peer : "?", sizeof(c->peer));
	memset(&c->st, 0, sizeof(c->st));
}

void ftr_chan_fini(struct ftr_chan *c)
{
	pthread_mutex_destroy(&c->send_lock);
}

/* ---- listen / accept / connect ------------------------------------------ */

/* Large enough for any host name (NI_MAXHOST) and a bracketed IPv6 literal. */
#define FTR_HOST_MAX 1025

int ftr_tp_listen(const struct ftr_tp_opts *opts, const char *addr, struct ftr_listener **out)
{
	const struct ftr_transport_ops *ops;
	char host[FTR_HOST_MAX];
	uint16_t port;
	int ret;

	if (!addr || !out)
		return -EINVAL;
	ret = resolve(opts, &ops);
	if (ret)
		return ret;
	if (ftr_parse_hostport(addr, host, sizeof(host), &port)) {
		pr_err("bad listen address \"%s\" (want ADDR:PORT or [IPV6]:PORT)", addr);
		return -EINVAL;
	}
	if (!ops->listen)
		return -EOPNOTSUPP;
	return ops->listen(opts, host, port, out);
}

uint16_t ftr_listener_port(const struct ftr_listener *l)
{
	return l->port;
}

int ftr_tp_accept(struct ftr_listener *l, int timeout_ms, struct ftr_chan **out)
{
	if (!l || !out)
		return -EINVAL;
	if (atomic_load(&l->shut))
		return -ESHUTDOWN;
	if (!l->ops->accept)
		return -EOPNOTSUPP;
	return l->ops->accept(l, timeout_ms, out);
}

void ftr_listener_shutdown(struct ftr_listener *l)
{
	if (!l)
		return;
	/* Set the flag first: a backend's wake-up makes the waiter look at it. */
	atomic_store(&l->shut, true);
	if (l->ops->listener_shutdown)
		l->ops->listener_shutdown(l);
}

void ftr_listener_close(struct ftr_listener *l)
{
	if (l && l->ops->listener_close)
		l->ops->listener_close(l);
}

int ftr_tp_connect(const struct ftr_tp_opts *opts, const char *addr, int timeout_ms,
		   struct ftr_chan **out)
{
	const struct ftr_transport_ops *ops;
	char host[FTR_HOST_MAX];
	uint16_t port;
	int ret;

	if (!addr || !out)
		return -EINVAL;
	ret = resolve(opts, &ops);
	if (ret)
		return ret;
	if (ftr_parse_hostport(addr, host, sizeof(host), &port) || port == 0) {
		pr_err("bad address \"%s\" (want ADDR:PORT or [IPV6]:PORT)", addr);
		return -EINVAL;
	}
	if (!ops->connect)
		return -EOPNOTSUPP;
	return ops->connect(opts, host, port, timeout_ms, out);
}

/* ---- memory registration ------------------------------------------------- */

int ftr_chan_reg_mem(struct ftr_chan *c, void *addr, size_t len, unsigned flags,
		     struct ftr_mr **out)
{
	struct ftr_mr *mr;
	int ret;

	if (!c || !addr || !len || !out || !flags ||
	    (flags & ~(FTR_MR_SOURCE | FTR_MR_STAGING)))
		return -EINVAL;
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -ENOMEM;
	mr->chan = c;
	mr->addr = addr;
	mr->len = len;
	mr->flags = flags;
	if (c->ops->reg_mem) {
		ret = c->ops->reg_mem(c, mr);
		if (ret) {
			free(mr);
			return ret;
		}
	}
	*out = mr;
	return 0;
}

void ftr_mr_dereg(struct ftr_mr *mr)
{
	if (!mr)
		return;
	if (mr->chan->ops->dereg_mem)
		mr->chan->ops->dereg_mem(mr);
	free(mr);
}

/* ---- sending -------------------------------------------------------------- */

int ftr_chan_send(struct ftr_chan *c, const struct ftr_tx_rec *recs, int nrecs)
{
	int ret;

	if (!c || nrecs < 0 || (nrecs && !recs))
		return -EINVAL;
	for (int i = 0; i < nrecs; i++)
		if ((recs[i].head_len && !recs[i].head) || recs[i].ndata < 0 ||
		    (recs[i].ndata && !recs[i].data))
			return -EINVAL;
	if (!nrecs)
		return 0;
	if (atomic_load(&c->shut))
		return -ESHUTDOWN;
	if (!c->ops->send)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&c->send_lock);
	ret = c->ops->send(c, recs, nrecs);
	if (!ret)
		ftr_stat_add(&c->st.tx_records, (uint64_t)nrecs);
	pthread_mutex_unlock(&c->send_lock);
	return ret;
}

int ftr_chan_set_pacing(struct ftr_chan *c, uint64_t bytes_per_s)
{
	if (!c)
		return -EINVAL;
	if (!c->ops->set_pacing)
		return -EOPNOTSUPP;
	return c->ops->set_pacing(c, bytes_per_s);
}

bool ftr_addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

bool ftr_chan_peer_is_local(struct ftr_chan *c)
{
	return c && c->ops->peer_is_local && c->ops->peer_is_local(c);
}

int ftr_chan_flush(struct ftr_chan *c)
{
	int ret = 0;

	if (!c)
		return -EINVAL;
	if (!c->ops->flush)
		return 0; /* synchronous backend: nothing is ever in flight */
	pthread_mutex_lock(&c->send_lock);
	ret = c->ops->flush(c);
	pthread_mutex_unlock(&c->send_lock);
	return ret;
}

void ftr_chan_set_stall_timeout(struct ftr_chan *c, int ms)
{
	/* Read by the backend in the sending and receiving threads. */
	__atomic_store_n(&c->stall_ms, ms < 0 ? -1 : FTR_MAX(ms, 1), __ATOMIC_RELAXED);
}

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t sum = 0;

	for (int i = 0; i < n; i++)
		sum += iov[i].iov_len;
	return sum;
}

int ftr_chan_send_rec(struct ftr_chan *c, const struct ftr_rec *rec, const struct iovec *data,
		      int ndata)
{
	unsigned char head[FTR_WIRE_MAX_ENCODED];
	struct ftr_tx_rec tx;
	ssize_t n;

	if (!c || !rec || ndata < 0 || (ndata && !data))
		return -EINVAL;
	/* A data part that disagrees with data_len would desynchronize the
	 * stream for the reader: refuse it here rather than at the far end. */
	if (iov_total(data, ndata) != rec->hdr.data_len)
		return -EINVAL;
	n = ftr_wire_encode(head, sizeof(head), rec);
	if (n < 0)
		return (int)n;
	tx = (struct ftr_tx_rec){
		.head = head,
		.head_len = (size_t)n,
		.data = data,
		.ndata = ndata,
		.slot = NULL,
	};
	return ftr_chan_send(c, &tx, 1);
}

/* ---- receiving ------------------------------------------------------------ */

/* Receives bytes that belong to a record already under way: running out of
 * time is a stall and an orderly EOF is a truncated record. */
static int recv_rest(struct ftr_chan *c, const struct iovec *iov, int iovcnt)
{
	int ret;

	if (!c->ops->recv_iov)
		return -EOPNOTSUPP;
	ret = c->ops->recv_iov(c, iov, iovcnt, ftr_chan_stall_ms(c));
	if (ret == -EAGAIN)
		return -ETIMEDOUT;
	if (ret == -ENOTCONN)
		return -ECONNRESET;
	return ret;
}

static void set_err(struct ftr_wire_error *err, enum ftr_wire_reject code, const char *fmt, ...)
	FTR_PRINTF(3, 4);

static void set_err(struct ftr_wire_error *err, enum ftr_wire_reject code, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

ssize_t ftr_chan_recv_head(struct ftr_chan *c, void *buf, size_t cap, struct ftr_wire_hdr *hdr,
			   int idle_ms, struct ftr_wire_error *err)
{
	struct ftr_wire_error dummy;
	struct iovec iov;
	int ret;

	if (!c || !buf || !hdr || cap < FTR_WIRE_HDR_LEN)
		return -EINVAL;
	if (!err)
		err = &dummy;
	if (atomic_load(&c->shut))
		return -ESHUTDOWN;
	if (!c->ops->recv_iov)
		return -EOPNOTSUPP;

	iov = (struct iovec){ .iov_base = buf, .iov_len = FTR_WIRE_HDR_LEN };
	ret = c->ops->recv_iov(c, &iov, 1, idle_ms < 0 ? -1 : idle_ms);
	if (ret)
		return ret;
	ret = ftr_wire_decode_hdr(buf, hdr, err);
	if (ret)
		return ret;
	/* The decoder bounds body_len by FTR_WIRE_MAX_BODY; the caller's
	 * buffer may be smaller. The body is left unread: the stream cannot
	 * be resynchronized and the caller must drop the channel, as for any
	 * -EPROTO. */
	if (hdr->body_len > cap - FTR_WIRE_HDR_LEN) {
		set_err(err, FTR_WIRE_OVERSIZED, "%s body_len %u exceeds the receive buffer (%zu)",
			ftr_rec_type_name(hdr->type), hdr->body_len, cap - FTR_WIRE_HDR_LEN);
		return -EPROTO;
	}
	if (hdr->body_len) {
		iov = (struct iovec){
			.iov_base = (char *)buf + FTR_WIRE_HDR_LEN,
			.iov_len = hdr->body_len,
		};
		ret = recv_rest(c, &iov, 1);
		if (ret)
			return ret;
	}
	ftr_stat_add(&c->st.rx_records, 1);
	return (ssize_t)(FTR_WIRE_HDR_LEN + hdr->body_len);
}

int ftr_chan_recv_data(struct ftr_chan *c, const struct ftr_wire_hdr *hdr, const struct iovec *iov,
		       int iovcnt)
{
	if (!c || !hdr || iovcnt < 0 || (iovcnt && !iov))
		return -EINVAL;
	if (iov_total(iov, iovcnt) != hdr->data_len)
		return -EINVAL;
	if (atomic_load(&c->shut))
		return -ESHUTDOWN;
	if (!hdr->data_len)
		return 0;
	return recv_rest(c, iov, iovcnt);
}

/* Discarded data goes through this much stack at a time. */
#define FTR_SKIP_CHUNK (16u << 10)

int ftr_chan_skip_data(struct ftr_chan *c, size_t len)
{
	unsigned char bounce[FTR_SKIP_CHUNK];
	int ret;

	if (!c)
		return -EINVAL;
	if (atomic_load(&c->shut))
		return -ESHUTDOWN;
	while (len) {
		struct iovec iov = {
			.iov_base = bounce,
			.iov_len = FTR_MIN(len, sizeof(bounce)),
		};

		ret = recv_rest(c, &iov, 1);
		if (ret)
			return ret;
		len -= iov.iov_len;
	}
	return 0;
}

/* ---- shutdown, close, names, stats ------------------------------------------ */

void ftr_chan_shutdown(struct ftr_chan *c)
{
	if (!c)
		return;
	/* The flag first, then the backend's wake-up: a thread woken (or one
	 * about to block) re-reads the flag, so none can miss it. */
	atomic_store(&c->shut, true);
	if (c->ops->shutdown)
		c->ops->shutdown(c);
}

void ftr_chan_close(struct ftr_chan *c)
{
	if (c && c->ops->close)
		c->ops->close(c);
}

const char *ftr_chan_peer(const struct ftr_chan *c)
{
	return c->peer;
}

const char *ftr_chan_transport(const struct ftr_chan *c)
{
	return c->ops->name;
}

void ftr_chan_get_stats(const struct ftr_chan *c, struct ftr_chan_stats *out)
{
	const struct ftr_chan_stats *s = &c->st;

	out->tx_bytes = __atomic_load_n(&s->tx_bytes, __ATOMIC_RELAXED);
	out->tx_records = __atomic_load_n(&s->tx_records, __ATOMIC_RELAXED);
	out->tx_syscalls = __atomic_load_n(&s->tx_syscalls, __ATOMIC_RELAXED);
	out->rx_bytes = __atomic_load_n(&s->rx_bytes, __ATOMIC_RELAXED);
	out->rx_records = __atomic_load_n(&s->rx_records, __ATOMIC_RELAXED);
	out->rx_syscalls = __atomic_load_n(&s->rx_syscalls, __ATOMIC_RELAXED);
	out->zc_sends = __atomic_load_n(&s->zc_sends, __ATOMIC_RELAXED);
	out->zc_completions = __atomic_load_n(&s->zc_completions, __ATOMIC_RELAXED);
	out->zc_copied = __atomic_load_n(&s->zc_copied, __ATOMIC_RELAXED);
	out->zc_fallback = __atomic_load_n(&s->zc_fallback, __ATOMIC_RELAXED);
	out->tx_placed_bytes = __atomic_load_n(&s->tx_placed_bytes, __ATOMIC_RELAXED);
	out->rx_placed_bytes = __atomic_load_n(&s->rx_placed_bytes, __ATOMIC_RELAXED);
}
