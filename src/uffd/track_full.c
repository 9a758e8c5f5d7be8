/* SPDX-License-Identifier: MIT */
/*
 * The "full" dirty tracker: every page is dirty at every harvest. No state,
 * no kernel feature; the baseline the others are measured against, and the
 * right choice when nearly everything is rewritten each epoch anyway.
 */
#include "uffd/track_impl.h"

static int full_start(struct ftr_track *t, const struct ftr_kprobe *kp, int uffd,
		      char *err, size_t errlen)
{
	return 0;
}

static int full_harvest(struct ftr_track *t, uint64_t **dirty)
{
	for (unsigned r = 0; r < t->nregions; r++)
		ftr_bitmap_set_range(dirty[r], 0, t->npages[r]);
	return 0;
}

static void full_stop(struct ftr_track *t)
{
}

const struct ftr_track_ops ftr_track_full_ops = {
	.name = "full",
	.kind = FTR_TRACK_FULL,
	.size = sizeof(struct ftr_track),
	.start = full_start,
	.harvest = full_harvest,
	.stop = full_stop,
};
