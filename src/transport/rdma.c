/* SPDX-License-Identifier: MIT */
/*
 * The rdma transport: libibverbs through rdma_cm, one reliable-connected
 * (RC) queue pair per channel, on any verbs device (mlx5, rxe soft-RoCE, ...)
 * named by opts.device. Same contract as tcp (transport.h): ordered records,
 * the receiver reads a record's head, then says where its data goes.
 *
 * Messages. Each side posts RDMA_RECV_DEPTH receive buffers of
 * RDMA_MSG_SIZE bytes. Everything the channel carries is a SEND of one
 * message: a 16-byte header (struct rdma_msg), then inline stream bytes,
 * then extents. The stream the receiver reads is, message after message,
 * the inline bytes followed by the bytes of each extent, where an extent
 * {off, len} names bytes already placed in the receiver's registered staging
 * memory by an RDMA WRITE. A record's head always travels inline; its data
 * part travels one of two ways:
 *
 *  - two-sided (always available; the only path in mode "send"): the data
 *    is copied into the sender's registered bounce buffers and sent inline;
 *    the receiver copies it out of its receive buffers into whatever iovecs
 *    it passes to ftr_chan_recv_data() (one copy on each side).
 *  - one-sided (mode "write", the default): used for a record when it gives
 *    ftr_tx_rec.slot[] AND the peer advertised staging memory on this
 *    channel (ftr_chan_reg_mem(FTR_MR_STAGING) on its end; a side in mode
 *    "send" never advertises). data[i] is RDMA-written to staging offset
 *    slot[i] * data[i].iov_len (the slot stride is the piece length: page-
 *    sized pieces into page-sized slots), straight from the caller's memory
 *    when it lies in an FTR_MR_SOURCE registration of this channel (zero
 *    copy; the caller keeps it intact until ftr_chan_flush()), else through
 *    a bounce buffer; then the SEND carrying the head and the extents
 *    follows on the same QP, so RC ordering puts the data in place before
 *    the receiver sees the message. When the receiver's iovecs are the
 *    staging slots themselves (the standby's case), recv_data copies
 *    nothing; other iovecs get a copy out of staging.
 *    A slot outside the advertised staging fails the send with -ERANGE
 *    before anything is posted; a write the NIC refuses anyway (wrong rkey,
 *    out of bounds) fails both ends (-EIO on the sender, -ECONNRESET on the
 *    receiver) and never lands; an extent outside the receiver's staging is
 *    refused as -EPROTO. Deregistering staging while the peer still writes
 *    into it breaks the channel the same way.
 *
 * Flow control. Staging slots are ftrepl's business (CREDIT records).
 * Receive buffers are ours: the sender may have at most the peer's
 * recv_depth messages unconsumed. The receiver counts buffers it reposted
 * and RDMA-writes that count into a credit word the sender registered (its
 * address and rkey travel in the rdma_cm private data) every
 * RDMA_CREDIT_BATCH reposts (and at once for control messages). Credit
 * updates consume no receive buffer, so they can never deadlock behind
 * data. A receiver that has consumed everything owes less than a batch,
 * while a sender only blocks with a whole window (RDMA_RECV_DEPTH)
 * unconsumed: so a sender waits only for a reader that does not read. A
 * sender short of credit re-reads the word with a short backoff (50 us
 * doubling to 1 ms), bounded by the stall timeout. rnr_retry = 7 is only a
 * safety net.
 *
 * Completions. One CQ per channel for sends and receives, with a
 * completion channel. All queue state is under t->lk. Whoever needs
 * progress polls the CQ under lk (progress()); one thread at a time (the
 * "poller") sleeps in ppoll() on the completion channel, the rdma_cm event
 * channel and the wake-up eventfd, others wait on t->cv and are woken by
 * the poller. So the sender of a channel nobody reads (the primary's data
 * channels) still sees its completions, and a receiver still sees a
 * disconnect. Send work requests are signalled every RDMA_SIGNAL_EVERY and
 * at the end of each post; a completion of sequence n retires everything
 * up to n (RC completes in order).
 *
 * Errors. An error completion is mapped to -EIO (the NIC refused an access,
 * a local error) or -ECONNRESET (the peer stopped answering, the QP was
 * flushed) and logged once with ibv_wc_status_str(). A peer that
 * disconnects (RDMA_CM_EVENT_DISCONNECTED: this side then calls
 * rdma_disconnect() itself, as the passive side must) or closes (an orderly
 * FIN message) ends the stream: -ENOTCONN at a record boundary,
 * -ECONNRESET mid-record (the generic layer), -EPIPE for sends.
 *
 * Threads: as for every transport, one sender and one receiver per channel
 * at a time, shutdown from anywhere, close only once nothing else runs.
 * ftr_chan_shutdown() wakes every waiter and leaves the connection up;
 * ftr_chan_close() waits (up to RDMA_CLOSE_MS) for sends to complete,
 * sends FIN, disconnects and frees everything.
 *
 * Counters: tx_syscalls counts ibv_post_send calls (a doorbell system call
 * on rxe, none on mlx5) plus sleeps of the sending path; rx_syscalls counts
 * ibv_post_recv calls, CQ notification arms and sleeps of the receiving
 * path. rdma_hooks.h exposes finer counters and fault injection for tests.
 */
#define FTR_LOG_PREFIX "rdma"

#include <endian.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "transport/transport_impl.h"
#include "transport/rdma_hooks.h"

/* Bytes per message = per receive buffer = per bounce buffer. */
#define RDMA_MSG_SIZE (32u << 10)
/* Receive buffers posted per channel, and bounce buffers for sending:
 * 1 MiB + 1 MiB registered per channel. */
#define RDMA_RECV_DEPTH 32u
#define RDMA_TX_BUFS 32u
#define RDMA_SQ_DEPTH 256u
/* Send-queue entries only credit updates may use (never data). */
#define RDMA_SQ_RESERVE 4u
#define RDMA_MAX_SGE 16
/* Work requests gathered per ibv_post_send. */
#define RDMA_CHAIN 32
#define RDMA_SIGNAL_EVERY 16
#define RDMA_CREDIT_BATCH (RDMA_RECV_DEPTH / 4)
/* Largest coalesced RDMA WRITE. */
#define RDMA_WRITE_MAX (1u << 20)
#define RDMA_MIN_MSG 256u
#define RDMA_HANDSHAKE_MS 5000
#define RDMA_CLOSE_MS 2000
#define RDMA_STEP_MS 2000	/* per address / route resolution step */
#define RDMA_BACKLOG 64
#define RDMA_MAX_GIDS 512
#define RDMA_RX_FLAG (1ull << 63)
#define RDMA_BACKOFF_MIN_US 50
#define RDMA_BACKOFF_MAX_US 1000

/* ---- what goes on the wire ---------------------------------------------------
 * Little-endian, fixed widths; separate from ftrepl's record format (wire.h),
 * which travels inside STREAM messages unchanged. */

#define RDMA_MAGIC 0x4d445246u /* "FRDM" */
#define RDMA_PROTO 1

/* rdma_cm private data of the connect request and of the accept. */
struct rdma_priv {
	uint32_t magic;
	uint8_t version;
	uint8_t reserved[3];
	uint32_t msg_size;	/* bytes per receive buffer of the sender of this */
	uint32_t recv_depth;	/* receive buffers it posted */
	uint64_t credit_addr;	/* its credit word (u64 LE), rkey below */
	uint32_t credit_rkey;
	uint32_t reserved2;
};
_Static_assert(sizeof(struct rdma_priv) == 32, "rdma_priv layout");
_Static_assert(sizeof(struct rdma_priv) <= 56, "fits a connect request's private data");

enum rdma_msg_type {
	RMSG_STREAM = 1,	/* inline stream bytes, then extents */
	RMSG_STAGING = 2,	/* staging advert: addr, len, rkey (len 0 withdraws) */
	RMSG_FIN = 3,		/* orderly end: nothing follows */
};

/* Header of every message, then len inline bytes, then nent extents. */
#define RDMA_HDR_LEN 16
#define RDMA_EXT_LEN 16	/* u64 off, u32 len, u32 reserved */
#define RDMA_AD_LEN 24	/* u64 addr, u64 len, u32 rkey, u32 reserved */
struct rdma_msg {
	uint8_t type;
	uint8_t version;
	uint16_t nent;
	uint32_t len;
	uint64_t reserved;
};
_Static_assert(sizeof(struct rdma_msg) == RDMA_HDR_LEN, "rdma_msg layout");

static inline void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static inline uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

/* ---- state ---------------------------------------------------------------------- */

enum rdma_mode {
	RDMA_MODE_WRITE,
	RDMA_MODE_SEND,
};

static const char *const rdma_modes[] = {
	[RDMA_MODE_WRITE] = "write",
	[RDMA_MODE_SEND] = "send",
	NULL,
};

/* A registration of the caller's memory (ftr_chan_reg_mem). */
struct rdma_reg {
	struct ftr_mr *owner;
	struct ibv_mr *mr;
	struct rdma_reg *next;
};

/* The RDMA WRITE being gathered, not yet in the chain. */
struct rdma_pending_write {
	bool open;
	uint64_t raddr;
	uint32_t len;
	int bnc;		/* bounce buffer it reads from, -1 none */
	int nsge;
	struct ibv_sge sge[RDMA_MAX_SGE];
};

struct rdma_chan {
	struct ftr_chan c;
	enum rdma_mode mode;
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *comp;
	struct ibv_cq *cq;
	int wake_fd;		/* eventfd written by shutdown, never read */
	int max_sge;
	uint32_t sq_depth;
	char dev[64];

	uint8_t *rxmem, *txmem;
	uint64_t *ctl;		/* [0] credit word the peer writes, [1] ours to write from */
	size_t ctl_len;
	struct ibv_mr *rx_mr, *tx_mr, *ctl_mr;

	pthread_mutex_t lk;	/* everything below */
	pthread_cond_t cv;	/* progress happened (the poller broadcasts) */
	bool poller;		/* a thread sleeps on the fds */
	bool established;

	/* the peer, fixed at connection */
	uint32_t peer_msg;
	uint32_t peer_depth;
	uint64_t peer_credit_addr;
	uint32_t peer_credit_rkey;
	/* the peer's staging advert (len 0: none) */
	uint64_t pstg_addr, pstg_len;
	uint32_t pstg_rkey;

	/* send queue: sequence numbers given to WRs in posting order */
	uint64_t sq_seq;	/* last given */
	uint64_t sq_done;	/* completed through this one */
	struct ibv_send_wr chain[RDMA_CHAIN];
	struct ibv_sge chain_sge[RDMA_CHAIN][RDMA_MAX_SGE];
	int nchain;
	uint64_t msgs_sent;	/* SENDs: each takes a peer receive buffer */
	uint64_t credit_seq;	/* WR of the latest credit write */
	bool credit_dirty;	/* a credit update is owed but could not go */
	/* bounce buffers: free stack; a busy one is free again once the last
	 * WR reading it (txb_seq) completed */
	uint64_t txb_seq[RDMA_TX_BUFS];
	bool txb_busy[RDMA_TX_BUFS];
	uint32_t txb_free[RDMA_TX_BUFS];
	uint32_t ntxb_free;
	int msg_buf;		/* message being built, -1 none */
	uint32_t msg_inline, msg_nent;
	int bnc_buf;		/* bounce buffer being filled for WRITEs, -1 none */
	uint32_t bnc_off;
	struct rdma_pending_write pw;

