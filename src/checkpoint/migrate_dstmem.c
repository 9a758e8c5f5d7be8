/* SPDX-License-Identifier: MIT */
/*
 * Migration destination, the memory side (see migrate_dst.h for the page
 * states):
 *   - the store, where page payloads are received straight from the socket,
 *     and the workload's memory: the same memfd mapped twice (MEMFD mode,
 *     registered MISSING|MINOR: a page is mapped with UFFDIO_CONTINUE once
 *     its final content is in the page cache; MISSING catches pages that
 *     were never written, which MINOR alone would let the kernel fill with
 *     zeros), or an anonymous mapping registered MISSING (ANON mode: pages
 *     are moved in from the store with UFFDIO_MOVE, which hands the page
 *     itself over: no copy, and the image is held once, not twice; copied
 *     with UFFDIO_COPY where the kernel cannot move one). In ANON mode a page
 *     that arrives after the switch skips the store: it is received into
 *     the connection's bounce buffer (a batch of pages, reused) and copied
 *     into the workload's memory from there, which saves a first touch of
 *     a store page (a page fault and a page clear) per page. In MEMFD mode
 *     the same holds for a page arriving after the switch that never
 *     arrived before it (so the memfd has no page there): UFFDIO_COPY
 *     through the workload's mapping puts it into the memfd and maps it
 *     in one step, instead of a shmem page fault on the store's mapping
 *     (a page allocation and clear, 1.7-2.4 us each on this kind of host)
 *     and a UFFDIO_CONTINUE;
 *   - installs: after the switch a receiver installs the pages it just
 *     finalized; the installer thread installs the pages that were final at
 *     the switch and (ANON) frees the store behind it, which nothing reads
 *     from then on; the fault server installs a faulted page itself once the
 *     page source says it is final. Whichever comes second gets EEXIST
 *     (benign: the kernel never replaces a present page; a fault server
 *     that read a store page the installer had just moved away, reading
 *     zeros, gets EEXIST too, as the page is in place by then);
 *   - the page source of the fault server: a page that is not final is
 *     requested on the urgent channel (with the prefault window) and waited
 *     for, at most MD_FAULT_WAIT_MS per call (then -EAGAIN: the server
 *     retries with back-off and serves other faults meanwhile);
 *   - the synthetic continuation: the destination's own writer thread.
 *
 * Threads created here: the installer (exits when done) and the synthetic
 * writer; the fault server's own thread (faultsrv.h).
 */
#define FTR_LOG_PREFIX "migrate-dst"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ftrepl/migrate.h>
#include <ftrepl/synth.h>

#include "checkpoint/migrate_dst.h"
#include "common/common.h"
#include "uffd/probe.h"
#include "uffd/uffd_io.h"

#define MD_INSTALL_RUN 512u		/* pages per install ioctl at most */
#define MD_INSTALL_RETRIES 2000		/* EAGAIN retries (address space changing) */
/* ANON: a run of fewer pages is copied, not moved. UFFDIO_MOVE unmaps the
 * pages from the store, and when another thread of the process runs on
 * another CPU (the workload, after the switch) that takes a TLB shootdown
 * per call: measured here, one page per call, 1.1 us alone but 10-12 us
 * beside a running thread, against ~2 us for UFFDIO_COPY either way; a
 * whole 1 MiB run moves in ~30 us. The store's copy of a copied page is
 * freed with the rest of the store behind the installer's pass. */
#define MD_MOVE_MIN_RUN 16
/* ANON: the installer frees the store behind it every this many pages (one
 * TLB shootdown each), so that the image is held about once throughout. */
#define MD_FREE_CHUNK 2048u
#define SYNTH_BLOB_MAGIC 0x31424f4c42525446ull /* the synthetic blob's "FTRBLOB1" */

static inline uint64_t page_off(const struct ftr_migrate_dst *d, uint32_t r, uint64_t page)
{
	return d->lay.off[r] + page * d->lay.page_size;
}

static inline uint8_t pstate_get(struct ftr_migrate_dst *d, uint64_t g)
{
	return __atomic_load_n(&d->pstate[g], __ATOMIC_SEQ_CST);
}

static inline void pstate_set(struct ftr_migrate_dst *d, uint64_t g, uint8_t v)
{
	__atomic_store_n(&d->pstate[g], v, __ATOMIC_SEQ_CST);
}

static inline bool pstate_claim(struct ftr_migrate_dst *d, uint64_t g)
{
	uint8_t want = MD_NEED;

	return __atomic_compare_exchange_n(&d->pstate[g], &want, MD_RECV, false, __ATOMIC_SEQ_CST,
					   __ATOMIC_SEQ_CST);
}

/* ---- setup ----------------------------------------------------------------------- */

