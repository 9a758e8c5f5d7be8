/* SPDX-License-Identifier: MIT */
/*
 * The kernel probe (see probe.h). Each check is one function that fills its
 * items of struct ftr_kprobe and, when the answer is no, says why in one
 * short phrase. A check that needs a feature another check found missing
 * inherits that reason instead of trying.
 *
 * Threads: check_wp_fault() starts one short-lived writer thread that takes
 * a real write-protect fault while this thread resolves it; the thread is
 * always joined (closing the uffd wakes it if the fault is never read).
 */
#define FTR_LOG_PREFIX "uffd"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#ifdef FTREPL_HAVE_URING
#include <liburing.h>
#else
#include <linux/io_uring.h>
#endif

#include "common/common.h"
#include "uffd/probe.h"
#include "uffd/uffd_io.h"

/* How long a probe waits for a write-protect fault it provoked. */
#define PROBE_FAULT_TIMEOUT_MS 2000

static struct ftr_kprobe probe_result;
static int probe_rc;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static const struct {
	const char *name;
	size_t off; /* of the bool in struct ftr_kprobe */
} kfeat_tab[FTR_KF_COUNT] = {
	[FTR_KF_UFFD] = { "uffd", offsetof(struct ftr_kprobe, uffd) },
	[FTR_KF_WP] = { "wp", offsetof(struct ftr_kprobe, wp) },
	[FTR_KF_WP_ASYNC] = { "wp_async", offsetof(struct ftr_kprobe, wp_async) },
	[FTR_KF_WP_UNPOPULATED] = { "wp_unpopulated",
				    offsetof(struct ftr_kprobe, wp_unpopulated) },
	[FTR_KF_WP_SHMEM] = { "wp_shmem", offsetof(struct ftr_kprobe, wp_shmem) },
	[FTR_KF_WP_ASYNC_SHMEM] = { "wp_async_shmem",
				    offsetof(struct ftr_kprobe, wp_async_shmem) },
	[FTR_KF_MINOR_SHMEM] = { "minor_shmem", offsetof(struct ftr_kprobe, minor_shmem) },
	[FTR_KF_MISSING_SHMEM] = { "missing_shmem",
				   offsetof(struct ftr_kprobe, missing_shmem) },
	[FTR_KF_PAGEMAP_SCAN] = { "pagemap_scan", offsetof(struct ftr_kprobe, pagemap_scan) },
	[FTR_KF_PAGEMAP_SCAN_WP] = { "pagemap_scan_wp",
				     offsetof(struct ftr_kprobe, pagemap_scan_wp) },
	[FTR_KF_IO_URING] = { "io_uring", offsetof(struct ftr_kprobe, io_uring) },
};

const char *ftr_kfeat_name(enum ftr_kfeat f)
{
	return (unsigned)f < FTR_KF_COUNT ? kfeat_tab[f].name : NULL;
}

static bool *kfeat_flag(struct ftr_kprobe *kp, enum ftr_kfeat f)
{
	return (bool *)((char *)kp + kfeat_tab[f].off);
}

bool ftr_kprobe_has(const struct ftr_kprobe *kp, enum ftr_kfeat f)
{
	if ((unsigned)f >= FTR_KF_COUNT)
		return false;
	return *(const bool *)((const char *)kp + kfeat_tab[f].off);
}

const char *ftr_kprobe_why(const struct ftr_kprobe *kp, enum ftr_kfeat f)
{
	return (unsigned)f < FTR_KF_COUNT ? kp->why[f] : "unknown item";
}

static void FTR_PRINTF(3, 4) set_no(struct ftr_kprobe *kp, enum ftr_kfeat f,
				    const char *fmt, ...)
{
	va_list ap;

	*kfeat_flag(kp, f) = false;
	va_start(ap, fmt);
	vsnprintf(kp->why[f], sizeof(kp->why[f]), fmt, ap);
	va_end(ap);
}

static void set_yes(struct ftr_kprobe *kp, enum ftr_kfeat f)
{
	*kfeat_flag(kp, f) = true;
	kp->why[f][0] = '\0';
}

/* Item f is unavailable because item dep is. */
static void set_no_dep(struct ftr_kprobe *kp, enum ftr_kfeat f, enum ftr_kfeat dep)
{
	set_no(kp, f, "needs %s: %s", kfeat_tab[dep].name, kp->why[dep]);
}

