// SPDX-License-Identifier: MIT
/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * every wire record and, when negotiated, of every page payload.
 *
 * Three implementations, chosen once at run time by what the CPU has:
 * carry-less multiplication folding 256 bytes per step (AVX-512 with
 * VPCLMULQDQ), the SSE4.2 crc32 instruction (8 bytes per step, in three
 * interleaved chains on long buffers), and a slicing-by-8 table walk for
 * everything else. All give identical results; the unit tests run each one
 * this CPU has against the known answer CRC32C("123456789") == 0xE3069283
 * and lengths and alignments around every step against a bitwise
 * reference.
 *
 * Convention: ftr_crc32c(0, buf, len) is the CRC of buf; passing a previous
 * result as crc continues it, so crc(a||b) == crc32c(crc32c(0,a), b).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <ftrepl/ftrepl.h>

#include "common/common.h"

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ ((c & 1) ? CRC32C_POLY : 0);
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
					  crc_table[0][crc_table[t - 1][i] & 0xff];
}

/* Table walk on the raw (pre-inverted) register. */
static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t len)
{
	pthread_once(&table_once, crc_table_init);
	while (len && ((uintptr_t)p & 7)) {
		c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
		w = __builtin_bswap64(w); /* the walk consumes bytes in LE order */
#endif
		w ^= c;
		c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
	return c;
}

#if defined(__x86_64__)
/*
 * The crc32 instruction takes 3 cycles but can start one every cycle, so
 * one dependent chain runs at a third of the unit's speed. Long buffers are
 * cut into three blocks of CRC_BLK bytes whose CRCs run as three
 * independent chains in one loop, then join: the register is linear, so
 * crc(c, A||B) = shift(crc(c, A)) ^ crc(0, B), where shift() is the effect
 * of CRC_BLK zero bytes on a register - a fixed 32x32 bit matrix, applied
 * here through four 256-entry tables. 3 x 1360 = 4080: a 4 KiB page is one
 * three-way step and a 16-byte tail.
 */
#define CRC_BLK 1360u

static uint32_t crc_blk_shift[4][256];

__attribute__((target("sse4.2")))
static uint32_t crc_hw_chain(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64;

	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi(c, *p++);
		len--;
	}
	c64 = c;
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c64 = __builtin_ia32_crc32di(c64, w);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}

/* The raw register after CRC_BLK more zero bytes. */
static uint32_t crc_shift_blk(uint32_t c)
{
	return crc_blk_shift[0][c & 0xff] ^ crc_blk_shift[1][(c >> 8) & 0xff] ^
	       crc_blk_shift[2][(c >> 16) & 0xff] ^ crc_blk_shift[3][c >> 24];
}

/* Column j of the matrix is the shift of the single bit j; a table entry
 * is the XOR of the columns of its byte's bits. */
static void crc_blk_init(void)
{
	static const uint8_t zeros[CRC_BLK];
	uint32_t col[32];

	for (int j = 0; j < 32; j++)
		col[j] = crc_hw_chain(1u << j, zeros, CRC_BLK);
	for (int k = 0; k < 4; k++) {
		for (uint32_t v = 0; v < 256; v++) {
			uint32_t x = 0;

			for (int b = 0; b < 8; b++)
				if (v & (1u << b))
					x ^= col[8 * k + b];
			crc_blk_shift[k][v] = x;
		}
	}
}

__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
	while (len >= 3 * CRC_BLK) {
		uint64_t a = c, b = 0, d = 0;

		/* Three streams defeat the hardware prefetcher within a page:
		 * ask for every line of the step first (from memory, 7 GB/s
		 * without this, 20 with; the single chain does 9.7). */
		for (size_t i = 0; i < 3 * CRC_BLK; i += 64)
			__builtin_prefetch(p + i);
		for (size_t i = 0; i < CRC_BLK; i += 8) {
			uint64_t w0, w1, w2;

			memcpy(&w0, p + i, 8);
			memcpy(&w1, p + CRC_BLK + i, 8);
			memcpy(&w2, p + 2 * CRC_BLK + i, 8);
			a = __builtin_ia32_crc32di(a, w0);
			b = __builtin_ia32_crc32di(b, w1);
			d = __builtin_ia32_crc32di(d, w2);
		}
		c = crc_shift_blk((uint32_t)a) ^ (uint32_t)b;
		c = crc_shift_blk(c) ^ (uint32_t)d;
		p += 3 * CRC_BLK;
		len -= 3 * CRC_BLK;
	}
	return crc_hw_chain(c, p, len);
}

