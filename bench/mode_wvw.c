/* SPDX-License-Identifier: MIT */
/*
 * --writev-vs-write: the measurement that justified iovec batching in the
 * Kemari series (512 MB guest, every page sent once, not live, no rate
 * limit, 10 runs each, mean and std; GbE: writev 35.732 s (std 0.002),
 * write 35.780 s (std 0.164); IPoIB: writev 13.889 s (std 0.155), write
 * 16.777 s (std 0.239), writev 17 % faster).
 *
 * Here: a guest-like region (distinct pages plus --dup-share of pages that
 * are one repeated byte, sent as fill records) goes once through the
 * initial sync of the real primary to a real standby (replicate.c), with
 * tcp mode `write` (one write per header and per page) against `writev`
 * (batched iovecs), over loopback and over a veth pair between two
 * namespaces shaped with tbf (netns.c), one link after another. Each link
 * gets its own TCP reference (iperf3 inside the namespaces) in the same run.
 *
 * What to expect: on a link slower than either mode can send (1 Gbit/s),
 * both take the link's time and only the sender's CPU shows the cost of a
 * system call per page; unshaped, the system calls are the bottleneck and
 * writev is faster.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ftrepl/transport.h>

#include "ftbench.h"

enum {
	M_SECONDS,
	M_WRITE_CALLS,
	M_WRITEV_CALLS,
	M_DUP,
	M_NODUP,
	M_TX_CPU_GB,
	M_RX_CPU_GB,
	M_TX_PROC_CPU_GB,
	M_TX_SYS,
	M_RX_SYS,
	M_GBIT,
	M_RESENT,
	M_TX_CPU,
	M__COUNT,
};

static const struct ftb_metric metrics[M__COUNT] = {
	[M_SECONDS] = { "seconds", "s" },
	[M_WRITE_CALLS] = { "write_calls", "" },
	[M_WRITEV_CALLS] = { "writev_calls", "" },
	[M_DUP] = { "dup_pages", "" },
	[M_NODUP] = { "nodup_pages", "" },
	[M_TX_CPU_GB] = { "tx_cpu_s_per_gb", "s/GB" },
	[M_RX_CPU_GB] = { "rx_cpu_s_per_gb", "s/GB" },
	[M_TX_PROC_CPU_GB] = { "tx_proc_cpu_s_per_gb", "s/GB" },
	[M_TX_SYS] = { "tx_syscalls", "" },
	[M_RX_SYS] = { "rx_syscalls", "" },
	[M_GBIT] = { "payload_gbit_s", "Gbit/s" },
	[M_RESENT] = { "resent_pages", "" },
	[M_TX_CPU] = { "tx_cpu_s", "s" },
};

#define DEFAULT_DUP_SHARE 0.034
#define REFERENCE_SECONDS 3.0
/* The criteria (ftrepl issue 7). */
#define LINK_BOUND_MAX_BPS 1000000000ull /* shaped this slow: both modes link-bound */
#define SAME_TIME_TOLERANCE 0.05
#define UNSHAPED_MIN_SPEEDUP 1.17

struct wv_state {
	struct ftb_link link;
	struct ftb_standby_proc sb;	/* the current group's standby (warm mode) */
	bool veth[FTB_MAX_GROUPS];
	uint64_t rate[FTB_MAX_GROUPS];	/* 0 = unshaped */
	struct ftb_tcp_ref ref[FTB_MAX_GROUPS];
	bool have_ref[FTB_MAX_GROUPS];
	char qdisc[FTB_MAX_GROUPS][128];
	double share;
	uint64_t distinct, fill;
	int iw, iv;		/* index of variant write and writev, -1 if absent */
};

