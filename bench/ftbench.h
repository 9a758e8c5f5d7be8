/* SPDX-License-Identifier: MIT */
/*
 * ftbench internals: the harness every mode runs in, the pieces modes share
 * (one replication run, baselines, network namespaces, child processes,
 * gnuplot) and the mode table.
 *
 * Adding a mode: write bench/mode_NAME.c with a `const struct ftb_mode`
 * (see struct ftb_mode below), declare it here and list it in ftb_modes[]
 * in ftbench.c. The harness gives it warm-up runs, --runs, the statistics,
 * --json with every raw sample and --plot; the mode only says which groups
 * (e.g. links) and variants (e.g. tcp modes) exist and how to run one.
 *
 * Conventions as in the library: int returns 0 or -errno; err/errlen gets
 * one line saying what failed.
 */
#ifndef FTBENCH_H
#define FTBENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#include <ftrepl/synth.h>

struct ftr_primary;

#define FTB_MAX_RUNS 50
#define FTB_MAX_WARMUP 5
#define FTB_MAX_GROUPS 8
#define FTB_MAX_VARIANTS 16
#define FTB_MAX_METRICS 32

/* ---- the command line (shared by every mode) ------------------------------ */

struct ftb_opts {
	uint64_t size;			/* bytes; 0 = the mode's default */
	unsigned runs;			/* 0 = the mode's default */
	unsigned warmup;		/* unrecorded runs per case before the measured ones */
	bool warmup_set;		/* --warmup was given (a mode may lower the default) */
	unsigned epochs;		/* --transports: epochs after the initial sync */
	const char *variants[FTB_MAX_VARIANTS]; /* --modes: tcp modes */
	unsigned nvariants;		/* 0 = the mode's default */
	double dup_share;		/* --dup-share as a fraction 0 .. 0.99; < 0: not given */
	uint64_t link_bps[FTB_MAX_GROUPS]; /* --link-rate: tbf rates, 0 = unshaped veth */
	unsigned nlinks;
	bool links_set;			/* --link-rate was given */
	bool no_loopback;
	bool dst_memfd;			/* --postcopy --dst-mem memfd (default anon) */
	bool dst_mem_set;
	bool cold_standby;		/* a fresh standby per run (cache populated during it) */
	bool no_iperf;
	bool all;			/* --all: the mode's full matrix */
	bool json;
	const char *plot;		/* --plot FILE.png|FILE.svg, NULL = none */
};

/* ---- the harness ------------------------------------------------------------ */

/* One number measured per run. */
struct ftb_metric {
	const char *key;	/* JSON key and column id, e.g. "seconds" */
	const char *unit;	/* "s", "GB/s", "" for counts */
};

struct ftb_stats {
	unsigned n;
	double median, min, max, mean, std; /* std: sample standard deviation (n - 1) */
};

struct ftb_series {
	unsigned n;
	double v[FTB_MAX_RUNS];
};

/* A group is what a set of variants is compared on (a link); its info
 * object holds the group's description and baselines for --json. */
struct ftb_group {
	char name[32];
	json_t *info;
	bool skipped;		/* group_begin said it cannot run here */
	char skip_reason[160];
};

struct ftb_case {
	struct ftb_series m[FTB_MAX_METRICS];	  /* measured runs */
	struct ftb_series warm[FTB_MAX_METRICS];  /* warm-up runs (JSON only) */
};

struct ftb_mode;

struct ftb_ctx {
	const struct ftb_mode *mode;
	struct ftb_opts o;		/* mode defaults applied */
	struct ftb_group groups[FTB_MAX_GROUPS];
	unsigned ngroups;
	const char *variants[FTB_MAX_VARIANTS];
	unsigned nvariants;
	struct ftb_case cases[FTB_MAX_GROUPS][FTB_MAX_VARIANTS];
	FILE *out;			/* the human report: stdout, stderr under --json */
	json_t *config;			/* mode-specific settings for --json */
	json_t *baselines;		/* whole-run baselines (memcpy, ...) */
	json_t *summary;		/* the mode's conclusions for --json */
	double memcpy_gbps;
	void *priv;			/* the mode's own state */
};

/*
 * A mode. The harness calls, in order: prepare; for each group:
 * group_begin, warm-up and measured runs (within one round the variants run
 * in alternating order, ABBA, so drift does not favour one), group_end;
 * then report, plot, finish. Only run is mandatory.
 */
