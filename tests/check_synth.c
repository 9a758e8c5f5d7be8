/* SPDX-License-Identifier: MIT */
/*
 * The synthetic workload: generator against an independent reference and
 * published splitmix64 values, spec parser, and the oracle on good images
 * and on every kind of damage it must name (flip, torn, stale, newer,
 * misplaced, lost, unwritten-but-dirty, control page, expect mismatch).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ftrepl/synth.h>

#include "testutil.h"

#define PAGE 4096u
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define ck_assert_msg_has(v, needle)                                        \
	ck_assert_msg(strstr((v)->msg, (needle)), "msg \"%s\" lacks \"%s\"", \
		      (v)->msg, (needle))

/* ---- an independent reference, written from DESIGN.md alone ------------ */

struct ref {
	uint64_t seed, npages, hot, state, k;
	int seq;
};

static uint64_t ref_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Stores v little-endian as word i, one byte at a time. */
static void ref_put(uint8_t *page, unsigned i, uint64_t v)
{
	for (unsigned b = 0; b < 8; b++)
		page[8 * i + b] = (uint8_t)(v >> (8 * b));
}

static void ref_init(struct ref *r, uint64_t seed, uint64_t size, uint64_t hot, int seq)
{
	r->seed = seed;
	r->npages = size / PAGE;
	r->hot = (hot == 0 || hot > r->npages - 1) ? r->npages - 1 : hot;
	r->state = seed;
	r->k = 0;
	r->seq = seq;
}

static void ref_control(const struct ref *r, uint8_t *img)
{
	memset(img, 0, PAGE);
	ref_put(img, 0, 0x0A4C544345525446ull);
	ref_put(img, 1, r->k);
	ref_put(img, 2, r->seed);
	ref_put(img, 3, r->npages);
	ref_put(img, 4, r->hot);
	ref_put(img, 5, r->seq ? 1 : 0);
}

static uint64_t ref_write(struct ref *r, uint8_t *img)
{
	uint64_t p;
	uint8_t *page;

	r->k++;
	if (r->seq) {
		p = 1 + (r->k - 1) % r->hot;
	} else {
		r->state += 0x9E3779B97F4A7C15ull;
		p = 1 + ref_mix(r->state) % r->hot;
	}
	page = img + p * PAGE;
	ref_put(page, 0, 0x4547415045525446ull);
	ref_put(page, 1, p);
	ref_put(page, 2, r->k);
	ref_put(page, 3, r->seed);
	for (unsigned i = 4; i < 512; i++)
		ref_put(page, i, ref_mix(r->k * 0x9E3779B97F4A7C15ull + i));
	ref_put(img, 1, r->k);
	return p;
}

/* ---- helpers ------------------------------------------------------------- */

static struct ftr_synth_spec spec_of(uint64_t size, uint64_t seed, uint64_t hot,
				     enum ftr_synth_pattern pat)
{
	return (struct ftr_synth_spec){ .size = size, .seed = seed, .hot = hot, .pattern = pat };
}

/* Zeroed, page-aligned memory, as a fresh memfd mapping would be. */
static void *image_alloc(uint64_t size)
{
	void *img = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(img, MAP_FAILED);
	return img;
}

static void image_free(void *img, uint64_t size)
{
	munmap(img, size);
}

/* An image after `writes` writes; g is left positioned after them. */
static uint8_t *image_make(const struct ftr_synth_spec *s, uint64_t writes,
			   struct ftr_synth_gen *g)
{
	uint8_t *img = image_alloc(s->size);

	ftr_synth_gen_init(g, s);
	ftr_synth_init_image(g, img);
	while (writes--)
		ftr_synth_write(g, img);
	return img;
}

static uint64_t le_word(const uint8_t *page, unsigned i)
{
	uint64_t v = 0;

	for (unsigned b = 0; b < 8; b++)
		v |= (uint64_t)page[8 * i + b] << (8 * b);
	return v;
}

/* Field by field: the struct has padding after pattern. */
static bool spec_eq(const struct ftr_synth_spec *a, const struct ftr_synth_spec *b)
{
	return a->size == b->size && a->seed == b->seed && a->hot == b->hot &&
	       a->rate == b->rate && a->pattern == b->pattern;
}

static unsigned first_diff_byte(const uint8_t *a, const uint8_t *b)
{
	unsigned i = 0;

	while (i < PAGE && a[i] == b[i])
		i++;
	return i;
}

static void verify_fails(const uint8_t *img, const struct ftr_synth_spec *s,
			 const struct ftr_synth_spec *expect, struct ftr_synth_verdict *v)
{
	ck_assert_int_eq(ftr_synth_verify(img, s->size, expect, v), 0);
	ck_assert_msg(!v->ok, "verify passed: %s", v->msg);
}

/* ---- generator ------------------------------------------------------------- */

/* Published splitmix64 outputs for state 1234567. */
START_TEST(test_splitmix_reference)
{
	uint64_t st = 1234567;

	ck_assert_uint_eq(ftr_synth_next(&st), 6457827717110365317ull);
	ck_assert_uint_eq(ftr_synth_next(&st), 3203168211198807973ull);
	ck_assert_uint_eq(ftr_synth_next(&st), 9817491932198370423ull);
	ck_assert_uint_eq(ftr_synth_mix(0), 0);
}
END_TEST

