/* SPDX-License-Identifier: MIT */
/*
 * The synthetic workload: spec parser, generator and oracle (DESIGN.md,
 * "The synthetic workload and its oracle"; contract in ftrepl/synth.h).
 *
 * Two properties of the formulas make the oracle cheap and precise:
 *
 *  - splitmix64's state after j steps is S + j * GOLDEN, so the page of any
 *    write j is 1 + mix(S + j * GOLDEN) mod Hn, computable directly. The
 *    generator still steps the PRNG as the spec says, but seeking is O(1),
 *    and the oracle finds each page's last writer by walking back from k,
 *    stopping as soon as every hot page has one (about Hn ln Hn writes for
 *    a long run instead of k).
 *
 *  - word i >= 4 of write k is mix(k * GOLDEN + i), and mix is a bijection:
 *    a single word says which write it came from. That is how the oracle
 *    names the pieces of a torn page.
 *
 * Images are arrays of little-endian u64 words and must be 8-byte aligned
 * (they are page-aligned mappings in practice).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ftrepl/synth.h>

#include "common/common.h"

#define PAGE FTR_SYNTH_PAGE
#define WORDS FTR_SYNTH_WORDS
#define HDR_WORDS 4	/* magic, p, k, S; words from here on are mix() */
#define CTRL_WORDS 6	/* used words of the control page */

/* ---- spec ------------------------------------------------------------- */

uint64_t ftr_synth_hot_pages(const struct ftr_synth_spec *s)
{
	uint64_t n = ftr_synth_npages(s);

	if (n < 2)
		return 0;
	if (s->hot == 0 || s->hot > n - 1)
		return n - 1;
	return s->hot;
}

static const char *pattern_name(uint64_t pattern)
{
	return pattern == FTR_SYNTH_SEQ ? "seq" : "random";
}

enum synth_key { KEY_SIZE, KEY_SEED, KEY_HOT, KEY_RATE, KEY_PATTERN, KEY_COUNT };

static const char *const synth_keys[KEY_COUNT] = {
	[KEY_SIZE] = "size",
	[KEY_SEED] = "seed",
	[KEY_HOT] = "hot",
	[KEY_RATE] = "rate",
	[KEY_PATTERN] = "pattern",
};

