/* SPDX-License-Identifier: MIT */
/*
 * Live migration: precopy rounds while the workload runs, then a switch to
 * the destination, which runs at once and pulls what it still lacks
 * (postcopy). DESIGN.md, "Live migration: precopy, then postcopy".
 *
 * Two objects, one per host:
 *   source       (ftr_migrate_src) owns the running workload, connects to
 *                the destination, sends rounds, switches, serves page
 *                requests and pushes the rest;
 *   destination  (ftr_migrate_dst) listens, receives the image into its
 *                memory, and at the switch runs the workload on that memory
 *                through a userfaultfd fault server: the built-in synthetic
 *                continuation (opts.resume_synth) or the caller's own code
 *                (opts.on_running hands it the image).
 *
 * Modes (ftr_migrate_src_opts.mode):
 *   hybrid    precopy rounds until the dirty set converges (what is left
 *             fits the target downtime at the measured bandwidth: it is then
 *             sent paused, stop-and-copy, and nothing is left for postcopy)
 *             or until max_rounds; then postcopy for what is left. Without
 *             max_rounds, rounds stop as soon as they cannot pay off: the
 *             workload dirties memory at least half as fast as the link
 *             moves it (a round would then send half or more of its pages
 *             again), checked from 50 ms into a round.
 *   precopy   rounds until convergence, then stop-and-copy. A workload that
 *             dirties faster than the link can carry never converges: after
 *             max_rounds the migration fails with an error naming the dirty
 *             rate and the bandwidth, and the workload keeps running here.
 *   postcopy  no round: switch at once, every page comes by postcopy.
 * CLI mapping: "--precopy-rounds 0" is mode postcopy; "--precopy-rounds N"
 * sets max_rounds = N; "--no-postcopy" is mode precopy.
 *
 * ---- Protocol (wire.h records; all channels opened by the source) -------
 * Connection: the control channel (0), data channels 1..N and the urgent
 * channel (FTR_CHAN_URGENT), each opened with HELLO (role primary, session
 * uuid, generation, layout, features offered, last_committed =
 * FTR_EPOCH_NONE for a new migration or the switch round s when
 * reconnecting) and answered by HELLO|REPLY (role standby, features
 * accepted, cache_size, last_committed = s once the destination switched).
 *
 * Precopy round r >= 1: PAGES / ZERO_PAGES with FTR_WF_DIRECT and seq r on
 * the data channels (a page always travels on channel 1 + (page / 1024) % N,
 * so a newer copy never overtakes an older one), then COMMIT(r) on control
 * whose batches[c] counts the records channel c carried since the
 * connection began. The destination answers ACK(r) once every channel
 * delivered that many, so a round's bandwidth is measured to delivery, not
 * to the socket buffers. Pages read while the workload runs carry no data
 * CRC (it may be writing them; the dirty tracking resends them); pages sent
 * paused do.
 *
 * Switch (the source's workload is paused for good from here): the last
 * dirty pages when they fit the downtime (stop-and-copy, same records),
 * then on control BLOB(s), BITMAP(s) records covering every page of every
 * region in order (bit set: the destination lacks the page or holds an
 * older copy), COMMIT(s). A COMMIT that follows a complete bitmap is the
 * switch. The destination drains the data channels up to batches[], checks
 * that every page the bitmap calls present did arrive, starts its fault
 * server and the workload, then answers ACK(s). Downtime = pause to ACK(s)
 * on the source (so it includes the ACK's trip back).
 *
 * Postcopy: a fault on the destination becomes FAULT_REQ on the urgent
 * channel (page[0] is the faulted page, then a prefault window: forward,
 * then backward; only pages the destination lacks and has not asked for on
 * this connection). The source answers with PAGES / ZERO_PAGES (DIRECT,
 * data CRC) on the urgent channel, and pushes the remaining pages on the
 * data channels, outwards from the last page[0] it was asked for. A page
 * may arrive twice (pushed and requested): the first copy is kept, later
 * ones are dropped (all copies are equal: the source never sends a page
 * older than the switch, its memory is the final image). Once it holds
 * every page the destination says BYE(SWITCHED) on control; the source
 * answers BYE(SWITCHED) and closes.
 * The urgent channel is checked record by record: anything but FAULT_REQ
 * or HEARTBEAT, a FAULT_REQ before the switch, out of range (decoder
 * limits), with a page twice, or garbage fails the migration with an ERROR
 * naming it; nothing is sent for it.
 *
 * Recovery (postcopy only): a connection that breaks without BYE puts both
 * sides in "recovering". The destination keeps running its workload
 * (threads that fault on a missing page wait; the rest runs) and keeps
 * listening; the SOURCE reconnects (every 200 ms, up to recover_timeout_ms)
 * with the same session and generation. Once every channel is back the
 * destination sends on control BITMAP records of the pages it still lacks
 * (its received-pages bitmap, inverted), covering every page; the source
 * replaces its push set with it and goes on, and the destination sends its
 * outstanding page requests again. A page counts as received only once its
 * payload was placed and checked, so a page lost in flight is in that
 * bitmap; a page is installed in the workload's memory once (UFFDIO_COPY
 * and UFFDIO_CONTINUE refuse a present page with EEXIST).
 * A destination that refuses the reconnection (an ERROR) ends it at once.
 * A break before the switch aborts the migration: the workload resumes on
 * the source; the destination fails (nothing ran there). After COMMIT(s)
 * the source never resumes the workload itself, unless the destination
 * answers the reconnection saying it never switched (last_committed
 * FTR_EPOCH_NONE: the COMMIT was lost with the connection).
 *
 * Transports: every record goes through ftr_chan_send()/recv (tcp, rdma),
 * without staging slots: on RDMA that is the two-sided path (the payload is
 * copied through the transport's registered buffers). One-sided writes
 * straight into the destination's memory would suit the precopy rounds
 * only: after the switch a page the workload already wrote must never be
 * overwritten, which only the receiver's check (first copy wins) ensures.
 *
 * Conventions as in ftrepl.h: int returns are 0 or -errno; constructors
 * return the object through an out-parameter, owned by the caller.
 */
