/* SPDX-License-Identifier: MIT */
/*
 * What the primary's epoch engine needs from a workload: its regions, a
 * pause at a safe point, the dirty set of the epoch, and its state blob.
 *
 * A workload is one file filling a `static const struct ftr_workload_ops`
 * (the in-process synthetic workload today; attached processes and VMs
 * later). Pause/resume and harvest are called by the engine thread only.
 */
#ifndef FTR_WORKLOAD_H
#define FTR_WORKLOAD_H

#include <stdint.h>
#include <sys/types.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/wire.h>

struct ftr_region {
	void *base;	/* mapping in this process */
	uint64_t size;	/* bytes, multiple of page_size */
	int fd;		/* backing memfd/file, -1 if none */
	char name[FTR_WIRE_REGION_NAME];
};

struct ftr_workload_ops {
	const char *name;
	/* Starts running (e.g. the writer thread). */
	int (*start)(struct ftr_workload *wl);
	/* Quiesces at a safe point within timeout_ms; 0 or -ETIMEDOUT/-errno. */
	int (*pause)(struct ftr_workload *wl, int timeout_ms);
	void (*resume)(struct ftr_workload *wl);
	/* While paused: ORs the pages written since the last harvest into
	 * maps[r] (one bitmap per region) and re-arms tracking. Returns the
	 * number of pages harvested or -errno. */
	int64_t (*harvest)(struct ftr_workload *wl, uint64_t **maps);
	/* While paused: the state blob of this instant. Returns its length or
	 * -errno (-ENOSPC if cap is too small). */
	ssize_t (*blob)(struct ftr_workload *wl, void *buf, size_t cap);
	/* The engine's dirty budget: when `soft` pages are dirty the workload
	 * asks for an early epoch (writes to the cut eventfd); at `hard` it
	 * stops itself until the next harvest, so no epoch exceeds `hard`. */
	void (*set_dirty_limits)(struct ftr_workload *wl, uint64_t soft, uint64_t hard);
	/* Optional (NULL = none). Output commit (DESIGN.md guarantee 2):
	 * epoch_cut: called while paused, after the harvest: the state at this
	 *   pause is epoch `epoch`; outputs produced before it belong to it.
	 * acked: the standby committed `epoch` (called from the control reader
	 *   thread, in epoch order): outputs of epochs <= epoch may be released.
	 * session_lost: the session failed (the standby may take over):
	 *   outputs not yet released must be dropped, never released. */
	void (*epoch_cut)(struct ftr_workload *wl, uint64_t epoch);
	void (*acked)(struct ftr_workload *wl, uint64_t epoch);
	void (*session_lost)(struct ftr_workload *wl, const char *why);
	/* Progress counter for status (writes done), or 0. */
	uint64_t (*progress)(struct ftr_workload *wl);
	void (*stop)(struct ftr_workload *wl);
	void (*destroy)(struct ftr_workload *wl);
};

#define FTR_MAX_REGIONS FTR_WIRE_MAX_REGIONS

struct ftr_workload {
	const struct ftr_workload_ops *ops;
	uint32_t page_size;
	uint32_t nregions;
	struct ftr_region regions[FTR_MAX_REGIONS];
	/* Readable when the workload wants an early epoch (eventfd). */
	int cut_fd;
};

#endif
