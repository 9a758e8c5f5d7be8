/* SPDX-License-Identifier: MIT */
/*
 * The synthetic workload and its oracle (DESIGN.md, "The synthetic
 * workload and its oracle"). Every consistent image of the workload can be
 * recomputed exactly, so any image (a dump, the standby's cache, a
 * migrated region) can be checked byte for byte.
 *
 * Spec string: "synth:size=SIZE,seed=S,hot=H,rate=R,pattern=random|seq"
 * (every key optional; defaults size=64M, seed=1, hot=N-1, rate=0,
 * pattern=random; "synth" alone is the default workload).
 */
#ifndef FTREPL_SYNTH_H
#define FTREPL_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FTR_SYNTH_PAGE 4096u
#define FTR_SYNTH_WORDS (FTR_SYNTH_PAGE / 8)
#define FTR_SYNTH_DATA_MAGIC 0x4547415045525446ull /* w[0] of a data page */
#define FTR_SYNTH_CTRL_MAGIC 0x0A4C544345525446ull /* w[0] of the control page */
#define FTR_SYNTH_GOLDEN 0x9E3779B97F4A7C15ull
#define FTR_SYNTH_DEFAULT_SIZE (64ull << 20)

enum ftr_synth_pattern {
	FTR_SYNTH_RANDOM = 0,
	FTR_SYNTH_SEQ = 1,
};

struct ftr_synth_spec {
	uint64_t size;	  /* bytes; multiple of 4096, at least 2 pages */
	uint64_t seed;	  /* S */
	uint64_t hot;	  /* H as given; 0 = default (N-1) */
	uint64_t rate;	  /* writes per second, 0 = as fast as possible */
	enum ftr_synth_pattern pattern;
};

/* Derived numbers of a spec. */
static inline uint64_t ftr_synth_npages(const struct ftr_synth_spec *s)
{
	return s->size / FTR_SYNTH_PAGE;
}
/* Hn = min(H, N-1), with H = 0 meaning N-1. */
uint64_t ftr_synth_hot_pages(const struct ftr_synth_spec *s);

/* Parses a spec string (with or without the "synth:" prefix; an empty
 * string or "synth" gives the defaults). Sizes take K/M/G/T suffixes.
 * Returns 0, or -EINVAL with one line in err naming the bad key or value. */
int ftr_synth_parse(const char *str, struct ftr_synth_spec *out, char *err,
		    size_t errlen);
/* Formats a spec as a canonical string that ftr_synth_parse() reads back.
 * Returns the length written (snprintf semantics). */
int ftr_synth_format(const struct ftr_synth_spec *s, char *buf, size_t len);

/* splitmix64 output function and generator step (exactly as DESIGN.md). */
static inline uint64_t ftr_synth_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static inline uint64_t ftr_synth_next(uint64_t *state)
{
	*state += FTR_SYNTH_GOLDEN;
	return ftr_synth_mix(*state);
}

/* The writer's position: the next write is k + 1. */
struct ftr_synth_gen {
	struct ftr_synth_spec spec;
	uint64_t npages; /* N */
	uint64_t hot;	 /* Hn */
	uint64_t prng;	 /* splitmix64 state, starts at S */
	uint64_t k;	 /* writes completed */
};

/* Starts a generator at k = 0. The spec must be valid (as ftr_synth_parse
 * returns it: size >= 8K, so Hn >= 1); the step functions do not check. */
void ftr_synth_gen_init(struct ftr_synth_gen *g, const struct ftr_synth_spec *s);
/* Advances to write k + 1 and returns its page p (1 .. Hn); g->k becomes k + 1.
 * Does not touch memory. */
uint64_t ftr_synth_gen_step(struct ftr_synth_gen *g);
/* Fills one 4096-byte page with the content of write k to page p. */
void ftr_synth_fill_page(void *page, uint64_t p, uint64_t k, uint64_t seed);
/* Writes the control page for k writes completed (all six words; the rest
 * of the page is zero). */
void ftr_synth_fill_control(void *page, const struct ftr_synth_gen *g);
/* Performs the next write on the image at base (size bytes = spec size):
 * the data page, then the control page's w[1]. Returns the page written. */
uint64_t ftr_synth_write(struct ftr_synth_gen *g, void *base);
/* Makes base the image at k = 0: control page filled, data pages zero.
 * (base must be zeroed memory, e.g. a fresh memfd; only page 0 is written.) */
void ftr_synth_init_image(struct ftr_synth_gen *g, void *base);
/* Recreates a generator positioned after k writes. O(1): the splitmix64
 * state after k steps is S + k * FTR_SYNTH_GOLDEN. */
void ftr_synth_gen_seek(struct ftr_synth_gen *g, const struct ftr_synth_spec *s,
			uint64_t k);

/* ---- oracle -------------------------------------------------------------- */
struct ftr_synth_verdict {
	bool ok;
	uint64_t k;		/* control page w[1] */
	uint64_t pages;		/* pages checked */
	uint64_t bad_page;	/* first wrong page (valid when !ok) */
	uint64_t bad_offset;	/* byte offset in that page of the first difference */
	char msg[256];		/* one line: what is wrong, or a summary */
};

/*
 * Checks that image[0..len) is a consistent image of the synthetic workload.
 * expect may be NULL: then the spec is read from the control page (S, N,
 * Hn, pattern); otherwise the control page must match expect as well.
 * Returns 0 when the check ran (verdict in *v, v->ok says if it passed;
 * an image of fewer than 2 pages is a failed verdict), -EINVAL when len is
 * not a whole number of pages or image is not 8-byte aligned, -ENOMEM.
 * v->msg is filled on every path, errors included.
 */
int ftr_synth_verify(const void *image, size_t len,
		     const struct ftr_synth_spec *expect,
		     struct ftr_synth_verdict *v);

/* Reads the spec (size, seed, hot, pattern; rate 0) and k from an image's
 * control page, e.g. to continue the workload on a resumed image with
 * ftr_synth_gen_seek(). Returns 0 or -EINVAL (not a plausible control page). */
int ftr_synth_spec_from_image(const void *image, size_t len, struct ftr_synth_spec *spec,
			      uint64_t *k);

/* Verifies a file (a dump) by mapping it read-only. Same returns, plus
 * -errno from open/mmap. */
int ftr_synth_verify_file(const char *path, const struct ftr_synth_spec *expect,
			  struct ftr_synth_verdict *v);

#ifdef __cplusplus
}
#endif
#endif
