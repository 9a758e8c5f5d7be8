/* SPDX-License-Identifier: MIT */
/*
 * Internals of the migration destination, shared by migrate_dst.c (the
 * session: listener, channels, rounds, switch, recovery) and
 * migrate_dstmem.c (the memory: receiving pages, installing them with
 * userfaultfd, the fault server's page source, the synthetic continuation).
 *
 * Page state, one byte per global page (migrate_proto.h numbering), only
 * used from the switch on (before it pages are written straight into the
 * store, as often as they come):
 *   MD_NEED   the destination lacks it (or holds an older copy);
 *   MD_RECV   a receiver claimed it and is placing a copy (CAS from NEED:
 *             one receiver per page). A receiver claims the pages of a
 *             record only once the whole record arrived and checked (it
 *             is received into the connection's scratch first), so a
 *             page whose record is still trickling in stays NEED and a
 *             fault on it asks for it on the urgent channel;
 *   MD_FINAL  the final content is in place: in the store, or (received
 *             after the switch: every page in ANON mode, a page the memfd
 *             did not hold yet in MEMFD mode) already installed straight
 *             from the receiver's bounce buffer (the page turns FINAL only
 *             after that install; in ANON mode it is "bounced": the store
 *             never holds it; in MEMFD mode the copy went into the memfd).
 *             Never written again: later copies are dropped.
 * Only a FINAL page is ever installed from the store. In ANON mode a page
 * moved from the store into the workload's memory is "bounced" too (the
 * store no longer holds it).
 */
#ifndef FTR_MIGRATE_DST_H
#define FTR_MIGRATE_DST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <ftrepl/migrate.h>

#include "checkpoint/migrate_proto.h"
#include "uffd/faultsrv.h"

enum { MD_NEED = 0, MD_RECV = 1, MD_FINAL = 2 };

#define MD_FAULT_WAIT_MS 50	/* a page source call waits this long, then -EAGAIN */

struct md_conn {
	struct ftr_migrate_dst *dst;
	struct ftr_chan *chan;
	pthread_t th;
	int role;		/* -1 before HELLO, else the channel number */
	uint64_t inc;		/* incarnation it is attached to, 0 = none */
	_Atomic uint64_t nrec;	/* data: PAGES + ZERO_PAGES records taken */
	atomic_bool done;
	struct md_conn *next;
	uint8_t *head;
	struct ftr_rec *rec;
	uint8_t *scratch;	/* a record's pages after the switch (ANON: installed
				 * from here) and dropped copies; lazily */
};

struct ftr_migrate_dst {
	struct ftr_migrate_dst_opts o;
	char listen_addr[256];
	struct ftr_listener *lis;
	pthread_t lis_th;
	bool lis_started;
	atomic_bool stopping;
	/* last record on any channel (CLOCK_MONOTONIC ns): a source whose
	 * heartbeats wait behind its own pages on a full link is not silent */
	atomic_uint_fast64_t rx_any_ns;

	pthread_mutex_t lock;
	pthread_cond_t cv;
	/* under lock */
	enum ftr_migrate_phase phase;
	bool failed;
	char err[256];
	bool have_session;
	uint8_t session[16];
	uint64_t generation;
	uint64_t features;
	uint32_t nch;
	struct mig_layout lay;
	struct ftr_wire_limits lim;
	uint64_t inc;			/* current incarnation (0: none yet) */
	bool inc_broken;		/* it broke; a recovery is awaited */
	uint64_t broken_ns;
	unsigned inc_threads;		/* attached threads of inc still running */
	struct md_conn *ctl, *urg, *data[FTR_WIRE_MAX_CHANNELS + 1];
	struct md_conn *conns;		/* every connection thread, for reaping */
	bool barrier_wait;		/* control waits for data records */
	uint64_t round;			/* last precopy round acked */
	uint64_t switch_round;		/* FTR_EPOCH_NONE before the switch */
	bool bye_ok;			/* ACK(s) or the recovery bitmap went out */
	bool bye_sent;			/* this incarnation */
	bool source_done;		/* BYE(SWITCHED) exchanged: no recovery */
	uint32_t recoveries;
	uint64_t t_first, t_commit, t_running, t_done;
	struct mig_bitmap_rx brx;
	uint64_t brx_seq;
	uint8_t *blob;
	uint32_t blob_len;
	char transport[32];

