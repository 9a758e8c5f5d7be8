/* SPDX-License-Identifier: MIT */
/*
 * ftreplctl: talks to a daemon's control socket (one JSON request line,
 * one JSON reply line), and checks image files with the synthetic oracle
 * without any daemon.
 *
 * Exit codes: 0 done (verify: passed), 1 runtime failure or a failed
 * verify, 2 usage error (always exactly one line on stderr).
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include <ftrepl/ftrepl.h>
#include <ftrepl/synth.h>

#include "common/ctlsock.h"
#include "programs/progutil.h"

#define CMD_LIST "status, stats, promote, stop, switch, dump, verify, raw"
#define DEFAULT_TIMEOUT_MS 10000
/* dump and verify walk the whole image on the daemon's side. */
#define SLOW_TIMEOUT_MS 120000

struct ctl_opts {
	const char *control;
	const char *spec;
	int timeout_ms; /* 0: the command's default */
	bool json;
	const char *cmd;
	char **args;
	int nargs;
	json_t *raw;	/* raw: the parsed request */
	const char *exec; /* promote --exec CMD */
};

static void usage(void)
{
	printf("Usage: ftreplctl [--control PATH] [--timeout MS] [--json] COMMAND [ARGS]\n"
	       "\n"
	       "Queries and steers a running ftrepl-receiver or ftrepl-sender through its\n"
	       "control socket, or checks an image file with the synthetic workload's oracle.\n"
	       "\n"
	       "Commands (need --control PATH):\n"
	       "  status                  state, epochs, addresses\n"
	       "  stats                   counters and latencies\n"
	       "  switch                  migration source: switch to the destination now\n"
	       "  promote [--exec CMD]    standby: take over now with the committed epoch; with\n"
	       "                          --exec, the receiver then runs CMD (/bin/sh -c) with\n"
	       "                          FTREPL_RESUME_SOCK and FTREPL_EPOCH set\n"
	       "  stop                    primary: cut a final epoch and stop\n"
	       "  dump FILE               standby: write the committed image to FILE\n"
	       "  verify [--spec SPEC]    standby: check the committed image with the oracle\n"
	       "  raw JSON                send one JSON request object as is\n"
	       "\n"
	       "Without a daemon:\n"
	       "  verify FILE [--spec SPEC]  check an image file (a dump) with the oracle;\n"
	       "                          SPEC (synth:size=...,seed=...) must then match it too\n"
	       "\n"
	       "Options (before or after the command):\n"
	       "  --control PATH          the daemon's control socket\n"
	       "  --timeout MS            wait this long for a reply (default %d; %d for\n"
	       "                          dump and verify)\n"
	       "  --json                  print the reply as one JSON line\n"
	       "  --spec SPEC             verify: the workload the image must belong to\n"
	       "  --probe                 print what this kernel offers (userfaultfd, PAGEMAP_SCAN, io_uring)\n"
	       "  --help, --version\n"
	       "\n"
	       "Exit status: 0 ok (verify: passed), 1 failure (verify: failed), 2 usage error.\n"
	       "\n"
	       "Examples:\n"
	       "  ftreplctl --control /run/ftrepl-rx.sock status\n"
	       "  ftreplctl --control /run/ftrepl-rx.sock dump /tmp/image\n"
	       "  ftreplctl verify /tmp/image --spec synth:size=256M,seed=42\n",
	       DEFAULT_TIMEOUT_MS, SLOW_TIMEOUT_MS);
}

/* ---- output ------------------------------------------------------------- */

/* Compact JSON of any value, for printing; never NULL. */
static char *json_text(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	if (!s)
		prog_fatal("out of memory");
	return s;
}

static void print_json_line(const json_t *v)
{
	char *s = json_text(v);

	puts(s);
	free(s);
}

