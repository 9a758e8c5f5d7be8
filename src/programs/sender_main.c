/* SPDX-License-Identifier: MIT */
/*
 * ftrepl-sender: the primary. Runs (or, later, attaches to) a workload,
 * cuts epochs and replicates them to a standby.
 *
 * Threads: main (signals), "engine" (ftr_primary_run), the primary's
 * control reader, the workload's writer, and the control socket server.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <jansson.h>

#include <ftrepl/attach.h>
#include <ftrepl/checkpoint.h>
#include <ftrepl/migrate.h>
#include <ftrepl/ftrepl.h>
#include <ftrepl/synth.h>

#include "common/common.h"
#include "common/ctlsock.h"
#include "programs/progutil.h"
#include "uffd/probe.h"

static void usage(void)
{
	printf("Usage: ftrepl-sender --tcp ADDR:PORT [--workload SPEC | --attach-sock PATH] [options]\n"
	       "\n"
	       "The primary: runs the workload, cuts an epoch every few milliseconds and sends\n"
	       "the pages written since the last one to the standby, which commits each epoch\n"
	       "atomically and acknowledges it.\n"
	       "\n"
	       "Connection:\n"
	       "  --tcp ADDR:PORT         the standby's address (ftrepl-receiver --listen)\n"
	       "  --rdma DEV --connect ADDR:PORT\n"
	       "                          RDMA verbs on device DEV (mlx5_0, rxe0) to that address\n"
	       "  --tcp-mode MODE         writev (default; batched iovecs), write (one write per\n"
	       "                          header and per page), uring (io_uring), zerocopy\n"
	       "                          (MSG_ZEROCOPY), uring-zc (io_uring SENDMSG_ZC); the\n"
	       "                          zero-copy modes switch to writev/uring when the kernel\n"
	       "                          copies anyway (loopback, veth) unless FTREPL_ZC_FALLBACK=0\n"
	       "  --channels N            data channels (connections) for pages (default 1, with\n"
	       "                          --migrate 2; max %d)\n"
	       "Workload:\n"
	       "  --workload SPEC         synth:size=SIZE,seed=S,hot=H,rate=R,pattern=random|seq\n"
	       "                          (default: synth, a 64 MiB synthetic region written as fast\n"
	       "                          as possible; every image it leaves can be verified)\n"
	       "  --attach-sock PATH      instead of --workload: listen on this unix socket (0600)\n"
	       "                          and replicate the regions of the one process that\n"
	       "                          attaches with the client library (waits for it;\n"
	       "                          include/ftrepl/attach.h). --dirty auto then means\n"
	       "                          the tracking the client chose (wp-async or scan)\n"
	       "Epochs:\n"
	       "  --epoch-ms N            epoch period (default %d)\n"
	       "  --snapshot MODE         stop-copy (default: paused until the dirty set is sent)\n"
	       "                          or copy-out (copy to a buffer, resume, then send)\n"
	       "                          or cow (pause only to harvest; send from live memory, a\n"
	       "                          page written before it is sent is copied aside first)\n"
	       "  --dirty MODE            dirty tracking: auto (the best the kernel offers, says which),\n"
	       "                          wp-async (uffd WP_ASYNC + PAGEMAP_SCAN), wp-sync (write-\n"
	       "                          protect faults), scan (shadow compare), workload (the\n"
	       "                          synthetic workload's own exact tracking), full (every page,\n"
	       "                          every epoch; needs staging as large as the workload)\n"
	       "  --batch-pages N         pages per PAGES record (default %d, max %d)\n"
	       "  --no-data-crc           do not checksum page payloads (headers always are)\n"
	       "Session:\n"
	       "  --session UUID          session id (default: random)\n"
	       "  --generation N          generation number (default 1)\n"
	       "  --heartbeat-ms MS       heartbeat period (default %d)\n"
	       "  --failover-timeout MS   give up when the standby is silent this long (default %d)\n"
	       "Migration (instead of replication):\n"
	       "  --migrate               move the workload to the destination (ftrepl-receiver\n"
	       "                          --migrate-in): precopy rounds while it runs, then switch\n"
	       "                          and let the destination pull what is missing (hybrid)\n"
	       "  --precopy-rounds N      most precopy rounds before the switch (0 = pure postcopy)\n"
	       "  --no-postcopy           pure precopy: fail if it does not converge\n"
	       "  --downtime-ms N         convergence target (default 30)\n"
	       "  --no-background         postcopy: serve page requests only (for measurement)\n"
	       "                          `ftreplctl switch` forces the switch now\n"
	       "Running:\n"
	       "  --epochs N              stop after N epochs after the initial sync\n"
	       "  --duration SECONDS      stop after this long (also 500ms)\n"
	       "  --control PATH          control socket for ftreplctl (status, stats, stop)\n"
	       "  --dump-on-exit FILE     after an orderly stop, write the workload's final image\n"
	       "                          (equal to the last acked epoch) to FILE\n"
	       "  --log-level LEVEL       error, warn, info (default) or debug\n"
	       "  --probe                 print what this kernel offers (userfaultfd, PAGEMAP_SCAN, io_uring)\n"
	       "  --help, --version\n"
	       "\n"
	       "An orderly stop (SIGINT, SIGTERM, `ftreplctl stop`, --epochs, --duration) cuts a final\n"
	       "epoch with the workload paused, waits for its ACK and says BYE.\n"
	       "\n"
	       "Example:\n"
	       "  ftrepl-sender --tcp 127.0.0.1:7600 --workload synth:size=256M,rate=20000 \\\n"
	       "                --epoch-ms 20 --control /run/ftrepl-tx.sock\n"
	       "  ftrepl-sender --tcp 127.0.0.1:7600 --attach-sock /run/ftrepl-attach.sock &\n"
	       "  kvserver --attach /run/ftrepl-attach.sock     # examples/: an attached application\n",
	       FTR_WIRE_MAX_CHANNELS, FTR_DEFAULT_EPOCH_MS, FTR_DEFAULT_BATCH, FTR_WIRE_MAX_BATCH,
	       FTR_DEFAULT_HEARTBEAT_MS, FTR_DEFAULT_FAILOVER_MS);
}

struct sender {
	struct ftr_primary *p;
	struct ftr_workload *wl;
	struct ftr_synth_spec spec;
	char attach_desc[96];	/* "attach:..." for status, "" for synth */
	struct ftr_zc_totals zc; /* tcp zero-copy counters of every channel */
	atomic_bool done;
	int ret;
};