	/* receive: STREAM messages in arrival order, and a cursor in the first */
	uint32_t rxq[RDMA_RECV_DEPTH];
	uint32_t rxq_head, rxq_n;
	uint32_t rx_off;	/* inline bytes consumed */
	uint32_t rx_ent;	/* extents consumed */
	uint32_t rx_ent_off;	/* bytes consumed of extent rx_ent */
	uint64_t reposted;	/* receive buffers reposted (the credit count) */
	uint64_t credit_sent;	/* value of the latest credit write */

	struct rdma_reg *regs;
	struct rdma_reg *staging; /* the one advertised, or NULL */

	bool peer_fin, peer_gone, disconnected;
	int err;		/* sticky: the channel is broken */
	bool err_weak;		/* err is a flush that a precise cause may replace */

	uint64_t knob_rkey_xor;
	bool knob_no_range;
	struct ftr_rdma_counters cnt;
};

struct rdma_listener {
	struct ftr_listener l;
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	int wake_fd;
	enum rdma_mode mode;
	char device[64];	/* "" = any */
};

static inline struct rdma_chan *to_rdma(struct ftr_chan *c)
{
	return container_of(c, struct rdma_chan, c);
}

static inline struct rdma_listener *to_rdma_listener(struct ftr_listener *l)
{
	return container_of(l, struct rdma_listener, l);
}

static inline uint8_t *rx_buf(const struct rdma_chan *t, uint32_t i)
{
	return t->rxmem + (size_t)i * RDMA_MSG_SIZE;
}

static inline uint8_t *tx_buf(const struct rdma_chan *t, uint32_t i)
{
	return t->txmem + (size_t)i * RDMA_MSG_SIZE;
}

static void set_err(struct rdma_chan *t, int err, bool weak, const char *fmt, ...)
	FTR_PRINTF(4, 5);

/* Marks the channel broken (lk held). The first cause is kept, except that
 * a precise cause replaces a "flushed" one. Logged once. */
static void set_err(struct rdma_chan *t, int err, bool weak, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (t->err && (!t->err_weak || weak))
		return;
	t->err = err;
	t->err_weak = weak;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		pr_warn("%s: %s", t->c.peer, msg);
	}
	pthread_cond_broadcast(&t->cv);
}

/* ---- devices, ports, GIDs, registration ----------------------------------------- */

static void device_names(struct ibv_device **list, int n, char *buf, size_t len)
{
	size_t k = 0;

	buf[0] = '\0';
	for (int i = 0; i < n && k < len; i++) {
		int w = snprintf(buf + k, len - k, "%s%s", i ? ", " : "",
				 ibv_get_device_name(list[i]));

		if (w < 0)
			break;
		k += (size_t)w;
	}
}

/* Checks that a device of that name exists (want NULL or "": any). */
static int check_device_exists(const char *want)
{
	struct ibv_device **list;
	char names[256];
	bool found = false;
	int n = 0;

	if (!want || !*want)
		return 0;
	list = ibv_get_device_list(&n);
	if (!list) {
		pr_err("no RDMA device \"%s\": cannot list RDMA devices (%s); this kernel may "
		       "lack RDMA support", want, strerror(errno));
		return -ENODEV;
	}
	for (int i = 0; i < n; i++)
		if (!strcmp(ibv_get_device_name(list[i]), want))
			found = true;
	if (!found) {
		if (!n) {
			pr_err("no RDMA device \"%s\": this machine has no RDMA device (load its "
			       "driver; for soft-RoCE: rdma link add rxe0 type rxe netdev IFACE)",
			       want);
		} else {
			device_names(list, n, names, sizeof(names));
			pr_err("no RDMA device \"%s\" (have: %s)", want, names);
		}
	}
	ibv_free_device_list(list);
	return found ? 0 : -ENODEV;
}

static void format_addr(const struct sockaddr *sa, char *buf, size_t n, bool with_port)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						  : sizeof(struct sockaddr_in);

	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		ftr_strlcpy(buf, "?", n);
		return;
	}
	if (!with_port)
		snprintf(buf, n, "%s", host);
	else
		snprintf(buf, n, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

static int check_port(struct ibv_context *ctx, uint8_t port, const char *dev,
		      struct ibv_port_attr *pa)
{
	if (ibv_query_port(ctx, port, pa)) {
		int err = errno;

		pr_err("cannot query port %u of %s: %s", port, dev, strerror(err));
		return -err;
	}
	if (pa->state != IBV_PORT_ACTIVE) {
		pr_err("port %u of %s is %s, not ACTIVE (is its network interface up and "
		       "linked?)", port, dev, ibv_port_state_str(pa->state));
		return -ENETDOWN;
	}
	return 0;
}

/* On RoCE the address in use needs a GID (RoCE v2 preferred: routable,
 * what rdma_cm picks when the device has it). */
static int check_gid(struct ibv_context *ctx, uint8_t port, const char *dev,
		     const struct sockaddr *sa)
{
	struct ibv_gid_entry *ent;
	union ibv_gid want;
	char addr[NI_MAXHOST];
	bool v1 = false, v2 = false;
	ssize_t n;

	memset(&want, 0, sizeof(want));
	if (sa->sa_family == AF_INET) {
		want.raw[10] = 0xff;
		want.raw[11] = 0xff;
		memcpy(&want.raw[12], &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(want.raw, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else {
		return 0;
	}
	ent = calloc(RDMA_MAX_GIDS, sizeof(*ent));
	if (!ent)
		return -ENOMEM;
	n = ibv_query_gid_table(ctx, ent, RDMA_MAX_GIDS, 0);
	if (n < 0) {
		/* Old kernel or provider: rdma_cm will say if it cannot route. */
		pr_debug("%s: GID table not readable (%s); GID check skipped", dev,
			 strerror((int)-n));
		free(ent);
		return 0;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (ent[i].port_num != port || memcmp(ent[i].gid.raw, want.raw, 16))
			continue;
		if (ent[i].gid_type == IBV_GID_TYPE_ROCE_V2)
			v2 = true;
		else
			v1 = true;
	}
	free(ent);
	format_addr(sa, addr, sizeof(addr), false);
	if (!v1 && !v2) {
		pr_err("%s port %u has no GID for %s: the address must be configured on the "
		       "device's network interface", dev, port, addr);
		return -EADDRNOTAVAIL;
	}
	if (!v2)
		pr_warn("%s port %u has only a RoCE v1 GID for %s (not routable across subnets)",
			dev, port, addr);
	return 0;
}

/* Checks the device an rdma_cm id got bound to: the one asked for, its port
 * up, a GID for the local address on RoCE. */
static int check_id_device(struct rdma_cm_id *id, const char *want, const struct sockaddr *local)
{
	const char *dev = ibv_get_device_name(id->verbs->device);
	struct ibv_port_attr pa;
	char addr[NI_MAXHOST];
	int ret;

	if (want && *want && strcmp(dev, want)) {
		format_addr(local, addr, sizeof(addr), false);
		pr_err("address %s belongs to RDMA device %s, not %s", addr, dev, want);
		return -ENODEV;
	}
	ret = check_port(id->verbs, id->port_num, dev, &pa);
	if (ret)
		return ret;
	if (pa.link_layer == IBV_LINK_LAYER_ETHERNET)
		return check_gid(id->verbs, id->port_num, dev, local);
	return 0;
}

/* ibv_reg_mr with a reason when it fails: most often the locked-memory
 * limit (the pages get pinned). Returns NULL with *err set. */
static struct ibv_mr *reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access,
			     const char *what, const char *dev, int *err)
{
	struct ibv_mr *mr = ibv_reg_mr(pd, addr, len, access);
	struct rlimit rl;
	int e;

	if (mr)
		return mr;
	e = errno ? errno : ENOMEM;
	*err = -e;
	if ((e == ENOMEM || e == EPERM) && !getrlimit(RLIMIT_MEMLOCK, &rl) &&
	    rl.rlim_cur != RLIM_INFINITY) {
		pr_err("cannot register %zu bytes of %s with %s: %s; the locked-memory limit "
		       "(RLIMIT_MEMLOCK) is %llu KiB: raise it (`ulimit -l unlimited` in the "
		       "shell, LimitMEMLOCK=infinity in a systemd unit, a memlock line in "
		       "/etc/security/limits.conf)", len, what, dev, strerror(e),
		       (unsigned long long)rl.rlim_cur / 1024);
		*err = -ENOMEM;
	} else {
		pr_err("cannot register %zu bytes of %s with %s: %s", len, what, dev, strerror(e));
	}
	return NULL;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK))
		return -errno;
	return 0;
}

/* A nonblocking rdma_cm event channel and an RC (RDMA_PS_TCP) id on it.
 * On failure *ec / *id hold what was made, for the caller's cleanup. */
static int open_cm(struct rdma_event_channel **ec, struct rdma_cm_id **id, void *ctx)
{
	int ret;

	*ec = rdma_create_event_channel();
	if (!*ec) {
		ret = -errno;
		pr_err("cannot open the RDMA connection manager (%s): no RDMA support here?",
		       strerror(-ret));
		return ret;
	}
	ret = set_nonblock((*ec)->fd);
	if (ret)
		return ret;
	if (rdma_create_id(*ec, id, ctx, RDMA_PS_TCP))
		return -errno;
	return 0;
}

static int resolve(const char *host, uint16_t port, bool passive, struct sockaddr_storage *ss)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	struct addrinfo *res;
	char serv[8];
	int ret;

	snprintf(serv, sizeof(serv), "%u", port);
	ret = getaddrinfo(host, serv, &hints, &res);
	if (ret == EAI_SYSTEM)
		return errno ? -errno : -EIO;
	if (ret == EAI_MEMORY)
		return -ENOMEM;
	if (ret) {
		pr_err("cannot resolve \"%s\": %s", host, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, FTR_MIN((size_t)res->ai_addrlen, sizeof(*ss)));
	freeaddrinfo(res);
	return 0;
}

/*
 * Next connection-manager event on ec within timeout_ms (-1 forever), or
 * -ETIMEDOUT; -ESHUTDOWN when wake_fd (if >= 0) becomes readable. The
 * caller acks *ev.
 */
static int cm_next(struct rdma_event_channel *ec, int wake_fd, int timeout_ms,
		   struct rdma_cm_event **ev)
{
	uint64_t end = ftr_now_ms() + (uint64_t)FTR_MAX(timeout_ms, 0);

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = ec->fd, .events = POLLIN },
			{ .fd = wake_fd, .events = POLLIN },
		};
		int left, n;

		if (!rdma_get_cm_event(ec, ev))
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		left = ftr_ms_left(timeout_ms, end);
		if (left == 0)
			return -ETIMEDOUT;
		n = poll(p, wake_fd >= 0 ? 2 : 1, left);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0 && wake_fd >= 0 && p[1].revents)
			return -ESHUTDOWN;
	}
}