struct ftb_mode {
	const char *name;	/* the option without "--", e.g. "writev-vs-write" */
	const char *summary;	/* --help text, may hold newlines */
	const char *example;	/* a runnable command line */
	const char *duration;	/* how long the example takes */
	const char *default_variants;	/* comma list; NULL = the mode has none */
	uint64_t default_size;
	unsigned default_runs;
	const struct ftb_metric *metrics;
	unsigned nmetrics;
	/* Fills ctx->groups/ngroups (and may check options). Returns 0 or -errno;
	 * -EINVAL is a usage error. */
	int (*prepare)(struct ftb_ctx *c, char *err, size_t errlen);
	/* Sets the group up (a link, its shaping, its baseline). -EOPNOTSUPP
	 * skips the group with err as the reason; other errors end the bench. */
	int (*group_begin)(struct ftb_ctx *c, unsigned g, char *err, size_t errlen);
	/* One run: fills metrics[0 .. nmetrics). */
	int (*run)(struct ftb_ctx *c, unsigned g, unsigned v, double *metrics, char *err,
		   size_t errlen);
	void (*group_end)(struct ftb_ctx *c, unsigned g);
	/* Prints the tables to c->out and fills c->summary. */
	void (*report)(struct ftb_ctx *c);
	/* Writes the data and the gnuplot commands (after the terminal and
	 * output lines). NULL: the mode has no picture. */
	int (*plot)(struct ftb_ctx *c, FILE *script, const char *datafile, FILE *data);
	void (*finish)(struct ftb_ctx *c);
};

/* Runs a mode from start to end. Returns the exit status (0, 1, 2). */
int ftb_run_mode(const struct ftb_mode *m, const struct ftb_opts *o);

void ftb_stats_of(const struct ftb_series *s, struct ftb_stats *out);
/* Stats of metric k of case (g, v). */
void ftb_case_stats(const struct ftb_ctx *c, unsigned g, unsigned v, unsigned k,
		    struct ftb_stats *out);
/* Progress lines on stderr. */
void ftb_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- child processes, commands, cleanup (sys.c) ----------------------------- */

/*
 * Process-wide cleanup: every child ftbench forks and every network
 * namespace it creates is registered; SIGINT, SIGTERM, SIGHUP and exit()
 * kill the children and remove the namespaces (which takes their veth
 * pair and qdiscs with them). Call once from main.
 */
void ftb_cleanup_install(void);
/* Registers/unregisters a namespace path (/var/run/netns/NAME) to remove. */
void ftb_cleanup_add_netns(const char *path);
void ftb_cleanup_del_netns(const char *path);
/* Removes a named namespace the way `ip netns del` does (async-signal-safe). */
int ftb_netns_remove(const char *path);

/* fork() for ftbench's children: in the child, the default signal
 * dispositions, death with the parent (PR_SET_PDEATHSIG) and, when ns_fd >=
 * 0, the network namespace ns_fd. The parent tracks the pid until
 * ftb_wait(). Returns the pid (0 in the child) or -errno. */
pid_t ftb_fork(int ns_fd);
/* waitpid() for a tracked child, with a timeout (-1 = none); kills it with
 * SIGKILL when the timeout runs out. Returns the raw status or -errno
 * (-ETIMEDOUT after the kill). */
int ftb_wait(pid_t pid, int timeout_ms);
void ftb_kill(pid_t pid);

/* Runs argv (PATH lookup) in network namespace ns_fd (-1 = this one) and
 * waits up to timeout_ms. out (may be NULL) gets stdout, NUL-terminated,
 * and stderr is appended when merge_stderr. Returns the exit status (0 ..
 * 255), 127 when argv[0] cannot run, or -errno/-ETIMEDOUT. */
int ftb_run_cmd(const char *const argv[], int ns_fd, char *out, size_t outlen,
		bool merge_stderr, int timeout_ms);
/* Like ftb_run_cmd without output; 0 only on exit status 0. err gets the
 * command and its message otherwise. */
int ftb_cmd(char *err, size_t errlen, const char *const argv[]);
/* True when argv0 is found on PATH. */
bool ftb_have_program(const char *argv0);

uint64_t ftb_now_ns(void);
uint64_t ftb_clock_ns(int clockid);
/* A TCP socket listening on ip, port chosen by the kernel (*port). Returns
 * the fd (close-on-exec) or -errno. */