#ifndef FTREPL_MIGRATE_H
#define FTREPL_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/synth.h>
#include <ftrepl/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ftr_migrate_mode {
	FTR_MIG_HYBRID = 0,
	FTR_MIG_PRECOPY = 1,
	FTR_MIG_POSTCOPY = 2,
};

/* "hybrid", "precopy", "postcopy": 0 or -EINVAL. */
int ftr_migrate_mode_parse(const char *s, enum ftr_migrate_mode *out);
const char *ftr_migrate_mode_name(enum ftr_migrate_mode m);

/* Finer than enum ftr_state (status.state carries the coarse one:
 * connecting, migrating-precopy, migrating-postcopy, completed, failed). */
enum ftr_migrate_phase {
	FTR_MIG_CONNECTING = 0,	/* source connecting / destination listening */
	FTR_MIG_PRECOPY_RUN,	/* precopy rounds */
	FTR_MIG_SWITCHING,	/* source paused, switch under way */
	FTR_MIG_POSTCOPY_RUN,	/* destination running, pages still coming */
	FTR_MIG_RECOVERING,	/* postcopy, connection lost, reconnecting */
	FTR_MIG_COMPLETED,
	FTR_MIG_FAILED,
};

/* "connecting", "precopy", "switching", "postcopy", "recovering",
 * "completed", "failed" (static string). */
const char *ftr_migrate_phase_name(enum ftr_migrate_phase p);
/* The ftr_state a phase shows as. */
enum ftr_state ftr_migrate_phase_state(enum ftr_migrate_phase p);

/* Data channels of a migration unless told: two receiving threads on the
 * destination (one alone is what limits a fast link: it receives, checks
 * and installs every page). */
#define FTR_MIG_DEFAULT_CHANNELS 2
#define FTR_MIG_DEFAULT_HYBRID_ROUNDS 5
/* Hybrid without max_rounds: rounds stop once the workload dirties memory
 * at 1/FTR_MIG_HYBRID_PAYOFF_DIV of the link's rate or faster (a round then
 * sends half or more of its pages again). */
