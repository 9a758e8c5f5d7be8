/* SPDX-License-Identifier: MIT */
/*
 * The control socket: a unix stream socket speaking JSON lines.
 *
 * Protocol: a client sends one JSON object per line, e.g.
 *   {"cmd":"status"}
 *   {"cmd":"dump","file":"/tmp/image"}
 * and gets exactly one JSON object per line back:
 *   {"ok":true, ...}            on success
 *   {"ok":false,"error":"..."}  on failure (the text names what was wrong)
 * A client may send several requests on one connection. Lines longer than
 * FTR_CTL_MAX_LINE, invalid JSON, a non-object or a missing "cmd" get an
 * error reply; the server never crashes on them and keeps serving others.
 *
 * The server runs one thread that polls the listening socket, every client
 * and a stop eventfd; each handler call is made from that thread. A client
 * that stalls mid-line for FTR_CTL_STALL_MS is disconnected. At most
 * FTR_CTL_MAX_CLIENTS clients at once (others are refused with an error).
 */
#ifndef FTR_CTLSOCK_H
#define FTR_CTLSOCK_H

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

#define FTR_CTL_MAX_LINE (64 * 1024)
#define FTR_CTL_MAX_CLIENTS 16
#define FTR_CTL_STALL_MS 5000

struct ftr_ctl_server;

/* Called for each well-formed request. cmd is the "cmd" string, req the
 * whole object (borrowed). Returns a new reference to the reply object
 * without "ok" (the server adds "ok":true), or NULL with *errmsg set to a
 * malloc'ed message (the server replies {"ok":false,"error":errmsg} and
 * frees it). Unknown commands should be answered that way too. */
typedef json_t *(*ftr_ctl_handler)(void *arg, const char *cmd, json_t *req,
				   char **errmsg);

/* Binds path (an existing socket file is replaced only if nobody listens
 * on it; any other existing file is an error: -EEXIST), mode 0600, and
 * starts the server thread. Returns 0 or -errno. */
int ftr_ctl_server_start(const char *path, ftr_ctl_handler handler, void *arg,
			 struct ftr_ctl_server **out);
/* Stops the thread, closes every client, unlinks the socket path. */
void ftr_ctl_server_stop(struct ftr_ctl_server *srv);

/* Client side: sends req (not consumed) and waits up to timeout_ms for the
 * reply line. Returns 0 with *reply (new reference), or -errno
 * (-ENOENT/-ECONNREFUSED: no server; -ETIMEDOUT; -EPROTO: reply not a JSON
 * object). */
int ftr_ctl_request(const char *path, json_t *req, int timeout_ms, json_t **reply);

/* Listens on a unix stream socket at path, mode 0600 (the control socket
 * and the resume socket): nothing may be there but a stale socket (nobody
 * accepting), which is removed. Returns the listening fd (close-on-exec,
 * nonblocking if asked) with the socket file's identity in *dev / *ino
 * (either may be NULL), or -errno: -EADDRINUSE (someone listens there),
 * -EEXIST (a file that is not a socket), -ENAMETOOLONG, -EINVAL (empty). */
int ftr_unix_listen(const char *path, int backlog, bool nonblock, dev_t *dev, ino_t *ino);
/* Unlinks path only if it is still the socket (dev, ino) that
 * ftr_unix_listen made; warns otherwise. */
void ftr_unix_unlink_own(const char *path, dev_t dev, ino_t ino);

/* Helper for handlers: printf into a malloc'ed string for *errmsg. */
char *ftr_ctl_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
