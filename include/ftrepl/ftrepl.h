/* SPDX-License-Identifier: MIT */
/*
 * ftrepl: continuous memory replication and live migration.
 *
 * Umbrella header: version, logging control, size parsing and the public
 * conventions every other header follows:
 *   - functions returning int return 0 on success or a negative errno;
 *   - functions returning ssize_t return a count or a negative errno;
 *   - constructors return the new object through an out-parameter and the
 *     caller owns it (free it with the matching _destroy/_close call);
 *   - handles are opaque; nothing here keeps per-session state in globals.
 */
#ifndef FTREPL_FTREPL_H
#define FTREPL_FTREPL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FTREPL_VERSION_MAJOR 0
#define FTREPL_VERSION_MINOR 1
#define FTREPL_VERSION_PATCH 0
#define FTREPL_VERSION_STRING "0.1.0"

/* Returns the library's version string (may differ from the header's). */
const char *ftrepl_version(void);

/* ---- logging ---------------------------------------------------------
 * The library is silent by default (level FTR_LOG_WARN goes to stderr only
 * when a program raises it). Programs set the level from --log-level; the
 * environment variable FTREPL_LOG_LEVEL overrides the default at first use.
 * Logging never changes errno.
 */
enum ftr_log_level {
	FTR_LOG_ERROR = 0,
	FTR_LOG_WARN = 1,
	FTR_LOG_INFO = 2,
	FTR_LOG_DEBUG = 3,
};

/* Sets the process-wide log threshold (logging is process state, not
 * session state). */
void ftr_log_set_level(enum ftr_log_level lvl);
enum ftr_log_level ftr_log_get_level(void);

/* Parses "error", "warn", "info" or "debug". Returns 0 or -EINVAL. */
int ftr_log_parse_level(const char *s, enum ftr_log_level *out);

/* Prefix every log line with this program name (pointer kept, not copied). */
void ftr_log_set_ident(const char *ident);

/* ---- sizes ------------------------------------------------------------
 * Parses a size with an optional binary suffix: K, M, G, T (also KiB, MiB,
 * GiB, TiB and lower case); "8G" = 8 GiB. No suffix = bytes. Rejects empty
 * strings, signs, trailing garbage and overflow.
 * Returns 0 with *out set, or -EINVAL (malformed) / -ERANGE (overflow).
 */
int ftr_parse_size(const char *s, uint64_t *out);

/* Formats a byte count as "1.50 GiB" into buf. Returns buf. */
char *ftr_format_size(uint64_t bytes, char *buf, size_t len);

/* Parses a decimal unsigned integer in [min, max]. 0, -EINVAL or -ERANGE. */
int ftr_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Splits "ADDR:PORT" (IPv4, hostname, or "[IPv6]:PORT"). host gets the
 * address without brackets. Returns 0 or -EINVAL. */
int ftr_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/* ---- CRC32C (Castagnoli) ----------------------------------------------
 * crc = ftr_crc32c(0, buf, len) for a fresh checksum; pass the previous
 * value to continue. Uses SSE4.2 when the CPU has it.
 */
uint32_t ftr_crc32c(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
