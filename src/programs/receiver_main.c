/* SPDX-License-Identifier: MIT */
/*
 * ftrepl-receiver: the standby daemon. Holds the cache, commits epochs
 * atomically, promotes on failure, and answers the control socket.
 *
 * Threads: main (signals, waits), the standby's own threads (see
 * checkpoint/standby.c) and the control socket's server thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/ftrepl.h>
#include <ftrepl/migrate.h>
#include <ftrepl/resume.h>
#include <ftrepl/synth.h>

#include "common/common.h"
#include "common/ctlsock.h"
#include "programs/progutil.h"
#include "uffd/probe.h"

static void usage(void)
{
	printf("Usage: ftrepl-receiver --listen ADDR:PORT --cache SIZE [options]\n"
	       "\n"
	       "The standby: keeps a copy of a primary's memory, commits each epoch atomically\n"
	       "and, when the primary fails, holds exactly the last committed epoch.\n"
	       "\n"
	       "Options:\n"
	       "  --listen ADDR:PORT      address to listen on (binds only that address)\n"
	       "  --cache SIZE            bytes of cache for the protected regions (K/M/G/T)\n"
	       "  --cache-file PATH       back the cache by this file (/dev/shm, hugetlbfs)\n"
	       "                          instead of an anonymous memfd\n"
	       "  --staging SIZE          staging for the epoch in flight (default min(256M, cache));\n"
	       "                          bounds how many pages one epoch can carry\n"
	       "  --transport NAME        tcp (default) or rdma\n"
	       "  --rdma DEV              RDMA verbs on device DEV (mlx5_0, rxe0): --transport rdma\n"
	       "  --control PATH          control socket for ftreplctl (JSON lines)\n"
	       "  --failover-timeout MS   promote after this much silence from the primary (default %d)\n"
	       "  --heartbeat-ms MS       heartbeat period towards the primary (default %d)\n"
	       "  --stall-timeout MS      drop a session whose record stalls mid-way (default %d)\n"
	       "Migration (instead of replication):\n"
	       "  --migrate-in            be the destination of a live migration (ftrepl-sender\n"
	       "                          --migrate): memory arrives in precopy rounds, then the\n"
	       "                          workload runs here and missing pages are pulled on demand\n"
	       "  --prefault-forward N    pages after a faulted one requested with it (default 0)\n"
	       "  --prefault-backward N   pages before it (default 0)\n"
	       "  --resume-synth WRITES   (with --migrate-in) continue the synthetic workload here\n"
	       "Failover:\n"
	       "  --resume-sock PATH      serve resuming workloads (shared/anonymous mode, or\n"
	       "                          Firecracker's snapshot-restore handshake) once promoted\n"
	       "  --on-promote CMD        run CMD (/bin/sh -c) when promoted, with\n"
	       "                          FTREPL_RESUME_SOCK and FTREPL_EPOCH in its environment\n"
	       "  --resume-synth WRITES   when promoted, resume the synthetic workload inside the\n"
	       "                          receiver (shared mode), do WRITES more writes, verify\n"
	       "  --log-level LEVEL       error, warn, info (default) or debug\n"
	       "  --probe                 print what this kernel offers (userfaultfd, PAGEMAP_SCAN, io_uring)\n"
	       "  --help, --version\n"
	       "\n"
	       "Promotion happens on heartbeat silence, on a broken connection without BYE, or on\n"
	       "`ftreplctl promote`; the session is then fenced and the committed image kept.\n"
	       "\n"
	       "Example:\n"
	       "  ftrepl-receiver --listen 127.0.0.1:7600 --cache 1G --control /run/ftrepl-rx.sock\n",
	       FTR_DEFAULT_FAILOVER_MS, FTR_DEFAULT_HEARTBEAT_MS, FTR_DEFAULT_STALL_MS);
}

static json_t *epoch_json(uint64_t e)
{
	return e == FTR_EPOCH_NONE ? json_null() : json_integer((json_int_t)e);
}

/* What the program holds besides the standby. */
struct rx {
	struct ftr_standby *sb;
	struct ftr_resume_server *rs;
	const char *resume_sock;
	const char *on_promote;
	char *exec_cmd;		/* ftreplctl promote --exec */
	uint64_t synth_writes;	/* --resume-synth */
	bool promoted_seen;
	_Atomic pid_t child;	/* --on-promote command (set by the watcher) */
	pthread_t synth_th;
	bool synth_started;
	atomic_bool synth_stop;	/* also stops the promotion watcher */
	pthread_t promo_th;
	/* resumed synthetic workload (written by its thread) */
	pthread_mutex_t lock;
	const char *synth_state; /* "", "running", "done", "failed" */
	uint64_t synth_k0, synth_k;
	uint64_t synth_first_write_ns;
	char synth_msg[256];
	bool synth_ok;
	char synth_msg_at_resume[256];
	bool synth_ok_at_resume;
};