#define FTR_MIG_HYBRID_PAYOFF_DIV 2
#define FTR_MIG_DEFAULT_PRECOPY_ROUNDS 30
#define FTR_MIG_DEFAULT_DOWNTIME_MS 30
#define FTR_MIG_DEFAULT_RECOVER_MS 30000
#define FTR_MIG_DEFAULT_HEARTBEAT_MS 200
#define FTR_MIG_DEFAULT_TIMEOUT_MS 5000

/* Counters and timings of one side (fields that do not apply are 0). */
struct ftr_migrate_status {
	enum ftr_state state;
	enum ftr_migrate_phase phase;
	char session[37];		/* uuid text, "" before a session */
	uint32_t round;			/* precopy rounds completed (acked) */
	uint32_t nchannels;		/* data channels */
	uint64_t pages_total;		/* pages of the image */
	uint64_t pages_left;		/* src precopy: dirty pages not sent yet;
					 * src postcopy: pages not pushed or asked for yet;
					 * dst: pages it still lacks (after the switch) */
	uint64_t dirty_bytes_per_s;	/* src: dirty rate of the last round */
	uint64_t bandwidth_bytes_per_s;	/* src: the link's rate as last measured */
	uint64_t push_pace_bytes_per_s;	/* src: cap of the postcopy push in force
					 * (postcopy_bw, or 85 % of a measured link
					 * rate); 0 = unpaced (also: a destination
					 * on this host) */
	uint64_t est_downtime_ms;	/* src: what is left / bandwidth, last round */
	uint64_t pages_sent;		/* src: page payloads + fill pages sent */
	uint64_t bytes_sent;		/* src: page payload bytes sent */
	uint64_t precopy_pages;		/* src: of which in precopy rounds and stop-copy */
	uint64_t pushed_pages;		/* src: of which pushed in postcopy */
	uint64_t requested_pages;	/* src: of which sent for page requests */
	uint64_t fault_reqs;		/* src: FAULT_REQ records served; dst: sent */
	uint64_t pages_received;	/* dst: page payloads and fill pages kept */
	uint64_t dup_pages;		/* dst: copies dropped (already had the page) */
	uint64_t moved_pages;		/* dst (ANON): pages that came before the switch
					 * and were moved into the workload's memory
					 * (UFFDIO_MOVE) rather than copied */
	uint64_t faults;		/* dst: userfaultfd faults handled */
	uint64_t fault_lat_median_us;	/* dst: fault read to page installed */
	uint64_t fault_lat_p99_us;
	uint64_t fault_lat_max_us;
	uint64_t downtime_us;		/* src: pause to the destination's ACK;
					 * dst: switch COMMIT to workload running */
	uint64_t precopy_ms;		/* connect to pause */
	uint64_t postcopy_ms;		/* running on the destination to completion */
	uint64_t total_ms;		/* start to completion (or now) */
	uint32_t recoveries;		/* postcopy reconnections */
	uint64_t workload_writes;	/* src: synthetic writes done at the switch;
					 * dst: synthetic k now (continuation) */
	char transport[32];
	char last_error[256];
};

/* Formats st as one JSON object (no newline). Returns the length
 * (snprintf semantics). */
int ftr_migrate_status_json(const struct ftr_migrate_status *st, char *buf, size_t len);

/* ---- source -------------------------------------------------------------- */

struct ftr_migrate_src;

struct ftr_migrate_src_opts {
	const char *connect;		/* destination "ADDR:PORT" */
	struct ftr_tp_opts tp;
	unsigned nchannels;		/* data channels; 0 = FTR_MIG_DEFAULT_CHANNELS */
	enum ftr_migrate_mode mode;
	/* hybrid: most rounds before postcopy takes over (0 = 5);
	 * precopy: most rounds before giving up (0 = 30). */
	unsigned max_rounds;
	unsigned target_downtime_ms;	/* convergence target; 0 = 30 */
	enum ftr_dirty_mode dirty;	/* as ftr_primary_opts.dirty */
	bool no_background;		/* postcopy: serve requests only, push nothing */
	uint64_t precopy_bw;		/* bytes/s cap of the precopy rounds; 0 = none */
	uint64_t postcopy_bw;		/* bytes/s cap of the postcopy push (paced by the
					 * transport where it can, evenly); 0 = 85 % of
					 * the measured link rate, none when every
					 * data channel's peer is on this host
					 * (ftr_chan_peer_is_local); UINT64_MAX = none */
	int recover_timeout_ms;		/* postcopy reconnection window; 0 = 30000 */
	int heartbeat_ms;		/* 0 = 200 */
	int timeout_ms;			/* peer silence / stalled record; 0 = 5000 */
	int connect_timeout_ms;		/* one connect attempt; 0 = 5000 */
	bool no_data_crc;		/* no CRC on page payloads sent paused */
	unsigned batch_pages;		/* pages per PAGES record; 0 = 256 */
	uint8_t session[16];		/* all zero: a random uuid */
	uint64_t generation;		/* 0 = 1 */
};

