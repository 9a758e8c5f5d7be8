/* SPDX-License-Identifier: MIT */
/*
 * The fault-latency yardstick of --failover and --postcopy: the least a
 * userfaultfd fault service can cost on this machine, measured in the same
 * run as the fault server it is compared with. One handler thread serves
 * faults on FTB_BARE_PAGE pages read in random order by the calling thread:
 *   - continue: a memfd's pages already in the page cache, mapped again
 *     and registered MINOR, resolved with UFFDIO_CONTINUE (the failover
 *     standby's shared mode);
 *   - copy: anonymous memory registered MISSING, resolved with a
 *     UFFDIO_COPY of one page (a postcopy destination, as QEMU does it).
 * srv is the handler's read-to-resolve time (how the servers time their
 * own), rtt the faulting thread's whole access.
 *
 * Threads: one handler, stopped through an eventfd and joined here.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ftrepl/synth.h>

#include "ftbench.h"
#include "uffd/uffd_io.h"

struct bare {
	enum ftb_bare_kind kind;
	int uffd, stop_fd;
	uint8_t *map;
	uint64_t size;
	const uint8_t *src;	/* copy: one page of content */
	uint64_t *srv_ns;
	unsigned n, cap;
	int err;
};

/* Resolves one fault; returns the kernel's verdict (pages mapped or -errno). */
static int64_t bare_resolve(struct bare *b, uint64_t addr)
{
	if (b->kind == FTB_BARE_CONTINUE) {
		struct uffdio_continue cont = { .range = { .start = addr, .len = FTB_BARE_PAGE } };

		while (ioctl(b->uffd, UFFDIO_CONTINUE, &cont) && errno == EAGAIN)
			cont.mapped = 0;
		return cont.mapped;
	} else {
		struct uffdio_copy cp = { .dst = addr, .src = (uintptr_t)b->src,
					  .len = FTB_BARE_PAGE };

		while (ioctl(b->uffd, UFFDIO_COPY, &cp) && errno == EAGAIN)
			cp.copy = 0;
		return cp.copy;
	}
}

static void *bare_handler(void *arg)
{
	struct bare *b = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = b->uffd, .events = POLLIN },
				       { .fd = b->stop_fd, .events = POLLIN } };
		struct uffd_msg msg;
		uint64_t t0, addr;
		int64_t got;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (read(b->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		t0 = ftb_now_ns();
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		addr = msg.arg.pagefault.address & ~(uint64_t)(FTB_BARE_PAGE - 1);
		got = bare_resolve(b, addr);
		if (got == -EEXIST) {
			/* another resolver won (cannot happen here): wake, go on */
			ftr_uffd_wake(b->uffd, (void *)(uintptr_t)addr, FTB_BARE_PAGE);
		} else if (got < 0) {
			/* let the kernel serve the rest, so the faulting thread
			 * cannot hang; the baseline is then void */
			b->err = (int)got;
			ftr_uffd_unregister(b->uffd, b->map, b->size);
			ftr_uffd_wake(b->uffd, b->map, b->size);
		}
		if (b->n < b->cap)
			b->srv_ns[b->n++] = ftb_now_ns() - t0;
	}
	return NULL;
}

int ftb_bare_fault(enum ftb_bare_kind kind, unsigned npages, struct ftb_bare_result *r)
{
	uint64_t size = (uint64_t)npages * FTB_BARE_PAGE, state = 0x5eed;
	uint64_t *srv = calloc(npages, sizeof(uint64_t));
	uint64_t *rtt = calloc(npages, sizeof(uint64_t));
	uint32_t *order = calloc(npages, sizeof(uint32_t));
	struct bare b = { .kind = kind, .uffd = -1, .stop_fd = -1, .map = MAP_FAILED,
			  .size = size, .srv_ns = srv, .cap = npages };
	uint8_t *shared = MAP_FAILED, *page = NULL;
	bool th_started = false;
	pthread_t th;
	int fd = -1, ret;

	memset(r, 0, sizeof(*r));
	if (!npages || !srv || !rtt || !order) {
		ret = npages ? -ENOMEM : -EINVAL;
		goto out;
	}
	if (kind == FTB_BARE_CONTINUE) {
		fd = memfd_create("ftbench-bare", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)size)) {
			ret = -errno;
			goto out;
		}
		/* the pages in the page cache, as the standby's cache pages are */
		shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		b.map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (shared == MAP_FAILED || b.map == MAP_FAILED) {
			ret = -errno;
			goto out;
		}
		memset(shared, 0x5a, size);
		ret = ftr_uffd_open(UFFD_FEATURE_MINOR_SHMEM, false, NULL, NULL, NULL);
	} else {
		if (posix_memalign((void **)&page, FTB_BARE_PAGE, FTB_BARE_PAGE)) {
			page = NULL;
			ret = -ENOMEM;
			goto out;
		}
		memset(page, 0x5a, FTB_BARE_PAGE);
		b.src = page;
		b.map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b.map == MAP_FAILED) {
			ret = -errno;
			goto out;
		}
		ret = ftr_uffd_open(0, false, NULL, NULL, NULL);
	}
	if (ret < 0)
		goto out;
	b.uffd = ret;
	ret = ftr_uffd_register(b.uffd, b.map, size, kind == FTB_BARE_CONTINUE ?
				UFFDIO_REGISTER_MODE_MINOR : UFFDIO_REGISTER_MODE_MISSING, NULL);
	if (ret)
		goto out;
	b.stop_fd = eventfd(0, EFD_CLOEXEC);
	if (b.stop_fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = -pthread_create(&th, NULL, bare_handler, &b);
	if (ret)
		goto out;
	th_started = true;
	for (uint32_t i = 0; i < npages; i++)
		order[i] = i;
	for (uint32_t i = npages - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(ftr_synth_next(&state) % (i + 1)), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (uint32_t i = 0; i < npages; i++) {
		uint64_t t0 = ftb_now_ns();

		(void)*(volatile uint64_t *)(b.map + (uint64_t)order[i] * FTB_BARE_PAGE);
		rtt[i] = ftb_now_ns() - t0;
	}
	ret = b.err;
out:
	if (th_started) {
		uint64_t one = 1;

		if (write(b.stop_fd, &one, sizeof(one)) < 0) {
			/* counter full: already stopping */
		}
		pthread_join(th, NULL);
		if (b.n) {
			ftb_u64_pcts(srv, b.n, &r->srv_med_ns, &r->srv_p99_ns);
			ftb_u64_pcts(rtt, npages, &r->rtt_med_ns, &r->rtt_p99_ns);
			r->n = b.n;
		}
	}
	if (b.stop_fd >= 0)
		close(b.stop_fd);
	if (b.uffd >= 0)
		close(b.uffd);
	if (b.map != MAP_FAILED)
		munmap(b.map, size);
	if (shared != MAP_FAILED)
		munmap(shared, size);
	if (fd >= 0)
		close(fd);
	free(page);
	free(srv);
	free(rtt);
	free(order);
	return ret;
}