static json_t *resume_json(struct rx *rx, const struct ftr_standby_status *st)
{
	struct ftr_resume_stats rs;
	json_t *o;

	if (!rx->rs)
		return json_null();
	ftr_resume_server_stats(rx->rs, &rs);
	o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:s}",
		      "clients", (json_int_t)rs.clients,
		      "firecracker_clients", (json_int_t)rs.firecracker,
		      "faults", (json_int_t)rs.faults,
		      "pages_faulted", (json_int_t)rs.pages_faulted,
		      "pages_background", (json_int_t)rs.pages_background,
		      "pages_resident", (json_int_t)rs.pages_resident,
		      "pages_total", (json_int_t)rs.pages_total,
		      "fault_lat_median_us", (json_int_t)(rs.fault_lat_median_ns / 1000),
		      "fault_lat_p99_us", (json_int_t)(rs.fault_lat_p99_ns / 1000),
		      "bg_pages_per_s", rs.bg_pages_per_s,
		      "last_error", rs.last_error);
	/* Resume latency: promotion to the resumed workload's first
	 * instruction (its "started"). */
	json_object_set_new(o, "pending_at_start", json_integer((json_int_t)st->resume_pending_at_start));
	json_object_set_new(o, "applied_on_demand",
			    json_integer((json_int_t)st->resume_applied_on_demand));
	if (st->promoted_ns && rs.started_ns > st->promoted_ns)
		json_object_set_new(o, "resume_latency_us",
				    json_integer((json_int_t)((rs.started_ns - st->promoted_ns) / 1000)));
	pthread_mutex_lock(&rx->lock);
	if (rx->synth_state[0]) {
		json_t *sy = json_pack("{s:s, s:I, s:I, s:s, s:b, s:s, s:b}", "state",
				       rx->synth_state, "k_resumed", (json_int_t)rx->synth_k0, "k",
				       (json_int_t)rx->synth_k, "msg", rx->synth_msg, "oracle_ok",
				       rx->synth_ok, "msg_at_resume", rx->synth_msg_at_resume,
				       "oracle_ok_at_resume", rx->synth_ok_at_resume);

		if (st->promoted_ns && rx->synth_first_write_ns > st->promoted_ns)
			json_object_set_new(sy, "first_write_after_promotion_us",
					    json_integer((json_int_t)((rx->synth_first_write_ns -
								       st->promoted_ns) / 1000)));
		json_object_set_new(o, "synth", sy);
	}
	pthread_mutex_unlock(&rx->lock);
	return o;
}

static void synth_set(struct rx *rx, const char *state, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void synth_set(struct rx *rx, const char *state, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&rx->lock);
	rx->synth_state = state;
	va_start(ap, fmt);
	vsnprintf(rx->synth_msg, sizeof(rx->synth_msg), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&rx->lock);
}

/* --resume-synth: the synthetic workload continues on the committed image
 * inside the receiver, through the same resume socket an outside process
 * would use (shared mode: it runs on the cache itself). */