/* Values computed once with an arbitrary-precision script from DESIGN.md. */
START_TEST(test_known_answers_literal)
{
	static const uint64_t pages16[] = { 6, 5, 1, 6, 7, 9, 1, 4, 1, 11, 13, 11 };
	static const uint64_t pages256[] = { 96, 35, 1, 81, 157, 69, 196, 109 };
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, FTR_SYNTH_RANDOM);
	struct ftr_synth_gen g;
	uint8_t page[PAGE];

	ftr_synth_gen_init(&g, &s);
	for (size_t i = 0; i < ARRAY_SIZE(pages16); i++)
		ck_assert_uint_eq(ftr_synth_gen_step(&g), pages16[i]);
	s.size = 1 << 20;
	ftr_synth_gen_init(&g, &s);
	for (size_t i = 0; i < ARRAY_SIZE(pages256); i++)
		ck_assert_uint_eq(ftr_synth_gen_step(&g), pages256[i]);

	ftr_synth_fill_page(page, 96, 1, 1);
	ck_assert_uint_eq(le_word(page, 0), 0x4547415045525446ull);
	ck_assert_uint_eq(le_word(page, 1), 96);
	ck_assert_uint_eq(le_word(page, 2), 1);
	ck_assert_uint_eq(le_word(page, 3), 1);
	ck_assert_uint_eq(le_word(page, 4), 0x6e73e372e2338acaull);
	ck_assert_uint_eq(le_word(page, 5), 0x63033b0ca389c35aull);
	ck_assert_uint_eq(le_word(page, 511), 0xba0917c42b0b66deull);
	ftr_synth_fill_page(page, 35, 2, 1);
	ck_assert_uint_eq(le_word(page, 4), 0xe474c66a4b98b030ull);
	ck_assert_uint_eq(le_word(page, 5), 0xc097314d939736f8ull);
	ck_assert_uint_eq(le_word(page, 511), 0x0de22293b310b80bull);
}
END_TEST

/* Whole image after every write equals the reference, both patterns. */
START_TEST(test_known_answers_reference)
{
	enum ftr_synth_pattern pat = _i ? FTR_SYNTH_SEQ : FTR_SYNTH_RANDOM;
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, pat);
	struct ftr_synth_gen g;
	struct ref r;
	uint8_t *img, *want;

	img = image_alloc(s.size);
	want = image_alloc(s.size);
	ftr_synth_gen_init(&g, &s);
	ref_init(&r, 1, s.size, 0, pat == FTR_SYNTH_SEQ);
	ftr_synth_init_image(&g, img);
	ref_control(&r, want);
	ck_assert_int_eq(memcmp(img, want, s.size), 0);
	for (int i = 0; i < 200; i++) {
		uint64_t p = ftr_synth_write(&g, img);

		ck_assert_uint_eq(p, ref_write(&r, want));
		ck_assert_uint_eq(g.k, r.k);
		ck_assert_msg(!memcmp(img, want, s.size), "image differs after write %d", i + 1);
	}
	image_free(img, s.size);
	image_free(want, s.size);
}
END_TEST

