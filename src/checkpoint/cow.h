/* SPDX-License-Identifier: MIT */
/*
 * The `cow` snapshot strategy: the pause is only the harvest. The pages of
 * the epoch are write-protected (userfaultfd, synchronous WP) while the
 * workload is paused, the workload resumes, and the pages are sent from
 * the live region. A write to a page not yet sent faults; the fault
 * handler copies the page aside first, then lets the write through. So
 * what is sent for epoch e is exactly memory at the instant of e's pause:
 * either the untouched live page or its copy set aside before the first
 * write after the pause.
 *
 * Page states (per page, under the cow lock):
 *   idle -> armed (protected, unsent) -> sending (claimed by the sender:
 *   it stays protected until the kernel has the bytes) -> idle
 *   armed -> copied (a writer faulted first: the sender sends the copy)
 *
 * The protection uses its own userfaultfd (dirty tracking by the workload,
 * scan or full), or shares the wp-sync tracker's (ftr_cow_create_tracked).
 * wp-async cannot pair with cow: its write faults are resolved inside the
 * kernel, so nothing could copy a page aside before the write.
 */
#ifndef FTR_COW_H
#define FTR_COW_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint/workload.h"

struct ftr_cow;
struct ftr_track;

/* Registers the regions for write-protect faults and starts the handler
 * thread. pool_pages bounds the pages one epoch can set aside (the epoch's
 * page limit). Returns 0 or -errno with err. */
int ftr_cow_create(const struct ftr_region *regs, uint32_t nregions, uint32_t page_size,
		   uint64_t pool_pages, struct ftr_cow **out, char *err, size_t errlen);
/* The same on the userfaultfd of a wp-sync dirty tracker (one uffd per
 * region is all the kernel allows): no handler thread or uffd of its own,
 * arming costs no ioctl (the tracker's harvest re-protected the epoch's
 * pages), and released pages stay protected unless a writer waits on them.
 * Destroy it before the tracker. */
int ftr_cow_create_tracked(const struct ftr_region *regs, uint32_t nregions,
			   uint32_t page_size, uint64_t pool_pages, struct ftr_track *t,
			   struct ftr_cow **out, char *err, size_t errlen);
/* Stops the handler, unprotects everything, unregisters, frees. */
void ftr_cow_destroy(struct ftr_cow *c);

/* With the workload paused: protects every page set in maps and marks it
 * unsent. Returns 0 or -errno. */
int ftr_cow_arm(struct ftr_cow *c, uint64_t *const *maps);
/* Before sending a page: where to send it from (the live page, now claimed,
 * or the copy a writer caused). */
const void *ftr_cow_claim(struct ftr_cow *c, uint32_t region, uint64_t page);
/* The claimed pages have been handed to the kernel: unprotect them (any
 * writer waiting on them continues). */
void ftr_cow_release(struct ftr_cow *c);
/* End of the epoch: releases what is left and resets the copy pool. */
void ftr_cow_finish(struct ftr_cow *c);

/* The copy pool (where claimed copies live), for registering it with a
 * transport. */
void ftr_cow_pool(struct ftr_cow *c, void **base, size_t *len);

/* Pages copied aside and write faults handled, since create. */
void ftr_cow_stats(struct ftr_cow *c, uint64_t *copied, uint64_t *faults);

#endif
