/* SPDX-License-Identifier: MIT */
/*
 * ftr-migrate: drives one side of a live migration (include/ftrepl/migrate.h)
 * as its own process, for the integration scenarios in tests/migrate/.
 *
 *   ftr-migrate dst --listen 127.0.0.1:0 --cache 64M --port-file P
 *                   [--synth-writes N] [--synth-rate R] [--mem memfd|anon] ...
 *   ftr-migrate src --connect 127.0.0.1:PORT --workload synth:size=32M,rate=5000
 *                   [--mode hybrid|precopy|postcopy] [--rounds N] ...
 *
 * Both print "phase NAME" whenever the phase changes (so that a script can
 * wait for postcopy) and, at the end, "result {JSON status}". The
 * destination then checks its image with the synthetic workload's oracle
 * ("oracle ok k=N" or "oracle FAILED: ..."). --dump FILE writes the final
 * image (source: at the switch; destination: after completion, before any
 * continuation when --synth-writes is 0) so that a script can compare them.
 * Exit: 0 completed (and oracle ok), 1 failed (an "error: ..." line says
 * why), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ftrepl/ftrepl.h>
#include <ftrepl/migrate.h>
#include <ftrepl/synth.h>

#include "checkpoint/workload.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ftr-migrate src --connect ADDR:PORT --workload SPEC [options]\n"
		"       ftr-migrate dst --listen ADDR:PORT --cache SIZE [options]\n"
		"source options:\n"
		"  --mode hybrid|precopy|postcopy  (default hybrid)\n"
		"  --rounds N             most precopy rounds (hybrid: then postcopy)\n"
		"  --channels N           data channels (default 2)\n"
		"  --downtime-ms N        convergence target (default 30)\n"
		"  --pre-writes N         synthetic writes before the migration starts\n"
		"  --precopy-bw SIZE      cap of the precopy rounds, bytes/s\n"
		"  --postcopy-bw SIZE     cap of the postcopy push, bytes/s\n"
		"  --no-background        postcopy: serve page requests only\n"
		"  --dirty MODE           workload|auto|wp-async|wp-sync|scan|full (default workload)\n"
		"  --switch-after-ms N    ask for the switch after N ms\n"
		"destination options:\n"
		"  --mem memfd|anon       the workload's memory (default memfd)\n"
		"  --prefault-fwd N, --prefault-bwd N   page request window\n"
		"  --synth-writes N       continue the synthetic workload for N writes\n"
		"  --synth-rate R         ... at R writes/s (default: flat out)\n"
		"  --port-file FILE       write the bound port there\n"
		"  --expect SPEC          oracle checks the image against this spec\n"
		"both:\n"
		"  --transport tcp|rdma, --device DEV (rdma),\n"
		"  --tcp-mode write|writev|uring|zerocopy|uring-zc,\n"
		"  --recover-ms N, --timeout-ms N,\n"
		"  --dump FILE, --log-level LEVEL, --help\n"
		"examples:\n"
		"  ftr-migrate dst --listen 127.0.0.1:7000 --cache 1G --synth-writes 100000\n"
		"  ftr-migrate src --connect 127.0.0.1:7000 --workload synth:size=256M,rate=50000\n");
}

enum {
	O_CONNECT = 256, O_LISTEN, O_WORKLOAD, O_CACHE, O_MODE, O_ROUNDS, O_CHANNELS, O_DOWNTIME,
	O_PREWRITES, O_PRECOPY_BW, O_POSTCOPY_BW, O_NOBG, O_DIRTY, O_SWITCH, O_MEM, O_FWD, O_BWD,
	O_SWRITES, O_SRATE, O_PORTFILE, O_EXPECT, O_TCPMODE, O_RECOVER, O_TIMEOUT, O_DUMP,
	O_LOGLEVEL, O_HELP, O_TRANSPORT, O_DEVICE,
};

static const struct option longopts[] = {
	{ "connect", required_argument, NULL, O_CONNECT },
	{ "listen", required_argument, NULL, O_LISTEN },
	{ "workload", required_argument, NULL, O_WORKLOAD },
	{ "cache", required_argument, NULL, O_CACHE },
	{ "mode", required_argument, NULL, O_MODE },
	{ "rounds", required_argument, NULL, O_ROUNDS },
	{ "channels", required_argument, NULL, O_CHANNELS },
	{ "downtime-ms", required_argument, NULL, O_DOWNTIME },
	{ "pre-writes", required_argument, NULL, O_PREWRITES },
	{ "precopy-bw", required_argument, NULL, O_PRECOPY_BW },
	{ "postcopy-bw", required_argument, NULL, O_POSTCOPY_BW },
	{ "no-background", no_argument, NULL, O_NOBG },
	{ "dirty", required_argument, NULL, O_DIRTY },
	{ "switch-after-ms", required_argument, NULL, O_SWITCH },
	{ "mem", required_argument, NULL, O_MEM },
	{ "prefault-fwd", required_argument, NULL, O_FWD },
	{ "prefault-bwd", required_argument, NULL, O_BWD },
	{ "synth-writes", required_argument, NULL, O_SWRITES },
	{ "synth-rate", required_argument, NULL, O_SRATE },
	{ "port-file", required_argument, NULL, O_PORTFILE },
	{ "expect", required_argument, NULL, O_EXPECT },
	{ "tcp-mode", required_argument, NULL, O_TCPMODE },
	{ "transport", required_argument, NULL, O_TRANSPORT },
	{ "device", required_argument, NULL, O_DEVICE },
	{ "recover-ms", required_argument, NULL, O_RECOVER },
	{ "timeout-ms", required_argument, NULL, O_TIMEOUT },
	{ "dump", required_argument, NULL, O_DUMP },
	{ "log-level", required_argument, NULL, O_LOGLEVEL },
	{ "help", no_argument, NULL, O_HELP },
	{ NULL, 0, NULL, 0 },
};

static void die_usage(const char *what, const char *arg)
{
	fprintf(stderr, "ftr-migrate: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
	exit(2);
}

static uint64_t num(const char *s)
{
	uint64_t v;

	if (ftr_parse_u64(s, 0, UINT64_MAX, &v))
		die_usage("not a number", s);
	return v;
}

static uint64_t size_arg(const char *s)
{
	uint64_t v;

	if (ftr_parse_size(s, &v))
		die_usage("not a size", s);
	return v;
}

static int dump_to(const char *path, const void *base, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	const char *p = base;

	if (fd < 0)
		return -errno;
	while (len) {
		ssize_t n = write(fd, p, len > (1u << 30) ? (1u << 30) : len);

		if (n <= 0) {
			close(fd);
			return -EIO;
		}
		p += n;
		len -= (uint64_t)n;
	}
	close(fd);
	return 0;
}

/* ---- phase printer --------------------------------------------------------- */

