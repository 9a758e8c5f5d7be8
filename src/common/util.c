/* SPDX-License-Identifier: MIT */
/* Small shared helpers: size and number parsing, I/O loops, clocks. */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "common/common.h"

const char *ftrepl_version(void)
{
	return FTREPL_VERSION_STRING;
}

int ftr_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* Accepted suffixes: K M G T, optionally followed by "iB", any case. */
static int size_shift(const char *suf, unsigned *shift)
{
	static const char units[] = "kmgt";
	const char *u;

	if (!*suf) {
		*shift = 0;
		return 0;
	}
	u = strchr(units, tolower((unsigned char)suf[0]));
	if (!u || !suf[0])
		return -EINVAL;
	if (suf[1] && strcasecmp(suf + 1, "iB"))
		return -EINVAL;
	*shift = 10 * (unsigned)(u - units + 1);
	return 0;
}

int ftr_parse_size(const char *s, uint64_t *out)
{
	char num[32];
	size_t n = 0;
	unsigned shift;
	uint64_t v;
	int ret;

	if (!s)
		return -EINVAL;
	while (isdigit((unsigned char)s[n]))
		n++;
	if (n == 0 || n >= sizeof(num))
		return n == 0 ? -EINVAL : -ERANGE;
	memcpy(num, s, n);
	num[n] = '\0';
	ret = size_shift(s + n, &shift);
	if (ret)
		return ret;
	ret = ftr_parse_u64(num, 0, UINT64_MAX, &v);
	if (ret)
		return ret;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

char *ftr_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024.0 && u + 1 < FTR_ARRAY_SIZE(units)) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, len, "%.2f %s", v, units[u]);
	return buf;
}

int ftr_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hl;
	uint64_t p;

	if (!s || !*s)
		return -EINVAL;
	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || strchr(s, ':') != colon)
			return -EINVAL; /* none, or an unbracketed IPv6 address */
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen)
		return -EINVAL;
	if (ftr_parse_u64(colon + 1, 0, 65535, &p))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

size_t ftr_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size) {
		size_t n = len >= size ? size - 1 : len;

		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

int ftr_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ftr_read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool ftr_page_is_fill(const void *page, size_t len, uint8_t *fill)
{
	const uint64_t *w = page;
	uint64_t pat;
	size_t i;

	if (len == 0 || len % 8)
		return false;
	pat = 0x0101010101010101ull * ((const uint8_t *)page)[0];
	/* Eight words per step: cheap early exit, vectorizes well. */
	for (i = 0; i + 8 <= len / 8; i += 8) {
		uint64_t acc = (w[i] ^ pat) | (w[i + 1] ^ pat) | (w[i + 2] ^ pat) |
			       (w[i + 3] ^ pat) | (w[i + 4] ^ pat) | (w[i + 5] ^ pat) |
			       (w[i + 6] ^ pat) | (w[i + 7] ^ pat);
		if (acc)
			return false;
	}
	for (; i < len / 8; i++)
		if (w[i] != pat)
			return false;
	if (fill)
		*fill = (uint8_t)pat;
	return true;
}

struct timespec ftr_deadline_ms(int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ms < 0)	/* already past: a deadline of now, never a bad timespec */
		ms = 0;
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

void ftr_thread_background(void)
{
	/* Linux: PRIO_PROCESS with a thread id sets that thread's nice. */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) < 0)
		pr_debug("lowering a background thread's priority: %s", strerror(errno));
}

void ftr_thread_name(const char *fmt, ...)
{
	char name[16];	/* the kernel's limit, NUL included */
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	pthread_setname_np(pthread_self(), name);
}

int ftr_cond_init_monotonic(pthread_cond_t *cv)
{
	pthread_condattr_t attr;
	int ret;

	ret = pthread_condattr_init(&attr);
	if (ret)
		return -ret;
	ret = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (!ret)
		ret = pthread_cond_init(cv, &attr);
	pthread_condattr_destroy(&attr);
	return -ret;
}
