/* SPDX-License-Identifier: MIT */
/*
 * ftbench: ftrepl's benchmark driver. Links libftrepl only.
 *
 *   ftbench --transports [--size SIZE] [--epochs N] [--runs N] [--modes LIST] [--json]
 *
 * --transports replicates a synthetic region whose every page is distinct
 * (so none travels as a fill record) with `--dirty full`: every epoch
 * carries every page through the standby's staging slots, and the standby
 * applies each epoch to its cache before the slots come back as credit.
 * The standby runs in a child process so that each side's CPU time is its
 * own. Throughput counts page payload of the epochs after the initial sync.
 * iperf3 on the same loopback, in the same run, is the reference (a plain
 * TCP bulk stream of ftbench's own when iperf3 is missing).
 *
 * Processes: the parent is the primary (engine thread + control reader +
 * the workload's writer, idle here); each run forks a standby child that
 * answers "sample" requests on a pipe with its CPU time and counters.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/ftrepl.h>
#include <ftrepl/synth.h>

#define MAX_MODES 8
#define MAX_RUNS 50

struct opts {
	uint64_t size;
	unsigned epochs;
	unsigned runs;
	const char *modes[MAX_MODES];
	unsigned nmodes;
	bool json;
	bool no_iperf;
};

/* What the standby child reports. */
struct rx_sample {
	uint64_t cpu_ns;
	uint64_t rx_syscalls;
	uint64_t pages;
	uint64_t committed;
};

struct run_result {
	double gbps;		/* payload GB/s (1e9 bytes) */
	double tx_cpu_s_per_gb;
	double rx_cpu_s_per_gb;
	double tx_sys_per_gb;
	double rx_sys_per_gb;
	uint64_t pages;
	double seconds;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ftbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t self_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the standby child ------------------------------------------------------ */

static void standby_child(uint64_t size, int cmd_fd, int rep_fd)
{
	struct ftr_standby_opts o = {
		.listen = "127.0.0.1:0",
		.cache_size = size,
		.staging_size = size,
		.failover_timeout_ms = 30000,
		.stall_timeout_ms = 30000,
	};
	struct ftr_standby *sb;
	char err[256];
	uint16_t port;
	char c;

	ftr_log_set_ident("ftbench-standby");
	if (ftr_standby_create(&o, &sb, err, sizeof(err)) || ftr_standby_start(sb)) {
		fprintf(stderr, "ftbench: standby: %s\n", err);
		_exit(1);
	}
	port = ftr_standby_port(sb);
	if (write(rep_fd, &port, sizeof(port)) != sizeof(port))
		_exit(1);
	while (read(cmd_fd, &c, 1) == 1) {
		struct ftr_standby_status st;
		struct rx_sample s;

		ftr_standby_get_status(sb, &st);
		s.cpu_ns = self_cpu_ns();
		s.rx_syscalls = st.rx_syscalls;
		s.pages = st.pages_received;
		s.committed = st.committed;
		if (write(rep_fd, &s, sizeof(s)) != sizeof(s))
			break;
		if (c == 'q')
			break;
	}
	ftr_standby_stop(sb);
	ftr_standby_destroy(sb);
	_exit(0);
}

static struct rx_sample rx_sample(int cmd_fd, int rep_fd, char c)
{
	struct rx_sample s;