/* "key: value" per field; strings bare, everything else as JSON. */
static void print_fields(const json_t *reply)
{
	const char *key;
	json_t *val;

	json_object_foreach((json_t *)reply, key, val) {
		char *s;

		if (!strcmp(key, "ok"))
			continue;
		if (json_is_string(val)) {
			printf("%s: %s\n", key, json_string_value(val));
			continue;
		}
		s = json_text(val);
		printf("%s: %s\n", key, s);
		free(s);
	}
}

static void print_reply(const struct ctl_opts *o, const json_t *reply)
{
	if (o->json)
		print_json_line(reply);
	else
		print_fields(reply);
}

/* ---- talking to the daemon ---------------------------------------------- */

static int effective_timeout(const struct ctl_opts *o)
{
	if (o->timeout_ms)
		return o->timeout_ms;
	if (!strcmp(o->cmd, "dump") || !strcmp(o->cmd, "verify"))
		return SLOW_TIMEOUT_MS;
	return DEFAULT_TIMEOUT_MS;
}

/* Sends req (consumed) and returns a reply with "ok":true; every other
 * outcome ends the program with exit 1 and the reason. raw prints the
 * reply line even when it reports an error. */
static json_t *request(const struct ctl_opts *o, json_t *req, bool print_failed)
{
	int timeout = effective_timeout(o);
	json_t *reply, *ok;
	int ret;

	ret = ftr_ctl_request(o->control, req, timeout, &reply);
	json_decref(req);
	if (ret == -ETIMEDOUT)
		prog_fatal("no reply from %s within %d ms", o->control, timeout);
	if (ret == -EPROTO || ret == -EMSGSIZE)
		prog_fatal("bad reply from %s: %s", o->control, strerror(-ret));
	if (ret == -EPIPE || ret == -ECONNRESET)
		prog_fatal("connection to %s lost: %s", o->control, strerror(-ret));
	if (ret)
		prog_fatal("cannot connect to %s: %s", o->control, strerror(-ret));
	ok = json_object_get(reply, "ok");
	if (json_is_true(ok))
		return reply;
	if (print_failed)
		print_json_line(reply);
	fflush(stdout);
	if (json_is_string(json_object_get(reply, "error")))
		prog_fatal("%s", json_string_value(json_object_get(reply, "error")));
	prog_fatal("reply from %s has no \"ok\":true and no error", o->control);
}

static json_t *new_request(const char *cmd)
{
	json_t *req = json_pack("{s:s}", "cmd", cmd);

	if (!req)
		prog_fatal("out of memory");
	return req;
}

/* FILE as the daemon must see it: absolute, since the daemon's working
 * directory is not ours. The directory is resolved, the last component
 * kept as given (the file need not exist yet). */
