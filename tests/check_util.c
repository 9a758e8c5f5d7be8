/* SPDX-License-Identifier: MIT */
/*
 * The small helpers of src/common/util.c (and the CRC32C they sit next
 * to): size and number parsing exactly as ftrepl.h documents it, size
 * formatting, ADDR:PORT splitting, CRC32C against the published check
 * value and a bitwise reference, fill-page detection, the I/O loops, and
 * thread naming (formatted, cut to the kernel's 15 characters).
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ftrepl/ftrepl.h>

#include "common/common.h"
#include "testutil.h"

#define PAGE 4096u

/* ---- ftr_parse_size ------------------------------------------------------ */

static const struct {
	const char *s;
	uint64_t v;
} size_ok[] = {
	{ "0", 0 },
	{ "1", 1 },
	{ "4096", 4096 },
	{ "0001", 1 },
	{ "1K", 1ull << 10 },
	{ "1k", 1ull << 10 },
	{ "1KiB", 1ull << 10 },
	{ "1kib", 1ull << 10 },
	{ "1KIB", 1ull << 10 },
	{ "3M", 3ull << 20 },
	{ "3m", 3ull << 20 },
	{ "3MiB", 3ull << 20 },
	{ "8G", 8ull << 30 },
	{ "8g", 8ull << 30 },
	{ "8GiB", 8ull << 30 },
	{ "2T", 2ull << 40 },
	{ "2t", 2ull << 40 },
	{ "2TiB", 2ull << 40 },
	{ "0K", 0 },
	{ "16777215T", 16777215ull << 40 },		 /* the largest whole T */
	{ "18446744073709551615", UINT64_MAX },		 /* the largest plain */
	{ "17179869183G", 17179869183ull << 30 },	 /* (2^64 - 1) >> 30 */
};

static const struct {
	const char *s;
	int err;
} size_bad[] = {
	{ "", -EINVAL },
	{ "K", -EINVAL },
	{ "12Q", -EINVAL },
	{ "-1", -EINVAL },
	{ "+1", -EINVAL },
	{ " 1", -EINVAL },
	{ "1 ", -EINVAL },
	{ "1 K", -EINVAL },
	{ "1K ", -EINVAL },
	{ "1.5G", -EINVAL },
	{ "1e3", -EINVAL },
	{ "0x10", -EINVAL },
	{ "1KB", -EINVAL },	/* only "iB" may follow the letter */
	{ "1B", -EINVAL },
	{ "1Ki", -EINVAL },
	{ "1KiBB", -EINVAL },
	{ "1KK", -EINVAL },
	{ "1P", -EINVAL },	/* no P or E suffix */
	{ "99999999999T", -ERANGE },
	{ "16777216T", -ERANGE },
	{ "17179869184G", -ERANGE },
	{ "18446744073709551616", -ERANGE },
	{ "99999999999999999999999", -ERANGE },
};

START_TEST(test_size_ok)
{
	uint64_t v = 12345;
	int ret = ftr_parse_size(size_ok[_i].s, &v);

	ck_assert_msg(ret == 0, "\"%s\": %d", size_ok[_i].s, ret);
	ck_assert_msg(v == size_ok[_i].v, "\"%s\" = %" PRIu64 ", expected %" PRIu64,
		      size_ok[_i].s, v, size_ok[_i].v);
}
END_TEST

START_TEST(test_size_bad)
{
	uint64_t v = 12345;
	int ret = ftr_parse_size(size_bad[_i].s, &v);

	ck_assert_msg(ret == size_bad[_i].err, "\"%s\": got %d, expected %d", size_bad[_i].s,
		      ret, size_bad[_i].err);
	ck_assert_msg(v == 12345, "\"%s\": *out written on error", size_bad[_i].s);
}
END_TEST

START_TEST(test_size_null)
{
	uint64_t v;

	ck_assert_int_eq(ftr_parse_size(NULL, &v), -EINVAL);
}
END_TEST

/* ---- ftr_format_size ------------------------------------------------------ */

START_TEST(test_format_size)
{
	char buf[32];

	ck_assert_str_eq(ftr_format_size(0, buf, sizeof(buf)), "0 B");
	ck_assert_str_eq(ftr_format_size(1023, buf, sizeof(buf)), "1023 B");
	ck_assert_str_eq(ftr_format_size(1024, buf, sizeof(buf)), "1.00 KiB");
	ck_assert_str_eq(ftr_format_size(1536, buf, sizeof(buf)), "1.50 KiB");
	ck_assert_str_eq(ftr_format_size(3ull << 29, buf, sizeof(buf)), "1.50 GiB");
	ck_assert_str_eq(ftr_format_size(5ull << 40, buf, sizeof(buf)), "5.00 TiB");
	ck_assert_str_eq(ftr_format_size(1ull << 50, buf, sizeof(buf)), "1.00 PiB");
	ck_assert_str_eq(ftr_format_size(UINT64_MAX, buf, sizeof(buf)), "16.00 EiB");
	ck_assert_ptr_eq(ftr_format_size(1, buf, sizeof(buf)), buf);
}
END_TEST