/* ---- channel setup and teardown --------------------------------------------------- */

static struct rdma_chan *chan_alloc(enum rdma_mode mode)
{
	struct rdma_chan *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->mode = mode;
	t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->wake_fd < 0) {
		free(t);
		return NULL;
	}
	pthread_mutex_init(&t->lk, NULL);
	ftr_cond_init_monotonic(&t->cv);
	t->msg_buf = -1;
	t->bnc_buf = -1;
	t->pw.bnc = -1;
	return t;
}

static void *map_buf(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void chan_free(struct rdma_chan *t)
{
	struct rdma_reg *r, *next;

	if (t->id && t->id->qp)
		rdma_destroy_qp(t->id);
	if (t->cq)
		ibv_destroy_cq(t->cq);
	if (t->comp)
		ibv_destroy_comp_channel(t->comp);
	for (r = t->regs; r; r = next) {
		next = r->next;
		/* Left registered by the caller: the MR must go before the PD. */
		ibv_dereg_mr(r->mr);
		free(r);
	}
	if (t->rx_mr)
		ibv_dereg_mr(t->rx_mr);
	if (t->tx_mr)
		ibv_dereg_mr(t->tx_mr);
	if (t->ctl_mr)
		ibv_dereg_mr(t->ctl_mr);
	if (t->pd)
		ibv_dealloc_pd(t->pd);
	if (t->id)
		rdma_destroy_id(t->id);
	if (t->ec)
		rdma_destroy_event_channel(t->ec);
	if (t->rxmem)
		munmap(t->rxmem, (size_t)RDMA_RECV_DEPTH * RDMA_MSG_SIZE);
	if (t->txmem)
		munmap(t->txmem, (size_t)RDMA_TX_BUFS * RDMA_MSG_SIZE);
	if (t->ctl)
		munmap(t->ctl, t->ctl_len);
	close(t->wake_fd);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->lk);
	free(t);
}

static int post_recv(struct rdma_chan *t, uint32_t i)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)rx_buf(t, i),
		.length = RDMA_MSG_SIZE,
		.lkey = t->rx_mr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = RDMA_RX_FLAG | i, .sg_list = &sge, .num_sge = 1 };
	struct ibv_recv_wr *bad;
	int ret = ibv_post_recv(t->id->qp, &wr, &bad);

	ftr_stat_add(&t->c.st.rx_syscalls, 1);
	return ret ? -ret : 0;
}

/* Creates the PD, CQ, QP and buffers on t->id's device and posts the
 * receive buffers. */
static int chan_setup(struct rdma_chan *t)
{
	struct ibv_context *ctx = t->id->verbs;
	struct ibv_device_attr da;
	struct ibv_qp_init_attr qa;
	int ret;

	ftr_strlcpy(t->dev, ibv_get_device_name(ctx->device), sizeof(t->dev));
	if (ibv_query_device(ctx, &da))
		return -errno;
	t->sq_depth = (uint32_t)FTR_MIN((int)RDMA_SQ_DEPTH, da.max_qp_wr);
	t->max_sge = FTR_MIN(RDMA_MAX_SGE, da.max_sge);
	if (t->sq_depth < 2 * RDMA_SQ_RESERVE || da.max_qp_wr < (int)RDMA_RECV_DEPTH ||
	    t->max_sge < 1) {
		pr_err("%s: queue limits too small (max_qp_wr %d, max_sge %d)", t->dev,
		       da.max_qp_wr, da.max_sge);
		return -EOPNOTSUPP;
	}
	t->pd = ibv_alloc_pd(ctx);
	if (!t->pd)
		return -errno;
	t->comp = ibv_create_comp_channel(ctx);
	if (!t->comp)
		return -errno;
	ret = set_nonblock(t->comp->fd);
	if (ret)
		return ret;
	t->cq = ibv_create_cq(ctx, (int)(t->sq_depth + RDMA_RECV_DEPTH), t, t->comp, 0);
	if (!t->cq)
		return -errno;
	memset(&qa, 0, sizeof(qa));
	qa.send_cq = t->cq;
	qa.recv_cq = t->cq;
	qa.qp_type = IBV_QPT_RC;
	qa.sq_sig_all = 0;
	qa.cap.max_send_wr = t->sq_depth;
	qa.cap.max_recv_wr = RDMA_RECV_DEPTH;
	qa.cap.max_send_sge = (uint32_t)t->max_sge;
	qa.cap.max_recv_sge = 1;
	if (rdma_create_qp(t->id, t->pd, &qa)) {
		ret = -errno;
		pr_err("%s: cannot create a queue pair: %s", t->dev, strerror(-ret));
		return ret;
	}

	t->ctl_len = (size_t)sysconf(_SC_PAGESIZE);
	t->rxmem = map_buf((size_t)RDMA_RECV_DEPTH * RDMA_MSG_SIZE);
	t->txmem = map_buf((size_t)RDMA_TX_BUFS * RDMA_MSG_SIZE);
	t->ctl = map_buf(t->ctl_len);
	if (!t->rxmem || !t->txmem || !t->ctl)
		return -ENOMEM;
	t->rx_mr = reg_mr(t->pd, t->rxmem, (size_t)RDMA_RECV_DEPTH * RDMA_MSG_SIZE,
			  IBV_ACCESS_LOCAL_WRITE, "receive buffers", t->dev, &ret);
	if (!t->rx_mr)
		return ret;
	t->tx_mr = reg_mr(t->pd, t->txmem, (size_t)RDMA_TX_BUFS * RDMA_MSG_SIZE,
			  IBV_ACCESS_LOCAL_WRITE, "send buffers", t->dev, &ret);
	if (!t->tx_mr)
		return ret;
	t->ctl_mr = reg_mr(t->pd, t->ctl, t->ctl_len,
			   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, "the credit word",
			   t->dev, &ret);
	if (!t->ctl_mr)
		return ret;
	for (uint32_t i = 0; i < RDMA_TX_BUFS; i++)
		t->txb_free[i] = RDMA_TX_BUFS - 1 - i;
	t->ntxb_free = RDMA_TX_BUFS;
	for (uint32_t i = 0; i < RDMA_RECV_DEPTH; i++) {
		ret = post_recv(t, i);
		if (ret)
			return ret;
	}
	return 0;
}

static void priv_fill(const struct rdma_chan *t, struct rdma_priv *p)
{
	memset(p, 0, sizeof(*p));
	p->magic = htole32(RDMA_MAGIC);
	p->version = RDMA_PROTO;
	p->msg_size = htole32(RDMA_MSG_SIZE);
	p->recv_depth = htole32(RDMA_RECV_DEPTH);
	p->credit_addr = htole64((uintptr_t)&t->ctl[0]);
	p->credit_rkey = htole32(t->ctl_mr->rkey);
}

/* Takes the peer's parameters from its private data; false if it is not
 * an ftrepl rdma peer of a version we speak. */
static bool priv_parse(struct rdma_chan *t, const void *data, size_t len)
{
	struct rdma_priv p;

	if (!data || len < sizeof(p))
		return false;
	memcpy(&p, data, sizeof(p));
	if (le32toh(p.magic) != RDMA_MAGIC || p.version != RDMA_PROTO)
		return false;
	t->peer_msg = le32toh(p.msg_size);
	t->peer_depth = le32toh(p.recv_depth);
	t->peer_credit_addr = le64toh(p.credit_addr);
	t->peer_credit_rkey = le32toh(p.credit_rkey);
	return t->peer_msg >= RDMA_MIN_MSG && t->peer_depth >= 2 && t->peer_depth <= 65536;
}

static void chan_finish(struct rdma_chan *t, struct ftr_chan **out)
{
	char name[sizeof(t->c.peer)];

	memcpy(name, "rdma:", 5);
	format_addr(rdma_get_peer_addr(t->id), name + 5, sizeof(name) - 5, true);
	ftr_chan_init(&t->c, &ftr_rdma_transport, name);
	t->cnt.msg_size = RDMA_MSG_SIZE;
	t->cnt.recv_depth = RDMA_RECV_DEPTH;
	t->established = true;
	*out = &t->c;
}

static struct rdma_conn_param conn_param(const struct rdma_priv *p)
{
	struct rdma_conn_param cp;

	memset(&cp, 0, sizeof(cp));
	cp.private_data = p;
	cp.private_data_len = sizeof(*p);
	cp.responder_resources = 1;
	cp.initiator_depth = 1;
	cp.retry_count = 7;
	cp.rnr_retry_count = 7; /* infinite: credits should make it unused */
	return cp;
}

/* ---- the send queue ------------------------------------------------------------------ */

static int progress(struct rdma_chan *t);
static int wait_event(struct rdma_chan *t, int64_t timeout_us, uint64_t *nsys);

static inline uint64_t credit_in(const struct rdma_chan *t)
{
	/* Written by the peer's NIC; any value read is a valid (monotonic) one. */
	return le64toh(__atomic_load_n(&t->ctl[0], __ATOMIC_ACQUIRE));
}

static inline int64_t credits(const struct rdma_chan *t)
{
	return (int64_t)(t->peer_depth + credit_in(t) - t->msgs_sent);
}

static inline uint32_t sq_busy(const struct rdma_chan *t)
{
	return (uint32_t)(t->sq_seq - t->sq_done);
}

/* Posts the gathered chain with one ibv_post_send; its last WR signalled. */
static int chain_post(struct rdma_chan *t)
{
	struct ibv_send_wr *bad = NULL;
	int n = t->nchain, ret;

	if (!n)
		return 0;
	for (int i = 0; i < n; i++)
		t->chain[i].next = i + 1 < n ? &t->chain[i + 1] : NULL;
	t->chain[n - 1].send_flags |= IBV_SEND_SIGNALED;
	t->nchain = 0;
	ret = ibv_post_send(t->id->qp, &t->chain[0], &bad);
	ftr_stat_add(&t->c.st.tx_syscalls, 1);
	if (ret) {
		set_err(t, -EIO, false, "ibv_post_send: %s", strerror(ret));
		return -EIO;
	}
	return 0;
}

/* The next WR of the chain, zeroed, with its sequence number; the caller
 * fills it at once (nothing may post the chain in between). */
static struct ibv_send_wr *chain_next(struct rdma_chan *t)
{
	struct ibv_send_wr *wr = &t->chain[t->nchain];

	memset(wr, 0, sizeof(*wr));
	wr->sg_list = t->chain_sge[t->nchain];
	wr->wr_id = ++t->sq_seq;
	if (wr->wr_id % RDMA_SIGNAL_EVERY == 0)
		wr->send_flags = IBV_SEND_SIGNALED;
	t->nchain++;
	return wr;
}

static void txb_reclaim(struct rdma_chan *t)
{
	for (uint32_t i = 0; i < RDMA_TX_BUFS; i++) {
		if (!t->txb_busy[i] || !t->txb_seq[i] || t->txb_seq[i] > t->sq_done ||
		    (int)i == t->msg_buf || (int)i == t->bnc_buf)
			continue;
		t->txb_busy[i] = false;
		t->txb_seq[i] = 0;
		t->txb_free[t->ntxb_free++] = i;
	}
}

