/* SPDX-License-Identifier: MIT */
/*
 * Baselines measured in the same run as the results they are compared
 * with, never remembered: TCP goodput on the same path (iperf3, or a plain
 * bulk stream of ftbench's own), memcpy bandwidth, and the description of
 * the machine.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ftrepl/ftrepl.h>

#include "ftbench.h"

#ifndef FTB_LIBURING_VERSION
#define FTB_LIBURING_VERSION NULL
#endif

/* ---- iperf3 -------------------------------------------------------------------- */

static int iperf3_run(int tx_ns, int rx_ns, const char *rx_ip, double seconds,
		      struct ftb_tcp_ref *out, char *err, size_t errlen)
{
	char port[16], secs[16], *buf;
	const size_t cap = 1 << 18;
	int ret = -EIO;
	pid_t server;

	snprintf(port, sizeof(port), "%d", 20000 + (int)(getpid() % 20000));
	snprintf(secs, sizeof(secs), "%d", (int)(seconds + 0.5) > 0 ? (int)(seconds + 0.5) : 1);
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	server = ftb_fork(rx_ns);
	if (server < 0) {
		free(buf);
		return (int)server;
	}
	if (server == 0) {
		const char *argv[] = { "iperf3", "-s", "-1", "-B", rx_ip, "-p", port, NULL };

		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
			_exit(126);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	/* The server needs a moment to listen; a refused client is retried. */
	for (int attempt = 0; attempt < 10; attempt++) {
		const char *argv[] = { "iperf3", "-c", rx_ip, "-p", port, "-t", secs, "-J", NULL };
		json_t *root, *end, *rcv;
		json_error_t jerr;
		int st;

		usleep(attempt ? 300000 : 200000);
		st = ftb_run_cmd(argv, tx_ns, buf, cap, false, (int)(seconds * 1000) + 20000);
		root = json_loads(buf, 0, &jerr);
		end = json_object_get(root, "end");
		rcv = json_object_get(end, "sum_received");
		if (st == 0 && json_is_number(json_object_get(rcv, "bits_per_second"))) {
			snprintf(out->tool, sizeof(out->tool), "iperf3");
			out->gbit_s = json_number_value(json_object_get(rcv, "bits_per_second")) / 1e9;
			out->seconds = json_number_value(json_object_get(rcv, "seconds"));
			out->retransmits = (uint64_t)json_integer_value(
				json_object_get(json_object_get(end, "sum_sent"), "retransmits"));
			ret = 0;
		} else {
			const char *msg = json_string_value(json_object_get(root, "error"));

			snprintf(err, errlen, "iperf3 to %s: %s", rx_ip,
				 msg ? msg : st < 0 ? strerror(-st) : "no result");
		}
		json_decref(root);
		if (!ret || !strstr(err, "connect"))
			break;
	}
	ftb_kill(server);
	ftb_wait(server, 5000);
	free(buf);
	return ret;
}

/* ---- ftbench's own bulk stream ------------------------------------------------- */

struct bulk_report {
	uint64_t bytes;
	uint64_t ns;
};

/* A receiver child in rx_ns that drains one connection, a sender child in
 * tx_ns that writes 1 MiB buffers for `seconds`. */
static int bulk_run(int tx_ns, int rx_ns, const char *rx_ip, double seconds,
		    struct ftb_tcp_ref *out, char *err, size_t errlen)
{
	int port_pipe[2], rep_pipe[2], ret = 0;
	struct bulk_report rep = { 0 };
	uint16_t port = 0;
	pid_t rx, tx;

	if (pipe(port_pipe) || pipe(rep_pipe))
		return -errno;
	rx = ftb_fork(rx_ns);
	if (rx == 0) {
		size_t bufsz = 1 << 20;
		char *buf = malloc(bufsz);
		int ls = ftb_listen_tcp(rx_ip, 1, &port), s;

		if (!buf || ls < 0)
			_exit(1);
		if (write(port_pipe[1], &port, sizeof(port)) != sizeof(port))
			_exit(1);
		s = accept(ls, NULL, NULL);
		while (s >= 0 && read(s, buf, bufsz) > 0)
			;
		_exit(0);
	}
	if (rx < 0 || read(port_pipe[0], &port, sizeof(port)) != sizeof(port)) {
		snprintf(err, errlen, "bulk stream: the receiver did not start");
		ret = -EIO;
		goto out_rx;
	}
	tx = ftb_fork(tx_ns);
	if (tx == 0) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
		size_t bufsz = 1 << 20;
		char *buf = calloc(1, bufsz);
		int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		uint64_t t0, end;