static void *resume_synth_main(void *arg)
{
	struct rx *rx = arg;
	struct ftr_resume_opts ro = { .mode = FTR_RESUME_SHARED };
	struct ftr_synth_verdict v;
	struct ftr_synth_spec spec;
	struct ftr_synth_gen g;
	struct ftr_resumed *r;
	char err[256];
	uint64_t k0;
	int ret;

	ftr_thread_name("ftr-rx-synth");

	synth_set(rx, "running", "connecting to %s", rx->resume_sock);
	ret = ftr_resume_connect(rx->resume_sock, &ro, &r, err, sizeof(err));
	if (ret) {
		synth_set(rx, "failed", "%s", err);
		fprintf(stderr, "%s: resume-synth: %s\n", prog_name, err);
		return NULL;
	}
	/* The control page is the first touch: it faults through the server. */
	if (ftr_synth_spec_from_image(r->regions[0].base, r->regions[0].size, &spec, &k0)) {
		synth_set(rx, "failed", "the committed image is not a synthetic workload image");
		ftr_resume_close(r);
		return NULL;
	}
	ftr_resume_started(r);
	/* The image it resumed from must be exactly the committed epoch. */
	ret = ftr_synth_verify(r->regions[0].base, r->regions[0].size, &spec, &v);
	pthread_mutex_lock(&rx->lock);
	rx->synth_ok_at_resume = !ret && v.ok;
	snprintf(rx->synth_msg_at_resume, sizeof(rx->synth_msg_at_resume), "%s",
		 ret ? strerror(-ret) : v.msg);
	pthread_mutex_unlock(&rx->lock);
	fprintf(stderr, "%s: resume-synth: resumed at k=%" PRIu64 "; oracle %s: %s\n", prog_name,
		k0, rx->synth_ok_at_resume ? "ok" : "FAILED", ret ? strerror(-ret) : v.msg);
	ftr_synth_gen_seek(&g, &spec, k0);
	pthread_mutex_lock(&rx->lock);
	rx->synth_k0 = rx->synth_k = k0;
	pthread_mutex_unlock(&rx->lock);
	for (uint64_t i = 0; i < rx->synth_writes; i++) {
		ftr_synth_write(&g, r->regions[0].base);
		if (!i) {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			pthread_mutex_lock(&rx->lock);
			rx->synth_first_write_ns = (uint64_t)ts.tv_sec * 1000000000ull +
						   (uint64_t)ts.tv_nsec;
			pthread_mutex_unlock(&rx->lock);
		}
		if ((i & 1023) == 0 && atomic_load(&rx->synth_stop))
			break;
		if ((i & 1023) == 0 || i + 1 == rx->synth_writes) {
			pthread_mutex_lock(&rx->lock);
			rx->synth_k = g.k;
			pthread_mutex_unlock(&rx->lock);
		}
	}
	ret = ftr_synth_verify(r->regions[0].base, r->regions[0].size, &spec, &v);
	pthread_mutex_lock(&rx->lock);
	rx->synth_k = g.k;
	rx->synth_ok = !ret && v.ok && rx->synth_ok_at_resume;
	pthread_mutex_unlock(&rx->lock);
	synth_set(rx, rx->synth_ok ? "done" : "failed", "resumed at k=%" PRIu64 ", %" PRIu64
		  " more writes; oracle: %s", k0, g.k - k0, ret ? strerror(-ret) : v.msg);
	fprintf(stderr, "%s: resume-synth: resumed at k=%" PRIu64 ", now k=%" PRIu64 "; oracle %s: %s\n",
		prog_name, k0, g.k, rx->synth_ok ? "ok" : "FAILED", ret ? strerror(-ret) : v.msg);
	/* The resumed workload keeps its memory until the receiver exits. */
	return r;
}

/* Called from the main loop: acts once on promotion. */
static void on_promotion(struct rx *rx)
{
	struct ftr_standby_status st;

	ftr_standby_get_status(rx->sb, &st);
	if (rx->promoted_seen || (st.state != FTR_STATE_PROMOTED && st.state != FTR_STATE_RESUMING))
		return;
	rx->promoted_seen = true;
	if (rx->on_promote) {
		char epoch[32];
		pid_t pid;

		snprintf(epoch, sizeof(epoch), "%" PRIu64, st.committed);
		pid = fork();
		if (pid == 0) {
			sigset_t all;

			sigemptyset(&all);
			pthread_sigmask(SIG_SETMASK, &all, NULL);
			if (rx->resume_sock)
				setenv("FTREPL_RESUME_SOCK", rx->resume_sock, 1);
			setenv("FTREPL_EPOCH", epoch, 1);
			execl("/bin/sh", "sh", "-c", rx->on_promote, (char *)NULL);
			_exit(127);
		}
		if (pid < 0)
			fprintf(stderr, "%s: --on-promote: fork: %s\n", prog_name, strerror(errno));
		else
			fprintf(stderr, "%s: promoted at epoch %s: started \"%s\" (pid %d)\n", prog_name,
				epoch, rx->on_promote, (int)pid);
		rx->child = pid > 0 ? pid : 0;
	}
	if (rx->synth_writes) {
		if (pthread_create(&rx->synth_th, NULL, resume_synth_main, rx))
			fprintf(stderr, "%s: --resume-synth: cannot start its thread\n", prog_name);
		else
			rx->synth_started = true;
	}
}

