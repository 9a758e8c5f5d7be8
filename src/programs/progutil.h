/* SPDX-License-Identifier: MIT */
/* Shared by the program mains: usage errors, option parsing, signals. */
#ifndef FTR_PROGUTIL_H
#define FTR_PROGUTIL_H

#include <signal.h>
#include <stdint.h>

/* Program name for messages (set by prog_init). */
extern const char *prog_name;

void prog_init(const char *name);
/* Prints "NAME: message (try --help)" and exits 2. */
void prog_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Prints "NAME: message" and exits 1. */
void prog_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* --probe: prints what this kernel offers ftrepl (userfaultfd features and
 * modes, PAGEMAP_SCAN, io_uring) and exits 0. */
void prog_probe(void) __attribute__((noreturn));

/* Option value parsers: exit 2 naming the option on bad input. */
uint64_t prog_size_arg(const char *opt, const char *val);
uint64_t prog_u64_arg(const char *opt, const char *val, uint64_t min, uint64_t max);
void prog_log_level_arg(const char *val);

/* Blocks SIGINT, SIGTERM, SIGHUP and ignores SIGPIPE in every thread that
 * is created afterwards; prog_wait_signal() then collects them. */
void prog_block_signals(void);
/* Waits up to ms for one of them. Returns the signal number or 0. */
int prog_wait_signal(int ms);

#endif