/* ---- test pages -------------------------------------------------------- */

struct probe_mem {
	char *addr;
	size_t len;
	int memfd; /* -1 for anonymous */
};

static long sys_page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

/* Maps npages of anonymous memory (memfd = false) or of a fresh memfd,
 * MAP_SHARED. Returns 0 or -errno. */
static int probe_mem_map(struct probe_mem *m, size_t npages, bool memfd)
{
	int flags = MAP_SHARED;

	m->len = npages * (size_t)sys_page_size();
	m->memfd = -1;
	if (memfd) {
		m->memfd = memfd_create("ftrepl-probe", MFD_CLOEXEC);
		if (m->memfd < 0)
			return -errno;
		if (ftruncate(m->memfd, (off_t)m->len) < 0) {
			int err = -errno;

			close(m->memfd);
			return err;
		}
	} else {
		flags = MAP_PRIVATE | MAP_ANONYMOUS;
	}
	m->addr = mmap(NULL, m->len, PROT_READ | PROT_WRITE, flags, m->memfd, 0);
	if (m->addr == MAP_FAILED) {
		int err = -errno;

		if (m->memfd >= 0)
			close(m->memfd);
		return err;
	}
	return 0;
}

static void probe_mem_unmap(struct probe_mem *m)
{
	munmap(m->addr, m->len);
	if (m->memfd >= 0)
		close(m->memfd);
}

/* ---- userfaultfd availability and API ---------------------------------- */

static void check_uffd(struct ftr_kprobe *kp)
{
	static const enum ftr_uffd_how hows[] = {
		FTR_UFFD_SYSCALL, FTR_UFFD_DEV, FTR_UFFD_SYSCALL_USER,
	};
	bool *flags[] = { &kp->uffd_syscall, &kp->uffd_dev, &kp->uffd_user_only };
	int errs[FTR_ARRAY_SIZE(hows)];
	int api_fd = -1;

	for (size_t i = 0; i < FTR_ARRAY_SIZE(hows); i++) {
		int fd = ftr_uffd_create(hows[i]);

		errs[i] = fd < 0 ? fd : 0;
		*flags[i] = fd >= 0;
		if (fd < 0)
			continue;
		if (api_fd < 0)
			api_fd = fd;
		else
			close(fd);
	}
	if (api_fd < 0) {
		if (errs[0] == -ENOSYS)
			set_no(kp, FTR_KF_UFFD, "kernel built without userfaultfd (ENOSYS)");
		else if (errs[0] == -EPERM)
			set_no(kp, FTR_KF_UFFD,
			       "userfaultfd(2) not permitted (vm.unprivileged_userfaultfd=0)"
			       " and /dev/userfaultfd: %s", strerror(-errs[1]));
		else
			set_no(kp, FTR_KF_UFFD, "userfaultfd(2): %s", strerror(-errs[0]));
		return;
	}
	/* Asking for no feature makes the kernel list all it offers. */
	int rc = ftr_uffd_api(api_fd, 0, &kp->features, &kp->ioctls);

	close(api_fd);
	if (rc < 0) {
		set_no(kp, FTR_KF_UFFD, "UFFDIO_API: %s", strerror(-rc));
		return;
	}
	set_yes(kp, FTR_KF_UFFD);
}

/* Opens a probe uffd with those of `want` the kernel offers plus all of
 * `need`; on failure marks f unavailable. Returns the fd or -1. */
static int probe_open(struct ftr_kprobe *kp, enum ftr_kfeat f, uint64_t need,
		      uint64_t want)
{
	int fd;

	if (!kp->uffd) {
		set_no_dep(kp, f, FTR_KF_UFFD);
		return -1;
	}
	fd = ftr_uffd_open(need | (want & kp->features), true, NULL, NULL, NULL);
	if (fd < 0) {
		set_no(kp, f, "UFFDIO_API with features 0x%llx: %s",
		       (unsigned long long)(need | (want & kp->features)), strerror(-fd));
		return -1;
	}
	return fd;
}

/* ---- a real write-protect fault ---------------------------------------- */

struct wp_writer {
	volatile char *page;
	atomic_bool done;
};