/*
 * Folding (AVX-512 + VPCLMULQDQ). In the reflected bit order a 16-byte
 * block B is a polynomial of degree < 128 whose byte 0 bit 0 is the top
 * coefficient; the raw register after a message M is M * x^32 mod P, so
 * two messages congruent mod P (as polynomials of the same length) have
 * the same CRC. Moving a block forward by D bits and XORing it into the
 * block there keeps the message congruent: B * x^D mod P is the carry-less
 * product of B's low qword (its top 64 coefficients) with x^(D+31) mod P
 * and of its high qword with x^(D-33) mod P, constants reflected to 32 bits
 * (the exponents carry the 64-bit half's position and the one-bit offset
 * of reflected products; the unit tests hold them to the reference). Each
 * 512-bit register holds four consecutive blocks, four registers one
 * 256-byte step: every block folds 2048 bits forward per step. At the end
 * the 16 blocks of the last step fold onto the last one, then whole
 * 16-byte blocks, and the crc32 instruction finishes: the raw CRC of the
 * folded block from 0, continued over the tail (under 16 bytes).
 * The caller's register is XORed into the first 4 bytes, which is what
 * starting the register there does.
 */
#define CRC_FOLD_STEP 256u
#define CRC_POLY_NORMAL 0x1EDC6F41u	/* CRC32C's polynomial, x^32 implied */

static uint64_t fold_k[CRC_FOLD_STEP / 16 + 1][2];	/* [n]: fold by n blocks */
/* The last step's register i holds blocks 4i..4i+3, each folded onto block
 * 15 (by 15 - j blocks); block 15 itself stays as it is (no constant). */
static uint64_t fold_fin[4][8] __attribute__((aligned(64)));

/* x^n mod P (normal bit order: bit i is the coefficient of x^i). */
static uint32_t xpow_mod(unsigned n)
{
	uint32_t r = 1;

	while (n--)
		r = (r << 1) ^ ((r >> 31) ? CRC_POLY_NORMAL : 0);
	return r;
}

static uint32_t reflect32(uint32_t v)
{
	uint32_t r = 0;

	for (int i = 0; i < 32; i++)
		if (v & (1u << i))
			r |= 1u << (31 - i);
	return r;
}

static void crc_fold_init(void)
{
	for (unsigned n = 1; n <= CRC_FOLD_STEP / 16; n++) {
		fold_k[n][0] = reflect32(xpow_mod(128 * n + 31));
		fold_k[n][1] = reflect32(xpow_mod(128 * n - 33));
	}
	for (unsigned j = 0; j < CRC_FOLD_STEP / 16 - 1; j++) {
		fold_fin[j / 4][2 * (j % 4)] = fold_k[15 - j][0];
		fold_fin[j / 4][2 * (j % 4) + 1] = fold_k[15 - j][1];
	}
}

#define FOLD_TARGET __attribute__((target("sse4.2,pclmul,avx512f,avx512vl,vpclmulqdq")))

FOLD_TARGET static inline __m128i fold_k128(unsigned n)
{
	return _mm_set_epi64x((long long)fold_k[n][1], (long long)fold_k[n][0]);
}

/* The four blocks of x folded forward by k's distance onto the four at p. */
FOLD_TARGET static inline __m512i fold_onto(__m512i x, __m512i k, const uint8_t *p)
{
	return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
					 _mm512_clmulepi64_epi128(x, k, 0x11),
					 _mm512_loadu_si512(p), 0x96);
}

/* Register i of the last step folded onto block 15 (fold_fin[i]; block 15,
 * the last lane of register 3, is kept as it is). */
FOLD_TARGET static inline __m512i fold_last(__m512i x, unsigned i)
{
	__m512i k = _mm512_load_si512(fold_fin[i]);
	__m512i kept = _mm512_maskz_mov_epi64(i == 3 ? 0xC0 : 0, x);

	return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
					 _mm512_clmulepi64_epi128(x, k, 0x11), kept, 0x96);
}

