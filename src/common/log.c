/* SPDX-License-Identifier: MIT */
/*
 * Logging: one line per event on stderr, "ident: LEVEL [prefix] message".
 * The threshold is process state (it belongs to the program, not to a
 * session). FTREPL_LOG_LEVEL in the environment sets the initial level.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/common.h"

static atomic_int log_level = -1; /* -1: not yet read from the environment */
static const char *log_ident;

static const char *const level_names[] = {
	[FTR_LOG_ERROR] = "error",
	[FTR_LOG_WARN] = "warn",
	[FTR_LOG_INFO] = "info",
	[FTR_LOG_DEBUG] = "debug",
};

int ftr_log_parse_level(const char *s, enum ftr_log_level *out)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < FTR_ARRAY_SIZE(level_names); i++) {
		if (!strcasecmp(s, level_names[i])) {
			*out = (enum ftr_log_level)i;
			return 0;
		}
	}
	if (!strcasecmp(s, "warning")) {
		*out = FTR_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

static int level_from_env(void)
{
	enum ftr_log_level lvl = FTR_LOG_WARN;
	const char *env = getenv("FTREPL_LOG_LEVEL");

	if (env)
		ftr_log_parse_level(env, &lvl);
	return (int)lvl;
}

enum ftr_log_level ftr_log_get_level(void)
{
	int lvl = atomic_load_explicit(&log_level, memory_order_relaxed);

	if (lvl < 0) {
		lvl = level_from_env();
		atomic_store(&log_level, lvl);
	}
	return (enum ftr_log_level)lvl;
}

void ftr_log_set_level(enum ftr_log_level lvl)
{
	atomic_store(&log_level, (int)lvl);
}

void ftr_log_set_ident(const char *ident)
{
	log_ident = ident;
}

bool ftr_log_enabled(enum ftr_log_level lvl)
{
	return (int)lvl <= (int)ftr_log_get_level();
}

void ftr_log_emit(enum ftr_log_level lvl, const char *prefix, const char *fmt, ...)
{
	int saved = errno;
	char line[1024];
	struct timeval tv;
	struct tm tm;
	size_t n;
	va_list ap;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	n = (size_t)snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s: %s ",
			     tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000),
			     log_ident ? log_ident : "ftrepl",
			     lvl <= FTR_LOG_DEBUG ? level_names[lvl] : "?");
	if (prefix && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, "[%s] ", prefix);
	if (n < sizeof(line)) {
		va_start(ap, fmt);
		n += (size_t)vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write so lines from several threads do not interleave. */
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
	errno = saved;
}