int ftb_listen_tcp(const char *ip, int backlog, uint16_t *port);

/* A primary engine run on a thread of a benchmark child: ftb_engine_main
 * (the pthread function) runs ftr_primary_run(p), keeps its result, the
 * thread's CPU time when it returned, and sets done last. */
struct ftb_engine {
	struct ftr_primary *p;
	int ret;
	uint64_t cpu_end_ns;
	atomic_bool done;
};
void *ftb_engine_main(void *arg);

/* ---- network namespaces (netns.c) ------------------------------------------- */

#define FTB_TX_IP "192.168.250.1"
#define FTB_RX_IP "192.168.250.2"
#define FTB_NETNS_PREFIX "ftb-"

/* A veth pair between two namespaces, ftb-<pid>-tx (sender side, device
 * ftb-tx) and ftb-<pid>-rx (receiver side, device ftb-rx); the sender's
 * egress is shaped with tbf. */
struct ftb_link {
	bool up;
	char ns_name[2][32];	/* [0] sender, [1] receiver */
	char ns_path[2][64];
	int ns_fd[2];
	uint64_t rate_bps;	/* shaping in force, 0 = none */
	char qdisc[128];	/* the tc arguments in force, for reports */
};

/* Creates the namespaces and the veth pair (needs root; -EPERM without). */
int ftb_link_create(struct ftb_link *l, char *err, size_t errlen);
/* Shapes the sender's egress with tbf at rate_bps (0: removes the qdisc). */
int ftb_link_shape(struct ftb_link *l, uint64_t rate_bps, char *err, size_t errlen);
void ftb_link_destroy(struct ftb_link *l);
/* Removes ftb-<pid>-* namespaces whose ftbench process is gone. Returns
 * how many were removed. */
int ftb_link_clean_stale(void);
/* "1g", "10g", "250m", "unshaped" (bits per second, decimal). 0 or -EINVAL. */
int ftb_parse_rate(const char *s, uint64_t *bps);
/* "1g", "2.5g", "100m", "unshaped". */
const char *ftb_rate_name(uint64_t bps, char *buf, size_t len);

/* ---- baselines (baseline.c) ---------------------------------------------------- */

struct ftb_tcp_ref {
	char tool[16];		/* "iperf3" or "bulk-stream" */
	double gbit_s;		/* received goodput, Gbit/s (1e9 bits) */
	double seconds;
	uint64_t retransmits;	/* iperf3 only */
};

/* TCP goodput from tx_ns to rx_ns (both -1: loopback) towards rx_ip.
 * iperf3 when installed and !no_iperf, else ftbench's own bulk stream
 * (loopback only). Returns 0 or -errno. */
int ftb_tcp_reference(int tx_ns, int rx_ns, const char *rx_ip, double seconds, bool no_iperf,
		      struct ftb_tcp_ref *out, char *err, size_t errlen);
/* bare_stream.c: size bytes over TCP from tx_ns to rx_ns (-1: this one)
 * towards rx_ip on nstreams connections, received into a bounce buffer and
 * installed into anonymous memory with UFFDIO_COPY, 1 MiB at a time, with
 * nothing else (postcopy's floor). *seconds: the receiver's first accept
 * to its last install. At most timeout_ms. Returns 0 or -errno. */
int ftb_bare_stream(int tx_ns, int rx_ns, const char *rx_ip, uint64_t size, unsigned nstreams,
		    int timeout_ms, double *seconds, char *err, size_t errlen);
/* memcpy of 4 KiB pages, GB/s (1e9 bytes), best of a few passes. */
double ftb_memcpy_gbps(void);

/* bare_fault.c: a bare userfaultfd fault round trip on npages pages read in
 * random order, resolved by one handler thread with UFFDIO_CONTINUE (page
 * cache pages, MINOR) or UFFDIO_COPY of one page (anonymous, MISSING).
 * Medians and p99s in ns of the handler's read-to-resolve time (srv) and of
 * the faulting access (rtt). Returns 0 or -errno (r is then partial). */
#define FTB_BARE_PAGE 4096u
enum ftb_bare_kind { FTB_BARE_CONTINUE, FTB_BARE_COPY };
struct ftb_bare_result {
	uint64_t srv_med_ns, srv_p99_ns, rtt_med_ns, rtt_p99_ns;
	unsigned n;	/* faults the handler timed */
};
int ftb_bare_fault(enum ftb_bare_kind kind, unsigned npages, struct ftb_bare_result *r);
/* The machine description for --json (a new object). */
json_t *ftb_machine_json(void);

