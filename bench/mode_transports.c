/* SPDX-License-Identifier: MIT */
/*
 * --transports: replicates a synthetic region whose every page is distinct
 * (so none travels as a fill record) with `--dirty full`: every epoch
 * carries every page through the standby's staging slots, and the standby
 * applies each epoch to its cache before the slots come back as credit.
 * Throughput counts page payload of the epochs after the initial sync.
 *
 * Variants (--modes), each with the reference it is compared with, measured
 * in the same run (before the runs and again after them):
 *   MODE        tcp MODE (write, writev, uring, zerocopy, uring-zc), one
 *               data channel, over loopback; reference iperf3 (one
 *               stream), or ftbench's own bulk stream when iperf3 is
 *               missing or --no-iperf. The zero-copy modes run with the
 *               channel's fallback disabled (zc_no_fallback), so they
 *               measure the zero-copy path itself; their rows add the
 *               share of completions the kernel flagged "copied" (all of
 *               them on loopback);
 *   MODE-Nch    the same with N data channels (the primary's nchannels);
 *               reference `iperf3 -P N` (none without iperf3);
 *   rdma[-send][-Nch]
 *               the rdma transport (mode write, or send), on the device
 *               FTREPL_RDMA_DEV / RXE_DEV (default rxe0) at the address
 *               FTREPL_RDMA_IP / RXE_IP (rdma_cm cannot use 127.0.0.1);
 *               reference `ib_write_bw -s 4096` on the same device, server
 *               and client on that address. Without a usable device the
 *               rdma variants are dropped with the reason (not a failure).
 *
 * Each run is ftb_replicate() (replicate.c, FTB_MEASURE_EPOCHS): a fresh
 * standby child and a primary child with the variant's transport options
 * (both engines), channel count and CRC setting, 60 s engine timeouts and
 * a deadline that allows 1 MB/s per pass for rdma (emulated under TCG).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
	M_ZC_SENDS,
	M_ZC_COPIED,
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
	[M_ZC_SENDS] = { "zc_sends_per_gb", "1/GB" },
	[M_ZC_COPIED] = { "zc_copied_share", "" },
};

#define DEFAULT_EPOCHS 3
#define MAX_CHANNELS 16
#define IPERF_SECONDS 4
#define TCP_TARGET 0.75
#define RDMA_TARGET 0.8
#define MONITOR_POLL_US 2000
#define IBW_PORT 18517

/* What a variant name says. */
struct tr_variant {
	bool rdma;
	char mode[64];		/* tcp: write/writev/uring/zerocopy/uring-zc; rdma: write/send */
	bool zc;		/* a tcp zero-copy mode */
	unsigned nch;		/* data channels */
	bool no_crc;		/* -nocrc: the primary's no_data_crc */
	int ref;		/* index into tr_state.refs */
};

/* One reference, measured before the runs [0] and after them [1]. */
struct tr_ref {
	char label[32];		/* "iperf3 -P 2", "ib_write_bw -s 4096" */
	bool rdma;
	unsigned streams;
	double gbps[2];		/* GB/s (1e9 bytes), 0 = not measured */
	char why[160];		/* when not measured */
};

struct tr_state {
	unsigned epochs;
	struct tr_variant var[FTB_MAX_VARIANTS];
	struct tr_ref refs[FTB_MAX_VARIANTS];
	unsigned nrefs;
	char rdma_dev[64];
	char rdma_ip[64];
	char rdma_skip[200];	/* why the rdma variants were dropped, "" = not */
	bool have_rdma;
};

/* ---- variants ------------------------------------------------------------------ */

/* "writev", "writev-4ch", "rdma", "rdma-send-2ch", "rdma-nocrc": a base
 * (tcp mode, or rdma[-MODE]) and suffixes -Nch, -nocrc. 0 or -EINVAL. */