int md_mem_setup(struct ftr_migrate_dst *d, char *msg, size_t mlen)
{
	uint64_t len = d->lay.bytes, features, mode, ioctls = 0, need_ioctl;
	long sys_ps = sysconf(_SC_PAGESIZE);
	const struct ftr_kprobe *kp;
	int ret;

	if (d->lay.page_size != (uint64_t)sys_ps) {
		snprintf(msg, mlen, "page size %u: this destination serves %ld-byte pages only",
			 d->lay.page_size, sys_ps);
		return -EINVAL;
	}
	d->map_len = len;
	if (d->o.mem == FTR_MIG_MEM_MEMFD) {
		d->memfd = memfd_create("ftrepl-migrate", MFD_CLOEXEC);
		if (d->memfd < 0 || ftruncate(d->memfd, (off_t)len)) {
			ret = -errno;
			snprintf(msg, mlen, "memfd of %" PRIu64 " bytes: %s", len, strerror(-ret));
			return ret;
		}
		d->store = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, d->memfd, 0);
		d->wmem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, d->memfd, 0);
		features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM;
		mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR;
		need_ioctl = _UFFDIO_CONTINUE;
	} else {
		d->store = mmap(NULL, len, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		d->wmem = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		features = 0;
		mode = UFFDIO_REGISTER_MODE_MISSING;
		need_ioctl = _UFFDIO_COPY;
	}
	if (d->store == MAP_FAILED || d->wmem == MAP_FAILED) {
		ret = -errno;
		if (d->store == MAP_FAILED)
			d->store = NULL;
		if (d->wmem == MAP_FAILED)
			d->wmem = NULL;
		snprintf(msg, mlen, "mapping %" PRIu64 " bytes: %s", len, strerror(-ret));
		return ret;
	}
	/* ANON: pages that came before the switch are moved from the store
	 * into the workload's memory (UFFDIO_MOVE, Linux >= 6.8) where the
	 * kernel offers it; without it they are copied. */
	if (d->o.mem == FTR_MIG_MEM_ANON && !ftr_kprobe_get(&kp) &&
	    (kp->features & UFFD_FEATURE_MOVE))
		features |= UFFD_FEATURE_MOVE;
	ret = ftr_uffd_open(features, false, NULL, NULL, NULL);
	if (ret < 0) {
		snprintf(msg, mlen, "userfaultfd (features %#" PRIx64 "): %s", features,
			 strerror(-ret));
		return ret;
	}
	d->uffd = ret;
	ret = ftr_uffd_register(d->uffd, d->wmem, len, mode, &ioctls);
	if (ret) {
		snprintf(msg, mlen, "registering the workload's memory (%s): %s",
			 d->o.mem == FTR_MIG_MEM_MEMFD ? "MISSING|MINOR" : "MISSING", strerror(-ret));
		return ret;
	}
	if (!ftr_uffd_has_ioctl(ioctls, (unsigned)need_ioctl)) {
		snprintf(msg, mlen, "the kernel offers no %s on this memory",
			 d->o.mem == FTR_MIG_MEM_MEMFD ? "UFFDIO_CONTINUE" : "UFFDIO_COPY");
		return -EOPNOTSUPP;
	}
	d->move = (features & UFFD_FEATURE_MOVE) && ftr_uffd_has_ioctl(ioctls, _UFFDIO_MOVE);
	pr_debug("pages received before the switch are %s into the workload's memory",
		 d->o.mem == FTR_MIG_MEM_MEMFD ? "mapped" : d->move ? "moved" : "copied");
	return 0;
}

void md_mem_teardown(struct ftr_migrate_dst *d)
{
	ftr_fs_destroy(d->fs);
	d->fs = NULL;
	if (d->uffd >= 0)
		close(d->uffd);
	d->uffd = -1;
	if (d->store)
		munmap(d->store, d->map_len);
	if (d->wmem)
		munmap(d->wmem, d->map_len);
	d->store = d->wmem = NULL;
	if (d->memfd >= 0)
		close(d->memfd);
	d->memfd = -1;
}

/* ---- installs ----------------------------------------------------------------------- */

static void set_bounced(struct ftr_migrate_dst *d, uint64_t g, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		mig_bit_set_atomic(d->bounced, g + i);
}

/* ANON, behind the installer's pass: each page of [off, off+len) of the
 * store that was final at the switch is in the workload's memory by now,
 * and no page that turns final later ever touches the store, so nothing
 * reads this part again (a page the workload discards from now on reads as
 * zeros, as any anonymous page). What it still holds (older copies of
 * pages that come again after the switch, and the pages that were copied
 * rather than moved) is freed. */
static void drop_store(struct ftr_migrate_dst *d, uint64_t off, uint64_t len)
{
	if (d->o.mem != FTR_MIG_MEM_ANON || !d->store || !len)
		return;
	if (madvise(d->store + off, len, MADV_DONTNEED))
		pr_warn("freeing %" PRIu64 " bytes of the receive buffer: %s", len,
			strerror(errno));
}