	if (write(cmd_fd, &c, 1) != 1 || read(rep_fd, &s, sizeof(s)) != sizeof(s))
		die("lost the standby child");
	return s;
}

/* ---- one replication run ---------------------------------------------------- */

struct engine_arg {
	struct ftr_primary *p;
	int ret;
	atomic_bool done;
};

static void *engine_main(void *arg)
{
	struct engine_arg *a = arg;

	a->ret = ftr_primary_run(a->p);
	atomic_store(&a->done, true);
	return NULL;
}

static int run_once(const struct opts *o, const char *mode, struct run_result *r)
{
	int cmd[2], rep[2];
	struct ftr_synth_spec spec = { .size = o->size, .seed = 7, .rate = 1,
				       .pattern = FTR_SYNTH_SEQ };
	struct ftr_primary_opts po = { 0 };
	struct ftr_primary_status st0, st1;
	struct rx_sample rx0, rx1;
	struct ftr_workload *wl;
	struct engine_arg ea = { 0 };
	uint64_t cpu0 = 0, cpu1, npages = o->size / 4096;
	char addr[64];
	uint16_t port;
	pthread_t th;
	pid_t child;
	bool sampled = false;

	if (pipe(cmd) || pipe(rep))
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	child = fork();
	if (child < 0)
		die("fork: %s", strerror(errno));
	if (child == 0) {
		close(cmd[1]);
		close(rep[0]);
		standby_child(o->size, cmd[0], rep[1]);
	}
	close(cmd[0]);
	close(rep[1]);
	if (read(rep[0], &port, sizeof(port)) != sizeof(port))
		die("standby child did not start");

	if (ftr_synth_workload_create(&spec, &wl))
		die("cannot create a %" PRIu64 "-byte region", o->size);
	/* seq over every data page once: all pages distinct, none a fill page */
	ftr_synth_workload_advance(wl, npages - 1);

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	po.connect = addr;
	po.tp.transport = "tcp";
	po.tp.mode = mode;
	po.dirty = FTR_DIRTY_FULL;
	po.snapshot = FTR_SNAP_STOP_COPY;
	po.epoch_ms = 1;
	po.max_epochs = o->epochs;
	po.failover_timeout_ms = 30000;
	if (ftr_primary_create(&po, wl, &ea.p))
		die("cannot create the primary");
	if (pthread_create(&th, NULL, engine_main, &ea))
		die("pthread_create");

	/* Sample both sides when the initial sync is over, and at the end. */
	while (!atomic_load(&ea.done)) {
		ftr_primary_get_status(ea.p, &st0);
		if (!sampled && st0.state == FTR_STATE_PROTECTED) {
			cpu0 = self_cpu_ns();
			rx0 = rx_sample(cmd[1], rep[0], 's');
			sampled = true;
		}
		usleep(2000);
	}
	pthread_join(th, NULL);
	cpu1 = self_cpu_ns();
	rx1 = rx_sample(cmd[1], rep[0], 'q');
	waitpid(child, NULL, 0);
	close(cmd[1]);
	close(rep[0]);
	ftr_primary_get_status(ea.p, &st1);
	if (ea.ret) {
		fprintf(stderr, "ftbench: %s run failed: %s\n", mode, ftr_primary_error(ea.p));
		ftr_primary_destroy(ea.p);
		ftr_workload_destroy(wl);
		return -1;
	}
	if (!sampled)
		die("the run ended before its initial sync was seen");
	memset(&st0, 0, sizeof(st0));
	{
		uint64_t pages = st1.pages_sent - st1.sync_pages;
		double bytes = (double)pages * 4096.0, gb = bytes / 1e9;
		double secs = (double)st1.epochs_ns / 1e9;

		r->pages = pages;
		r->seconds = secs;
		r->gbps = gb / secs;
		r->tx_cpu_s_per_gb = (double)(cpu1 - cpu0) / 1e9 / gb;
		r->rx_cpu_s_per_gb = (double)(rx1.cpu_ns - rx0.cpu_ns) / 1e9 / gb;
		r->tx_sys_per_gb = (double)st1.tx_syscalls / ((double)st1.pages_sent * 4096.0 / 1e9);
		r->rx_sys_per_gb = (double)(rx1.rx_syscalls - rx0.rx_syscalls) / gb;
		if (rx1.committed != o->epochs)
			die("%s: standby committed epoch %" PRIu64 ", expected %u", mode,
			    rx1.committed, o->epochs);
	}
	ftr_primary_destroy(ea.p);
	ftr_workload_destroy(wl);
	return 0;
}

/* ---- the reference: iperf3, or a plain bulk stream ---------------------------------- */

static double bulk_stream_gbps(double seconds)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	size_t bufsz = 1 << 20;
	char *buf = calloc(1, bufsz);
	int ls, cs, one = 1;
	uint64_t sent = 0, t0, end;
	pid_t child;

	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (!buf || ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&sa, &sl))
		die("bulk stream: %s", strerror(errno));
	fflush(NULL);
	child = fork();
	if (child == 0) {
		int s = accept(ls, NULL, NULL);

		while (s >= 0 && read(s, buf, bufsz) > 0)
			;
		_exit(0);
	}
	close(ls);
	cs = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(cs, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(cs, (struct sockaddr *)&sa, sizeof(sa)))
		die("bulk stream connect: %s", strerror(errno));
	t0 = now_ns();
	end = t0 + (uint64_t)(seconds * 1e9);
	while (now_ns() < end) {
		ssize_t n = write(cs, buf, bufsz);

		if (n <= 0)
			break;
		sent += (uint64_t)n;
	}
	close(cs);
	waitpid(child, NULL, 0);
	free(buf);
	return (double)sent / 1e9 / ((double)(now_ns() - t0) / 1e9);
}