static int parse_variant(const char *name, struct tr_variant *v, char *err, size_t errlen)
{
	struct ftr_tp_opts tp = { 0 };
	char buf[64], *dash, tail;
	unsigned n;
	int ret;

	memset(v, 0, sizeof(*v));
	v->nch = 1;
	snprintf(buf, sizeof(buf), "%s", name);
	while ((dash = strrchr(buf, '-'))) {
		if (!strcmp(dash + 1, "nocrc")) {
			v->no_crc = true;
		} else if (sscanf(dash + 1, "%uch%c", &n, &tail) == 1) {
			if (n < 1 || n > MAX_CHANNELS) {
				snprintf(err, errlen, "--modes %s: 1 to %d channels", name,
					 MAX_CHANNELS);
				return -EINVAL;
			}
			v->nch = n;
		} else {
			break;
		}
		*dash = '\0';
	}
	if (!strcmp(buf, "rdma") || !strncmp(buf, "rdma-", 5)) {
		v->rdma = true;
		snprintf(v->mode, sizeof(v->mode), "%s", buf[4] ? buf + 5 : "write");
	} else {
		snprintf(v->mode, sizeof(v->mode), "%s", buf);
		v->zc = !strcmp(buf, "zerocopy") || !strcmp(buf, "uring-zc");
	}
	tp.transport = v->rdma ? "rdma" : "tcp";
	tp.mode = v->mode;
	ret = ftr_tp_check_opts(&tp, err, errlen);
	if (ret == -ENOENT && v->rdma)
		return 0;	/* rdma not built: a skip, said in prepare */
	if (ret) {
		size_t l = strlen(err);

		snprintf(err + l, errlen - l, " (--modes %s: MODE[-Nch][-nocrc] or rdma[-send][-Nch][-nocrc])", name);
		return -EINVAL;
	}
	return 0;
}

static const char *env2(const char *a, const char *b)
{
	const char *s = getenv(a);

	if (!s || !*s)
		s = getenv(b);
	return s && *s ? s : NULL;
}

static bool transport_built(const char *name)
{
	for (const char *const *t = ftr_transport_names(); t && *t; t++)
		if (!strcmp(*t, name))
			return true;
	return false;
}

/* Whether rdma can run here; s->rdma_skip says why not. The probe is a real
 * listen on the device's address (device present, address on it). */
static bool rdma_usable(struct tr_state *s)
{
	const char *dev = env2("FTREPL_RDMA_DEV", "RXE_DEV"), *ip = env2("FTREPL_RDMA_IP", "RXE_IP");
	struct ftr_tp_opts tp = { .transport = "rdma", .mode = "write" };
	struct ftr_listener *l;
	char where[96];
	int ret, st;
	pid_t pid;

	snprintf(s->rdma_dev, sizeof(s->rdma_dev), "%s", dev ? dev : "rxe0");
	snprintf(s->rdma_ip, sizeof(s->rdma_ip), "%s", ip ? ip : "");
	if (!transport_built("rdma")) {
		snprintf(s->rdma_skip, sizeof(s->rdma_skip), "this build has no rdma transport "
			 "(FTREPL_WITH_RDMA=OFF)");
		return false;
	}
	if (!ip) {
		snprintf(s->rdma_skip, sizeof(s->rdma_skip), "no RDMA address: set FTREPL_RDMA_IP "
			 "and FTREPL_RDMA_DEV, or run inside ../shared/rxe-vm (rdma_cm cannot use "
			 "127.0.0.1)");
		return false;
	}
	tp.device = s->rdma_dev;
	snprintf(where, sizeof(where), "%s:0", s->rdma_ip);
	/* In a child: librdmacm and libibverbs keep process-wide state (open
	 * device contexts) that the run's children must not inherit. */
	pid = ftb_fork(-1);
	if (pid == 0) {
		ret = ftr_tp_listen(&tp, where, &l);
		if (!ret)
			ftr_listener_close(l);
		_exit(-ret & 0xff);
	}
	st = pid < 0 ? (int)pid : ftb_wait(pid, 60000);
	ret = st < 0 ? st : WIFEXITED(st) ? -WEXITSTATUS(st) : -ECHILD;
	if (ret) {
		snprintf(s->rdma_skip, sizeof(s->rdma_skip), "RDMA device %s at %s is not usable "
			 "(listen: %s)", s->rdma_dev, s->rdma_ip, strerror(-ret));
		return false;
	}
	return true;
}

/* The reference a variant is compared with (shared by equal ones). */
static int ref_for(struct tr_state *s, const struct tr_variant *v)
{
	struct tr_ref *r;

	for (unsigned i = 0; i < s->nrefs; i++)
		if (s->refs[i].rdma == v->rdma && (v->rdma || s->refs[i].streams == v->nch))
			return (int)i;
	r = &s->refs[s->nrefs];
	r->rdma = v->rdma;
	r->streams = v->rdma ? 1 : v->nch;
	if (v->rdma)
		snprintf(r->label, sizeof(r->label), "ib_write_bw -s 4096");
	else
		snprintf(r->label, sizeof(r->label), "iperf3 -P %u", r->streams);
	return (int)s->nrefs++;
}