/* ---- one replication run through the real library (replicate.c) -------------- */

enum ftb_measure {
	FTB_MEASURE_SYNC,	/* the initial sync: every page once, until its ACK */
	FTB_MEASURE_EPOCHS,	/* --dirty full epochs after the initial sync */
};

struct ftr_tp_opts;

struct ftb_repl_cfg {
	uint64_t size;
	const char *tcp_mode;
	enum ftb_measure measure;
	unsigned epochs;	/* FTB_MEASURE_EPOCHS */
	double dup_share;	/* FTB_MEASURE_SYNC: share of fill pages */
	int tx_ns, rx_ns;	/* namespace fds for each side, -1 = this one */
	const char *rx_ip;	/* the standby listens here */
	/* --transports; zero values keep what --writev-vs-write uses: tcp in
	 * tcp_mode (the standby in the default mode), one data channel, data
	 * CRCs, 30 s failover and stall timeouts. */
	const struct ftr_tp_opts *tp;	/* both engines' transport options */
	unsigned nchannels;		/* the primary's data channels; 0 = 1 */
	bool no_data_crc;
	int engine_timeout_ms;		/* failover, stall, handshake and connect */
	double min_rate;		/* bytes/s per pass the deadline allows; 0 = 5e6 */
	const char *name;		/* the run in messages; NULL = "tcp/MODE" */
};

struct ftb_repl_res {
	double seconds;		/* SYNC: connect to ACK(0); EPOCHS: sync end to last ACK */
	uint64_t pages;		/* page payloads sent in the measured part */
	uint64_t fill_pages;	/* pages sent as fill records (16 bytes each) */
	uint64_t resent;	/* SYNC: pages sent twice (written during the sync) */
	uint64_t tx_syscalls;	/* data-channel send calls in the measured part */
	uint64_t rx_syscalls;
	double tx_cpu_s;	/* the sending (engine) thread */
	double tx_proc_cpu_s;	/* the whole primary process but ftbench's monitor */
	double rx_cpu_s;	/* the standby process */
	/* tcp zero-copy modes, the primary's channels in the measured part */
	uint64_t zc_sends;
	uint64_t zc_completions;
	uint64_t zc_copied;	/* completions the kernel flagged "copied" */
};

/* A standby child that outlives runs: each run is a new session on it
 * (after the previous one ended with BYE), so its cache is already
 * populated when a run starts. */
struct ftb_standby_proc {
	pid_t pid;
	int cmd_fd, rep_fd;	/* sample requests and answers */
	uint16_t port;
};

/* Starts a standby child for cfg (size, measure, rx_ns, rx_ip). */
int ftb_standby_spawn(const struct ftb_repl_cfg *cfg, struct ftb_standby_proc *sp, char *err,
		      size_t errlen);
/* Stops it (EOF on its command pipe) and reaps it. */
void ftb_standby_end(struct ftb_standby_proc *sp);

/* One run. sp NULL: a fresh standby child for this run only (its cache is
 * populated during the run, as on a migration's destination). */
int ftb_replicate(const struct ftb_repl_cfg *cfg, struct ftb_standby_proc *sp,
		  struct ftb_repl_res *res, char *err, size_t errlen);
/* How a region of `size` splits at `share` fill pages: fill + distinct = N. */
void ftb_region_split(uint64_t size, double share, uint64_t *distinct, uint64_t *fill);

/* ---- a synthetic workload the bench can watch and gate (wlwrap.c) -------------- */

/*
 * The library's synthetic workload (ftr_synth_workload_create) behind a
 * thin wrapper of its ops table, handed to ftr_primary_create() in its
 * place. The wrapper records every epoch pause as the workload sees it
 * (from the engine's pause() returning, i.e. the writer parked, to its
 * resume()), and can hold the writer parked (the gate) whatever the engine
 * does, so a bench decides exactly when and how much the workload writes.
 * Used by one primary; the gate may be moved from any thread.
 */
struct ftb_wl;
struct ftr_workload;