FOLD_TARGET static uint32_t crc_fold(uint32_t c, const uint8_t *p, size_t len)
{
	__m512i x0, x1, x2, x3, k, a;
	__m128i x, k1;
	uint64_t r;

	if (len < CRC_FOLD_STEP)
		return crc_hw(c, p, len);
	x0 = _mm512_xor_si512(_mm512_loadu_si512(p),
			      _mm512_castsi128_si512(_mm_cvtsi32_si128((int)c)));
	x1 = _mm512_loadu_si512(p + 64);
	x2 = _mm512_loadu_si512(p + 128);
	x3 = _mm512_loadu_si512(p + 192);
	p += CRC_FOLD_STEP;
	len -= CRC_FOLD_STEP;
	k = _mm512_broadcast_i32x4(fold_k128(CRC_FOLD_STEP / 16));
	while (len >= CRC_FOLD_STEP) {
		x0 = fold_onto(x0, k, p);
		x1 = fold_onto(x1, k, p + 64);
		x2 = fold_onto(x2, k, p + 128);
		x3 = fold_onto(x3, k, p + 192);
		p += CRC_FOLD_STEP;
		len -= CRC_FOLD_STEP;
	}
	/* block j of the step (0..15) onto block 15: by 15 - j blocks */
	a = _mm512_ternarylogic_epi64(fold_last(x0, 0), fold_last(x1, 1), fold_last(x2, 2), 0x96);
	a = _mm512_xor_si512(a, fold_last(x3, 3));
	x = _mm_xor_si128(_mm_xor_si128(_mm512_extracti32x4_epi32(a, 0),
					_mm512_extracti32x4_epi32(a, 1)),
			  _mm_xor_si128(_mm512_extracti32x4_epi32(a, 2),
					_mm512_extracti32x4_epi32(a, 3)));
	k1 = fold_k128(1);
	while (len >= 16) {
		x = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k1, 0x00),
						_mm_clmulepi64_si128(x, k1, 0x11)),
				  _mm_loadu_si128((const __m128i *)p));
		p += 16;
		len -= 16;
	}
	r = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
	r = _mm_crc32_u64(r, (uint64_t)_mm_extract_epi64(x, 1));
	return crc_hw_chain((uint32_t)r, p, len);
}

static bool have_fold(void)
{
	return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul") &&
	       __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
	       __builtin_cpu_supports("vpclmulqdq");
}

static uint32_t (*resolve_crc(void))(uint32_t, const uint8_t *, size_t)
{
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("sse4.2"))
		return crc_sw;
	crc_blk_init();
	if (!have_fold())
		return crc_hw;
	crc_fold_init();
	return crc_fold;
}

/* By name, other than "auto" (after resolve_crc(): its tables are built). */
static uint32_t (*impl_named(const char *name))(uint32_t, const uint8_t *, size_t)
{
	if (!strcmp(name, "table"))
		return crc_sw;
	if (!strcmp(name, "sse4.2") && __builtin_cpu_supports("sse4.2"))
		return crc_hw;
	if (!strcmp(name, "vpclmulqdq") && have_fold())
		return crc_fold;
	return NULL;
}
#else
static uint32_t (*resolve_crc(void))(uint32_t, const uint8_t *, size_t)
{
	return crc_sw;
}

static uint32_t (*impl_named(const char *name))(uint32_t, const uint8_t *, size_t)
{
	return strcmp(name, "table") ? NULL : crc_sw;
}
#endif

static uint32_t (*crc_impl)(uint32_t, const uint8_t *, size_t);
static uint32_t (*crc_best)(uint32_t, const uint8_t *, size_t);	/* "auto" */
static pthread_once_t impl_once = PTHREAD_ONCE_INIT;

static void impl_init(void)
{
	crc_best = resolve_crc();
	crc_impl = crc_best;
}

uint32_t ftr_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&impl_once, impl_init);
	return ~crc_impl(~crc, buf, len);
}

int ftr_crc32c_use(const char *name)
{
	uint32_t (*f)(uint32_t, const uint8_t *, size_t);

	pthread_once(&impl_once, impl_init);	/* every table the others need */
	f = strcmp(name, "auto") ? impl_named(name) : crc_best;
	if (!f)
		return -EOPNOTSUPP;
	crc_impl = f;
	return 0;
}