START_TEST(test_hot_clamp)
{
	static const struct {
		uint64_t size, hot, want;
	} cases[] = {
		{ 64 << 10, 0, 15 }, { 64 << 10, 15, 15 }, { 64 << 10, 16, 15 },
		{ 64 << 10, UINT64_MAX, 15 }, { 64 << 10, 3, 3 }, { 64 << 10, 1, 1 },
		{ 8 << 10, 0, 1 }, { 8 << 10, 7, 1 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		for (int pat = 0; pat < 2; pat++) {
			struct ftr_synth_spec s = spec_of(cases[i].size, 9, cases[i].hot,
							  (enum ftr_synth_pattern)pat);
			uint64_t seen = 0;
			struct ftr_synth_gen g;

			ck_assert_uint_eq(ftr_synth_hot_pages(&s), cases[i].want);
			ftr_synth_gen_init(&g, &s);
			ck_assert_uint_eq(g.hot, cases[i].want);
			ck_assert_uint_eq(g.npages, cases[i].size / PAGE);
			for (int n = 0; n < 2000; n++) {
				uint64_t p = ftr_synth_gen_step(&g);

				ck_assert_uint_ge(p, 1);
				ck_assert_uint_le(p, cases[i].want);
				seen |= 1ull << p;
			}
			/* every hot page comes up */
			ck_assert_uint_eq(seen, ((1ull << cases[i].want) - 1) << 1);
		}
	}
}
END_TEST

START_TEST(test_control_page)
{
	struct ftr_synth_spec s = spec_of(256 << 10, 0xabcdef, 10, FTR_SYNTH_SEQ);
	struct ftr_synth_gen g;
	uint8_t *img = image_alloc(s.size);
	uint64_t p;

	ftr_synth_gen_init(&g, &s);
	memset(img + PAGE, 0xee, PAGE);	/* init_image must write page 0 only */
	ftr_synth_init_image(&g, img);
	ck_assert_uint_eq(le_word(img, 0), FTR_SYNTH_CTRL_MAGIC);
	ck_assert_uint_eq(le_word(img, 1), 0);
	ck_assert_uint_eq(le_word(img, 2), 0xabcdef);
	ck_assert_uint_eq(le_word(img, 3), 64);
	ck_assert_uint_eq(le_word(img, 4), 10);
	ck_assert_uint_eq(le_word(img, 5), 1);
	for (unsigned i = 6; i < 512; i++)
		ck_assert_uint_eq(le_word(img, i), 0);
	ck_assert_uint_eq(img[PAGE], 0xee);

	p = ftr_synth_write(&g, img);
	ck_assert_uint_eq(p, 1);
	ck_assert_uint_eq(le_word(img, 1), 1);
	p = ftr_synth_write(&g, img);
	ck_assert_uint_eq(p, 2);
	ck_assert_uint_eq(le_word(img, 1), 2);
	ck_assert_uint_eq(le_word(img + 2 * PAGE, 2), 2);
	image_free(img, s.size);
}
END_TEST

/* A generator seeked to k continues exactly like one that ran from 0. */
START_TEST(test_seek)
{
	static const uint64_t ks[] = { 0, 1, 14, 15, 16, 777, 5000 };
	enum ftr_synth_pattern pat = _i ? FTR_SYNTH_SEQ : FTR_SYNTH_RANDOM;
	struct ftr_synth_spec s = spec_of(64 << 10, 42, 0, pat);

	for (size_t i = 0; i < ARRAY_SIZE(ks); i++) {
		struct ftr_synth_gen a, b;
		uint8_t *ia, *ib;

		ia = image_make(&s, ks[i], &a);
		ib = image_alloc(s.size);
		memcpy(ib, ia, s.size); /* a resumed workload keeps its memory */
		ftr_synth_gen_seek(&b, &s, ks[i]);
		ck_assert_uint_eq(b.k, a.k);
		ck_assert_uint_eq(b.prng, a.prng);
		ck_assert_uint_eq(b.hot, a.hot);
		ck_assert_uint_eq(b.npages, a.npages);
		for (int n = 0; n < 300; n++)
			ck_assert_uint_eq(ftr_synth_write(&b, ib), ftr_synth_write(&a, ia));
		ck_assert_int_eq(memcmp(ia, ib, s.size), 0);
		image_free(ia, s.size);
		image_free(ib, s.size);
	}
}
END_TEST

/* ---- parser ---------------------------------------------------------------- */

static const struct {
	const char *str;
	struct ftr_synth_spec want;
} parse_ok[] = {
	{ "", { 64 << 20, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth", { 64 << 20, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:", { 64 << 20, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "size=1G", { 1ull << 30, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:size=8K", { 8192, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:size=8192", { 8192, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:size=2T", { 2ull << 40, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:size=12KiB", { 12288, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:size=64m", { 64 << 20, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:seed=0", { 64 << 20, 0, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:seed=18446744073709551615", { 64 << 20, UINT64_MAX, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:seed=0xDEADbeef", { 64 << 20, 0xdeadbeef, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:seed=0XffffFFFFffffFFFF", { 64 << 20, UINT64_MAX, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:seed=0x0000000000000000001", { 64 << 20, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:hot=100", { 64 << 20, 1, 100, 0, FTR_SYNTH_RANDOM } },
	{ "synth:hot=0", { 64 << 20, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:rate=5000", { 64 << 20, 1, 0, 5000, FTR_SYNTH_RANDOM } },
	{ "synth:pattern=seq", { 64 << 20, 1, 0, 0, FTR_SYNTH_SEQ } },
	{ "synth:pattern=random", { 64 << 20, 1, 0, 0, FTR_SYNTH_RANDOM } },
	{ "synth:size=1M,seed=7,hot=16,rate=100,pattern=seq", { 1 << 20, 7, 16, 100, FTR_SYNTH_SEQ } },
	{ "pattern=seq,rate=1,hot=2,seed=3,size=16K", { 16384, 3, 2, 1, FTR_SYNTH_SEQ } },
};

START_TEST(test_parse_valid)
{
	struct ftr_synth_spec s;
	char err[256] = "";

	ck_assert_msg(ftr_synth_parse(parse_ok[_i].str, &s, err, sizeof(err)) == 0,
		      "\"%s\": %s", parse_ok[_i].str, err);
	ck_assert_uint_eq(s.size, parse_ok[_i].want.size);
	ck_assert_uint_eq(s.seed, parse_ok[_i].want.seed);
	ck_assert_uint_eq(s.hot, parse_ok[_i].want.hot);
	ck_assert_uint_eq(s.rate, parse_ok[_i].want.rate);
	ck_assert_int_eq(s.pattern, parse_ok[_i].want.pattern);
}
END_TEST

/* Each error names the key (or the workload type) and the bad value. */
static const struct {
	const char *str;
	const char *names[2];
} parse_bad[] = {
	{ "synth:colour=red", { "colour", NULL } },
	{ "synth:sizes=1M", { "sizes", NULL } },
	{ "synth:Size=1M", { "Size", NULL } },
	{ "synth:seed=1,seed=2", { "seed", "twice" } },
	{ "synth:size=1M,pattern=seq,size=1M", { "size", "twice" } },
	{ "synth:size", { "size", "=" } },
	{ "synth:hot=1,rate", { "rate", "=" } },
	{ "synth:size=", { "size", "empty" } },
	{ "synth:seed=", { "seed", "empty" } },
	{ "synth:pattern=", { "pattern", "empty" } },
	{ "synth:size=1M,", { "empty option", NULL } },
	{ "synth:,size=1M", { "empty option", NULL } },
	{ "synth:size=1M,,seed=1", { "empty option", NULL } },
	{ "synth:size=12Q", { "size", "12Q" } },
	{ "synth:size=-8K", { "size", "-8K" } },
	{ "synth:size=1:2", { "size", "1:2" } },
	{ "synth:size=99999999999999999999999", { "size", "too large" } },
	{ "synth:size=5000", { "size", "4096" } },
	{ "synth:size=4K", { "size", "4K" } },
	{ "synth:size=0", { "size", "'0'" } },
	{ "synth:seed=abc", { "seed", "abc" } },
	{ "synth:seed=0x", { "seed", "0x" } },
	{ "synth:seed=0x1g", { "seed", "0x1g" } },
	{ "synth:seed=-1", { "seed", "-1" } },
	{ "synth:seed=18446744073709551616", { "seed", "18446744073709551616" } },
	{ "synth:seed=0x10000000000000000", { "seed", "0x10000000000000000" } },
	{ "synth:seed= 1", { "seed", "' 1'" } },
	{ "synth:hot=1K", { "hot", "1K" } },
	{ "synth:hot=0x10", { "hot", "0x10" } },
	{ "synth:rate=fast", { "rate", "fast" } },
	{ "synth:rate=1.5", { "rate", "1.5" } },
	{ "synth:pattern=zigzag", { "pattern", "zigzag" } },
	{ "synth:pattern=SEQ", { "pattern", "SEQ" } },
	{ "file:/tmp/x", { "file", NULL } },
	{ "synthx:size=1M", { "synthx", NULL } },
	{ "synth:seed=00000000000000000000000000000000000000000000000000000000000000000000001",
	  { "seed", "too long" } },
};

START_TEST(test_parse_errors)
{
	struct ftr_synth_spec s = spec_of(12345, 6, 7, FTR_SYNTH_SEQ), keep = s;
	char err[256] = "";

	ck_assert_msg(ftr_synth_parse(parse_bad[_i].str, &s, err, sizeof(err)) == -EINVAL,
		      "\"%s\" accepted", parse_bad[_i].str);
	for (int n = 0; n < 2 && parse_bad[_i].names[n]; n++)
		ck_assert_msg(strstr(err, parse_bad[_i].names[n]), "\"%s\": err \"%s\" lacks \"%s\"",
			      parse_bad[_i].str, err, parse_bad[_i].names[n]);
	ck_assert_ptr_null(strchr(err, '\n'));
	/* out untouched on error */
	ck_assert(spec_eq(&s, &keep));
	/* no error buffer is fine too */
	ck_assert_int_eq(ftr_synth_parse(parse_bad[_i].str, &s, NULL, 0), -EINVAL);
}
END_TEST

START_TEST(test_parse_null)
{
	struct ftr_synth_spec s;
	char err[64];

	ck_assert_int_eq(ftr_synth_parse(NULL, &s, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(test_format_roundtrip)
{
	static const struct ftr_synth_spec specs[] = {
		{ 64 << 20, 1, 0, 0, FTR_SYNTH_RANDOM },
		{ 8192, 0, 0, 0, FTR_SYNTH_SEQ },
		{ 12288, UINT64_MAX, UINT64_MAX, UINT64_MAX, FTR_SYNTH_RANDOM },
		{ 3ull << 40, 0xdeadbeef, 1000, 250000, FTR_SYNTH_SEQ },
		{ (1ull << 30) + 4096, 5, 1, 1, FTR_SYNTH_RANDOM },
		{ 1ull << 62, 5, 1, 1, FTR_SYNTH_RANDOM },
		{ UINT64_MAX - 4095, 5, 1, 1, FTR_SYNTH_RANDOM },
	};
	char buf[256], err[256];

	ftr_synth_format(&specs[0], buf, sizeof(buf));
	ck_assert_str_eq(buf, "synth:size=64M,seed=1,hot=0,rate=0,pattern=random");
	for (size_t i = 0; i < ARRAY_SIZE(specs); i++) {
		struct ftr_synth_spec s;
		int n = ftr_synth_format(&specs[i], buf, sizeof(buf));

		ck_assert_int_eq(n, (int)strlen(buf));
		ck_assert_msg(ftr_synth_parse(buf, &s, err, sizeof(err)) == 0, "%s: %s", buf, err);
		ck_assert_msg(spec_eq(&s, &specs[i]), "%s parsed differently", buf);
	}
	/* snprintf semantics when the buffer is short */
	ck_assert_int_eq(ftr_synth_format(&specs[0], buf, 6), 49);
	ck_assert_str_eq(buf, "synth");
}
END_TEST

/* ---- oracle: good images ----------------------------------------------------- */

static const struct {
	uint64_t size, hot, writes;
	enum ftr_synth_pattern pat;
} pass_cases[] = {
	{ 64 << 10, 0, 0, FTR_SYNTH_RANDOM },
	{ 64 << 10, 0, 1, FTR_SYNTH_RANDOM },
	{ 64 << 10, 0, 1000, FTR_SYNTH_RANDOM },
	{ 64 << 10, 0, 100000, FTR_SYNTH_RANDOM },
	{ 64 << 10, 0, 0, FTR_SYNTH_SEQ },
	{ 64 << 10, 0, 1, FTR_SYNTH_SEQ },
	{ 64 << 10, 0, 1000, FTR_SYNTH_SEQ },
	{ 64 << 10, 0, 100000, FTR_SYNTH_SEQ },
	{ 1 << 20, 10, 1000, FTR_SYNTH_RANDOM },
	{ 1 << 20, 10, 100000, FTR_SYNTH_SEQ },
	{ 1 << 20, 0, 100, FTR_SYNTH_RANDOM },	/* most pages never written */
	{ 1 << 20, 0, 100, FTR_SYNTH_SEQ },
	{ 8 << 10, 0, 0, FTR_SYNTH_RANDOM },
	{ 8 << 10, 0, 100, FTR_SYNTH_SEQ },
};

START_TEST(test_oracle_pass)
{
	struct ftr_synth_spec s = spec_of(pass_cases[_i].size, 1, pass_cases[_i].hot,
					  pass_cases[_i].pat);
	uint64_t hot = ftr_synth_hot_pages(&s);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, pass_cases[_i].writes, &g);
	static const uint8_t zero[PAGE];

	/* pages beyond the hot set stay zero */
	for (uint64_t p = hot + 1; p < s.size / PAGE; p++)
		ck_assert_int_eq(memcmp(img + p * PAGE, zero, PAGE), 0);
	for (int with_expect = 0; with_expect < 2; with_expect++) {
		ck_assert_int_eq(ftr_synth_verify(img, s.size, with_expect ? &s : NULL, &v), 0);
		ck_assert_msg(v.ok, "%s", v.msg);
		ck_assert_uint_eq(v.k, pass_cases[_i].writes);
		ck_assert_uint_eq(v.pages, s.size / PAGE);
		ck_assert_msg(!strncmp(v.msg, "ok: ", 4), "%s", v.msg);
		ck_assert_msg_has(&v, pass_cases[_i].pat == FTR_SYNTH_SEQ ? "seq" : "random");
	}
	image_free(img, s.size);
}
END_TEST

START_TEST(test_oracle_summary)
{
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, FTR_SYNTH_SEQ);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 5, &g);

	ck_assert_int_eq(ftr_synth_verify(img, s.size, &s, &v), 0);
	ck_assert_str_eq(v.msg, "ok: 16 pages, k=5, seed 1, seq, hot 15, 5 pages written");
	image_free(img, s.size);
}
END_TEST

START_TEST(test_oracle_bad_length)
{
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, FTR_SYNTH_RANDOM);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 10, &g);

	ck_assert_int_eq(ftr_synth_verify(img, s.size - 1, NULL, &v), -EINVAL);
	ck_assert(!v.ok);
	ck_assert_msg_has(&v, "whole number of pages");
	ck_assert_int_eq(ftr_synth_verify(img, PAGE, NULL, &v), 0);
	ck_assert(!v.ok);
	ck_assert_msg_has(&v, "at least 2 pages");
	ck_assert_int_eq(ftr_synth_verify(img + 4, s.size - PAGE, NULL, &v), -EINVAL);
	image_free(img, s.size);
}
END_TEST

/* ---- oracle: damaged images ------------------------------------------------ */

START_TEST(test_fail_flip)
{
	static const unsigned offsets[] = { 2050, 8, 16, 24, 0, 32, 4095 };
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, FTR_SYNTH_RANDOM);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 999, &g);
	uint64_t p = ftr_synth_write(&g, img);
	char want[64];

	for (size_t i = 0; i < ARRAY_SIZE(offsets); i++) {
		img[p * PAGE + offsets[i]] ^= 0x10;
		verify_fails(img, &s, &s, &v);
		ck_assert_uint_eq(v.bad_page, p);
		ck_assert_uint_eq(v.bad_offset, offsets[i]);
		snprintf(want, sizeof(want), "page %" PRIu64 " byte %u: write 1000 expected", p,
			 offsets[i]);
		ck_assert_msg_has(&v, want);
		ck_assert_msg_has(&v, "1 byte differs");
		img[p * PAGE + offsets[i]] ^= 0x10;
	}
	ck_assert_int_eq(ftr_synth_verify(img, s.size, &s, &v), 0);
	ck_assert_msg(v.ok, "%s", v.msg);
	image_free(img, s.size);
}
END_TEST

/* Runs to k = 1000 + one write that overwrites an already written page;
 * old gets that page's previous content. Returns the page. */
static uint64_t overwrite_once(const struct ftr_synth_spec *s, uint8_t **img,
			       struct ftr_synth_gen *g, uint8_t *old)
{
	uint64_t p;

	*img = image_make(s, 1000, g);
	for (;;) {
		struct ftr_synth_gen peek = *g;

		p = ftr_synth_gen_step(&peek);
		if (le_word(*img + p * PAGE, 2))
			break;
		ftr_synth_write(g, *img);
	}
	memcpy(old, *img + p * PAGE, PAGE);
	ck_assert_uint_eq(ftr_synth_write(g, *img), p);
	return p;
}

START_TEST(test_fail_torn)
{
	enum ftr_synth_pattern pat = _i ? FTR_SYNTH_SEQ : FTR_SYNTH_RANDOM;
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, pat);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t old[PAGE], cur[PAGE], *img, *page;
	uint64_t p = overwrite_once(&s, &img, &g, old), kold = le_word(old, 2);
	unsigned off;
	char want[160];

	page = img + p * PAGE;
	memcpy(cur, page, PAGE);

	/* first half still the previous write: differs first in w[2] */
	memcpy(page, old, PAGE / 2);
	off = first_diff_byte(page, cur);
	ck_assert_uint_ge(off, 16);
	ck_assert_uint_lt(off, 24);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_page, p);
	ck_assert_uint_eq(v.bad_offset, off);
	snprintf(want, sizeof(want),
		 "page %" PRIu64 " byte %u: write %" PRIu64 " expected, page is torn "
		 "(bytes 0-2047 hold write %" PRIu64 ", 2048-4095 match)", p, off, g.k, kold);
	ck_assert_str_eq(v.msg, want);

	/* second half still the previous write */
	memcpy(page, cur, PAGE);
	memcpy(page + PAGE / 2, old + PAGE / 2, PAGE / 2);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_page, p);
	ck_assert_uint_eq(v.bad_offset, first_diff_byte(page, cur));
	ck_assert_uint_ge(v.bad_offset, 2048);
	snprintf(want, sizeof(want), "(bytes 0-2047 match, 2048-4095 hold write %" PRIu64 ")",
		 kold);
	ck_assert_msg_has(&v, "torn");
	ck_assert_msg_has(&v, want);

	/* a page caught half filled: the rest is still zero */
	memcpy(page, cur, PAGE);
	memset(page + 1024, 0, PAGE - 1024);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_offset, first_diff_byte(page, cur));
	ck_assert_msg_has(&v, "(bytes 0-1023 match, 1024-4095 are zero)");
	image_free(img, s.size);
}
END_TEST

START_TEST(test_fail_stale)
{
	enum ftr_synth_pattern pat = _i ? FTR_SYNTH_SEQ : FTR_SYNTH_RANDOM;
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, pat);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t old[PAGE], *img;
	uint64_t p = overwrite_once(&s, &img, &g, old);
	char want[128];

	ck_assert_uint_lt(first_diff_byte(old, img + p * PAGE), 24);
	ck_assert_uint_ge(first_diff_byte(old, img + p * PAGE), 16);
	memcpy(img + p * PAGE, old, PAGE);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_page, p);
	ck_assert_uint_ge(v.bad_offset, 16);
	ck_assert_uint_lt(v.bad_offset, 24);
	snprintf(want, sizeof(want),
		 "page %" PRIu64 ": holds write %" PRIu64 " (stale; last write <= k is %" PRIu64 ")",
		 p, le_word(old, 2), g.k);
	ck_assert_str_eq(v.msg, want);
	image_free(img, s.size);
}
END_TEST

/* The control page moved without its data page, both ways. */
START_TEST(test_fail_control_k_skew)
{
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, FTR_SYNTH_RANDOM);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g, peek;
	uint8_t *img = image_make(&s, 1000, &g);
	uint64_t p, k = g.k;
	char want[64];

	/* k says one write more than the data holds: its page is stale */
	peek = g;
	p = ftr_synth_gen_step(&peek);
	img[8] = (uint8_t)(k + 1);
	img[9] = (uint8_t)((k + 1) >> 8);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_page, p);
	ck_assert_msg_has(&v, "stale");

	/* k says one write less: that page is from the future */
	img[8] = (uint8_t)k;
	img[9] = (uint8_t)(k >> 8);
	p = ftr_synth_write(&g, img);
	img[8] = (uint8_t)k;
	img[9] = (uint8_t)(k >> 8);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_page, p);
	snprintf(want, sizeof(want), "holds write %" PRIu64 ", newer than k=%" PRIu64, k + 1, k);
	ck_assert_msg_has(&v, want);
	image_free(img, s.size);
}
END_TEST

