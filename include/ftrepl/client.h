/* SPDX-License-Identifier: MIT */
/*
 * The client library: what an application links to have its state
 * replicated by `ftrepl-sender --attach-sock PATH` (protocol in
 * include/ftrepl/attach.h).
 *
 *   1. Put the state that must survive in protected regions:
 *        ftrepl_region_create("table", 64 << 20, &table);
 *   2. Attach:  ftrepl_attach("/run/ftrepl-attach.sock", &opts);
 *   3. Let the sender pause the application at safe points. Either
 *        - safe-point mode (default): the threads that write the regions
 *          call ftrepl_safe_point() between operations (e.g. once per
 *          event-loop turn); an event loop also polls ftrepl_fd(), which
 *          is readable when a pause is waiting for it; or
 *        - callback mode: opts.pause_cb stops the application's writers
 *          (say, takes a write lock) and returns; opts.resume_cb lets them
 *          go again. The library calls both from its own thread.
 *   4. Output commit (DESIGN.md guarantee 2): instead of sending a reply
 *      that depends on state written to a region, hand it to
 *        ftrepl_output_hold(buf, len, cb, arg);
 *      cb(arg, buf, len, 0) is called once the epoch that contains that
 *      state is committed by the standby: then send it. If the session is
 *      lost first, cb(arg, buf, len, -ECANCELED) says it must never be sent.
 *      Callbacks come in the order outputs were held.
 *   5. ftrepl_sync_now() before an output that should not wait for the
 *      epoch timer (Kemari's event-driven sync): asks for an epoch now.
 *
 * A process has at most one attachment: the protected memory and the
 * pause of its threads are properties of the whole process, so this API
 * keeps them in one process-wide state (thread-safe) instead of a handle.
 *
 * Rules for the application:
 *   - only threads that take part in pauses (the safe-point threads, or
 *     the writers the pause callback stops) write the regions or hold
 *     outputs: a write outside a pause's reach could be half in an epoch;
 *   - hold an output after the region writes it depends on (in the same
 *     thread); it is then tagged with an epoch that contains them;
 *   - regions are created before ftrepl_attach() (the standby's layout is
 *     fixed for a session) and stay mapped until ftrepl_region_destroy().
 *
 * Every function returns 0 (or a count) on success or a negative errno.
 */
#ifndef FTREPL_CLIENT_H
#define FTREPL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FTREPL_MAX_REGIONS 64
#define FTREPL_REGION_NAME 24 /* including the NUL */

/*
 * Creates a protected region: a memfd of size bytes (rounded up to the page
 * size; zero filled, populated, sealed against shrinking and growing)
 * mapped shared and writable at *addr. name: 1..23 bytes. Returns 0,
 * -EINVAL, -E2BIG (64 regions exist), -EBUSY (attached: the layout is
 * fixed until ftrepl_detach()), -errno from memfd_create/mmap.
 */
int ftrepl_region_create(const char *name, size_t size, void **addr);

/* Unmaps and closes a region created by ftrepl_region_create(). Returns
 * 0, -ENOENT (not a region's address), -EBUSY (attached). */
int ftrepl_region_destroy(void *addr);

enum ftrepl_tracking {
	FTREPL_TRACK_AUTO = 0,	 /* wp-async when this kernel can, else scan */
	FTREPL_TRACK_WP_ASYNC,	 /* userfaultfd async write-protect on our own
				  * mappings; the sender reads the written set
				  * with PAGEMAP_SCAN. Exact, no faults to us. */
	FTREPL_TRACK_SCAN,	 /* the sender compares with a shadow copy */
};

/* Called with the output's bytes (the library's copy, freed after the
 * call) and status 0 (release: emit it now) or -ECANCELED (dropped: the
 * session was lost or ended before its epoch was acked; never emit it). */
typedef void (*ftrepl_output_cb)(void *arg, const void *buf, size_t len, int status);

struct ftrepl_attach_opts {
	enum ftrepl_tracking tracking;
	/* wp-async: keep the uffd here instead of passing it to the sender.
	 * (Passing it lets the sender check its features.) */
	bool keep_uffd;
	/* Safe-point mode: how many threads call ftrepl_safe_point(); a pause
	 * is answered when all of them are parked in it. 0 = 1. */
	unsigned safe_point_threads;
	/* Callback mode when pause_cb is set: called from the library's
	 * thread; returns 0 once the writers are stopped, or -errno to refuse
	 * (the sender's pause then fails and so does the session).
	 * resume_cb follows every successful pause_cb exactly once: on the
	 * sender's resume, or when the session ends while paused (the final
	 * epoch of an orderly stop leaves the workload paused), or in
	 * ftrepl_detach() (then from the caller's thread). */
	int (*pause_cb)(void *arg);
	void (*resume_cb)(void *arg);
	void *cb_arg;
	/* Output callbacks run in the thread that calls ftrepl_dispatch() or
	 * ftrepl_safe_point() (ftrepl_fd() becomes readable when some are
	 * due) instead of the library's thread. Handy for single-threaded
	 * event loops that own their sockets. */
	bool release_in_dispatch;
	/* Called once from the library's thread when the session ends: reason
	 * -ESHUTDOWN (the sender stopped orderly), -ECONNRESET (lost, or the
	 * sender went away). May be NULL. */
	void (*on_end)(void *arg, int reason);
	/* How long to wait for the sender's answer to the attach; 0 = 10 s. */
	int timeout_ms;
};