static json_t *epoch_json(uint64_t e)
{
	return e == FTR_EPOCH_NONE ? json_null() : json_integer((json_int_t)e);
}

static json_t *status_json(struct sender *s, bool full)
{
	struct ftr_primary_status st;
	char spec[256];
	json_t *o;

	ftr_primary_get_status(s->p, &st);
	if (s->attach_desc[0])
		snprintf(spec, sizeof(spec), "%s", s->attach_desc);
	else
		ftr_synth_format(&s->spec, spec, sizeof(spec));
	o = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:I, s:s, s:i, s:s, s:I, s:s, s:s}",
		      "role", "primary",
		      "state", ftr_state_name(st.state),
		      "session", st.session,
		      "generation", (json_int_t)st.generation,
		      "epoch", epoch_json(st.epoch),
		      "epoch_acked", epoch_json(st.acked),
		      "workload_writes", (json_int_t)st.workload_writes,
		      "workload", spec,
		      "nchannels", (int)st.nchannels,
		      "transport", st.transport,
		      "staging_slots", (json_int_t)st.staging_slots,
		      "last_error", st.last_error,
		      "dirty", st.dirty);
	if (o)
		json_object_set_new(o, "kernel", ftr_kprobe_json());
	if (o && full) {
		json_t *more = json_pack(
			"{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			"pages_sent", (json_int_t)st.pages_sent,
			"zero_pages_sent", (json_int_t)st.zero_pages_sent,
			"bytes_sent", (json_int_t)st.bytes_sent,
			"pause_last_us", (json_int_t)st.pause_last_us,
			"pause_mean_us", (json_int_t)st.pause_mean_us,
			"pause_p99_us", (json_int_t)st.pause_p99_us,
			"ack_last_us", (json_int_t)st.ack_last_us,
			"ack_mean_us", (json_int_t)st.ack_mean_us,
			"ack_p99_us", (json_int_t)st.ack_p99_us,
			"epochs_cut_early", (json_int_t)st.epochs_cut_early,
			"credit_waits", (json_int_t)st.credit_waits,
			"tx_syscalls", (json_int_t)st.tx_syscalls);

		json_object_set_new(more, "harvest_last_us", json_integer((json_int_t)st.harvest_last_us));
		json_object_set_new(more, "tx_placed_bytes", json_integer((json_int_t)st.tx_placed_bytes));
		json_object_set_new(more, "cow_copied", json_integer((json_int_t)st.cow_copied));
		json_object_set_new(more, "cow_faults", json_integer((json_int_t)st.cow_faults));
		/* tcp zerocopy/uring-zc: sends, completions, copied, fallbacks */
		json_object_set_new(more, "zc_sends", json_integer((json_int_t)
			__atomic_load_n(&s->zc.sends, __ATOMIC_RELAXED)));
		json_object_set_new(more, "zc_completions", json_integer((json_int_t)
			__atomic_load_n(&s->zc.completions, __ATOMIC_RELAXED)));
		json_object_set_new(more, "zc_copied", json_integer((json_int_t)
			__atomic_load_n(&s->zc.copied, __ATOMIC_RELAXED)));
		json_object_set_new(more, "zc_fallbacks", json_integer((json_int_t)
			__atomic_load_n(&s->zc.fallbacks, __ATOMIC_RELAXED)));

		json_object_update(o, more);
		json_decref(more);
	}
	return o;
}