/* Waits for the promotion so that a resumed workload starts at once, not
 * at the main loop's next tick. */
static void *promo_main(void *arg)
{
	struct rx *rx = arg;

	ftr_thread_name("ftr-rx-promo");

	while (!atomic_load(&rx->synth_stop)) {
		int st = ftr_standby_wait_state(rx->sb, (1u << FTR_STATE_PROMOTED) |
						(1u << FTR_STATE_RESUMING), 200);

		if (st >= 0) {
			on_promotion(rx);
			break;
		}
	}
	return NULL;
}

static json_t *status_json(struct rx *rx)
{
	struct ftr_standby *sb = rx->sb;
	struct ftr_standby_status st;
	json_t *o;

	ftr_standby_get_status(sb, &st);
	o = json_pack("{s:i, s:s, s:s, s:s, s:I, s:o, s:o, s:I, s:I, s:i, s:i, s:s, s:s, s:s,"
			 " s:I, s:I, s:I, s:I, s:i}",
			 "listen_port", (int)ftr_standby_port(sb),
			 "role", "standby",
			 "state", ftr_state_name(st.state),
			 "session", st.session,
			 "generation", (json_int_t)st.generation,
			 "epoch_committed", epoch_json(st.committed),
			 "epoch_applied", epoch_json(st.applied),
			 "pending_pages", (json_int_t)st.pending_pages,
			 "pending_epochs", (json_int_t)st.pending_epochs,
			 "channels", (int)st.channels,
			 "nchannels", (int)st.nchannels,
			 "peer", st.peer,
			 "last_error", st.last_error,
			 "promote_reason", st.promote_reason,
			 "image_size", (json_int_t)st.image_size,
			 "cache_size", (json_int_t)st.cache_size,
			 "staging_slots", (json_int_t)st.staging_slots,
			 "staging_used", (json_int_t)st.staging_used,
			 "page_size", (int)st.page_size);
	if (o) {
		json_object_set_new(o, "resume", resume_json(rx, &st));
		json_object_set_new(o, "kernel", ftr_kprobe_json());
	}
	return o;
}

static json_t *stats_json(struct rx *rx)
{
	struct ftr_standby *sb = rx->sb;
	struct ftr_standby_status st;
	json_t *o;

	ftr_standby_get_status(sb, &st);
	o = json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "state", ftr_state_name(st.state),
			 "epoch_committed", epoch_json(st.committed),
			 "pages_received", (json_int_t)st.pages_received,
			 "zero_pages", (json_int_t)st.zero_pages,
			 "bytes_received", (json_int_t)st.bytes_received,
			 "epochs_committed", (json_int_t)st.epochs_committed,
			 "epochs_discarded", (json_int_t)st.epochs_discarded,
			 "pending_pages", (json_int_t)st.pending_pages,
			 "commit_wait_us_last", (json_int_t)(st.commit_wait_ns_last / 1000),
			 "sessions_rejected", (json_int_t)st.sessions_rejected,
			 "last_rx_ms_ago", (json_int_t)st.last_rx_ms_ago,
			 "blob_len", (json_int_t)st.blob_len);
	if (o) {
		json_object_set_new(o, "rx_syscalls", json_integer((json_int_t)st.rx_syscalls));
		json_object_set_new(o, "rx_placed_bytes",
				    json_integer((json_int_t)st.rx_placed_bytes));
		json_object_set_new(o, "resume", resume_json(rx, &st));
	}
	return o;
}

/* Writes the committed image to path via a temporary file, so a reader
 * never sees a half-written dump. */