struct watch {
	struct ftr_migrate_src *src;
	struct ftr_migrate_dst *dst;
	atomic_bool stop;
	int switch_after_ms;
	pthread_t th;
};

static void get_status(struct watch *w, struct ftr_migrate_status *st)
{
	if (w->src)
		ftr_migrate_src_get_status(w->src, st);
	else
		ftr_migrate_dst_get_status(w->dst, st);
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	int last = -1, elapsed = 0;

	while (!atomic_load(&w->stop)) {
		struct ftr_migrate_status st;

		get_status(w, &st);
		if ((int)st.phase != last) {
			printf("phase %s\n", ftr_migrate_phase_name(st.phase));
			fflush(stdout);
			last = (int)st.phase;
		}
		if (w->switch_after_ms && elapsed >= w->switch_after_ms) {
			int ret = ftr_migrate_src_switch(w->src);

			printf("switch requested: %s\n", ret ? strerror(-ret) : "ok");
			fflush(stdout);
			w->switch_after_ms = 0;
		}
		usleep(10000);
		elapsed += 10;
	}
	return NULL;
}

static void print_result(struct watch *w)
{
	struct ftr_migrate_status st;
	char buf[4096];

	get_status(w, &st);
	if ((int)st.phase >= 0)
		printf("phase %s\n", ftr_migrate_phase_name(st.phase));
	ftr_migrate_status_json(&st, buf, sizeof(buf));
	printf("result %s\n", buf);
	fflush(stdout);
}

/* ---- source ------------------------------------------------------------------ */

