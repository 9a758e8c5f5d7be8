/* SPDX-License-Identifier: MIT */
/*
 * The key-value table of the kvserver example, shared with kvload's
 * checker: a fixed-size open-addressing hash table (linear probing) that
 * fills one protected region, so the region's bytes are the server's whole
 * state and a dumped image can be checked without the server.
 *
 * Layout (little-endian host, as the image is read on the same kind of
 * machine): page 0 holds struct kv_header, then nslots slots of 64 bytes.
 */
#ifndef KVTABLE_H
#define KVTABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define KV_MAGIC 0x3142415456564b46ull /* "FKVVTAB1" */
#define KV_HEADER_BYTES 4096
#define KV_KEY_MAX 27
#define KV_VAL_MAX 32

struct kv_header {
	uint64_t magic;
	uint64_t nslots;
	uint64_t count;	/* slots in use */
	uint64_t sets;	/* SET requests applied */
};

struct kv_slot {
	uint8_t used;
	uint8_t klen;
	uint8_t vlen;
	uint8_t pad;
	char key[KV_KEY_MAX + 1];
	char val[KV_VAL_MAX];
};

_Static_assert(sizeof(struct kv_slot) == 64, "a slot is 64 bytes");

static inline uint64_t kv_region_bytes(uint64_t nslots)
{
	return KV_HEADER_BYTES + nslots * sizeof(struct kv_slot);
}

static inline struct kv_slot *kv_slots(struct kv_header *h)
{
	return (struct kv_slot *)((char *)h + KV_HEADER_BYTES);
}

/* FNV-1a, then splitmix64's finalizer to spread it. */
static inline uint64_t kv_hash(const char *k, size_t n)
{
	uint64_t z = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		z = (z ^ (uint8_t)k[i]) * 0x100000001b3ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* The slot holding key, or the empty slot where it would go (*found
 * false), or NULL when the table is full and the key absent. */
static inline struct kv_slot *kv_find(struct kv_header *h, const char *k, size_t klen,
				      bool *found)
{
	struct kv_slot *s = kv_slots(h);
	uint64_t i = kv_hash(k, klen) % h->nslots;

	*found = false;
	for (uint64_t n = 0; n < h->nslots; n++, i = (i + 1) % h->nslots) {
		if (!s[i].used)
			return &s[i];
		if (s[i].klen == klen && !memcmp(s[i].key, k, klen)) {
			*found = true;
			return &s[i];
		}
	}
	return NULL;
}

/* The value kvload stores under a key (and the checker expects there). */
static inline size_t kv_value_for(const char *k, size_t klen, char out[KV_VAL_MAX + 1])
{
	return (size_t)snprintf(out, KV_VAL_MAX + 1, "v%016llx-%02u",
				(unsigned long long)kv_hash(k, klen) ^ 0x5bd1e9955bd1e995ull,
				(unsigned)(klen % 100));
}

#endif
