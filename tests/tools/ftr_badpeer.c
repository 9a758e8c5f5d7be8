/* SPDX-License-Identifier: MIT */
/*
 * ftr-badpeer: a scripted primary for tests. It speaks the wire protocol
 * through libftrepl's codec and transport, replicates a small synthetic
 * image correctly for two epochs, then misbehaves in one chosen way, so a
 * test can check that the standby rejects it, names the problem, and still
 * holds exactly the last committed epoch.
 *
 *   ftr-badpeer --connect ADDR:PORT --mode MODE [--size SIZE] [--session UUID]
 *
 * Modes that need no session: garbage, truncated-hello, stall-hello,
 * second-session (expects the standby to refuse a HELLO: exit 0 if it did).
 * Modes that attack epoch 2 of a session of their own after committing
 * epochs 0 and 1 (image k = K1 + K2 writes): stall-mid-record,
 * truncate-mid-record, bad-data-crc, garbage-in-session, page-out-of-range,
 * slot-outside-window, slot-reuse, commit-mismatch, commit-on-data,
 * skip-epoch, none (commit epoch 2 too, then disappear without BYE).
 * Prints "committed-k K" for the last committed epoch's k, then what the
 * standby answered. Exits 0 when the scenario ran as intended.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <ftrepl/checkpoint.h>
#include <ftrepl/ftrepl.h>
#include <ftrepl/synth.h>
#include <ftrepl/transport.h>
#include <ftrepl/wire.h>

#define PAGE 4096u

struct peer {
	const char *addr;
	struct ftr_tp_opts tp;
	uint8_t session[16];
	struct ftr_chan *ctl, *data;
	uint64_t nslots;
	uint64_t next_pos;
	struct ftr_synth_spec spec;
	struct ftr_synth_gen gen;
	uint8_t *image;
	uint64_t npages;
	uint64_t *dirty;
	struct ftr_rec rec;
	uint8_t head[FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY];
	uint32_t batches;
	uint64_t epoch_pages;	/* PAGES entries sent in the current epoch */
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ftr-badpeer: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static struct ftr_chan *raw_connect(struct peer *p)
{
	struct ftr_chan *c;
	int ret = ftr_tp_connect(&p->tp, p->addr, 5000, &c);

	if (ret)
		die("connect %s: %s", p->addr, strerror(-ret));
	ftr_chan_set_stall_timeout(c, 10000);
	return c;
}

/* Sends raw bytes as a "record" with no data (used for garbage). */
static void send_raw(struct ftr_chan *c, const void *buf, size_t len)
{
	struct ftr_tx_rec tx = { .head = buf, .head_len = len };
	int ret = ftr_chan_send(c, &tx, 1);

	if (ret)
		die("send: %s", strerror(-ret));
}

/* Reads records until one of type `want` (others are skipped); returns
 * the type seen, or a negative errno. ERROR records are printed. */
static int read_until(struct peer *p, struct ftr_chan *c, unsigned want, int timeout_ms)
{
	uint64_t end = (uint64_t)timeout_ms;

	for (uint64_t waited = 0; waited <= end; waited += 100) {
		struct ftr_wire_error werr;
		struct ftr_wire_hdr hdr;
		ssize_t n = ftr_chan_recv_head(c, p->head, sizeof(p->head), &hdr, 100, &werr);

		if (n == -EAGAIN)
			continue;
		if (n < 0)
			return (int)n;
		if (ftr_wire_decode_body(p->head, &hdr, p->head + FTR_WIRE_HDR_LEN, NULL, &p->rec,
					 &werr))
			die("bad record from standby: %s", werr.msg);
		if (hdr.data_len)
			ftr_chan_skip_data(c, hdr.data_len);
		if (hdr.type == FTR_REC_ERROR) {
			printf("standby-error %d %s\n", p->rec.u.error.code, p->rec.u.error.msg);
			fflush(stdout);
			if (want == FTR_REC_ERROR)
				return FTR_REC_ERROR;
			return -ECONNABORTED;
		}
		if (hdr.type == want)
			return (int)hdr.type;
	}
	return -ETIMEDOUT;
}

static void send_rec(struct ftr_chan *c, struct ftr_rec *rec, const struct iovec *iov, int n)
{
	int ret = ftr_chan_send_rec(c, rec, iov, n);

	if (ret)
		die("send %s: %s", ftr_rec_type_name(rec->hdr.type), strerror(-ret));
}