static int run_src(struct ftr_migrate_src_opts *o, const char *spec_str, uint64_t pre_writes,
		   int switch_after_ms, const char *dump)
{
	struct ftr_synth_spec spec;
	struct ftr_workload *wl;
	struct watch w = { .switch_after_ms = switch_after_ms };
	char err[256];
	int ret;

	if (ftr_synth_parse(spec_str, &spec, err, sizeof(err)))
		die_usage("bad --workload", err);
	ret = ftr_synth_workload_create(&spec, &wl);
	if (ret) {
		fprintf(stderr, "error: cannot create the workload: %s\n", strerror(-ret));
		return 1;
	}
	if (pre_writes)
		ftr_synth_workload_advance(wl, pre_writes);
	ret = ftr_migrate_src_create(o, wl, &w.src);
	if (ret) {
		fprintf(stderr, "error: bad options: %s\n", strerror(-ret));
		return 1;
	}
	pthread_create(&w.th, NULL, watch_main, &w);
	ret = ftr_migrate_src_run(w.src);
	atomic_store(&w.stop, true);
	pthread_join(w.th, NULL);
	print_result(&w);
	if (ret)
		printf("error: %s\n", ftr_migrate_src_error(w.src));
	else if (dump && dump_to(dump, wl->regions[0].base, wl->regions[0].size))
		printf("error: cannot write %s\n", dump);
	fflush(stdout);
	ftr_migrate_src_destroy(w.src);
	ftr_workload_destroy(wl);
	return ret ? 1 : 0;
}

/* ---- destination ---------------------------------------------------------------- */

static int run_dst(struct ftr_migrate_dst_opts *o, const char *port_file, const char *expect,
		   const char *dump)
{
	struct ftr_synth_spec spec, *exp = NULL;
	struct ftr_synth_verdict v;
	struct watch w = { 0 };
	char err[256];
	int ret, ph, rc = 0;

	if (expect) {
		if (ftr_synth_parse(expect, &spec, err, sizeof(err)))
			die_usage("bad --expect", err);
		exp = &spec;
	}
	ret = ftr_migrate_dst_create(o, &w.dst, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "error: %s\n", err);
		return 1;
	}
	if (port_file) {
		FILE *f = fopen(port_file, "w");

		if (!f || fprintf(f, "%u\n", ftr_migrate_dst_port(w.dst)) < 0 || fclose(f)) {
			fprintf(stderr, "error: cannot write %s\n", port_file);
			return 1;
		}
	}
	printf("listening %u\n", ftr_migrate_dst_port(w.dst));
	fflush(stdout);
	ftr_migrate_dst_start(w.dst);
	pthread_create(&w.th, NULL, watch_main, &w);
	ph = ftr_migrate_dst_wait(w.dst, 1u << FTR_MIG_COMPLETED | 1u << FTR_MIG_FAILED, -1);
	if (ph == FTR_MIG_COMPLETED && o->resume_synth) {
		ret = ftr_migrate_dst_synth_wait(w.dst, -1);
		if (ret) {
			printf("error: the continuation failed: %s\n", strerror(-ret));
			rc = 1;
		}
	}
	/* Let the source's last words (BYE) arrive before stopping. */
	usleep(100000);
	atomic_store(&w.stop, true);
	pthread_join(w.th, NULL);
	print_result(&w);
	if (ph != FTR_MIG_COMPLETED) {
		printf("error: %s\n", ftr_migrate_dst_error(w.dst));
		rc = 1;
	} else if (!rc) {
		if (dump) {
			struct ftr_migrate_image img;

			ftr_migrate_dst_image(w.dst, &img);
			if (dump_to(dump, img.regions[0].base, img.regions[0].size))
				printf("error: cannot write %s\n", dump);
		}
		ret = ftr_migrate_dst_verify(w.dst, exp, &v);
		if (ret || !v.ok) {
			printf("oracle FAILED: %s\n", ret ? strerror(-ret) : v.msg);
			rc = 1;
		} else {
			printf("oracle ok k=%" PRIu64 "\n", v.k);
		}
	}
	fflush(stdout);
	ftr_migrate_dst_destroy(w.dst);
	return rc;
}