START_TEST(test_fail_misplaced)
{
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, FTR_SYNTH_SEQ);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 100, &g);

	memcpy(img + 7 * PAGE, img + 3 * PAGE, PAGE);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_page, 7);
	ck_assert_uint_eq(v.bad_offset, 8);
	ck_assert_msg_has(&v, "page 7: holds write 93 of page 3 (misplaced");
	image_free(img, s.size);
}
END_TEST

START_TEST(test_fail_lost)
{
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, FTR_SYNTH_RANDOM);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 500, &g);
	uint64_t p = ftr_synth_write(&g, img);

	memset(img + p * PAGE, 0, PAGE);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_page, p);
	ck_assert_uint_eq(v.bad_offset, 0);
	ck_assert_msg_has(&v, "all zero, but write 501 expected");
	image_free(img, s.size);
}
END_TEST

START_TEST(test_fail_unwritten_nonzero)
{
	/* beyond the hot set, and a hot page not written yet */
	struct ftr_synth_spec s = spec_of(256 << 10, 1, 10, FTR_SYNTH_SEQ);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 3, &g);

	img[40 * PAGE + 100] = 1;
	verify_fails(img, &s, NULL, &v);
	ck_assert_uint_eq(v.bad_page, 40);
	ck_assert_uint_eq(v.bad_offset, 100);
	ck_assert_msg_has(&v, "page 40 byte 100: never written");
	ck_assert_msg_has(&v, "not zero");
	img[40 * PAGE + 100] = 0;

	img[5 * PAGE + 4095] = 0x80;
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_page, 5);
	ck_assert_uint_eq(v.bad_offset, 4095);
	ck_assert_msg_has(&v, "never written");
	img[5 * PAGE + 4095] = 0;

	/* a whole write where none belongs is named as such */
	ftr_synth_fill_page(img + 5 * PAGE, 5, 5, 1);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_page, 5);
	ck_assert_msg_has(&v, "holds write 5, newer than k=3");
	image_free(img, s.size);
}
END_TEST

