/* SPDX-License-Identifier: MIT */
/*
 * Small internal helpers shared by every part of libftrepl: logging,
 * clocks, bitmaps, container_of. Nothing here holds session state.
 */
#ifndef FTR_COMMON_H
#define FTR_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <ftrepl/ftrepl.h>

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#define FTR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define FTR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FTR_MAX(a, b) ((a) > (b) ? (a) : (b))
#define FTR_DIV_ROUND_UP(n, d) (((n) + (d)-1) / (d))
#define FTR_UNUSED __attribute__((unused))
#define FTR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---- logging -----------------------------------------------------------
 * One line per event to stderr: "ident: LEVEL [prefix] message". Each .c
 * file may #define FTR_LOG_PREFIX "tcp" before including this header.
 * The macros are single statements and preserve errno. Their arguments
 * are evaluated only when the level is enabled: no side effects in them.
 * Datapath code (per page) must not log.
 */
#ifndef FTR_LOG_PREFIX
#define FTR_LOG_PREFIX NULL
#endif

void ftr_log_emit(enum ftr_log_level lvl, const char *prefix, const char *fmt, ...)
	FTR_PRINTF(3, 4);
bool ftr_log_enabled(enum ftr_log_level lvl);

#define ftr_log(lvl, ...)                                        \
	do {                                                     \
		if (ftr_log_enabled(lvl))                        \
			ftr_log_emit(lvl, FTR_LOG_PREFIX, __VA_ARGS__); \
	} while (0)
#define pr_err(...) ftr_log(FTR_LOG_ERROR, __VA_ARGS__)
#define pr_warn(...) ftr_log(FTR_LOG_WARN, __VA_ARGS__)
#define pr_info(...) ftr_log(FTR_LOG_INFO, __VA_ARGS__)
#define pr_debug(...) ftr_log(FTR_LOG_DEBUG, __VA_ARGS__)

/* ---- time -------------------------------------------------------------- */
static inline uint64_t ftr_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ftr_now_ms(void)
{
	return ftr_now_ns() / 1000000ull;
}

/* Absolute CLOCK_MONOTONIC deadline ms from now, for pthread_cond_timedwait
 * on a condvar initialised with ftr_cond_init_monotonic(). */
struct timespec ftr_deadline_ms(int ms);

#include <pthread.h>
/* Initializes a condition variable that waits on CLOCK_MONOTONIC. */
int ftr_cond_init_monotonic(pthread_cond_t *cv);

/* Lowers the calling thread's CPU priority (nice +10) for good: for work
 * that must give way to latency-critical threads of the process (background
 * fill while faults are served). Best effort. */
void ftr_thread_background(void);

/* Names the calling thread (printf format, cut to the kernel's 15
 * characters) for ps -L, top -H and perf: every ftrepl thread is named
 * "ftr-<part>-<role>". */
void ftr_thread_name(const char *fmt, ...) FTR_PRINTF(1, 2);

/* ---- bitmaps (one bit per page, LSB first, 64-bit words) ---------------- */
static inline bool ftr_bit_test(const uint64_t *map, uint64_t bit)
{
	return (map[bit >> 6] >> (bit & 63)) & 1;
}

static inline void ftr_bit_set(uint64_t *map, uint64_t bit)
{
	map[bit >> 6] |= 1ull << (bit & 63);
}

static inline void ftr_bit_clear(uint64_t *map, uint64_t bit)
{
	map[bit >> 6] &= ~(1ull << (bit & 63));
}

static inline size_t ftr_bitmap_words(uint64_t nbits)
{
	return (size_t)((nbits + 63) / 64);
}

/* ---- misc --------------------------------------------------------------- */

/* Copies src into dst (always NUL-terminated, truncating). */
size_t ftr_strlcpy(char *dst, const char *src, size_t size);

/* Writes/reads exactly len bytes, retrying on EINTR and short counts.
 * Return 0 or -errno (-EPIPE/-ENODATA on early EOF for read). */
int ftr_write_all(int fd, const void *buf, size_t len);
int ftr_read_all(int fd, void *buf, size_t len);

/* True when the page is a single repeated byte; *fill gets that byte. */
bool ftr_page_is_fill(const void *page, size_t len, uint8_t *fill);

/* Makes ftr_crc32c() use one implementation: "table", "sse4.2",
 * "vpclmulqdq" or "auto" (the best this CPU has, the default; crc32c.c).
 * For tests and benchmarks, before any other thread computes a CRC. 0, or
 * -EOPNOTSUPP when this CPU lacks it. */
int ftr_crc32c_use(const char *name);

#endif