static void *wp_writer_main(void *arg)
{
	struct wp_writer *w = arg;

	w->page[1] = 0x5a;
	atomic_store(&w->done, true);
	return NULL;
}

/* The page is registered WP on uffd and write-protected. A thread writes
 * to it; this must produce a WP fault message, which is resolved by
 * unprotecting. Returns 0 when the round trip worked, or a reason. */
static const char *check_wp_fault(int uffd, char *page, size_t len)
{
	struct wp_writer w = { .page = page };
	const char *why = NULL;
	pthread_t th;
	uint64_t deadline = ftr_now_ms() + PROBE_FAULT_TIMEOUT_MS;

	if (pthread_create(&th, NULL, wp_writer_main, &w))
		return "cannot start the probe writer thread";
	for (;;) {
		struct pollfd p = { .fd = uffd, .events = POLLIN };
		struct uffd_msg msg;
		int n = poll(&p, 1, 10);

		if (n > 0) {
			ssize_t r = read(uffd, &msg, sizeof(msg));

			if (r < 0 && errno == EAGAIN)
				continue;
			if (r != (ssize_t)sizeof(msg))
				why = "reading the fault message failed";
			else if (msg.event != UFFD_EVENT_PAGEFAULT ||
				 !(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP))
				why = "unexpected message instead of a WP fault";
			break;
		}
		if (atomic_load(&w.done)) {
			why = "a write to a write-protected page did not fault";
			break;
		}
		if (ftr_now_ms() > deadline) {
			why = "no write-protect fault within 2 s";
			break;
		}
	}
	/* Unprotecting wakes the writer (also when the fault was not read). */
	if (ftr_uffd_wp(uffd, page, len, false, false) < 0 && !why)
		why = "UFFDIO_WRITEPROTECT (unprotect) failed";
	ftr_uffd_unregister(uffd, page, len);
	pthread_join(th, NULL);
	if (!why && (page[1] != 0x5a || !atomic_load(&w.done)))
		why = "the faulting write did not complete";
	return why;
}

/* Registers m in WP mode on uffd, checks UFFDIO_WRITEPROTECT is offered
 * and takes a real fault. Marks f. */
static void check_wp_on(struct ftr_kprobe *kp, enum ftr_kfeat f, int uffd,
			struct probe_mem *m, uint64_t *ioctls_out)
{
	uint64_t ioctls = 0;
	const char *why;
	int rc;