START_TEST(test_fail_foreign_seed)
{
	struct ftr_synth_spec s = spec_of(64 << 10, 1, 0, FTR_SYNTH_SEQ);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 20, &g);

	/* page 4's last write is 19; write 7 of a workload with seed 77 */
	ftr_synth_fill_page(img + 4 * PAGE, 4, 7, 77);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_page, 4);
	ck_assert_uint_eq(v.bad_offset, 16);
	ck_assert_msg_has(&v, "page 4: holds write 7 to page 4 of another workload (seed 77, not 1");

	/* the same write with only the seed word wrong is a corrupted page */
	ftr_synth_fill_page(img + 4 * PAGE, 4, 19, 77);
	verify_fails(img, &s, &s, &v);
	ck_assert_uint_eq(v.bad_offset, 24);
	ck_assert_msg_has(&v, "page 4 byte 24: write 19 expected, 1 byte differs");
	image_free(img, s.size);
}
END_TEST

/* Corrupt one control word; with and without expect. */
static void control_case(unsigned word, uint64_t val, const struct ftr_synth_spec *expect,
			 uint64_t bad_page, uint64_t bad_offset, const char *needle)
{
	struct ftr_synth_spec s = spec_of(64 << 10, 3, 0, FTR_SYNTH_RANDOM);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 2000, &g);

	for (unsigned b = 0; b < 8; b++)
		img[word * 8 + b] = (uint8_t)(val >> (8 * b));
	verify_fails(img, &s, expect, &v);
	ck_assert_uint_eq(v.bad_page, bad_page);
	if (bad_page == 0)
		ck_assert_uint_eq(v.bad_offset, bad_offset);
	ck_assert_msg_has(&v, needle);
	image_free(img, s.size);
}