/* Runs iperf3 server and client on loopback; returns GB/s received, or a
 * negative value when iperf3 is not available. */
static double iperf3_gbps(int seconds)
{
	char cmd[256], out[1 << 16];
	size_t n = 0;
	json_t *root, *bps;
	json_error_t jerr;
	pid_t server;
	FILE *f;
	int port = 20000 + (int)(getpid() % 20000);
	double v = -1;

	if (system("command -v iperf3 >/dev/null 2>&1"))
		return -1;
	fflush(NULL);
	server = fork();
	if (server == 0) {
		char p[16];

		snprintf(p, sizeof(p), "%d", port);
		freopen("/dev/null", "w", stdout);
		freopen("/dev/null", "w", stderr);
		execlp("iperf3", "iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", p, (char *)NULL);
		_exit(127);
	}
	usleep(300000);
	snprintf(cmd, sizeof(cmd), "iperf3 -c 127.0.0.1 -p %d -t %d -J 2>/dev/null", port, seconds);
	f = popen(cmd, "r");
	if (f) {
		n = fread(out, 1, sizeof(out) - 1, f);
		pclose(f);
	}
	out[n] = '\0';
	kill(server, SIGTERM);
	waitpid(server, NULL, 0);
	root = json_loads(out, 0, &jerr);
	bps = json_object_get(json_object_get(json_object_get(root, "end"), "sum_received"),
			      "bits_per_second");
	if (json_is_number(bps))
		v = json_number_value(bps) / 8.0 / 1e9;
	json_decref(root);
	return v;
}

