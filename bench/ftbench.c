/* SPDX-License-Identifier: MIT */
/*
 * ftbench: ftrepl's benchmark driver. Links libftrepl only.
 *
 *   ftbench MODE [options]      (ftbench --help lists the modes)
 *
 * Files:
 *   ftbench.c          options, the mode table, --help
 *   harness.c          warm-up, runs, statistics, --json, --plot (every mode)
 *   replicate.c        one replication run: standby and primary children
 *   baseline.c         iperf3 / bulk stream, memcpy, the machine description
 *   netns.c            veth pair between two namespaces, tbf shaping
 *   sys.c              children, commands, cleanup on exit and on signals
 *   plot.c             gnuplot
 *   wlwrap.c           the synthetic workload behind a wrapper (pause samples,
 *                      a gate on its writer) and small shared helpers
 *   mode_*.c           the modes
 *   qemu_peer.c        a QEMU child: QMP on a socketpair, COM1 on pipes
 *   qemu_mig.c         one QEMU -> QEMU migration (--postcopy's qemu-* variants)
 *   qemu-guest/        the test guest QEMU boots (a multiboot kernel)
 * bench/README.md describes the modes and the --json document field by field.
 *
 * Processes: the main process only orchestrates. Each run forks a standby
 * child and a primary child (replicate.c; --checkpoint one child holding
 * both, --failover a client child too); baselines fork iperf3 or a bulk
 * stream pair. Every child dies with the main process.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ftrepl/ftrepl.h>

#include "ftbench.h"

/* The modes, in --help order. */
static const struct ftb_mode *const ftb_modes[] = {
	&ftb_mode_writev_vs_write,
	&ftb_mode_transports,
	&ftb_mode_checkpoint,
	&ftb_mode_failover,
	&ftb_mode_postcopy,
};

#define N_MODES (sizeof(ftb_modes) / sizeof(ftb_modes[0]))

static void print_indented(const char *text, int indent)
{
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\n");

		printf("%*s%.*s\n", indent, "", (int)n, p);
		p += n;
		if (*p == '\n')
			p++;
	}
}

static void usage(void)
{
	printf("Usage: ftbench MODE [options]\n\nModes:\n");
	for (size_t i = 0; i < N_MODES; i++) {
		const struct ftb_mode *m = ftb_modes[i];

		printf("  --%s\n", m->name);
		print_indented(m->summary, 6);
		printf("      e.g. %s\n", m->example);
		print_indented(m->duration, 6);
		printf("      defaults:");
		if (m->default_size)
			printf(" --size %lluM", (unsigned long long)(m->default_size >> 20));
		printf(" --runs %u%s%s\n", m->default_runs,
		       m->default_variants ? " --modes " : "",
		       m->default_variants ? m->default_variants : "");
	}
	printf("\n"
	       "Options (every mode):\n"
	       "  --size SIZE       region size (K/M/G suffixes, binary)\n"
	       "  --runs N          measured runs per case (1..%d); mean, std, median, min, max\n"
	       "  --warmup N        unrecorded runs per case before them (0..%d, default 1;\n"
	       "                    0 for --checkpoint and --failover)\n"
	       "  --modes LIST      the variants to compare (each mode's --help line lists them)\n"
	       "  --no-iperf        TCP reference from ftbench's own bulk stream, not iperf3\n"
	       "  --json            print one JSON document (every raw sample, the machine)\n"
	       "                    on stdout; the tables go to stderr\n"
	       "  --plot FILE       draw FILE.png or FILE.svg with gnuplot\n"
	       "  --help, --version\n"
	       "--writev-vs-write:\n"
	       "  --dup-share PCT   percent of pages that are one repeated byte (default 3.4)\n"
	       "  --link-rate LIST  tbf rates of the veth links, e.g. 1g,10g (default), 250m,\n"
	       "                    'unshaped' for a veth without qdisc; 'none': loopback only\n"
	       "  --no-loopback     only the veth links\n"
	       "  --cold-standby    a fresh standby per run, populating its cache during the\n"
	       "                    run as a migration's destination does (default: one\n"
	       "                    standby per link, its cache populated by the warm-up)\n"
	       "--transports:\n"
	       "  --epochs N        epochs measured after the initial sync (default 3)\n"
	       "--checkpoint:\n"
	       "  --modes LIST      combinations DIRTY/SNAPSHOT (e.g. wp-async/copy-out,scan/cow)\n"
	       "                    and 'unprotected' (the workload alone, the reference)\n"
	       "  --all             every combination (14) instead of the default 8\n"
	       "  --epochs N        epochs of 20 ms measured per run (default 100)\n"
	       "--failover:\n"
	       "  --size SIZE       one cache size instead of 256M, 1G, 4G and 8G\n"
	       "  --modes LIST      pending-N: N %% of the image pending at promotion\n"
	       "                    (default pending-0,pending-25)\n"
	       "--postcopy:\n"
	       "  --modes LIST      precopy[-N] (at most N rounds; plain: 30), postcopy,\n"
	       "                    hybrid[-N] (N precopy rounds, then postcopy; plain: 5),\n"
	       "                    and each as qemu-...: QEMU 7.2 migrating its test guest\n"
	       "  --link-rate LIST  tbf rates of the veth links (default 1g); 'none': loopback\n"
	       "  --no-loopback     only the veth links\n"
	       "  --dst-mem KIND    the destination's memory: anon (default; faults resolved\n"
	       "                    with UFFDIO_COPY, as QEMU and the bare baseline do) or\n"
	       "                    memfd (what ftrepl-receiver uses: shareable with a VMM)\n"
	       "\n"
	       "The veth links need root (network namespaces ftb-<pid>-tx and ftb-<pid>-rx);\n"
	       "without it only loopback runs. They are removed at the end, on SIGINT/SIGTERM\n"
	       "and on failure; leftovers of a killed run are removed by the next ftbench.\n",
	       FTB_MAX_RUNS, FTB_MAX_WARMUP);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A usage error: one line, exit status 2. */
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ftbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try --help)\n");
	return 2;
}