START_TEST(test_fail_control_fields)
{
	struct ftr_synth_spec s = spec_of(64 << 10, 3, 0, FTR_SYNTH_RANDOM);

	control_case(0, 0x1234, NULL, 0, 0, "control page: magic 0x0000000000001234");
	control_case(3, 17, NULL, 0, 24, "control page says 17 pages, image has 16");
	control_case(3, 17, &s, 0, 24, "control page says 17 pages, image has 16");
	control_case(4, 0, NULL, 0, 32, "control page says 0 hot pages, must be 1..15");
	control_case(4, 16, NULL, 0, 32, "control page says 16 hot pages, must be 1..15");
	control_case(5, 2, NULL, 0, 40, "pattern word 2");
	/* self-consistent but not what was asked for */
	control_case(2, 7, &s, 0, 16, "control page says seed 7, expected 3");
	control_case(4, 5, &s, 0, 32, "control page says 5 hot pages, expected 15");
	control_case(5, 1, &s, 0, 40, "control page says pattern seq, expected random");
	/* without expect the data pages give the lie away */
	control_case(2, 7, NULL, 1, 0, "another workload (seed 3, not 7");
	control_case(5, 1, NULL, 1, 0, "page 1");
}
END_TEST

START_TEST(test_fail_expect_mismatch)
{
	struct ftr_synth_spec s = spec_of(64 << 10, 3, 0, FTR_SYNTH_RANDOM), e;
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 100, &g);

	e = s;
	e.seed = 4;
	verify_fails(img, &s, &e, &v);
	ck_assert_str_eq(v.msg, "control page says seed 3, expected 4");
	e = s;
	e.size = 128 << 10;
	verify_fails(img, &s, &e, &v);
	ck_assert_str_eq(v.msg, "control page says 16 pages, expected 32");
	e = s;
	e.hot = 4;
	verify_fails(img, &s, &e, &v);
	ck_assert_str_eq(v.msg, "control page says 15 hot pages, expected 4");
	e = s;
	e.pattern = FTR_SYNTH_SEQ;
	verify_fails(img, &s, &e, &v);
	ck_assert_str_eq(v.msg, "control page says pattern random, expected seq");
	/* rate is not part of the image; hot above N-1 clamps to the same Hn */
	e = s;
	e.rate = 10;
	e.hot = 1000;
	ck_assert_int_eq(ftr_synth_verify(img, s.size, &e, &v), 0);
	ck_assert_msg(v.ok, "%s", v.msg);
	image_free(img, s.size);
}
END_TEST