static json_t *handle(void *arg, const char *cmd, json_t *req, char **errmsg)
{
	struct sender *s = arg;

	(void)req;
	if (!strcmp(cmd, "status"))
		return status_json(s, false);
	if (!strcmp(cmd, "stats"))
		return status_json(s, true);
	if (!strcmp(cmd, "stop")) {
		ftr_primary_stop(s->p);
		return json_pack("{s:s}", "state", "stopping");
	}
	*errmsg = ftr_ctl_errorf("unknown command \"%s\" for the primary (status, stats, stop)", cmd);
	return NULL;
}

static void *engine_main(void *arg)
{
	struct sender *s = arg;

	ftr_thread_name("ftr-engine");

	s->ret = ftr_primary_run(s->p);
	atomic_store(&s->done, true);
	return NULL;
}

static uint64_t duration_arg(const char *val)
{
	size_t n = strlen(val);
	char buf[32];

	if (n > 2 && n < sizeof(buf) && !strcmp(val + n - 2, "ms")) {
		memcpy(buf, val, n - 2);
		buf[n - 2] = '\0';
		return prog_u64_arg("--duration", buf, 1, 86400000ull * 365);
	}
	return prog_u64_arg("--duration", val, 1, 86400ull * 365) * 1000;
}

/* ---- --migrate ---------------------------------------------------------------- */

struct mig_args {
	bool migrate;
	unsigned rounds;
	bool rounds_set;
	bool no_postcopy;
	unsigned downtime_ms;
	bool no_background;
};

struct mig_run {
	struct ftr_migrate_src *src;
	atomic_bool done;
	int ret;
};

static void *mig_engine(void *arg)
{
	struct mig_run *m = arg;

	ftr_thread_name("ftr-mig-engine");

	m->ret = ftr_migrate_src_run(m->src);
	atomic_store(&m->done, true);
	return NULL;
}