/* Whole K/M/G/T amounts: the formatted text, with ".00 " dropped, parses
 * back to the same number. */
START_TEST(test_format_size_roundtrip)
{
	static const uint64_t vals[] = { 1ull << 10, 7ull << 10, 1ull << 20, 640ull << 20,
					 1ull << 30, 8ull << 30, 1ull << 40, 3ull << 40 };

	for (size_t i = 0; i < FTR_ARRAY_SIZE(vals); i++) {
		char buf[32], num[32], unit[8];
		uint64_t back = 0;

		ftr_format_size(vals[i], buf, sizeof(buf));
		ck_assert_msg(sscanf(buf, "%31[0-9].00 %7s", num, unit) == 2, "\"%s\"", buf);
		strcat(num, unit);
		ck_assert_msg(ftr_parse_size(num, &back) == 0, "\"%s\" does not parse", num);
		ck_assert_msg(back == vals[i], "%" PRIu64 " -> \"%s\" -> %" PRIu64, vals[i], buf,
			      back);
	}
}
END_TEST

START_TEST(test_format_size_truncates)
{
	char buf[6];

	memset(buf, 'z', sizeof(buf));
	ftr_format_size(3ull << 29, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1.50 ");
}
END_TEST

/* ---- ftr_parse_u64 ----------------------------------------------------------- */

START_TEST(test_u64)
{
	uint64_t v = 99;

	ck_assert_int_eq(ftr_parse_u64("0", 0, 10, &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(ftr_parse_u64("10", 0, 10, &v), 0);
	ck_assert_uint_eq(v, 10);
	ck_assert_int_eq(ftr_parse_u64("007", 0, 10, &v), 0);
	ck_assert_uint_eq(v, 7);
	ck_assert_int_eq(ftr_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
	ck_assert(v == UINT64_MAX);

	v = 99;
	ck_assert_int_eq(ftr_parse_u64("11", 0, 10, &v), -ERANGE);
	ck_assert_int_eq(ftr_parse_u64("4", 5, 10, &v), -ERANGE);
	ck_assert_int_eq(ftr_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
	ck_assert_int_eq(ftr_parse_u64("99999999999999999999", 0, UINT64_MAX, &v), -ERANGE);
	ck_assert_int_eq(ftr_parse_u64("", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(ftr_parse_u64(NULL, 0, 10, &v), -EINVAL);
	ck_assert_int_eq(ftr_parse_u64("-1", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(ftr_parse_u64("+1", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(ftr_parse_u64(" 1", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(ftr_parse_u64("1 ", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(ftr_parse_u64("1K", 0, 10000, &v), -EINVAL);
	ck_assert_int_eq(ftr_parse_u64("0x1", 0, 10, &v), -EINVAL);
	ck_assert_uint_eq(v, 99); /* untouched on every error */
}
END_TEST

/* ---- ftr_parse_hostport --------------------------------------------------- */

static const struct {
	const char *s, *host;
	uint16_t port;
} hp_ok[] = {
	{ "127.0.0.1:7000", "127.0.0.1", 7000 },
	{ "0.0.0.0:1", "0.0.0.0", 1 },
	{ "localhost:65535", "localhost", 65535 },
	{ "standby.example.com:80", "standby.example.com", 80 },
	{ "[::1]:7600", "::1", 7600 },
	{ "[fe80::1%eth0]:22", "fe80::1%eth0", 22 },
	{ "[2001:db8::2]:443", "2001:db8::2", 443 },
	{ "host:0080", "host", 80 },
	/* Port 0 is accepted: "--listen 127.0.0.1:0" asks for any free port
	 * (the integration tests rely on it). */
	{ "127.0.0.1:0", "127.0.0.1", 0 },
};

static const char *const hp_bad[] = {
	"",
	"127.0.0.1",		/* no port */
	"127.0.0.1:",
	":7000",		/* no host */
	"[]:7000",
	"host:65536",
	"host:99999999999999999999",
	"host:-1",
	"host:+80",
	"host: 80",
	"host:80 ",
	"host:http",
	"::1:7000",		/* IPv6 without brackets */
	"a:b:7000",
	"[::1]",		/* brackets, no port */
	"[::1]:",
	"[::1]7000",
	"[::1:7000",		/* no closing bracket */
	"[::1]:70:00",
};

START_TEST(test_hostport_ok)
{
	char host[64];
	uint16_t port = 1;
	int ret = ftr_parse_hostport(hp_ok[_i].s, host, sizeof(host), &port);

	ck_assert_msg(ret == 0, "\"%s\": %d", hp_ok[_i].s, ret);
	ck_assert_str_eq(host, hp_ok[_i].host);
	ck_assert_uint_eq(port, hp_ok[_i].port);
}
END_TEST

START_TEST(test_hostport_bad)
{
	char host[64] = "untouched";
	uint16_t port = 4242;
	int ret = ftr_parse_hostport(hp_bad[_i], host, sizeof(host), &port);

	ck_assert_msg(ret == -EINVAL, "\"%s\": got %d (host \"%s\" port %u)", hp_bad[_i], ret,
		      host, port);
	ck_assert_str_eq(host, "untouched");
	ck_assert_uint_eq(port, 4242);
}
END_TEST

START_TEST(test_hostport_buffer)
{
	char host[10];
	uint16_t port;

	ck_assert_int_eq(ftr_parse_hostport(NULL, host, sizeof(host), &port), -EINVAL);
	/* "123456789" needs exactly 10 bytes with its NUL. */
	ck_assert_int_eq(ftr_parse_hostport("123456789:1", host, sizeof(host), &port), 0);
	ck_assert_str_eq(host, "123456789");
	ck_assert_int_eq(ftr_parse_hostport("1234567890:1", host, sizeof(host), &port), -EINVAL);
	ck_assert_int_eq(ftr_parse_hostport("[1234567890]:1", host, sizeof(host), &port),
			 -EINVAL);
}
END_TEST

/* ---- CRC32C ---------------------------------------------------------------- */

/* Bit at a time, straight from the definition (reflected 0x82F63B78,
 * initial and final inversion). */
static uint32_t crc32c_ref(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* The loop tests below run once per implementation (_i); one this CPU
 * lacks is skipped with a note, "auto" is the one ftr_crc32c() picks. */
static const char *const crc_impls[] = { "auto", "table", "sse4.2", "vpclmulqdq" };

static bool crc_impl_use(int i)
{
	int ret = ftr_crc32c_use(crc_impls[i]);

	if (ret == -EOPNOTSUPP) {
		fprintf(stderr, "crc32c %s: not on this CPU, skipped\n", crc_impls[i]);
		return false;
	}
	ck_assert_int_eq(ret, 0);
	return true;
}

START_TEST(test_crc_known)
{
	const char *s = "123456789";

	if (!crc_impl_use(_i))
		return;

	ck_assert_uint_eq(ftr_crc32c(0, s, 9), 0xE3069283u);
	ck_assert_uint_eq(crc32c_ref(0, (const uint8_t *)s, 9), 0xE3069283u);
	/* Chaining: the halves give the CRC of the whole. */
	ck_assert_uint_eq(ftr_crc32c(ftr_crc32c(0, s, 4), s + 4, 5), 0xE3069283u);
	for (size_t cut = 0; cut <= 9; cut++)
		ck_assert_uint_eq(ftr_crc32c(ftr_crc32c(0, s, cut), s + cut, 9 - cut),
				  0xE3069283u);
	ck_assert_uint_eq(ftr_crc32c(0, s, 0), 0);
	ck_assert_uint_eq(ftr_crc32c(0x12345678u, s, 0), 0x12345678u);
}
END_TEST

/* RFC 3720 (iSCSI) B.4 test vectors. */
START_TEST(test_crc_rfc3720)
{
	uint8_t buf[32];

	if (!crc_impl_use(_i))
		return;

	memset(buf, 0, sizeof(buf));
	ck_assert_uint_eq(ftr_crc32c(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	ck_assert_uint_eq(ftr_crc32c(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	ck_assert_uint_eq(ftr_crc32c(0, buf, 32), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	ck_assert_uint_eq(ftr_crc32c(0, buf, 32), 0x113FDB5Cu);
}
END_TEST

/* Every length and start alignment around the 8-byte steps, plus a few
 * pages, against the reference; and split anywhere, chained. */
START_TEST(test_crc_reference)
{
	size_t size = 3 * PAGE + 64;
	uint8_t *buf = malloc(size);
	uint64_t x = 0x9E3779B97F4A7C15ull;

	if (!crc_impl_use(_i)) {
		free(buf);
		return;
	}

	ck_assert_ptr_nonnull(buf);
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	for (size_t off = 0; off < 8; off++) {
		for (size_t len = 0; len < 200; len++)
			ck_assert_uint_eq(ftr_crc32c(0, buf + off, len),
					  crc32c_ref(0, buf + off, len));
		ck_assert_uint_eq(ftr_crc32c(0, buf + off, 3 * PAGE + 7),
				  crc32c_ref(0, buf + off, 3 * PAGE + 7));
	}
	/* around the three-way steps of the SSE4.2 path (3 x 1360 bytes) */
	for (size_t off = 0; off < 8; off += 3) {
		for (size_t len = 4070; len < 4100; len++)
			ck_assert_uint_eq(ftr_crc32c(0, buf + off, len),
					  crc32c_ref(0, buf + off, len));
		for (size_t len = 8150; len < 8170; len++)
			ck_assert_uint_eq(ftr_crc32c(0x5EED, buf + off, len),
					  crc32c_ref(0x5EED, buf + off, len));
	}
	/* around the 256-byte steps of the folding path and its 16-byte
	 * blocks after them, every start alignment, a seed */
	for (size_t off = 0; off < 64; off += 7)
		for (size_t len = 250; len < 1100; len++)
			ck_assert_msg(ftr_crc32c(0xA5A5A5A5u, buf + off, len) ==
					      crc32c_ref(0xA5A5A5A5u, buf + off, len),
				      "%s: offset %zu, %zu bytes", crc_impls[_i], off, len);
	for (size_t cut = 0; cut <= PAGE; cut += 61) {
		uint32_t c = ftr_crc32c(0, buf, cut);

		ck_assert_uint_eq(ftr_crc32c(c, buf + cut, PAGE - cut), crc32c_ref(0, buf, PAGE));
	}
	free(buf);
}
END_TEST

START_TEST(test_crc_use_unknown)
{
	ck_assert_int_eq(ftr_crc32c_use("crc64"), -EOPNOTSUPP);
	ck_assert_int_eq(ftr_crc32c_use(""), -EOPNOTSUPP);
	ck_assert_int_eq(ftr_crc32c_use("auto"), 0);
	ck_assert_uint_eq(ftr_crc32c(0, "123456789", 9), 0xE3069283u);
}
END_TEST

/* ---- ftr_page_is_fill -------------------------------------------------- */

START_TEST(test_fill)
{
	static const uint8_t fills[] = { 0x00, 0x01, 0xAB, 0xFF };
	/* One odd byte anywhere: the first, in the 8-word loop, in the
	 * last word, the very last byte. */
	static const size_t pos[] = { 0, 1, 7, 8, 63, 64, 2048, PAGE - 65, PAGE - 8, PAGE - 1 };
	uint64_t words[PAGE / 8];
	uint8_t *page = (uint8_t *)words;
	uint8_t f;

	for (size_t i = 0; i < sizeof(fills); i++) {
		memset(page, fills[i], PAGE);
		f = 0x5A;
		ck_assert(ftr_page_is_fill(page, PAGE, &f));
		ck_assert_uint_eq(f, fills[i]);
		ck_assert(ftr_page_is_fill(page, PAGE, NULL));
	}
	for (size_t i = 0; i < FTR_ARRAY_SIZE(pos); i++) {
		memset(page, 0, PAGE);
		page[pos[i]] = 1;
		f = 0x5A;
		ck_assert_msg(!ftr_page_is_fill(page, PAGE, &f), "odd byte at %zu missed", pos[i]);
		ck_assert_uint_eq(f, 0x5A); /* untouched when not a fill page */
	}
}
END_TEST

/* Lengths that are not a multiple of 64 bytes use the word tail loop. */
START_TEST(test_fill_short)
{
	uint64_t words[8];
	uint8_t *p = (uint8_t *)words;
	uint8_t f = 0;

	memset(p, 0x77, sizeof(words));
	ck_assert(ftr_page_is_fill(p, 24, &f));
	ck_assert_uint_eq(f, 0x77);
	ck_assert(ftr_page_is_fill(p, 8, &f));
	p[23] = 0x78;
	ck_assert(!ftr_page_is_fill(p, 24, &f));
	ck_assert(ftr_page_is_fill(p, 16, &f));
	ck_assert(!ftr_page_is_fill(p, 0, &f));
}
END_TEST

/* ---- smaller helpers ---------------------------------------------------- */

START_TEST(test_strlcpy)
{
	char buf[5];

	ck_assert_uint_eq(ftr_strlcpy(buf, "abc", sizeof(buf)), 3);
	ck_assert_str_eq(buf, "abc");
	ck_assert_uint_eq(ftr_strlcpy(buf, "abcdefgh", sizeof(buf)), 8);
	ck_assert_str_eq(buf, "abcd");
	buf[0] = 'q';
	ck_assert_uint_eq(ftr_strlcpy(buf, "xyz", 0), 3);
	ck_assert_int_eq(buf[0], 'q');
}
END_TEST

START_TEST(test_read_write_all)
{
	char out[100], in[100];
	int fds[2];

	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (char)i;
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(ftr_write_all(fds[1], out, sizeof(out)), 0);
	ck_assert_int_eq(ftr_read_all(fds[0], in, 60), 0);
	ck_assert_int_eq(ftr_read_all(fds[0], in + 60, 40), 0);
	ck_assert_mem_eq(in, out, sizeof(out));
	/* Early EOF, and a write with nobody reading. */
	ck_assert_int_eq(ftr_write_all(fds[1], out, 10), 0);
	close(fds[1]);
	ck_assert_int_eq(ftr_read_all(fds[0], in, 11), -ENODATA);
	close(fds[0]);
	ck_assert_int_eq(pipe(fds), 0);
	close(fds[0]);
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(ftr_write_all(fds[1], out, 10), -EPIPE);
	close(fds[1]);
	ck_assert_int_eq(ftr_read_all(-1, in, 1), -EBADF);
}
END_TEST

START_TEST(test_deadline)
{
	struct timespec now, d;
	int64_t diff_ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	d = ftr_deadline_ms(1500);
	ck_assert_int_ge(d.tv_nsec, 0);
	ck_assert_int_lt(d.tv_nsec, 1000000000L);
	diff_ms = (int64_t)(d.tv_sec - now.tv_sec) * 1000 + (d.tv_nsec - now.tv_nsec) / 1000000;
	ck_assert_int_ge(diff_ms, 1499);
	ck_assert_int_le(diff_ms, 1600);
	ck_assert_str_eq(ftrepl_version(), FTREPL_VERSION_STRING);
}
END_TEST

static void *named_main(void *arg)
{
	char *out = arg;

	ftr_thread_name("ftr-test-%d", 1234567890);
	if (pthread_getname_np(pthread_self(), out, 16))
		out[0] = 0;
	return NULL;
}

START_TEST(test_thread_name)
{
	char name[16] = "unset", comm[64] = "";
	pthread_t th;
	FILE *f;

	ck_assert_int_eq(pthread_create(&th, NULL, named_main, name), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_str_eq(name, "ftr-test-123456");	/* 15 characters */
	/* and the calling thread's own name is untouched */
	f = fopen("/proc/thread-self/comm", "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(comm, sizeof(comm), f));
	fclose(f);
	ck_assert_ptr_null(strstr(comm, "ftr-test"));
}
END_TEST

static Suite *util_suite(void)
{
	Suite *su = suite_create("util");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, test_size_ok, 0, FTR_ARRAY_SIZE(size_ok));
	tcase_add_loop_test(tc, test_size_bad, 0, FTR_ARRAY_SIZE(size_bad));
	tcase_add_test(tc, test_size_null);
	tcase_add_test(tc, test_format_size);
	tcase_add_test(tc, test_format_size_roundtrip);
	tcase_add_test(tc, test_format_size_truncates);
	tcase_add_test(tc, test_u64);
	tcase_add_loop_test(tc, test_hostport_ok, 0, FTR_ARRAY_SIZE(hp_ok));
	tcase_add_loop_test(tc, test_hostport_bad, 0, FTR_ARRAY_SIZE(hp_bad));
	tcase_add_test(tc, test_hostport_buffer);
	suite_add_tcase(su, tc);

	tc = tcase_create("crc32c");
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_crc_known, 0, (int)FTR_ARRAY_SIZE(crc_impls));
	tcase_add_loop_test(tc, test_crc_rfc3720, 0, (int)FTR_ARRAY_SIZE(crc_impls));
	tcase_add_loop_test(tc, test_crc_reference, 0, (int)FTR_ARRAY_SIZE(crc_impls));
	tcase_add_test(tc, test_crc_use_unknown);
	suite_add_tcase(su, tc);

	tc = tcase_create("misc");
	tcase_add_test(tc, test_fill);
	tcase_add_test(tc, test_fill_short);
	tcase_add_test(tc, test_strlcpy);
	tcase_add_test(tc, test_read_write_all);
	tcase_add_test(tc, test_deadline);
	tcase_add_test(tc, test_thread_name);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(util_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
