/* SPDX-License-Identifier: MIT */
/*
 * ftr-proxy: a plain TCP relay for the migration recovery scenario. Killing
 * it (SIGKILL) cuts every connection that goes through it at once, like a
 * network failure seen by both ends; starting it again on the same port
 * lets the source reconnect.
 *
 *   ftr-proxy --listen 127.0.0.1:0 --to 127.0.0.1:7000 --port-file P
 *   ftr-proxy --listen 127.0.0.1:7001 --to 127.0.0.1:7000
 *
 * Threads: the main thread accepts; one thread per relayed connection
 * copies both directions (poll + read + send) and closes its own sockets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ftrepl/ftrepl.h>

struct relay {
	int a, b;
};

static struct sockaddr_storage to_addr;
static socklen_t to_len;

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	static __thread char buf[1 << 16];

	for (;;) {
		struct pollfd pf[2] = { { .fd = r->a, .events = POLLIN }, { .fd = r->b, .events = POLLIN } };

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			ssize_t n, off = 0;

			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(pf[i].fd, buf, sizeof(buf));
			if (n <= 0)
				goto out;
			while (off < n) {
				ssize_t w = send(pf[1 - i].fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

				if (w <= 0)
					goto out;
				off += w;
			}
		}
	}
out:
	shutdown(r->a, SHUT_RDWR);
	shutdown(r->b, SHUT_RDWR);
	close(r->a);
	close(r->b);
	free(r);
	return NULL;
}

static int resolve(const char *hostport, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	char host[256], port[16];
	uint16_t p;

	if (ftr_parse_hostport(hostport, host, sizeof(host), &p))
		return -1;
	snprintf(port, sizeof(port), "%u", p);
	if (getaddrinfo(host, port, &hints, &res))
		return -1;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ftr-proxy --listen ADDR:PORT --to ADDR:PORT [--port-file FILE]\n"
		   "example: ftr-proxy --listen 127.0.0.1:7001 --to 127.0.0.1:7000\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "to", required_argument, NULL, 't' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_at = NULL, *to = NULL, *port_file = NULL;
	struct sockaddr_storage la;
	socklen_t llen;
	int c, lfd, one = 1;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen_at = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'p':
			port_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!listen_at || !to) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (resolve(listen_at, &la, &llen) || resolve(to, &to_addr, &to_len)) {
		fprintf(stderr, "ftr-proxy: cannot resolve the addresses\n");
		return 2;
	}
	lfd = socket(la.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&la, llen) || listen(lfd, 64)) {
		fprintf(stderr, "ftr-proxy: cannot listen on %s: %s\n", listen_at, strerror(errno));
		return 1;
	}
	llen = sizeof(la);
	getsockname(lfd, (struct sockaddr *)&la, &llen);
	if (port_file) {
		FILE *f = fopen(port_file, "w");
		uint16_t port = ntohs(((struct sockaddr_in *)&la)->sin_port);

		if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f)) {
			fprintf(stderr, "ftr-proxy: cannot write %s\n", port_file);
			return 1;
		}
	}
	for (;;) {
		struct relay *r;
		pthread_t th;
		int a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), b;

		if (a < 0)
			continue;
		b = socket(to_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (b < 0 || connect(b, (struct sockaddr *)&to_addr, to_len)) {
			close(a);
			if (b >= 0)
				close(b);
			continue;
		}
		setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		r = malloc(sizeof(*r));
		if (!r) {
			close(a);
			close(b);
			continue;
		}
		r->a = a;
		r->b = b;
		if (pthread_create(&th, NULL, relay_main, r)) {
			close(a);
			close(b);
			free(r);
			continue;
		}
		pthread_detach(th);
	}
}