	m->addr[0] = 1; /* populated: the classic WP case */
	rc = ftr_uffd_register(uffd, m->addr, m->len, UFFDIO_REGISTER_MODE_WP, &ioctls);
	if (ioctls_out)
		*ioctls_out = rc < 0 ? 0 : ioctls;
	if (rc < 0) {
		set_no(kp, f, "UFFDIO_REGISTER mode WP: %s", strerror(-rc));
		return;
	}
	if (!ftr_uffd_has_ioctl(ioctls, _UFFDIO_WRITEPROTECT)) {
		set_no(kp, f, "WP registration offers no UFFDIO_WRITEPROTECT");
		return;
	}
	rc = ftr_uffd_wp(uffd, m->addr, m->len, true, false);
	if (rc < 0) {
		set_no(kp, f, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
		return;
	}
	why = check_wp_fault(uffd, m->addr, m->len);
	if (why)
		set_no(kp, f, "%s", why);
	else
		set_yes(kp, f);
}

static void check_wp(struct ftr_kprobe *kp, bool shmem)
{
	enum ftr_kfeat f = shmem ? FTR_KF_WP_SHMEM : FTR_KF_WP;
	struct probe_mem m;
	int uffd, rc;

	if (shmem && !(kp->features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
		set_no(kp, f, "kernel does not offer UFFD_FEATURE_WP_HUGETLBFS_SHMEM");
		return;
	}
	uffd = probe_open(kp, f, UFFD_FEATURE_PAGEFAULT_FLAG_WP |
			  (shmem ? UFFD_FEATURE_WP_HUGETLBFS_SHMEM : 0), 0);
	if (uffd < 0)
		return;
	rc = probe_mem_map(&m, 1, shmem);
	if (rc < 0) {
		set_no(kp, f, "test page: %s", strerror(-rc));
		close(uffd);
		return;
	}
	check_wp_on(kp, f, uffd, &m, shmem ? NULL : &kp->anon_wp_ioctls);
	close(uffd);
	probe_mem_unmap(&m);
}

/* ---- async WP and PAGEMAP_SCAN ----------------------------------------- */

/* One PAGEMAP_SCAN over m: returns the number of regions or -errno. */
static int scan(int pagemap, struct probe_mem *m, uint64_t flags, uint64_t mask,
		struct page_region *vec, size_t vec_len)
{
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.flags = flags,
		.start = (uintptr_t)m->addr,
		.end = (uintptr_t)m->addr + m->len,
		.vec = (uintptr_t)vec,
		.vec_len = vec_len,
		.category_mask = mask,
		.return_mask = mask,
	};
	int n = ioctl(pagemap, PAGEMAP_SCAN, &a);

	return n < 0 ? -errno : n;
}

/* Two pages, page 0 populated, page 1 not, both async write-protected.
 * Checks a read-only scan (PAGE_IS_PRESENT: page 0 only) and the
 * WP_MATCHING cycle: nothing written -> write both -> both reported ->
 * re-protected, nothing reported. Marks pagemap_scan (anonymous only) and
 * `f` (pagemap_scan_wp or wp_async_shmem). */
static void check_scan_wp(struct ftr_kprobe *kp, enum ftr_kfeat f, struct probe_mem *m,
			  bool shmem)
{
	const uint64_t wpf = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
	const uintptr_t base = (uintptr_t)m->addr;
	const long ps = sys_page_size();
	struct page_region vec[4];
	int pagemap, n;

	pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap < 0) {
		if (!shmem)
			set_no(kp, FTR_KF_PAGEMAP_SCAN, "/proc/self/pagemap: %s",
			       strerror(errno));
		set_no(kp, f, "/proc/self/pagemap: %s", strerror(errno));
		return;
	}
	if (!shmem) {
		n = scan(pagemap, m, 0, PAGE_IS_PRESENT, vec, 4);
		if (n == -ENOTTY || n == -EINVAL)
			set_no(kp, FTR_KF_PAGEMAP_SCAN, "kernel has no PAGEMAP_SCAN ioctl"
			       " (needs 6.7): %s", strerror(-n));
		else if (n < 0)
			set_no(kp, FTR_KF_PAGEMAP_SCAN, "PAGEMAP_SCAN: %s", strerror(-n));
		else if (n != 1 || vec[0].start != base || vec[0].end != base + (uintptr_t)ps)
			set_no(kp, FTR_KF_PAGEMAP_SCAN,
			       "PAGEMAP_SCAN reported %d ranges for 1 present page", n);
		else
			set_yes(kp, FTR_KF_PAGEMAP_SCAN);
		if (!kp->pagemap_scan) {
			set_no_dep(kp, f, FTR_KF_PAGEMAP_SCAN);
			goto out;
		}
	} else if (!kp->pagemap_scan) {
		set_no_dep(kp, f, FTR_KF_PAGEMAP_SCAN);
		goto out;
	}
	n = scan(pagemap, m, wpf, PAGE_IS_WRITTEN, vec, 4);
	if (n != 0) {
		set_no(kp, f, n < 0 ? "PAGEMAP_SCAN WP_MATCHING: %s" :
		       "PAGEMAP_SCAN reports unwritten pages as written%s",
		       n < 0 ? strerror(-n) : "");
		goto out;
	}
	m->addr[0] = 2;
	m->addr[ps] = 2; /* never populated before: needs WP_UNPOPULATED */
	n = scan(pagemap, m, wpf, PAGE_IS_WRITTEN, vec, 4);
	if (n < 0) {
		set_no(kp, f, "PAGEMAP_SCAN WP_MATCHING: %s", strerror(-n));
		goto out;
	}
	if (n != 1 || vec[0].start != base || vec[0].end != base + 2 * (uintptr_t)ps) {
		set_no(kp, f, "PAGEMAP_SCAN missed written pages (%d ranges)", n);
		goto out;
	}
	n = scan(pagemap, m, wpf, PAGE_IS_WRITTEN, vec, 4);
	if (n != 0) {
		set_no(kp, f, "PAGEMAP_SCAN WP_MATCHING did not re-protect (%d)", n);
		goto out;
	}
	set_yes(kp, f);
out:
	close(pagemap);
}