static void mark_installed(struct ftr_migrate_dst *d, uint64_t g, uint64_t n)
{
	uint64_t added = 0;

	for (uint64_t i = 0; i < n; i++)
		added += mig_bit_set_atomic(d->installed, g + i);
	if (added && atomic_fetch_add(&d->n_installed, added) + added == d->lay.total_pages)
		md_set_completed_if_done(d);
}

/* Pages [g, g+n) were just mapped by a receiver or the installer (and their
 * faulting threads woken by that ioctl): when the fault server waits for
 * one of them, that is the moment its fault was served. */
static void note_install(struct ftr_migrate_dst *d, uint64_t g, uint64_t n)
{
	if (!atomic_load(&d->arr_waiters))
		return;
	pthread_mutex_lock(&d->arr_lock);
	if (g < d->wait_end && d->wait_g < g + n)
		d->wait_inst_ns = ftr_now_ns();
	pthread_mutex_unlock(&d->arr_lock);
}

/* MEMFD mode: a bounced page's UFFDIO_COPY found a page in the memfd
 * already (none should be there: the page never arrived before the
 * switch). Whatever it holds, the final content (at src) is written over
 * it and mapped, so that the workload never sees anything else. False
 * when that failed (the destination failed with it). */
static bool overwrite_memfd_page(struct ftr_migrate_dst *d, uint32_t r, uint64_t page,
				 const uint8_t *src)
{
	const uint64_t ps = d->lay.page_size, off = page_off(d, r, page);
	struct uffdio_continue c = {
		.range = { .start = (uint64_t)(uintptr_t)d->wmem + off, .len = ps }
	};
	ssize_t n;

	do {
		n = pwrite(d->memfd, src, ps, (off_t)off);
	} while (n < 0 && errno == EINTR);
	if (n == (ssize_t)ps && (!ioctl(d->uffd, UFFDIO_CONTINUE, &c) || errno == EEXIST))
		return true;
	md_fail(d, "overwriting region %u page %" PRIu64 " in the memfd (%s): %s", r, page,
		n == (ssize_t)ps ? "UFFDIO_CONTINUE" : "pwrite", n < 0 || n == (ssize_t)ps ?
		strerror(errno) : "short write");
	return false;
}

/*
 * Installs pages page..page+n-1 of region r (all final) into the
 * workload's memory and marks them installed. The benign outcomes are
 * decided here: EEXIST (the page is there already: another path won; wake
 * its waiters, go on), a short count (go on after it), EAGAIN (the address
 * space is changing: retry), ENOENT (not registered any more: nothing to
 * install). Anything else fails the destination. The content is taken
 * from src (n pages; the store's copy unless the caller bounced them);
 * bounced pages are copied in (UFFDIO_COPY) in both modes.
 */
static void md_install_from(struct ftr_migrate_dst *d, uint32_t r, uint64_t page, uint64_t n,
			    const uint8_t *src, bool bounced)
{
	const uint64_t ps = d->lay.page_size;
	const bool cont = d->o.mem == FTR_MIG_MEM_MEMFD && !bounced;
	const bool move = d->move && !bounced && n >= MD_MOVE_MIN_RUN;
	uint64_t addr = (uint64_t)(uintptr_t)d->wmem + page_off(d, r, page);
	uint64_t g = d->lay.g0[r] + page, off = 0;
	unsigned retries = 0;

	while (off < n) {
		uint64_t len = (n - off) * ps, dst = addr + off * ps;
		uint64_t from = (uint64_t)(uintptr_t)(src + off * ps);
		const char *op = cont ? "UFFDIO_CONTINUE" : move ? "UFFDIO_MOVE" : "UFFDIO_COPY";
		int64_t got;
		int rc;

		if (cont) {
			struct uffdio_continue c = { .range = { .start = dst, .len = len } };

			rc = ioctl(d->uffd, UFFDIO_CONTINUE, &c);
			got = c.mapped;
		} else if (move) {
			struct uffdio_move m = { .dst = dst, .src = from, .len = len };

			rc = ioctl(d->uffd, UFFDIO_MOVE, &m);
			got = m.move;
			/* Only the workload's memory holds these pages now. */
			if (got >= (int64_t)ps) {
				set_bounced(d, g + off, (uint64_t)got / ps);
				atomic_fetch_add(&d->moved_pages, (uint64_t)got / ps);
			}
			if (rc && got < (int64_t)ps && errno != EEXIST && errno != EAGAIN &&
			    errno != EINTR && errno != ENOMEM) {
				/* This page cannot change hands (shared with a
				 * child since a fork, pinned, under migration):
				 * it is copied instead. */
				struct uffdio_copy c = { .dst = dst, .src = from, .len = ps };

				atomic_fetch_add(&d->move_fallbacks, 1);
				op = "UFFDIO_COPY";
				rc = ioctl(d->uffd, UFFDIO_COPY, &c);
				got = c.copy;
			}
		} else {
			struct uffdio_copy c = { .dst = dst, .src = from, .len = len };

			rc = ioctl(d->uffd, UFFDIO_COPY, &c);
			got = c.copy;
		}
		if (!rc && got >= (int64_t)len) {
			off = n;
			break;
		}
		if (got >= (int64_t)ps) {
			off += (uint64_t)got / ps;
			continue;
		}
		switch (rc ? errno : EAGAIN) {
		case EEXIST:
			if (d->o.mem == FTR_MIG_MEM_MEMFD && bounced &&
			    !overwrite_memfd_page(d, r, page + off, src + off * ps))
				return;
			ftr_uffd_wake(d->uffd, (void *)(uintptr_t)dst, ps);
			/* fall through */
		case ENOENT:
			off++;
			continue;
		case EAGAIN:
		case EINTR:
		case ENOMEM:
			if (++retries < MD_INSTALL_RETRIES) {
				usleep(50);
				continue;
			}
			/* fall through */
		default:
			md_fail(d, "installing region %u page %" PRIu64 " (%s): %s", r, page + off,
				op, strerror(errno));
			return;
		}
	}
	mark_installed(d, g, n);
	note_install(d, g, n);
}

