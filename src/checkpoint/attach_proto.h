/* SPDX-License-Identifier: MIT */
/*
 * The attach protocol's plumbing, shared by both ends inside libftrepl:
 * the sender side (workload_attach.c) and the client library (client.c).
 * The protocol itself is described in include/ftrepl/attach.h.
 *
 * Messages are JSON objects, one per line ('\n'), on a unix stream socket.
 * File descriptors travel with SCM_RIGHTS on the first byte of the line
 * they belong to (only the attach line carries any).
 */
#ifndef FTR_ATTACH_PROTO_H
#define FTR_ATTACH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#define FTR_ATTACH_VERSION 1
/* Longest line either side accepts (the attach line of 64 regions is
 * ~10 KiB); a longer one is answered with an error and skipped. */
#define FTR_ATTACH_MAX_LINE (64 * 1024)
/* How long a write may wait for room in the peer's socket buffer before
 * the peer counts as gone. */
#define FTR_ATTACH_SEND_MS 2000

/* Bytes received and not yet consumed as lines. */
struct ftr_linebuf {
	char *buf;
	size_t len;	 /* bytes held */
	size_t consumed; /* of which the line handed out last */
	size_t max;	 /* longest line accepted, without '\n' */
	bool skipping;	 /* inside an over-long line: drop up to '\n' */
};

/* Allocates the buffer for lines up to max bytes. Returns 0 or -ENOMEM. */
int ftr_linebuf_init(struct ftr_linebuf *lb, size_t max);
void ftr_linebuf_free(struct ftr_linebuf *lb);

/* One recvmsg() (MSG_DONTWAIT) into lb. SCM_RIGHTS descriptors are
 * received close-on-exec; up to maxfds of them are stored in fds (count
 * added to *nfds), any beyond are closed and *extra_fds set. Returns the
 * bytes read, 0 at EOF, -EAGAIN when nothing was there, or -errno. */
ssize_t ftr_linebuf_fill(struct ftr_linebuf *lb, int fd, int *fds, unsigned maxfds,
			 unsigned *nfds, bool *extra_fds);

/* The next complete line: returns its length with *line pointing at it
 * (NUL-terminated, '\n' removed, valid until the next call), -EAGAIN when
 * no complete line is held, or -EMSGSIZE once for a line longer than max
 * (its rest is then skipped up to its '\n'). */
ssize_t ftr_linebuf_next(struct ftr_linebuf *lb, char **line);

/* Sends obj (not consumed) as one line, with fds (may be NULL) attached to
 * its first byte. Waits at most timeout_ms for socket buffer room in all.
 * Never raises SIGPIPE. Returns 0, -ETIMEDOUT, -ENOMEM or -errno. */
int ftr_line_send(int sock, json_t *obj, const int *fds, unsigned nfds, int timeout_ms);

#endif