START_TEST(test_fail_control_unused)
{
	static const unsigned offsets[] = { 48, 100, 4095 };
	struct ftr_synth_spec s = spec_of(64 << 10, 3, 0, FTR_SYNTH_RANDOM);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 100, &g);
	char want[64];

	for (size_t i = 0; i < ARRAY_SIZE(offsets); i++) {
		img[offsets[i]] = 0x5a;
		for (int with_expect = 0; with_expect < 2; with_expect++) {
			verify_fails(img, &s, with_expect ? &s : NULL, &v);
			ck_assert_uint_eq(v.bad_page, 0);
			ck_assert_uint_eq(v.bad_offset, offsets[i]);
			snprintf(want, sizeof(want), "control page byte %u: 0x5a", offsets[i]);
			ck_assert_msg_has(&v, want);
		}
		img[offsets[i]] = 0;
	}
	image_free(img, s.size);
}
END_TEST

/* ---- files ----------------------------------------------------------------- */

static char *dump_image(const char *dir, const uint8_t *img, uint64_t len)
{
	char *path;
	int fd;

	ck_assert_int_ge(asprintf(&path, "%s/image", dir), 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, img, len), (ssize_t)len);
	close(fd);
	return path;
}

START_TEST(test_verify_file)
{
	struct ftr_synth_spec s = spec_of(256 << 10, 5, 40, FTR_SYNTH_RANDOM);
	struct ftr_synth_verdict v, vm;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 5000, &g);
	char *dir = ftr_test_mkdtemp("check_synth");
	char *path = dump_image(dir, img, s.size);

	ck_assert_int_eq(ftr_synth_verify_file(path, &s, &v), 0);
	ck_assert_msg(v.ok, "%s", v.msg);
	ck_assert_int_eq(ftr_synth_verify(img, s.size, &s, &vm), 0);
	ck_assert_str_eq(v.msg, vm.msg);

	/* damage in the file is found the same way */
	img[7 * PAGE + 300] ^= 1;
	free(path);
	path = dump_image(dir, img, s.size);
	ck_assert_int_eq(ftr_synth_verify_file(path, NULL, &v), 0);
	ck_assert(!v.ok);
	ck_assert_uint_eq(v.bad_page, 7);
	ck_assert_uint_eq(v.bad_offset, 300);

	free(path);
	ftr_test_rmtree(dir);
	free(dir);
	image_free(img, s.size);
}
END_TEST