static json_t *do_dump(struct ftr_standby *sb, const char *path, char **errmsg)
{
	char tmp[PATH_MAX];
	uint64_t epoch;
	int fd, ret;

	if (path[0] != '/') {
		*errmsg = ftr_ctl_errorf("dump: file must be an absolute path, got \"%s\"", path);
		return NULL;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
		*errmsg = ftr_ctl_errorf("dump: path too long");
		return NULL;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		*errmsg = ftr_ctl_errorf("dump: cannot create %s: %s", tmp, strerror(errno));
		return NULL;
	}
	ret = ftr_standby_dump(sb, fd, &epoch);
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		unlink(tmp);
		if (ret == -ENODATA)
			*errmsg = ftr_ctl_errorf("dump: no epoch committed yet");
		else
			*errmsg = ftr_ctl_errorf("dump: writing %s: %s", path, strerror(-ret));
		return NULL;
	}
	return json_pack("{s:s, s:I}", "file", path, "epoch", (json_int_t)epoch);
}

static json_t *do_verify(struct ftr_standby *sb, json_t *req, char **errmsg)
{
	const char *specstr = json_string_value(json_object_get(req, "spec"));
	struct ftr_synth_spec spec, *expect = NULL;
	struct ftr_synth_verdict v;
	char err[256];
	uint64_t epoch;
	int ret;

	if (json_object_get(req, "spec") && !specstr) {
		*errmsg = ftr_ctl_errorf("verify: \"spec\" must be a string");
		return NULL;
	}
	if (specstr) {
		if (ftr_synth_parse(specstr, &spec, err, sizeof(err))) {
			*errmsg = ftr_ctl_errorf("verify: bad spec: %s", err);
			return NULL;
		}
		expect = &spec;
	}
	ret = ftr_standby_verify(sb, expect, &v, &epoch);
	if (ret == -ENODATA) {
		*errmsg = ftr_ctl_errorf("verify: no epoch committed yet");
		return NULL;
	}
	if (ret == -EOPNOTSUPP) {
		*errmsg = ftr_ctl_errorf("verify: the oracle checks single-region synthetic images only");
		return NULL;
	}
	if (ret) {
		*errmsg = ftr_ctl_errorf("verify: %s", strerror(-ret));
		return NULL;
	}
	return json_pack("{s:b, s:I, s:I, s:I, s:s, s:o}", "passed", v.ok, "epoch",
			 (json_int_t)epoch, "k", (json_int_t)v.k, "pages", (json_int_t)v.pages,
			 "msg", v.msg, "bad_page",
			 v.ok ? json_null() : json_integer((json_int_t)v.bad_page));
}

static json_t *handle(void *arg, const char *cmd, json_t *req, char **errmsg)
{
	struct rx *rx = arg;
	struct ftr_standby *sb = rx->sb;

	if (!strcmp(cmd, "status"))
		return status_json(rx);
	if (!strcmp(cmd, "stats"))
		return stats_json(rx);
	if (!strcmp(cmd, "promote")) {
		json_t *ex = json_object_get(req, "exec");
		struct ftr_standby_status st;
		int ret;

		if (ex && (!json_is_string(ex) || !json_string_length(ex))) {
			*errmsg = ftr_ctl_errorf("promote: \"exec\" must be a non-empty string");
			return NULL;
		}
		ftr_standby_get_status(sb, &st);
		if (ex && st.state != FTR_STATE_PROMOTED && st.state != FTR_STATE_RESUMING &&
		    st.committed != FTR_EPOCH_NONE) {
			/* Set before promoting: the watcher starts it on promotion. */
			free(rx->exec_cmd);
			rx->exec_cmd = strdup(json_string_value(ex));
			rx->on_promote = rx->exec_cmd;
		}
		ret = ftr_standby_promote(sb, "ftreplctl promote");

		if (ret == -ENODATA) {
			*errmsg = ftr_ctl_errorf("promote: no epoch committed yet; there is no "
						 "consistent image to promote");
			return NULL;
		}
		if (ret == -EALREADY) {
			*errmsg = ftr_ctl_errorf("promote: already promoted");
			return NULL;
		}
		ftr_standby_get_status(sb, &st);
		return json_pack("{s:s, s:o}", "state", ftr_state_name(st.state), "epoch",
				 epoch_json(st.committed));
	}
	if (!strcmp(cmd, "dump")) {
		const char *file = json_string_value(json_object_get(req, "file"));

		if (!file) {
			*errmsg = ftr_ctl_errorf("dump needs \"file\": an absolute path");
			return NULL;
		}
		return do_dump(sb, file, errmsg);
	}
	if (!strcmp(cmd, "verify"))
		return do_verify(sb, req, errmsg);
	*errmsg = ftr_ctl_errorf("unknown command \"%s\" (status, stats, promote, dump, verify)",
				 cmd);
	return NULL;
}

