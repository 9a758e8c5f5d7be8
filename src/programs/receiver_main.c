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
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/ftrepl.h>

#include "common/ctlsock.h"
#include "programs/progutil.h"

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
	       "  --transport NAME        tcp (default)\n"
	       "  --control PATH          control socket for ftreplctl (JSON lines)\n"
	       "  --failover-timeout MS   promote after this much silence from the primary (default %d)\n"
	       "  --heartbeat-ms MS       heartbeat period towards the primary (default %d)\n"
	       "  --stall-timeout MS      drop a session whose record stalls mid-way (default %d)\n"
	       "  --log-level LEVEL       error, warn, info (default) or debug\n"
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

static json_t *status_json(struct ftr_standby *sb)
{
	struct ftr_standby_status st;

	ftr_standby_get_status(sb, &st);
	return json_pack("{s:i, s:s, s:s, s:s, s:I, s:o, s:o, s:I, s:I, s:i, s:i, s:s, s:s, s:s,"
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
}

static json_t *stats_json(struct ftr_standby *sb)
{
	struct ftr_standby_status st;

	ftr_standby_get_status(sb, &st);
	return json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
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
	struct ftr_standby *sb = arg;

	if (!strcmp(cmd, "status"))
		return status_json(sb);
	if (!strcmp(cmd, "stats"))
		return stats_json(sb);
	if (!strcmp(cmd, "promote")) {
		int ret = ftr_standby_promote(sb, "ftreplctl promote");
		struct ftr_standby_status st;

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

int main(int argc, char **argv)
{
	enum { O_CACHE_FILE = 256, O_STAGING, O_TRANSPORT, O_FAILOVER, O_HEARTBEAT, O_STALL,
	       O_LOG, O_CONTROL };
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "cache", required_argument, NULL, 'c' },
		{ "cache-file", required_argument, NULL, O_CACHE_FILE },
		{ "staging", required_argument, NULL, O_STAGING },
		{ "transport", required_argument, NULL, O_TRANSPORT },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "failover-timeout", required_argument, NULL, O_FAILOVER },
		{ "heartbeat-ms", required_argument, NULL, O_HEARTBEAT },
		{ "stall-timeout", required_argument, NULL, O_STALL },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct ftr_standby_opts o = { 0 };
	struct ftr_ctl_server *ctl = NULL;
	const char *control = NULL;
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
		case 'h':
			usage();
			return 0;
		case 'V':
			printf("ftrepl-receiver ftrepl %s\n", ftrepl_version());
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

	prog_block_signals();
	ret = ftr_standby_create(&o, &sb, err, sizeof(err));
	if (ret)
		prog_fatal("%s", err[0] ? err : strerror(-ret));
	if (control) {
		ret = ftr_ctl_server_start(control, handle, sb, &ctl);
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

	while (!(sig = prog_wait_signal(500)))
		;
	fprintf(stderr, "%s: %s received, stopping\n", prog_name, strsignal(sig));
	if (ctl)
		ftr_ctl_server_stop(ctl);
	ftr_standby_stop(sb);
	ftr_standby_destroy(sb);
	return 0;
}
