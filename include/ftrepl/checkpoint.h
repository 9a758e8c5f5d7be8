/* SPDX-License-Identifier: MIT */
/*
 * Continuous replication: the standby (receiver) that commits epochs
 * atomically, and the primary (sender) epoch engine.
 *
 * Guarantee 1 (DESIGN.md): at every instant the standby's committed image
 * is cache + pending pages of committed epochs, never a partial epoch.
 * Guarantee 2: ACK(e) leaves the standby only after e is committed.
 */
#ifndef FTREPL_CHECKPOINT_H
#define FTREPL_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ftrepl/synth.h>
#include <ftrepl/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The states `ftreplctl status` shows. */
enum ftr_state {
	FTR_STATE_CONNECTING = 0,
	FTR_STATE_SYNCING,
	FTR_STATE_PROTECTED,
	FTR_STATE_DEGRADED,
	FTR_STATE_PROMOTED,
	FTR_STATE_RESUMING,
	FTR_STATE_MIGRATING_PRECOPY,
	FTR_STATE_MIGRATING_POSTCOPY,
	FTR_STATE_COMPLETED,
	FTR_STATE_FAILED,
};

/* "connecting", "syncing", ... (static string). */
const char *ftr_state_name(enum ftr_state s);

/* ---- standby ------------------------------------------------------------ */

struct ftr_standby;

struct ftr_standby_opts {
	const char *listen;	     /* "ADDR:PORT" */
	struct ftr_tp_opts tp;
	uint64_t cache_size;	     /* bytes, > 0 */
	const char *cache_file;	     /* NULL: anonymous memfd */
	uint64_t staging_size;	     /* bytes of staging slots; 0 = default */
	int failover_timeout_ms;     /* heartbeat silence that promotes; 0 = default */
	int heartbeat_ms;	     /* how often the standby sends heartbeats; 0 = default */
	int stall_timeout_ms;	     /* mid-record stall limit; 0 = default */
	int handshake_timeout_ms;    /* HELLO must arrive within this; 0 = default */
};

#define FTR_DEFAULT_STAGING (256ull << 20)
#define FTR_DEFAULT_FAILOVER_MS 2000
#define FTR_DEFAULT_HEARTBEAT_MS 100
#define FTR_DEFAULT_STALL_MS 5000
#define FTR_DEFAULT_HANDSHAKE_MS 5000

/* Creates the standby: allocates and maps the cache and staging, binds the
 * listener. Nothing runs until ftr_standby_start(). Returns 0 or -errno;
 * err (may be NULL) gets one line saying what failed. */
int ftr_standby_create(const struct ftr_standby_opts *opts, struct ftr_standby **out,
		       char *err, size_t errlen);
/* Starts the listener, applier and monitor threads. */
int ftr_standby_start(struct ftr_standby *sb);
/* The bound port (for "ADDR:0"). */
uint16_t ftr_standby_port(const struct ftr_standby *sb);

/* Promotes: fences the session and generation (no record of it is accepted
 * any more), discards the uncommitted epoch and keeps exactly the last
 * committed one. Returns 0, -EALREADY if already promoted, or -ENODATA
 * when no epoch was ever committed (there is nothing consistent to
 * promote; the standby stays as it is). */
int ftr_standby_promote(struct ftr_standby *sb, const char *reason);

/* Waits until the state is one of the bits in mask (1u << state) or the
 * timeout runs out. Returns the state, or -ETIMEDOUT. */
int ftr_standby_wait_state(struct ftr_standby *sb, unsigned mask, int timeout_ms);

struct ftr_standby_status {
	enum ftr_state state;
	char session[37];	   /* uuid text, "" before the first session */
	uint64_t generation;
	uint64_t committed;	   /* last committed epoch, FTR_EPOCH_NONE */
	uint64_t applied;	   /* last epoch fully applied to the cache */
	uint64_t pending_pages;	   /* committed pages still in staging */
	uint64_t pending_epochs;
	uint32_t channels;	   /* data channels connected */
	uint32_t nchannels;	   /* data channels of the session */
	uint64_t staging_slots;
	uint64_t staging_used;
	uint64_t cache_size;
	uint64_t image_size;	   /* bytes of the session's regions */
	uint32_t nregions;
	uint32_t page_size;
	uint64_t pages_received;   /* page payloads placed */
	uint64_t zero_pages;	   /* fill-page records received */
	uint64_t bytes_received;
	uint64_t epochs_committed;
	uint64_t epochs_discarded;
	uint64_t commit_wait_ns_last; /* COMMIT arrival to ACK sent */
	uint64_t blob_len;	   /* state blob of the committed epoch */
	uint64_t sessions_rejected; /* connections refused at HELLO */
	uint64_t rx_syscalls;	   /* receive syscalls on the session's channels */
	uint64_t rx_placed_bytes;  /* page bytes a one-sided transport wrote into staging */
	uint64_t last_rx_ms_ago;    /* since the last record of the session */
	char peer[96];
	char last_error[256];	   /* the latest session failure, "" if none */
	char promote_reason[128];
	uint64_t promoted_ns;	   /* CLOCK_MONOTONIC of the promotion, 0 = never */
	uint64_t resume_pending_at_start;  /* pending pages when the resume began */
	uint64_t resume_applied_on_demand; /* of which applied first for a fault */
};
int ftr_standby_get_status(struct ftr_standby *sb, struct ftr_standby_status *st);