/* Gives back a buffer that no posted WR references. */
static void txb_put(struct rdma_chan *t, int i)
{
	if (i < 0 || !t->txb_busy[i] || t->txb_seq[i])
		return;
	t->txb_busy[i] = false;
	t->txb_free[t->ntxb_free++] = (uint32_t)i;
}

enum rdma_need {
	NEED_SQ,	/* n send-queue entries for data */
	NEED_TXBUF,	/* a bounce buffer */
	NEED_CREDIT,	/* n peer receive buffers */
	NEED_IDLE,	/* every posted WR completed */
};

static bool need_met(struct rdma_chan *t, enum rdma_need what, uint32_t n)
{
	switch (what) {
	case NEED_SQ:
		return sq_busy(t) + n + RDMA_SQ_RESERVE <= t->sq_depth;
	case NEED_TXBUF:
		if (!t->ntxb_free)
			txb_reclaim(t);
		return t->ntxb_free > 0;
	case NEED_CREDIT:
		return credits(t) >= (int64_t)n;
	case NEED_IDLE:
		return !t->nchain && t->sq_done == t->sq_seq;
	}
	return false;
}

/*
 * Waits (lk held, released while asleep) until the sender can go on. The
 * stall timeout counts from the last sign of progress (a completion or a
 * credit update). Returns 0, -ESHUTDOWN, -ETIMEDOUT, -EPIPE (the peer
 * closed) or the channel's error.
 */
static int tx_wait_for(struct rdma_chan *t, enum rdma_need what, uint32_t n)
{
	uint64_t since = ftr_now_ms(), done = t->sq_done, cred = credit_in(t);
	int64_t backoff = RDMA_BACKOFF_MIN_US;
	bool counted = false;
	int ret;

	for (;;) {
		int ms;
		int64_t timeout_us;

		/* A broken channel fails every wait, even one that is "met"
		 * because the failed WRs count as done. */
		if (t->err)
			return t->err;
		if (need_met(t, what, n))
			return 0;
		if (ftr_chan_is_shut(&t->c))
			return -ESHUTDOWN;
		if (t->peer_gone || t->peer_fin)
			return -EPIPE;
		ret = chain_post(t);
		if (ret)
			return ret;
		progress(t);
		if (t->err)
			return t->err;
		if (need_met(t, what, n))
			return 0;
		if (what == NEED_CREDIT && !counted) {
			ftr_stat_add(&t->cnt.credit_waits, 1);
			counted = true;
		}
		if (t->sq_done != done || credit_in(t) != cred) {
			done = t->sq_done;
			cred = credit_in(t);
			since = ftr_now_ms();
			backoff = RDMA_BACKOFF_MIN_US;
		}
		ms = ftr_chan_stall_ms(&t->c);
		timeout_us = -1;
		if (ms >= 0) {
			uint64_t el = ftr_now_ms() - since;

			if (el >= (uint64_t)ms)
				return -ETIMEDOUT;
			timeout_us = (int64_t)((uint64_t)ms - el) * 1000;
		}
		/* Credits arrive as a plain memory write, without a completion:
		 * look again after a short backoff. */
		if (what == NEED_CREDIT) {
			timeout_us = timeout_us < 0 ? backoff : FTR_MIN(timeout_us, backoff);
			backoff = FTR_MIN(backoff * 2, RDMA_BACKOFF_MAX_US);
		}
		wait_event(t, timeout_us, &t->c.st.tx_syscalls);
	}
}

/* Room in the chain and the send queue for n more data WRs. */
static int chain_room(struct rdma_chan *t, uint32_t n)
{
	int ret;

	if (t->nchain + (int)n > RDMA_CHAIN) {
		ret = chain_post(t);
		if (ret)
			return ret;
	}
	return tx_wait_for(t, NEED_SQ, n);
}

static int txb_get(struct rdma_chan *t, int *out)
{
	int ret = tx_wait_for(t, NEED_TXBUF, 1);
	uint32_t i;

	if (ret)
		return ret;
	i = t->txb_free[--t->ntxb_free];
	t->txb_busy[i] = true;
	t->txb_seq[i] = 0;
	*out = (int)i;
	return 0;
}

/*
 * Writes our reposted-buffer count into the peer's credit word, when at
 * least RDMA_CREDIT_BATCH are owed or force and any is owed. One credit
 * write in flight at a time (its source word must not change under the
 * NIC); one that cannot go now is retried after the next completion.
 */
static void credit_update(struct rdma_chan *t, bool force)
{
	uint64_t owed = t->reposted - t->credit_sent;
	struct ibv_send_wr *wr;

	if (!owed || (!force && owed < RDMA_CREDIT_BATCH))
		return;
	if (t->err || t->disconnected || !t->established)
		return;
	if (t->credit_seq > t->sq_done || sq_busy(t) + 1 > t->sq_depth) {
		t->credit_dirty = true;
		return;
	}
	if (t->nchain >= RDMA_CHAIN && chain_post(t))
		return;
	t->ctl[1] = htole64(t->reposted);
	wr = chain_next(t);
	wr->opcode = IBV_WR_RDMA_WRITE;
	wr->send_flags |= IBV_SEND_SIGNALED;
	wr->sg_list[0] = (struct ibv_sge){
		.addr = (uintptr_t)&t->ctl[1], .length = 8, .lkey = t->ctl_mr->lkey,
	};
	wr->num_sge = 1;
	wr->wr.rdma.remote_addr = t->peer_credit_addr;
	wr->wr.rdma.rkey = t->peer_credit_rkey;
	t->credit_seq = wr->wr_id;
	t->credit_sent = t->reposted;
	t->credit_dirty = false;
	ftr_stat_add(&t->cnt.credit_writes, 1);
	chain_post(t);
}

/* ---- completions and waiting ------------------------------------------------------------ */

static const char *opcode_name(enum ibv_wc_opcode op)
{
	switch (op) {
	case IBV_WC_SEND:
		return "SEND";
	case IBV_WC_RDMA_WRITE:
		return "RDMA WRITE";
	case IBV_WC_RECV:
		return "RECV";
	default:
		return "work request";
	}
}

static void tx_complete(struct rdma_chan *t, const struct ibv_wc *wc)
{
	if (wc->wr_id > t->sq_done)
		t->sq_done = wc->wr_id;
	if (wc->status == IBV_WC_SUCCESS)
		return;
	switch (wc->status) {
	case IBV_WC_WR_FLUSH_ERR:
		if (t->disconnected || t->peer_gone || ftr_chan_is_shut(&t->c))
			set_err(t, -ECONNRESET, true, NULL);
		else
			set_err(t, -ECONNRESET, true, "%s flushed: the queue pair is in error state",
				opcode_name(wc->opcode));
		break;
	case IBV_WC_REM_ACCESS_ERR:
		set_err(t, -EIO, false, "the peer refused an RDMA WRITE (%s): wrong rkey or "
			"outside its registered staging memory", ibv_wc_status_str(wc->status));
		break;
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:
		set_err(t, -ECONNRESET, false, "the peer stopped answering (%s on %s)",
			ibv_wc_status_str(wc->status), opcode_name(wc->opcode));
		break;
	default:
		set_err(t, -EIO, false, "%s failed: %s (vendor error 0x%x)",
			opcode_name(wc->opcode), ibv_wc_status_str(wc->status), wc->vendor_err);
		break;
	}
}

/* Checks a STREAM message's extents against our staging registration. */
static bool extents_ok(const struct rdma_chan *t, const uint8_t *ext, uint32_t nent)
{
	uint64_t slen = t->staging ? t->staging->owner->len : 0;

	for (uint32_t i = 0; i < nent; i++, ext += RDMA_EXT_LEN) {
		uint64_t off = get_le64(ext);
		uint32_t len = get_le32(ext + 8);

		if (!len || off > slen || len > slen - off)
			return false;
	}
	return true;
}

static void rx_complete(struct rdma_chan *t, const struct ibv_wc *wc)
{
	uint32_t i = (uint32_t)(wc->wr_id & ~RDMA_RX_FLAG);
	const uint8_t *m = rx_buf(t, i);
	uint32_t len = wc->byte_len, inl, nent;
	int ret;

	if (wc->status != IBV_WC_SUCCESS) {
		if (wc->status == IBV_WC_WR_FLUSH_ERR &&
		    (t->disconnected || t->peer_gone || ftr_chan_is_shut(&t->c)))
			set_err(t, -ECONNRESET, true, NULL);
		else if (wc->status == IBV_WC_WR_FLUSH_ERR)
			set_err(t, -ECONNRESET, true, "receive flushed: the queue pair went to error "
				"state (a refused RDMA access or a failed connection)");
		else
			set_err(t, -EIO, false, "receive failed: %s", ibv_wc_status_str(wc->status));
		return;
	}
	if (i >= RDMA_RECV_DEPTH || len < RDMA_HDR_LEN || m[1] != RDMA_PROTO)
		goto bad;
	inl = get_le32(m + 4);
	nent = (uint32_t)m[2] | (uint32_t)m[3] << 8;
	switch (m[0]) {
	case RMSG_STREAM:
		if ((uint64_t)RDMA_HDR_LEN + inl + (uint64_t)nent * RDMA_EXT_LEN != len)
			goto bad;
		if (nent && !extents_ok(t, m + RDMA_HDR_LEN + inl, nent)) {
			set_err(t, -EPROTO, false, "the peer placed data outside the staging memory "
				"registered on this channel (%u extents)", nent);
			return;
		}
		t->rxq[(t->rxq_head + t->rxq_n) % RDMA_RECV_DEPTH] = i;
		t->rxq_n++;
		return;
	case RMSG_STAGING:
		if (len != RDMA_HDR_LEN + RDMA_AD_LEN || inl != RDMA_AD_LEN || nent)
			goto bad;
		t->pstg_addr = get_le64(m + RDMA_HDR_LEN);
		t->pstg_len = get_le64(m + RDMA_HDR_LEN + 8);
		t->pstg_rkey = get_le32(m + RDMA_HDR_LEN + 16);
		t->cnt.peer_staging = t->pstg_len ? 1 : 0;
		break;
	case RMSG_FIN:
		t->peer_fin = true;
		break;
	default:
		goto bad;
	}
	/* Control messages are done with at once. */
	ret = post_recv(t, i);
	if (ret) {
		set_err(t, ret, false, "ibv_post_recv: %s", strerror(-ret));
		return;
	}
	t->reposted++;
	credit_update(t, true);
	return;
bad:
	set_err(t, -EPROTO, false, "malformed message from the peer (type %u, %u bytes)",
		len ? m[0] : 0, len);
}

/* Polls the CQ dry (lk held). Returns the number of completions seen. */
static int progress(struct rdma_chan *t)
{
	struct ibv_wc wc[16];
	int n, total = 0;

	do {
		n = ibv_poll_cq(t->cq, (int)FTR_ARRAY_SIZE(wc), wc);
		if (n < 0) {
			set_err(t, -EIO, false, "ibv_poll_cq failed");
			break;
		}
		for (int i = 0; i < n; i++) {
			if (wc[i].wr_id & RDMA_RX_FLAG)
				rx_complete(t, &wc[i]);
			else
				tx_complete(t, &wc[i]);
		}
		total += n;
	} while (n == (int)FTR_ARRAY_SIZE(wc));
	if (total) {
		if (t->credit_dirty)
			credit_update(t, true);
		pthread_cond_broadcast(&t->cv);
	}
	return total;
}

