/* SPDX-License-Identifier: MIT */
/*
 * kvserver: a small TCP key-value server protected by ftrepl.
 *
 * Its whole state is a fixed-size hash table (kvtable.h) in one protected
 * region, replicated by `ftrepl-sender --attach-sock`. Every reply goes
 * through output commit: it is handed to ftrepl_output_hold() and written
 * to the client only once the epoch holding the SET (or the state a GET
 * read) is committed by the standby. So an "OK" a client has seen survives
 * a crash of this host: the standby's image has the key.
 *
 * Protocol, one request per line:
 *   SET KEY VALUE   -> "OK KEY"          (KEY 1..27 bytes, VALUE 1..32, no spaces)
 *   GET KEY         -> "VAL VALUE" | "NONE"
 *   anything else   -> "ERR reason"
 *
 * One thread: an epoll loop over the listener, the clients and
 * ftrepl_fd(). Each turn starts with ftrepl_safe_point(), which is where
 * the sender's pauses happen (between requests, never inside one) and
 * where due replies are released (release_in_dispatch: the callbacks run
 * in this thread, which owns the sockets).
 *
 * Ends with exit 0 when the sender stops protection orderly (after the
 * released replies are flushed), 3 when the session is lost (replies not
 * released are dropped: they were never sent), 1 on errors.
 *
 * Example:
 *   ftrepl-sender --tcp 127.0.0.1:7600 --attach-sock /tmp/kv.sock &
 *   kvserver --attach /tmp/kv.sock --listen 127.0.0.1:7700
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ftrepl/client.h>

#include "kvtable.h"

#define IN_MAX 4096
#define MAX_EVENTS 64

struct conn {
	int fd;
	bool closed;		/* no more I/O; freed once no reply is held */
	bool want_out;		/* EPOLLOUT registered */
	unsigned held;		/* replies waiting for their epoch */
	size_t inlen;
	char in[IN_MAX];
	char *out;
	size_t outlen, outcap;
	struct conn *next;
};

static struct {
	struct kv_header *h;
	int ep;
	int lfd;
	struct conn *conns;
	bool sync_on_reply;
	uint64_t replies_sent, replies_dropped;
} kv;

static char listen_tag, ftr_tag; /* epoll cookies */

static void die(const char *what, int err)
{
	fprintf(stderr, "kvserver: %s: %s\n", what, strerror(err));
	exit(1);
}

static void conn_close(struct conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	epoll_ctl(kv.ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
}

/* Writes what can be written now; registers for EPOLLOUT otherwise. */
static void conn_flush(struct conn *c)
{
	size_t off = 0;
	bool want;

	while (!c->closed && off < c->outlen) {
		ssize_t n = write(c->fd, c->out + off, c->outlen - off);

		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			break;
		} else {
			conn_close(c);
			return;
		}
	}
	memmove(c->out, c->out + off, c->outlen - off);
	c->outlen -= off;
	want = c->outlen > 0;
	if (!c->closed && want != c->want_out) {
		struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0),
					  .data.ptr = c };

		epoll_ctl(kv.ep, EPOLL_CTL_MOD, c->fd, &ev);
		c->want_out = want;
	}
}

/* Output commit: called once the reply's epoch is acked (status 0), or
 * with -ECANCELED when the session was lost first: never sent then. */
static void on_release(void *arg, const void *buf, size_t len, int status)
{
	struct conn *c = arg;

	c->held--;
	if (status) {
		kv.replies_dropped++;
		return;
	}
	kv.replies_sent++;
	if (c->closed)
		return;
	if (c->outlen + len > c->outcap) {
		size_t cap = (c->outlen + len) * 2;
		char *p = realloc(c->out, cap);

		if (!p) {
			conn_close(c);
			return;
		}
		c->out = p;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, buf, len);
	c->outlen += len;
	conn_flush(c);
}

static bool reply(struct conn *c, const char *text)
{
	int ret = ftrepl_output_hold(text, strlen(text), on_release, c);

	if (ret)
		return false; /* the session has ended: nothing more is answered */
	c->held++;
	return true;
}

