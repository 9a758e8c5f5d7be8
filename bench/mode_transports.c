/* SPDX-License-Identifier: MIT */
/*
 * --transports: replicates a synthetic region whose every page is distinct
 * (so none travels as a fill record) with `--dirty full`: every epoch
 * carries every page through the standby's staging slots, and the standby
 * applies each epoch to its cache before the slots come back as credit.
 * Throughput counts page payload of the epochs after the initial sync, in
 * each tcp mode, over loopback. iperf3 on the same loopback, in the same
 * run, is the reference (ftbench's own bulk stream when iperf3 is missing
 * or --no-iperf).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <ftrepl/transport.h>

#include "ftbench.h"

enum {
	M_GBPS,
	M_TX_CPU,
	M_RX_CPU,
	M_TX_SYS,
	M_RX_SYS,
	M_TX_PROC_CPU,
	M_PAGES,
	M_SECONDS,
	M__COUNT,
};

static const struct ftb_metric metrics[M__COUNT] = {
	[M_GBPS] = { "gbps", "GB/s" },
	[M_TX_CPU] = { "tx_cpu_s_per_gb", "s/GB" },
	[M_RX_CPU] = { "rx_cpu_s_per_gb", "s/GB" },
	[M_TX_SYS] = { "tx_syscalls_per_gb", "1/GB" },
	[M_RX_SYS] = { "rx_syscalls_per_gb", "1/GB" },
	[M_TX_PROC_CPU] = { "tx_proc_cpu_s_per_gb", "s/GB" },
	[M_PAGES] = { "pages", "" },
	[M_SECONDS] = { "seconds", "s" },
};

#define DEFAULT_EPOCHS 3

struct tr_state {
	struct ftb_tcp_ref ref;
	bool have_ref;
	unsigned epochs;
};

static int tr_prepare(struct ftb_ctx *c, char *err, size_t errlen)
{
	struct tr_state *s;

	if (c->o.dup_share >= 0 || c->o.links_set || c->o.no_loopback || c->o.cold_standby) {
		snprintf(err, errlen, "--dup-share, --link-rate, --no-loopback and --cold-standby "
			 "belong to --writev-vs-write");
		return -EINVAL;
	}
	for (unsigned v = 0; v < c->nvariants; v++) {
		struct ftr_tp_opts tp = { .transport = "tcp", .mode = c->variants[v] };

		if (ftr_tp_check_opts(&tp, err, errlen))
			return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->epochs = c->o.epochs ? c->o.epochs : DEFAULT_EPOCHS;
	c->priv = s;
	c->ngroups = 1;
	snprintf(c->groups[0].name, sizeof(c->groups[0].name), "loopback");
	json_object_set_new(c->config, "epochs", json_integer(s->epochs));
	fprintf(c->out, "ftbench --transports: %" PRIu64 " MiB region, every page distinct and "
		"dirty, %u epochs after the initial sync, %u run(s) per mode after %u warm-up, "
		"loopback\n", c->o.size >> 20, s->epochs, c->o.runs, c->o.warmup);
	return 0;
}

static int tr_group_begin(struct ftb_ctx *c, unsigned g, char *err, size_t errlen)
{
	struct tr_state *s = c->priv;
	int ret;

	ret = ftb_tcp_reference(-1, -1, "127.0.0.1", 4.0, c->o.no_iperf, &s->ref, err, errlen);
	if (ret && !c->o.no_iperf) {
		ftb_note("%s; using ftbench's own bulk stream", err);
		ret = ftb_tcp_reference(-1, -1, "127.0.0.1", 4.0, true, &s->ref, err, errlen);
	}
	if (ret)
		return ret;
	s->have_ref = true;
	json_object_set_new(c->groups[g].info, "reference",
			    json_pack("{s:s, s:f, s:f}", "tool", s->ref.tool, "gbit_s",
				      s->ref.gbit_s, "gbps", s->ref.gbit_s / 8.0));
	ftb_note("[loopback] reference %s: %.3f GB/s", s->ref.tool, s->ref.gbit_s / 8.0);
	return 0;
}

static int tr_run(struct ftb_ctx *c, unsigned g, unsigned v, double *m, char *err,
		  size_t errlen)
{
	struct tr_state *s = c->priv;
	struct ftb_repl_cfg cfg = {
		.size = c->o.size,
		.tcp_mode = c->variants[v],
		.measure = FTB_MEASURE_EPOCHS,
		.epochs = s->epochs,
		.tx_ns = -1,
		.rx_ns = -1,
		.rx_ip = "127.0.0.1",
	};
	struct ftb_repl_res r;
	double gb;
	int ret;

	ret = ftb_replicate(&cfg, NULL, &r, err, errlen);
	if (ret)
		return ret;
	gb = (double)r.pages * 4096.0 / 1e9;
	if (gb <= 0 || r.seconds <= 0) {
		snprintf(err, errlen, "no pages were measured");
		return -EIO;
	}
	m[M_GBPS] = gb / r.seconds;
	m[M_TX_CPU] = r.tx_cpu_s / gb;
	m[M_RX_CPU] = r.rx_cpu_s / gb;
	m[M_TX_SYS] = (double)r.tx_syscalls / gb;
	m[M_RX_SYS] = (double)r.rx_syscalls / gb;
	m[M_TX_PROC_CPU] = r.tx_proc_cpu_s / gb;
	m[M_PAGES] = (double)r.pages;
	m[M_SECONDS] = r.seconds;
	return 0;
}

static void tr_report(struct ftb_ctx *c)
{
	struct tr_state *s = c->priv;
	double ref = s->ref.gbit_s / 8.0, best = 0;
	const char *best_mode = NULL;
	FILE *o = c->out;

	fprintf(o, "\n%-12s %8s %8s %8s %12s %12s %14s %14s %9s\n", "mode", "GB/s", "min", "max",
		"tx CPU s/GB", "rx CPU s/GB", "tx syscalls/GB", "rx syscalls/GB", "x ref");
	for (unsigned v = 0; v < c->nvariants; v++) {
		struct ftb_stats st[M__COUNT];

		for (unsigned k = 0; k < M__COUNT; k++)
			ftb_case_stats(c, 0, v, k, &st[k]);
		if (st[M_GBPS].median > best) {
			best = st[M_GBPS].median;
			best_mode = c->variants[v];
		}
		fprintf(o, "tcp/%-8s %8.3f %8.3f %8.3f %12.3f %12.3f %14.0f %14.0f %9.2f\n",
			c->variants[v], st[M_GBPS].median, st[M_GBPS].min, st[M_GBPS].max,
			st[M_TX_CPU].median, st[M_RX_CPU].median, st[M_TX_SYS].median,
			st[M_RX_SYS].median, ref > 0 ? st[M_GBPS].median / ref : 0);
	}
	fprintf(o, "%-12s %8.3f\n", s->ref.tool, ref);
	fprintf(o, "memcpy       %8.3f  (4 KiB pages, same run)\n", c->memcpy_gbps);
	fprintf(o, "(medians of %u runs; tx CPU is the sending thread)\n", c->o.runs);
	if (best_mode && ref > 0)
		fprintf(o, "\nbest: tcp/%s %.3f GB/s = %.2fx %s (target 0.75x)\n", best_mode, best,
			best / ref, s->ref.tool);
	json_object_set_new(c->summary, "reference",
			    json_pack("{s:s, s:f}", "tool", s->ref.tool, "gbps", ref));
	if (best_mode)
		json_object_set_new(c->summary, "best",
				    json_pack("{s:s, s:f, s:f}", "mode", best_mode, "gbps", best,
					      "ratio_to_reference", ref > 0 ? best / ref : 0));
}

static int tr_plot(struct ftb_ctx *c, FILE *gp, const char *datafile, FILE *data)
{
	struct tr_state *s = c->priv;

	for (unsigned v = 0; v < c->nvariants; v++) {
		struct ftb_stats st;

		ftb_case_stats(c, 0, v, M_GBPS, &st);
		fprintf(data, "tcp/%s %.6f %.6f %.6f\n", c->variants[v], st.median, st.min, st.max);
	}
	fprintf(gp, "set title \"ftbench --transports: %" PRIu64 " MiB, every page every epoch, "
		"loopback (median, min-max of %u runs)\"\n", c->o.size >> 20, c->o.runs);
	fprintf(gp, "set ylabel 'GB/s of page payload'\n"
		"set style data histogram\n"
		"set style histogram errorbars gap 1 lw 1\n"
		"set style fill solid 0.6 border -1\n"
		"set grid ytics\nset yrange [0:*]\nset xrange [-0.5:%u.5]\n"
		"set key top left\n", c->nvariants - 1);
	fprintf(gp, "plot '%s' using 2:3:4:xtic(1) title 'ftrepl'", datafile);
	if (s->have_ref)
		fprintf(gp, ", %.6f with lines lw 2 dt 2 title '%s (same run)'", s->ref.gbit_s / 8.0,
			s->ref.tool);
	fputc('\n', gp);
	return 0;
}

static void tr_finish(struct ftb_ctx *c)
{
	free(c->priv);
	c->priv = NULL;
}

const struct ftb_mode ftb_mode_transports = {
	.name = "transports",
	.summary = "replicate a region with every page dirty over loopback in each tcp mode:\n"
		   "payload GB/s, CPU s/GB and syscalls/GB on each side, next to iperf3\n"
		   "measured in the same run",
	.example = "ftbench --transports --size 1G --runs 3",
	.duration = "takes about 1-2 min (1G, 3 runs + 1 warm-up, 3 modes)",
	.default_variants = "write,writev"
#ifdef FTREPL_HAVE_URING
			    ",uring"
#endif
	,
	.default_size = 1ull << 30,
	.default_runs = 3,
	.metrics = metrics,
	.nmetrics = M__COUNT,
	.prepare = tr_prepare,
	.group_begin = tr_group_begin,
	.run = tr_run,
	.report = tr_report,
	.plot = tr_plot,
	.finish = tr_finish,
};