static void md_install(struct ftr_migrate_dst *d, uint32_t r, uint64_t page, uint64_t n)
{
	md_install_from(d, r, page, n, d->store + page_off(d, r, page), false);
}

/* Installs the pages that were final at the switch (those received later
 * are installed by their receivers). */
static void *installer_main(void *arg)
{
	struct ftr_migrate_dst *d = arg;
	const struct mig_layout *l = &d->lay;
	uint64_t t0 = ftr_now_ns(), runs = 0, pages = 0;

	ftr_thread_name("ftr-md-install");

	for (uint32_t r = 0; r < l->nregions; r++) {
		uint64_t p = 0, freed = 0;

		while (p < l->npages[r] && !atomic_load(&d->stopping)) {
			uint64_t g = l->g0[r] + p, n = 0;

			if (p - freed >= MD_FREE_CHUNK) {
				drop_store(d, page_off(d, r, freed), (p - freed) * l->page_size);
				freed = p;
			}

			while (p + n < l->npages[r] && n < MD_INSTALL_RUN &&
			       pstate_get(d, g + n) == MD_FINAL &&
			       !mig_bit_test_atomic(d->installed, g + n))
				n++;
			if (n) {
				md_install(d, r, p, n);
				p += n;
				runs++;
				pages += n;
			} else {
				p++;
			}
		}
		if (!atomic_load(&d->stopping))
			drop_store(d, page_off(d, r, freed), (p - freed) * l->page_size);
	}
	if (!atomic_load(&d->stopping)) {
		if (atomic_load(&d->move_fallbacks))
			pr_info("%" PRIu64 " pages received before the switch were copied, not "
				"moved (UFFDIO_MOVE refused them)",
				(uint64_t)atomic_load(&d->move_fallbacks));
		pr_info("installed %" PRIu64 " pages final at the switch in %" PRIu64 " runs in %"
			PRIu64 " ms (%s; %" PRIu64 " moved)%s", pages, runs,
			(ftr_now_ns() - t0) / 1000000, d->o.mem == FTR_MIG_MEM_MEMFD ? "mapped" :
			"copied or moved", (uint64_t)atomic_load(&d->moved_pages),
			d->o.mem == FTR_MIG_MEM_ANON ? "; the receive buffer is freed" : "");
		atomic_store(&d->inst_done, true);
		md_set_completed_if_done(d);
	}
	return NULL;
}

/* The next run of a record's pages: from the first selected entry at or
 * after *i, the entries up to the one returned (exclusive), all selected,
 * of consecutive page numbers, at most max of them. *i is moved to the
 * run's start; the return value equals *i when no entry is left. */
static uint32_t next_run(const uint64_t *pages, const bool *sel, uint32_t count, uint32_t *i,
			 uint32_t max)
{
	uint32_t j;

	while (*i < count && !sel[*i])
		(*i)++;
	j = *i < count ? *i + 1 : *i;
	while (j < count && sel[j] && pages[j] == pages[j - 1] + 1 && j - *i < max)
		j++;
	return j;
}

/* Installs the pages of a record selected by sel[], in runs of consecutive
 * page numbers: from the store, or when bounce is set from slot i of it
 * (the record's i-th page). */
static void install_list(struct ftr_migrate_dst *d, uint32_t r, const uint64_t *pages,
			 const bool *sel, uint32_t count, const uint8_t *bounce)
{
	for (uint32_t i = 0, j; (j = next_run(pages, sel, count, &i, MD_INSTALL_RUN)) > i; i = j) {
		if (bounce)
			md_install_from(d, r, pages[i], j - i,
					bounce + (uint64_t)i * d->lay.page_size, true);
		else
			md_install(d, r, pages[i], j - i);
	}
}

/* ---- receiving ---------------------------------------------------------------------- */