START_TEST(test_verify_file_truncated)
{
	struct ftr_synth_spec s = spec_of(64 << 10, 5, 0, FTR_SYNTH_SEQ);
	struct ftr_synth_verdict v;
	struct ftr_synth_gen g;
	uint8_t *img = image_make(&s, 100, &g);
	char *dir = ftr_test_mkdtemp("check_synth");
	char *path = dump_image(dir, img, s.size), *missing;

	ck_assert_int_eq(truncate(path, (off_t)s.size - 100), 0);
	ck_assert_int_eq(ftr_synth_verify_file(path, &s, &v), -EINVAL);
	ck_assert(!v.ok);
	ck_assert_msg_has(&v, "not a whole number of pages");

	ck_assert_int_eq(truncate(path, (off_t)s.size - PAGE), 0);
	ck_assert_int_eq(ftr_synth_verify_file(path, NULL, &v), 0);
	ck_assert(!v.ok);
	ck_assert_msg_has(&v, "control page says 16 pages, image has 15");

	ck_assert_int_eq(truncate(path, 0), 0);
	ck_assert_int_eq(ftr_synth_verify_file(path, &s, &v), 0);
	ck_assert(!v.ok);
	ck_assert_msg_has(&v, "0 bytes");

	ck_assert_int_ge(asprintf(&missing, "%s/none", dir), 0);
	ck_assert_int_eq(ftr_synth_verify_file(missing, &s, &v), -ENOENT);
	ck_assert(!v.ok);
	ck_assert_msg_has(&v, missing);

	free(missing);
	free(path);
	ftr_test_rmtree(dir);
	free(dir);
	image_free(img, s.size);
}
END_TEST

static Suite *synth_suite(void)
{
	Suite *su = suite_create("synth");
	TCase *tc;

	tc = tcase_create("generator");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_splitmix_reference);
	tcase_add_test(tc, test_known_answers_literal);
	tcase_add_loop_test(tc, test_known_answers_reference, 0, 2);
	tcase_add_test(tc, test_hot_clamp);
	tcase_add_test(tc, test_control_page);
	tcase_add_loop_test(tc, test_seek, 0, 2);
	suite_add_tcase(su, tc);

	tc = tcase_create("parser");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_parse_valid, 0, ARRAY_SIZE(parse_ok));
	tcase_add_loop_test(tc, test_parse_errors, 0, ARRAY_SIZE(parse_bad));
	tcase_add_test(tc, test_parse_null);
	tcase_add_test(tc, test_format_roundtrip);
	suite_add_tcase(su, tc);

	tc = tcase_create("oracle_pass");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_oracle_pass, 0, ARRAY_SIZE(pass_cases));
	tcase_add_test(tc, test_oracle_summary);
	tcase_add_test(tc, test_oracle_bad_length);
	suite_add_tcase(su, tc);

	tc = tcase_create("oracle_fail");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_fail_flip);
	tcase_add_loop_test(tc, test_fail_torn, 0, 2);
	tcase_add_loop_test(tc, test_fail_stale, 0, 2);
	tcase_add_test(tc, test_fail_control_k_skew);
	tcase_add_test(tc, test_fail_misplaced);
	tcase_add_test(tc, test_fail_lost);
	tcase_add_test(tc, test_fail_unwritten_nonzero);
	tcase_add_test(tc, test_fail_foreign_seed);
	tcase_add_test(tc, test_fail_control_fields);
	tcase_add_test(tc, test_fail_expect_mismatch);
	tcase_add_test(tc, test_fail_control_unused);
	suite_add_tcase(su, tc);

	tc = tcase_create("file");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_verify_file);
	tcase_add_test(tc, test_verify_file_truncated);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(synth_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
