/* SPDX-License-Identifier: MIT */
/*
 * Failover resume: a workload runs on the standby's committed image at once,
 * its memory served by userfaultfd while pending pages are still in staging.
 *
 * Server side (in ftrepl-receiver): a unix stream socket, the resume
 * socket. Three ways in:
 *
 *   shared mode     the client asks for the layout and gets the cache memfd
 *                   (SCM_RIGHTS), maps it privately, registers its mapping
 *                   MINOR and passes that uffd back; the server applies a
 *                   pending page from staging on first touch, then
 *                   UFFDIO_CONTINUE. Reads share the cache's pages (zero
 *                   copy); a first write copies the page (copy on write),
 *                   so the cache stays exactly the committed epoch and a
 *                   client that dies mid-way can simply resume again.
 *   anonymous mode  the client maps anonymous memory, registers it MISSING
 *                   and passes the uffd; the server UFFDIO_COPYs pages from
 *                   the committed image.
 *   Firecracker     its snapshot-restore handshake, unchanged: one message
 *                   holding a JSON array of {base_host_virt_addr, size,
 *                   offset, page_size[, page_size_kib]} and the uffd by
 *                   SCM_RIGHTS; offset is into the committed image (every
 *                   region, in order, concatenated, as `ftreplctl dump`
 *                   writes it). Served MISSING mode.
 *
 * Our requests are JSON lines, each answered by one line:
 *   {"op":"layout","shared":BOOL}  -> {"ok":true,"epoch","page_size",
 *                                      "regions":[{"id","name","size","offset"}],
 *                                      "blob":HEX}  (+ the memfd if shared)
 *   {"op":"serve","mode":"minor"|"missing","background":BOOL,
 *    "regions":[{"id","addr","size"}]}  (+ the uffd)   -> {"ok":true}
 *   {"op":"started"}     the workload executed its first instruction
 *   {"op":"wait","timeout_ms":N}  -> {"ok":true,"resident":BOOL}
 *   {"op":"stats"}       -> {"ok":true, fault server counters}
 *   {"op":"bye"}         stop serving this client
 * Errors: {"ok":false,"error":"..."} naming what was wrong.
 *
 * The first request of a promoted standby starts the resume (state
 * "resuming"); a standby that is not promoted refuses every request.
 *
 * Liveness: the client keeps its uffd and the socket open. If the server
 * goes away, blocked faults would hang (closing the uffd instead would make
 * the kernel hand out zero pages), so the client library treats the loss
 * of the socket as fatal: by default it raises SIGBUS in the process.
 */
#ifndef FTREPL_RESUME_H
#define FTREPL_RESUME_H

#include <stdbool.h>
#include <stdint.h>

#include <ftrepl/wire.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- server ------------------------------------------------------------ */

struct ftr_standby;
struct ftr_resume_server;

struct ftr_resume_server_opts {
	const char *path;	/* socket path (replaced if stale; 0600) */
	struct ftr_standby *sb;
	unsigned prefault_pages; /* pages installed after each fault (0..63) */
};

int ftr_resume_server_start(const struct ftr_resume_server_opts *o,
			    struct ftr_resume_server **out, char *err, size_t errlen);
/* Stops serving every client (their blocked faults get SIGBUS where the
 * kernel supports UFFDIO_POISON), joins the threads, unlinks the path. */
void ftr_resume_server_stop(struct ftr_resume_server *srv);

struct ftr_resume_stats {
	uint32_t clients;	    /* uffds being served or served */
	uint32_t firecracker;	    /* of which by Firecracker's handshake */
	uint64_t faults;
	uint64_t pages_faulted, pages_background, pages_resident, pages_total;
	uint64_t fault_lat_median_ns, fault_lat_p99_ns; /* of the latest client */
	uint64_t resume_begin_ns;   /* CLOCK_MONOTONIC: first request */
	uint64_t first_fault_ns;    /* first fault served */
	uint64_t started_ns;	    /* client said "started" */
	double bg_pages_per_s;
	char last_error[192];
};
void ftr_resume_server_stats(struct ftr_resume_server *srv, struct ftr_resume_stats *st);

/* ---- client ------------------------------------------------------------ */

enum ftr_resume_mode {
	FTR_RESUME_SHARED = 0,	/* map the cache memfd (private, COW), MINOR faults */
	FTR_RESUME_ANON = 1,	/* anonymous memory, MISSING faults */
};

struct ftr_resume_opts {
	enum ftr_resume_mode mode;
	bool no_background;	/* only faults make pages resident */
	int timeout_ms;		/* per request; 0 = 10000 */
	/* Where to map each region; 0 = anywhere. A workload whose memory
	 * holds pointers maps its regions back at the addresses they had on
	 * the primary (MAP_FIXED_NOREPLACE: an occupied range is an error). */
	uint64_t addrs[FTR_WIRE_MAX_REGIONS];
	/* Called from the client's monitor thread when the server is lost
	 * while regions are mapped. NULL: raise SIGBUS in the process. */
	void (*on_lost)(void *arg);
	void *arg;
};

struct ftr_resumed {
	uint64_t epoch;
	uint32_t page_size;
	uint32_t nregions;
	struct {
		void *base;
		uint64_t size;
		char name[FTR_WIRE_REGION_NAME];
	} regions[FTR_WIRE_MAX_REGIONS];
	uint32_t blob_len;
	uint8_t blob[4096];
};

/* Connects, maps every region of the committed image into this process
 * and has the server serve them. Returns 0 with *out, or -errno with one
 * line in err. */
int ftr_resume_connect(const char *path, const struct ftr_resume_opts *o,
		       struct ftr_resumed **out, char *err, size_t errlen);
/* Tells the server the workload now runs (its first instruction). */
int ftr_resume_started(struct ftr_resumed *r);
/* Waits until every page is resident. 0, -ETIMEDOUT, -errno. */
int ftr_resume_wait_resident(struct ftr_resumed *r, int timeout_ms);
/* Unmaps, says bye, closes. */
void ftr_resume_close(struct ftr_resumed *r);

#ifdef __cplusplus
}
#endif
#endif