/* ---- --migrate-in: the destination of a live migration ------------------- */

static json_t *mig_status_json(struct ftr_migrate_dst *dst)
{
	struct ftr_migrate_status st;
	char buf[4096];
	json_t *o;

	ftr_migrate_dst_get_status(dst, &st);
	ftr_migrate_status_json(&st, buf, sizeof(buf));
	o = json_loads(buf, 0, NULL);
	if (o)
		json_object_set_new(o, "role", json_string("migration destination"));
	return o;
}

static json_t *mig_handle(void *arg, const char *cmd, json_t *req, char **errmsg)
{
	struct ftr_migrate_dst *dst = arg;

	if (!strcmp(cmd, "status") || !strcmp(cmd, "stats"))
		return mig_status_json(dst);
	if (!strcmp(cmd, "verify")) {
		const char *specstr = json_string_value(json_object_get(req, "spec"));
		struct ftr_synth_spec spec, *expect = NULL;
		struct ftr_synth_verdict v;
		char err[256];
		int ret;

		if (specstr) {
			if (ftr_synth_parse(specstr, &spec, err, sizeof(err))) {
				*errmsg = ftr_ctl_errorf("verify: bad spec: %s", err);
				return NULL;
			}
			expect = &spec;
		}
		ret = ftr_migrate_dst_verify(dst, expect, &v);
		if (ret) {
			*errmsg = ftr_ctl_errorf("verify: %s", strerror(-ret));
			return NULL;
		}
		return json_pack("{s:b, s:I, s:I, s:s, s:o}", "passed", v.ok, "k", (json_int_t)v.k,
				 "pages", (json_int_t)v.pages, "msg", v.msg, "bad_page",
				 v.ok ? json_null() : json_integer((json_int_t)v.bad_page));
	}
	*errmsg = ftr_ctl_errorf("unknown command \"%s\" for a migration destination "
				 "(status, stats, verify)", cmd);
	return NULL;
}