void md_wake_waiters(struct ftr_migrate_dst *d)
{
	if (!atomic_load(&d->arr_waiters))
		return;
	pthread_mutex_lock(&d->arr_lock);
	pthread_cond_broadcast(&d->arr_cv);
	pthread_mutex_unlock(&d->arr_lock);
}

static int ensure_scratch(struct md_conn *c)
{
	size_t len = (size_t)FTR_WIRE_MAX_BATCH * c->dst->lay.page_size;

	if (c->scratch)
		return 0;
	c->scratch = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->scratch == MAP_FAILED) {
		c->scratch = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* ANON, before the switch: the store pages of a record that never arrived
 * are faulted in by one madvise per run of consecutive pages, before the
 * socket's copy writes them (which would take one page fault each, each
 * costly under a hypervisor). Best effort: a failure leaves it to those
 * faults. (Not for a memfd store: populating shmem measured no faster here
 * than its page faults.) */
static void populate_unseen(struct ftr_migrate_dst *d, uint32_t r, const uint64_t *pages,
			    uint32_t count)
{
	bool fresh[FTR_WIRE_MAX_BATCH];

	for (uint32_t i = 0; i < count; i++)
		fresh[i] = !mig_bit_test_atomic(d->seen, d->lay.g0[r] + pages[i]);
	for (uint32_t i = 0, j; (j = next_run(pages, fresh, count, &i, count)) > i; i = j)
		(void)madvise(d->store + page_off(d, r, pages[i]), (j - i) * d->lay.page_size,
			      MADV_POPULATE_WRITE);
}

int md_take_pages(struct md_conn *conn, const struct ftr_rec *rec, char *msg, size_t mlen)
{
	struct ftr_migrate_dst *d = conn->dst;
	const uint64_t ps = d->lay.page_size;
	bool switched = atomic_load(&d->switched);
	bool anon = d->o.mem == FTR_MIG_MEM_ANON;
	bool is_pages = rec->hdr.type == FTR_REC_PAGES;
	uint32_t r = is_pages ? rec->u.pages.region : rec->u.zero.region;
	uint32_t count = is_pages ? rec->u.pages.count : rec->u.zero.count;
	uint64_t pages[FTR_WIRE_MAX_BATCH];
	bool mine[FTR_WIRE_MAX_BATCH];
	/* After the switch a page is installed from the bounce buffer
	 * (scratch) instead of the store: every page (ANON), or one that never
	 * came before the switch (MEMFD: the memfd has no page there yet). */
	bool bounce[FTR_WIRE_MAX_BATCH], stored[FTR_WIRE_MAX_BATCH];
	uint32_t nbounce = 0, nstored = 0;
	struct iovec iov[FTR_WIRE_MAX_BATCH];
	struct ftr_wire_error werr;
	uint64_t kept = 0;
	int ret = 0;

	if (!(rec->hdr.flags & FTR_WF_DIRECT)) {
		snprintf(msg, mlen, "%s without FTR_WF_DIRECT (a migration places pages directly)",
			 ftr_rec_type_name(rec->hdr.type));
		return -EPROTO;
	}
	if (conn->role == FTR_CHAN_URGENT && !switched) {
		snprintf(msg, mlen, "%s on the urgent channel before the switch",
			 ftr_rec_type_name(rec->hdr.type));
		return -EPROTO;
	}
	/* Before the switch pages go straight into the store. After it every
	 * record is received into scratch first and its pages are claimed
	 * only once it arrived whole and checked: a page stays NEED while a
	 * paced data channel trickles its record in (a 1 MiB record takes
	 * ~20 ms at half of 1 Gbit/s), so a fault on it asks for it on the
	 * urgent channel instead of waiting for that record. */
	if (switched && (ret = ensure_scratch(conn))) {
		snprintf(msg, mlen, "out of memory for a scratch buffer");
		return ret;
	}
	for (uint32_t i = 0; i < count; i++) {
		pages[i] = is_pages ? rec->u.pages.ent[i].page : rec->u.zero.ent[i].page;
		iov[i].iov_base = switched ? conn->scratch + (uint64_t)i * ps
					   : d->store + page_off(d, r, pages[i]);
		iov[i].iov_len = ps;
	}
	if (!switched && is_pages && anon)
		populate_unseen(d, r, pages, count);
	if (is_pages) {
		ret = ftr_chan_recv_data(conn->chan, &rec->hdr, iov, (int)count);
		if (!ret && ftr_wire_check_data(&rec->hdr, iov, (int)count, &werr)) {
			snprintf(msg, mlen, "%s", werr.msg);
			ret = -EPROTO;
		}
		if (ret)
			return ret;
	}
	if (!switched) {
		for (uint32_t i = 0; i < count; i++) {
			if (!is_pages)
				memset(iov[i].iov_base, rec->u.zero.ent[i].fill, ps);
			mig_bit_set_atomic(d->seen, d->lay.g0[r] + pages[i]);
		}
		atomic_fetch_add(&d->pages_received, count);
		return 0;
	}
	/* Claims (one receiver per page: this record's copy or another's),
	 * then the page goes in from scratch: copied into the workload's
	 * memory (bounce[]), or into the store and mapped from there
	 * (stored[]: MEMFD, a page the memfd holds since before the switch). */
	for (uint32_t i = 0; i < count; i++) {
		uint64_t g = d->lay.g0[r] + pages[i];
		uint8_t *slot = conn->scratch + (uint64_t)i * ps;

		mine[i] = pstate_claim(d, g);
		bounce[i] = mine[i] && (anon || !mig_bit_test_atomic(d->seen, g));
		stored[i] = mine[i] && !bounce[i];
		nbounce += bounce[i];
		nstored += stored[i];
		if (!mine[i])
			continue;
		if (!is_pages)
			memset(bounce[i] ? slot : d->store + page_off(d, r, pages[i]),
			       rec->u.zero.ent[i].fill, ps);
		else if (stored[i])
			memcpy(d->store + page_off(d, r, pages[i]), slot, ps);
	}
	/* Bounced pages are installed before they turn FINAL: nothing reads
	 * the store for them (the installer and the fault server only take
	 * FINAL pages from it, and find these installed). */
	if (nbounce)
		install_list(d, r, pages, bounce, count, conn->scratch);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t g = d->lay.g0[r] + pages[i];

		if (!mine[i])
			continue;
		/* (a MEMFD page copied in is in the memfd: the store) */
		if (bounce[i] && anon)
			mig_bit_set_atomic(d->bounced, g);
		pstate_set(d, g, MD_FINAL);
		kept++;
	}
	if (kept && atomic_fetch_sub(&d->n_need, kept) == kept)
		md_maybe_bye(d);
	atomic_fetch_add(&d->pages_received, kept);
	atomic_fetch_add(&d->dup_pages, count - kept);
	/* Install first: that ioctl wakes the faulting threads; the fault
	 * server, woken after, finds its pages in place. */
	if (nstored)
		install_list(d, r, pages, stored, count, NULL);
	md_wake_waiters(d);
	return 0;
}