/* Connection events of an established channel (lk held). */
static void cm_drain(struct rdma_chan *t)
{
	struct rdma_cm_event *ev;

	while (!rdma_get_cm_event(t->ec, &ev)) {
		switch (ev->event) {
		case RDMA_CM_EVENT_DISCONNECTED:
			t->peer_gone = true;
			/* The passive side must answer, or the active side never
			 * sees its own DISCONNECTED. */
			if (!t->disconnected) {
				rdma_disconnect(t->id);
				t->disconnected = true;
			}
			break;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			set_err(t, -ENODEV, false, "RDMA device %s was removed", t->dev);
			break;
		default:
			pr_debug("%s: %s", t->c.peer, rdma_event_str(ev->event));
			break;
		}
		rdma_ack_cm_event(ev);
	}
}

static struct timespec deadline_us(int64_t us)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += us / 1000000;
	ts.tv_nsec += (long)(us % 1000000) * 1000;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/*
 * Sleeps (lk held, released meanwhile) until something may have changed:
 * a completion, a connection event, a wake-up, or timeout_us (-1: none).
 * One thread at a time sleeps on the fds; the others wait on t->cv, which
 * the sleeper broadcasts when it wakes. Returns 0 or -ETIME.
 */
static int wait_event(struct rdma_chan *t, int64_t timeout_us, uint64_t *nsys)
{
	struct pollfd p[3] = {
		{ .fd = t->comp->fd, .events = POLLIN },
		{ .fd = t->ec->fd, .events = POLLIN },
		{ .fd = t->wake_fd, .events = POLLIN },
	};
	struct timespec ts;
	int n;

	if (t->poller) {
		if (timeout_us < 0) {
			pthread_cond_wait(&t->cv, &t->lk);
			return 0;
		}
		ts = deadline_us(timeout_us);
		return pthread_cond_timedwait(&t->cv, &t->lk, &ts) == ETIMEDOUT ? -ETIME : 0;
	}
	t->poller = true;
	/* Arm, then look once more: a completion that came before the arm
	 * raises no event. */
	ibv_req_notify_cq(t->cq, 0);
	ftr_stat_add(nsys, 1);
	if (progress(t)) {
		t->poller = false;
		return 0;
	}
	pthread_mutex_unlock(&t->lk);
	if (timeout_us >= 0) {
		ts.tv_sec = timeout_us / 1000000;
		ts.tv_nsec = (long)(timeout_us % 1000000) * 1000;
	}
	n = ppoll(p, 3, timeout_us < 0 ? NULL : &ts, NULL);
	ftr_stat_add(nsys, 1);
	pthread_mutex_lock(&t->lk);
	if (n > 0 && p[0].revents) {
		struct ibv_cq *cq;
		void *ctx;

		while (!ibv_get_cq_event(t->comp, &cq, &ctx))
			ibv_ack_cq_events(cq, 1);
	}
	if (n > 0 && p[1].revents)
		cm_drain(t);
	t->poller = false;
	pthread_cond_broadcast(&t->cv);
	progress(t);
	return n == 0 ? -ETIME : 0;
}

/* ---- building messages ------------------------------------------------------------------ */

static inline uint32_t msg_cap(const struct rdma_chan *t)
{
	return FTR_MIN(RDMA_MSG_SIZE, t->peer_msg);
}

static inline uint32_t msg_room(const struct rdma_chan *t)
{
	return msg_cap(t) - RDMA_HDR_LEN - t->msg_inline - t->msg_nent * RDMA_EXT_LEN;
}

static int msg_open(struct rdma_chan *t)
{
	int ret = txb_get(t, &t->msg_buf);

	t->msg_inline = 0;
	t->msg_nent = 0;
	return ret;
}

/* Moves the gathered WRITE into the chain. */
static int write_close(struct rdma_chan *t)
{
	struct rdma_pending_write *pw = &t->pw;
	struct ibv_send_wr *wr;
	int ret;

	if (!pw->open)
		return 0;
	ret = chain_room(t, 1);
	if (ret)
		return ret;
	wr = chain_next(t);
	wr->opcode = IBV_WR_RDMA_WRITE;
	memcpy(wr->sg_list, pw->sge, (size_t)pw->nsge * sizeof(pw->sge[0]));
	wr->num_sge = pw->nsge;
	wr->wr.rdma.remote_addr = pw->raddr;
	wr->wr.rdma.rkey = t->pstg_rkey ^ (uint32_t)t->knob_rkey_xor;
	if (pw->bnc >= 0)
		t->txb_seq[pw->bnc] = wr->wr_id;
	pw->open = false;
	pw->bnc = -1;
	ftr_stat_add(&t->cnt.writes, 1);
	return 0;
}

/* Posts the message being built as one SEND, after any gathered WRITE
 * (which its extents may describe). */
static int msg_post(struct rdma_chan *t, enum rdma_msg_type type)
{
	struct ibv_send_wr *wr;
	uint8_t *m;
	int ret;

	if (t->msg_buf < 0)
		return 0;
	ret = write_close(t);
	if (!ret)
		ret = tx_wait_for(t, NEED_CREDIT, 1);
	if (!ret)
		ret = chain_room(t, 1);
	if (ret)
		return ret;
	m = tx_buf(t, (uint32_t)t->msg_buf);
	memset(m, 0, RDMA_HDR_LEN);
	m[0] = (uint8_t)type;
	m[1] = RDMA_PROTO;
	m[2] = (uint8_t)(t->msg_nent & 0xff);
	m[3] = (uint8_t)(t->msg_nent >> 8);
	put_le32(m + 4, t->msg_inline);
	wr = chain_next(t);
	wr->opcode = IBV_WR_SEND;
	wr->sg_list[0] = (struct ibv_sge){
		.addr = (uintptr_t)m,
		.length = RDMA_HDR_LEN + t->msg_inline + t->msg_nent * RDMA_EXT_LEN,
		.lkey = t->tx_mr->lkey,
	};
	wr->num_sge = 1;
	t->txb_seq[t->msg_buf] = wr->wr_id;
	t->msg_buf = -1;
	t->msgs_sent++;
	ftr_stat_add(&t->cnt.sends, 1);
	return 0;
}

static int msg_put_bytes(struct rdma_chan *t, const void *src, size_t n)
{
	const uint8_t *p = src;
	int ret;

	while (n) {
		uint32_t k;

		/* Inline bytes come before extents in a message. */
		if (t->msg_buf >= 0 && (t->msg_nent || !msg_room(t))) {
			ret = msg_post(t, RMSG_STREAM);
			if (ret)
				return ret;
		}
		if (t->msg_buf < 0) {
			ret = msg_open(t);
			if (ret)
				return ret;
		}
		k = (uint32_t)FTR_MIN((size_t)msg_room(t), n);
		memcpy(tx_buf(t, (uint32_t)t->msg_buf) + RDMA_HDR_LEN + t->msg_inline, p, k);
		t->msg_inline += k;
		p += k;
		n -= k;
		ftr_stat_add(&t->cnt.inline_bytes, k);
	}
	return 0;
}

static int msg_put_extent(struct rdma_chan *t, uint64_t off, uint32_t len)
{
	uint8_t *e;
	int ret;

	if (t->msg_buf >= 0 && t->msg_nent) {
		uint8_t *last = tx_buf(t, (uint32_t)t->msg_buf) + RDMA_HDR_LEN + t->msg_inline +
				(t->msg_nent - 1) * RDMA_EXT_LEN;
		uint64_t loff = get_le64(last);
		uint32_t llen = get_le32(last + 8);

		if (loff + llen == off && (uint64_t)llen + len <= UINT32_MAX) {
			put_le32(last + 8, llen + len);
			return 0;
		}
	}
	if (t->msg_buf >= 0 && (msg_room(t) < RDMA_EXT_LEN || t->msg_nent >= UINT16_MAX)) {
		ret = msg_post(t, RMSG_STREAM);
		if (ret)
			return ret;
	}
	if (t->msg_buf < 0) {
		ret = msg_open(t);
		if (ret)
			return ret;
	}
	e = tx_buf(t, (uint32_t)t->msg_buf) + RDMA_HDR_LEN + t->msg_inline +
	    t->msg_nent * RDMA_EXT_LEN;
	put_le64(e, off);
	put_le32(e + 8, len);
	put_le32(e + 12, 0);
	t->msg_nent++;
	return 0;
}

/* Adds len bytes at local addr (lkey) bound for remote raddr to the WRITE
 * being gathered, or starts a new one. */
static int write_add(struct rdma_chan *t, uint64_t addr, uint32_t lkey, uint32_t len,
		     uint64_t raddr, int bnc)
{
	struct rdma_pending_write *pw = &t->pw;
	int ret;

	if (pw->open) {
		struct ibv_sge *s = &pw->sge[pw->nsge - 1];
		bool same_bnc = bnc < 0 || pw->bnc < 0 || bnc == pw->bnc;

		if (pw->raddr + pw->len == raddr && (uint64_t)pw->len + len <= RDMA_WRITE_MAX &&
		    same_bnc) {
			if (s->lkey == lkey && s->addr + s->length == addr) {
				s->length += len;
				pw->len += len;
				if (bnc >= 0)
					pw->bnc = bnc;
				return 0;
			}
			if (pw->nsge < t->max_sge) {
				pw->sge[pw->nsge++] = (struct ibv_sge){ addr, len, lkey };
				pw->len += len;
				if (bnc >= 0)
					pw->bnc = bnc;
				return 0;
			}
		}
		ret = write_close(t);
		if (ret)
			return ret;
	}
	pw->open = true;
	pw->raddr = raddr;
	pw->len = len;
	pw->bnc = bnc;
	pw->nsge = 1;
	pw->sge[0] = (struct ibv_sge){ addr, len, lkey };
	return 0;
}

static struct rdma_reg *find_source(const struct rdma_chan *t, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;

	for (struct rdma_reg *r = t->regs; r; r = r->next) {
		uintptr_t b = (uintptr_t)r->owner->addr;

		if ((r->owner->flags & FTR_MR_SOURCE) && a >= b && a - b <= r->owner->len &&
		    len <= r->owner->len - (a - b))
			return r;
	}
	return NULL;
}

/* One data piece, one-sided: WRITE it to staging offset off, describe it
 * with an extent. */
