/* SPDX-License-Identifier: MIT */
/*
 * The floor of --postcopy: the least it costs on this machine to move a
 * region over TCP into anonymous memory registered with userfaultfd, the
 * way any postcopy destination must place pages (as QEMU and ftrepl's
 * FTR_MIG_MEM_ANON do), with nothing else: no protocol, no checksum, no
 * workload, no faults. A sender child (tx_ns) streams a region it filled,
 * over nstreams connections, each a contiguous slice in FTB_BS_CHUNK
 * pieces; a receiver child (rx_ns) receives each piece into a bounce buffer
 * and installs it with one UFFDIO_COPY. The time runs from the receiver's
 * first accept to its last install.
 *
 * Every wait is bounded: sockets time out after FTB_BS_IO_TIMEOUT_S, the
 * parent waits for the result at most timeout_ms and kills both children.
 * Threads: one per stream in each child (exit with the child).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/common.h"
#include "ftbench.h"
#include "uffd/uffd_io.h"

#define FTB_BS_CHUNK (1u << 20)		/* a piece: as ftrepl's records, 256 pages */
#define FTB_BS_MAX_STREAMS 16
#define FTB_BS_IO_TIMEOUT_S 30

struct bs_res {
	int32_t ret;
	uint64_t ns;			/* receiver: first accept to last install */
	uint64_t bytes;
	char err[128];
};

struct bs_stream {
	int fd, uffd;
	uint8_t *base;			/* the slice */
	uint64_t len;
	int ret;
};

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = FTB_BS_IO_TIMEOUT_S };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void *rx_stream(void *arg)
{
	struct bs_stream *st = arg;
	uint8_t *bounce = aligned_alloc(4096, FTB_BS_CHUNK);

	st->ret = bounce ? 0 : -ENOMEM;
	for (uint64_t off = 0; !st->ret && off < st->len; off += FTB_BS_CHUNK) {
		size_t n = (size_t)FTR_MIN((uint64_t)FTB_BS_CHUNK, st->len - off);
		struct uffdio_copy cp = { .dst = (uintptr_t)(st->base + off),
					  .src = (uintptr_t)bounce, .len = n };
		size_t got = 0;

		/* MSG_WAITALL: one syscall per piece, the cheapest receive
		 * (ftb_read_full would poll before each read) */
		while (got < n) {
			ssize_t r = recv(st->fd, bounce + got, n - got, MSG_WAITALL);

			if (r <= 0) {
				st->ret = r < 0 ? -errno : -EPIPE;
				break;
			}
			got += (size_t)r;
		}
		while (!st->ret && ioctl(st->uffd, UFFDIO_COPY, &cp)) {
			if (errno != EAGAIN) {
				st->ret = -errno;
				break;
			}
			/* partial: go on after what was copied */
			if (cp.copy > 0) {
				cp.dst += (uint64_t)cp.copy;
				cp.src += (uint64_t)cp.copy;
				cp.len -= (uint64_t)cp.copy;
			}
			cp.copy = 0;
		}
	}
	free(bounce);
	return NULL;
}

static void *tx_stream(void *arg)
{
	struct bs_stream *st = arg;

	st->ret = 0;
	for (uint64_t off = 0; off < st->len; off += FTB_BS_CHUNK) {
		size_t n = (size_t)FTR_MIN((uint64_t)FTB_BS_CHUNK, st->len - off);

		if (ftb_write_full(st->fd, st->base + off, n)) {
			st->ret = -EPIPE;
			break;
		}
	}
	return NULL;
}

/* Slice i of n of a region of size bytes (page-aligned boundaries). */
static void slice(uint64_t size, unsigned n, unsigned i, uint64_t *off, uint64_t *len)
{
	uint64_t pages = size / 4096, a = pages * i / n, b = pages * (i + 1) / n;

	*off = a * 4096;
	*len = (b - a) * 4096;
}

