// SPDX-License-Identifier: MIT
/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * every wire record and, when negotiated, of every page payload.
 *
 * Two implementations: the SSE4.2 crc32 instruction (8 bytes per step,
 * chosen once at run time when the CPU has it) and a slicing-by-8 table
 * walk for everything else. Both give identical results; the unit tests
 * check the known answer CRC32C("123456789") == 0xE3069283.
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
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
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

static uint32_t (*resolve_crc(void))(uint32_t, const uint8_t *, size_t)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("sse4.2") ? crc_hw : crc_sw;
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