/* spec: the workload; advance: writes performed before anything starts;
 * gated: the gate starts closed (the writer stays parked until
 * ftb_wl_gate(w, true)); max_pauses: pause samples kept (later ones are
 * dropped). Returns 0 or -errno. */
int ftb_wl_create(const struct ftr_synth_spec *spec, uint64_t advance, bool gated,
		  size_t max_pauses, struct ftb_wl **out);
/* The workload to give to ftr_primary_create(); owned by w. */
struct ftr_workload *ftb_wl_workload(struct ftb_wl *w);
/* Opens or closes the gate. Closing returns with the writer parked. */
void ftb_wl_gate(struct ftb_wl *w, bool open);
/* The memfd behind the workload's region (owned by w). */
int ftb_wl_region_fd(struct ftb_wl *w);
/* Writes completed (the synthetic workload's k). */
uint64_t ftb_wl_writes(struct ftb_wl *w);
/* Runs the writer without a primary (unprotected), and stops it. */
int ftb_wl_start(struct ftb_wl *w);
void ftb_wl_stop(struct ftb_wl *w);
/* The pauses so far: end[i] (CLOCK_MONOTONIC ns of the resume) and
 * dur[i] (ns). Read them only once the engine has stopped. */
size_t ftb_wl_pauses(const struct ftb_wl *w, const uint64_t **end, const uint64_t **dur);
void ftb_wl_destroy(struct ftb_wl *w);

/* Median and p99 (nearest rank) of v[0 .. n) in place (sorts v). */
void ftb_u64_pcts(uint64_t *v, size_t n, uint64_t *median, uint64_t *p99);
/* MemAvailable from /proc/meminfo, bytes (0 if unreadable). */
uint64_t ftb_mem_available(void);
/* Reads exactly len bytes within timeout_ms. 0, -ETIMEDOUT, -EPIPE (EOF), -errno. */
int ftb_read_full(int fd, void *buf, size_t len, int timeout_ms);
/* Writes exactly len bytes. 0 or -errno. */
int ftb_write_full(int fd, const void *buf, size_t len);
/* In a forked child: closes every inherited fd but 0-2 and keep[], so that
 * the pipes of other children see EOF when their owner closes them. */
void ftb_close_fds_except(const int *keep, unsigned nkeep);

/* ---- QEMU as a peer (qemu_peer.c, qemu_mig.c) ------------------------------------ */

/*
 * A qemu-system-x86_64 child (TCG) booting ftbench's test guest
 * (bench/qemu-guest: a multiboot kernel that writes pages of its RAM at a
 * paced rate and checks them on request), its QMP monitor on a socketpair
 * and its COM1 on pipes. Killed and reaped by ftb_qemu_stop(), and by the
 * process-wide cleanup on exit and signals (it is an ftb_fork() child).
 */
struct ftb_qemu;

struct ftb_qemu_opts {
	const char *guest;	/* the guest ELF */
	uint64_t mem_kib;	/* -m, KiB (keep it off multiples of 256 KiB: FACTS.md) */
	uint64_t rate;		/* guest page writes/s, 0 = as fast as it goes */
	unsigned seed;		/* the guest's page sequence */
	unsigned advance;	/* writes per page before READY */
	int ns_fd;		/* network namespace, -1 = this one */
	bool incoming;		/* -incoming defer */
	const char *name;	/* "source", "destination": in messages */
};

/* Starts QEMU and negotiates QMP (greeting, qmp_capabilities). Returns 0
 * with *out owned by the caller (ftb_qemu_stop), or -errno with err. */
int ftb_qemu_start(const struct ftb_qemu_opts *o, struct ftb_qemu **out, char *err,
		   size_t errlen);
/* SIGKILLs and reaps QEMU, frees q. NULL is a no-op. */
void ftb_qemu_stop(struct ftb_qemu *q);
/* Runs QMP command cmd with args (a JSON object or NULL; the reference is
 * stolen) within timeout_ms. *ret (may be NULL) gets the "return" value
 * (a new reference). Events read meanwhile are queued. 0, -EIO (QMP
 * error, its desc in err), -ETIMEDOUT, -EPIPE (QEMU exited), -errno. */
int ftb_qmp(struct ftb_qemu *q, const char *cmd, json_t *args, json_t **ret, int timeout_ms,
	    char *err, size_t errlen);
/* The next QMP event (a new reference) within timeout_ms: 0, -ETIMEDOUT
 * (err untouched), -EPIPE or -errno. */