static void __attribute__((noreturn)) rx_child(const char *ip, uint64_t size, unsigned n,
					       int fd)
{
	struct bs_stream st[FTB_BS_MAX_STREAMS];
	pthread_t th[FTB_BS_MAX_STREAMS];
	struct bs_res r = { .ret = 0 };
	uint8_t *map;
	uint16_t port = 0;
	uint64_t t0 = 0;
	int ls = -1, uffd;

	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	uffd = ftr_uffd_open(0, false, NULL, NULL, NULL);
	if (map != MAP_FAILED && uffd >= 0 &&
	    !ftr_uffd_register(uffd, map, size, UFFDIO_REGISTER_MODE_MISSING, NULL))
		ls = ftb_listen_tcp(ip, (int)n, &port);
	ftb_write_full(fd, &port, sizeof(port));	/* 0: it failed */
	if (ls < 0)
		_exit(1);
	set_timeouts(ls);
	for (unsigned i = 0; i < n; i++) {
		uint64_t off, len;

		st[i].fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (st[i].fd < 0) {
			r.ret = -errno;
			snprintf(r.err, sizeof(r.err), "accept: %s", strerror(errno));
			goto out;
		}
		if (!i)
			t0 = ftb_now_ns();
		set_timeouts(st[i].fd);
		slice(size, n, i, &off, &len);
		st[i].uffd = uffd;
		st[i].base = map + off;
		st[i].len = len;
	}
	for (unsigned i = 0; i < n; i++)
		if (pthread_create(&th[i], NULL, rx_stream, &st[i]))
			_exit(1);
	for (unsigned i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		if (st[i].ret && !r.ret) {
			r.ret = st[i].ret;
			snprintf(r.err, sizeof(r.err), "stream %u: %s", i, strerror(-st[i].ret));
		}
	}
	r.ns = ftb_now_ns() - t0;
	r.bytes = size;
out:
	ftb_write_full(fd, &r, sizeof(r));
	_exit(0);
}

static void __attribute__((noreturn)) tx_child(const char *ip, uint16_t port, uint64_t size,
					       unsigned n)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct bs_stream st[FTB_BS_MAX_STREAMS];
	pthread_t th[FTB_BS_MAX_STREAMS];
	uint8_t *map;

	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		_exit(1);
	/* distinct content in every page, nothing the kernel could share */
	for (uint64_t p = 0; p < size / 4096; p++)
		memset(map + p * 4096, (int)(p * 131 + 7) & 0xff, 4096);
	inet_pton(AF_INET, ip, &a.sin_addr);
	for (unsigned i = 0; i < n; i++) {
		uint64_t off, len;

		st[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (st[i].fd < 0 || connect(st[i].fd, (struct sockaddr *)&a, sizeof(a)))
			_exit(1);
		set_timeouts(st[i].fd);
		slice(size, n, i, &off, &len);
		st[i].base = map + off;
		st[i].len = len;
	}
	for (unsigned i = 0; i < n; i++)
		if (pthread_create(&th[i], NULL, tx_stream, &st[i]))
			_exit(1);
	for (unsigned i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	_exit(0);
}

/* Waits for a child, killing it if it does not end within 10 s. */
static void reap(pid_t pid)
{
	if (pid > 0 && ftb_wait(pid, 10000) < 0) {
		ftb_kill(pid);
		ftb_wait(pid, 10000);
	}
}

int ftb_bare_stream(int tx_ns, int rx_ns, const char *rx_ip, uint64_t size, unsigned nstreams,
		    int timeout_ms, double *seconds, char *err, size_t errlen)
{
	int rp[2] = { -1, -1 }, ret;
	pid_t rx = -1, tx = -1;
	struct bs_res r = { .ret = -EIO };
	uint16_t port = 0;

	if (!nstreams || nstreams > FTB_BS_MAX_STREAMS || size < 4096 * (uint64_t)nstreams) {
		snprintf(err, errlen, "bare stream: %u streams for %" PRIu64 " bytes", nstreams,
			 size);
		return -EINVAL;
	}
	if (pipe2(rp, O_CLOEXEC)) {
		ret = -errno;
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return ret;
	}
	rx = ftb_fork(rx_ns);
	if (rx == 0) {
		ftb_close_fds_except(&rp[1], 1);
		rx_child(rx_ip, size, nstreams, rp[1]);
	}
	if (rx < 0) {
		ret = (int)rx;
		snprintf(err, errlen, "fork: %s", strerror(-ret));
		goto out;
	}
	ret = ftb_read_full(rp[0], &port, sizeof(port), 30000);
	if (ret || !port) {
		ret = ret ? ret : -EIO;
		snprintf(err, errlen, "bare stream: the receiver did not start (memory, "
			 "userfaultfd or %s)", rx_ip);
		goto out;
	}
	tx = ftb_fork(tx_ns);
	if (tx == 0) {
		ftb_close_fds_except(NULL, 0);
		tx_child(rx_ip, port, size, nstreams);
	}
	if (tx < 0) {
		ret = (int)tx;
		snprintf(err, errlen, "fork: %s", strerror(-ret));
		goto out;
	}
	ret = ftb_read_full(rp[0], &r, sizeof(r), timeout_ms);
	if (!ret)
		ret = r.ret;
	if (ret) {
		snprintf(err, errlen, "bare stream: %s", r.err[0] ? r.err : strerror(-ret));
		goto out;
	}
	*seconds = (double)r.ns / 1e9;
out:
	if (ret) {	/* no waiting for a child stuck on its socket's timeout */
		ftb_kill(tx);
		ftb_kill(rx);
	}
	reap(tx);
	reap(rx);
	close(rp[0]);
	close(rp[1]);
	return ret;
}