/* Applies one request line to the table; the reply is held. */
static bool handle_request(struct conn *c, char *line)
{
	char *cmd = strtok(line, " \r"), *key = strtok(NULL, " \r"), *val = strtok(NULL, " \r");
	char out[96];
	size_t klen = key ? strlen(key) : 0;
	struct kv_slot *s;
	bool found;

	if (!cmd || !key || !klen || klen > KV_KEY_MAX)
		return reply(c, "ERR expected SET KEY VALUE or GET KEY (KEY 1..27 bytes)\n");
	if (!strcmp(cmd, "SET")) {
		size_t vlen = val ? strlen(val) : 0;

		if (!vlen || vlen > KV_VAL_MAX || strtok(NULL, " \r"))
			return reply(c, "ERR SET needs one VALUE of 1..32 bytes\n");
		s = kv_find(kv.h, key, klen, &found);
		if (!s)
			return reply(c, "ERR table full\n");
		if (!found) {
			memcpy(s->key, key, klen);
			s->key[klen] = '\0';
			s->klen = (uint8_t)klen;
			s->used = 1;
			kv.h->count++;
		}
		memcpy(s->val, val, vlen);
		s->vlen = (uint8_t)vlen;
		kv.h->sets++;
		ftrepl_set_progress(kv.h->sets);
		snprintf(out, sizeof(out), "OK %s\n", key);
		return reply(c, out);
	}
	if (!strcmp(cmd, "GET")) {
		s = kv_find(kv.h, key, klen, &found);
		if (!found)
			return reply(c, "NONE\n");
		snprintf(out, sizeof(out), "VAL %.*s\n", (int)s->vlen, s->val);
		return reply(c, out);
	}
	return reply(c, "ERR unknown command\n");
}

/* Reads what is there and serves every complete line. Returns how many
 * replies were held. */
static unsigned conn_read(struct conn *c)
{
	unsigned n = 0;

	for (;;) {
		ssize_t r = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
		char *start = c->in, *nl;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return n;
		if (r <= 0) {
			conn_close(c);
			return n;
		}
		c->inlen += (size_t)r;
		while ((nl = memchr(start, '\n', c->inlen - (size_t)(start - c->in)))) {
			*nl = '\0';
			if (!handle_request(c, start)) {
				conn_close(c);
				return n;
			}
			n++;
			start = nl + 1;
		}
		c->inlen -= (size_t)(start - c->in);
		memmove(c->in, start, c->inlen);
		if (c->inlen == sizeof(c->in)) {
			conn_close(c); /* a line longer than the buffer */
			return n;
		}
	}
}

