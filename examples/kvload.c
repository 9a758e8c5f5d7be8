/* SPDX-License-Identifier: MIT */
/*
 * kvload: load generator and checker for the kvserver example.
 *
 * Load mode: N connections, each with up to W SETs in flight, of unique
 * keys ("PREFIX-CONN-SEQ") with a value derived from the key
 * (kv_value_for() in kvtable.h). Every key whose "OK KEY" reply arrived is
 * appended to the keys file: that is the list of acknowledged SETs. It
 * runs until --duration is over (then waits up to 5 s for the replies in
 * flight) or until the server closes every connection (a crash, or the
 * end of protection), and writes the keys file either way.
 *
 * Check mode: reads a dumped region image (`ftreplctl dump`: every region
 * in order, concatenated; the kv table is the kvserver's only region, so
 * it starts at offset 0 unless --offset says otherwise) and verifies that
 * every acknowledged key is in the table with the right value. Output
 * commit promises exactly this after a failover: a reply was released only
 * after the epoch with its SET was committed on the standby.
 *
 * Examples:
 *   kvload --connect 127.0.0.1:7700 --keys /tmp/acked --conns 4 --duration 10
 *   ftreplctl --control /tmp/rx.sock dump /tmp/image
 *   kvload --check /tmp/image --keys /tmp/acked
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvtable.h"

#define MAX_CONNS 64
#define MAX_WINDOW 256
#define DRAIN_MS 5000

struct lconn {
	int fd;
	unsigned id;
	bool done;
	uint64_t next_seq;	/* next key to send */
	uint64_t acked_seq;	/* replies are in order: the next one is for this key */
	char in[4096];
	size_t inlen;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int make_key(char *out, const char *prefix, unsigned conn, uint64_t seq)
{
	return snprintf(out, KV_KEY_MAX + 1, "%s-%u-%llu", prefix, conn, (unsigned long long)seq);
}

static int connect_to(const char *spec)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const char *colon = strrchr(spec, ':');
	char host[64];
	int fd, one = 1;

	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -EINVAL;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/* Sends SETs until the window is full (blocking writes are fine here:
 * requests are tiny and the server reads them at once). */
static int fill_window(struct lconn *c, const char *prefix, unsigned window, uint64_t *sent)
{
	char buf[MAX_WINDOW * 80];
	size_t len = 0;

	while (c->next_seq - c->acked_seq < window) {
		char key[KV_KEY_MAX + 1], val[KV_VAL_MAX + 1];
		int kl = make_key(key, prefix, c->id, c->next_seq);

		kv_value_for(key, (size_t)kl, val);
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "SET %s %s\n", key, val);
		c->next_seq++;
		(*sent)++;
	}
	for (size_t off = 0; off < len;) {
		ssize_t n = write(c->fd, buf + off, len - off);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			usleep(100);
			continue;
		}
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