static void hello(struct peer *p, struct ftr_chan *c, uint8_t channel)
{
	struct ftr_hello *h = &p->rec.u.hello;
	int ret;

	memset(&p->rec, 0, sizeof(p->rec));
	p->rec.hdr.type = FTR_REC_HELLO;
	memcpy(h->session, p->session, 16);
	h->generation = 1;
	h->features = FTR_FEAT_DATA_CRC | FTR_FEAT_ZERO_FILL;
	h->page_size = PAGE;
	h->role = FTR_ROLE_PRIMARY;
	h->channel = channel;
	h->nchannels = 1;
	h->nregions = 1;
	h->last_committed = FTR_EPOCH_NONE;
	h->regions[0].size = p->spec.size;
	strcpy(h->regions[0].name, "badpeer");
	send_rec(c, &p->rec, NULL, 0);
	ret = read_until(p, c, FTR_REC_HELLO, 10000);
	if (ret != FTR_REC_HELLO)
		die("no HELLO reply on channel %u: %s", channel, strerror(-ret));
	if (channel == 0)
		p->nslots = p->rec.u.hello.staging_slots;
}

/* Builds a PAGES record for pages[] (staged unless epoch 0). */
static void pages_rec(struct peer *p, uint64_t epoch, const uint64_t *pages, uint32_t n,
		      struct iovec *iov)
{
	memset(&p->rec.hdr, 0, sizeof(p->rec.hdr));
	p->rec.hdr.type = FTR_REC_PAGES;
	p->rec.hdr.seq = epoch;
	p->rec.hdr.flags = epoch == 0 ? FTR_WF_DIRECT : 0;
	p->rec.u.pages.region = 0;
	p->rec.u.pages.count = n;
	for (uint32_t i = 0; i < n; i++) {
		p->rec.u.pages.ent[i].page = pages[i];
		p->rec.u.pages.ent[i].pos = epoch == 0 ? 0 : p->next_pos++;
		iov[i].iov_base = p->image + pages[i] * PAGE;
		iov[i].iov_len = PAGE;
	}
	p->rec.hdr.data_len = n * PAGE;
	p->rec.hdr.flags |= FTR_WF_DATA_CRC;
	p->rec.hdr.data_crc = ftr_wire_data_crc(iov, (int)n);
}

/* Sends every dirty page of an epoch in batches of up to 64; returns the
 * number of pages sent. */
static uint64_t send_dirty(struct peer *p, uint64_t epoch, uint64_t limit)
{
	uint64_t pages[64], sent = 0;
	struct iovec iov[64];
	uint32_t n = 0;

	for (uint64_t pg = 0; pg < p->npages && sent + n < limit; pg++) {
		if (!(p->dirty[pg / 64] >> (pg % 64) & 1))
			continue;
		pages[n++] = pg;
		if (n == 64) {
			pages_rec(p, epoch, pages, n, iov);
			send_rec(p->data, &p->rec, iov, (int)n);
			p->batches++;
			sent += n;
			n = 0;
		}
	}
	if (n) {
		pages_rec(p, epoch, pages, n, iov);
		send_rec(p->data, &p->rec, iov, (int)n);
		p->batches++;
		sent += n;
	}
	p->epoch_pages += sent;
	return sent;
}

static void commit(struct peer *p, uint64_t epoch)
{
	uint64_t pages = p->epoch_pages;

	memset(&p->rec, 0, sizeof(p->rec));
	p->rec.hdr.type = FTR_REC_COMMIT;
	p->rec.hdr.seq = epoch;
	p->rec.u.commit.nchannels = 1;
	p->rec.u.commit.pages = pages;
	p->rec.u.commit.slot_end = epoch == 0 ? 0 : p->next_pos;
	p->rec.u.commit.batches[0] = p->batches;
	send_rec(p->ctl, &p->rec, NULL, 0);
	if (read_until(p, p->ctl, FTR_REC_ACK, 10000) != FTR_REC_ACK)
		die("no ACK for epoch %" PRIu64, epoch);
	if (p->rec.hdr.seq != epoch)
		die("ACK %" PRIu64 " for epoch %" PRIu64, p->rec.hdr.seq, epoch);
	p->batches = 0;
	p->epoch_pages = 0;
}

