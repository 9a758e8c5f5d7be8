/* SPDX-License-Identifier: MIT */
/*
 * One QEMU -> QEMU live migration of ftbench's test guest, for --postcopy's
 * qemu-* variants (ftbench.h, "QEMU as a peer"; bench/README.md, --postcopy).
 *
 * A run: two QEMU children (qemu_peer.c), the source in the sender's
 * namespace booting the guest, the destination in the receiver's with
 * `-incoming defer`. Both get the capability "events" (MIGRATION,
 * MIGRATION_PASS, STOP, RESUME with timestamps) and, unless the variant is
 * precopy, "postcopy-ram" (the destination also "postcopy-blocktime"). The
 * source gets max-bandwidth 100 GB/s (QEMU 7.2 defaults to 32 MiB/s,
 * ftrepl has no cap) and downtime-limit = ftrepl's convergence target. The
 * destination listens on IP:0 (migrate-incoming; the port from
 * query-migrate). Once the guest printed READY and two progress lines (its
 * write rate), the source runs `migrate`, and ftbench follows its events:
 *
 *   MIGRATION_PASS n   QEMU synced its dirty bitmap: pass 1 at setup, pass
 *                      n >= 2 ends precopy round n - 1 (QEMU then stops and
 *                      copies if what is left fits the downtime limit).
 *                      The round's bandwidth (bytes transferred over the
 *                      round) and dirty rate (what remains after the sync
 *                      over the round's time) come from query-migrate.
 *                      The variant's rule then applies:
 *                        precopy-N  after round N, unless QEMU stopped the
 *                                   VM within 20 ms (it decides right after
 *                                   the sync): migrate_cancel, "did not
 *                                   converge" (QEMU itself never gives up;
 *                                   a cancel that arrives after QEMU began
 *                                   stopping loses, and the rounds column
 *                                   shows N + 1)
 *                        hybrid-N   after round N: migrate-start-postcopy
 *                        hybrid     ftrepl's rule: postcopy once a round's
 *                                   dirty rate reaches half its bandwidth
 *                                   (FTR_MIG_HYBRID_PAYOFF_DIV), at
 *                                   the latest after round 5. The dirty
 *                                   rate is the larger of the round's and
 *                                   the guest's write rate x 4 KiB: what
 *                                   remains after a sync counts each page
 *                                   once, so it cannot show a rate above
 *                                   the RAM per round (ftrepl's source
 *                                   probes the rate early in a round for
 *                                   the same reason)
 *                        postcopy   migrate-start-postcopy right after migrate
 *   STOP, MIGRATION postcopy-active / completed / failed / cancelled
 *
 * Measured: QEMU's total-time, downtime and setup-time; the guest-visible
 * downtime, STOP on the source to RESUME on the destination (both
 * CLOCK_REALTIME event timestamps of one host; QEMU's own postcopy
 * "downtime" ends when the source has sent the device state); pages
 * (normal + duplicate, i.e. zero), transferred bytes, postcopy-requests, the
 * passes, the destination's postcopy-blocktime. QEMU 7.2 exposes no
 * per-fault latency.
 *
 * The check: once the destination says completed, ftbench sends 'V' to its
 * COM1; the guest checks every page against a replay of its writes and
 * prints OK or BAD with a sum over its pages, which ftbench recomputes from
 * the guest's counter alone (the formulas below match guest.c). BAD or a
 * different sum fails the run.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ftrepl/migrate.h>

#include "ftbench.h"

#define QM_QMP_MS 10000
#define QM_BANDWIDTH 100000000000ll	/* bytes/s: "no cap" for QEMU */
#define QM_GIVEUP_GRACE_MS 20		/* precopy-N: QEMU's own stop after round N */
#define QM_HYBRID_DEFAULT_ROUNDS FTR_MIG_DEFAULT_HYBRID_ROUNDS
#define QM_POLL_MS 50
#define QM_PAGE 4096.0
/* The guest's formulas (bench/qemu-guest/guest.c). */
#define QM_GOLDEN 0x9E3779B9u

static uint32_t qm_mix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

static uint32_t qm_page_of(uint32_t k, uint32_t seed, uint32_t npages)
{
	return (uint32_t)(((uint64_t)qm_mix(k * QM_GOLDEN + seed) * npages) >> 32);
}