static json_t *mig_handle(void *arg, const char *cmd, json_t *req, char **errmsg)
{
	struct mig_run *m = arg;

	(void)req;
	if (!strcmp(cmd, "status") || !strcmp(cmd, "stats")) {
		struct ftr_migrate_status st;
		char buf[4096];
		json_t *o;

		ftr_migrate_src_get_status(m->src, &st);
		ftr_migrate_status_json(&st, buf, sizeof(buf));
		o = json_loads(buf, 0, NULL);
		if (o)
			json_object_set_new(o, "role", json_string("migration source"));
		return o;
	}
	if (!strcmp(cmd, "switch")) {
		int ret = ftr_migrate_src_switch(m->src);

		if (ret && ret != -EALREADY) {
			*errmsg = ftr_ctl_errorf("switch: %s", strerror(-ret));
			return NULL;
		}
		return json_pack("{s:s}", "switch", ret ? "already under way" : "requested");
	}
	*errmsg = ftr_ctl_errorf("unknown command \"%s\" for a migration source "
				 "(status, stats, switch)", cmd);
	return NULL;
}

static int migrate_main(const struct ftr_primary_opts *po, const struct mig_args *a,
			struct sender *s, const char *control)
{
	struct ftr_migrate_src_opts o = {
		.connect = po->connect,
		.tp = po->tp,
		.nchannels = po->nchannels,
		.mode = a->no_postcopy ? FTR_MIG_PRECOPY
			: (a->rounds_set && !a->rounds) ? FTR_MIG_POSTCOPY : FTR_MIG_HYBRID,
		.max_rounds = a->rounds,
		.target_downtime_ms = a->downtime_ms,
		.dirty = po->dirty == FTR_DIRTY_AUTO ? FTR_DIRTY_WORKLOAD : po->dirty,
		.no_background = a->no_background,
		.heartbeat_ms = po->heartbeat_ms,
		.no_data_crc = po->no_data_crc,
		.batch_pages = po->batch_pages,
		.generation = po->generation,
	};
	struct ftr_ctl_server *ctl = NULL;
	struct mig_run m = { 0 };
	struct ftr_migrate_status st;
	pthread_t th;
	int ret, nsig = 0;