static void write_k(struct peer *p, uint64_t n)
{
	memset(p->dirty, 0, (p->npages + 63) / 64 * 8);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pg = ftr_synth_write(&p->gen, p->image);

		p->dirty[pg / 64] |= 1ull << (pg % 64);
	}
	p->dirty[0] |= 1;
}

/* Epochs 0 and 1, done right. */
static void good_session(struct peer *p)
{
	p->ctl = raw_connect(p);
	hello(p, p->ctl, 0);
	p->data = raw_connect(p);
	hello(p, p->data, 1);

	write_k(p, 300);
	memset(p->dirty, 0xff, (p->npages + 63) / 64 * 8);
	for (uint64_t pg = p->npages; pg < (p->npages + 63) / 64 * 64; pg++)
		p->dirty[pg / 64] &= ~(1ull << (pg % 64));
	send_dirty(p, 0, UINT64_MAX);
	commit(p, 0);
	write_k(p, 200);
	send_dirty(p, 1, UINT64_MAX);
	commit(p, 1);
	printf("committed-k %" PRIu64 "\n", p->gen.k);
	fflush(stdout);
	write_k(p, 200);
}

static void attack(struct peer *p, const char *mode)
{
	uint64_t pages[4] = { 1, 2, 3, 4 };
	struct iovec iov[4];
	uint8_t junk[512];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	/* First a correct batch of epoch 2, so there is something to discard. */
	send_dirty(p, 2, 64);

	if (!strcmp(mode, "stall-mid-record") || !strcmp(mode, "truncate-mid-record")) {
		uint8_t buf[FTR_WIRE_MAX_ENCODED];
		ssize_t len;

		pages_rec(p, 2, pages, 4, iov);
		len = ftr_wire_encode(buf, sizeof(buf), &p->rec);
		if (len < 0)
			die("encode");
		send_raw(p->data, buf, (size_t)len);
		send_raw(p->data, iov[0].iov_base, PAGE / 2); /* half a page, then nothing */
		if (!strcmp(mode, "stall-mid-record")) {
			read_until(p, p->ctl, FTR_REC_ERROR, 60000);
			return;
		}
		return; /* the caller closes the sockets */
	}
	if (!strcmp(mode, "bad-data-crc")) {
		pages_rec(p, 2, pages, 4, iov);
		p->rec.hdr.data_crc ^= 0x5a5a5a5a;
		send_rec(p->data, &p->rec, iov, 4);
	} else if (!strcmp(mode, "garbage-in-session")) {
		send_raw(p->data, junk, sizeof(junk));
	} else if (!strcmp(mode, "page-out-of-range")) {
		pages_rec(p, 2, pages, 4, iov);
		p->rec.u.pages.ent[2].page = p->npages + 5;
		send_rec(p->data, &p->rec, iov, 4);
	} else if (!strcmp(mode, "slot-outside-window")) {
		pages_rec(p, 2, pages, 4, iov);
		p->rec.u.pages.ent[1].pos = p->next_pos + p->nslots + 10;
		send_rec(p->data, &p->rec, iov, 4);
	} else if (!strcmp(mode, "slot-reuse")) {
		/* Two pages into one slot: the second would overwrite the first. */
		pages_rec(p, 2, pages, 4, iov);
		p->rec.u.pages.ent[3].pos = p->rec.u.pages.ent[2].pos;
		send_rec(p->data, &p->rec, iov, 4);
	} else if (!strcmp(mode, "commit-mismatch")) {
		memset(&p->rec, 0, sizeof(p->rec));
		p->rec.hdr.type = FTR_REC_COMMIT;
		p->rec.hdr.seq = 2;
		p->rec.u.commit.nchannels = 1;
		p->rec.u.commit.pages = 1000; /* more than were sent */
		p->rec.u.commit.slot_end = p->next_pos;
		p->rec.u.commit.batches[0] = p->batches;
		send_rec(p->ctl, &p->rec, NULL, 0);
	} else if (!strcmp(mode, "commit-on-data")) {
		memset(&p->rec, 0, sizeof(p->rec));
		p->rec.hdr.type = FTR_REC_COMMIT;
		p->rec.hdr.seq = 2;
		p->rec.u.commit.nchannels = 1;
		p->rec.u.commit.batches[0] = p->batches;
		send_rec(p->data, &p->rec, NULL, 0);
	} else if (!strcmp(mode, "skip-epoch")) {
		memset(&p->rec, 0, sizeof(p->rec));
		p->rec.hdr.type = FTR_REC_COMMIT;
		p->rec.hdr.seq = 3;
		p->rec.u.commit.nchannels = 1;
		p->rec.u.commit.slot_end = p->next_pos;
		send_rec(p->ctl, &p->rec, NULL, 0);
	} else if (!strcmp(mode, "none")) {
		/* Epoch 2 was sent in part: finish and commit it properly. */
		return;
	} else {
		die("unknown mode %s", mode);
	}
	/* Wait for the standby's verdict (ERROR or close). */
	int ret = read_until(p, p->ctl, FTR_REC_ERROR, 20000);

	if (ret == -ETIMEDOUT)
		die("standby did not react to %s", mode);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "mode", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 's' },
		{ "session", required_argument, NULL, 'S' },
		{ 0 },
	};
	struct peer *p = calloc(1, sizeof(*p));
	const char *mode = NULL;
	char err[256];
	int opt;

	if (!p)
		die("out of memory");
	ftr_synth_parse("synth:size=1M,seed=77", &p->spec, err, sizeof(err));
	uuid_generate_random(p->session);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			p->addr = optarg;
			break;
		case 'm':
			mode = optarg;
			break;
		case 's':
			if (ftr_parse_size(optarg, &p->spec.size))
				die("bad size");
			break;
		case 'S':
			if (uuid_parse(optarg, p->session))
				die("bad uuid");
			break;
		default:
			die("usage: ftr-badpeer --connect ADDR:PORT --mode MODE");
		}
	}
	if (!p->addr || !mode)
		die("usage: ftr-badpeer --connect ADDR:PORT --mode MODE");
	p->tp.transport = "tcp";

	if (!strcmp(mode, "garbage") || !strcmp(mode, "truncated-hello") ||
	    !strcmp(mode, "stall-hello")) {
		struct ftr_chan *c = raw_connect(p);
		uint8_t junk[300];

		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)(i * 91 + 7);
		if (!strcmp(mode, "garbage")) {
			send_raw(c, junk, sizeof(junk));
			read_until(p, c, FTR_REC_ERROR, 10000);
		} else {
			/* 20 bytes of a valid-looking header. */
			uint32_t magic = FTR_WIRE_MAGIC;

			memcpy(junk, &magic, 4);
			send_raw(c, junk, 20);
			if (!strcmp(mode, "stall-hello"))
				read_until(p, c, FTR_REC_ERROR, 30000);
		}
		ftr_chan_close(c);
		free(p);
		return 0;
	}
	if (!strcmp(mode, "second-session")) {
		struct ftr_chan *c = raw_connect(p);
		struct ftr_hello *h = &p->rec.u.hello;

		memset(&p->rec, 0, sizeof(p->rec));
		p->rec.hdr.type = FTR_REC_HELLO;
		memcpy(h->session, p->session, 16);
		h->generation = 1;
		h->page_size = PAGE;
		h->role = FTR_ROLE_PRIMARY;
		h->nchannels = 1;
		h->nregions = 1;
		h->regions[0].size = p->spec.size;
		strcpy(h->regions[0].name, "intruder");
		send_rec(c, &p->rec, NULL, 0);
		if (read_until(p, c, FTR_REC_ERROR, 10000) != FTR_REC_ERROR)
			die("standby accepted a second session");
		ftr_chan_close(c);
		free(p);
		return 0;
	}

	p->npages = p->spec.size / PAGE;
	p->image = calloc(p->npages, PAGE);
	p->dirty = calloc((p->npages + 63) / 64, 8);
	if (!p->image || !p->dirty)
		die("out of memory");
	ftr_synth_gen_init(&p->gen, &p->spec);
	ftr_synth_init_image(&p->gen, p->image);
	good_session(p);
	attack(p, mode);
	if (!strcmp(mode, "none")) {
		/* Pages of the first batch go again: the later copy wins. */
		send_dirty(p, 2, UINT64_MAX);
		commit(p, 2);
		printf("committed-k %" PRIu64 "\n", p->gen.k);
	}
	fflush(stdout);
	ftr_chan_close(p->data);
	ftr_chan_close(p->ctl);
	free(p->image);
	free(p->dirty);
	free(p);
	return 0;
}
