/* SPDX-License-Identifier: MIT */
/*
 * The userfaultfd fault server: serves the page faults of a (possibly
 * other) process from a page source, faults first, and optionally pushes
 * every remaining page in background.
 *
 * Users inside libftrepl:
 *   - failover resume, shared mode: the workload maps the standby's cache
 *     memfd registered MINOR; the source's prepare() applies a pending page
 *     from staging into the cache, then the server issues UFFDIO_CONTINUE;
 *   - failover resume, anonymous mode, and postcopy migration: the workload
 *     registers its own memory MISSING and passes the uffd over; the
 *     source's read() fills pages (from cache/staging, or from the primary
 *     over the network: slow and asynchronous), then UFFDIO_COPY.
 *
 * Threads (both created by ftr_fs_start, both stopped by ftr_fs_stop
 * through an eventfd, never cancelled):
 *   fault thread       polls the uffd, a stop eventfd and optionally the
 *                      target's pidfd; reads uffd_msg in batches, applies
 *                      REMOVE/UNMAP/REMAP events, serves
 *                      faults at once (contiguous faulted pages plus a small
 *                      prefault window are installed with one ioctl).
 *   background thread  (opts.background) pushes the pages not yet resident,
 *                      outwards from the most recent fault, with an adaptive
 *                      chunk: it grows while copies are fast, drops to the
 *                      minimum as soon as faults are waiting, and waits for
 *                      the fault thread to go idle before the next chunk.
 *                      Each background ioctl is bounded (opts.max_chunk_pages)
 *                      so a fault never queues behind a long copy.
 * A residency bitmap keeps the two from installing a page twice, except
 * for one deliberate case: a faulted page that the background is installing
 * right now is installed by the fault thread too (rather than making the
 * fault wait for the whole chunk); the second ioctl ends in EEXIST, which is
 * benign (count it, wake the faulting thread, go on).
 *
 * Liveness contract for the faulting side. A fault that the server never
 * resolves blocks its thread until someone resolves it. When the server
 * stops on an error it keeps its reference on the uffd, on purpose: if the
 * last reference to a uffd is closed, the kernel unregisters the ranges and
 * resolves every blocked and future fault with a zero page (anonymous
 * memory) or the stale page-cache page (shmem) - silently wrong data. So:
 *   - the side that owns the workload must treat the server's death as fatal
 *     for the workload (kill it, or have it raise SIGBUS), never just close
 *     the uffd and carry on;
 *   - opts.poison_on_error makes the server do the SIGBUS part itself: on a
 *     fatal error it UFFDIO_POISONs every page not yet resident, which wakes
 *     the blocked threads and makes any access to such a page raise SIGBUS
 *     (Linux >= 6.6; the registering side may ask for UFFD_FEATURE_POISON
 *     in its UFFDIO_API, though on this machine's 6.18 the ioctl works
 *     without it).
 *
 * Events (only delivered if the registering side enabled the feature bit in
 * its UFFDIO_API; while such an event is unread the target's madvise/munmap/
 * mremap blocks, so keep the server running while the target runs):
 *   UFFD_EVENT_REMOVE  (madvise DONTNEED/REMOVE) the pages become
 *                      not-resident; their next access faults again and is
 *                      served from the source again. Note: for private
 *                      anonymous memory the kernel's own semantics would be
 *                      zero pages. A guest's discarded pages (balloon, free
 *                      page reporting) do not care, but a process that
 *                      wrote a page after resume, discarded it and counts
 *                      on reading zeros gets the source's old page instead.
 *                      The kernel zaps the pages only after the event was
 *                      read, so a page installed in between is zapped
 *                      again: the residency bitmap may then claim a page
 *                      that is absent. That is safe because the fault path
 *                      never trusts the bitmap (a fault on a "resident"
 *                      page is installed again and ends in EEXIST + wake if
 *                      it really is there).
 *   UFFD_EVENT_UNMAP   the range is dropped: its pages are counted "gone"
 *                      and are never pushed.
 *   UFFD_EVENT_REMAP   (mremap) the range moves to its new address; a
 *                      region may end up in several pieces.
 *   UFFD_EVENT_FORK    not served: the child's uffd is closed at once.
 *
 * Return convention: int functions return 0 or -errno. Not async-signal
 * safe. One server per uffd; any number of servers per process.
 */
#ifndef FTR_UFFD_FAULTSRV_H
#define FTR_UFFD_FAULTSRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ftr_fs;

/* One registered range in the faulting process. */
struct ftr_fs_region {
	uint64_t addr;	/* start in the faulting process, page aligned */
	uint64_t size;	/* bytes, a non-zero multiple of page_size */
	uint32_t id;	/* passed to the source as "region" */
};