/* ---- the fault server's page source --------------------------------------------------- */

static bool all_final(struct ftr_migrate_dst *d, uint64_t g, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (pstate_get(d, g + i) != MD_FINAL)
			return false;
	return true;
}

/* Adds page p of region r to the request if the destination lacks it and
 * did not ask for it on this connection. Under req_lock. */
static void req_add(struct ftr_migrate_dst *d, struct ftr_fault_req *f, uint32_t r, uint64_t p)
{
	uint64_t g = d->lay.g0[r] + p;

	if (f->count >= FTR_WIRE_MAX_FAULT || pstate_get(d, g) != MD_NEED ||
	    ftr_bit_test(d->requested, g))
		return;
	ftr_bit_set(d->requested, g);
	f->page[f->count++] = p;
}

/* Asks for the missing pages of [first, first+n) and the prefault window
 * around them, unless they were asked for already. */
static void request_pages(struct ftr_migrate_dst *d, uint32_t r, uint64_t first, uint32_t n)
{
	struct ftr_fault_req *f;
	uint64_t npages = d->lay.npages[r];
	int ret;

	pthread_mutex_lock(&d->req_lock);
	if (!d->req_chan) {
		pthread_mutex_unlock(&d->req_lock);
		return;
	}
	memset(d->req_rec, 0, sizeof(*d->req_rec));
	f = &d->req_rec->u.fault;
	f->region = r;
	for (uint32_t i = 0; i < n; i++)
		req_add(d, f, r, first + i);
	if (f->count) {
		for (uint64_t p = first + n; p < first + n + d->o.prefault_forward && p < npages; p++)
			req_add(d, f, r, p);
		for (uint64_t k = 1; k <= d->o.prefault_backward && k <= first; k++)
			req_add(d, f, r, first - k);
		d->req_rec->hdr.type = FTR_REC_FAULT_REQ;
		ret = ftr_chan_send_rec(d->req_chan, d->req_rec, NULL, 0);
		if (!ret)
			atomic_fetch_add(&d->fault_reqs, 1);
		/* A failed send: the connection is breaking; its receivers
		 * notice, and a recovery forgets what was asked for. */
	}
	pthread_mutex_unlock(&d->req_lock);
}

void md_reset_requests(struct ftr_migrate_dst *d, struct ftr_chan *urgent)
{
	pthread_mutex_lock(&d->req_lock);
	memset(d->requested, 0, ftr_bitmap_words(d->lay.bits) * 8);
	d->req_chan = urgent;
	pthread_mutex_unlock(&d->req_lock);
	md_wake_waiters(d);
}

static bool src_gone(struct ftr_migrate_dst *d)
{
	bool f;

	if (atomic_load(&d->src_cancel))
		return true;
	pthread_mutex_lock(&d->lock);
	f = d->failed;
	pthread_mutex_unlock(&d->lock);
	return f;
}