/* The guest's SUM for k writes: every page's last writer, replayed. */
static int expected_sum(uint32_t k, uint32_t seed, uint32_t npages, uint32_t *sum)
{
	uint32_t *last = calloc(npages, sizeof(*last));

	if (!last)
		return -ENOMEM;
	for (uint32_t j = 0; j < k; j++)
		last[qm_page_of(j, seed, npages)] = j + 1;
	*sum = 0;
	for (uint32_t p = 0; p < npages; p++)
		if (last[p])
			*sum += qm_mix((last[p] - 1) ^ p * QM_GOLDEN);
	free(last);
	return 0;
}

int ftb_qmig_available(char *path, size_t len, char *why, size_t whylen)
{
	const char *p = getenv("FTBENCH_QEMU_GUEST");

#ifdef FTB_QEMU_GUEST
	if (!p || !*p)
		p = FTB_QEMU_GUEST;
#endif
	if (!ftb_have_program("qemu-system-x86_64")) {
		snprintf(why, whylen, "qemu-system-x86_64 is not installed (apt-get install "
			 "qemu-system-x86)");
		return -ENOENT;
	}
	if (!p || !*p) {
		snprintf(why, whylen, "the test guest was not built: the C compiler cannot build "
			 "freestanding -m32 code (bench/qemu-guest); FTBENCH_QEMU_GUEST may name one");
		return -ENOENT;
	}
	if (access(p, R_OK)) {
		snprintf(why, whylen, "the test guest %.200s: %s (build target ftb_qemu_guest)", p,
			 strerror(errno));
		return -ENOENT;
	}
	snprintf(path, len, "%s", p);
	return 0;
}

/* ---- query-migrate ---------------------------------------------------------------------- */

struct qm_stat {
	char status[32];
	char error[200];
	uint64_t total_ms, downtime_ms, setup_ms;
	uint64_t normal, duplicate, transferred, remaining, requests, syncs;
	uint64_t blocktime_ms;
};

static uint64_t u64_of(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		return json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
	if (json_is_real(v))
		return json_real_value(v) > 0 ? (uint64_t)json_real_value(v) : 0;
	return 0;
}

static int query(struct ftb_qemu *q, struct qm_stat *st, char *err, size_t errlen)
{
	json_t *r = NULL, *ram;
	int ret = ftb_qmp(q, "query-migrate", NULL, &r, QM_QMP_MS, err, errlen);

	memset(st, 0, sizeof(*st));
	if (ret)
		return ret;
	snprintf(st->status, sizeof(st->status), "%s",
		 json_string_value(json_object_get(r, "status")) ?: "none");
	snprintf(st->error, sizeof(st->error), "%s",
		 json_string_value(json_object_get(r, "error-desc")) ?: "");
	st->total_ms = u64_of(r, "total-time");
	st->downtime_ms = u64_of(r, "downtime");
	st->setup_ms = u64_of(r, "setup-time");
	st->blocktime_ms = u64_of(r, "postcopy-blocktime");
	ram = json_object_get(r, "ram");
	st->normal = u64_of(ram, "normal");
	st->duplicate = u64_of(ram, "duplicate");
	st->transferred = u64_of(ram, "transferred");
	st->remaining = u64_of(ram, "remaining");
	st->requests = u64_of(ram, "postcopy-requests");
	st->syncs = u64_of(ram, "dirty-sync-count");
	json_decref(r);
	return 0;
}

static int set_caps(struct ftb_qemu *q, bool postcopy, bool blocktime, char *err, size_t errlen)
{
	json_t *caps = json_pack("[{s:s, s:b}, {s:s, s:b}]", "capability", "events", "state", 1,
				 "capability", "postcopy-ram", "state", postcopy);

	if (blocktime)
		json_array_append_new(caps, json_pack("{s:s, s:b}", "capability",
						      "postcopy-blocktime", "state", 1));
	return ftb_qmp(q, "migrate-set-capabilities", json_pack("{s:o}", "capabilities", caps),
		       NULL, QM_QMP_MS, err, errlen);
}

/* ---- the guest ------------------------------------------------------------------------------ */