/* ---- reporting -------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median_of(const struct run_result *r, unsigned n, size_t off)
{
	double v[MAX_RUNS];

	for (unsigned i = 0; i < n; i++)
		v[i] = *(const double *)((const char *)&r[i] + off);
	qsort(v, n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void machine_json(json_t *o)
{
	char model[256] = "unknown", line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");
	struct utsname_like { char release[128]; } u = { "unknown" };
	FILE *k = fopen("/proc/sys/kernel/osrelease", "r");

	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "model name", 10)) {
			char *c = strchr(line, ':');

			if (c) {
				snprintf(model, sizeof(model), "%s", c + 2);
				model[strcspn(model, "\n")] = '\0';
			}
			break;
		}
	}
	if (f)
		fclose(f);
	if (k && fgets(u.release, sizeof(u.release), k))
		u.release[strcspn(u.release, "\n")] = '\0';
	if (k)
		fclose(k);
	json_object_set_new(o, "machine", json_pack("{s:s, s:i, s:s, s:s}", "cpu", model, "cpus",
						    (int)sysconf(_SC_NPROCESSORS_ONLN), "kernel",
						    u.release, "ftrepl", ftrepl_version()));
}

static int bench_transports(const struct opts *o)
{
	struct run_result res[MAX_MODES][MAX_RUNS];
	double ref, best = 0;
	const char *ref_name = "iperf3", *best_mode = NULL;
	json_t *out = json_object(), *modes = json_object();
	int failed = 0;

	if (!o->json)
		printf("ftbench --transports: %" PRIu64 " MiB region, every page distinct and dirty, "
		       "%u epochs after the initial sync, %u run(s) per mode, loopback\n",
		       o->size >> 20, o->epochs, o->runs);
	ref = o->no_iperf ? -1 : iperf3_gbps(4);
	if (ref < 0) {
		ref_name = "bulk-stream";
		ref = bulk_stream_gbps(4.0);
	}
	for (unsigned m = 0; m < o->nmodes; m++) {
		json_t *samples = json_array();

		for (unsigned i = 0; i < o->runs; i++) {
			if (run_once(o, o->modes[m], &res[m][i])) {
				failed = 1;
				break;
			}
			json_array_append_new(samples, json_pack(
				"{s:f, s:f, s:f, s:f, s:f, s:I, s:f}", "gbps", res[m][i].gbps,
				"tx_cpu_s_per_gb", res[m][i].tx_cpu_s_per_gb,
				"rx_cpu_s_per_gb", res[m][i].rx_cpu_s_per_gb,
				"tx_syscalls_per_gb", res[m][i].tx_sys_per_gb,
				"rx_syscalls_per_gb", res[m][i].rx_sys_per_gb,
				"pages", (json_int_t)res[m][i].pages, "seconds", res[m][i].seconds));
		}
		if (failed) {
			json_decref(samples);
			break;
		}
		json_object_set_new(modes, o->modes[m], samples);
	}
	if (failed) {
		json_decref(out);
		json_decref(modes);
		return 1;
	}
	if (!o->json) {
		printf("\n%-12s %8s %8s %8s %12s %12s %14s %14s %9s\n", "mode", "GB/s", "min", "max",
		       "tx CPU s/GB", "rx CPU s/GB", "tx syscalls/GB", "rx syscalls/GB", "x ref");
	}
	for (unsigned m = 0; m < o->nmodes; m++) {
		const struct run_result *r = res[m];
		double g = median_of(r, o->runs, offsetof(struct run_result, gbps)), lo = 1e9, hi = 0;

		for (unsigned i = 0; i < o->runs; i++) {
			lo = fmin(lo, r[i].gbps);
			hi = fmax(hi, r[i].gbps);
		}
		if (g > best) {
			best = g;
			best_mode = o->modes[m];
		}
		if (!o->json)
			printf("tcp/%-8s %8.3f %8.3f %8.3f %12.3f %12.3f %14.0f %14.0f %9.2f\n",
			       o->modes[m], g, lo, hi,
			       median_of(r, o->runs, offsetof(struct run_result, tx_cpu_s_per_gb)),
			       median_of(r, o->runs, offsetof(struct run_result, rx_cpu_s_per_gb)),
			       median_of(r, o->runs, offsetof(struct run_result, tx_sys_per_gb)),
			       median_of(r, o->runs, offsetof(struct run_result, rx_sys_per_gb)),
			       g / ref);
	}
	if (!o->json) {
		printf("%-12s %8.3f\n", ref_name, ref);
		printf("\nbest: tcp/%s %.3f GB/s = %.2fx %s (target 0.75x)\n", best_mode, best,
		       best / ref, ref_name);
	}
	json_object_set_new(out, "bench", json_string("transports"));
	json_object_set_new(out, "size", json_integer((json_int_t)o->size));
	json_object_set_new(out, "epochs", json_integer(o->epochs));
	json_object_set_new(out, "runs", json_integer(o->runs));
	json_object_set_new(out, "reference", json_pack("{s:s, s:f}", "name", ref_name, "gbps", ref));
	json_object_set_new(out, "modes", modes);
	json_object_set_new(out, "best", json_pack("{s:s, s:f, s:f}", "mode", best_mode, "gbps", best,
						   "ratio_to_reference", best / ref));
	machine_json(out);
	if (o->json) {
		char *s = json_dumps(out, JSON_INDENT(2));

		puts(s);
		free(s);
	}
	json_decref(out);
	return 0;
}

static void usage(void)
{
	printf("Usage: ftbench MODE [options]\n"
	       "\n"
	       "Modes:\n"
	       "  --transports     replicate a region with every page dirty over loopback in each tcp\n"
	       "                   mode: payload GB/s, CPU s/GB and syscalls/GB on each side, next to\n"
	       "                   iperf3 measured in the same run. ~1-2 min with the defaults.\n"
	       "                   e.g. ftbench --transports --size 1G --runs 3\n"
	       "\n"
	       "Options:\n"
	       "  --size SIZE      region size (default 1G)\n"
	       "  --epochs N       epochs measured after the initial sync (default 3)\n"
	       "  --runs N         runs per mode; the median is reported (default 3)\n"
	       "  --modes LIST     comma-separated tcp modes (default write,writev,uring)\n"
	       "  --no-iperf       use ftbench's own bulk stream as the reference\n"
	       "  --json           print every sample and the machine description as JSON\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "transports", no_argument, NULL, 't' },
		{ "size", required_argument, NULL, 's' },
		{ "epochs", required_argument, NULL, 'e' },
		{ "runs", required_argument, NULL, 'r' },
		{ "modes", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "no-iperf", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct opts o = { .size = 1ull << 30, .epochs = 3, .runs = 3 };
	bool transports = false;
	static char modes[256] = "write,writev,uring";
	uint64_t v;
	int opt;

	signal(SIGPIPE, SIG_IGN);
	ftr_log_set_level(FTR_LOG_WARN);
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 't':
			transports = true;
			break;
		case 's':
			if (ftr_parse_size(optarg, &o.size) || o.size < (1u << 20) || o.size % 4096) {
				fprintf(stderr, "ftbench: --size %s: at least 1M, whole pages (try --help)\n", optarg);
				return 2;
			}
			break;
		case 'e':
		case 'r':
			if (ftr_parse_u64(optarg, 1, opt == 'r' ? MAX_RUNS : 1000, &v)) {
				fprintf(stderr, "ftbench: %s %s: out of range (try --help)\n",
					opt == 'r' ? "--runs" : "--epochs", optarg);
				return 2;
			}
			if (opt == 'r')
				o.runs = (unsigned)v;
			else
				o.epochs = (unsigned)v;
			break;
		case 'm':
			snprintf(modes, sizeof(modes), "%s", optarg);
			break;
		case 'j':
			o.json = true;
			break;
		case 'n':
			o.no_iperf = true;
			break;
		case 'h':
			usage();
			return 0;
		default:
			fprintf(stderr, "ftbench: unknown option (try --help)\n");
			return 2;
		}
	}
	if (!transports) {
		fprintf(stderr, "ftbench: choose a mode, e.g. --transports (try --help)\n");
		return 2;
	}
	for (char *save = NULL, *t = strtok_r(modes, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		struct ftr_tp_opts tp = { .transport = "tcp", .mode = t };
		char err[128];

		if (ftr_tp_check_opts(&tp, err, sizeof(err))) {
			fprintf(stderr, "ftbench: --modes: %s (try --help)\n", err);
			return 2;
		}
		if (o.nmodes == MAX_MODES) {
			fprintf(stderr, "ftbench: --modes: at most %d (try --help)\n", MAX_MODES);
			return 2;
		}
		o.modes[o.nmodes++] = t;
	}
	return bench_transports(&o);
}