/*
 * Connects to the sender's attach socket, sends the layout of every region
 * with their memfds (and, for wp-async, registers the regions on a new
 * uffd with UFFD_FEATURE_WP_ASYNC and write-protects them first), waits for
 * the answer and starts the library's thread. opts may be NULL (defaults).
 * Returns 0, -EALREADY (attached), -ENOENT (no region), -EOPNOTSUPP
 * (wp-async asked for and not available), -ECONNREFUSED/-ENOENT (no
 * sender), -EPROTO (the sender refused: ftrepl_last_error() says why),
 * -ETIMEDOUT, -errno.
 */
int ftrepl_attach(const char *sock_path, const struct ftrepl_attach_opts *opts);

/*
 * Safe-point mode: call between operations from each safe-point thread.
 * Returns at once when no pause is pending; otherwise parks until the
 * sender resumes. Also runs due output callbacks when release_in_dispatch.
 * Returns 0 while protected, -ESHUTDOWN after an orderly stop,
 * -ECONNRESET after the session was lost or the sender went away,
 * -ENOTCONN when not attached. A parked thread is released when the
 * session ends.
 */
int ftrepl_safe_point(void);

/* An eventfd (level triggered, never read it yourself) that is readable
 * while a pause waits for ftrepl_safe_point(), while output callbacks are
 * due (release_in_dispatch), and once the session has ended. -ENOTCONN
 * when not attached. */
int ftrepl_fd(void);

/* Runs the output callbacks that are due (release_in_dispatch), in order.
 * Returns how many ran. Do not call it from an output callback. */
int ftrepl_dispatch(void);

/* Asks the sender for an epoch now. 0, -ENOTCONN, -ECONNRESET. */
int ftrepl_sync_now(void);

/*
 * Holds an output until the epoch that contains the state behind it is
 * acked (see above); buf is copied. Returns 0, -ENOTCONN (not attached
 * or the session has ended: nothing was held, the callback will not be
 * called), -ENOMEM.
 */
int ftrepl_output_hold(const void *buf, size_t len, ftrepl_output_cb cb, void *arg);

/* An application counter (e.g. requests served) that the sender shows as
 * the workload's progress in `ftreplctl status` and stores in each
 * epoch's state blob. */
void ftrepl_set_progress(uint64_t value);

enum ftrepl_state {
	FTREPL_DETACHED = 0,	/* not attached */
	FTREPL_PROTECTED,	/* attached, epochs are being cut */
	FTREPL_STOPPED,		/* the sender ended protection orderly */
	FTREPL_LOST,		/* the session failed or the sender went away */
};

struct ftrepl_status {
	enum ftrepl_state state;
	char tracking[16];	/* "wp-async" or "scan" */
	uint64_t epoch_cut;	/* last epoch cut, UINT64_MAX before epoch 0 */
	uint64_t epoch_acked;	/* last epoch acked, UINT64_MAX before epoch 0 */
	uint64_t pauses;	/* pauses answered */
	uint64_t outputs_held;	/* waiting for their epoch now */
	uint64_t outputs_released;
	uint64_t outputs_dropped;
	char error[256];	/* the latest error (the sender's or ours), "" */
};

/* Fills st. Returns 0. */
int ftrepl_get_status(struct ftrepl_status *st);

/* The latest error text ("" if none); the pointer is valid until the next
 * ftrepl_attach() or ftrepl_detach() (prefer ftrepl_get_status() when
 * other threads may change it). */
const char *ftrepl_last_error(void);

/*
 * Ends the attachment: stops the library's thread, closes the connection
 * (the sender's session then fails unless it stopped already: detaching
 * from a live session is a crash of the workload for the sender), drops
 * held outputs (callbacks with -ECANCELED, in this thread), releases
 * parked threads and removes write-protection from the regions. The
 * regions stay. Returns 0 or -ENOTCONN. Not from an output callback.
 */
int ftrepl_detach(void);

#ifdef __cplusplus
}
#endif
#endif