static int run_load(const char *addr, const char *keys_path, unsigned nconns, unsigned window,
		    double duration, const char *prefix)
{
	struct lconn conns[MAX_CONNS];
	uint64_t sent = 0, acked = 0, errors = 0, start = now_ms(), end_send, end_drain;
	unsigned open_conns = 0, closed_by_server = 0;
	FILE *keys = fopen(keys_path, "w");
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (!keys || ep < 0) {
		fprintf(stderr, "kvload: %s: %s\n", keys_path, strerror(errno));
		return 1;
	}
	end_send = start + (uint64_t)(duration * 1000);
	end_drain = end_send + DRAIN_MS;
	for (unsigned i = 0; i < nconns; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
		int fd = connect_to(addr);

		if (fd < 0) {
			fprintf(stderr, "kvload: connect %s: %s\n", addr, strerror(-fd));
			return 1;
		}
		conns[i] = (struct lconn){ .fd = fd, .id = i };
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		open_conns++;
		if (fill_window(&conns[i], prefix, window, &sent))
			conns[i].done = true;
	}
	printf("kvload: %u connections to %s\n", nconns, addr); /* scripts wait for this */
	fflush(stdout);
	while (open_conns) {
		struct epoll_event evs[MAX_CONNS];
		uint64_t now = now_ms();
		int n;

		if (stop_flag || now >= end_drain)
			break;
		n = epoll_wait(ep, evs, MAX_CONNS, 100);
		for (int i = 0; i < n; i++) {
			struct lconn *c = &conns[evs[i].data.u32];
			char *start_line, *nl;
			ssize_t r;

			if (c->done)
				continue;
			r = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				/* The server went away (crash, end of protection). */
				c->done = true;
				closed_by_server++;
				open_conns--;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				continue;
			}
			c->inlen += (size_t)r;
			start_line = c->in;
			while ((nl = memchr(start_line, '\n', c->inlen - (size_t)(start_line - c->in)))) {
				char want[KV_KEY_MAX + 1];

				*nl = '\0';
				make_key(want, prefix, c->id, c->acked_seq);
				if (strncmp(start_line, "OK ", 3) || strcmp(start_line + 3, want)) {
					if (errors++ < 5)
						fprintf(stderr, "kvload: conn %u: expected \"OK %s\", got \"%s\"\n",
							c->id, want, start_line);
				} else {
					fprintf(keys, "%s\n", want);
					acked++;
				}
				c->acked_seq++;
				start_line = nl + 1;
			}
			c->inlen -= (size_t)(start_line - c->in);
			memmove(c->in, start_line, c->inlen);
			if (now < end_send && !stop_flag &&
			    fill_window(c, prefix, window, &sent)) {
				c->done = true;
				closed_by_server++;
				open_conns--;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
			} else if (now >= end_send && c->acked_seq == c->next_seq) {
				c->done = true; /* drained */
				open_conns--;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
			}
		}
	}
	for (unsigned i = 0; i < nconns; i++)
		if (!conns[i].done)
			close(conns[i].fd);
	if (fclose(keys)) {
		fprintf(stderr, "kvload: writing %s: %s\n", keys_path, strerror(errno));
		return 1;
	}
	printf("kvload: %llu SETs sent, %llu acknowledged, %llu bad replies, %u of %u connections"
	       " closed by the server, %.1f s\n", (unsigned long long)sent,
	       (unsigned long long)acked, (unsigned long long)errors, closed_by_server, nconns,
	       (double)(now_ms() - start) / 1000.0);
	return errors ? 1 : 0;
}

static int run_check(const char *image, const char *keys_path, uint64_t offset)
{
	struct kv_header *h;
	struct kv_slot *s;
	uint64_t used = 0, checked = 0, missing = 0, wrong = 0;
	char line[256];
	struct stat st;
	FILE *keys;
	void *map;
	int fd = open(image, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "kvload: %s: %s\n", image, strerror(errno));
		return 2;
	}
	if ((uint64_t)st.st_size < offset + KV_HEADER_BYTES) {
		fprintf(stderr, "kvload: %s: too small for a kv table at offset %llu\n", image,
			(unsigned long long)offset);
		return 1;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "kvload: mmap %s: %s\n", image, strerror(errno));
		return 2;
	}
	h = (struct kv_header *)((char *)map + offset);
	if (h->magic != KV_MAGIC || !h->nslots ||
	    kv_region_bytes(h->nslots) > (uint64_t)st.st_size - offset) {
		fprintf(stderr, "kvload: %s: no kv table at offset %llu (magic %#llx, %llu slots)\n",
			image, (unsigned long long)offset, (unsigned long long)h->magic,
			(unsigned long long)h->nslots);
		return 1;
	}
	s = kv_slots(h);
	for (uint64_t i = 0; i < h->nslots; i++)
		used += s[i].used != 0;
	if (used != h->count) {
		fprintf(stderr, "kvload: table header says %llu keys, %llu slots are in use\n",
			(unsigned long long)h->count, (unsigned long long)used);
		return 1;
	}
	keys = fopen(keys_path, "r");
	if (!keys) {
		fprintf(stderr, "kvload: %s: %s\n", keys_path, strerror(errno));
		return 2;
	}
	while (fgets(line, sizeof(line), keys)) {
		size_t kl = strcspn(line, "\n");
		char want[KV_VAL_MAX + 1];
		struct kv_slot *slot;
		bool found;

		line[kl] = '\0';
		if (!kl)
			continue;
		checked++;
		slot = kv_find(h, line, kl, &found);
		if (!found) {
			if (missing++ < 5)
				fprintf(stderr, "kvload: acknowledged key %s is missing\n", line);
			continue;
		}
		kv_value_for(line, kl, want);
		if (slot->vlen != strlen(want) || memcmp(slot->val, want, slot->vlen)) {
			if (wrong++ < 5)
				fprintf(stderr, "kvload: key %s holds \"%.*s\", expected \"%s\"\n", line,
					(int)slot->vlen, slot->val, want);
		}
	}
	fclose(keys);
	printf("kvload: %llu acknowledged keys checked: %llu missing, %llu with a wrong value;"
	       " the table holds %llu keys after %llu SETs\n", (unsigned long long)checked,
	       (unsigned long long)missing, (unsigned long long)wrong, (unsigned long long)used,
	       (unsigned long long)h->sets);
	return missing || wrong ? 1 : 0;
}

