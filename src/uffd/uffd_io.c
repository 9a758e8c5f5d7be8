/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd wrappers (see uffd_io.h). No state, no logging.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "common/common.h"
#include "uffd/uffd_io.h"

/* How many times a range ioctl is retried on EAGAIN (mmap_changing lasts
 * as long as a fork or mremap event waits to be read). */
#define UFFD_EAGAIN_TRIES 1000

int ftr_uffd_create(enum ftr_uffd_how how)
{
	int flags = O_CLOEXEC | O_NONBLOCK;
	int fd;

	switch (how) {
	case FTR_UFFD_SYSCALL:
	case FTR_UFFD_SYSCALL_USER:
#ifdef __NR_userfaultfd
		if (how == FTR_UFFD_SYSCALL_USER)
			flags |= UFFD_USER_MODE_ONLY;
		fd = (int)syscall(__NR_userfaultfd, flags);
		return fd < 0 ? -errno : fd;
#else
		return -ENOSYS;
#endif
	case FTR_UFFD_DEV: {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev < 0)
			return -errno;
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
		if (fd < 0)
			fd = -errno;
		close(dev);
		return fd;
	}
	}
	return -EINVAL;
}

int ftr_uffd_api(int uffd, uint64_t features, uint64_t *avail, uint64_t *ioctls)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	if (ioctl(uffd, UFFDIO_API, &api) < 0)
		return -errno;
	if (avail)
		*avail = api.features;
	if (ioctls)
		*ioctls = api.ioctls;
	return 0;
}

int ftr_uffd_open(uint64_t features, bool user_mode_ok, uint64_t *avail,
		  uint64_t *ioctls, enum ftr_uffd_how *how)
{
	static const enum ftr_uffd_how order[] = {
		FTR_UFFD_SYSCALL, FTR_UFFD_DEV, FTR_UFFD_SYSCALL_USER,
	};
	int first_err = 0;

	for (size_t i = 0; i < FTR_ARRAY_SIZE(order); i++) {
		int fd, rc;

		if (order[i] == FTR_UFFD_SYSCALL_USER && !user_mode_ok)
			break;
		fd = ftr_uffd_create(order[i]);
		if (fd < 0) {
			if (!first_err)
				first_err = fd;
			continue;
		}
		rc = ftr_uffd_api(fd, features, avail, ioctls);
		if (rc < 0) {
			/* A refused feature is refused whichever way the fd
			 * was made: no point trying the others. */
			close(fd);
			return rc;
		}
		if (how)
			*how = order[i];
		return fd;
	}
	return first_err ? first_err : -ENOSYS;
}

int ftr_uffd_fd_features(int uffd, uint64_t *features)
{
	char path[64], line[256];
	unsigned long long api, feat, ioctls;
	int rc = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", uffd);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		/* "API:\t<api>:<features>:<ioctls>", hex; features include
		 * the kernel's internal bits (INITIALIZED, bit 31) */
		if (sscanf(line, "API: %llx:%llx:%llx", &api, &feat, &ioctls) == 3) {
			if (api == UFFD_API) {
				*features = feat & 0x7fffffffull;
				rc = 0;
			}
			break;
		}
	}
	fclose(f);
	return rc;
}

int ftr_uffd_register(int uffd, void *addr, uint64_t len, uint64_t mode,
		      uint64_t *ioctls)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = mode,
	};

	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	if (ioctls)
		*ioctls = reg.ioctls;
	return 0;
}

int ftr_uffd_unregister(int uffd, void *addr, uint64_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

int ftr_uffd_wp(int uffd, void *addr, uint64_t len, bool protect, bool dontwake)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
			(dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0),
	};

	for (int i = 0; i < UFFD_EAGAIN_TRIES; i++) {
		if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0)
			return 0;
		if (errno != EAGAIN)
			return -errno;
		sched_yield();
	}
	return -EAGAIN;
}

int ftr_uffd_wake(int uffd, void *addr, uint64_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(uffd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}