static uint32_t count_installed(struct ftr_migrate_dst *d, uint64_t g, uint32_t n)
{
	uint32_t k = 0;

	for (uint32_t i = 0; i < n; i++)
		k += mig_bit_test_atomic(d->installed, g + i);
	return k;
}

/* Makes pages [first, first+n) of region r final, asking for them if
 * needed. 0, FTR_FS_SRC_INSTALLED (while this call waited, a receiver or
 * the installer installed every one of them: their faults are served),
 * -EAGAIN (not yet: the server retries), -ENOTCONN (the migration failed
 * or stopped: fatal for the server). A page that was installed before the
 * call (and faults again, e.g. after MADV_DONTNEED) is never answered with
 * FTR_FS_SRC_INSTALLED: the server installs it again itself. */
static int src_get(struct ftr_migrate_dst *d, uint32_t r, uint64_t first, uint32_t n)
{
	uint64_t g = d->lay.g0[r] + first, end;
	bool fresh;

	if (all_final(d, g, n))
		return 0;
	if (src_gone(d))
		return -ENOTCONN;
	fresh = count_installed(d, g, n) == 0;
	pthread_mutex_lock(&d->arr_lock);
	d->wait_g = g;
	d->wait_end = g + n;
	d->wait_inst_ns = 0;
	atomic_fetch_add(&d->arr_waiters, 1);
	pthread_mutex_unlock(&d->arr_lock);
	request_pages(d, r, first, n);
	end = ftr_now_ns() + MD_FAULT_WAIT_MS * 1000000ull;
	pthread_mutex_lock(&d->arr_lock);
	while (!all_final(d, g, n) && !atomic_load(&d->src_cancel) && ftr_now_ns() < end) {
		struct timespec ts = ftr_deadline_ms(10);

		pthread_cond_timedwait(&d->arr_cv, &d->arr_lock, &ts);
	}
	d->wait_g = d->wait_end = 0;
	atomic_fetch_sub(&d->arr_waiters, 1);
	pthread_mutex_unlock(&d->arr_lock);
	if (!all_final(d, g, n))
		return src_gone(d) ? -ENOTCONN : -EAGAIN;
	return fresh && count_installed(d, g, n) == n ? FTR_FS_SRC_INSTALLED : 0;
}

static int src_read(void *ctx, uint32_t region, uint64_t first, uint32_t npages, void *dst)
{
	struct ftr_migrate_dst *d = ctx;
	int ret = src_get(d, region, first, npages);

	if (ret)
		return ret;	/* incl. FTR_FS_SRC_INSTALLED: nothing to copy */
	for (uint32_t i = 0; i < npages; i++) {
		uint64_t ps = d->lay.page_size;
		uint8_t *to = (uint8_t *)dst + (uint64_t)i * ps;

		/* A bounced (or moved) page faulting again was either
		 * installed while this fault waited (the server's copy then
		 * finds it present) or discarded by the workload since
		 * (MADV_DONTNEED): zeros, as for any anonymous page, since
		 * only the workload's memory holds its content. */
		if (mig_bit_test_atomic(d->bounced, d->lay.g0[region] + first + i))
			memset(to, 0, ps);
		else
			memcpy(to, d->store + page_off(d, region, first + i), ps);
	}
	mark_installed(d, d->lay.g0[region] + first, npages);	/* the server installs it now */
	return 0;
}

static int src_prepare(void *ctx, uint32_t region, uint64_t first, uint32_t npages)
{
	struct ftr_migrate_dst *d = ctx;
	int ret = src_get(d, region, first, npages);

	if (!ret)
		mark_installed(d, d->lay.g0[region] + first, npages);
	return ret;
}

/* When the receiver or installer mapped the pages of the last wait. Only
 * the fault thread calls src_get and then this. */
static uint64_t src_installed_ns(void *ctx)
{
	struct ftr_migrate_dst *d = ctx;
	uint64_t ns;

	pthread_mutex_lock(&d->arr_lock);
	ns = d->wait_inst_ns;
	pthread_mutex_unlock(&d->arr_lock);
	return ns;
}

static void src_cancel(void *ctx)
{
	struct ftr_migrate_dst *d = ctx;

	atomic_store(&d->src_cancel, true);
	pthread_mutex_lock(&d->arr_lock);
	pthread_cond_broadcast(&d->arr_cv);
	pthread_mutex_unlock(&d->arr_lock);
}

static const struct ftr_page_source_ops migrate_source = {
	.read = src_read,
	.prepare = src_prepare,
	.installed_ns = src_installed_ns,
	.cancel = src_cancel,
};

