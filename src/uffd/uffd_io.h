/* SPDX-License-Identifier: MIT */
/*
 * Thin userfaultfd wrappers shared by the probe, the dirty trackers and the
 * fault server. Every function returns 0 (or a count / fd) or -errno and
 * never logs: the caller knows what the failure means for it.
 *
 * The benign errors live here, once (STYLE.md: "the benign uffd errors
 * belong in one place"): EAGAIN from a range ioctl while the address space
 * is changing (mmap_changing, fork/mremap events) is retried.
 */
#ifndef FTR_UFFD_IO_H
#define FTR_UFFD_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "uffd/uffd_compat.h"

/* How a userfaultfd can be had here, in the order ftr_uffd_open tries. */
enum ftr_uffd_how {
	FTR_UFFD_SYSCALL,	 /* userfaultfd(2), kernel and user faults */
	FTR_UFFD_DEV,		 /* /dev/userfaultfd + USERFAULTFD_IOC_NEW */
	FTR_UFFD_SYSCALL_USER,	 /* userfaultfd(2) with UFFD_USER_MODE_ONLY */
};

/* Creates a userfaultfd the given way, O_CLOEXEC | O_NONBLOCK (poll() on a
 * blocking uffd returns POLLERR at once), without UFFDIO_API. Returns the
 * fd or -errno (-ENOSYS: kernel without userfaultfd). */
int ftr_uffd_create(enum ftr_uffd_how how);

/* Creates a userfaultfd (userfaultfd(2), then /dev/userfaultfd, then - only
 * when user_mode_ok - userfaultfd(2) with UFFD_USER_MODE_ONLY, which cannot
 * resolve faults the kernel takes on the process's behalf) and performs
 * UFFDIO_API asking for `features`. Returns the fd or -errno: -EINVAL when
 * the kernel refuses a feature; the error of the first attempt when none
 * works. *avail (may be NULL) gets the features the kernel reported,
 * *ioctls (may be NULL) its ioctl mask, *how (may be NULL) the way used. */
int ftr_uffd_open(uint64_t features, bool user_mode_ok, uint64_t *avail,
		  uint64_t *ioctls, enum ftr_uffd_how *how);

/* UFFDIO_API on a fresh fd (once per fd). Returns 0 or -errno. */
int ftr_uffd_api(int uffd, uint64_t features, uint64_t *avail, uint64_t *ioctls);

/* The features a userfaultfd of this process was given by its UFFDIO_API,
 * read from /proc/self/fdinfo (for an fd someone else set up). Returns 0,
 * -ENOENT when fd is not a userfaultfd (or its API was not done yet), or
 * -errno. */
int ftr_uffd_fd_features(int uffd, uint64_t *features);

/* UFFDIO_REGISTER of [addr, addr+len) in `mode`; *ioctls (may be NULL) gets
 * the range ioctl mask the kernel returns. Returns 0 or -errno. */
int ftr_uffd_register(int uffd, void *addr, uint64_t len, uint64_t mode,
		      uint64_t *ioctls);
int ftr_uffd_unregister(int uffd, void *addr, uint64_t len);

/* UFFDIO_WRITEPROTECT: protect (true) or unprotect (false) the range.
 * Unprotecting wakes the threads blocked on it unless dontwake. EAGAIN is
 * retried. Returns 0 or -errno. */
int ftr_uffd_wp(int uffd, void *addr, uint64_t len, bool protect, bool dontwake);

/* UFFDIO_WAKE on the range. Returns 0 or -errno. */
int ftr_uffd_wake(int uffd, void *addr, uint64_t len);

/* True when bit _UFFDIO_x is in an ioctl mask. */
static inline bool ftr_uffd_has_ioctl(uint64_t mask, unsigned nr)
{
	return (mask >> nr) & 1;
}

#endif