int ftb_qmp_event(struct ftb_qemu *q, json_t **ev, int timeout_ms, char *err, size_t errlen);
/* An event's timestamp, microseconds of CLOCK_REALTIME. */
int64_t ftb_qmp_event_time_us(const json_t *ev);
/* Reads COM1 until a line starting with prefix (copied to line, no
 * newline); other lines are dropped. 0, -ETIMEDOUT, -EPIPE, -EFAULT (the
 * guest reported a CPU exception), -errno; err says which. */
int ftb_qemu_line(struct ftb_qemu *q, const char *prefix, char *line, size_t len, int timeout_ms,
		  char *err, size_t errlen);
/* Sends one byte to the guest's COM1. 0 or -errno. */
int ftb_qemu_send(struct ftb_qemu *q, char c);

/*
 * One QEMU -> QEMU live migration of the test guest (qemu_mig.c), for
 * --postcopy's qemu-* variants: precopy (at most max_rounds rounds, then
 * cancelled: "did not converge"), postcopy (migrate-start-postcopy at
 * once) or hybrid (postcopy after max_rounds rounds; max_rounds 0: ftrepl's
 * own rule, as soon as a round's dirty rate reaches its bandwidth, at the
 * latest after 5).
 */
struct ftb_qmig_cfg {
	const char *guest;	/* the guest ELF */
	uint64_t mem_kib;	/* guest RAM */
	uint64_t rate;		/* guest page writes/s, 0 = flat out */
	unsigned seed, advance;
	int mode;		/* enum ftr_migrate_mode */
	unsigned max_rounds;	/* 0: precopy 30, hybrid ftrepl's rule */
	unsigned downtime_ms;	/* QEMU's downtime-limit */
	const char *ip;		/* the destination listens here */
	int tx_ns, rx_ns;	/* the source's and destination's namespaces, -1 = this one */
	int timeout_ms;		/* the migration, from `migrate` to completion */
};

struct ftb_qmig_res {
	bool completed;		/* false: precopy gave up (nc_msg says why) */
	char nc_msg[256];
	double total_s;		/* QEMU's total-time */
	double downtime_ms;	/* STOP on the source to RESUME on the destination */
	double qemu_downtime_ms;	/* QEMU's own "downtime" */
	double setup_ms;
	double precopy_s;	/* migration setup to the switch (STOP or postcopy-active) */
	double postcopy_s;	/* destination RESUME to completion (postcopy), else 0 */
	uint64_t pages;		/* normal + duplicate (zero) pages sent */
	uint64_t normal_pages;
	uint64_t precopy_pages;	/* pages sent when the switch was seen */
	uint64_t postcopy_requests;
	uint64_t transferred;	/* bytes on the wire (RAM section) */
	unsigned rounds;	/* precopy rounds completed before the switch */
	double dirty_mb_s, bandwidth_mb_s;	/* the last completed round */
	double blocktime_ms;	/* the destination's postcopy-blocktime */
	double guest_writes_per_s;	/* measured on the source before `migrate` */
	uint32_t guest_pages;	/* the guest's workload pages */
	bool verified;		/* the destination guest's check said OK, sum agreed */
	char verify_line[200];
};

/* Finds the guest (FTBENCH_QEMU_GUEST, else the one built with ftbench)
 * and qemu-system-x86_64. 0 with path set, or -ENOENT with why. */
int ftb_qmig_available(char *path, size_t len, char *why, size_t whylen);
/* Runs one migration. 0 with res (completed or not), or -errno with err:
 * QEMU failed, timed out, or the destination's guest found a bad page. */
int ftb_qmig_run(const struct ftb_qmig_cfg *cfg, struct ftb_qmig_res *res, char *err,
		 size_t errlen);

/* ---- gnuplot (plot.c) ------------------------------------------------------------ */

/* Writes c's picture to path (.png or .svg) through gnuplot. */
int ftb_plot(struct ftb_ctx *c, const char *path, char *err, size_t errlen);

/* ---- the modes ----------------------------------------------------------------------- */

extern const struct ftb_mode ftb_mode_transports;
extern const struct ftb_mode ftb_mode_writev_vs_write;
extern const struct ftb_mode ftb_mode_checkpoint;
extern const struct ftb_mode ftb_mode_failover;
extern const struct ftb_mode ftb_mode_postcopy;

#endif
