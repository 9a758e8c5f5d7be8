/* SPDX-License-Identifier: MIT */
/*
 * ftr-migrate-baddst: a hostile migration destination. It speaks the
 * protocol well enough for a source to reach the switch (HELLO replies,
 * ACK of every COMMIT, data drained), then sends one bad record on the
 * urgent channel, so that a test can check that the source rejects it
 * cleanly (an ERROR back, a failed migration naming what was wrong, no
 * crash, no page sent for it).
 *
 *   ftr-migrate-baddst --listen 127.0.0.1:0 --port-file P --mode MODE
 *
 * Modes (what goes on the urgent channel):
 *   garbage        64 bytes that are no record at all (bad magic)
 *   duplicate      FAULT_REQ asking for the same page twice
 *   out-of-range   FAULT_REQ for a page past the region's end
 *   bad-region     FAULT_REQ for a region that does not exist
 *   oversized      FAULT_REQ with 300 pages (limit 256), CRC correct
 *   wrong-type     a PAGES record (the urgent channel carries FAULT_REQ)
 *   before-switch  a valid FAULT_REQ during precopy (COMMITs are never
 *                  acknowledged, so the source stays in precopy)
 *   bad-crc        a FAULT_REQ whose header CRC is wrong
 * It prints "source said: MESSAGE" for the ERROR the source sends back.
 * Threads: one per accepted connection.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ftrepl/ftrepl.h>
#include <ftrepl/transport.h>
#include <ftrepl/wire.h>

#define HEAD_CAP (FTR_WIRE_HDR_LEN + FTR_WIRE_MAX_BODY)

static const char *mode;
static atomic_bool switched;
static atomic_ullong region_pages;
static atomic_int done;

struct conn {
	struct ftr_chan *c;
	uint8_t *head;
	struct ftr_rec rec;
};

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* A FAULT_REQ built by hand (the encoder refuses what the decoder would). */
static size_t raw_fault_req(uint8_t *buf, uint32_t region, const uint64_t *pages, uint32_t count,
			    bool bad_crc)
{
	uint8_t *body = buf + FTR_WIRE_HDR_LEN;
	uint32_t blen = 8 + 8 * count, crc;

	memset(buf, 0, FTR_WIRE_HDR_LEN);
	put32(buf, FTR_WIRE_MAGIC);
	buf[4] = FTR_WIRE_VERSION;
	buf[6] = FTR_REC_FAULT_REQ;
	put32(buf + 12, blen);
	put32(body, region);
	put32(body + 4, count);
	for (uint32_t i = 0; i < count; i++)
		put64(body + 8 + 8 * i, pages[i]);
	crc = ftr_crc32c(ftr_crc32c(0, buf, 32), body, blen);
	put32(buf + 32, bad_crc ? ~crc : crc);
	return FTR_WIRE_HDR_LEN + blen;
}

static int send_raw(struct ftr_chan *c, const void *buf, size_t len)
{
	struct ftr_tx_rec tx = { .head = buf, .head_len = len };

	return ftr_chan_send(c, &tx, 1);
}

static void send_bad(struct ftr_chan *c)
{
	static uint8_t buf[FTR_WIRE_HDR_LEN + 8 + 8 * 300];
	uint64_t pages[300], np = atomic_load(&region_pages);
	size_t len;
	int ret;

	if (!strcmp(mode, "garbage")) {
		for (size_t i = 0; i < 64; i++)
			buf[i] = (uint8_t)(i * 37 + 11);
		len = 64;
	} else if (!strcmp(mode, "duplicate")) {
		pages[0] = 5;
		pages[1] = 6;
		pages[2] = 5;
		len = raw_fault_req(buf, 0, pages, 3, false);
	} else if (!strcmp(mode, "out-of-range")) {
		pages[0] = np + 10;
		len = raw_fault_req(buf, 0, pages, 1, false);
	} else if (!strcmp(mode, "bad-region")) {
		pages[0] = 1;
		len = raw_fault_req(buf, 7, pages, 1, false);
	} else if (!strcmp(mode, "oversized")) {
		for (uint32_t i = 0; i < 300; i++)
			pages[i] = i;
		len = raw_fault_req(buf, 0, pages, 300, false);
	} else if (!strcmp(mode, "bad-crc")) {
		pages[0] = 3;
		len = raw_fault_req(buf, 0, pages, 1, true);
	} else if (!strcmp(mode, "wrong-type")) {
		static uint8_t page[4096];
		struct ftr_rec rec;
		struct iovec iov = { .iov_base = page, .iov_len = sizeof(page) };

		memset(&rec, 0, sizeof(rec));
		rec.hdr.type = FTR_REC_PAGES;
		rec.hdr.flags = FTR_WF_DIRECT;
		rec.hdr.data_len = sizeof(page);
		rec.u.pages.region = 0;
		rec.u.pages.count = 1;
		ret = ftr_chan_send_rec(c, &rec, &iov, 1);
		printf("sent %s: %s\n", mode, ret ? strerror(-ret) : "ok");
		return;
	} else {	/* before-switch: a valid request */
		pages[0] = 1;
		len = raw_fault_req(buf, 0, pages, 1, false);
	}
	ret = send_raw(c, buf, len);
	printf("sent %s: %s\n", mode, ret ? strerror(-ret) : "ok");
	fflush(stdout);
}