static void check_wp_async(struct ftr_kprobe *kp, bool shmem)
{
	enum ftr_kfeat f = shmem ? FTR_KF_WP_ASYNC_SHMEM : FTR_KF_WP_ASYNC;
	enum ftr_kfeat fscan = shmem ? FTR_KF_WP_ASYNC_SHMEM : FTR_KF_PAGEMAP_SCAN_WP;
	uint64_t need = UFFD_FEATURE_WP_ASYNC;
	struct probe_mem m;
	uint64_t ioctls = 0;
	int uffd, rc;

	if (!kp->uffd) {
		set_no_dep(kp, f, FTR_KF_UFFD);
		if (!shmem) {
			set_no_dep(kp, FTR_KF_PAGEMAP_SCAN_WP, FTR_KF_UFFD);
			/* a read-only scan needs no uffd, but the test below
			 * builds on the WP page; say so rather than guess */
			set_no(kp, FTR_KF_PAGEMAP_SCAN, "not probed: needs uffd for the test page");
		}
		return;
	}
	if (!(kp->features & UFFD_FEATURE_WP_ASYNC)) {
		set_no(kp, f, "kernel does not offer UFFD_FEATURE_WP_ASYNC (needs 6.7)");
		if (!shmem) {
			set_no_dep(kp, FTR_KF_PAGEMAP_SCAN_WP, FTR_KF_WP_ASYNC);
			set_no(kp, FTR_KF_PAGEMAP_SCAN, "not probed: needs uffd-wp async");
		}
		return;
	}
	if (shmem) {
		if (!(kp->features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
			set_no(kp, f, "kernel does not offer UFFD_FEATURE_WP_HUGETLBFS_SHMEM");
			return;
		}
		need |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	}
	uffd = probe_open(kp, f, need, UFFD_FEATURE_WP_UNPOPULATED);
	if (uffd < 0) {
		if (!shmem) {
			set_no_dep(kp, FTR_KF_PAGEMAP_SCAN_WP, f);
			set_no(kp, FTR_KF_PAGEMAP_SCAN, "not probed: needs uffd-wp async");
		}
		return;
	}
	rc = probe_mem_map(&m, 2, shmem);
	if (rc < 0) {
		set_no(kp, f, "test pages: %s", strerror(-rc));
		close(uffd);
		return;
	}
	m.addr[0] = 1;
	rc = ftr_uffd_register(uffd, m.addr, m.len, UFFDIO_REGISTER_MODE_WP, &ioctls);
	if (rc == 0 && !ftr_uffd_has_ioctl(ioctls, _UFFDIO_WRITEPROTECT))
		rc = -EOPNOTSUPP;
	if (rc == 0)
		rc = ftr_uffd_wp(uffd, m.addr, m.len, true, false);
	if (rc < 0) {
		set_no(kp, f, "async WP registration: %s", strerror(-rc));
		if (!shmem) {
			set_no_dep(kp, FTR_KF_PAGEMAP_SCAN_WP, f);
			set_no(kp, FTR_KF_PAGEMAP_SCAN, "not probed: needs uffd-wp async");
		}
	} else {
		if (!shmem)
			set_yes(kp, f);
		check_scan_wp(kp, fscan, &m, shmem);
	}
	close(uffd);
	probe_mem_unmap(&m);
}

/* ---- MINOR and MISSING on shmem ---------------------------------------- */

static void check_shmem_mode(struct ftr_kprobe *kp, enum ftr_kfeat f, uint64_t feature,
			     const char *feature_name, uint64_t mode, unsigned ioctl_nr,
			     const char *ioctl_name)
{
	struct probe_mem m;
	uint64_t ioctls = 0;
	int uffd, rc;

	if (kp->uffd && !(kp->features & feature)) {
		set_no(kp, f, "kernel does not offer %s", feature_name);
		return;
	}
	uffd = probe_open(kp, f, feature, 0);
	if (uffd < 0)
		return;
	rc = probe_mem_map(&m, 1, true);
	if (rc < 0) {
		set_no(kp, f, "test page: %s", strerror(-rc));
		close(uffd);
		return;
	}
	if (mode == UFFDIO_REGISTER_MODE_MINOR)
		m.addr[0] = 1; /* MINOR faults are about pages in the page cache */
	rc = ftr_uffd_register(uffd, m.addr, m.len, mode, &ioctls);
	if (rc < 0)
		set_no(kp, f, "UFFDIO_REGISTER on a memfd page: %s", strerror(-rc));
	else if (!ftr_uffd_has_ioctl(ioctls, ioctl_nr))
		set_no(kp, f, "registration offers no %s", ioctl_name);
	else
		set_yes(kp, f);
	close(uffd);
	probe_mem_unmap(&m);
}

/* ---- io_uring ------------------------------------------------------------ */

static void check_io_uring(struct ftr_kprobe *kp)
{
#ifdef __NR_io_uring_setup
	struct io_uring_params p;
	int fd;

	memset(&p, 0, sizeof(p));
	fd = (int)syscall(__NR_io_uring_setup, 1, &p);
	if (fd < 0) {
		if (errno == ENOSYS)
			set_no(kp, FTR_KF_IO_URING, "kernel built without io_uring (ENOSYS)");
		else if (errno == EPERM)
			set_no(kp, FTR_KF_IO_URING, "io_uring disabled (kernel.io_uring_disabled)");
		else
			set_no(kp, FTR_KF_IO_URING, "io_uring_setup: %s", strerror(errno));
		return;
	}
	close(fd);
	set_yes(kp, FTR_KF_IO_URING);
#ifdef FTREPL_HAVE_URING
	struct io_uring_probe *pr = io_uring_get_probe();

	if (pr) {
		kp->io_uring_probed = true;
		kp->uring_sendmsg = io_uring_opcode_supported(pr, IORING_OP_SENDMSG);
		kp->uring_send_zc = io_uring_opcode_supported(pr, IORING_OP_SEND_ZC);
		kp->uring_sendmsg_zc = io_uring_opcode_supported(pr, IORING_OP_SENDMSG_ZC);
		kp->uring_read_fixed = io_uring_opcode_supported(pr, IORING_OP_READ_FIXED);
		io_uring_free_probe(pr);
	}
#endif
#else
	set_no(kp, FTR_KF_IO_URING, "built without io_uring_setup syscall number");
#endif
}

/* ---- the probe ------------------------------------------------------------ */

static void probe_run(void)
{
	struct ftr_kprobe *kp = &probe_result;
	struct utsname u;
	uint64_t t0 = ftr_now_ns();

	memset(kp, 0, sizeof(*kp));
	if (uname(&u) == 0)
		ftr_strlcpy(kp->release, u.release, sizeof(kp->release));
	else
		ftr_strlcpy(kp->release, "unknown", sizeof(kp->release));

	check_uffd(kp);
	check_wp(kp, false);
	check_wp(kp, true);
	if (!kp->uffd)
		set_no_dep(kp, FTR_KF_WP_UNPOPULATED, FTR_KF_UFFD);
	else if (kp->features & UFFD_FEATURE_WP_UNPOPULATED)
		set_yes(kp, FTR_KF_WP_UNPOPULATED);
	else
		set_no(kp, FTR_KF_WP_UNPOPULATED,
		       "kernel does not offer UFFD_FEATURE_WP_UNPOPULATED (needs 6.4)");
	check_wp_async(kp, false);
	check_wp_async(kp, true);
	check_shmem_mode(kp, FTR_KF_MINOR_SHMEM, UFFD_FEATURE_MINOR_SHMEM,
			 "UFFD_FEATURE_MINOR_SHMEM", UFFDIO_REGISTER_MODE_MINOR,
			 _UFFDIO_CONTINUE, "UFFDIO_CONTINUE");
	check_shmem_mode(kp, FTR_KF_MISSING_SHMEM, UFFD_FEATURE_MISSING_SHMEM,
			 "UFFD_FEATURE_MISSING_SHMEM", UFFDIO_REGISTER_MODE_MISSING,
			 _UFFDIO_COPY, "UFFDIO_COPY");
	check_io_uring(kp);
	probe_rc = 0;

	pr_debug("kernel probe took %llu us", (unsigned long long)(ftr_now_ns() - t0) / 1000);
	for (int f = 0; f < FTR_KF_COUNT; f++)
		if (!ftr_kprobe_has(kp, (enum ftr_kfeat)f))
			pr_debug("%s unavailable: %s", kfeat_tab[f].name, kp->why[f]);
}

int ftr_kprobe_get(const struct ftr_kprobe **out)
{
	int rc = pthread_once(&probe_once, probe_run);

	if (rc)
		return -rc;
	if (probe_rc < 0)
		return probe_rc;
	*out = &probe_result;
	return 0;
}

void ftr_kprobe_print(FILE *f)
{
	const struct ftr_kprobe *kp;
	int rc = ftr_kprobe_get(&kp);

	if (rc < 0) {
		fprintf(f, "kernel probe failed: %s\n", strerror(-rc));
		return;
	}
	fprintf(f, "%-16s %s\n", "kernel", kp->release);
	for (int i = 0; i < FTR_KF_COUNT; i++) {
		enum ftr_kfeat ft = (enum ftr_kfeat)i;

		if (ftr_kprobe_has(kp, ft))
			fprintf(f, "%-16s yes", kfeat_tab[i].name);
		else
			fprintf(f, "%-16s no: %s", kfeat_tab[i].name, kp->why[i]);
		if (ft == FTR_KF_UFFD && kp->uffd)
			fprintf(f, " (%s%s%s) features 0x%llx ioctls 0x%llx",
				kp->uffd_syscall ? "syscall" : "",
				kp->uffd_dev ? (kp->uffd_syscall ? ", /dev/userfaultfd" :
						"/dev/userfaultfd") : "",
				!kp->uffd_syscall && !kp->uffd_dev ? "user-mode faults only" : "",
				(unsigned long long)kp->features,
				(unsigned long long)kp->ioctls);
		if (ft == FTR_KF_IO_URING && kp->io_uring_probed)
			fprintf(f, " (sendmsg %s, send_zc %s, sendmsg_zc %s)",
				kp->uring_sendmsg ? "yes" : "no",
				kp->uring_send_zc ? "yes" : "no",
				kp->uring_sendmsg_zc ? "yes" : "no");
		fputc('\n', f);
	}
}

/* json_object_set_new that reports failure (a NULL value included). */
static int jset(json_t *o, const char *key, json_t *v)
{
	return v ? json_object_set_new(o, key, v) : -1;
}

json_t *ftr_kprobe_json(void)
{
	const struct ftr_kprobe *kp;
	json_t *o, *why;
	int bad = 0;

	if (ftr_kprobe_get(&kp) < 0)
		return NULL;
	o = json_object();
	why = json_object();
	if (!o || !why)
		goto fail;
	bad |= jset(o, "kernel", json_string(kp->release));
	bad |= jset(o, "uffd_syscall", json_boolean(kp->uffd_syscall));
	bad |= jset(o, "uffd_dev", json_boolean(kp->uffd_dev));
	bad |= jset(o, "uffd_user_only", json_boolean(kp->uffd_user_only));
	/* masks as hex strings: bit 63 (UFFDIO_API) does not fit json_int_t */
	bad |= jset(o, "uffd_features", json_sprintf("0x%llx", (unsigned long long)kp->features));
	bad |= jset(o, "uffd_ioctls", json_sprintf("0x%llx", (unsigned long long)kp->ioctls));
	for (int i = 0; i < FTR_KF_COUNT; i++) {
		bool has = ftr_kprobe_has(kp, (enum ftr_kfeat)i);

		bad |= jset(o, kfeat_tab[i].name, json_boolean(has));
		if (!has)
			bad |= jset(why, kfeat_tab[i].name, json_string(kp->why[i]));
	}
	if (kp->io_uring_probed)
		bad |= jset(o, "io_uring_ops",
			    json_pack("{s:b, s:b, s:b, s:b}", "sendmsg", kp->uring_sendmsg,
				      "send_zc", kp->uring_send_zc, "sendmsg_zc",
				      kp->uring_sendmsg_zc, "read_fixed", kp->uring_read_fixed));
	bad |= json_object_set_new(o, "unavailable", why);
	why = NULL;
	if (bad)
		goto fail;
	return o;
fail:
	json_decref(why);
	json_decref(o);
	return NULL;
}