/* Creates a source for wl (not started yet, or already running: run()
 * starts it if needed). The workload must outlive the source. Returns 0
 * or -EINVAL (bad options) / -ENOMEM. */
int ftr_migrate_src_create(const struct ftr_migrate_src_opts *opts, struct ftr_workload *wl,
			   struct ftr_migrate_src **out);

/* Runs the migration to its end in the calling thread: connect, rounds,
 * switch, postcopy (with recovery). Returns 0 once the destination holds
 * every page (status completed), or -errno with ftr_migrate_src_error()
 * saying why. On failure before the switch the workload was resumed and
 * keeps running here; from the switch on it stays paused (the destination
 * owns it). Call once. */
int ftr_migrate_src_run(struct ftr_migrate_src *src);

/* Asks for the switch now (ftreplctl switch): the round in progress ends
 * early and the source switches, with postcopy for what is left (mode
 * precopy: stop-and-copy of what is left, however long). Thread-safe.
 * Returns 0, or -EALREADY once the switch has begun or the run ended. */
int ftr_migrate_src_switch(struct ftr_migrate_src *src);

/* Aborts: before the switch the workload resumes here and run() returns
 * -ECANCELED; after it, run() gives up postcopy (the destination keeps
 * whatever it has; its missing pages are lost). Thread-safe. */
void ftr_migrate_src_abort(struct ftr_migrate_src *src);

int ftr_migrate_src_get_status(struct ftr_migrate_src *src, struct ftr_migrate_status *st);
/* The reason of the failure, "" if none. Valid until destroy. */
const char *ftr_migrate_src_error(struct ftr_migrate_src *src);
/* Frees the source (call after run() returned; the workload is not
 * destroyed). NULL is a no-op. */
void ftr_migrate_src_destroy(struct ftr_migrate_src *src);

/* ---- destination --------------------------------------------------------- */

struct ftr_migrate_dst;

enum ftr_migrate_mem {
	/* The image lives in a memfd; the workload maps it shared, registered
	 * MISSING|MINOR. A page that arrived before the switch is mapped
	 * (UFFDIO_CONTINUE) from the memfd; one arriving after the switch that
	 * the memfd lacks is copied into it (UFFDIO_COPY through the workload's
	 * mapping, from the receiving connection's bounce buffer), which
	 * spares a shmem page fault per page. Either way the memfd holds the
	 * image. */
	FTR_MIG_MEM_MEMFD = 0,
	/* The workload's memory is anonymous, registered MISSING. A page
	 * that arrives before the switch is received into a buffer of the
	 * image's size and, once final, moved from there into the workload's
	 * memory (UFFDIO_MOVE, Linux >= 6.8: no copy, no second page; runs of
	 * a few pages, whose moves would cost a TLB shootdown each, a page
	 * the kernel will not move, e.g. one shared with a child forked
	 * since, and every page on older kernels, are copied); a page that
	 * arrives after it is copied in (UFFDIO_COPY) from the receiving
	 * connection's bounce buffer. The buffer is freed behind the pass
	 * that puts the pages final at the switch in place, so the
	 * destination holds the image about once. A page the workload
	 * discards (MADV_DONTNEED) after the migration completed reads as
	 * zeros when next touched (anonymous memory's own semantics); one
	 * discarded earlier may be served again from the buffer. */
	FTR_MIG_MEM_ANON = 1,
};

/* The workload's memory on the destination (valid from the switch until
 * destroy). blob is the source's state blob at the switch. */