static void usage(void)
{
	printf("Usage: kvload --connect ADDR:PORT --keys FILE [--conns N] [--window W]\n"
	       "              [--duration SECONDS] [--prefix P]\n"
	       "       kvload --check IMAGE --keys FILE [--offset BYTES]\n"
	       "\n"
	       "Load: SETs of unique keys over N connections (default 4), W in flight on each\n"
	       "(default 8), for SECONDS (default 10) or until the server closes; every key\n"
	       "whose reply arrived is written to FILE.\n"
	       "Check: every key in FILE must be in the kv table of IMAGE (a `ftreplctl dump`;\n"
	       "the table at --offset, default 0) with the value derived from the key.\n"
	       "Exit: 0 ok, 1 a check or protocol failure, 2 usage or I/O error.\n"
	       "\n"
	       "Example:\n"
	       "  kvload --connect 127.0.0.1:7700 --keys /tmp/acked --duration 5\n"
	       "  kvload --check /tmp/image --keys /tmp/acked\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "keys", required_argument, NULL, 'k' },
		{ "conns", required_argument, NULL, 'n' },
		{ "window", required_argument, NULL, 'w' },
		{ "duration", required_argument, NULL, 'd' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "check", required_argument, NULL, 'C' },
		{ "offset", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *addr = NULL, *keys = NULL, *image = NULL, *prefix = "k";
	unsigned nconns = 4, window = 8;
	double duration = 10;
	uint64_t offset = 0;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			addr = optarg;
			break;
		case 'k':
			keys = optarg;
			break;
		case 'n':
			nconns = (unsigned)atoi(optarg);
			break;
		case 'w':
			window = (unsigned)atoi(optarg);
			break;
		case 'd':
			duration = atof(optarg);
			break;
		case 'p':
			prefix = optarg;
			break;
		case 'C':
			image = optarg;
			break;
		case 'o':
			offset = strtoull(optarg, NULL, 0);
			break;
		case 'h':
			usage();
			return 0;
		default:
			fprintf(stderr, "kvload: bad usage (try --help)\n");
			return 2;
		}
	}
	if (!keys || (!addr == !image)) {
		fprintf(stderr, "kvload: give --keys FILE and one of --connect or --check (try --help)\n");
		return 2;
	}
	if (image)
		return run_check(image, keys, offset);
	if (nconns < 1 || nconns > MAX_CONNS || window < 1 || window > MAX_WINDOW ||
	    duration <= 0 || strlen(prefix) > 8 || !*prefix) {
		fprintf(stderr, "kvload: --conns 1..%d, --window 1..%d, --duration > 0, --prefix"
			" of 1..8 bytes\n", MAX_CONNS, MAX_WINDOW);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	return run_load(addr, keys, nconns, window, duration, prefix);
}