/* ---- references ------------------------------------------------------------------ */

/* iperf3 -P streams on loopback: GB/s received, or -errno. */
static int iperf3_parallel(unsigned streams, double *gbps, char *err, size_t errlen)
{
	char port[16], secs[16], par[16], *buf;
	const size_t cap = 1 << 20;
	int ret = -EIO;
	pid_t server;

	snprintf(port, sizeof(port), "%d", 40000 + (int)((getpid() + streams) % 20000));
	snprintf(secs, sizeof(secs), "%d", IPERF_SECONDS);
	snprintf(par, sizeof(par), "%u", streams);
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	server = ftb_fork(-1);
	if (server < 0) {
		free(buf);
		return (int)server;
	}
	if (server == 0) {
		const char *argv[] = { "iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", port, NULL };

		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
			_exit(126);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int attempt = 0; attempt < 10; attempt++) {
		const char *argv[] = { "iperf3", "-c", "127.0.0.1", "-p", port, "-t", secs,
				       "-P", par, "-J", NULL };
		json_t *root, *rcv;
		json_error_t jerr;
		const char *msg;
		int st;

		usleep(attempt ? 300000 : 200000);
		st = ftb_run_cmd(argv, -1, buf, cap, false, IPERF_SECONDS * 1000 + 20000);
		root = json_loads(buf, 0, &jerr);
		rcv = json_object_get(json_object_get(root, "end"), "sum_received");
		if (st == 0 && json_is_number(json_object_get(rcv, "bits_per_second"))) {
			*gbps = json_number_value(json_object_get(rcv, "bits_per_second")) / 8e9;
			ret = 0;
		} else {
			msg = json_string_value(json_object_get(root, "error"));
			snprintf(err, errlen, "iperf3 -P %u: %s", streams,
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

/* ib_write_bw -s 4096 on the rdma device, server and client at its address,
 * as tests/rdma/bw.sh runs it; its "BW average" (MiB/s) as GB/s. */
static int ib_write_bw(const struct tr_state *s, uint64_t iters, double *gbps, char *err,
		       size_t errlen)
{
	const char *gid = getenv("RXE_GID_IDX");
	char n[24], port[16], out[8192], tailbuf[8192];
	const char *argv[16];
	unsigned a = 0;
	int ret = -EIO;
	pid_t server;

	if (!ftb_have_program("ib_write_bw")) {
		snprintf(err, errlen, "ib_write_bw is not installed (perftest; in the VM: "
			 "--add /usr/bin/ib_write_bw)");
		return -ENOENT;
	}
	snprintf(n, sizeof(n), "%" PRIu64, iters);
	snprintf(port, sizeof(port), "%d", IBW_PORT);
	argv[a++] = "ib_write_bw";
	argv[a++] = "-d";
	argv[a++] = s->rdma_dev;
	if (gid) {
		argv[a++] = "-x";
		argv[a++] = gid;
	}
	argv[a++] = "-s";
	argv[a++] = "4096";
	argv[a++] = "-n";
	argv[a++] = n;
	argv[a++] = "-F";
	argv[a++] = "-p";
	argv[a++] = port;
	argv[a] = NULL;
	argv[a + 1] = NULL;
	snprintf(err, errlen, "ib_write_bw: no result");
	/* A fresh server per attempt: a failed client may have ended it. */
	for (int attempt = 0; attempt < 3 && ret; attempt++) {
		int st;

		argv[a] = NULL;
		server = ftb_fork(-1);
		if (server < 0)
			return (int)server;
		if (server == 0) {
			if (!freopen("/dev/null", "w", stdout) ||
			    !freopen("/dev/null", "w", stderr))
				_exit(126);
			execvp(argv[0], (char *const *)argv);
			_exit(127);
		}
		argv[a] = s->rdma_ip;
		sleep(1 + (unsigned)attempt);	/* the server needs time to listen (TCG) */
		st = ftb_run_cmd(argv, -1, out, sizeof(out), true, 600000);
		ftb_kill(server);
		ftb_wait(server, 5000);
		/* keeps the output's last non-empty line for the error */
		snprintf(tailbuf, sizeof(tailbuf), "%s", out);
		while (strlen(tailbuf) && strchr(" \n", tailbuf[strlen(tailbuf) - 1]))
			tailbuf[strlen(tailbuf) - 1] = '\0';
		for (char *save = NULL, *l = strtok_r(out, "\n", &save); l;
		     l = strtok_r(NULL, "\n", &save)) {
			unsigned long bytes, it;
			double peak, avg;

			/* " #bytes #iterations BW peak[MiB/sec] BW average[MiB/sec] MsgRate" */
			if (sscanf(l, " %lu %lu %lf %lf", &bytes, &it, &peak, &avg) == 4 &&
			    bytes == 4096 && avg > 0) {
				*gbps = avg * 1048576.0 / 1e9;
				ret = 0;
			}
		}
		if (ret) {
			/* the last line it printed says why */
			const char *last = strrchr(tailbuf, '\n') ? strrchr(tailbuf, '\n') + 1
								  : tailbuf;

			snprintf(err, errlen, "ib_write_bw client (attempt %d): %s: %s", attempt + 1,
				 st < 0 ? strerror(-st) : st ? "failed" : "no 4096-byte result line",
				 last);
		}
	}
	return ret;
}

/* Measures every reference into slot k (0 before the runs, 1 after). */
static void refs_measure(struct ftb_ctx *c, unsigned k)
{
	struct tr_state *s = c->priv;

	for (unsigned i = 0; i < s->nrefs; i++) {
		struct tr_ref *r = &s->refs[i];
		char err[200] = "";
		int ret;

		if (r->rdma) {
			uint64_t iters = c->o.size / 4096 * s->epochs;

			ret = ib_write_bw(s, iters, &r->gbps[k], err, sizeof(err));
		} else if (!c->o.no_iperf && ftb_have_program("iperf3")) {
			ret = iperf3_parallel(r->streams, &r->gbps[k], err, sizeof(err));
		} else if (r->streams == 1) {
			struct ftb_tcp_ref tr;

			ret = ftb_tcp_reference(-1, -1, "127.0.0.1", IPERF_SECONDS, true, &tr, err,
						sizeof(err));
			if (!ret) {
				r->gbps[k] = tr.gbit_s / 8.0;
				snprintf(r->label, sizeof(r->label), "%s", tr.tool);
			}
		} else {
			snprintf(err, sizeof(err), "no parallel-stream reference without iperf3");
			ret = -ENOENT;
		}
		if (ret) {
			r->gbps[k] = 0;
			snprintf(r->why, sizeof(r->why), "%.*s", (int)sizeof(r->why) - 1, err);
			ftb_note("reference %s: %s", r->label, err);
		} else {
			ftb_note("reference %s (%s): %.3f GB/s", r->label, k ? "after" : "before",
				 r->gbps[k]);
		}
	}
}

/* The reference's GB/s: the mean of the measurements taken. */
static double ref_gbps(const struct tr_ref *r)
{
	double sum = 0;
	unsigned n = 0;

	for (unsigned k = 0; k < 2; k++)
		if (r->gbps[k] > 0) {
			sum += r->gbps[k];
			n++;
		}
	return n ? sum / n : 0;
}

/* ---- the mode -------------------------------------------------------------------------- */

static int tr_prepare(struct ftb_ctx *c, char *err, size_t errlen)
{
	struct tr_state *s;
	unsigned keep = 0;
	bool want_rdma = false;
	int ret;

	if (c->o.dup_share >= 0 || c->o.links_set || c->o.no_loopback || c->o.cold_standby) {
		snprintf(err, errlen, "--dup-share, --link-rate, --no-loopback and --cold-standby "
			 "belong to --writev-vs-write");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	c->priv = s;
	for (unsigned v = 0; v < c->nvariants; v++) {
		ret = parse_variant(c->variants[v], &s->var[v], err, errlen);
		if (ret)
			return ret;
		want_rdma |= s->var[v].rdma;
	}
	s->epochs = c->o.epochs ? c->o.epochs : DEFAULT_EPOCHS;
	if (want_rdma)
		s->have_rdma = rdma_usable(s);
	/* Drops the rdma variants when rdma cannot run here (a skip, said). */
	for (unsigned v = 0; v < c->nvariants; v++) {
		if (s->var[v].rdma && !s->have_rdma)
			continue;
		s->var[keep] = s->var[v];
		c->variants[keep++] = c->variants[v];
	}
	c->nvariants = keep;
	for (unsigned v = 0; v < c->nvariants; v++)
		s->var[v].ref = ref_for(s, &s->var[v]);
	c->ngroups = 1;
	snprintf(c->groups[0].name, sizeof(c->groups[0].name), "%s",
		 s->have_rdma ? "loopback+rdma" : "loopback");
	json_object_set_new(c->config, "epochs", json_integer(s->epochs));
	if (want_rdma)
		json_object_set_new(c->config, "rdma",
				    json_pack("{s:s, s:s, s:o}", "device", s->rdma_dev, "address",
					      s->rdma_ip, "skipped",
					      s->have_rdma ? json_false()
							   : json_string(s->rdma_skip)));
	fprintf(c->out, "ftbench --transports: %" PRIu64 " MiB region, every page distinct and "
		"dirty, %u epochs after the initial sync, %u run(s) per variant after %u warm-up; "
		"tcp over loopback", c->o.size >> 20, s->epochs, c->o.runs, c->o.warmup);
	if (s->have_rdma)
		fprintf(c->out, ", rdma on %s at %s", s->rdma_dev, s->rdma_ip);
	fputc('\n', c->out);
	if (want_rdma && !s->have_rdma)
		fprintf(c->out, "rdma skipped: %s\n", s->rdma_skip);
	return 0;
}

static int tr_group_begin(struct ftb_ctx *c, unsigned g, char *err, size_t errlen)
{
	(void)g;
	if (!c->nvariants) {
		snprintf(err, errlen, "no variant left to run");
		return -EOPNOTSUPP;
	}
	refs_measure(c, 0);
	return 0;
}

static void tr_group_end(struct ftb_ctx *c, unsigned g)
{
	struct tr_state *s = c->priv;

	refs_measure(c, 1);
	for (unsigned i = 0; i < s->nrefs; i++) {
		const struct tr_ref *r = &s->refs[i];

		json_object_set_new(c->groups[g].info, r->label,
				    json_pack("{s:f, s:f, s:f}", "gbps_before", r->gbps[0],
					      "gbps_after", r->gbps[1], "gbps", ref_gbps(r)));
		/* as before the channel counts: the single-stream tcp one */
		if (!r->rdma && r->streams == 1)
			json_object_set_new(c->groups[g].info, "reference",
					    json_pack("{s:s, s:f, s:f}", "tool",
						      strncmp(r->label, "iperf3", 6) ? r->label
										  : "iperf3",
						      "gbit_s", ref_gbps(r) * 8.0, "gbps",
						      ref_gbps(r)));
	}
}

static int tr_run(struct ftb_ctx *c, unsigned g, unsigned v, double *m, char *err,
		  size_t errlen)
{
	struct tr_state *s = c->priv;
	const struct tr_variant *var = &s->var[v];
	const struct ftr_tp_opts tp = {
		.transport = var->rdma ? "rdma" : "tcp",
		.mode = var->mode,
		.device = var->rdma ? s->rdma_dev : NULL,
		/* measure zero copy itself, not the fallback to copying */
		.zc_no_fallback = var->zc,
	};
	const struct ftb_repl_cfg cfg = {
		.size = c->o.size,
		.tcp_mode = var->mode,
		.measure = FTB_MEASURE_EPOCHS,
		.epochs = s->epochs,
		.tx_ns = -1,
		.rx_ns = -1,
		.rx_ip = var->rdma ? s->rdma_ip : "127.0.0.1",
		.tp = &tp,
		.nchannels = var->nch,
		.no_data_crc = var->no_crc,
		.engine_timeout_ms = 60000,
		/* generous: 5 MB/s (tcp) or 1 MB/s (rdma under TCG) per pass */
		.min_rate = var->rdma ? 1e6 : 5e6,
		.name = c->variants[v],
	};
	struct ftb_repl_res r = { 0 };
	double gb;
	int ret;

	(void)g;
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
	m[M_ZC_SENDS] = (double)r.zc_sends / gb;
	m[M_ZC_COPIED] = r.zc_completions ? (double)r.zc_copied / (double)r.zc_completions : 0;
	if (var->zc && !r.zc_sends) {
		snprintf(err, errlen, "%s: no zero-copy send was counted", c->variants[v]);
		return -EPROTO;
	}
	return 0;
}

/* summary.best: the tcp variant with the highest median GB/s. */
static void tr_summary_best(struct ftb_ctx *c)
{
	struct tr_state *s = c->priv;
	double best = 0, ref = 0;
	int bv = -1;

	for (unsigned v = 0; v < c->nvariants; v++) {
		struct ftb_stats st;

		if (s->var[v].rdma)
			continue;
		ftb_case_stats(c, 0, v, M_GBPS, &st);
		if (st.median > best) {
			best = st.median;
			bv = (int)v;
		}
	}
	if (bv < 0)
		return;
	ref = ref_gbps(&s->refs[s->var[bv].ref]);
	json_object_set_new(c->summary, "best",
			    json_pack("{s:s, s:f, s:s, s:f}", "mode", c->variants[bv], "gbps",
				      best, "reference", s->refs[s->var[bv].ref].label,
				      "ratio_to_reference", ref > 0 ? best / ref : 0));
}

static void tr_report(struct ftb_ctx *c)
{
	struct tr_state *s = c->priv;
	json_t *rows = json_array();
	FILE *o = c->out;

	if (!c->nvariants) {
		fprintf(o, "\nnothing measured%s%s\n", s->rdma_skip[0] ? ": rdma skipped: " : "",
			s->rdma_skip);
		json_object_set_new(c->summary, "variants", rows);
		return;
	}
	fprintf(o, "\n%-20s %3s %8s %8s %8s %9s %9s %11s %11s %7s  %-20s %8s %7s\n", "variant",
		"ch", "GB/s", "min", "max", "txCPU/GB", "rxCPU/GB", "tx sys/GB", "rx sys/GB",
		"copied", "reference", "ref GB/s", "x ref");
	for (unsigned v = 0; v < c->nvariants; v++) {
		const struct tr_variant *var = &s->var[v];
		const struct tr_ref *r = &s->refs[var->ref];
		double ref = ref_gbps(r), ratio;
		struct ftb_stats st[M__COUNT];
		char name[96];

		for (unsigned k = 0; k < M__COUNT; k++)
			ftb_case_stats(c, 0, v, k, &st[k]);
		ratio = ref > 0 ? st[M_GBPS].median / ref : 0;
		if (var->rdma)
			snprintf(name, sizeof(name), "rdma/%s%s", var->mode, var->no_crc ? "-nocrc" : "");
		else
			snprintf(name, sizeof(name), "tcp/%s", c->variants[v]);
		fprintf(o, "%-20s %3u %8.3f %8.3f %8.3f %9.3f %9.3f %11.0f %11.0f ", name,
			var->nch, st[M_GBPS].median, st[M_GBPS].min, st[M_GBPS].max,
			st[M_TX_CPU].median, st[M_RX_CPU].median, st[M_TX_SYS].median,
			st[M_RX_SYS].median);
		if (var->zc)
			fprintf(o, "%6.1f%%", 100.0 * st[M_ZC_COPIED].median);
		else
			fprintf(o, "%7s", "-");
		fprintf(o, "  %-20s ", r->label);
		if (ref > 0)
			fprintf(o, "%8.3f %7.2f\n", ref, ratio);
		else
			fprintf(o, "%8s %7s\n", "-", "-");
		json_array_append_new(rows, json_pack(
			"{s:s, s:s, s:s, s:i, s:f, s:s, s:f, s:f, s:f, s:o, s:f}",
			"variant", c->variants[v], "transport", var->rdma ? "rdma" : "tcp",
			"mode", var->mode, "channels", (int)var->nch, "gbps", st[M_GBPS].median,
			"reference", r->label, "reference_gbps", ref,
			"reference_gbps_before", r->gbps[0], "reference_gbps_after", r->gbps[1],
			"ratio_to_reference", ref > 0 ? json_real(ratio) : json_null(),
			"target", var->rdma ? RDMA_TARGET : TCP_TARGET));
		/* zero-copy modes: the share of completions the kernel copied */
		json_object_set_new(json_array_get(rows, json_array_size(rows) - 1),
				    "zc_copied_share", var->zc ? json_real(st[M_ZC_COPIED].median)
							       : json_null());
	}
	fprintf(o, "memcpy               %12.3f  (4 KiB pages, same run)\n", c->memcpy_gbps);
	fprintf(o, "(medians of %u runs; tx CPU is the sending thread; copied: the share of "
		"zero-copy completions the kernel flagged \"copied\" (zero-copy modes, fallback "
		"disabled); each reference is the mean of one measurement before and one after the "
		"runs:", c->o.runs);
	for (unsigned i = 0; i < s->nrefs; i++)
		fprintf(o, " %s %.3f/%.3f%s", s->refs[i].label, s->refs[i].gbps[0],
			s->refs[i].gbps[1], i + 1 < s->nrefs ? "," : ")\n");
	if (!s->nrefs)
		fprintf(o, ")\n");
	/* The conclusions: each variant against its reference and target. */
	fputc('\n', o);
	for (unsigned v = 0; v < c->nvariants; v++) {
		const struct tr_variant *var = &s->var[v];
		const struct tr_ref *r = &s->refs[var->ref];
		double ref = ref_gbps(r), target = var->rdma ? RDMA_TARGET : TCP_TARGET;
		struct ftb_stats st;

		ftb_case_stats(c, 0, v, M_GBPS, &st);
		if (ref <= 0) {
			fprintf(o, "%-18s %u ch: %.3f GB/s; no reference (%s)\n", c->variants[v],
				var->nch, st.median, r->why);
			continue;
		}
		fprintf(o, "%-18s %u ch: %.3f GB/s = %.2fx %s (target %.2fx: %s)\n",
			c->variants[v], var->nch, st.median, st.median / ref, r->label, target,
			st.median / ref >= target ? "met" : "NOT met");
	}
	if (s->rdma_skip[0])
		fprintf(o, "rdma skipped: %s\n", s->rdma_skip);
	json_object_set_new(c->summary, "variants", rows);
	tr_summary_best(c);
	if (s->rdma_skip[0])
		json_object_set_new(c->summary, "rdma_skipped", json_string(s->rdma_skip));
}

static int tr_plot(struct ftb_ctx *c, FILE *gp, const char *datafile, FILE *data)
{
	struct tr_state *s = c->priv;

	if (!c->nvariants)
		return -ENODATA;
	for (unsigned v = 0; v < c->nvariants; v++) {
		struct ftb_stats st;

		ftb_case_stats(c, 0, v, M_GBPS, &st);
		fprintf(data, "%s %.6f %.6f %.6f %.6f\n", c->variants[v], st.median, st.min, st.max,
			ref_gbps(&s->refs[s->var[v].ref]));
	}
	fprintf(gp, "set title \"ftbench --transports: %" PRIu64 " MiB, every page every epoch "
		"(median, min-max of %u runs)\"\n", c->o.size >> 20, c->o.runs);
	fprintf(gp, "set ylabel 'GB/s of page payload'\n"
		"set style data histogram\n"
		"set style histogram errorbars gap 1 lw 1\n"
		"set style fill solid 0.6 border -1\n"
		"set grid ytics\nset yrange [0:*]\nset xrange [-0.5:%u.5]\n"
		"set key top left\n", c->nvariants - 1);
	fprintf(gp, "plot '%s' using 2:3:4:xtic(1) title 'ftrepl', "
		"'' using 0:5 with points pt 7 ps 1.5 title 'reference (iperf3 -P N / "
		"ib_write_bw, same run)'\n", datafile);
	return 0;
}

static void tr_finish(struct ftb_ctx *c)
{
	free(c->priv);
	c->priv = NULL;
}

const struct ftb_mode ftb_mode_transports = {
	.name = "transports",
	.summary = "replicate a region with every page dirty per transport variant: tcp modes\n"
		   "with 1/2/4 data channels over loopback (against iperf3 -P N) and rdma\n"
		   "(against ib_write_bw -s 4096; skipped without a device); payload GB/s,\n"
		   "CPU s/GB and syscalls/GB on each side, the share of zero-copy sends the\n"
		   "kernel copied anyway, references measured in the same run",
	.example = "ftbench --transports --size 1G --runs 3",
	.duration = "takes about 3-4 min (1G, 3 runs + 1 warm-up, default variants)",
	.default_variants = "write,writev,writev-2ch,writev-4ch,zerocopy"
#ifdef FTREPL_HAVE_URING
			    ",uring,uring-zc"
#endif
			    ",rdma",
	.default_size = 1ull << 30,
	.default_runs = 3,
	.metrics = metrics,
	.nmetrics = M__COUNT,
	.prepare = tr_prepare,
	.group_begin = tr_group_begin,
	.run = tr_run,
	.group_end = tr_group_end,
	.report = tr_report,
	.plot = tr_plot,
	.finish = tr_finish,
};