enum {
	OPT_SIZE = 256,
	OPT_RUNS,
	OPT_WARMUP,
	OPT_EPOCHS,
	OPT_MODES,
	OPT_DUP,
	OPT_LINKS,
	OPT_NO_LOOPBACK,
	OPT_COLD,
	OPT_NO_IPERF,
	OPT_DST_MEM,
	OPT_ALL,
	OPT_JSON,
	OPT_PLOT,
	OPT_VERSION,
	OPT_MODE = 512,		/* + index into ftb_modes */
};

int main(int argc, char **argv)
{
	struct option longopts[N_MODES + 20];
	static char modes_buf[256], links_buf[256];
	struct ftb_opts o = { .warmup = 1, .dup_share = -1 };
	const struct ftb_mode *mode = NULL;
	unsigned n = 0;
	uint64_t v;
	int opt;

	for (size_t i = 0; i < N_MODES; i++)
		longopts[n++] = (struct option){ ftb_modes[i]->name, no_argument, NULL,
						 OPT_MODE + (int)i };
	longopts[n++] = (struct option){ "size", required_argument, NULL, OPT_SIZE };
	longopts[n++] = (struct option){ "runs", required_argument, NULL, OPT_RUNS };
	longopts[n++] = (struct option){ "warmup", required_argument, NULL, OPT_WARMUP };
	longopts[n++] = (struct option){ "epochs", required_argument, NULL, OPT_EPOCHS };
	longopts[n++] = (struct option){ "modes", required_argument, NULL, OPT_MODES };
	longopts[n++] = (struct option){ "dup-share", required_argument, NULL, OPT_DUP };
	longopts[n++] = (struct option){ "link-rate", required_argument, NULL, OPT_LINKS };
	longopts[n++] = (struct option){ "no-loopback", no_argument, NULL, OPT_NO_LOOPBACK };
	longopts[n++] = (struct option){ "cold-standby", no_argument, NULL, OPT_COLD };
	longopts[n++] = (struct option){ "no-iperf", no_argument, NULL, OPT_NO_IPERF };
	longopts[n++] = (struct option){ "dst-mem", required_argument, NULL, OPT_DST_MEM };
	longopts[n++] = (struct option){ "all", no_argument, NULL, OPT_ALL };
	longopts[n++] = (struct option){ "json", no_argument, NULL, OPT_JSON };
	longopts[n++] = (struct option){ "plot", required_argument, NULL, OPT_PLOT };
	longopts[n++] = (struct option){ "version", no_argument, NULL, OPT_VERSION };
	longopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	longopts[n] = (struct option){ 0 };

	if (!getenv("FTREPL_LOG_LEVEL"))	/* the library's messages on request only */
		ftr_log_set_level(FTR_LOG_WARN);
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_SIZE:
			if (ftr_parse_size(optarg, &o.size) || o.size < (1u << 20) || o.size % 4096)
				return usage_error("--size %s: at least 1M, whole pages", optarg);
			break;
		case OPT_RUNS:
			if (ftr_parse_u64(optarg, 1, FTB_MAX_RUNS, &v))
				return usage_error("--runs %s: out of range", optarg);
			o.runs = (unsigned)v;
			break;
		case OPT_WARMUP:
			if (ftr_parse_u64(optarg, 0, FTB_MAX_WARMUP, &v))
				return usage_error("--warmup %s: out of range", optarg);
			o.warmup = (unsigned)v;
			o.warmup_set = true;
			break;
		case OPT_EPOCHS:
			if (ftr_parse_u64(optarg, 1, 1000, &v))
				return usage_error("--epochs %s: out of range", optarg);
			o.epochs = (unsigned)v;
			break;
		case OPT_MODES:
			snprintf(modes_buf, sizeof(modes_buf), "%s", optarg);
			o.nvariants = 0;
			for (char *save = NULL, *t = strtok_r(modes_buf, ",", &save); t;
			     t = strtok_r(NULL, ",", &save)) {
				if (o.nvariants == FTB_MAX_VARIANTS)
					return usage_error("--modes %s: too many", optarg);
				o.variants[o.nvariants++] = t;
			}
			if (!o.nvariants)
				return usage_error("--modes '%s': empty", optarg);
			break;
		case OPT_DUP: {
			char *end;
			double d;

			errno = 0;
			d = strtod(optarg, &end);
			if (end == optarg || *end || errno || !(d >= 0 && d <= 99))
				return usage_error("--dup-share %s: a percentage from 0 to 99",
						   optarg);
			o.dup_share = d / 100.0;
			break;
		}
		case OPT_LINKS:
			snprintf(links_buf, sizeof(links_buf), "%s", optarg);
			o.nlinks = 0;
			o.links_set = true;
			if (!strcmp(links_buf, "none"))
				break;
			for (char *save = NULL, *t = strtok_r(links_buf, ",", &save); t;
			     t = strtok_r(NULL, ",", &save)) {
				if (o.nlinks == FTB_MAX_GROUPS - 1)
					return usage_error("--link-rate %s: too many links", optarg);
				if (ftb_parse_rate(t, &o.link_bps[o.nlinks++]))
					return usage_error("--link-rate: bad rate '%s' (e.g. 1g, "
							   "250m, unshaped)", t);
			}
			break;
		case OPT_NO_LOOPBACK:
			o.no_loopback = true;
			break;
		case OPT_COLD:
			o.cold_standby = true;
			break;
		case OPT_NO_IPERF:
			o.no_iperf = true;
			break;
		case OPT_DST_MEM:
			if (strcmp(optarg, "anon") && strcmp(optarg, "memfd"))
				return usage_error("--dst-mem %s: anon or memfd", optarg);
			o.dst_memfd = !strcmp(optarg, "memfd");
			o.dst_mem_set = true;
			break;
		case OPT_ALL:
			o.all = true;
			break;
		case OPT_JSON:
			o.json = true;
			break;
		case OPT_PLOT: {
			size_t len = strlen(optarg);

			if (len < 5 || (strcasecmp(optarg + len - 4, ".png") &&
					strcasecmp(optarg + len - 4, ".svg")))
				return usage_error("--plot %s: the name must end in .png or .svg",
						   optarg);
			o.plot = optarg;
			break;
		}
		case OPT_VERSION:
			printf("ftbench (ftrepl) %s\n", ftrepl_version());
			return 0;
		case 'h':
			usage();
			return 0;
		default:
			if (opt >= OPT_MODE && opt < OPT_MODE + (int)N_MODES) {
				if (mode && mode != ftb_modes[opt - OPT_MODE])
					return usage_error("%s: one mode per run",
							   ftb_modes[opt - OPT_MODE]->name);
				mode = ftb_modes[opt - OPT_MODE];
				break;
			}
			fprintf(stderr, "ftbench: unknown option (try --help)\n");
			return 2;
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!mode)
		return usage_error("choose a mode, e.g. --%s", ftb_modes[0]->name);
	if (o.dst_mem_set && strcmp(mode->name, "postcopy"))
		return usage_error("--dst-mem belongs to --postcopy");

	ftb_cleanup_install();
	if (geteuid() == 0)
		ftb_link_clean_stale();
	return ftb_run_mode(mode, &o);
}