static int wv_prepare(struct ftb_ctx *c, char *err, size_t errlen)
{
	struct wv_state *s;
	json_t *rates = json_array();
	char rname[32], names[160] = "";
	size_t nlen = 0;
	unsigned nveth = 0;

	json_object_set_new(c->config, "link_rates_bps", rates);
	if (c->o.epochs) {
		snprintf(err, errlen, "--epochs belongs to --transports");
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
	c->priv = s;
	s->link.ns_fd[0] = s->link.ns_fd[1] = -1;
	s->sb.pid = -1;
	s->sb.cmd_fd = s->sb.rep_fd = -1;
	s->iw = s->iv = -1;
	for (unsigned v = 0; v < c->nvariants; v++) {
		if (!strcmp(c->variants[v], "write"))
			s->iw = (int)v;
		if (!strcmp(c->variants[v], "writev"))
			s->iv = (int)v;
	}
	s->share = c->o.dup_share >= 0 ? c->o.dup_share : DEFAULT_DUP_SHARE;
	ftb_region_split(c->o.size, s->share, &s->distinct, &s->fill);

	if (!c->o.no_loopback) {
		snprintf(c->groups[c->ngroups].name, sizeof(c->groups[0].name), "loopback");
		c->ngroups++;
	}
	{
		uint64_t defaults[] = { 1000000000ull, 10000000000ull };
		const uint64_t *r = c->o.links_set ? c->o.link_bps : defaults;
		unsigned n = c->o.links_set ? c->o.nlinks : 2;

		for (unsigned i = 0; i < n && c->ngroups < FTB_MAX_GROUPS; i++) {
			unsigned g = c->ngroups++;

			s->veth[g] = true;
			s->rate[g] = r[i];
			snprintf(c->groups[g].name, sizeof(c->groups[g].name), "veth-%s",
				 ftb_rate_name(r[i], rname, sizeof(rname)));
			json_array_append_new(rates, json_integer((json_int_t)r[i]));
			nlen += (size_t)snprintf(names + nlen, nlen < sizeof(names) ?
						 sizeof(names) - nlen : 0, "%s%s",
						 nveth ? ", " : "", rname);
			nveth++;
		}
	}
	if (!c->ngroups) {
		snprintf(err, errlen, "--no-loopback and no --link-rate: nothing to measure");
		return -EINVAL;
	}
	if (nveth && geteuid() != 0) {
		ftb_note("not root: the shaped links (%s) need network namespaces, which only root "
			 "can create; measuring loopback only", names);
		for (unsigned g = 0; g < c->ngroups; g++) {
			if (s->veth[g]) {
				c->groups[g].skipped = true;
				snprintf(c->groups[g].skip_reason, sizeof(c->groups[g].skip_reason),
					 "needs root to create network namespaces");
			}
		}
		if (c->o.no_loopback) {
			snprintf(err, errlen, "not root and --no-loopback: nothing left to measure");
			return -EPERM;
		}
	}
	json_object_set_new(c->config, "dup_share", json_real(s->share));
	json_object_set_new(c->config, "standby", json_string(c->o.cold_standby ? "cold" : "warm"));
	json_object_set_new(c->config, "pages",
			    json_pack("{s:I, s:I, s:I}", "total",
				      (json_int_t)(c->o.size / 4096), "distinct",
				      (json_int_t)s->distinct, "dup", (json_int_t)s->fill));
	fprintf(c->out, "ftbench --writev-vs-write: %" PRIu64 " MiB region = %" PRIu64 " pages "
		"(%" PRIu64 " distinct, %" PRIu64 " dup = %.1f %%), every page sent once, not "
		"live, no rate limit; %u run(s) per mode after %u warm-up\n",
		c->o.size >> 20, c->o.size / 4096, s->distinct, s->fill,
		100.0 * (double)s->fill / (double)(c->o.size / 4096), c->o.runs, c->o.warmup);
	return 0;
}

static struct ftb_repl_cfg run_cfg(struct ftb_ctx *c, unsigned g, const char *tcp_mode)
{
	struct wv_state *s = c->priv;
	struct ftb_repl_cfg cfg = {
		.size = c->o.size,
		.tcp_mode = tcp_mode,
		.measure = FTB_MEASURE_SYNC,
		.dup_share = s->share,
		.tx_ns = s->veth[g] ? s->link.ns_fd[0] : -1,
		.rx_ns = s->veth[g] ? s->link.ns_fd[1] : -1,
		.rx_ip = s->veth[g] ? FTB_RX_IP : "127.0.0.1",
	};

	return cfg;
}

static int wv_group_begin(struct ftb_ctx *c, unsigned g, char *err, size_t errlen)
{
	struct wv_state *s = c->priv;
	const char *ip = s->veth[g] ? FTB_RX_IP : "127.0.0.1";
	int tx = -1, rx = -1, ret;
	json_t *info = c->groups[g].info;

	if (s->veth[g]) {
		if (!s->link.up) {
			ret = ftb_link_create(&s->link, err, errlen);
			if (ret) {
				/* no later veth group can run either */
				for (unsigned h = g + 1; h < c->ngroups; h++) {
					if (s->veth[h]) {
						c->groups[h].skipped = true;
						snprintf(c->groups[h].skip_reason,
							 sizeof(c->groups[h].skip_reason), "%s",
							 err);
					}
				}
				return -EOPNOTSUPP;
			}
			ftb_note("created namespaces %s and %s joined by veth ftb-tx/ftb-rx",
				 s->link.ns_name[0], s->link.ns_name[1]);
		}
		ret = ftb_link_shape(&s->link, s->rate[g], err, errlen);
		if (ret)
			return ret;
		tx = s->link.ns_fd[0];
		rx = s->link.ns_fd[1];
		snprintf(s->qdisc[g], sizeof(s->qdisc[g]), "%s",
			 s->rate[g] ? s->link.qdisc : "no qdisc");
		json_object_set_new(info, "rate_bps", json_integer((json_int_t)s->rate[g]));
		json_object_set_new(info, "qdisc", s->rate[g] ? json_string(s->link.qdisc)
							      : json_null());
		json_object_set_new(info, "namespaces",
				    json_pack("{s:s, s:s}", "sender", s->link.ns_name[0],
					      "receiver", s->link.ns_name[1]));
	} else {
		json_object_set_new(info, "rate_bps", json_integer(0));
	}
	ret = ftb_tcp_reference(tx, rx, ip, REFERENCE_SECONDS, c->o.no_iperf, &s->ref[g], err,
				errlen);
	if (ret && !c->o.no_iperf) {
		ftb_note("[%s] %s; using ftbench's own bulk stream", c->groups[g].name, err);
		ret = ftb_tcp_reference(tx, rx, ip, REFERENCE_SECONDS, true, &s->ref[g], err,
					errlen);
	}
	if (ret) {
		ftb_note("[%s] no TCP reference: %s", c->groups[g].name, err);
	} else {
		s->have_ref[g] = true;
		json_object_set_new(info, "reference",
				    json_pack("{s:s, s:f, s:f, s:I}", "tool", s->ref[g].tool,
					      "gbit_s", s->ref[g].gbit_s, "seconds",
					      s->ref[g].seconds, "retransmits",
					      (json_int_t)s->ref[g].retransmits));
		ftb_note("[%s] reference %s: %.3f Gbit/s", c->groups[g].name, s->ref[g].tool,
			 s->ref[g].gbit_s);
	}
	if (!c->o.cold_standby) {
		struct ftb_repl_cfg cfg = run_cfg(c, g, NULL);

		/* one standby for the group's runs: the warm-up run populates
		 * its cache, every later session finds it in place */
		ret = ftb_standby_spawn(&cfg, &s->sb, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

static void wv_group_end(struct ftb_ctx *c, unsigned g)
{
	struct wv_state *s = c->priv;

	if (s->sb.pid > 0)
		ftb_standby_end(&s->sb);
}

static int wv_run(struct ftb_ctx *c, unsigned g, unsigned v, double *m, char *err,
		  size_t errlen)
{
	struct wv_state *s = c->priv;
	struct ftb_repl_cfg cfg = run_cfg(c, g, c->variants[v]);
	struct ftb_repl_res r;
	double gb;
	int ret;

	ret = ftb_replicate(&cfg, c->o.cold_standby ? NULL : &s->sb, &r, err, errlen);
	if (ret)
		return ret;
	gb = (double)r.pages * 4096.0 / 1e9;
	m[M_SECONDS] = r.seconds;
	m[M_WRITE_CALLS] = (int)v == s->iw ? (double)r.tx_syscalls : 0;
	m[M_WRITEV_CALLS] = (int)v == s->iv ? (double)r.tx_syscalls : 0;
	m[M_DUP] = (double)r.fill_pages;
	m[M_NODUP] = (double)r.pages;
	m[M_TX_CPU_GB] = r.tx_cpu_s / gb;
	m[M_RX_CPU_GB] = r.rx_cpu_s / gb;
	m[M_TX_PROC_CPU_GB] = r.tx_proc_cpu_s / gb;
	m[M_TX_SYS] = (double)r.tx_syscalls;
	m[M_RX_SYS] = (double)r.rx_syscalls;
	m[M_GBIT] = gb * 8.0 / r.seconds;
	m[M_RESENT] = (double)r.resent;
	m[M_TX_CPU] = r.tx_cpu_s;
	return 0;
}

static void wv_finish(struct ftb_ctx *c)
{
	struct wv_state *s = c->priv;

	if (!s)
		return;
	if (s->sb.pid > 0)
		ftb_standby_end(&s->sb);
	if (s->link.up) {
		ftb_link_destroy(&s->link);
		ftb_note("removed namespaces %s and %s", s->link.ns_name[0], s->link.ns_name[1]);
	}
	free(s);
	c->priv = NULL;
}

/* ---- the report ---------------------------------------------------------------------- */

static void count_cell(FILE *o, int width, const struct ftb_stats *st)
{
	if (st->max == 0)
		fprintf(o, " %*s", width, "-");
	else
		fprintf(o, " %*.0f", width, st->median);
}

static void wv_table(struct ftb_ctx *c)
{
	FILE *o = c->out;

	fprintf(o, "\n%-14s %-7s %9s %7s %9s %9s %9s %12s %12s %9s %11s %11s %11s\n", "link",
		"mode", "time mean", "std", "median", "min", "max", "write calls", "writev calls",
		"dup pages", "nodup pages", "tx CPU s/GB", "rx CPU s/GB");
	for (unsigned g = 0; g < c->ngroups; g++) {
		if (c->groups[g].skipped)
			continue;
		for (unsigned v = 0; v < c->nvariants; v++) {
			struct ftb_stats st[M__COUNT];

			for (unsigned k = 0; k < M__COUNT; k++)
				ftb_case_stats(c, g, v, k, &st[k]);
			fprintf(o, "%-14s %-7s %9.3f %7.3f %9.3f %9.3f %9.3f", c->groups[g].name,
				c->variants[v], st[M_SECONDS].mean, st[M_SECONDS].std,
				st[M_SECONDS].median, st[M_SECONDS].min, st[M_SECONDS].max);
			count_cell(o, 12, &st[M_WRITE_CALLS]);
			count_cell(o, 12, &st[M_WRITEV_CALLS]);
			fprintf(o, " %9.0f %11.0f %11.3f %11.3f\n", st[M_DUP].median,
				st[M_NODUP].median, st[M_TX_CPU_GB].mean, st[M_RX_CPU_GB].mean);
		}
	}
	fprintf(o, "(time in seconds: mean, sample std, median, min, max of %u runs; counts are "
		"medians; CPU means: tx = the sending thread, rx = the standby process)\n",
		c->o.runs);
}

/* Adds one check to the link's summary and writes its text to buf; shown
 * is the value as printed. */
static void check(json_t *checks, const char *name, bool pass, double value, const char *shown,
		  char *buf, size_t len)
{
	json_array_append_new(checks, json_pack("{s:s, s:b, s:f}", "check", name, "pass", pass,
						"value", value));
	snprintf(buf, len, "%s: %s (%s)", name, pass ? "yes" : "NO", shown);
}

/* The expectations of ftrepl issue 7 for link g, as text in b1/b2 and as
 * checks[] in the summary. */
static void expectations(const struct wv_state *s, unsigned g, double ratio, double speedup,
			 double cpu, json_t *checks, char *b1, char *b2, size_t len)
{
	char shown[32];

	if (!s->veth[g] || !s->rate[g]) {
		snprintf(shown, sizeof(shown), "%.2fx", speedup);
		check(checks, "unshaped: writev >= 1.17x faster", speedup >= UNSHAPED_MIN_SPEEDUP,
		      speedup, shown, b1, len);
	} else if (s->rate[g] <= LINK_BOUND_MAX_BPS) {
		snprintf(shown, sizeof(shown), "%+.1f %%", (ratio - 1.0) * 100.0);
		check(checks, "link-bound: same time within 5 %",
		      fabs(ratio - 1.0) <= SAME_TIME_TOLERANCE, (ratio - 1.0) * 100.0, shown, b1,
		      len);
		snprintf(shown, sizeof(shown), "%.2fx", cpu);
		check(checks, "write costs more sender CPU", cpu > 1.0, cpu, shown, b2, len);
	} else {
		snprintf(b1, len, "(none at this rate)");
	}
}

static void wv_summary(struct ftb_ctx *c)
{
	struct wv_state *s = c->priv;
	bool both = s->iw >= 0 && s->iv >= 0;
	json_t *links = json_array();
	FILE *o = c->out;

	json_object_set_new(c->summary, "links", links);
	fprintf(o, "\n%-14s %-24s %11s %9s %8s %11s %9s %9s  %s\n", "link", "TCP reference",
		"at ref rate", "wv/w time", "speedup", "tx CPU w/wv", "w of ref", "wv of ref",
		"expectation (ftrepl issue 7)");
	for (unsigned g = 0; g < c->ngroups; g++) {
		double payload_bits = (double)s->distinct * 4096.0 * 8.0, ratio = 0, speedup = 0;
		double cpu = 0, gw = 0, gv = 0;
		char ref[48] = "-", at[24] = "-", ofw[16] = "-", ofv[16] = "-", b1[96] = "",
		     b2[96] = "", cmp[48] = "        -        -           -";
		json_t *l;

		if (c->groups[g].skipped) {
			fprintf(o, "%-14s skipped: %s\n", c->groups[g].name,
				c->groups[g].skip_reason);
			continue;
		}
		l = json_pack("{s:s, s:I}", "link", c->groups[g].name, "rate_bps",
			      (json_int_t)s->rate[g]);
		json_array_append_new(links, l);
		if (both) {
			struct ftb_stats tw, tv, cw, cv, sw, sv;
			json_t *checks = json_array();

			ftb_case_stats(c, g, (unsigned)s->iw, M_SECONDS, &tw);
			ftb_case_stats(c, g, (unsigned)s->iv, M_SECONDS, &tv);
			ftb_case_stats(c, g, (unsigned)s->iw, M_TX_CPU_GB, &cw);
			ftb_case_stats(c, g, (unsigned)s->iv, M_TX_CPU_GB, &cv);
			ftb_case_stats(c, g, (unsigned)s->iw, M_GBIT, &sw);
			ftb_case_stats(c, g, (unsigned)s->iv, M_GBIT, &sv);
			ratio = tv.mean / tw.mean;
			speedup = tw.mean / tv.mean;
			cpu = cw.mean / cv.mean;
			gw = sw.mean;
			gv = sv.mean;
			snprintf(cmp, sizeof(cmp), "%9.3f %7.2fx %10.2fx", ratio, speedup, cpu);
			expectations(s, g, ratio, speedup, cpu, checks, b1, b2, sizeof(b1));
			json_object_set_new(l, "time_ratio_writev_to_write", json_real(ratio));
			json_object_set_new(l, "writev_speedup", json_real(speedup));
			json_object_set_new(l, "tx_cpu_ratio_write_to_writev", json_real(cpu));
			json_object_set_new(l, "checks", checks);
		}
		if (s->have_ref[g]) {
			double ref_bps = s->ref[g].gbit_s * 1e9;

			snprintf(ref, sizeof(ref), "%s %.3f Gbit/s", s->ref[g].tool,
				 s->ref[g].gbit_s);
			snprintf(at, sizeof(at), "%.3f s", payload_bits / ref_bps);
			if (both) {
				snprintf(ofw, sizeof(ofw), "%.0f %%", 100.0 * gw / s->ref[g].gbit_s);
				snprintf(ofv, sizeof(ofv), "%.0f %%", 100.0 * gv / s->ref[g].gbit_s);
			}
			json_object_set_new(l, "reference_gbit_s", json_real(s->ref[g].gbit_s));
			json_object_set_new(l, "payload_time_at_reference_s",
					    json_real(payload_bits / ref_bps));
		}
		fprintf(o, "%-14s %-24s %11s %s %9s %9s  %s%s%s\n", c->groups[g].name, ref, at,
			cmp, ofw, ofv, b1, b2[0] ? "; " : "", b2);
	}
	if (!both)
		fprintf(o, "(the writev/write comparison needs both write and writev in --modes)\n");
	fprintf(o, "memcpy (4 KiB pages, same run): %.2f GB/s\n", c->memcpy_gbps);
	for (unsigned g = 0; g < c->ngroups; g++)
		if (!c->groups[g].skipped && s->veth[g])
			fprintf(o, "%s: %s on ftb-tx (sender side)\n", c->groups[g].name,
				s->qdisc[g]);
}

static void wv_report(struct ftb_ctx *c)
{
	wv_table(c);
	wv_summary(c);
}

static int wv_plot(struct ftb_ctx *c, FILE *gp, const char *datafile, FILE *data)
{
	unsigned rows = 0;

	for (unsigned g = 0; g < c->ngroups; g++) {
		if (c->groups[g].skipped)
			continue;
		fprintf(data, "%s", c->groups[g].name);
		for (unsigned v = 0; v < c->nvariants; v++) {
			struct ftb_stats t, cpu;

			ftb_case_stats(c, g, v, M_SECONDS, &t);
			ftb_case_stats(c, g, v, M_TX_CPU_GB, &cpu);
			fprintf(data, " %.6f %.6f %.6f %.6f", t.mean, t.std, cpu.mean, cpu.std);
		}
		fputc('\n', data);
		rows++;
	}
	if (!rows)
		return -ENODATA;
	fprintf(gp, "set multiplot layout 1,2 title \"ftbench --writev-vs-write: %" PRIu64
		" MiB, every page once (mean and std of %u runs)\"\n", c->o.size >> 20, c->o.runs);
	fprintf(gp, "set style data histogram\n"
		"set style histogram errorbars gap 1 lw 1\n"
		"set style fill solid 0.6 border -1\n"
		"set grid ytics\nset yrange [0:*]\nset key top left\n");
	for (int panel = 0; panel < 2; panel++) {
		fprintf(gp, "set title '%s'\nset ylabel '%s'\nplot ",
			panel ? "sender CPU per GB of pages" : "time to send the region",
			panel ? "CPU seconds (sending thread) per GB" : "seconds");
		for (unsigned v = 0; v < c->nvariants; v++) {
			unsigned col = 2 + 4 * v + 2 * (unsigned)panel;

			if (v)
				fprintf(gp, ", ");
			fprintf(gp, "'%s' using %u:%u%s title '%s'", datafile, col, col + 1,
				v ? "" : ":xtic(1)", c->variants[v]);
		}
		fputc('\n', gp);
	}
	fprintf(gp, "unset multiplot\n");
	return 0;
}

const struct ftb_mode ftb_mode_writev_vs_write = {
	.name = "writev-vs-write",
	.summary = "the Kemari measurement: a guest-like region (distinct pages plus\n"
		   "--dup-share of one-byte-fill pages) sent once with one write per header\n"
		   "and per page against batched writev, over loopback and veth pairs between\n"
		   "two namespaces shaped with tbf (needs root); time mean/std, write and\n"
		   "writev calls, dup/nodup pages, writev/write time ratio, sender CPU per GB,\n"
		   "iperf3 on each link in the same run",
	.example = "ftbench --writev-vs-write --runs 3 --link-rate 1g,10g",
	.duration = "takes about 70 s (3 runs + 1 warm-up per mode and link: a 512M run is\n"
		    "~0.2-0.8 s on loopback, ~4.4 s at 1g, ~0.5-1.2 s at 10g, plus ~0.5 s\n"
		    "set-up); about 3 min with the defaults (10 runs)",
	.default_variants = "write,writev",
	.default_size = 512ull << 20,
	.default_runs = 10,
	.metrics = metrics,
	.nmetrics = M__COUNT,
	.prepare = wv_prepare,
	.group_begin = wv_group_begin,
	.run = wv_run,
	.group_end = wv_group_end,
	.report = wv_report,
	.plot = wv_plot,
	.finish = wv_finish,
};