static int migrate_main(const struct ftr_standby_opts *so, const char *control,
			uint64_t synth_writes, unsigned pf_fwd, unsigned pf_bwd)
{
	struct ftr_migrate_dst_opts o = {
		.listen = so->listen,
		.tp = so->tp,
		.cache_size = so->cache_size,
		.prefault_forward = pf_fwd,
		.prefault_backward = pf_bwd,
		.heartbeat_ms = so->heartbeat_ms,
		.timeout_ms = so->stall_timeout_ms,
		.resume_synth = synth_writes > 0,
		.synth_writes = synth_writes,
	};
	struct ftr_ctl_server *ctl = NULL;
	struct ftr_migrate_dst *dst;
	bool reported = false;
	char err[512];
	int ret, sig;

	prog_block_signals();
	ret = ftr_migrate_dst_create(&o, &dst, err, sizeof(err));
	if (ret)
		prog_fatal("%s", err[0] ? err : strerror(-ret));
	ret = ftr_migrate_dst_start(dst);
	if (ret) {
		ftr_migrate_dst_destroy(dst);
		prog_fatal("cannot start: %s", strerror(-ret));
	}
	fprintf(stderr, "%s: waiting for a migration on port %u\n", prog_name,
		ftr_migrate_dst_port(dst));
	/* Last: once the control socket answers, the port is printed and the
	 * listener runs (scripts wait for the one, then read the other). */
	if (control) {
		ret = ftr_ctl_server_start(control, mig_handle, dst, &ctl);
		if (ret) {
			ftr_migrate_dst_destroy(dst);
			prog_fatal("cannot serve the control socket %s: %s", control, strerror(-ret));
		}
	}
	while (!(sig = prog_wait_signal(100))) {
		int ph = ftr_migrate_dst_wait(dst, 1u << FTR_MIG_COMPLETED | 1u << FTR_MIG_FAILED, 0);

		if (ph >= 0 && !reported) {
			reported = true;
			if (ph == FTR_MIG_FAILED)
				fprintf(stderr, "%s: migration failed: %s\n", prog_name,
					ftr_migrate_dst_error(dst));
			else
				fprintf(stderr, "%s: migration completed; the workload runs here\n",
					prog_name);
		}
	}
	fprintf(stderr, "%s: %s received, stopping\n", prog_name, strsignal(sig));
	ftr_ctl_server_stop(ctl);
	ftr_migrate_dst_stop(dst);
	ftr_migrate_dst_destroy(dst);
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_CACHE_FILE = 256, O_STAGING, O_TRANSPORT, O_FAILOVER, O_HEARTBEAT, O_STALL,
	       O_LOG, O_CONTROL, O_RESUME_SOCK, O_ON_PROMOTE, O_RESUME_SYNTH, O_RDMA,
	       O_MIGRATE_IN, O_PF_FWD, O_PF_BWD };
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "cache", required_argument, NULL, 'c' },
		{ "cache-file", required_argument, NULL, O_CACHE_FILE },
		{ "staging", required_argument, NULL, O_STAGING },
		{ "transport", required_argument, NULL, O_TRANSPORT },
		{ "rdma", required_argument, NULL, O_RDMA },
		{ "migrate-in", no_argument, NULL, O_MIGRATE_IN },
		{ "prefault-forward", required_argument, NULL, O_PF_FWD },
		{ "prefault-backward", required_argument, NULL, O_PF_BWD },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "failover-timeout", required_argument, NULL, O_FAILOVER },
		{ "heartbeat-ms", required_argument, NULL, O_HEARTBEAT },
		{ "stall-timeout", required_argument, NULL, O_STALL },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "resume-sock", required_argument, NULL, O_RESUME_SOCK },
		{ "on-promote", required_argument, NULL, O_ON_PROMOTE },
		{ "resume-synth", required_argument, NULL, O_RESUME_SYNTH },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "probe", no_argument, NULL, 'P' },
		{ 0 },
	};
	struct ftr_standby_opts o = { 0 };
	struct ftr_ctl_server *ctl = NULL;
	const char *control = NULL;
	static struct rx rx = { .synth_state = "" };
	bool migrate_in = false;
	unsigned pf_fwd = 0, pf_bwd = 0;
	char tmpdir[] = "/tmp/ftrepl-rx.XXXXXX", synth_sock[64] = "";
	struct ftr_standby *sb;
	char err[512];
	int opt, ret, sig;

	prog_init("ftrepl-receiver");
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			o.listen = optarg;
			break;
		case 'c':
			o.cache_size = prog_size_arg("--cache", optarg);
			if (!o.cache_size)
				prog_usage_error("--cache must be more than 0");
			break;
		case O_CACHE_FILE:
			o.cache_file = optarg;
			break;
		case O_STAGING:
			o.staging_size = prog_size_arg("--staging", optarg);
			if (o.staging_size < 4096)
				prog_usage_error("--staging %s: at least one page (4K)", optarg);
			break;
		case O_TRANSPORT:
			o.tp.transport = optarg;
			break;
		case O_RDMA:
			o.tp.transport = "rdma";
			o.tp.device = optarg;
			break;
		case O_MIGRATE_IN:
			migrate_in = true;
			break;
		case O_PF_FWD:
			pf_fwd = (unsigned)prog_u64_arg("--prefault-forward", optarg, 0, 63);
			break;
		case O_PF_BWD:
			pf_bwd = (unsigned)prog_u64_arg("--prefault-backward", optarg, 0, 63);
			break;
		case O_CONTROL:
			control = optarg;
			break;
		case O_FAILOVER:
			o.failover_timeout_ms = (int)prog_u64_arg("--failover-timeout", optarg, 10,
								  3600000);
			break;
		case O_HEARTBEAT:
			o.heartbeat_ms = (int)prog_u64_arg("--heartbeat-ms", optarg, 1, 60000);
			break;
		case O_STALL:
			o.stall_timeout_ms = (int)prog_u64_arg("--stall-timeout", optarg, 10, 3600000);
			break;
		case O_LOG:
			prog_log_level_arg(optarg);
			break;
		case O_RESUME_SOCK:
			rx.resume_sock = optarg;
			break;
		case O_ON_PROMOTE:
			rx.on_promote = optarg;
			break;
		case O_RESUME_SYNTH:
			rx.synth_writes = prog_u64_arg("--resume-synth", optarg, 1, 1ull << 40);
			break;
		case 'h':
			usage();
			return 0;
		case 'P':
			prog_probe();
		case 'V':