/* Waits for READY and two progress lines: the guest's write rate. */
static int guest_ready(struct ftb_qemu *src, int timeout_ms, struct ftb_qmig_res *res,
		       char *err, size_t errlen)
{
	unsigned t[2] = { 0, 0 }, k[2] = { 0, 0 }, pages = 0;
	char line[200];
	int ret;

	ret = ftb_qemu_line(src, "FTBG BOOT", line, sizeof(line), 15000, err, errlen);
	if (ret)
		return ret;
	if (sscanf(line, "FTBG BOOT PAGES=%u", &pages) != 1 || !pages) {
		snprintf(err, errlen, "the guest's boot line: %s", line);
		return -EPROTO;
	}
	res->guest_pages = pages;
	ret = ftb_qemu_line(src, "FTBG READY", line, sizeof(line), timeout_ms, err, errlen);
	for (int i = 0; i < 2 && !ret; i++) {
		ret = ftb_qemu_line(src, "FTBG T=", line, sizeof(line), 10000, err, errlen);
		if (!ret && sscanf(line, "FTBG T=%u K=%u", &t[i], &k[i]) != 2) {
			snprintf(err, errlen, "the guest's progress line: %s", line);
			ret = -EPROTO;
		}
	}
	if (ret)
		return ret;
	res->guest_writes_per_s = t[1] > t[0] ? (double)(k[1] - k[0]) * 1000.0 / (t[1] - t[0]) : 0;
	return 0;
}

/* 'V' to the destination's guest; its verdict checked against the sum. */
static int guest_verify(struct ftb_qemu *dst, unsigned seed, int timeout_ms,
			struct ftb_qmig_res *res, char *err, size_t errlen)
{
	unsigned k, pages, written, sum, ms;
	uint32_t want;
	char *line = res->verify_line;
	size_t len = sizeof(res->verify_line);
	int ret;

	ret = ftb_qemu_send(dst, 'V');
	if (ret) {
		snprintf(err, errlen, "QEMU (destination): COM1: %s", strerror(-ret));
		return ret;
	}
	ret = ftb_qemu_line(dst, "FTBG VERIFY", line, len, timeout_ms, err, errlen);
	if (ret)
		return ret;
	if (sscanf(line, "FTBG VERIFY OK K=%u PAGES=%u WRITTEN=%u SUM=0x%x MS=%u", &k, &pages,
		   &written, &sum, &ms) != 5) {
		snprintf(err, errlen, "the destination's guest: %s", line);
		return -EIO;
	}
	if (pages != res->guest_pages) {
		snprintf(err, errlen, "the destination's guest has %u pages, the source's had %u",
			 pages, res->guest_pages);
		return -EIO;
	}
	ret = expected_sum(k, seed, pages, &want);
	if (ret) {
		snprintf(err, errlen, "the expected sum: %s", strerror(-ret));
		return ret;
	}
	if (want != sum) {
		snprintf(err, errlen, "the destination's guest says OK but its pages sum to "
			 "0x%x, expected 0x%x after %u writes: %s", sum, want, k, line);
		return -EIO;
	}
	res->verified = true;
	return 0;
}

/* ---- the migration --------------------------------------------------------------------------- */

struct qm_follow {
	const struct ftb_qmig_cfg *cfg;
	struct ftb_qemu *src;
	int64_t t_setup, t_stop, t_switch, t_done;	/* event times, us */
	int64_t pass_t;				/* the last pass's time */
	uint64_t pass_transferred;
	unsigned rounds;
	bool switched;		/* STOP or postcopy-active seen: passes no longer count */
	struct qm_stat last;	/* the last query-migrate while active */
	bool have_precopy_pages;
	bool postcopy_asked;
	uint64_t giveup_ns;	/* precopy-N: cancel at this time unless stopped */
	bool cancelled;		/* we asked */
	char final[32];		/* completed, failed, cancelled */
};

static int start_postcopy(struct qm_follow *f, char *err, size_t errlen)
{
	char e[200];
	int ret;

	f->postcopy_asked = true;
	ret = ftb_qmp(f->src, "migrate-start-postcopy", NULL, NULL, QM_QMP_MS, e, sizeof(e));
	if (ret == -EIO)	/* QEMU completing by itself already */
		ret = 0;
	if (ret)
		snprintf(err, errlen, "%s", e);
	return ret;
}