static char *absolute_path(const char *file)
{
	char *dcopy = strdup(file), *bcopy = strdup(file);
	char dir[PATH_MAX], cwd[PATH_MAX];
	char *out = NULL;
	int n = -1;

	if (!dcopy || !bcopy)
		prog_fatal("out of memory");
	if (realpath(dirname(dcopy), dir)) {
		const char *base = basename(bcopy);

		n = asprintf(&out, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", base);
	} else if (file[0] == '/') {
		n = asprintf(&out, "%s", file);
	} else if (getcwd(cwd, sizeof(cwd))) {
		n = asprintf(&out, "%s/%s", cwd, file);
	} else {
		prog_fatal("dump %s: cannot resolve the current directory: %s", file,
			   strerror(errno));
	}
	if (n < 0)
		prog_fatal("out of memory");
	free(dcopy);
	free(bcopy);
	return out;
}

static int cmd_simple(const struct ctl_opts *o)
{
	json_t *req = new_request(o->cmd);
	json_t *reply;

	if (o->exec && json_object_set_new(req, "exec", json_string(o->exec)))
		prog_usage_error("--exec: the command must be UTF-8");
	reply = request(o, req, false);

	print_reply(o, reply);
	json_decref(reply);
	return 0;
}

static int cmd_dump(const struct ctl_opts *o)
{
	json_t *req = new_request("dump");
	char *abs = absolute_path(o->args[0]);
	json_t *reply;

	if (json_object_set_new(req, "file", json_string(abs)))
		prog_fatal("dump %s: the path must be UTF-8", o->args[0]);
	free(abs);
	reply = request(o, req, false);
	print_reply(o, reply);
	json_decref(reply);
	return 0;
}

static int cmd_verify_daemon(const struct ctl_opts *o)
{
	json_t *req = new_request("verify");
	json_t *reply, *passed;
	const char *msg;
	char *epoch;

	if (o->spec && json_object_set_new(req, "spec", json_string(o->spec)))
		prog_fatal("--spec %s: must be UTF-8", o->spec);
	reply = request(o, req, false);
	passed = json_object_get(reply, "passed");
	if (!json_is_boolean(passed))
		prog_fatal("reply from %s has no \"passed\"", o->control);
	if (o->json) {
		print_json_line(reply);
	} else {
		msg = json_string_value(json_object_get(reply, "msg"));
		epoch = json_text(json_object_get(reply, "epoch") ?: json_null());
		printf("%s epoch %s: %s\n", json_is_true(passed) ? "PASS" : "FAIL", epoch,
		       msg ? msg : "");
		if (!json_is_true(passed))
			fprintf(stderr, "%s: FAIL epoch %s: %s\n", prog_name, epoch,
				msg ? msg : "");
		free(epoch);
	}
	json_decref(reply);
	return json_is_true(passed) ? 0 : 1;
}

/* Parsed while checking the arguments, so that bad JSON is a usage error
 * whether or not --control was given. */
static json_t *parse_raw(const char *text)
{
	json_error_t jerr;
	json_t *req = json_loads(text, 0, &jerr);

	if (!req)
		prog_usage_error("raw: invalid JSON: %s", jerr.text);
	if (!json_is_object(req))
		prog_usage_error("raw: the request must be a JSON object {...}");
	return req;
}

static int cmd_raw(const struct ctl_opts *o)
{
	json_t *reply = request(o, o->raw, true);

	print_json_line(reply);
	json_decref(reply);
	return 0;
}

/* ---- local verify ------------------------------------------------------- */

static int cmd_verify_file(const struct ctl_opts *o)
{
	const char *path = o->args[0];
	struct ftr_synth_spec spec, *expect = NULL;
	struct ftr_synth_verdict v;
	char err[256];
	int ret;

	if (o->spec) {
		if (ftr_synth_parse(o->spec, &spec, err, sizeof(err)))
			prog_usage_error("--spec %s: %s", o->spec, err);
		expect = &spec;
	}
	ret = ftr_synth_verify_file(path, expect, &v);
	if (ret == -EINVAL && v.msg[0])
		prog_fatal("verify %s: %s: %s", path, strerror(-ret), v.msg);
	if (ret < 0)
		prog_fatal("verify %s: %s", path, strerror(-ret));
	if (o->json) {
		json_t *out = json_pack("{s:b, s:I, s:I, s:o, s:s}", "ok", v.ok, "k",
					(json_int_t)v.k, "pages", (json_int_t)v.pages,
					"bad_page",
					v.ok ? json_null() : json_integer((json_int_t)v.bad_page),
					"msg", v.msg);

		if (!out)
			prog_fatal("out of memory");
		print_json_line(out);
		json_decref(out);
	} else if (v.ok) {
		printf("PASS: %s\n", v.msg);
	} else {
		printf("FAIL: %s\n", v.msg);
		fprintf(stderr, "%s: FAIL: %s\n", prog_name, v.msg);
	}
	return v.ok ? 0 : 1;
}

/* ---- command line ------------------------------------------------------- */

static void parse_options(int argc, char **argv, struct ctl_opts *o)
{
	enum { O_CONTROL = 256, O_TIMEOUT, O_JSON, O_SPEC, O_EXEC };
	static const struct option longopts[] = {
		{ "control", required_argument, NULL, O_CONTROL },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "json", no_argument, NULL, O_JSON },
		{ "spec", required_argument, NULL, O_SPEC },
		{ "exec", required_argument, NULL, O_EXEC },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "probe", no_argument, NULL, 'P' },
		{ 0 },
	};
	int opt;

	opterr = 0;
	/* getopt_long permutes: options may follow the command. */
	while ((opt = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
		switch (opt) {
		case O_CONTROL:
			o->control = optarg;
			break;
		case O_TIMEOUT:
			o->timeout_ms = (int)prog_u64_arg("--timeout", optarg, 1, INT_MAX);
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_SPEC:
			o->spec = optarg;
			break;
		case O_EXEC:
			o->exec = optarg;
			break;
		case 'h':
			usage();
			exit(0);
		case 'P':
			prog_probe();
		case 'V':
			printf("ftreplctl ftrepl %s\n", FTREPL_VERSION);
			exit(0);
		case ':':
			prog_usage_error("%s needs a value", argv[optind - 1]);
		default:
			/* glibc: optopt is 0 for an unknown long option (the
			 * word just consumed names it), the option's value for
			 * "--json=x", the character for an unknown "-x". */
			if (optopt >= 256)
				prog_usage_error("%s takes no value", argv[optind - 1]);
			if (optopt)
				prog_usage_error("unknown option -%c", optopt);
			prog_usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		prog_usage_error("no command given (" CMD_LIST ")");
	o->cmd = argv[optind];
	o->args = argv + optind + 1;
	o->nargs = argc - optind - 1;
}

/* Argument count of each command; maxargs > minargs only for verify. */
static void check_args(const struct ctl_opts *o, int minargs, int maxargs, const char *missing)
{
	if (o->nargs < minargs)
		prog_usage_error("%s", missing);
	if (o->nargs > maxargs)
		prog_usage_error("unexpected argument %s", o->args[maxargs]);
}

static int run(struct ctl_opts *o)
{
	bool verify = !strcmp(o->cmd, "verify");
	int (*fn)(const struct ctl_opts *) = NULL;

	if (!strcmp(o->cmd, "status") || !strcmp(o->cmd, "stats") ||
	    !strcmp(o->cmd, "promote") || !strcmp(o->cmd, "stop") ||
	    !strcmp(o->cmd, "switch")) {
		check_args(o, 0, 0, NULL);
		fn = cmd_simple;
	} else if (!strcmp(o->cmd, "dump")) {
		check_args(o, 1, 1, "dump needs a FILE");
		fn = cmd_dump;
	} else if (!strcmp(o->cmd, "raw")) {
		check_args(o, 1, 1, "raw needs a JSON object, e.g. '{\"cmd\":\"status\"}'");
		o->raw = parse_raw(o->args[0]);
		fn = cmd_raw;
	} else if (verify) {
		check_args(o, 0, 1, NULL);
		fn = o->nargs ? cmd_verify_file : cmd_verify_daemon;
	} else {
		prog_usage_error("unknown command \"%s\" (" CMD_LIST ")", o->cmd);
	}
	if (o->spec && !verify)
		prog_usage_error("--spec is for verify only");
	if (o->exec && strcmp(o->cmd, "promote"))
		prog_usage_error("--exec is for promote only");
	if (verify && o->nargs && o->control)
		prog_usage_error("verify FILE checks a local file: drop --control, or drop FILE "
				 "to verify the daemon's image");
	if (fn != cmd_verify_file && !o->control)
		prog_usage_error("%s needs --control PATH", o->cmd);
	return fn(o);
}

int main(int argc, char **argv)
{
	struct ctl_opts o = { 0 };
	int rc;

	prog_init("ftreplctl");
	parse_options(argc, argv, &o);
	rc = run(&o);
	/* A full disk or closed pipe on stdout is a failure, not a success. */
	if (fflush(stdout) || ferror(stdout))
		prog_fatal("writing output: %s", strerror(errno));
	return rc;
}