static int place_piece(struct rdma_chan *t, const struct iovec *piece, uint64_t off)
{
	const uint8_t *src = piece->iov_base;
	size_t len = piece->iov_len, done = 0;
	struct rdma_reg *reg = find_source(t, src, len);
	int ret;

	if (reg) {
		/* Zero copy; one WR covers at most RDMA_WRITE_MAX. */
		while (done < len) {
			uint32_t k = (uint32_t)FTR_MIN(len - done, (size_t)RDMA_WRITE_MAX);

			ret = write_add(t, (uintptr_t)(src + done), reg->mr->lkey, k,
					t->pstg_addr + off + done, -1);
			if (ret)
				return ret;
			done += k;
		}
		ftr_stat_add(&t->cnt.write_zc_bytes, len);
	} else {
		while (done < len) {
			uint32_t k;

			if (t->bnc_buf < 0 || t->bnc_off == RDMA_MSG_SIZE) {
				/* A WRITE reads from one bounce buffer at most. */
				ret = write_close(t);
				if (!ret)
					ret = txb_get(t, &t->bnc_buf);
				if (ret)
					return ret;
				t->bnc_off = 0;
			}
			k = (uint32_t)FTR_MIN(len - done, (size_t)(RDMA_MSG_SIZE - t->bnc_off));
			memcpy(tx_buf(t, (uint32_t)t->bnc_buf) + t->bnc_off, src + done, k);
			ret = write_add(t, (uintptr_t)(tx_buf(t, (uint32_t)t->bnc_buf) + t->bnc_off),
					t->tx_mr->lkey, k, t->pstg_addr + off + done, t->bnc_buf);
			if (ret)
				return ret;
			t->bnc_off += k;
			done += k;
		}
	}
	ftr_stat_add(&t->cnt.write_bytes, len);
	ftr_stat_add(&t->c.st.tx_placed_bytes, len);
	done = 0;
	while (done < len) {
		uint32_t k = (uint32_t)FTR_MIN(len - done, (size_t)UINT32_MAX);

		ret = msg_put_extent(t, off + done, k);
		if (ret)
			return ret;
		done += k;
	}
	return 0;
}

static bool use_one_sided(const struct rdma_chan *t, const struct ftr_tx_rec *rec)
{
	return t->mode == RDMA_MODE_WRITE && rec->slot && rec->ndata > 0 && t->pstg_len;
}

/* Every slot of a one-sided record must lie inside the peer's staging:
 * checked before anything of the call is posted. */
static int check_slots(const struct rdma_chan *t, const struct ftr_tx_rec *rec)
{
	if (t->knob_no_range)
		return 0;
	for (int i = 0; i < rec->ndata; i++) {
		uint64_t len = rec->data[i].iov_len, s = rec->slot[i];

		if (!len)
			continue;
		if (len > t->pstg_len || s > (t->pstg_len - len) / len) {
			pr_warn("%s: slot %" PRIu64 " of %" PRIu64 " bytes lies outside the peer's "
				"staging memory (%" PRIu64 " bytes = %" PRIu64 " slots)",
				t->c.peer, s, len, t->pstg_len, t->pstg_len / len);
			return -ERANGE;
		}
	}
	return 0;
}

/* Drops the unposted buffers of a send that failed half-way. */
static void send_abandon(struct rdma_chan *t)
{
	if (t->msg_buf >= 0) {
		txb_put(t, t->msg_buf);
		t->msg_buf = -1;
	}
	if (t->bnc_buf >= 0) {
		int b = t->bnc_buf;

		t->bnc_buf = -1;
		txb_put(t, b);
	}
	t->pw.open = false;
	t->pw.bnc = -1;
}

static int rdma_send(struct ftr_chan *c, const struct ftr_tx_rec *recs, int nrecs)
{
	struct rdma_chan *t = to_rdma(c);
	int ret = 0;

	pthread_mutex_lock(&t->lk);
	if (t->err) {
		ret = t->err;
		goto out;
	}
	if (t->peer_gone || t->peer_fin) {
		ret = -EPIPE;
		goto out;
	}
	for (int r = 0; r < nrecs; r++) {
		if (use_one_sided(t, &recs[r])) {
			ret = check_slots(t, &recs[r]);
			if (ret)
				goto out;
		}
	}
	for (int r = 0; r < nrecs && !ret; r++) {
		const struct ftr_tx_rec *rec = &recs[r];
		bool one = use_one_sided(t, rec);
		uint64_t bytes = rec->head_len;

		if (ftr_chan_is_shut(c)) {
			ret = -ESHUTDOWN;
			break;
		}
		ret = msg_put_bytes(t, rec->head, rec->head_len);
		for (int i = 0; !ret && i < rec->ndata; i++) {
			if (!rec->data[i].iov_len)
				continue;
			if (one)
				ret = place_piece(t, &rec->data[i], rec->slot[i] * rec->data[i].iov_len);
			else
				ret = msg_put_bytes(t, rec->data[i].iov_base, rec->data[i].iov_len);
			bytes += rec->data[i].iov_len;
		}
		if (!ret)
			ftr_stat_add(&c->st.tx_bytes, bytes);
	}
	if (!ret)
		ret = msg_post(t, RMSG_STREAM);
	if (!ret)
		ret = write_close(t);
	if (!ret)
		ret = chain_post(t);
	if (!ret && t->bnc_buf >= 0) {
		/* Its WRITEs are posted: free once they complete. */
		t->bnc_buf = -1;
	}
out:
	if (ret) {
		send_abandon(t);
		chain_post(t); /* what is gathered is whole: keep order simple */
	}
	pthread_mutex_unlock(&t->lk);
	return ret;
}

static int rdma_flush(struct ftr_chan *c)
{
	struct rdma_chan *t = to_rdma(c);
	int ret;

	pthread_mutex_lock(&t->lk);
	ret = chain_post(t);
	if (!ret)
		ret = tx_wait_for(t, NEED_IDLE, 0);
	pthread_mutex_unlock(&t->lk);
	return ret;
}

/* ---- receiving ------------------------------------------------------------------------ */

/* Gives the first queued message back to the receive queue once it is
 * consumed. Returns true if it did. */
static bool rx_pop_done(struct rdma_chan *t)
{
	const uint8_t *m;
	uint32_t b;
	int ret;

	if (!t->rxq_n)
		return false;
	b = t->rxq[t->rxq_head];
	m = rx_buf(t, b);
	if (t->rx_off < get_le32(m + 4) || t->rx_ent < ((uint32_t)m[2] | (uint32_t)m[3] << 8))
		return false;
	t->rxq_head = (t->rxq_head + 1) % RDMA_RECV_DEPTH;
	t->rxq_n--;
	t->rx_off = 0;
	t->rx_ent = 0;
	t->rx_ent_off = 0;
	ret = post_recv(t, b);
	if (ret) {
		set_err(t, ret, false, "ibv_post_recv: %s", strerror(-ret));
		return false;
	}
	t->reposted++;
	credit_update(t, false);
	return true;
}

/* Copies queued stream bytes into iov[*pi] + *poff onwards. Returns the
 * number of bytes delivered. */
static size_t rx_copy(struct rdma_chan *t, const struct iovec *iov, int iovcnt, int *pi,
		      size_t *poff)
{
	size_t total = 0;

	while (*pi < iovcnt && t->rxq_n && !t->err) {
		const uint8_t *m;
		uint8_t *dst = (uint8_t *)iov[*pi].iov_base + *poff;
		size_t room = iov[*pi].iov_len - *poff, k;
		uint32_t inl;

		if (rx_pop_done(t))
			continue;
		m = rx_buf(t, t->rxq[t->rxq_head]);
		inl = get_le32(m + 4);
		if (t->rx_off < inl) {
			k = FTR_MIN(room, (size_t)(inl - t->rx_off));
			memcpy(dst, m + RDMA_HDR_LEN + t->rx_off, k);
			t->rx_off += (uint32_t)k;
		} else {
			const uint8_t *e = m + RDMA_HDR_LEN + inl + t->rx_ent * RDMA_EXT_LEN;
			uint64_t off = get_le64(e);
			uint32_t elen = get_le32(e + 8);
			const uint8_t *src;

			/* Validated on arrival; staging may have gone since. */
			if (!t->staging || off + elen > t->staging->owner->len) {
				set_err(t, -EPROTO, false, "placed data arrived for staging memory that "
					"is no longer registered");
				break;
			}
			src = (const uint8_t *)t->staging->owner->addr + off + t->rx_ent_off;
			k = FTR_MIN(room, (size_t)(elen - t->rx_ent_off));
			/* The standby reads into the staging slots themselves:
			 * then the bytes are already where they belong. */
			if (src != dst) {
				memmove(dst, src, k);
				ftr_stat_add(&t->cnt.rx_placed_copied, k);
			}
			ftr_stat_add(&t->cnt.rx_placed_bytes, k);
			ftr_stat_add(&t->c.st.rx_placed_bytes, k);
			t->rx_ent_off += (uint32_t)k;
			if (t->rx_ent_off == elen) {
				t->rx_ent++;
				t->rx_ent_off = 0;
			}
		}
		total += k;
		*poff += k;
		while (*pi < iovcnt && *poff == iov[*pi].iov_len) {
			(*pi)++;
			*poff = 0;
		}
	}
	while (rx_pop_done(t))
		;
	return total;
}

static int rdma_recv_iov(struct ftr_chan *c, const struct iovec *iov, int iovcnt, int first_idle_ms)
{
	struct rdma_chan *t = to_rdma(c);
	uint64_t since = ftr_now_ms();
	bool started = false;
	size_t off = 0;
	int i = 0, ret;

	while (i < iovcnt && !iov[i].iov_len)
		i++;
	pthread_mutex_lock(&t->lk);
	for (;;) {
		size_t got;
		int limit;

		if (ftr_chan_is_shut(c)) {
			ret = -ESHUTDOWN;
			break;
		}
		progress(t);
		got = rx_copy(t, iov, iovcnt, &i, &off);
		if (got) {
			ftr_stat_add(&c->st.rx_bytes, got);
			started = true;
			since = ftr_now_ms();
		}
		if (i >= iovcnt) {
			ret = 0;
			break;
		}
		if (t->err) {
			ret = t->err;
			break;
		}
		if (t->peer_fin || t->peer_gone) {
			ret = started ? -ECONNRESET : -ENOTCONN;
			break;
		}
		limit = started ? ftr_chan_stall_ms(c) : first_idle_ms;
		if (limit >= 0) {
			uint64_t el = ftr_now_ms() - since;

			if (el >= (uint64_t)limit) {
				ret = started ? -ETIMEDOUT : -EAGAIN;
				break;
			}
			wait_event(t, (int64_t)((uint64_t)limit - el) * 1000, &c->st.rx_syscalls);
		} else {
			wait_event(t, -1, &c->st.rx_syscalls);
		}
	}
	pthread_mutex_unlock(&t->lk);
	return ret;
}

/* ---- registration ----------------------------------------------------------------------- */

/* Sends a staging advert (len 0 withdraws). lk held, send_lock held. */
static int advertise(struct rdma_chan *t, const struct rdma_reg *r)
{
	uint8_t *p;
	int ret;

	if (!t->established || t->err || t->peer_gone || t->disconnected)
		return t->err ? t->err : -ENOTCONN;
	ret = msg_open(t);
	if (ret)
		return ret;
	p = tx_buf(t, (uint32_t)t->msg_buf) + RDMA_HDR_LEN;
	put_le64(p, r ? (uintptr_t)r->owner->addr : 0);
	put_le64(p + 8, r ? r->owner->len : 0);
	put_le32(p + 16, r ? r->mr->rkey : 0);
	put_le32(p + 20, 0);
	t->msg_inline = RDMA_AD_LEN;
	ret = msg_post(t, RMSG_STAGING);
	if (!ret)
		ret = chain_post(t);
	if (ret)
		send_abandon(t);
	return ret;
}