	/* memory (fixed once the session began) */
	int memfd;			/* the store's memfd (MEMFD mode), else -1 */
	uint8_t *store;			/* where pages are received */
	uint8_t *wmem;			/* the workload's memory (== a second mapping
					 * of the memfd, or anonymous) */
	uint64_t map_len;
	bool move;			/* ANON: the store's pages are moved in
					 * (UFFDIO_MOVE), not copied */
	int uffd;
	uint64_t uffd_ioctls;
	struct ftr_fs *fs;

	/* page sets */
	uint8_t *pstate;
	uint64_t *seen;			/* precopy: arrived at least once */
	uint64_t *need;			/* the switch bitmap */
	uint64_t *installed;
	uint64_t *bounced;		/* ANON: only the workload's memory holds it (copied
					 * from a bounce buffer, or moved in) */
	uint64_t *requested;		/* asked for on this incarnation (req_lock) */
	atomic_bool switched;		/* pstate in force */
	_Atomic uint64_t n_need, n_installed;

	/* arrivals: page sources waiting for pages */
	pthread_mutex_t arr_lock;
	pthread_cond_t arr_cv;
	atomic_uint arr_waiters;
	atomic_bool src_cancel;
	/* the fault server's wait (one fault thread): pages [wait_g, wait_end)
	 * and when a receiver or the installer last installed one of them
	 * (arr_lock) */
	uint64_t wait_g, wait_end, wait_inst_ns;

	/* page requests (FAULT_REQ on the urgent channel) */
	pthread_mutex_t req_lock;
	struct ftr_chan *req_chan;	/* urgent channel of the incarnation (req_lock) */
	struct ftr_rec *req_rec;

	/* installer of the pages valid at the switch */
	pthread_t inst_th;
	bool inst_started;
	atomic_bool inst_done;		/* it went over every page (and, ANON,
					 * freed the store): completion waits for it */

	/* synthetic continuation */
	pthread_t synth_th;
	bool synth_started;
	atomic_bool synth_stop;
	atomic_bool synth_finished;
	int synth_err;
	_Atomic uint64_t synth_k;

	/* counters */
	_Atomic uint64_t pages_received, dup_pages, fault_reqs;
	_Atomic uint64_t moved_pages, move_fallbacks;
};

/* migrate_dst.c */
void md_fail(struct ftr_migrate_dst *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void md_set_completed_if_done(struct ftr_migrate_dst *d);
/* Says BYE(SWITCHED) once every page arrived (and not before the ACK of
 * the switch or the bitmap of a recovery). */
void md_maybe_bye(struct ftr_migrate_dst *d);

/* migrate_dstmem.c */
/* Maps the store and the workload's memory for d->lay, opens and registers
 * the uffd. 0 or -errno with msg. */
int md_mem_setup(struct ftr_migrate_dst *d, char *msg, size_t mlen);
void md_mem_teardown(struct ftr_migrate_dst *d);
/* Takes a PAGES or ZERO_PAGES record on conn (its data part still to be
 * received). Returns 0, a transport -errno, or -EPROTO with msg. */
int md_take_pages(struct md_conn *conn, const struct ftr_rec *rec, char *msg, size_t mlen);
/* At the switch: starts the fault server and the installer. 0 or -errno. */
int md_start_serving(struct ftr_migrate_dst *d, char *msg, size_t mlen);
/* The incarnation changed (recovery): forget which pages were asked for. */
void md_reset_requests(struct ftr_migrate_dst *d, struct ftr_chan *urgent);
/* Wakes page sources waiting for pages (state change). */
void md_wake_waiters(struct ftr_migrate_dst *d);
/* Starts the synthetic continuation (opts.resume_synth). */
int md_synth_start(struct ftr_migrate_dst *d);
/* Stops the fault server, the installer and the continuation. */
void md_stop_serving(struct ftr_migrate_dst *d);

#endif