/* A round ended (pass n >= 2 before the switch): measure it, apply the rule. */
static int on_round(struct qm_follow *f, int64_t t, struct ftb_qmig_res *res, char *err,
		    size_t errlen)
{
	const struct ftb_qmig_cfg *c = f->cfg;
	struct qm_stat st;
	double dt = (double)(t - f->pass_t) / 1e6, bw = 0, dirty = 0;
	int ret = query(f->src, &st, err, errlen);

	if (ret)
		return ret;
	f->rounds++;
	if (dt > 0) {
		bw = (double)(st.transferred - f->pass_transferred) / dt;
		dirty = (double)st.remaining / dt;
	}
	f->pass_t = t;
	f->pass_transferred = st.transferred;
	/* stopping and copying already: what remains is being sent */
	if (strcmp(st.status, "active"))
		return 0;
	f->last = st;
	res->bandwidth_mb_s = bw / 1e6;
	res->dirty_mb_s = dirty / 1e6;
	dirty = fmax(dirty, res->guest_writes_per_s * QM_PAGE);
	switch (c->mode) {
	case FTR_MIG_PRECOPY:
		if (f->rounds >= (c->max_rounds ? c->max_rounds : FTR_MIG_DEFAULT_PRECOPY_ROUNDS) &&
		    !f->giveup_ns) {
			f->giveup_ns = ftb_now_ns() + QM_GIVEUP_GRACE_MS * 1000000ull;
			snprintf(res->nc_msg, sizeof(res->nc_msg),
				 "precopy did not converge after %u rounds (QEMU, cancelled by "
				 "ftbench): the guest dirties %.1f MB/s, the link carried %.1f MB/s; "
				 "%.1f MiB dirty, downtime limit %u ms", f->rounds, dirty / 1e6,
				 bw / 1e6, (double)st.remaining / (1 << 20), c->downtime_ms);
		}
		return 0;
	case FTR_MIG_HYBRID:
		if (f->postcopy_asked)
			return 0;
		if (c->max_rounds ? f->rounds >= c->max_rounds
				  : f->rounds >= QM_HYBRID_DEFAULT_ROUNDS ||
					    (bw > 0 && dirty * FTR_MIG_HYBRID_PAYOFF_DIV >= bw))
			return start_postcopy(f, err, errlen);
		return 0;
	default:
		return 0;
	}
}

static int on_event(struct qm_follow *f, json_t *ev, struct ftb_qmig_res *res, char *err,
		    size_t errlen)
{
	const char *name = json_string_value(json_object_get(ev, "event")) ?: "";
	json_t *data = json_object_get(ev, "data");
	int64_t t = ftb_qmp_event_time_us(ev);

	if (!strcmp(name, "STOP")) {
		f->t_stop = t;
		if (!f->t_switch)
			f->t_switch = t;
		f->switched = true;
	} else if (!strcmp(name, "MIGRATION_PASS")) {
		int64_t n = json_integer_value(json_object_get(data, "pass"));

		/* after the switch, or once precopy-N gave up on round N */
		if (f->switched || f->giveup_ns)
			return 0;
		if (n <= 1) {
			f->pass_t = t;
			f->pass_transferred = 0;
			return 0;
		}
		return on_round(f, t, res, err, errlen);
	} else if (!strcmp(name, "MIGRATION")) {
		const char *s = json_string_value(json_object_get(data, "status")) ?: "";

		if (!strcmp(s, "setup") && !f->t_setup) {
			f->t_setup = t;
		} else if (!strcmp(s, "postcopy-active")) {
			struct qm_stat st;
			int ret;

			if (!f->t_switch)
				f->t_switch = t;
			f->switched = true;
			ret = query(f->src, &st, err, errlen);
			if (ret)
				return ret;
			res->precopy_pages = st.normal + st.duplicate;
			f->have_precopy_pages = true;
		} else if (!strcmp(s, "completed") || !strcmp(s, "failed") ||
			   !strcmp(s, "cancelled")) {
			snprintf(f->final, sizeof(f->final), "%s", s);
			f->t_done = t;
		}
	}
	return 0;
}