/*
 * Before a read-only pin: every page of a source must be a real page of its
 * own. Older kernels (before 6.5) pin the shared zero page for a read-only
 * long-term pin of untouched anonymous memory, and the first write then
 * gives the process a new page the NIC never sees. Populating for write
 * first goes through the normal fault path (a userfaultfd, if any, handles
 * it). Best effort: without MADV_POPULATE_WRITE (before 5.14), or on memory
 * that refuses it, the pin populates what it can.
 */
static void populate_source(void *addr, size_t len)
{
	uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)addr & ~(ps - 1);
	uintptr_t e = ((uintptr_t)addr + len + ps - 1) & ~(ps - 1);

	if (madvise((void *)a, e - a, MADV_POPULATE_WRITE) < 0 && errno != EINVAL)
		pr_debug("populating %zu bytes of source memory: %s", len, strerror(errno));
}

static int rdma_reg_mem(struct ftr_chan *c, struct ftr_mr *m)
{
	struct rdma_chan *t = to_rdma(c);
	bool staging = m->flags & FTR_MR_STAGING;
	/* A source is only read by the NIC: pinned read-only, so that
	 * registering it takes no write fault. Memory write-protected by a
	 * userfaultfd (dirty tracking) cannot take one from inside the pin:
	 * the kernel refuses it (EFAULT). */
	int access = staging ? IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE : 0;
	struct rdma_reg *r;
	int ret = 0;

	if (!staging)
		populate_source(m->addr, m->len);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->owner = m;
	r->mr = reg_mr(t->pd, m->addr, m->len, access,
		       staging ? "staging memory" : "source memory", t->dev, &ret);
	if (!r->mr) {
		free(r);
		return ret;
	}
	pthread_mutex_lock(&c->send_lock);
	pthread_mutex_lock(&t->lk);
	if (staging && t->staging) {
		pr_err("%s: staging memory is already registered on this channel", c->peer);
		ret = -EBUSY;
	} else {
		r->next = t->regs;
		t->regs = r;
		/* A side in mode "send" never invites one-sided writes. */
		if (staging && t->mode == RDMA_MODE_WRITE) {
			t->staging = r;
			ret = advertise(t, r);
			if (ret) {
				t->staging = NULL;
				t->regs = r->next;
			}
		}
	}
	pthread_mutex_unlock(&t->lk);
	pthread_mutex_unlock(&c->send_lock);
	if (ret) {
		ibv_dereg_mr(r->mr);
		free(r);
	}
	return ret;
}

static void rdma_dereg_mem(struct ftr_mr *m)
{
	struct rdma_chan *t = to_rdma(m->chan);
	struct rdma_reg **pp, *r = NULL;

	pthread_mutex_lock(&t->c.send_lock);
	pthread_mutex_lock(&t->lk);
	for (pp = &t->regs; *pp; pp = &(*pp)->next) {
		if ((*pp)->owner == m) {
			r = *pp;
			*pp = r->next;
			break;
		}
	}
	if (r && r == t->staging) {
		t->staging = NULL;
		/* Best effort: writes the peer already posted fail the channel. */
		advertise(t, NULL);
	}
	pthread_mutex_unlock(&t->lk);
	pthread_mutex_unlock(&t->c.send_lock);
	if (r) {
		ibv_dereg_mr(r->mr);
		free(r);
	}
}

/* ---- shutdown and close ------------------------------------------------------------------ */

static void rdma_shutdown(struct ftr_chan *c)
{
	struct rdma_chan *t = to_rdma(c);
	uint64_t one = 1;

	/* c->shut is set. The eventfd wakes the thread asleep on the fds (and
	 * stays readable); the broadcast wakes those on the condvar. */
	if (write(t->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("%s: wake-up write failed: %s", c->peer, strerror(errno));
	pthread_mutex_lock(&t->lk);
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->lk);
}

/* Polls without sleeping on the wake-up fd (close runs after shutdown). */
static void close_wait(struct rdma_chan *t, enum rdma_need what, uint64_t end)
{
	while (!t->err && !t->peer_gone && !need_met(t, what, 0) && ftr_now_ms() < end) {
		progress(t);
		if (need_met(t, what, 0))
			break;
		/* A peer that closed first never completes our last sends
		 * (they retry on its destroyed QP): its DISCONNECTED ends the
		 * wait instead of the deadline. */
		cm_drain(t);
		pthread_mutex_unlock(&t->lk);
		usleep(200);
		pthread_mutex_lock(&t->lk);
	}
}

static void rdma_close(struct ftr_chan *c)
{
	struct rdma_chan *t = to_rdma(c);
	uint64_t end = ftr_now_ms() + RDMA_CLOSE_MS;

	pthread_mutex_lock(&t->lk);
	if (t->established && !t->err && !t->peer_gone && !t->disconnected) {
		/* Let what was sent arrive, then say FIN: the peer sees an
		 * orderly end rather than a reset. */
		chain_post(t);
		close_wait(t, NEED_IDLE, end);
		txb_reclaim(t);
		if (!t->err && !t->peer_gone && need_met(t, NEED_IDLE, 0) && credits(t) >= 1 &&
		    t->ntxb_free && !msg_open(t)) {
			if (!msg_post(t, RMSG_FIN) && !chain_post(t))
				close_wait(t, NEED_IDLE, end);
		}
	}
	if (t->established && !t->disconnected) {
		rdma_disconnect(t->id);
		t->disconnected = true;
	}
	pthread_mutex_unlock(&t->lk);
	if (t->cnt.write_bytes || t->cnt.rx_placed_bytes)
		pr_info("%s: closed; data one-sided: %" PRIu64 " bytes written (%" PRIu64
			" from registered sources in place), %" PRIu64 " bytes received in place "
			"(%" PRIu64 " copied out)", c->peer, t->cnt.write_bytes,
			t->cnt.write_zc_bytes, t->cnt.rx_placed_bytes, t->cnt.rx_placed_copied);
	ftr_chan_fini(c);
	chan_free(t);
}

/* ---- connect ------------------------------------------------------------------------------ */

static int expect_event(struct rdma_chan *t, enum rdma_cm_event_type want, int timeout_ms,
			const char *what, const char *where)
{
	struct rdma_cm_event *ev;
	int ret = cm_next(t->ec, -1, timeout_ms, &ev);

	if (ret) {
		if (ret == -ETIMEDOUT)
			pr_debug("%s %s: timed out", what, where);
		return ret;
	}
	if (ev->event == want) {
		rdma_ack_cm_event(ev);
		return 0;
	}
	pr_err("%s %s: %s (status %d)", what, where, rdma_event_str(ev->event), ev->status);
	ret = ev->event == RDMA_CM_EVENT_ADDR_ERROR || ev->event == RDMA_CM_EVENT_ROUTE_ERROR
		      ? -EHOSTUNREACH : -EIO;
	if (ev->status < 0)
		ret = ev->status;
	rdma_ack_cm_event(ev);
	return ret;
}

/* Waits for the answer to rdma_connect(). */
static int connect_result(struct rdma_chan *t, int timeout_ms, const char *where)
{
	struct rdma_cm_event *ev;
	int ret = cm_next(t->ec, -1, timeout_ms, &ev);

	if (ret)
		return ret;
	switch (ev->event) {
	case RDMA_CM_EVENT_ESTABLISHED:
		if (!priv_parse(t, ev->param.conn.private_data, ev->param.conn.private_data_len)) {
			pr_err("connect %s: the peer is not an ftrepl rdma endpoint of protocol %u",
			       where, RDMA_PROTO);
			ret = -EPROTO;
		}
		break;
	case RDMA_CM_EVENT_REJECTED:
		/* Reject reason 8 (invalid service ID): no listener on the port. */
		if (ev->status == 8)
			pr_debug("connect %s: refused (nobody listens there)", where);
		else
			pr_debug("connect %s: rejected (reason %d)", where, ev->status);
		ret = -ECONNREFUSED;
		break;
	case RDMA_CM_EVENT_UNREACHABLE:
		pr_debug("connect %s: unreachable (status %d)", where, ev->status);
		ret = ev->status == -ETIMEDOUT ? -ETIMEDOUT : -EHOSTUNREACH;
		break;
	default:
		pr_debug("connect %s: %s (status %d)", where, rdma_event_str(ev->event), ev->status);
		ret = -ECONNREFUSED;
		break;
	}
	rdma_ack_cm_event(ev);
	return ret;
}

static enum rdma_mode mode_from_opts(const struct ftr_tp_opts *o)
{
	for (int i = 0; o && o->mode && rdma_modes[i]; i++)
		if (!strcmp(rdma_modes[i], o->mode))
			return (enum rdma_mode)i;
	return RDMA_MODE_WRITE;
}

static int rdma_connect_op(const struct ftr_tp_opts *o, const char *host, uint16_t port,
			   int timeout_ms, struct ftr_chan **out)
{
	uint64_t end = ftr_now_ms() + (uint64_t)FTR_MAX(timeout_ms, 0);
	const char *want = o ? o->device : NULL;
	struct sockaddr_storage ss;
	struct rdma_conn_param cp;
	struct rdma_priv priv;
	struct rdma_chan *t;
	char where[128];
	int ret, step;

	ret = check_device_exists(want);
	if (ret)
		return ret;
	ret = resolve(host, port, false, &ss);
	if (ret)
		return ret;
	format_addr((struct sockaddr *)&ss, where, sizeof(where), true);
	t = chan_alloc(mode_from_opts(o));
	if (!t)
		return -ENOMEM;
	ret = open_cm(&t->ec, &t->id, t);
	if (ret)
		goto out_free;

	step = ftr_ms_left(timeout_ms, end);
	step = step < 0 ? RDMA_STEP_MS : FTR_MAX(FTR_MIN(step, RDMA_STEP_MS), 1);
	if (rdma_resolve_addr(t->id, NULL, (struct sockaddr *)&ss, step)) {
		ret = -errno;
		pr_err("connect %s: rdma_resolve_addr: %s", where, strerror(-ret));
		goto out_free;
	}
	ret = expect_event(t, RDMA_CM_EVENT_ADDR_RESOLVED, ftr_ms_left(timeout_ms, end),
			   "resolving", where);
	if (ret) {
		if (ret == -EHOSTUNREACH || ret == -ENODEV)
			pr_err("connect %s: no RDMA device reaches that address", where);
		goto out_free;
	}
	ret = check_id_device(t->id, want, rdma_get_local_addr(t->id));
	if (ret) {
		if (ftr_addr_is_loopback((struct sockaddr *)&ss))
			pr_err("connect %s: rdma_cm cannot use loopback addresses; use the IP "
			       "address of the RDMA device's network interface", where);
		goto out_free;
	}
	step = ftr_ms_left(timeout_ms, end);
	step = step < 0 ? RDMA_STEP_MS : FTR_MAX(FTR_MIN(step, RDMA_STEP_MS), 1);
	if (rdma_resolve_route(t->id, step)) {
		ret = -errno;
	} else {
		ret = expect_event(t, RDMA_CM_EVENT_ROUTE_RESOLVED, ftr_ms_left(timeout_ms, end),
				   "routing to", where);
	}
	if (ret) {
		if (ftr_addr_is_loopback((struct sockaddr *)&ss))
			pr_err("connect %s: rdma_cm cannot route loopback addresses; use the IP "
			       "address of the RDMA device's network interface", where);
		else
			pr_err("connect %s: no route (%s)", where, strerror(-ret));
		goto out_free;
	}
	ret = chan_setup(t);
	if (ret)
		goto out_free;
	priv_fill(t, &priv);
	cp = conn_param(&priv);
	if (rdma_connect(t->id, &cp)) {
		ret = -errno;
		pr_err("connect %s: rdma_connect: %s", where, strerror(-ret));
		goto out_free;
	}
	ret = connect_result(t, ftr_ms_left(timeout_ms, end), where);
	if (ret)
		goto out_free;
	chan_finish(t, out);
	pr_debug("connected to %s on %s port %u", where, t->dev, t->id->port_num);
	return 0;

out_free:
	chan_free(t);
	return ret;
}

/* ---- listen / accept ------------------------------------------------------------------- */

static int rdma_listen_op(const struct ftr_tp_opts *o, const char *host, uint16_t port,
			  struct ftr_listener **out)
{
	const char *want = o ? o->device : NULL;
	struct sockaddr_storage ss;
	struct rdma_listener *rl;
	char where[128];
	int one = 1, ret;

	ret = check_device_exists(want);
	if (ret)
		return ret;
	ret = resolve(host, port, true, &ss);
	if (ret)
		return ret;
	format_addr((struct sockaddr *)&ss, where, sizeof(where), true);
	rl = calloc(1, sizeof(*rl));
	if (!rl)
		return -ENOMEM;
	rl->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rl->wake_fd < 0) {
		ret = -errno;
		free(rl);
		return ret;
	}
	rl->mode = mode_from_opts(o);
	ftr_strlcpy(rl->device, want ? want : "", sizeof(rl->device));
	ret = open_cm(&rl->ec, &rl->id, rl);
	if (ret)
		goto out_free;
	rdma_set_option(rl->id, RDMA_OPTION_ID, RDMA_OPTION_ID_REUSEADDR, &one, sizeof(one));
	/* Bind only the address given: "[::]" must not take IPv4 too. */
	if (ss.ss_family == AF_INET6)
		rdma_set_option(rl->id, RDMA_OPTION_ID, RDMA_OPTION_ID_AFONLY, &one, sizeof(one));
	if (rdma_bind_addr(rl->id, (struct sockaddr *)&ss)) {
		ret = -errno;
		if (ret == -ENODEV || ret == -EADDRNOTAVAIL)
			pr_err("listen %s: no RDMA device has that address (%s)", where,
			       strerror(-ret));
		else
			pr_debug("listen %s: %s", where, strerror(-ret));
		goto out_free;
	}
	if (rl->id->verbs) {
		ret = check_id_device(rl->id, want, (struct sockaddr *)&ss);
		if (ret)
			goto out_free;
	}
	if (rdma_listen(rl->id, RDMA_BACKLOG)) {
		ret = -errno;
		pr_debug("listen %s: %s", where, strerror(-ret));
		goto out_free;
	}
	rl->l.ops = &ftr_rdma_transport;
	rl->l.port = ntohs(rdma_get_src_port(rl->id));
	atomic_init(&rl->l.shut, false);
	*out = &rl->l;
	return 0;

out_free:
	if (rl->id)
		rdma_destroy_id(rl->id);
	if (rl->ec)
		rdma_destroy_event_channel(rl->ec);
	close(rl->wake_fd);
	free(rl);
	return ret;
}