	memcpy(o.session, po->session, sizeof(o.session));
	ret = ftr_migrate_src_create(&o, s->wl, &m.src);
	if (ret)
		prog_fatal("cannot create the migration: %s", strerror(-ret));
	if (control) {
		ret = ftr_ctl_server_start(control, mig_handle, &m, &ctl);
		if (ret)
			prog_fatal("cannot serve the control socket %s: %s", control, strerror(-ret));
	}
	ret = pthread_create(&th, NULL, mig_engine, &m);
	if (ret)
		prog_fatal("cannot start the migration thread: %s", strerror(ret));
	while (!atomic_load(&m.done)) {
		int sig = prog_wait_signal(100);

		if (!sig)
			continue;
		if (++nsig > 1)
			_exit(1);
		fprintf(stderr, "%s: %s received: aborting the migration\n", prog_name,
			strsignal(sig));
		ftr_migrate_src_abort(m.src);
	}
	pthread_join(th, NULL);
	ftr_ctl_server_stop(ctl);
	ftr_migrate_src_get_status(m.src, &st);
	if (m.ret) {
		char err[512];

		snprintf(err, sizeof(err), "%s", ftr_migrate_src_error(m.src));
		ftr_migrate_src_destroy(m.src);
		ftr_workload_destroy(s->wl);
		prog_fatal("migration failed: %s", err[0] ? err : strerror(-m.ret));
	}
	fprintf(stderr, "%s: migration completed in %" PRIu64 " ms (downtime %" PRIu64
		" us, %u precopy round(s), %" PRIu64 " page requests served)\n", prog_name,
		st.total_ms, st.downtime_us, st.round, st.fault_reqs);
	ftr_migrate_src_destroy(m.src);
	ftr_workload_destroy(s->wl);
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_TCP_MODE = 256, O_WORKLOAD, O_EPOCH_MS, O_SNAPSHOT, O_DIRTY, O_BATCH, O_NOCRC,
	       O_SESSION, O_GEN, O_HEARTBEAT, O_FAILOVER, O_EPOCHS, O_DURATION, O_CONTROL,
	       O_DUMP, O_LOG, O_CHANNELS, O_ATTACH, O_RDMA, O_CONNECT, O_MIGRATE, O_ROUNDS,
	       O_NO_POSTCOPY, O_DOWNTIME, O_NO_BG };
	static const struct option longopts[] = {
		{ "tcp", required_argument, NULL, 't' },
		{ "tcp-mode", required_argument, NULL, O_TCP_MODE },
		{ "rdma", required_argument, NULL, O_RDMA },
		{ "connect", required_argument, NULL, O_CONNECT },
		{ "migrate", no_argument, NULL, O_MIGRATE },
		{ "precopy-rounds", required_argument, NULL, O_ROUNDS },
		{ "no-postcopy", no_argument, NULL, O_NO_POSTCOPY },
		{ "downtime-ms", required_argument, NULL, O_DOWNTIME },
		{ "no-background", no_argument, NULL, O_NO_BG },
		{ "channels", required_argument, NULL, O_CHANNELS },
		{ "workload", required_argument, NULL, O_WORKLOAD },
		{ "attach-sock", required_argument, NULL, O_ATTACH },
		{ "epoch-ms", required_argument, NULL, O_EPOCH_MS },
		{ "snapshot", required_argument, NULL, O_SNAPSHOT },
		{ "dirty", required_argument, NULL, O_DIRTY },
		{ "batch-pages", required_argument, NULL, O_BATCH },
		{ "no-data-crc", no_argument, NULL, O_NOCRC },
		{ "session", required_argument, NULL, O_SESSION },
		{ "generation", required_argument, NULL, O_GEN },
		{ "heartbeat-ms", required_argument, NULL, O_HEARTBEAT },
		{ "failover-timeout", required_argument, NULL, O_FAILOVER },
		{ "epochs", required_argument, NULL, O_EPOCHS },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "dump-on-exit", required_argument, NULL, O_DUMP },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "probe", no_argument, NULL, 'P' },
		{ 0 },
	};
	struct ftr_primary_opts o = { 0 };
	struct sender s = { 0 };
	struct ftr_ctl_server *ctl = NULL;
	const char *workload = "synth", *control = NULL, *dump = NULL, *attach = NULL;
	bool workload_set = false, tcp_given = false;
	const char *rdma_connect = NULL;
	struct mig_args mig = { 0 };
	pthread_t engine;
	char err[512];
	int opt, ret, nsig = 0;

	prog_init("ftrepl-sender");
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 't':
			o.connect = optarg;
			o.tp.transport = "tcp";
			tcp_given = true;
			break;
		case O_RDMA:
			o.tp.transport = "rdma";
			o.tp.device = optarg;
			break;
		case O_CONNECT:
			rdma_connect = optarg;
			break;
		case O_MIGRATE:
			mig.migrate = true;
			break;
		case O_ROUNDS:
			mig.rounds = (unsigned)prog_u64_arg("--precopy-rounds", optarg, 0, 1000);
			mig.rounds_set = true;
			break;
		case O_NO_POSTCOPY:
			mig.no_postcopy = true;
			break;
		case O_DOWNTIME:
			mig.downtime_ms = (unsigned)prog_u64_arg("--downtime-ms", optarg, 1, 60000);
			break;
		case O_NO_BG:
			mig.no_background = true;
			break;
		case O_TCP_MODE:
			o.tp.mode = optarg;
			break;
		case O_CHANNELS:
			o.nchannels = (unsigned)prog_u64_arg("--channels", optarg, 1,
							     FTR_WIRE_MAX_CHANNELS);
			break;
		case O_WORKLOAD:
			workload = optarg;
			workload_set = true;
			break;
		case O_ATTACH:
			attach = optarg;
			break;
		case O_EPOCH_MS:
			o.epoch_ms = (int)prog_u64_arg("--epoch-ms", optarg, 1, 3600000);
			break;
		case O_SNAPSHOT:
			if (ftr_snapshot_parse(optarg, &o.snapshot))
				prog_usage_error("--snapshot %s: use stop-copy, copy-out or cow", optarg);
			break;
		case O_DIRTY:
			if (ftr_dirty_parse(optarg, &o.dirty))
				prog_usage_error("--dirty %s: use auto, wp-async, wp-sync, scan, workload or full",
						 optarg);
			break;
		case O_BATCH:
			o.batch_pages = (unsigned)prog_u64_arg("--batch-pages", optarg, 1,
							       FTR_WIRE_MAX_BATCH);
			break;
		case O_NOCRC:
			o.no_data_crc = true;
			break;
		case O_SESSION:
			if (uuid_parse(optarg, o.session) || uuid_is_null(o.session))
				prog_usage_error("--session %s: not a UUID", optarg);
			break;
		case O_GEN:
			o.generation = prog_u64_arg("--generation", optarg, 1, UINT64_MAX / 2);
			break;
		case O_HEARTBEAT:
			o.heartbeat_ms = (int)prog_u64_arg("--heartbeat-ms", optarg, 1, 60000);
			break;
		case O_FAILOVER:
			o.failover_timeout_ms = (int)prog_u64_arg("--failover-timeout", optarg, 10,
								  3600000);
			break;
		case O_EPOCHS:
			o.max_epochs = prog_u64_arg("--epochs", optarg, 1, UINT64_MAX / 2);
			break;
		case O_DURATION:
			o.duration_ms = duration_arg(optarg);
			break;
		case O_CONTROL:
			control = optarg;
			break;
		case O_DUMP:
			dump = optarg;
			break;
		case O_LOG:
			prog_log_level_arg(optarg);
			break;
		case 'h':
			usage();
			return 0;
		case 'P':
			prog_probe();
		case 'V':
			printf("ftrepl-sender ftrepl %s\n", ftrepl_version());
			return 0;
		case ':':
			prog_usage_error("%s needs a value", argv[optind - 1]);
		default:
			prog_usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		prog_usage_error("unexpected argument \"%s\"", argv[optind]);
	if (tcp_given && o.tp.device)
		prog_usage_error("--tcp and --rdma are exclusive: give one of them");
	if (o.tp.device) {
		if (!rdma_connect)
			prog_usage_error("--rdma %s needs --connect ADDR:PORT", o.tp.device);
		o.connect = rdma_connect;
	} else if (rdma_connect) {
		prog_usage_error("--connect is for --rdma; with tcp give --tcp ADDR:PORT");
	}
	if (!o.connect)
		prog_usage_error("--tcp ADDR:PORT (or --rdma DEV --connect ADDR:PORT) is required");
	o.tp.zc_totals = &s.zc; /* counters for `ftreplctl stats` (zero-copy modes) */
	if (!mig.migrate && (mig.rounds_set || mig.no_postcopy || mig.downtime_ms ||
			     mig.no_background))
		prog_usage_error("--precopy-rounds, --no-postcopy, --downtime-ms and --no-background "
				 "need --migrate");
	if (mig.migrate && (o.max_epochs || o.duration_ms || dump || o.snapshot != FTR_SNAP_STOP_COPY))
		prog_usage_error("--epochs, --duration, --dump-on-exit and --snapshot are for "
				 "replication, not --migrate");
	if (mig.no_postcopy && mig.rounds_set && !mig.rounds)
		prog_usage_error("--no-postcopy with --precopy-rounds 0 leaves nothing to migrate with");
	{
		char host[256];
		uint16_t port;

		if (ftr_parse_hostport(o.connect, host, sizeof(host), &port) || port == 0)
			prog_usage_error("%s %s: expected ADDR:PORT", o.tp.device ? "--connect" : "--tcp",
					 o.connect);
	}
	if (ftr_tp_check_opts(&o.tp, err, sizeof(err)))
		prog_usage_error("%s", err);
	if (strncmp(workload, "synth", 5) || (workload[5] && workload[5] != ':'))
		prog_usage_error("--workload %s: unknown workload type (supported: synth:...)",
				 workload);
	if (ftr_synth_parse(workload, &s.spec, err, sizeof(err)))
		prog_usage_error("--workload: %s", err);
	if (attach && workload_set)
		prog_usage_error("--attach-sock and --workload are exclusive: give one of them");
	/* The primary's own wp backends would track its mapping of the
	 * client's memfds, which never sees the client's writes. */
	if (attach && (o.dirty == FTR_DIRTY_WP_ASYNC || o.dirty == FTR_DIRTY_WP_SYNC))
		prog_usage_error("--dirty %s cannot see an attached process's writes: use auto"
				 " (the tracking the client chose), workload, scan or full",
				 ftr_dirty_name(o.dirty));
	if (attach && o.dirty == FTR_DIRTY_AUTO)
		o.dirty = FTR_DIRTY_WORKLOAD;
	if (o.heartbeat_ms && o.failover_timeout_ms && o.heartbeat_ms >= o.failover_timeout_ms)
		prog_usage_error("--heartbeat-ms must be shorter than --failover-timeout");

	if (attach) {
		/* Before the signals are blocked: SIGINT/SIGTERM end the wait.
		 * The workload's threads block every signal themselves. */
		ret = ftr_attach_workload_create(attach, -1, &s.wl, err, sizeof(err));
		if (ret)
			prog_fatal("--attach-sock: %s", err);
		snprintf(s.attach_desc, sizeof(s.attach_desc), "attach:pid=%d,tracking=%s",
			 ftr_attach_pid(s.wl), ftr_attach_tracking(s.wl));
	}
	prog_block_signals();
	ret = attach ? 0 : ftr_synth_workload_create(&s.spec, &s.wl);
	if (ret)
		prog_fatal("cannot create the synthetic workload: %s", strerror(-ret));
	if (mig.migrate)
		return migrate_main(&o, &mig, &s, control);
	ret = ftr_primary_create(&o, s.wl, &s.p);
	if (ret)
		prog_fatal("cannot create the primary: %s", strerror(-ret));
	if (control) {
		ret = ftr_ctl_server_start(control, handle, &s, &ctl);
		if (ret)
			prog_fatal("cannot serve the control socket %s: %s", control, strerror(-ret));
	}
	ret = pthread_create(&engine, NULL, engine_main, &s);
	if (ret)
		prog_fatal("cannot start the engine thread: %s", strerror(ret));

	while (!atomic_load(&s.done)) {
		int sig = prog_wait_signal(100);

		if (!sig)
			continue;
		if (++nsig > 1) {
			fprintf(stderr, "%s: %s again: exiting without an orderly stop\n", prog_name,
				strsignal(sig));
			_exit(1);
		}
		fprintf(stderr, "%s: %s received: cutting a final epoch and stopping\n", prog_name,
			strsignal(sig));
		ftr_primary_stop(s.p);
	}
	pthread_join(engine, NULL);
	if (ctl)
		ftr_ctl_server_stop(ctl);
	if (!s.ret && dump) {
		int fd = open(dump, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0 || ftr_workload_dump(s.wl, fd) || fsync(fd))
			prog_fatal("cannot write %s: %s", dump, strerror(errno));
		close(fd);
	}
	if (s.ret) {
		snprintf(err, sizeof(err), "%s", ftr_primary_error(s.p));
		ftr_primary_destroy(s.p);
		ftr_workload_destroy(s.wl);
		prog_fatal("%s", err[0] ? err : strerror(-s.ret));
	}
	ftr_primary_destroy(s.p);
	ftr_workload_destroy(s.wl);
	return 0;
}