/*
 * The page source. Pages are numbered from 0 within each region. Each call
 * names npages contiguous pages of one region. Both threads call it
 * concurrently, possibly for overlapping ranges (a faulted page that the
 * background is fetching is fetched again by the fault thread rather than
 * waiting for the whole chunk), so every op must be thread-safe.
 * Ops must not call ftr_fs_stop()/ftr_fs_destroy() (they join the caller).
 *
 * Returns of read/prepare: 0, or -EAGAIN when a page is not available yet
 * (the server retries it later, with a growing back-off from 100 us to
 * 10 ms; a fault keeps its thread blocked meanwhile), or any other -errno,
 * which is fatal for the server (recorded in the stats, see the liveness
 * contract above). A multi-page request answered with -EAGAIN is retried
 * page by page for the faulted pages, so a source need not split requests.
 */
struct ftr_page_source_ops {
	/* MISSING mode (required): fill dst (npages * page_size bytes) with
	 * pages first..first+npages-1 of the region. */
	int (*read)(void *ctx, uint32_t region, uint64_t first, uint32_t npages, void *dst);
	/* MINOR mode (optional, NULL = nothing to do): make the page-cache
	 * content of these pages correct (e.g. apply a pending page from
	 * staging into the cache memfd) before the server issues
	 * UFFDIO_CONTINUE, and not return before it is (a racing second call
	 * for a page being applied must wait for it). May be called again for
	 * a page already prepared (after a REMOVE, or when the two threads
	 * race): must be idempotent. The page-cache page must exist (a hole
	 * makes UFFDIO_CONTINUE fail with EFAULT: fatal for a fault; the
	 * background skips such pages). */
	int (*prepare)(void *ctx, uint32_t region, uint64_t first, uint32_t npages);
	/* Optional: read and prepare may return FTR_FS_SRC_INSTALLED when the
	 * source's own path has already installed every one of the pages asked
	 * for (mapped them and so woken their waiters, as a migration
	 * destination's receiver does with a requested page the moment it
	 * arrives). The server then issues no ioctl for them and counts their
	 * faults resolved at the time this op gives (CLOCK_MONOTONIC ns of the
	 * last of those installs, as seen by the thread that made the call;
	 * 0 = now). Without this op the server takes "now". */
	uint64_t (*installed_ns)(void *ctx);
	/* Optional: called once by ftr_fs_stop() before it joins the threads,
	 * so that a read/prepare blocked waiting for a remote page returns
	 * (with any error: errors after stop are ignored). A source that can
	 * block must provide it, or stop is only as bounded as the source. */
	void (*cancel)(void *ctx);
};

/* read/prepare: the source installed the pages itself (see installed_ns). */
#define FTR_FS_SRC_INSTALLED 1

enum ftr_fs_mode {
	FTR_FS_MISSING,	/* anonymous (or shmem MISSING): UFFDIO_COPY from read() */
	FTR_FS_MINOR,	/* shmem/hugetlbfs MINOR: prepare() then UFFDIO_CONTINUE */
};

/* Largest prefault window: a fault installs at most 1 + this many pages. */
#define FTR_FS_PREFAULT_MAX 63u
/* Default cap of one background ioctl, in bytes (2 MiB = 512 x 4 KiB). */
#define FTR_FS_CHUNK_DEFAULT_BYTES (2u << 20)
/* Default wait of the background fill for the first fault, in ms. */
#define FTR_FS_BG_GRACE_DEFAULT_MS 10u
#define FTR_FS_BG_GRACE_MAX_MS 600000u

struct ftr_fs_opts {
	/* The uffd: registered by the faulting process for the regions below
	 * (MISSING or MINOR as mode says), UFFDIO_API already done by the
	 * registering side (it may be done only once per fd). The server
	 * works on its own dup (closed by ftr_fs_destroy) and sets O_NONBLOCK
	 * on it - a file status flag, so the caller's fd becomes non-blocking
	 * too: poll() on a blocking uffd returns POLLERR at once. */
	int uffd;
	enum ftr_fs_mode mode;
	uint32_t page_size;	/* power of two >= 4096 (2 MiB for hugetlbfs) */
	const struct ftr_fs_region *regions;	/* copied; need not outlive create */
	unsigned nregions;
	const struct ftr_page_source_ops *ops;	/* must outlive the server */
	void *ctx;				/* passed to every op */
	/* Push every page not yet resident in background, faults first. */
	bool background;
	/* On a fatal error, UFFDIO_POISON every page not yet resident so the
	 * faulting side gets SIGBUS instead of hanging (see the top). */
	bool poison_on_error;
	/* Cap of one background ioctl in pages; 0 = FTR_FS_CHUNK_DEFAULT_BYTES
	 * worth. Capped at 64 MiB worth. */
	unsigned max_chunk_pages;
	/* Pages after a faulted page installed with it (only pages that are
	 * not resident and not being installed, in the same region piece),
	 * 0..FTR_FS_PREFAULT_MAX; 0 = only the faulted page. Larger windows
	 * amortise the per-ioctl cost (and a remote round trip) at the price
	 * of a longer fault latency. */
	unsigned prefault_pages;
	/* How long the background fill waits for the first fault to be served
	 * before it starts on its own, in ms; 0 = FTR_FS_BG_GRACE_DEFAULT_MS.
	 * The first fault is then the fill's pivot, and a workload resuming
	 * does not find its CPU taken by the fill (see fs_bg_main). */
	unsigned bg_grace_ms;
	/* Optional pidfd of the faulting process (<= 0: none). When it becomes
	 * readable the server stops quietly with state "target-exited".
	 * Without it, target exit is noticed by the first ioctl that returns
	 * ESRCH. The server dups it. */
	int target_pidfd;
};