static void accept_all(void)
{
	for (;;) {
		int fd = accept4(kv.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct epoll_event ev = { .events = EPOLLIN };
		struct conn *c;

		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		ev.data.ptr = c;
		if (epoll_ctl(kv.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = kv.conns;
		kv.conns = c;
	}
}

/* Frees the connections that are closed and hold no reply any more. */
static void sweep(void)
{
	for (struct conn **pp = &kv.conns; *pp;) {
		struct conn *c = *pp;

		if (c->closed && !c->held) {
			*pp = c->next;
			free(c->out);
			free(c);
		} else {
			pp = &c->next;
		}
	}
}

/* After an orderly stop: push the released replies out (bounded). */
static void flush_all(int ms)
{
	for (int t = 0; t < ms / 10; t++) {
		bool pending = false;

		for (struct conn *c = kv.conns; c; c = c->next) {
			if (!c->closed && c->outlen) {
				conn_flush(c);
				pending |= c->outlen > 0;
			}
		}
		if (!pending)
			return;
		poll(NULL, 0, 10);
	}
}

static int listen_on(const char *spec, const char *port_file)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	char host[64];
	const char *colon = strrchr(spec, ':');
	int fd, one = 1;

	if (!colon || (size_t)(colon - spec) >= sizeof(host)) {
		fprintf(stderr, "kvserver: --listen %s: expected ADDR:PORT\n", spec);
		exit(2);
	}
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "kvserver: --listen %s: not an IPv4 address\n", spec);
		exit(2);
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket", errno);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		die(spec, errno);
	printf("kvserver: listening on %s:%u\n", host, ntohs(sa.sin_port));
	fflush(stdout);
	if (port_file) {
		char tmp[4096];
		FILE *f;

		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		f = fopen(tmp, "w");
		if (!f || fprintf(f, "%u\n", ntohs(sa.sin_port)) < 0 || fclose(f) ||
		    rename(tmp, port_file))
			die(port_file, errno);
	}
	return fd;
}

static void usage(void)
{
	printf("Usage: kvserver --attach SOCK [--listen ADDR:PORT] [options]\n"
	       "\n"
	       "A TCP key-value server whose table lives in a region protected by ftrepl;\n"
	       "replies are sent only once the standby committed the state behind them.\n"
	       "\n"
	       "  --attach SOCK        the sender's attach socket (ftrepl-sender --attach-sock)\n"
	       "  --listen ADDR:PORT   where clients connect (default 127.0.0.1:0: any port)\n"
	       "  --port-file FILE     write the port bound to FILE (for scripts)\n"
	       "  --slots N            table slots, 64 bytes each (default 65536)\n"
	       "  --tracking MODE      auto (default), wp-async or scan\n"
	       "  --sync-on-reply      ask for an epoch as soon as a reply is held\n"
	       "                       (Kemari's event-driven sync: lower reply latency)\n"
	       "\n"
	       "Requests: SET KEY VALUE -> OK KEY; GET KEY -> VAL VALUE | NONE.\n"
	       "Exit: 0 protection ended orderly, 3 session lost, 1 error, 2 usage.\n"
	       "\n"
	       "Example:\n"
	       "  ftrepl-sender --tcp 127.0.0.1:7600 --attach-sock /tmp/kv.sock &\n"
	       "  kvserver --attach /tmp/kv.sock --listen 127.0.0.1:7700\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "attach", required_argument, NULL, 'a' },
		{ "listen", required_argument, NULL, 'l' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "slots", required_argument, NULL, 's' },
		{ "tracking", required_argument, NULL, 't' },
		{ "sync-on-reply", no_argument, NULL, 'y' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ftrepl_attach_opts o = { .release_in_dispatch = true };
	const char *sock = NULL, *listen_spec = "127.0.0.1:0", *port_file = NULL;
	struct epoll_event ev;
	uint64_t slots = 65536;
	int opt, ret;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'a':
			sock = optarg;
			break;
		case 'l':
			listen_spec = optarg;
			break;
		case 'p':
			port_file = optarg;
			break;
		case 's':
			slots = strtoull(optarg, NULL, 10);
			if (slots < 16 || slots > (1ull << 26)) {
				fprintf(stderr, "kvserver: --slots %s: 16 .. 67108864\n", optarg);
				return 2;
			}
			break;
		case 't':
			if (!strcmp(optarg, "auto"))
				o.tracking = FTREPL_TRACK_AUTO;
			else if (!strcmp(optarg, "wp-async"))
				o.tracking = FTREPL_TRACK_WP_ASYNC;
			else if (!strcmp(optarg, "scan"))
				o.tracking = FTREPL_TRACK_SCAN;
			else {
				fprintf(stderr, "kvserver: --tracking %s: auto, wp-async or scan\n",
					optarg);
				return 2;
			}
			break;
		case 'y':
			kv.sync_on_reply = true;
			break;
		case 'h':
			usage();
			return 0;
		default:
			fprintf(stderr, "kvserver: bad usage (try --help)\n");
			return 2;
		}
	}
	if (!sock) {
		fprintf(stderr, "kvserver: --attach SOCK is required (try --help)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	/* The table is created before the attach: the layout is then fixed. */
	ret = ftrepl_region_create("kvtable", kv_region_bytes(slots), (void **)&kv.h);
	if (ret)
		die("creating the protected region", -ret);
	kv.h->magic = KV_MAGIC;
	kv.h->nslots = slots;
	kv.lfd = listen_on(listen_spec, port_file);
	ret = ftrepl_attach(sock, &o);
	if (ret) {
		fprintf(stderr, "kvserver: attach to %s: %s\n", sock, ftrepl_last_error());
		return 1;
	}
	{
		struct ftrepl_status st;

		ftrepl_get_status(&st);
		printf("kvserver: protected (%s tracking), %llu slots\n", st.tracking,
		       (unsigned long long)slots);
		fflush(stdout);
	}

	kv.ep = epoll_create1(EPOLL_CLOEXEC);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &listen_tag };
	if (kv.ep < 0 || epoll_ctl(kv.ep, EPOLL_CTL_ADD, kv.lfd, &ev) < 0)
		die("epoll", errno);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &ftr_tag };
	if (epoll_ctl(kv.ep, EPOLL_CTL_ADD, ftrepl_fd(), &ev) < 0)
		die("epoll", errno);

	for (;;) {
		struct epoll_event evs[MAX_EVENTS];
		unsigned held = 0;
		int n;

		/* The only place a pause can happen: between requests. */
		ret = ftrepl_safe_point();
		if (ret)
			break;
		sweep();
		n = epoll_wait(kv.ep, evs, MAX_EVENTS, -1);
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			struct conn *c = p;

			if (p == &listen_tag) {
				accept_all();
			} else if (p != &ftr_tag && !c->closed) {
				if (evs[i].events & EPOLLOUT)
					conn_flush(c);
				if (!c->closed && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
					held += conn_read(c);
			}
		}
		if (held && kv.sync_on_reply)
			ftrepl_sync_now();
	}
	if (ret == -ESHUTDOWN) {
		flush_all(2000);
		printf("kvserver: protection ended orderly: %llu SETs, %llu replies sent\n",
		       (unsigned long long)kv.h->sets, (unsigned long long)kv.replies_sent);
		ftrepl_detach();
		return 0;
	}
	fprintf(stderr, "kvserver: %s; %llu replies sent, the ones not released are dropped\n",
		ftrepl_last_error(), (unsigned long long)kv.replies_sent);
	ftrepl_detach();
	return 3;
}