#ifdef FTREPL_TEST_HOOKS
			printf("ftrepl-receiver ftrepl %s (test hooks)\n", ftrepl_version());
#else
			printf("ftrepl-receiver ftrepl %s\n", ftrepl_version());
#endif
			return 0;
		case ':':
			prog_usage_error("%s needs a value", argv[optind - 1]);
		default:
			prog_usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		prog_usage_error("unexpected argument \"%s\"", argv[optind]);
	if (!o.listen)
		prog_usage_error("--listen ADDR:PORT is required");
	if (!o.cache_size)
		prog_usage_error("--cache SIZE is required");
	if (o.failover_timeout_ms && o.heartbeat_ms && o.heartbeat_ms >= o.failover_timeout_ms)
		prog_usage_error("--heartbeat-ms must be shorter than --failover-timeout");
	{
		char host[256];
		uint16_t port;

		if (ftr_parse_hostport(o.listen, host, sizeof(host), &port))
			prog_usage_error("--listen %s: expected ADDR:PORT", o.listen);
	}
	if (ftr_tp_check_opts(&o.tp, err, sizeof(err)))
		prog_usage_error("%s", err);
	if (!migrate_in && (pf_fwd || pf_bwd))
		prog_usage_error("--prefault-forward/--prefault-backward need --migrate-in");
	if (migrate_in && (rx.resume_sock || rx.on_promote))
		prog_usage_error("--migrate-in cannot be combined with --resume-sock or --on-promote");
	if (migrate_in)
		return migrate_main(&o, control, rx.synth_writes, pf_fwd, pf_bwd);

	prog_block_signals();
	pthread_mutex_init(&rx.lock, NULL);
	ret = ftr_standby_create(&o, &sb, err, sizeof(err));
	if (ret)
		prog_fatal("%s", err[0] ? err : strerror(-ret));
	rx.sb = sb;
	if (rx.synth_writes && !rx.resume_sock) {
		/* A private resume socket for the in-process resumed workload. */
		if (!mkdtemp(tmpdir))
			prog_fatal("--resume-synth: mkdtemp: %s", strerror(errno));
		snprintf(synth_sock, sizeof(synth_sock), "%s/resume.sock", tmpdir);
		rx.resume_sock = synth_sock;
	}
	if (rx.resume_sock) {
		struct ftr_resume_server_opts ro = { .path = rx.resume_sock, .sb = sb,
						     .prefault_pages = 15 };

		ret = ftr_resume_server_start(&ro, &rx.rs, err, sizeof(err));
		if (ret) {
			ftr_standby_destroy(sb);
			prog_fatal("--resume-sock: %s", err[0] ? err : strerror(-ret));
		}
	}
	if (control) {
		ret = ftr_ctl_server_start(control, handle, &rx, &ctl);
		if (ret) {
			ftr_standby_destroy(sb);
			prog_fatal("cannot serve the control socket %s: %s", control, strerror(-ret));
		}
	}
	ret = ftr_standby_start(sb);
	if (ret) {
		if (ctl)
			ftr_ctl_server_stop(ctl);
		ftr_standby_destroy(sb);
		prog_fatal("cannot start: %s", strerror(-ret));
	}

	if (pthread_create(&rx.promo_th, NULL, promo_main, &rx))
		prog_fatal("cannot start the promotion watcher");
	while (!(sig = prog_wait_signal(100))) {
		if (rx.child > 0) {
			int status;

			if (waitpid(rx.child, &status, WNOHANG) == rx.child) {
				fprintf(stderr, "%s: --on-promote command exited with %d\n", prog_name,
					WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
				rx.child = 0;
			}
		}
	}
	fprintf(stderr, "%s: %s received, stopping\n", prog_name, strsignal(sig));
	if (ctl)
		ftr_ctl_server_stop(ctl);
	atomic_store(&rx.synth_stop, true);
	pthread_join(rx.promo_th, NULL);
	if (rx.synth_started) {
		void *r = NULL;

		pthread_join(rx.synth_th, &r);
		ftr_resume_close(r);
	}
	ftr_resume_server_stop(rx.rs);
	if (synth_sock[0])
		rmdir(tmpdir);
	ftr_standby_stop(sb);
	ftr_standby_destroy(sb);
	return 0;
}