/* Sets up and accepts one connection request; on failure the request is
 * refused and everything freed. */
static int accept_one(struct rdma_listener *rl, struct rdma_cm_id *id, const void *pd,
		      size_t pdlen, struct ftr_chan **out)
{
	const char *dev = ibv_get_device_name(id->verbs->device);
	struct rdma_conn_param cp;
	struct rdma_priv priv;
	struct rdma_chan *t;
	char where[128];
	int ret;

	format_addr(rdma_get_peer_addr(id), where, sizeof(where), true);
	t = chan_alloc(rl->mode);
	if (!t) {
		rdma_reject(id, NULL, 0);
		rdma_destroy_id(id);
		return -ENOMEM;
	}
	t->id = id;
	id->context = t;
	if (!priv_parse(t, pd, pdlen)) {
		pr_warn("refused a connection from %s: not an ftrepl rdma peer of protocol %u",
			where, RDMA_PROTO);
		rdma_reject(id, NULL, 0);
		ret = -EPROTO;
		goto out_free;
	}
	if (rl->device[0] && strcmp(dev, rl->device)) {
		pr_warn("refused a connection from %s: it came through %s, not %s", where, dev,
			rl->device);
		rdma_reject(id, NULL, 0);
		ret = -ENODEV;
		goto out_free;
	}
	/* Its own event channel, so that its events never mix with the
	 * listener's (the request event is acked already). */
	t->ec = rdma_create_event_channel();
	if (!t->ec) {
		ret = -errno;
		rdma_reject(id, NULL, 0);
		goto out_free;
	}
	ret = set_nonblock(t->ec->fd);
	if (!ret && rdma_migrate_id(id, t->ec))
		ret = -errno;
	if (!ret)
		ret = chan_setup(t);
	if (ret) {
		rdma_reject(id, NULL, 0);
		goto out_free;
	}
	priv_fill(t, &priv);
	cp = conn_param(&priv);
	if (rdma_accept(id, &cp)) {
		ret = -errno;
		pr_warn("accepting %s: rdma_accept: %s", where, strerror(-ret));
		goto out_free;
	}
	ret = expect_event(t, RDMA_CM_EVENT_ESTABLISHED, RDMA_HANDSHAKE_MS, "accepting", where);
	if (ret)
		goto out_free;
	chan_finish(t, out);
	pr_debug("accepted %s on %s port %u", where, t->dev, id->port_num);
	return 0;

out_free:
	chan_free(t);
	return ret;
}

static int rdma_accept_op(struct ftr_listener *l, int timeout_ms, struct ftr_chan **out)
{
	struct rdma_listener *rl = to_rdma_listener(l);
	uint64_t end = ftr_now_ms() + (uint64_t)FTR_MAX(timeout_ms, 0);

	for (;;) {
		uint8_t pd[256];
		struct rdma_cm_event *ev;
		struct rdma_cm_id *id;
		size_t pdlen;
		int ret;

		if (atomic_load(&l->shut))
			return -ESHUTDOWN;
		ret = cm_next(rl->ec, rl->wake_fd, ftr_ms_left(timeout_ms, end), &ev);
		if (ret == -ETIMEDOUT)
			return -EAGAIN;
		if (ret)
			return ret;
		if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
			pr_debug("listener: %s (status %d)", rdma_event_str(ev->event), ev->status);
			rdma_ack_cm_event(ev);
			continue;
		}
		id = ev->id;
		pdlen = FTR_MIN((size_t)ev->param.conn.private_data_len, sizeof(pd));
		if (ev->param.conn.private_data && pdlen)
			memcpy(pd, ev->param.conn.private_data, pdlen);
		else
			pdlen = 0;
		rdma_ack_cm_event(ev);
		ret = accept_one(rl, id, pd, pdlen, out);
		if (!ret)
			return 0;
		/* That peer failed or gave up: keep waiting for the next one. */
		if (atomic_load(&l->shut))
			return -ESHUTDOWN;
		if (ftr_ms_left(timeout_ms, end) == 0)
			return -EAGAIN;
	}
}

static void rdma_listener_shutdown(struct ftr_listener *l)
{
	struct rdma_listener *rl = to_rdma_listener(l);
	uint64_t one = 1;

	if (write(rl->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("listener wake-up write failed: %s", strerror(errno));
}

static void rdma_listener_close(struct ftr_listener *l)
{
	struct rdma_listener *rl = to_rdma_listener(l);

	rdma_destroy_id(rl->id);
	rdma_destroy_event_channel(rl->ec);
	close(rl->wake_fd);
	free(rl);
}

/* ---- hooks (rdma_hooks.h) ------------------------------------------------------------- */

int ftr_rdma_get_counters(const struct ftr_chan *c, struct ftr_rdma_counters *out)
{
	const struct rdma_chan *t;
	const struct ftr_rdma_counters *s;

	if (!c || !out || c->ops != &ftr_rdma_transport)
		return -EINVAL;
	t = container_of(c, const struct rdma_chan, c);
	s = &t->cnt;
	out->sends = __atomic_load_n(&s->sends, __ATOMIC_RELAXED);
	out->writes = __atomic_load_n(&s->writes, __ATOMIC_RELAXED);
	out->write_bytes = __atomic_load_n(&s->write_bytes, __ATOMIC_RELAXED);
	out->write_zc_bytes = __atomic_load_n(&s->write_zc_bytes, __ATOMIC_RELAXED);
	out->inline_bytes = __atomic_load_n(&s->inline_bytes, __ATOMIC_RELAXED);
	out->rx_placed_bytes = __atomic_load_n(&s->rx_placed_bytes, __ATOMIC_RELAXED);
	out->rx_placed_copied = __atomic_load_n(&s->rx_placed_copied, __ATOMIC_RELAXED);
	out->credit_waits = __atomic_load_n(&s->credit_waits, __ATOMIC_RELAXED);
	out->credit_writes = __atomic_load_n(&s->credit_writes, __ATOMIC_RELAXED);
	out->msg_size = s->msg_size;
	out->recv_depth = s->recv_depth;
	out->peer_staging = __atomic_load_n(&s->peer_staging, __ATOMIC_RELAXED);
	return 0;
}

int ftr_rdma_set_knob(struct ftr_chan *c, enum ftr_rdma_knob k, uint64_t val)
{
	struct rdma_chan *t;
	int ret = 0;

	if (!c || c->ops != &ftr_rdma_transport)
		return -EINVAL;
	t = to_rdma(c);
	pthread_mutex_lock(&t->lk);
	switch (k) {
	case FTR_RDMA_KNOB_RKEY_XOR:
		t->knob_rkey_xor = val;
		break;
	case FTR_RDMA_KNOB_NO_RANGE_CHECK:
		t->knob_no_range = val != 0;
		break;
	default:
		ret = -EINVAL;
		break;
	}
	pthread_mutex_unlock(&t->lk);
	return ret;
}

/* ---- the ops table ------------------------------------------------------------------- */

const struct ftr_transport_ops ftr_rdma_transport = {
	.name = "rdma",
	.modes = rdma_modes,
	.listen = rdma_listen_op,
	.accept = rdma_accept_op,
	.listener_shutdown = rdma_listener_shutdown,
	.listener_close = rdma_listener_close,
	.connect = rdma_connect_op,
	.reg_mem = rdma_reg_mem,
	.dereg_mem = rdma_dereg_mem,
	.send = rdma_send,
	.flush = rdma_flush,
	.recv_iov = rdma_recv_iov,
	.shutdown = rdma_shutdown,
	.close = rdma_close,
};