struct ftr_migrate_image {
	uint32_t page_size;
	uint32_t nregions;
	struct {
		void *base;
		uint64_t size;
		char name[FTR_WIRE_REGION_NAME];
	} regions[FTR_WIRE_MAX_REGIONS];
	int memfd;			/* FTR_MIG_MEM_MEMFD: the backing memfd, else -1 */
	const void *blob;
	uint32_t blob_len;
	uint64_t round;			/* the switch round */
};

struct ftr_migrate_dst_opts {
	const char *listen;		/* "ADDR:PORT" (port 0: any; see _port()) */
	struct ftr_tp_opts tp;
	uint64_t cache_size;		/* largest image accepted, bytes; > 0 */
	enum ftr_migrate_mem mem;
	unsigned prefault_forward;	/* pages after a faulted one requested with it */
	unsigned prefault_backward;	/* pages before it */
	int recover_timeout_ms;		/* 0 = 30000 */
	int heartbeat_ms;		/* 0 = 200 */
	int timeout_ms;			/* peer silence / stalled record / handshake; 0 = 5000 */
	/* On a failure after the switch, poison the pages still missing so
	 * that the workload gets SIGBUS instead of waiting forever (for a
	 * workload in another process or that can die alone). */
	bool poison_on_failure;
	/* Continue the synthetic workload on the destination once switched
	 * (like the receiver's --resume-synth): synth_writes more writes (0 =
	 * until stop), at synth_rate writes/s (0 = as fast as possible). */
	bool resume_synth;
	uint64_t synth_writes;
	uint64_t synth_rate;
	/* Called once, from the destination's control thread, as soon as the
	 * memory is ready to run (before ACK(s)): start the workload on img.
	 * Must not block (it is part of the downtime). */
	void (*on_running)(void *ctx, const struct ftr_migrate_image *img);
	void *ctx;
};

/* Creates the destination and binds the listener (nothing runs until
 * start). err (may be NULL) gets one line on failure. Returns 0 or -errno. */
int ftr_migrate_dst_create(const struct ftr_migrate_dst_opts *opts, struct ftr_migrate_dst **out,
			   char *err, size_t errlen);
uint16_t ftr_migrate_dst_port(const struct ftr_migrate_dst *dst);
/* Starts accepting the source. 0 or -errno. */
int ftr_migrate_dst_start(struct ftr_migrate_dst *dst);
/* Waits until the phase is one of the bits in mask (1u << phase) or the
 * timeout (ms, < 0 = none) runs out. Returns the phase or -ETIMEDOUT. */
int ftr_migrate_dst_wait(struct ftr_migrate_dst *dst, unsigned mask, int timeout_ms);
int ftr_migrate_dst_get_status(struct ftr_migrate_dst *dst, struct ftr_migrate_status *st);
/* The workload's memory, from the switch on. 0 or -ENODATA (not switched). */
int ftr_migrate_dst_image(struct ftr_migrate_dst *dst, struct ftr_migrate_image *img);
/* Waits until the synthetic continuation did its synth_writes writes
 * (or, with synth_writes 0, stops it). Returns 0, -ETIMEDOUT, -ENOENT when
 * there is no continuation, or the continuation's error. */
int ftr_migrate_dst_synth_wait(struct ftr_migrate_dst *dst, int timeout_ms);
/* Checks the image against the synthetic workload's oracle (expect may be
 * NULL: the spec is read from the image). Needs status completed and the
 * continuation finished. Returns 0 with the verdict, -EBUSY, -ENODATA. */
int ftr_migrate_dst_verify(struct ftr_migrate_dst *dst, const struct ftr_synth_spec *expect,
			   struct ftr_synth_verdict *v);
/* The reason of the failure, "" if none. */
const char *ftr_migrate_dst_error(struct ftr_migrate_dst *dst);
/* Stops every thread and closes every connection (the image stays mapped
 * until destroy). Safe to call twice. */
void ftr_migrate_dst_stop(struct ftr_migrate_dst *dst);
void ftr_migrate_dst_destroy(struct ftr_migrate_dst *dst);

#ifdef __cplusplus
}
#endif
#endif
