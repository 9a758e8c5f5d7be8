/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ftrepl/ftrepl.h>

#include "programs/progutil.h"
#include "uffd/probe.h"

const char *prog_name = "ftrepl";
static sigset_t prog_sigs;

void prog_init(const char *name)
{
	prog_name = name;
	ftr_log_set_ident(name);
	if (!getenv("FTREPL_LOG_LEVEL"))
		ftr_log_set_level(FTR_LOG_INFO);
}

void prog_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try --help)\n");
	exit(2);
}

void prog_fatal(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

uint64_t prog_size_arg(const char *opt, const char *val)
{
	uint64_t v;
	int ret = ftr_parse_size(val, &v);

	if (ret == -ERANGE)
		prog_usage_error("%s %s: size too large", opt, val);
	if (ret)
		prog_usage_error("%s %s: not a size (use a number with an optional K, M, G or T suffix)",
				 opt, val);
	return v;
}

uint64_t prog_u64_arg(const char *opt, const char *val, uint64_t min, uint64_t max)
{
	uint64_t v;
	int ret = ftr_parse_u64(val, min, max, &v);

	if (ret == -ERANGE)
		prog_usage_error("%s %s: out of range (%llu..%llu)", opt, val,
				 (unsigned long long)min, (unsigned long long)max);
	if (ret)
		prog_usage_error("%s %s: not a non-negative integer", opt, val);
	return v;
}

void prog_log_level_arg(const char *val)
{
	enum ftr_log_level lvl;

	if (ftr_log_parse_level(val, &lvl))
		prog_usage_error("--log-level %s: use error, warn, info or debug", val);
	ftr_log_set_level(lvl);
}

void prog_block_signals(void)
{
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&prog_sigs);
	sigaddset(&prog_sigs, SIGINT);
	sigaddset(&prog_sigs, SIGTERM);
	sigaddset(&prog_sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &prog_sigs, NULL);
}

int prog_wait_signal(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	int sig = sigtimedwait(&prog_sigs, NULL, &ts);

	return sig > 0 ? sig : 0;
}

void prog_probe(void)
{
	ftr_kprobe_print(stdout);
	exit(0);
}