/* ---- resume (failover) ---------------------------------------------------
 * After promotion the committed image is the cache plus the pending epochs
 * still in staging. ftr_standby_resume_begin() freezes those into an
 * overlay (state "resuming"); from then on each pending page is applied to
 * the cache exactly once, either in background or on demand through
 * ftr_standby_page_ready(), so a resuming workload can run at once.
 * Returns 0, -ENODATA (nothing committed), -EBUSY (not promoted),
 * -EALREADY, -ENOMEM. */
int ftr_standby_resume_begin(struct ftr_standby *sb);
/* Makes pages first..first+npages-1 of region hold the committed epoch in
 * the cache (applies any still pending). Thread-safe, lock-free on the
 * fast path. Returns 0, -ENODATA (not resuming), -ERANGE. */
int ftr_standby_page_ready(struct ftr_standby *sb, uint32_t region, uint64_t first,
			   uint64_t npages);

struct ftr_standby_layout {
	int cache_fd;		/* the cache memfd/file (owned by the standby) */
	uint8_t *cache;		/* its mapping in this process */
	uint64_t cache_size;
	uint32_t page_size;
	uint32_t nregions;
	uint64_t epoch;		/* committed epoch */
	struct {
		uint64_t offset; /* in the cache */
		uint64_t size;
		char name[FTR_WIRE_REGION_NAME];
	} regions[FTR_WIRE_MAX_REGIONS];
	uint32_t blob_len;
	uint8_t blob[4096];	/* the committed epoch's state blob (truncated) */
};
/* The cache and region layout of the committed image. 0 or -ENODATA. */
int ftr_standby_layout(struct ftr_standby *sb, struct ftr_standby_layout *out);

/* Writes the committed image (every region, in order, concatenated) to fd.
 * Pending pages up to the committed epoch are applied first; later commits
 * wait in staging meanwhile, so the file is exactly one committed epoch.
 * *epoch gets that epoch. Returns 0, -ENODATA (nothing committed), -errno. */
int ftr_standby_dump(struct ftr_standby *sb, int fd, uint64_t *epoch);

/* Checks the committed image against the synthetic workload's oracle
 * (expect may be NULL: read the spec from the image). Returns 0 with the
 * verdict, -ENODATA, -errno. */
int ftr_standby_verify(struct ftr_standby *sb, const struct ftr_synth_spec *expect,
		       struct ftr_synth_verdict *v, uint64_t *epoch);

/* Stops every thread and closes every connection (the cache stays mapped
 * until destroy). Safe to call twice. */
void ftr_standby_stop(struct ftr_standby *sb);
void ftr_standby_destroy(struct ftr_standby *sb);

/* ---- primary -------------------------------------------------------------- */

enum ftr_snapshot_mode {
	FTR_SNAP_STOP_COPY = 0, /* paused until the dirty set is sent */
	FTR_SNAP_COPY_OUT = 1,	/* copy to a bounce buffer, resume, send */
	FTR_SNAP_COW = 2,	/* pause only to harvest; send live, copy a page
				 * aside only when written before it is sent */
};

enum ftr_dirty_mode {
	FTR_DIRTY_AUTO = 0,	/* the best kernel backend available (says which) */
	FTR_DIRTY_FULL = 1,	/* every page, every epoch (baseline) */
	FTR_DIRTY_WP_ASYNC = 2,	/* UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN */
	FTR_DIRTY_WP_SYNC = 3,	/* write-protect faults to a handler thread */
	FTR_DIRTY_SCAN = 4,	/* compare with a shadow copy */
	FTR_DIRTY_WORKLOAD = 5,	/* the workload's own exact tracking (synthetic) */
};

/* "stop-copy"/"copy-out"/"cow"; "auto", "full", "wp-async", "wp-sync", "scan",
 * "workload": 0 or -EINVAL. */
