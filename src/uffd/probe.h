/* SPDX-License-Identifier: MIT */
/*
 * What the running kernel supports for ftrepl: userfaultfd and its modes,
 * PAGEMAP_SCAN, io_uring. Only the probe decides this (DESIGN.md); every
 * other part asks ftr_kprobe_get().
 *
 * The probe runs once per process (pthread_once), on throwaway fds: each
 * check opens its own userfaultfd (UFFDIO_API may be issued once per fd),
 * maps a real test page (anonymous, or a memfd page for the shmem checks),
 * registers it and uses it - a write-protect fault is really taken and
 * resolved, a PAGEMAP_SCAN really reports and re-protects a written page -
 * so "yes" means "works here", not "the header has it". Probing costs a
 * few milliseconds and leaves nothing behind.
 *
 * The result is a property of the kernel and the process's privileges,
 * not of a session, which is why it may live in a process-wide cache.
 */
#ifndef FTR_UFFD_PROBE_H
#define FTR_UFFD_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* The items the probe answers yes/no, each with a reason when "no". */
enum ftr_kfeat {
	FTR_KF_UFFD,		/* a userfaultfd can be created */
	FTR_KF_WP,		/* sync write-protect on anonymous memory */
	FTR_KF_WP_ASYNC,	/* UFFD_FEATURE_WP_ASYNC (registration works) */
	FTR_KF_WP_UNPOPULATED,	/* UFFD_FEATURE_WP_UNPOPULATED */
	FTR_KF_WP_SHMEM,	/* sync write-protect on memfd/shmem */
	FTR_KF_WP_ASYNC_SHMEM,	/* async WP + PAGEMAP_SCAN on memfd/shmem */
	FTR_KF_MINOR_SHMEM,	/* MINOR mode + UFFDIO_CONTINUE on shmem */
	FTR_KF_MISSING_SHMEM,	/* MISSING mode + UFFDIO_COPY on shmem */
	FTR_KF_PAGEMAP_SCAN,	/* the PAGEMAP_SCAN ioctl (read-only scan) */
	FTR_KF_PAGEMAP_SCAN_WP,	/* WP_MATCHING|CHECK_WPASYNC on a real page */
	FTR_KF_IO_URING,	/* io_uring_setup(2) works */
	FTR_KF_COUNT
};

#define FTR_KPROBE_WHY_LEN 112

struct ftr_kprobe {
	char release[65];	/* uname -r */

	/* userfaultfd */
	bool uffd;		/* any of the three ways below works */
	bool uffd_syscall;	/* userfaultfd(2) for kernel and user faults */
	bool uffd_dev;		/* /dev/userfaultfd */
	bool uffd_user_only;	/* userfaultfd(2) with UFFD_USER_MODE_ONLY */
	uint64_t features;	/* UFFDIO_API features the kernel offers */
	uint64_t ioctls;	/* UFFDIO_API ioctl mask */
	uint64_t anon_wp_ioctls; /* range ioctls of an anonymous page
				  * registered in WP mode (0 if refused) */

	bool wp;
	bool wp_async;
	bool wp_unpopulated;
	bool wp_shmem;
	bool wp_async_shmem;
	bool minor_shmem;
	bool missing_shmem;
	bool pagemap_scan;
	bool pagemap_scan_wp;

	/* io_uring */
	bool io_uring;
	bool io_uring_probed;	/* liburing's opcode probe ran (below valid) */
	bool uring_sendmsg;
	bool uring_send_zc;
	bool uring_sendmsg_zc;
	bool uring_read_fixed;

	/* why[f]: a short reason when item f is unavailable, "" when it is. */
	char why[FTR_KF_COUNT][FTR_KPROBE_WHY_LEN];
};

/* Probes the kernel the first time it is called (thread-safe) and points
 * *out at the cached result, valid for the life of the process. Returns
 * 0 (an unavailable feature is a result, not an error) or -errno when the
 * probe itself could not run. */
int ftr_kprobe_get(const struct ftr_kprobe **out);

/* Availability and reason of one item (reason "" when available). */
bool ftr_kprobe_has(const struct ftr_kprobe *kp, enum ftr_kfeat f);
const char *ftr_kprobe_why(const struct ftr_kprobe *kp, enum ftr_kfeat f);
/* Stable name of an item as used in the JSON ("wp_async"), or NULL. */
const char *ftr_kfeat_name(enum ftr_kfeat f);

/* Writes the probe result as aligned "name   yes|no: reason" lines. */
void ftr_kprobe_print(FILE *f);

/* The probe result as a JSON object for `ftreplctl status` (new
 * reference, caller owns it; NULL on allocation failure). Keys: "kernel",
 * "uffd_syscall", "uffd_dev", "uffd_user_only", "uffd_features" and
 * "uffd_ioctls" (hex strings, "0x1ffff"), one boolean per item named by
 * ftr_kfeat_name() ("uffd", "wp", "wp_async", ...), "io_uring_ops" (object,
 * when liburing's probe ran) and "unavailable" (object: item name ->
 * reason, for every item that is unavailable). */
json_t *ftr_kprobe_json(void);

#endif