int md_start_serving(struct ftr_migrate_dst *d, char *msg, size_t mlen)
{
	struct ftr_fs_region regs[FTR_WIRE_MAX_REGIONS];
	struct ftr_fs_opts fo = {
		.uffd = d->uffd,
		.mode = d->o.mem == FTR_MIG_MEM_MEMFD ? FTR_FS_MINOR : FTR_FS_MISSING,
		.page_size = d->lay.page_size,
		.regions = regs,
		.nregions = d->lay.nregions,
		.ops = &migrate_source,
		.ctx = d,
		.background = false,	/* the source pushes; receivers install */
		.poison_on_error = d->o.poison_on_failure,
		.prefault_pages = 0,	/* the window is asked of the source instead */
		.target_pidfd = -1,
	};
	int ret;

	for (uint32_t r = 0; r < d->lay.nregions; r++)
		regs[r] = (struct ftr_fs_region){ .addr = (uint64_t)(uintptr_t)d->wmem + d->lay.off[r],
						  .size = d->lay.size[r], .id = r };
	ret = ftr_fs_create(&fo, &d->fs, msg, mlen);
	if (!ret)
		ret = ftr_fs_start(d->fs);
	if (ret) {
		if (!msg[0])
			snprintf(msg, mlen, "starting the fault server: %s", strerror(-ret));
		return ret;
	}
	ret = -pthread_create(&d->inst_th, NULL, installer_main, d);
	if (ret) {
		snprintf(msg, mlen, "starting the installer: %s", strerror(-ret));
		return ret;
	}
	d->inst_started = true;
	return 0;
}

/* ---- the synthetic continuation -------------------------------------------------------- */

static uint64_t le64_at(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void *synth_main(void *arg)
{
	struct ftr_migrate_dst *d = arg;
	uint8_t *base = d->wmem + d->lay.off[0];
	uint64_t rate = d->o.synth_rate, t0, done = 0, k;
	struct ftr_synth_spec spec;
	struct ftr_synth_gen g;
	int ret;

	ftr_thread_name("ftr-md-synth");

	/* Reading the control page is the first fault of the migrated image. */
	ret = ftr_synth_spec_from_image(base, d->lay.size[0], &spec, &k);
	if (ret) {
		md_fail(d, "resume-synth: the image has no synthetic control page");
		goto out;
	}
	if (d->blob_len == 24 && le64_at(d->blob) == SYNTH_BLOB_MAGIC && le64_at(d->blob + 8) != k) {
		md_fail(d, "resume-synth: the image is at write %" PRIu64 " but the blob says %" PRIu64,
			k, le64_at(d->blob + 8));
		ret = -EPROTO;
		goto out;
	}
	ftr_synth_gen_seek(&g, &spec, k);
	atomic_store(&d->synth_k, k);
	pr_info("resume-synth: continuing from write %" PRIu64, k);
	t0 = ftr_now_ns();
	while (!atomic_load_explicit(&d->synth_stop, memory_order_relaxed) &&
	       (!d->o.synth_writes || done < d->o.synth_writes)) {
		if (rate) {
			uint64_t now = ftr_now_ns(), due = t0 + done * 1000000000ull / rate;

			if (now < due) {
				struct timespec ts = { 0, (long)FTR_MIN(due - now, 1000000ull) };

				nanosleep(&ts, NULL);
				continue;
			}
		}
		ftr_synth_write(&g, base);
		done++;
		atomic_store_explicit(&d->synth_k, g.k, memory_order_relaxed);
	}
out:
	pthread_mutex_lock(&d->lock);
	d->synth_err = ret;
	atomic_store(&d->synth_finished, true);
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

int md_synth_start(struct ftr_migrate_dst *d)
{
	int ret;

	if (d->lay.nregions != 1 || d->lay.page_size != FTR_SYNTH_PAGE) {
		md_fail(d, "resume-synth needs the synthetic workload's single region of 4 KiB pages");
		return -EINVAL;
	}
	ret = -pthread_create(&d->synth_th, NULL, synth_main, d);
	if (ret)
		md_fail(d, "cannot start the synthetic continuation: %s", strerror(-ret));
	else
		d->synth_started = true;
	return ret;
}

void md_stop_serving(struct ftr_migrate_dst *d)
{
	atomic_store(&d->synth_stop, true);
	src_cancel(d);
	if (d->fs)
		ftr_fs_stop(d->fs);
	if (d->inst_started)
		pthread_join(d->inst_th, NULL);
	d->inst_started = false;
	if (d->synth_started) {
		if (!atomic_load(&d->synth_finished)) {
			/* Its thread may wait on a page that will never come: the
			 * last reference to the uffd going away wakes it (the
			 * kernel unregisters the range; the image is abandoned). */
			uint64_t end = ftr_now_ms() + 200;

			while (!atomic_load(&d->synth_finished) && ftr_now_ms() < end)
				usleep(1000);
			if (!atomic_load(&d->synth_finished)) {
				ftr_fs_destroy(d->fs);
				d->fs = NULL;
				if (d->uffd >= 0)
					close(d->uffd);
				d->uffd = -1;
			}
		}
		pthread_join(d->synth_th, NULL);
		d->synth_started = false;
	}
}