/* Follows the source's events until completed, failed or cancelled. */
static int follow(struct qm_follow *f, struct ftb_qmig_res *res, char *err, size_t errlen)
{
	uint64_t end = ftb_now_ns() + (uint64_t)f->cfg->timeout_ms * 1000000ull;
	int ret;

	while (!f->final[0]) {
		json_t *ev = NULL;
		int wait_ms;

		if (ftb_now_ns() >= end) {
			snprintf(err, errlen, "QEMU's migration did not end within %d s",
				 f->cfg->timeout_ms / 1000);
			return -ETIMEDOUT;
		}
		if (f->giveup_ns && !f->switched && !f->cancelled && ftb_now_ns() >= f->giveup_ns) {
			ret = ftb_qmp(f->src, "migrate_cancel", NULL, NULL, QM_QMP_MS, err, errlen);
			if (ret)
				return ret;
			f->cancelled = true;
		}
		wait_ms = QM_POLL_MS;
		if (f->giveup_ns && !f->cancelled) {
			uint64_t now = ftb_now_ns();

			wait_ms = now >= f->giveup_ns ? 0 : (int)((f->giveup_ns - now) / 1000000) + 1;
		}
		ret = ftb_qmp_event(f->src, &ev, wait_ms, err, errlen);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret)
			return ret;
		ret = on_event(f, ev, res, err, errlen);
		json_decref(ev);
		if (ret)
			return ret;
	}
	return 0;
}

/* The destination: completed, and its RESUME and completion times. */
static int dst_done(struct ftb_qemu *dst, int timeout_ms, int64_t *t_resume, int64_t *t_done,
		    uint64_t *blocktime_ms, char *err, size_t errlen)
{
	uint64_t end = ftb_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct qm_stat st;
	int ret;

	for (;;) {
		ret = query(dst, &st, err, errlen);
		if (ret)
			return ret;
		if (!strcmp(st.status, "completed"))
			break;
		if (!strcmp(st.status, "failed")) {
			snprintf(err, errlen, "QEMU (destination): migration failed: %s", st.error);
			return -EIO;
		}
		if (ftb_now_ns() >= end) {
			snprintf(err, errlen, "QEMU (destination): still '%s' %d s after the source "
				 "completed", st.status, timeout_ms / 1000);
			return -ETIMEDOUT;
		}
		usleep(QM_POLL_MS * 1000);
	}
	*blocktime_ms = st.blocktime_ms;
	/* its events: RESUME (the guest runs there) and MIGRATION completed */
	while (!*t_resume || !*t_done) {
		json_t *ev = NULL;
		const char *name;

		ret = ftb_qmp_event(dst, &ev, ftb_now_ns() < end ? 1000 : 0, err, errlen);
		if (ret == -ETIMEDOUT) {
			snprintf(err, errlen, "QEMU (destination): no %s event",
				 *t_resume ? "MIGRATION completed" : "RESUME");
			return ret;
		}
		if (ret)
			return ret;
		name = json_string_value(json_object_get(ev, "event")) ?: "";
		if (!strcmp(name, "RESUME"))
			*t_resume = ftb_qmp_event_time_us(ev);
		else if (!strcmp(name, "MIGRATION") &&
			 !strcmp(json_string_value(json_object_get(json_object_get(ev, "data"),
								   "status")) ?: "",
				 "completed"))
			*t_done = ftb_qmp_event_time_us(ev);
		json_decref(ev);
	}
	return 0;
}