static int reply_hello(struct conn *k)
{
	struct ftr_rec r;
	struct ftr_hello *req = &k->rec.u.hello;

	memset(&r, 0, sizeof(r));
	r.hdr.type = FTR_REC_HELLO;
	r.hdr.flags = FTR_WF_REPLY;
	memcpy(r.u.hello.session, req->session, 16);
	r.u.hello.generation = req->generation;
	r.u.hello.features = req->features & FTR_FEAT_KNOWN;
	r.u.hello.page_size = req->page_size;
	r.u.hello.role = FTR_ROLE_STANDBY;
	r.u.hello.channel = req->channel;
	r.u.hello.nchannels = req->nchannels;
	r.u.hello.last_committed = FTR_EPOCH_NONE;
	r.u.hello.cache_size = 1ull << 40;
	return ftr_chan_send_rec(k->c, &r, NULL, 0);
}

static int recv_rec(struct conn *k, int idle_ms)
{
	struct ftr_wire_error werr;
	struct ftr_wire_hdr hdr;
	ssize_t n = ftr_chan_recv_head(k->c, k->head, HEAD_CAP, &hdr, idle_ms, &werr);

	if (n < 0)
		return (int)n;
	return ftr_wire_decode_body(k->head, &hdr, k->head + FTR_WIRE_HDR_LEN, NULL, &k->rec, &werr);
}

static void *conn_main(void *arg)
{
	struct conn *k = arg;
	int role, ret;
	bool saw_bitmap = false, sent = false;

	k->head = malloc(HEAD_CAP);
	if (recv_rec(k, 5000) || k->rec.hdr.type != FTR_REC_HELLO)
		goto out;
	role = k->rec.u.hello.channel;
	if (role == FTR_CHAN_CONTROL && k->rec.u.hello.nregions)
		atomic_store(&region_pages, k->rec.u.hello.regions[0].size / k->rec.u.hello.page_size);
	if (reply_hello(k))
		goto out;
	for (;;) {
		if (role == FTR_CHAN_URGENT && !sent &&
		    (!strcmp(mode, "before-switch") || atomic_load(&switched))) {
			send_bad(k->c);
			sent = true;
		}
		ret = recv_rec(k, 50);
		if (ret == -EAGAIN)
			continue;
		if (ret)
			break;
		if (k->rec.hdr.data_len && ftr_chan_skip_data(k->c, k->rec.hdr.data_len))
			break;
		switch (k->rec.hdr.type) {
		case FTR_REC_BITMAP:
			saw_bitmap = true;
			break;
		case FTR_REC_COMMIT:
			/* before-switch: no ACK ever, so the source cannot leave
			 * precopy before it has read the request. */
			if (role == FTR_CHAN_CONTROL && strcmp(mode, "before-switch")) {
				struct ftr_rec ack;

				memset(&ack, 0, sizeof(ack));
				ack.hdr.type = FTR_REC_ACK;
				ack.hdr.seq = k->rec.hdr.seq;
				ftr_chan_send_rec(k->c, &ack, NULL, 0);
				if (saw_bitmap)
					atomic_store(&switched, true);
			}
			break;
		case FTR_REC_ERROR:
			printf("source said: %s\n", k->rec.u.error.msg);
			fflush(stdout);
			atomic_store(&done, 1);
			goto out;
		default:
			break;
		}
	}
out:
	ftr_chan_close(k->c);
	free(k->head);
	free(k);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "mode", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ftr_tp_opts tp = { 0 };
	const char *listen_at = NULL, *port_file = NULL;
	struct ftr_listener *l;
	int c, ret;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen_at = optarg;
			break;
		case 'p':
			port_file = optarg;
			break;
		case 'm':
			mode = optarg;
			break;
		case 'h':
			printf("usage: ftr-migrate-baddst --listen ADDR:PORT --mode MODE [--port-file F]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (!listen_at || !mode) {
		fprintf(stderr, "usage: ftr-migrate-baddst --listen ADDR:PORT --mode MODE [--port-file F]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	ret = ftr_tp_listen(&tp, listen_at, &l);
	if (ret) {
		fprintf(stderr, "cannot listen: %s\n", strerror(-ret));
		return 1;
	}
	if (port_file) {
		FILE *f = fopen(port_file, "w");

		if (!f || fprintf(f, "%u\n", ftr_listener_port(l)) < 0 || fclose(f))
			return 1;
	}
	/* Serve until the source said what it thought, or 30 s. */
	for (int i = 0; i < 300 && !atomic_load(&done); i++) {
		struct ftr_chan *ch;
		struct conn *k;
		pthread_t th;

		ret = ftr_tp_accept(l, 100, &ch);
		if (ret)
			continue;
		k = calloc(1, sizeof(*k));
		k->c = ch;
		pthread_create(&th, NULL, conn_main, k);
		pthread_detach(th);
	}
	usleep(200000);
	ftr_listener_close(l);
	return atomic_load(&done) ? 0 : 1;
}