int ftr_snapshot_parse(const char *s, enum ftr_snapshot_mode *out);
int ftr_dirty_parse(const char *s, enum ftr_dirty_mode *out);
const char *ftr_snapshot_name(enum ftr_snapshot_mode m);
const char *ftr_dirty_name(enum ftr_dirty_mode m);

struct ftr_workload;

/* The in-process synthetic workload: a memfd region of spec->size written by
 * its own thread (started by the primary). Returns 0 or -errno. */
int ftr_synth_workload_create(const struct ftr_synth_spec *spec,
			      struct ftr_workload **out);
void ftr_workload_destroy(struct ftr_workload *wl);
/* Synthetic workload only, before the primary starts it: performs `writes`
 * writes now (e.g. a seq pattern over every page, so that no page is a
 * fill page). Returns 0, -EBUSY once started, -EINVAL for other kinds. */
int ftr_synth_workload_advance(struct ftr_workload *wl, uint64_t writes);
/* Writes the workload's current image (paused or not: for tests after
 * stop) to fd. Returns 0 or -errno. */
int ftr_workload_dump(struct ftr_workload *wl, int fd);

struct ftr_primary;

struct ftr_primary_opts {
	const char *connect;	  /* standby "ADDR:PORT" */
	struct ftr_tp_opts tp;
	unsigned nchannels;	  /* data channels; 0 = 1 */
	int epoch_ms;		  /* epoch period; 0 = default */
	enum ftr_snapshot_mode snapshot;
	enum ftr_dirty_mode dirty;
	int heartbeat_ms;	  /* 0 = default */
	int failover_timeout_ms;  /* standby silence that fails the session */
	int connect_timeout_ms;	  /* 0 = default */
	uint8_t session[16];	  /* all zero: a random uuid is made */
	uint64_t generation;	  /* 0 = 1 */
	bool no_data_crc;	  /* do not checksum page payloads */
	uint64_t max_epochs;	  /* stop after this many epochs after sync; 0 = no limit */
	uint64_t duration_ms;	  /* stop after this long; 0 = no limit */
	unsigned batch_pages;	  /* pages per PAGES record; 0 = default */
};

#define FTR_DEFAULT_EPOCH_MS 20
#define FTR_DEFAULT_BATCH 256

int ftr_primary_create(const struct ftr_primary_opts *opts, struct ftr_workload *wl,
		       struct ftr_primary **out);
/* Connects, syncs, then cuts epochs until stopped, a limit is reached or
 * the session fails. Ends an orderly stop with the last epoch acked and a
 * BYE. Returns 0, or -errno with ftr_primary_error() saying why. */
int ftr_primary_run(struct ftr_primary *p);
/* Asks run() to stop after the current epoch (thread-safe; not
 * async-signal-safe: call it from a signal-handling thread). */
void ftr_primary_stop(struct ftr_primary *p);
const char *ftr_primary_error(const struct ftr_primary *p);

struct ftr_primary_status {
	enum ftr_state state;
	char session[37];
	uint64_t generation;
	uint64_t epoch;		   /* last epoch cut */
	uint64_t acked;		   /* last epoch acked, FTR_EPOCH_NONE */
	uint64_t pages_sent;
	uint64_t zero_pages_sent;
	uint64_t bytes_sent;
	uint64_t pause_last_us, pause_mean_us, pause_p99_us;
	uint64_t ack_last_us, ack_mean_us, ack_p99_us;
	uint64_t epochs_cut_early; /* cut because the dirty set neared staging */
	uint64_t credit_waits;	   /* times the sender waited for staging slots */
	uint64_t staging_slots;
	uint64_t workload_writes;  /* synthetic workload: writes done (k) */
	uint32_t nchannels;
	uint64_t tx_syscalls;
	uint64_t tx_placed_bytes;  /* page bytes written one-sided (rdma) into staging */
	uint64_t sync_ns;	   /* initial sync: start to epoch 0 sent */
	uint64_t sync_pages;	   /* pages (not fill pages) sent by the initial sync */
	uint64_t epochs_ns;	   /* end of sync to the last ACK (or now) */
	uint64_t harvest_last_us;  /* dirty-set harvest of the last epoch */
	uint64_t cow_copied;	   /* cow: pages copied aside because written before sent */
	uint64_t cow_faults;	   /* cow: write-protect faults handled */
	char dirty[16];		   /* the tracking backend in use */
	char transport[32];
	char last_error[256];
};
int ftr_primary_get_status(struct ftr_primary *p, struct ftr_primary_status *st);
void ftr_primary_destroy(struct ftr_primary *p);

#ifdef __cplusplus
}
#endif
#endif