int ftb_qmig_run(const struct ftb_qmig_cfg *cfg, struct ftb_qmig_res *res, char *err,
		 size_t errlen)
{
	struct ftb_qemu_opts so = {
		.guest = cfg->guest, .mem_kib = cfg->mem_kib, .rate = cfg->rate,
		.seed = cfg->seed, .advance = cfg->advance, .ns_fd = cfg->tx_ns,
		.name = "source",
	};
	struct ftb_qemu_opts dopts = so;
	struct ftb_qemu *src = NULL, *dst = NULL;
	struct qm_follow f = { .cfg = cfg };
	bool postcopy = cfg->mode != FTR_MIG_PRECOPY;
	/* booting zeroes and writes every page 3 times at ~0.4 M writes/s */
	int slow_ms = 30000 + (int)((double)cfg->mem_kib * 60000 / (1 << 20));
	int64_t t_resume = 0, t_dst_done = 0;
	uint64_t blocktime = 0;
	struct qm_stat st;
	json_t *r = NULL;
	char uri[96];
	const char *port;
	int ret;

	memset(res, 0, sizeof(*res));
	dopts.ns_fd = cfg->rx_ns;
	dopts.incoming = true;
	dopts.name = "destination";
	ret = ftb_qemu_start(&dopts, &dst, err, errlen);
	if (!ret)
		ret = ftb_qemu_start(&so, &src, err, errlen);
	if (!ret)
		ret = set_caps(dst, postcopy, postcopy, err, errlen);
	if (!ret)
		ret = set_caps(src, postcopy, false, err, errlen);
	if (!ret)
		ret = ftb_qmp(src, "migrate-set-parameters",
			      json_pack("{s:I, s:I}", "max-bandwidth", (json_int_t)QM_BANDWIDTH,
					"downtime-limit", (json_int_t)cfg->downtime_ms),
			      NULL, QM_QMP_MS, err, errlen);
	if (ret)
		goto out;
	snprintf(uri, sizeof(uri), "tcp:%s:0", cfg->ip);
	ret = ftb_qmp(dst, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL, QM_QMP_MS,
		      err, errlen);
	if (!ret)
		ret = ftb_qmp(dst, "query-migrate", NULL, &r, QM_QMP_MS, err, errlen);
	if (ret)
		goto out;
	port = json_string_value(json_object_get(
		json_array_get(json_object_get(r, "socket-address"), 0), "port"));
	if (!port) {
		snprintf(err, errlen, "QEMU (destination): no listening port in query-migrate");
		ret = -EPROTO;
		goto out;
	}
	snprintf(uri, sizeof(uri), "tcp:%s:%s", cfg->ip, port);
	ret = guest_ready(src, slow_ms, res, err, errlen);
	if (ret)
		goto out;
	f.src = src;
	ret = ftb_qmp(src, "migrate", json_pack("{s:s}", "uri", uri), NULL, QM_QMP_MS, err, errlen);
	if (!ret && cfg->mode == FTR_MIG_POSTCOPY)
		ret = start_postcopy(&f, err, errlen);
	if (!ret)
		ret = follow(&f, res, err, errlen);
	if (ret)
		goto out;
	res->rounds = f.rounds;
	/* QEMU 7.2 announces "completed" before it computes total-time and
	 * (precopy) downtime: ask until they are there */
	for (int i = 0;; i++) {
		ret = query(src, &st, err, errlen);
		if (ret)
			goto out;
		if (st.total_ms || strcmp(f.final, "completed") || i == 100)
			break;
		usleep(20000);
	}
	res->setup_ms = (double)st.setup_ms;
	res->normal_pages = st.normal;
	res->pages = st.normal + st.duplicate;
	res->transferred = st.transferred;
	res->postcopy_requests = st.requests;
	if (!f.have_precopy_pages)
		res->precopy_pages = res->pages;
	if (!strcmp(f.final, "cancelled") && f.cancelled) {
		/* did not converge: from `migrate` to the cancel taking effect;
		 * a cancelled migration's query-migrate has no counters left */
		res->completed = false;
		res->normal_pages = f.last.normal;
		res->pages = res->precopy_pages = f.last.normal + f.last.duplicate;
		res->transferred = f.last.transferred;
		res->total_s = f.t_done > f.t_setup ? (double)(f.t_done - f.t_setup) / 1e6 : 0;
		goto out;
	}
	if (strcmp(f.final, "completed")) {
		snprintf(err, errlen, "QEMU (source): migration %s%s%s", f.final,
			 st.error[0] ? ": " : "", st.error);
		ret = -EIO;
		goto out;
	}
	res->completed = true;
	res->total_s = (double)st.total_ms / 1e3;
	res->qemu_downtime_ms = (double)st.downtime_ms;
	ret = dst_done(dst, 60000, &t_resume, &t_dst_done, &blocktime, err, errlen);
	if (ret)
		goto out;
	res->blocktime_ms = (double)blocktime;
	res->downtime_ms = f.t_stop && t_resume > f.t_stop ? (double)(t_resume - f.t_stop) / 1e3
							   : res->qemu_downtime_ms;
	res->precopy_s = f.t_switch > f.t_setup ? (double)(f.t_switch - f.t_setup) / 1e6 : 0;
	res->postcopy_s = f.have_precopy_pages && t_dst_done > t_resume
				  ? (double)(t_dst_done - t_resume) / 1e6
				  : 0;
	ret = guest_verify(dst, cfg->seed, slow_ms, res, err, errlen);
out:
	json_decref(r);
	ftb_qemu_stop(src);
	ftb_qemu_stop(dst);
	return ret;
}