int main(int argc, char **argv)
{
	struct ftr_migrate_src_opts so = { .dirty = FTR_DIRTY_WORKLOAD };
	struct ftr_migrate_dst_opts dopt = { 0 };
	const char *workload = NULL, *port_file = NULL, *expect = NULL, *dump = NULL;
	uint64_t pre_writes = 0;
	int switch_after = 0, c;
	bool is_src;
	enum ftr_log_level lvl;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "src") && strcmp(argv[1], "dst"))
		die_usage("the first argument is src or dst", argv[1]);
	is_src = !strcmp(argv[1], "src");
	signal(SIGPIPE, SIG_IGN);
	ftr_log_set_ident("ftr-migrate");
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_CONNECT:
			so.connect = optarg;
			break;
		case O_LISTEN:
			dopt.listen = optarg;
			break;
		case O_WORKLOAD:
			workload = optarg;
			break;
		case O_CACHE:
			dopt.cache_size = size_arg(optarg);
			break;
		case O_MODE:
			if (ftr_migrate_mode_parse(optarg, &so.mode))
				die_usage("bad --mode", optarg);
			break;
		case O_ROUNDS:
			so.max_rounds = (unsigned)num(optarg);
			break;
		case O_CHANNELS:
			so.nchannels = (unsigned)num(optarg);
			break;
		case O_DOWNTIME:
			so.target_downtime_ms = (unsigned)num(optarg);
			break;
		case O_PREWRITES:
			pre_writes = num(optarg);
			break;
		case O_PRECOPY_BW:
			so.precopy_bw = size_arg(optarg);
			break;
		case O_POSTCOPY_BW:
			so.postcopy_bw = size_arg(optarg);
			break;
		case O_NOBG:
			so.no_background = true;
			break;
		case O_DIRTY:
			if (ftr_dirty_parse(optarg, &so.dirty))
				die_usage("bad --dirty", optarg);
			break;
		case O_SWITCH:
			switch_after = (int)num(optarg);
			break;
		case O_MEM:
			if (!strcmp(optarg, "memfd"))
				dopt.mem = FTR_MIG_MEM_MEMFD;
			else if (!strcmp(optarg, "anon"))
				dopt.mem = FTR_MIG_MEM_ANON;
			else
				die_usage("bad --mem", optarg);
			break;
		case O_FWD:
			dopt.prefault_forward = (unsigned)num(optarg);
			break;
		case O_BWD:
			dopt.prefault_backward = (unsigned)num(optarg);
			break;
		case O_SWRITES:
			dopt.resume_synth = true;
			dopt.synth_writes = num(optarg);
			break;
		case O_SRATE:
			dopt.synth_rate = num(optarg);
			break;
		case O_PORTFILE:
			port_file = optarg;
			break;
		case O_EXPECT:
			expect = optarg;
			break;
		case O_TCPMODE:
			so.tp.mode = optarg;
			dopt.tp.mode = optarg;
			break;
		case O_TRANSPORT:
			so.tp.transport = optarg;
			dopt.tp.transport = optarg;
			break;
		case O_DEVICE:
			so.tp.device = optarg;
			dopt.tp.device = optarg;
			break;
		case O_RECOVER:
			so.recover_timeout_ms = (int)num(optarg);
			dopt.recover_timeout_ms = so.recover_timeout_ms;
			break;
		case O_TIMEOUT:
			so.timeout_ms = (int)num(optarg);
			dopt.timeout_ms = so.timeout_ms;
			break;
		case O_DUMP:
			dump = optarg;
			break;
		case O_LOGLEVEL:
			if (ftr_log_parse_level(optarg, &lvl))
				die_usage("bad --log-level", optarg);
			ftr_log_set_level(lvl);
			break;
		case O_HELP:
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc)
		die_usage("unexpected argument", argv[optind]);
	if (is_src) {
		if (!so.connect || !workload)
			die_usage("src needs --connect and --workload", NULL);
		return run_src(&so, workload, pre_writes, switch_after, dump);
	}
	if (!dopt.listen || !dopt.cache_size)
		die_usage("dst needs --listen and --cache", NULL);
	return run_dst(&dopt, port_file, expect, dump);
}