static FTR_PRINTF(3, 4) int parse_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Decimal, or "0x" and hex digits; the whole u64 range. */
static int parse_seed(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	const char *p;

	if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
		return ftr_parse_u64(s, 0, UINT64_MAX, out);
	if (!s[2])
		return -EINVAL;
	for (p = s + 2; *p; p++) {
		unsigned d;

		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (*p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (*p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			return -EINVAL;
		if (v >> 60)
			return -ERANGE;
		v = v << 4 | d;
	}
	*out = v;
	return 0;
}

static int parse_size_value(const char *val, uint64_t *size, char *err, size_t errlen)
{
	int ret = ftr_parse_size(val, size);

	if (ret == -ERANGE)
		return parse_err(err, errlen, "size '%s': too large", val);
	if (ret)
		return parse_err(err, errlen,
				 "size '%s': not a size (bytes, or a number with K, M, G or T)",
				 val);
	if (*size % PAGE)
		return parse_err(err, errlen, "size '%s': not a multiple of 4096", val);
	if (*size < 2 * PAGE)
		return parse_err(err, errlen,
				 "size '%s': too small (the control page and one data page need 8K)",
				 val);
	return 0;
}

static int parse_value(enum synth_key key, const char *val, struct ftr_synth_spec *s,
		       char *err, size_t errlen)
{
	switch (key) {
	case KEY_SIZE:
		return parse_size_value(val, &s->size, err, errlen);
	case KEY_SEED:
		if (parse_seed(val, &s->seed))
			return parse_err(err, errlen,
					 "seed '%s': not a u64 (decimal or 0x hex)", val);
		return 0;
	case KEY_HOT:
		if (ftr_parse_u64(val, 0, UINT64_MAX, &s->hot))
			return parse_err(err, errlen,
					 "hot '%s': not a page count (decimal, 0 = all data pages)",
					 val);
		return 0;
	case KEY_RATE:
		if (ftr_parse_u64(val, 0, UINT64_MAX, &s->rate))
			return parse_err(err, errlen,
					 "rate '%s': not a decimal writes/s (0 = unlimited)", val);
		return 0;
	case KEY_PATTERN:
		if (!strcmp(val, "random"))
			s->pattern = FTR_SYNTH_RANDOM;
		else if (!strcmp(val, "seq"))
			s->pattern = FTR_SYNTH_SEQ;
		else
			return parse_err(err, errlen,
					 "pattern '%s': expected 'random' or 'seq'", val);
		return 0;
	case KEY_COUNT:
		break;
	}
	return -EINVAL;
}

/* One "key=value" item of len bytes (not NUL-terminated). */
static int parse_item(const char *item, size_t len, struct ftr_synth_spec *s,
		      unsigned *seen, char *err, size_t errlen)
{
	const char *eq = memchr(item, '=', len);
	size_t klen = eq ? (size_t)(eq - item) : len;
	char val[64];
	size_t vlen;
	int key;

	if (len == 0)
		return parse_err(err, errlen, "empty option (stray ',')");
	for (key = 0; key < KEY_COUNT; key++)
		if (strlen(synth_keys[key]) == klen && !memcmp(item, synth_keys[key], klen))
			break;
	if (key == KEY_COUNT)
		return parse_err(err, errlen,
				 "unknown option '%.*s' (known: size, seed, hot, rate, pattern)",
				 (int)FTR_MIN(klen, 40), item);
	if (!eq)
		return parse_err(err, errlen, "option '%s' has no value (missing '=')",
				 synth_keys[key]);
	vlen = len - klen - 1;
	if (vlen == 0)
		return parse_err(err, errlen, "option '%s': empty value", synth_keys[key]);
	if (*seen & (1u << key))
		return parse_err(err, errlen, "option '%s' given twice", synth_keys[key]);
	*seen |= 1u << key;
	if (vlen >= sizeof(val))
		return parse_err(err, errlen, "%s '%.20s...': value too long",
				 synth_keys[key], eq + 1);
	memcpy(val, eq + 1, vlen);
	val[vlen] = '\0';
	return parse_value((enum synth_key)key, val, s, err, errlen);
}

int ftr_synth_parse(const char *str, struct ftr_synth_spec *out, char *err, size_t errlen)
{
	struct ftr_synth_spec s = {
		.size = FTR_SYNTH_DEFAULT_SIZE,
		.seed = 1,
		.hot = 0,
		.rate = 0,
		.pattern = FTR_SYNTH_RANDOM,
	};
	unsigned seen = 0;
	const char *p = str;
	size_t plen;
	int ret;

	if (!str)
		return parse_err(err, errlen, "no workload spec");
	/* A "type:" prefix is whatever comes before a ':' that is not inside
	 * an option; only "synth" is ours. */
	plen = strcspn(str, ":=,");
	if (str[plen] == ':') {
		if (plen != 5 || memcmp(str, "synth", 5))
			return parse_err(err, errlen,
					 "workload '%.*s': not a synth spec (expected 'synth:...')",
					 (int)FTR_MIN(plen, 40), str);
		p = str + plen + 1;
	} else if (!strcmp(str, "synth")) {
		p = str + plen;
	}
	while (*p) {
		const char *end = strchrnul(p, ',');

		ret = parse_item(p, (size_t)(end - p), &s, &seen, err, errlen);
		if (ret)
			return ret;
		if (!*end)
			break;
		p = end + 1;
		if (!*p)
			return parse_err(err, errlen, "empty option (stray ',' at the end)");
	}
	*out = s;
	return 0;
}

/* The largest binary suffix that keeps the size exact, e.g. "64M". */
static void format_size_exact(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int u = -1;

	while (u < 3 && v && v % 1024 == 0) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%" PRIu64, v);
	else
		snprintf(buf, len, "%" PRIu64 "%c", v, units[u]);
}

int ftr_synth_format(const struct ftr_synth_spec *s, char *buf, size_t len)
{
	char size[32];

	format_size_exact(s->size, size, sizeof(size));
	return snprintf(buf, len,
			"synth:size=%s,seed=%" PRIu64 ",hot=%" PRIu64 ",rate=%" PRIu64
			",pattern=%s",
			size, s->seed, s->hot, s->rate, pattern_name(s->pattern));
}

/* ---- generator ---------------------------------------------------------- */

/* Page of write k >= 1, without stepping anything. */
static inline uint64_t page_of_write(uint64_t pattern, uint64_t seed, uint64_t hot, uint64_t k)
{
	if (pattern == FTR_SYNTH_SEQ)
		return 1 + (k - 1) % hot;
	return 1 + ftr_synth_mix(seed + k * FTR_SYNTH_GOLDEN) % hot;
}

void ftr_synth_gen_init(struct ftr_synth_gen *g, const struct ftr_synth_spec *s)
{
	g->spec = *s;
	g->npages = ftr_synth_npages(s);
	g->hot = ftr_synth_hot_pages(s);
	g->prng = s->seed;
	g->k = 0;
}

uint64_t ftr_synth_gen_step(struct ftr_synth_gen *g)
{
	uint64_t p;

	if (g->spec.pattern == FTR_SYNTH_SEQ)
		p = 1 + g->k % g->hot; /* write k+1: 1 + ((k+1) - 1) mod Hn */
	else
		p = 1 + ftr_synth_next(&g->prng) % g->hot;
	g->k++;
	return p;
}

/*
 * Same state as k calls of ftr_synth_gen_step(): splitmix64 advances its
 * state by GOLDEN per step, so k steps from S land on S + k * GOLDEN
 * (mod 2^64). seq never touches the PRNG.
 */
void ftr_synth_gen_seek(struct ftr_synth_gen *g, const struct ftr_synth_spec *s, uint64_t k)
{
	ftr_synth_gen_init(g, s);
	g->k = k;
	if (s->pattern != FTR_SYNTH_SEQ)
		g->prng = s->seed + k * FTR_SYNTH_GOLDEN;
}

void ftr_synth_fill_page(void *page, uint64_t p, uint64_t k, uint64_t seed)
{
	uint64_t *w = page;
	uint64_t base = k * FTR_SYNTH_GOLDEN;
	unsigned i;

	w[0] = htole64(FTR_SYNTH_DATA_MAGIC);
	w[1] = htole64(p);
	w[2] = htole64(k);
	w[3] = htole64(seed);
	/* Independent iterations: the multiplies pipeline, ~1 ns a word. */
	for (i = HDR_WORDS; i < WORDS; i++)
		w[i] = htole64(ftr_synth_mix(base + i));
}

void ftr_synth_fill_control(void *page, const struct ftr_synth_gen *g)
{
	uint64_t *w = page;

	memset(page, 0, PAGE);
	w[0] = htole64(FTR_SYNTH_CTRL_MAGIC);
	w[1] = htole64(g->k);
	w[2] = htole64(g->spec.seed);
	w[3] = htole64(g->npages);
	w[4] = htole64(g->hot);
	w[5] = htole64(g->spec.pattern == FTR_SYNTH_SEQ ? 1 : 0);
}

uint64_t ftr_synth_write(struct ftr_synth_gen *g, void *base)
{
	uint64_t *ctl = base;
	uint64_t p = ftr_synth_gen_step(g);

	ftr_synth_fill_page((char *)base + p * PAGE, p, g->k, g->spec.seed);
	/*
	 * Publish k only once the page is complete: a reader that sees k here
	 * (another thread, or the engine after pausing us) sees the whole
	 * page. Release is a plain store on x86; what matters is that the
	 * compiler cannot sink the page stores below it.
	 */
	__atomic_store_n(&ctl[1], htole64(g->k), __ATOMIC_RELEASE);
	return p;
}

void ftr_synth_init_image(struct ftr_synth_gen *g, void *base)
{
	ftr_synth_fill_control(base, g);
}

/* ---- oracle: fast paths --------------------------------------------------- */

struct synth_check {
	const uint64_t *img;
	uint64_t npages;	/* N */
	uint64_t hot;		/* Hn */
	uint64_t seed;		/* S */
	uint64_t pattern;
	uint64_t k;		/* writes completed, control w[1] */
	uint64_t *last;		/* random: last writer <= k of pages 1..Hn */
	struct ftr_synth_verdict *v;
};

static inline const uint64_t *page_at(const struct synth_check *c, uint64_t p)
{
	return c->img + p * WORDS;
}

/* Does w hold exactly write k to page p of seed S? */
static inline bool page_is_write(const uint64_t *w, uint64_t p, uint64_t k, uint64_t seed)
{
	uint64_t base = k * FTR_SYNTH_GOLDEN;
	uint64_t diff;
	unsigned i;

	diff = (w[0] ^ htole64(FTR_SYNTH_DATA_MAGIC)) | (w[1] ^ htole64(p)) |
	       (w[2] ^ htole64(k)) | (w[3] ^ htole64(seed));
	/* No early exit: a mismatch is rare, a branch per word is not free. */
	for (i = HDR_WORDS; i < WORDS; i++)
		diff |= w[i] ^ htole64(ftr_synth_mix(base + i));
	return diff == 0;
}

static inline bool page_is_zero(const uint64_t *w)
{
	uint64_t acc = 0;
	unsigned i;

	for (i = 0; i < WORDS; i++)
		acc |= w[i];
	return acc == 0;
}

/* Last write <= k to page p, 0 if none. */
static inline uint64_t last_writer(const struct synth_check *c, uint64_t p)
{
	if (p > c->hot)
		return 0;
	if (c->pattern == FTR_SYNTH_SEQ)
		return c->k >= p ? p + (c->k - p) / c->hot * c->hot : 0;
	return c->last[p];
}

/*
 * random: walk back from k; the first write met for a page is its last.
 * Stops once every hot page has one, so the cost is min(k, ~Hn ln Hn)
 * steps, not k, for a workload that ran long.
 */
static int find_last_writers(struct synth_check *c)
{
	uint64_t left = c->hot;
	uint64_t j;

	if (c->pattern == FTR_SYNTH_SEQ)
		return 0;
	/* Hn + 1 <= N = len / 4096 entries: bounded by the image, never by a
	 * number read from it. */
	c->last = calloc(c->hot + 1, sizeof(*c->last));
	if (!c->last)
		return -ENOMEM;
	for (j = c->k; j >= 1 && left; j--) {
		uint64_t p = page_of_write(FTR_SYNTH_RANDOM, c->seed, c->hot, j);

		if (!c->last[p]) {
			c->last[p] = j;
			left--;
		}
	}
	return 0;
}

/* ---- oracle: verdicts ----------------------------------------------------- */

static FTR_PRINTF(4, 5) bool verdict_fail(struct ftr_synth_verdict *v, uint64_t page,
					  uint64_t off, const char *fmt, ...)
{
	va_list ap;

	v->ok = false;
	v->bad_page = page;
	v->bad_offset = off;
	va_start(ap, fmt);
	vsnprintf(v->msg, sizeof(v->msg), fmt, ap);
	va_end(ap);
	return false;
}

/* Byte offset of the first difference between two pages (PAGE if none). */
static unsigned first_diff(const void *a, const void *b, unsigned from)
{
	const unsigned char *x = a, *y = b;
	unsigned i;

	for (i = from; i < PAGE; i++)
		if (x[i] != y[i])
			break;
	return i;
}

/* Inverse of x ^= x >> s. */
static uint64_t unxorshift(uint64_t y, unsigned s)
{
	uint64_t x = y;
	unsigned t;

	for (t = s; t < 64; t += s)
		x ^= y >> t;
	return x;
}

/* Multiplicative inverse of an odd number mod 2^64 (Newton: each step
 * doubles the correct low bits, starting from 3). */
static uint64_t inverse_odd(uint64_t a)
{
	uint64_t x = a;
	int i;

	for (i = 0; i < 5; i++)
		x *= 2 - a * x;
	return x;
}

static uint64_t unmix(uint64_t z)
{
	z = unxorshift(z, 31);
	z *= inverse_odd(0x94D049BB133111EBull);
	z = unxorshift(z, 27);
	z *= inverse_odd(0xBF58476D1CE4E5B9ull);
	return unxorshift(z, 30);
}

/* The write whose word i would be x (i >= 4). */
static uint64_t write_of_word(uint64_t x, unsigned i)
{
	return (unmix(x) - i) * inverse_odd(FTR_SYNTH_GOLDEN);
}

static bool check_control(struct synth_check *c, const struct ftr_synth_spec *expect,
			  uint64_t n)
{
	const uint64_t *w = c->img;
	struct ftr_synth_verdict *v = c->v;
	uint64_t magic = le64toh(w[0]);
	unsigned off;
	uint64_t i;

	if (magic != FTR_SYNTH_CTRL_MAGIC)
		return verdict_fail(v, 0, 0,
				    "control page: magic 0x%016" PRIx64 ", expected 0x%016llx (not a synth image?)",
				    magic, FTR_SYNTH_CTRL_MAGIC);
	c->k = v->k = le64toh(w[1]);
	c->seed = le64toh(w[2]);
	c->npages = le64toh(w[3]);
	c->hot = le64toh(w[4]);
	c->pattern = le64toh(w[5]);
	if (c->npages != n)
		return verdict_fail(v, 0, 24, "control page says %" PRIu64 " pages, image has %" PRIu64,
				    c->npages, n);
	if (c->hot < 1 || c->hot > n - 1)
		return verdict_fail(v, 0, 32,
				    "control page says %" PRIu64 " hot pages, must be 1..%" PRIu64,
				    c->hot, n - 1);
	if (c->pattern > FTR_SYNTH_SEQ)
		return verdict_fail(v, 0, 40,
				    "control page: pattern word %" PRIu64 ", must be 0 (random) or 1 (seq)",
				    c->pattern);
	if (expect) {
		if (ftr_synth_npages(expect) != n)
			return verdict_fail(v, 0, 24,
					    "control page says %" PRIu64 " pages, expected %" PRIu64,
					    n, ftr_synth_npages(expect));
		if (c->seed != expect->seed)
			return verdict_fail(v, 0, 16,
					    "control page says seed %" PRIu64 ", expected %" PRIu64,
					    c->seed, expect->seed);
		if (c->hot != ftr_synth_hot_pages(expect))
			return verdict_fail(v, 0, 32,
					    "control page says %" PRIu64 " hot pages, expected %" PRIu64,
					    c->hot, ftr_synth_hot_pages(expect));
		if (c->pattern != (uint64_t)expect->pattern)
			return verdict_fail(v, 0, 40,
					    "control page says pattern %s, expected %s",
					    pattern_name(c->pattern), pattern_name(expect->pattern));
	}
	for (i = CTRL_WORDS; i < WORDS; i++) {
		const unsigned char *b = (const void *)&w[i];

		if (!w[i])
			continue;
		for (off = 0; !b[off]; off++)
			;
		return verdict_fail(v, 0, (unsigned)i * 8 + off,
				    "control page byte %u: 0x%02x, but bytes %u-%u must be zero",
				    (unsigned)i * 8 + off, b[off], CTRL_WORDS * 8, PAGE - 1);
	}
	return true;
}

/*
 * The bad page holds one complete write other than the expected one: say
 * which. A page that is the expected write but for a header word (k2 ==
 * kexp) is a corrupted page, not another write, and so is one claiming a
 * write that went elsewhere while stamped with that other page.
 */
static bool describe_whole(const struct synth_check *c, uint64_t p, uint64_t kexp,
			   unsigned off)
{
	const uint64_t *w = page_at(c, p);
	struct ftr_synth_verdict *v = c->v;
	uint64_t p2 = le64toh(w[1]), k2 = le64toh(w[2]), s2 = le64toh(w[3]);
	char want[64];

	if (le64toh(w[0]) != FTR_SYNTH_DATA_MAGIC || k2 == kexp ||
	    !page_is_write(w, p2, k2, s2))
		return false;
	if (kexp)
		snprintf(want, sizeof(want), "last write <= k is %" PRIu64, kexp);
	else
		snprintf(want, sizeof(want), "not written by k=%" PRIu64, c->k);

	if (s2 != c->seed)
		verdict_fail(v, p, off,
			     "page %" PRIu64 ": holds write %" PRIu64 " to page %" PRIu64
			     " of another workload (seed %" PRIu64 ", not %" PRIu64 "; %s)",
			     p, k2, p2, s2, c->seed, want);
	else if (k2 == 0 || page_of_write(c->pattern, c->seed, c->hot, k2) != p2)
		verdict_fail(v, p, off,
			     "page %" PRIu64 ": holds a page stamped write %" PRIu64
			     " to page %" PRIu64 ", but write %" PRIu64 " went to page %" PRIu64
			     " (%s)", p, k2, p2, k2,
			     k2 ? page_of_write(c->pattern, c->seed, c->hot, k2) : 0, want);
	else if (p2 != p)
		verdict_fail(v, p, off,
			     "page %" PRIu64 ": holds write %" PRIu64 " of page %" PRIu64
			     " (misplaced; %s)", p, k2, p2, want);
	else if (k2 > c->k)
		verdict_fail(v, p, off,
			     "page %" PRIu64 ": holds write %" PRIu64 ", newer than k=%" PRIu64
			     " (%s)", p, k2, c->k, want);
	else
		verdict_fail(v, p, off, "page %" PRIu64 ": holds write %" PRIu64 " (stale; %s)",
			     p, k2, want);
	return true;
}

/*
 * Torn pages: split the page into runs of words by origin (the expected
 * write, zero, or another write identified from the word itself) and call
 * it torn when it is a few clean pieces. Words 0, 1 and 3 are the same in
 * every write of this page, so they join the piece that follows them.
 */
enum word_src { SRC_EXPECTED, SRC_ZERO, SRC_WRITE, SRC_SHARED, SRC_JUNK };

struct torn_run {
	enum word_src src;
	uint64_t k;		/* SRC_WRITE */
	unsigned first, last;	/* words */
	unsigned own;		/* words that are not SRC_SHARED */
};

#define TORN_MAX_RUNS 4

static enum word_src classify_word(const uint64_t *w, const uint64_t *exp, unsigned i,
				   uint64_t *k)
{
	if (w[i] == exp[i])
		return i < HDR_WORDS && i != 2 ? SRC_SHARED : SRC_EXPECTED;
	if (!w[i])
		return SRC_ZERO;
	if (i == 2) {
		*k = le64toh(w[i]);
		return SRC_WRITE;
	}
	if (i < HDR_WORDS)
		return SRC_JUNK;
	*k = write_of_word(le64toh(w[i]), i);
	return SRC_WRITE;
}

/* Fills runs[] back to front; returns the count, or 0 if not clean pieces. */
static int torn_runs(const uint64_t *w, const uint64_t *exp, struct torn_run *runs)
{
	int n = 0, i;

	for (i = WORDS - 1; i >= 0; i--) {
		uint64_t k = 0;
		enum word_src s = classify_word(w, exp, (unsigned)i, &k);

		if (s == SRC_JUNK)
			return 0;
		/* i < 4 for a shared word: words 4.. made a run already. */
		if (s == SRC_SHARED) {
			runs[n - 1].first = (unsigned)i;
			continue;
		}
		if (n && runs[n - 1].src == s && runs[n - 1].k == k) {
			runs[n - 1].first = (unsigned)i;
			runs[n - 1].own++;
			continue;
		}
		if (n == TORN_MAX_RUNS)
			return 0;
		runs[n++] = (struct torn_run){ .src = s, .k = k, .first = (unsigned)i,
					       .last = (unsigned)i, .own = 1 };
	}
	/* A lone word "from another write" is a corrupted word, not a piece. */
	for (i = 0; i < n; i++)
		if (runs[i].src == SRC_WRITE && runs[i].own < 2)
			return 0;
	return n >= 2 ? n : 0;
}

static bool describe_torn(const struct synth_check *c, uint64_t p, uint64_t kexp,
			  const uint64_t *exp, unsigned off)
{
	struct torn_run runs[TORN_MAX_RUNS];
	char pieces[160];
	size_t pos = 0;
	int n, i;

	n = torn_runs(page_at(c, p), exp, runs);
	if (!n)
		return false;
	for (i = n - 1; i >= 0 && pos < sizeof(pieces); i--) {
		const struct torn_run *r = &runs[i];
		char what[40];

		if (r->src == SRC_EXPECTED)
			snprintf(what, sizeof(what), "match");
		else if (r->src == SRC_ZERO)
			snprintf(what, sizeof(what), "are zero");
		else
			snprintf(what, sizeof(what), "hold write %" PRIu64, r->k);
		pos += (size_t)snprintf(pieces + pos, sizeof(pieces) - pos, "%s%u-%u %s",
					i == n - 1 ? "bytes " : ", ", r->first * 8,
					r->last * 8 + 7, what);
	}
	verdict_fail(c->v, p, off,
		     "page %" PRIu64 " byte %u: write %" PRIu64 " expected, page is torn (%s)",
		     p, off, kexp, pieces);
	return true;
}

static void describe_corrupt(const struct synth_check *c, uint64_t p, uint64_t kexp,
			     const uint64_t *exp, unsigned off)
{
	const unsigned char *a = (const void *)page_at(c, p), *e = (const void *)exp;
	unsigned i, last = off, count = 0;

	for (i = off; i < PAGE; i++) {
		if (a[i] != e[i]) {
			count++;
			last = i;
		}
	}
	if (count == 1)
		verdict_fail(c->v, p, off,
			     "page %" PRIu64 " byte %u: write %" PRIu64
			     " expected, 1 byte differs (0x%02x, expected 0x%02x)",
			     p, off, kexp, a[off], e[off]);
	else
		verdict_fail(c->v, p, off,
			     "page %" PRIu64 " byte %u: write %" PRIu64
			     " expected, %u bytes differ within bytes %u-%u",
			     p, off, kexp, count, off, last);
}

/* Page p is wrong: find out how, once, off the fast path. */
static void describe_bad_page(const struct synth_check *c, uint64_t p, uint64_t kexp)
{
	const uint64_t *w = page_at(c, p);
	uint64_t exp[WORDS];
	unsigned off;

	if (kexp)
		ftr_synth_fill_page(exp, p, kexp, c->seed);
	else
		memset(exp, 0, sizeof(exp));
	off = first_diff(w, exp, 0);
	if (describe_whole(c, p, kexp, off))
		return;
	if (!kexp) {
		verdict_fail(c->v, p, off,
			     "page %" PRIu64 " byte %u: never written (k=%" PRIu64
			     ") but not zero (0x%02x)",
			     p, off, c->k, ((const unsigned char *)w)[off]);
		return;
	}
	if (page_is_zero(w)) {
		verdict_fail(c->v, p, off,
			     "page %" PRIu64 ": all zero, but write %" PRIu64 " expected (lost)",
			     p, kexp);
		return;
	}
	if (!describe_torn(c, p, kexp, exp, off))
		describe_corrupt(c, p, kexp, exp, off);
}

static void check_data(struct synth_check *c)
{
	struct ftr_synth_verdict *v = c->v;
	uint64_t p, kp, written = 0;

	for (p = 1; p <= c->hot; p++) {
		kp = last_writer(c, p);
		if (unlikely(kp ? !page_is_write(page_at(c, p), p, kp, c->seed)
				: !page_is_zero(page_at(c, p))))
			goto bad;
		written += kp != 0;
	}
	/* Beyond the hot set nothing is ever written. */
	for (; p < c->npages; p++)
		if (unlikely(!page_is_zero(page_at(c, p))))
			goto bad;
	v->ok = true;
	v->pages = c->npages;
	snprintf(v->msg, sizeof(v->msg),
		 "ok: %" PRIu64 " pages, k=%" PRIu64 ", seed %" PRIu64 ", %s, hot %" PRIu64
		 ", %" PRIu64 " pages written",
		 c->npages, c->k, c->seed, pattern_name(c->pattern), c->hot, written);
	return;
bad:
	v->pages = p + 1;
	describe_bad_page(c, p, last_writer(c, p));
}

static int verdict_bad_length(struct ftr_synth_verdict *v, uint64_t len)
{
	if (len % PAGE) {
		verdict_fail(v, 0, 0, "image is %" PRIu64 " bytes, not a whole number of pages",
			     len);
		return -EINVAL;
	}
	/* Whole pages but too few: a verdict, not an error. */
	verdict_fail(v, 0, 0,
		     "image is %" PRIu64 " bytes: a synth image has at least 2 pages", len);
	return 0;
}

int ftr_synth_verify(const void *image, size_t len, const struct ftr_synth_spec *expect,
		     struct ftr_synth_verdict *v)
{
	struct synth_check c = { .img = image, .v = v };
	int ret;

	memset(v, 0, sizeof(*v));
	if (len % PAGE || len < 2 * PAGE)
		return verdict_bad_length(v, len);
	if ((uintptr_t)image % sizeof(uint64_t)) {
		verdict_fail(v, 0, 0, "image is not 8-byte aligned");
		return -EINVAL;
	}
	v->pages = 1;
	if (!check_control(&c, expect, len / PAGE))
		return 0;
	ret = find_last_writers(&c);
	if (ret) {
		verdict_fail(v, 0, 0, "out of memory for %" PRIu64 " hot pages", c.hot);
		return ret;
	}
	check_data(&c);
	free(c.last);
	return 0;
}

int ftr_synth_verify_file(const char *path, const struct ftr_synth_spec *expect,
			  struct ftr_synth_verdict *v)
{
	struct stat st;
	void *map;
	int fd, ret;

	memset(v, 0, sizeof(*v));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		verdict_fail(v, 0, 0, "%s: %s", path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		verdict_fail(v, 0, 0, "%s: %s", path, strerror(-ret));
		goto out_close;
	}
	if (st.st_size % PAGE || st.st_size < 2 * PAGE) {
		ret = verdict_bad_length(v, (uint64_t)st.st_size);
		goto out_close;
	}
	/* Populate up front: one pass over the file instead of a fault per
	 * page, which is what costs most under a hypervisor. */
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (map == MAP_FAILED) {
		ret = -errno;
		verdict_fail(v, 0, 0, "%s: mmap: %s", path, strerror(-ret));
		goto out_close;
	}
	ret = ftr_synth_verify(map, (size_t)st.st_size, expect, v);
	munmap(map, (size_t)st.st_size);
out_close:
	close(fd);
	return ret;
}

int ftr_synth_spec_from_image(const void *image, size_t len, struct ftr_synth_spec *spec,
			      uint64_t *k)
{
	const uint64_t *w = image;
	uint64_t n, hot, pattern;

	if (len < 2 * PAGE || len % PAGE || le64toh(w[0]) != FTR_SYNTH_CTRL_MAGIC)
		return -EINVAL;
	n = le64toh(w[3]);
	hot = le64toh(w[4]);
	pattern = le64toh(w[5]);
	if (n != len / PAGE || hot < 1 || hot > n - 1 || pattern > FTR_SYNTH_SEQ)
		return -EINVAL;
	memset(spec, 0, sizeof(*spec));
	spec->size = len;
	spec->seed = le64toh(w[2]);
	spec->hot = hot;
	spec->pattern = (enum ftr_synth_pattern)pattern;
	if (k)
		*k = le64toh(w[1]);
	return 0;
}
