/* SPDX-License-Identifier: MIT */
/*
 * Attached workloads: a separate process (an application linked with the
 * client library, include/ftrepl/client.h) hands its protected regions to
 * the sender, which replicates them like the in-process synthetic one.
 *
 * `ftrepl-sender --attach-sock PATH` listens on a unix stream socket (mode
 * 0600; a stale socket file is replaced, a live one or any other file is
 * an error) and accepts ONE workload. The protocol is JSON lines.
 *
 * 1. Attach (client -> sender), one line, with SCM_RIGHTS descriptors on
 *    its first byte: one memfd per region, in order, then the uffd when
 *    "uffd" is true. Region fields use Firecracker's names:
 *      {"op":"attach","version":1,"pid":P,"uffd":BOOL,"tracking":"wp-async"|"scan",
 *       "regions":[{"base_host_virt_addr":A,"size":S,"offset":O,
 *                   "page_size":4096,"name":"heap"}, ...]}
 *    ("op" and "version" may be left out; "tracking" defaults to wp-async.)
 *    Checked, each failure answered with {"op":"error","error":TEXT} and a
 *    log line, after which the sender keeps waiting for a good client:
 *      - one line of valid JSON, at most 64 KiB, an object with these types;
 *      - pid equals the peer's pid (SO_PEERCRED); the peer runs as root or
 *        as the sender's user;
 *      - 1..64 regions; page_size is the system page size; size > 0 and
 *        base_host_virt_addr, size and offset are multiples of it; names
 *        shorter than 24 bytes;
 *      - exactly as many descriptors as regions (+1 with "uffd":true);
 *      - each region fd is a memfd sealed against shrinking (F_SEAL_SHRINK:
 *        a shrink under the sender's mapping would kill it with SIGBUS),
 *        at least offset + size long;
 *      - each region is, in process P, a shared mapping of that memfd at
 *        base_host_virt_addr with that offset (/proc/P/maps), so writes
 *        land in the memory the sender reads;
 *      - wp-async: the kernel can do it, the uffd (when passed) was set up
 *        with UFFD_FEATURE_WP_ASYNC, and every region is under async
 *        write-protect in process P (a PAGEMAP_SCAN check walk).
 *    Success: {"op":"attached","regions":N,"page_size":4096,"tracking":T}.
 *    The sender maps every memfd (MAP_SHARED, read only) to send pages.
 *
 * 2. Epochs. Sender -> client:
 *      {"op":"pause","epoch":E,"seq":N}  reach a safe point; E is the epoch
 *                                        this pause cuts if it cuts one
 *      {"op":"cut","epoch":E}            (while paused) the state at this
 *                                        pause is epoch E
 *      {"op":"resume","seq":N}           run again
 *      {"op":"acked","epoch":E}          the standby committed E: outputs
 *                                        of epochs <= E may be released
 *      {"op":"lost","why":TEXT}          the session failed: drop outputs
 *                                        not released, never release them
 *      {"op":"stop"}                     orderly end of protection (after
 *                                        the last epoch was acked)
 *      {"op":"error","error":TEXT}       the client's last line was bad
 *    Client -> sender:
 *      {"op":"paused","seq":N[,"progress":K]}  at a safe point; K is an
 *                                        application counter for status
 *      {"op":"refused","error":TEXT}     cannot pause (fails the pause)
 *      {"op":"sync"}                     cut an epoch now (Kemari's
 *                                        event-driven sync before an output)
 *    A pause not answered within the engine's timeout fails with
 *    -ETIMEDOUT and a log line naming the process. A bad line after the
 *    attach (malformed, unknown op, over-long, carrying descriptors) gets
 *    an error reply and a log line and is otherwise ignored.
 *
 * Dirty tracking comes from the workload side, because the sender's own
 * mapping of a shared memfd does not see write-protect faults taken
 * through another process's mapping:
 *   wp-async  the client registered its own mappings with
 *             UFFD_FEATURE_WP_ASYNC; the sender's harvest runs PAGEMAP_SCAN
 *             (WP_MATCHING) on /proc/P/pagemap, i.e. on the client's
 *             address space, with the client's addresses. Exact.
 *   scan      a shadow copy compared in the sender (content compare works
 *             across processes). Costs a copy of the regions.
 * The workload's harvest fills the maps exactly, so the primary must use
 * the workload's tracking (FTR_DIRTY_WORKLOAD; ftrepl-sender maps --dirty
 * auto to it) or its own `scan`; wp-async/wp-sync backends created by the
 * primary on its own mapping would miss the client's writes.
 *
 * Dirty budget: with wp-async and regions larger than the soft limit, a
 * monitor thread counts written pages (read-only PAGEMAP_SCAN, every 10
 * ms) and asks for an early epoch at the soft limit. Nothing can stop the
 * client at the hard limit: a harvest whose non-fill pages exceed it fails
 * (-EFBIG, logged) rather than overrun the standby's staging.
 *
 * A client that disconnects (or dies) ends the workload: the next pause
 * fails with -ECONNRESET (the engine is woken at once through cut_fd), so
 * the primary FAILS the session (exit 1 with the reason) and the standby
 * treats it as a primary failure (it keeps the last committed epoch and
 * promotes). An orderly end is the sender's: SIGTERM, `ftreplctl stop` or
 * --epochs/--duration cut a final epoch, wait for its ACK and send "stop".
 */
#ifndef FTREPL_ATTACH_H
#define FTREPL_ATTACH_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ftr_workload;

/*
 * Listens on sock_path and waits up to timeout_ms (< 0: forever) for a
 * workload process to attach. Clients whose attach line is rejected get an
 * error reply and are dropped; waiting goes on for the next one. On
 * success the listener is closed and its path removed, and the workload
 * (ops as in src/checkpoint/workload.h) is returned in *out; free it with
 * ftr_workload_destroy(). Returns 0, or -errno with one line in err (when
 * errlen > 0): -ETIMEDOUT (nobody attached; err names the last rejection,
 * if any), -EADDRINUSE (a live socket at sock_path), -EEXIST (another
 * kind of file there), -EINVAL (path too long), -ENOMEM.
 */
int ftr_attach_workload_create(const char *sock_path, int timeout_ms, struct ftr_workload **out,
			       char *err, size_t errlen);

/* For an attached workload: copies the latest failure (a pause timeout, a
 * bad line from the client, the disconnect; "" when none) into buf and
 * returns 0; the tracking in use ("wp-async" or "scan"); the client's pid.
 * -EINVAL / NULL / -1 for other kinds of workload. */
int ftr_attach_last_error(struct ftr_workload *wl, char *buf, size_t len);
const char *ftr_attach_tracking(struct ftr_workload *wl);
int ftr_attach_pid(struct ftr_workload *wl);

#ifdef __cplusplus
}
#endif
#endif