		inet_pton(AF_INET, rx_ip, &sa.sin_addr);
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (!buf || connect(s, (struct sockaddr *)&sa, sizeof(sa)))
			_exit(1);
		t0 = ftb_now_ns();
		end = t0 + (uint64_t)(seconds * 1e9);
		while (ftb_now_ns() < end) {
			ssize_t n = write(s, buf, bufsz);

			if (n <= 0)
				break;
			rep.bytes += (uint64_t)n;
		}
		close(s);
		rep.ns = ftb_now_ns() - t0;
		if (write(rep_pipe[1], &rep, sizeof(rep)) != sizeof(rep))
			_exit(1);
		_exit(0);
	}
	if (tx < 0 || read(rep_pipe[0], &rep, sizeof(rep)) != sizeof(rep) || !rep.ns) {
		snprintf(err, errlen, "bulk stream: the sender failed");
		ret = -EIO;
	}
	if (tx > 0)
		ftb_wait(tx, 10000);
out_rx:
	if (rx > 0)
		ftb_wait(rx, 10000);
	close(port_pipe[0]);
	close(port_pipe[1]);
	close(rep_pipe[0]);
	close(rep_pipe[1]);
	if (!ret) {
		snprintf(out->tool, sizeof(out->tool), "bulk-stream");
		out->seconds = (double)rep.ns / 1e9;
		out->gbit_s = (double)rep.bytes * 8.0 / (double)rep.ns;
		out->retransmits = 0;
	}
	return ret;
}

int ftb_tcp_reference(int tx_ns, int rx_ns, const char *rx_ip, double seconds, bool no_iperf,
		      struct ftb_tcp_ref *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!no_iperf && ftb_have_program("iperf3"))
		return iperf3_run(tx_ns, rx_ns, rx_ip, seconds, out, err, errlen);
	return bulk_run(tx_ns, rx_ns, rx_ip, seconds, out, err, errlen);
}

/* ---- memcpy ---------------------------------------------------------------------- */

double ftb_memcpy_gbps(void)
{
	const size_t len = 64u << 20, page = 4096;
	uint8_t *src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double best = 0;

	if (src == MAP_FAILED || dst == MAP_FAILED)
		return -1;
	/* Touched first: this is copy bandwidth, not first-touch faults. */
	memset(src, 0x5a, len);
	memset(dst, 0, len);
	for (int pass = 0; pass < 5; pass++) {
		uint64_t t0 = ftb_now_ns(), ns;

		for (size_t off = 0; off < len; off += page)
			memcpy(dst + off, src + off, page);
		__asm__ volatile("" : : "r"(dst) : "memory");
		ns = ftb_now_ns() - t0;
		if (ns && (double)len / (double)ns > best)
			best = (double)len / (double)ns;
	}
	munmap(src, len);
	munmap(dst, len);
	return best;
}

/* ---- the machine ------------------------------------------------------------------ */

static void cpu_model(char *buf, size_t len)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(buf, len, "unknown");
	while (f && fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && c) {
			snprintf(buf, len, "%s", c + 2);
			buf[strcspn(buf, "\n")] = '\0';
			break;
		}
	}
	if (f)
		fclose(f);
}

json_t *ftb_machine_json(void)
{
	char model[256], iperf[128] = "";
	struct utsname u;
	json_t *o = json_object();
	const char *uring = FTB_LIBURING_VERSION;

	cpu_model(model, sizeof(model));
	if (uname(&u))
		memset(&u, 0, sizeof(u));
	json_object_set_new(o, "cpu", json_string(model));
	json_object_set_new(o, "nproc", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
	json_object_set_new(o, "kernel", json_string(u.release));
	json_object_set_new(o, "arch", json_string(u.machine));
	json_object_set_new(o, "transport", json_string("tcp"));
	json_object_set_new(o, "ftrepl", json_string(ftrepl_version()));
	json_object_set_new(o, "liburing", uring ? json_string(uring) : json_null());
	if (ftb_have_program("iperf3")) {
		const char *argv[] = { "iperf3", "--version", NULL };

		if (ftb_run_cmd(argv, -1, iperf, sizeof(iperf), true, 5000) >= 0) {
			iperf[strcspn(iperf, "\n")] = '\0';
		}
	}
	json_object_set_new(o, "iperf3", iperf[0] ? json_string(iperf) : json_null());
	return o;
}