enum ftr_fs_state {
	FTR_FS_CREATED,
	FTR_FS_RUNNING,
	FTR_FS_STOPPED,		/* ftr_fs_stop() */
	FTR_FS_TARGET_EXITED,	/* the faulting process has gone: nothing to serve */
	FTR_FS_FAILED,		/* fatal error; see stats.error / last_error */
};

/* "created", "running", "stopped", "target-exited", "failed". */
const char *ftr_fs_state_name(enum ftr_fs_state st);

struct ftr_fs_stats {
	uint64_t faults;		/* fault messages read */
	uint64_t faults_pending;	/* read but not resolved yet (blocked threads) */
	uint64_t pages_faulted;		/* installed by the fault path (incl. prefault) */
	uint64_t pages_prefaulted;	/* of which pulled in by the prefault window */
	uint64_t pages_background;	/* installed by the background thread */
	uint64_t pages_resident;	/* now resident as far as the server knows */
	uint64_t pages_gone;		/* dropped by UNMAP (or unregistered) */
	uint64_t pages_total;		/* sum of the region sizes / page_size */
	uint64_t eexist;		/* pages already there at install (benign) */
	uint64_t src_installed;		/* pages (faulted or pushed) the source had installed itself */
	uint64_t eagain_retries;	/* source or ioctl EAGAIN, retried */
	uint64_t stray_faults;		/* faults on ranges no longer ours: woken */
	uint64_t events_remove, events_unmap, events_remap, events_fork;
	/* Fault latency: from reading the fault message to the ioctl that
	 * resolved it completing (or to the source's own install of the page,
	 * FTR_FS_SRC_INSTALLED), over the last FTR_FS_LAT_SAMPLES faults. */
	uint64_t fault_lat_median_ns, fault_lat_p99_ns, fault_lat_max_ns;
	uint64_t first_fault_ns;	/* CLOCK_MONOTONIC of the first fault resolved; 0 = none */
	double bg_pages_per_s;		/* background pages / background running time */
	unsigned bg_chunk_pages;	/* current adaptive background chunk */
	bool done;			/* every page resident or gone (right now) */
	enum ftr_fs_state state;
	int error;			/* negative errno if state is failed, else 0 */
	char last_error[192];		/* what failed, "" if nothing */
};

#define FTR_FS_LAT_SAMPLES 4096u

/*
 * Creates a server (no thread yet). Validates the options: regions page
 * aligned, non-empty and non-overlapping, read present for MISSING. On
 * failure returns -errno and writes one line saying what was wrong to err
 * (if errlen > 0). *out is owned by the caller: ftr_fs_destroy().
 */
int ftr_fs_create(const struct ftr_fs_opts *o, struct ftr_fs **out, char *err, size_t errlen);

/* Starts the fault thread (and the background thread). 0 or -errno.
 * Once only; a stopped server cannot be restarted. */
int ftr_fs_start(struct ftr_fs *fs);

/* Stops serving: writes the stop eventfd, calls ops->cancel, joins the
 * threads. Bounded unless the source blocks without a cancel op. Faults
 * read but not resolved stay blocked (see the liveness contract). Safe to
 * call twice, before start, and from several threads; not from a source
 * op. */
void ftr_fs_stop(struct ftr_fs *fs);

/* Stops, closes the server's fds (its uffd dup included) and frees. NULL ok. */
void ftr_fs_destroy(struct ftr_fs *fs);

/*
 * Waits until every page is resident (or gone). Returns 0 then; -ETIMEDOUT
 * after timeout_ms (< 0: no limit); the server's fatal error (negative
 * errno) if it failed; -ESRCH if the target exited; -ECANCELED if the server
 * was stopped, or never started, before that. Without background only
 * faults make pages resident.
 */
int ftr_fs_wait_resident(struct ftr_fs *fs, int timeout_ms);

/* A consistent snapshot of the counters (sorts the latency ring). */
void ftr_fs_get_stats(struct ftr_fs *fs, struct ftr_fs_stats *st);

#endif
