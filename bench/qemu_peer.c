/* SPDX-License-Identifier: MIT */
/*
 * QEMU as a peer: one qemu-system-x86_64 process running ftbench's test
 * guest (bench/qemu-guest), its QMP monitor and its COM1 (ftbench.h,
 * "QEMU as a peer").
 *
 * The process is a child of ftbench (ftb_fork: registered for the cleanup
 * on exit and on SIGINT/SIGTERM/SIGHUP, PR_SET_PDEATHSIG, optionally in a
 * network namespace) running
 *
 *   qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot
 *       -machine pc -accel tcg,tb-size=64 -m SIZE_KIB K -kernel GUEST
 *       -append "rate=R seed=S adv=A" -chardev stdio,id=con,signal=off
 *       -serial chardev:con -chardev socket,id=qmp,fd=3
 *       -mon chardev=qmp,mode=control [-incoming defer]
 *
 * so nothing is created in the file system: QMP is one end of a
 * socketpair() passed as fd 3, COM1 is the process's stdin and stdout
 * (pipes), and stderr is a pipe whose tail names the reason when QEMU
 * dies. The pipes are drained only while someone waits on them; COM1's
 * pipe is enlarged to 1 MiB, decades of the guest's one line per second.
 *
 * QMP: one JSON object per line. A command carries an "id"; its reply is
 * the object with that id, and every event read meanwhile is queued (with
 * its timestamp) for ftb_qmp_event().
 *
 * Every wait has a timeout: QEMU or its guest may hang (FACTS.md). No
 * thread is created here.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ftbench.h"

#define QMP_FD 3
#define QMP_BUF (256u << 10)
#define SER_BUF 4096u
#define ERR_TAIL 512u
#define START_TIMEOUT_MS 15000

struct ftb_qemu {
	pid_t pid;
	int qmp, ser_in, ser_out, err;	/* our ends */
	char name[24];
	char *qbuf;			/* QMP bytes not parsed yet */
	size_t qlen;
	char sbuf[SER_BUF];		/* COM1 bytes not a whole line yet */
	size_t slen;
	char etail[ERR_TAIL];		/* the last bytes of stderr */
	size_t elen;
	unsigned next_id;
	json_t *events;			/* queued events, oldest first */
};

/* ---- starting and stopping ------------------------------------------------------------ */

static void __attribute__((noreturn)) qemu_child(const struct ftb_qemu_opts *o, int in, int out,
						 int err, int qmp)
{
	char mem[32], append[96], kernel[512];
	const char *argv[40];
	int n = 0, keep = QMP_FD;

	if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
	    dup2(err, STDERR_FILENO) < 0)
		_exit(126);
	/* dup2() onto itself would keep O_CLOEXEC */
	if (qmp == QMP_FD) {
		if (fcntl(qmp, F_SETFD, 0))
			_exit(126);
	} else if (dup2(qmp, QMP_FD) < 0) {
		_exit(126);
	}
	ftb_close_fds_except(&keep, 1);
	snprintf(mem, sizeof(mem), "%" PRIu64 "K", o->mem_kib);
	snprintf(append, sizeof(append), "rate=%" PRIu64 " seed=%u adv=%u", o->rate, o->seed,
		 o->advance);
	snprintf(kernel, sizeof(kernel), "%s", o->guest);
	argv[n++] = "qemu-system-x86_64";
	argv[n++] = "-nodefaults";
	argv[n++] = "-no-user-config";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-no-reboot";
	argv[n++] = "-machine";
	argv[n++] = "pc";
	argv[n++] = "-accel";
	argv[n++] = "tcg,tb-size=64";
	argv[n++] = "-m";
	argv[n++] = mem;
	argv[n++] = "-kernel";
	argv[n++] = kernel;
	argv[n++] = "-append";
	argv[n++] = append;
	argv[n++] = "-chardev";
	argv[n++] = "stdio,id=con,signal=off";
	argv[n++] = "-serial";
	argv[n++] = "chardev:con";
	argv[n++] = "-chardev";
	argv[n++] = "socket,id=qmp,fd=3";
	argv[n++] = "-mon";
	argv[n++] = "chardev=qmp,mode=control";
	if (o->incoming) {
		argv[n++] = "-incoming";
		argv[n++] = "defer";
	}
	argv[n] = NULL;
	execvp(argv[0], (char *const *)argv);
	_exit(127);
}

/* Reads what stderr has without blocking; keeps the tail. At its end the
 * pipe is closed (poll() then ignores it). */
static void drain_stderr(struct ftb_qemu *q)
{
	char b[1024];
	ssize_t n;

	if (q->err < 0)
		return;
	while ((n = read(q->err, b, sizeof(b))) > 0) {
		size_t k = (size_t)n;

		if (k >= ERR_TAIL) {
			memcpy(q->etail, b + k - (ERR_TAIL - 1), ERR_TAIL - 1);
			q->elen = ERR_TAIL - 1;
		} else {
			if (q->elen + k >= ERR_TAIL) {
				size_t drop = q->elen + k - (ERR_TAIL - 1);

				memmove(q->etail, q->etail + drop, q->elen - drop);
				q->elen -= drop;
			}
			memcpy(q->etail + q->elen, b, k);
			q->elen += k;
		}
		q->etail[q->elen] = '\0';
	}
	if (n == 0) {
		close(q->err);
		q->err = -1;
	}
}

/* "QEMU (source) exited: <its last stderr line>" or the errno text. */
static int dead(struct ftb_qemu *q, int ret, const char *what, char *err, size_t errlen)
{
	char *line;

	drain_stderr(q);
	while (q->elen && (q->etail[q->elen - 1] == '\n' || q->etail[q->elen - 1] == '\r'))
		q->etail[--q->elen] = '\0';
	line = strrchr(q->etail, '\n');
	line = line ? line + 1 : q->etail;
	if (ret == -EPIPE)
		snprintf(err, errlen, "QEMU (%s) exited while %s%s%.200s", q->name, what,
			 *line ? ": " : "", line);
	else
		snprintf(err, errlen, "QEMU (%s) %s: %s%s%.200s", q->name, what, strerror(-ret),
			 *line ? "; stderr: " : "", line);
	return ret;
}

int ftb_qemu_start(const struct ftb_qemu_opts *o, struct ftb_qemu **out, char *err,
		   size_t errlen)
{
	int in[2] = { -1, -1 }, sout[2] = { -1, -1 }, serr[2] = { -1, -1 }, sv[2] = { -1, -1 };
	struct ftb_qemu *q = calloc(1, sizeof(*q));
	json_t *r = NULL;
	int ret;

	*out = NULL;
	if (!q || !(q->qbuf = malloc(QMP_BUF)) || !(q->events = json_array())) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	q->qmp = q->ser_in = q->ser_out = q->err = -1;
	snprintf(q->name, sizeof(q->name), "%s", o->name);
	if (pipe2(in, O_CLOEXEC) || pipe2(sout, O_CLOEXEC) || pipe2(serr, O_CLOEXEC) ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		ret = -errno;
		snprintf(err, errlen, "pipe/socketpair: %s", strerror(errno));
		goto fail;
	}
	/* the guest's output must never block it: 1 MiB is ~20 h of lines */
	fcntl(sout[0], F_SETPIPE_SZ, 1 << 20);
	q->pid = ftb_fork(o->ns_fd);
	if (q->pid == 0)
		qemu_child(o, in[0], sout[1], serr[1], sv[1]);
	if (q->pid < 0) {
		ret = (int)q->pid;
		q->pid = -1;
		snprintf(err, errlen, "fork: %s", strerror(-ret));
		goto fail;
	}
	/* keep our ends only, so that QEMU's exit shows as EOF at once */
	q->ser_in = in[1];
	q->ser_out = sout[0];
	q->err = serr[0];
	q->qmp = sv[0];
	close(in[0]);
	close(sout[1]);
	close(serr[1]);
	close(sv[1]);
	in[0] = in[1] = sout[0] = sout[1] = serr[0] = serr[1] = sv[0] = sv[1] = -1;
	fcntl(q->err, F_SETFL, O_NONBLOCK);
	fcntl(q->ser_in, F_SETFL, O_NONBLOCK);
	/* the greeting, then capabilities negotiation */
	ret = ftb_qmp(q, NULL, NULL, &r, START_TIMEOUT_MS, err, errlen);
	json_decref(r);
	if (ret)
		goto fail;
	ret = ftb_qmp(q, "qmp_capabilities", NULL, NULL, START_TIMEOUT_MS, err, errlen);
	if (ret)
		goto fail;
	*out = q;
	ret = 0;
	goto out_close;

fail:
	ftb_qemu_stop(q);
out_close:
	for (int i = 0; i < 2; i++) {
		int *fds[] = { &in[i], &sout[i], &serr[i], &sv[i] };

		for (size_t j = 0; j < sizeof(fds) / sizeof(fds[0]); j++)
			if (*fds[j] >= 0)
				close(*fds[j]);
	}
	return ret;
}

void ftb_qemu_stop(struct ftb_qemu *q)
{
	if (!q)
		return;
	if (q->pid > 0) {
		ftb_kill(q->pid);
		ftb_wait(q->pid, 10000);
	}
	if (q->qmp >= 0)
		close(q->qmp);
	if (q->ser_in >= 0)
		close(q->ser_in);
	if (q->ser_out >= 0)
		close(q->ser_out);
	if (q->err >= 0)
		close(q->err);
	json_decref(q->events);
	free(q->qbuf);
	free(q);
}

/* ---- reading: QMP objects and COM1 lines -------------------------------------------- */

/* Waits until fd is readable (draining stderr meanwhile) or end_ns; looks
 * at least once. Returns 0, -ETIMEDOUT or -errno. */
static int wait_readable(struct ftb_qemu *q, int fd, uint64_t end_ns)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = q->err, .events = POLLIN } };
		uint64_t now = ftb_now_ns();
		int n = poll(p, 2, now >= end_ns ? 0 : (int)((end_ns - now) / 1000000ull) + 1);

		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0) {
			if (ftb_now_ns() >= end_ns)
				return -ETIMEDOUT;
			continue;
		}
		if (p[1].revents)
			drain_stderr(q);
		if (p[0].revents)
			return 0;
	}
}

/* The next QMP object (a reply, an event or the greeting), new reference. */
static int qmp_next(struct ftb_qemu *q, json_t **obj, uint64_t end_ns)
{
	for (;;) {
		char *nl = memchr(q->qbuf, '\n', q->qlen);
		ssize_t n;
		int ret;

		if (nl) {
			size_t len = (size_t)(nl - q->qbuf) + 1;
			json_error_t je;

			*obj = json_loadb(q->qbuf, len, 0, &je);
			memmove(q->qbuf, q->qbuf + len, q->qlen - len);
			q->qlen -= len;
			if (*obj && json_is_object(*obj))
				return 0;
			json_decref(*obj);
			*obj = NULL;
			return -EBADMSG;
		}
		if (q->qlen == QMP_BUF)
			return -EMSGSIZE;
		ret = wait_readable(q, q->qmp, end_ns);
		if (ret)
			return ret;
		n = read(q->qmp, q->qbuf + q->qlen, QMP_BUF - q->qlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		q->qlen += (size_t)n;
	}
}

int ftb_qmp(struct ftb_qemu *q, const char *cmd, json_t *args, json_t **ret_out, int timeout_ms,
	    char *err, size_t errlen)
{
	uint64_t end = ftb_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	unsigned id = ++q->next_id;
	char what[64];
	int ret;

	if (ret_out)
		*ret_out = NULL;
	snprintf(what, sizeof(what), "answering %s", cmd ? cmd : "with its greeting");
	if (cmd) {
		json_t *msg = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t)id);
		char *text;

		if (args)
			json_object_set(msg, "arguments", args);
		text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
		json_decref(msg);
		if (!text) {
			json_decref(args);
			snprintf(err, errlen, "QMP %s: cannot encode the command", cmd);
			return -ENOMEM;
		}
		ret = ftb_write_full(q->qmp, text, strlen(text));
		if (!ret)
			ret = ftb_write_full(q->qmp, "\n", 1);
		free(text);
		if (ret) {
			json_decref(args);
			return dead(q, ret, what, err, errlen);
		}
	}
	json_decref(args);
	for (;;) {
		json_t *obj = NULL, *v;

		ret = qmp_next(q, &obj, end);
		if (ret)
			return dead(q, ret, what, err, errlen);
		if (json_object_get(obj, "event")) {
			json_array_append_new(q->events, obj);
			continue;
		}
		if (!cmd) {	/* the greeting */
			if (!json_object_get(obj, "QMP")) {
				json_decref(obj);
				snprintf(err, errlen, "QEMU (%s): no QMP greeting", q->name);
				return -EPROTO;
			}
			if (ret_out)
				*ret_out = obj;
			else
				json_decref(obj);
			return 0;
		}
		v = json_object_get(obj, "id");
		if (!json_is_integer(v) || (unsigned)json_integer_value(v) != id) {
			json_decref(obj);	/* a late reply to a command that timed out */
			continue;
		}
		if ((v = json_object_get(obj, "error"))) {
			snprintf(err, errlen, "QMP %s (%s): %s", cmd, q->name,
				 json_string_value(json_object_get(v, "desc")) ?: "error");
			json_decref(obj);
			return -EIO;
		}
		if (ret_out) {
			*ret_out = json_incref(json_object_get(obj, "return"));
		}
		json_decref(obj);
		return 0;
	}
}

int ftb_qmp_event(struct ftb_qemu *q, json_t **ev, int timeout_ms, char *err, size_t errlen)
{
	uint64_t end = ftb_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;

	*ev = NULL;
	for (;;) {
		json_t *obj = NULL;
		int ret;

		if (json_array_size(q->events)) {
			*ev = json_incref(json_array_get(q->events, 0));
			json_array_remove(q->events, 0);
			return 0;
		}
		ret = qmp_next(q, &obj, end);
		if (ret == -ETIMEDOUT)
			return ret;
		if (ret)
			return dead(q, ret, "sending events", err, errlen);
		if (json_object_get(obj, "event"))
			json_array_append_new(q->events, obj);
		else
			json_decref(obj);	/* a late reply */
	}
}

int64_t ftb_qmp_event_time_us(const json_t *ev)
{
	const json_t *ts = json_object_get(ev, "timestamp");

	return (int64_t)json_integer_value(json_object_get(ts, "seconds")) * 1000000 +
	       (int64_t)json_integer_value(json_object_get(ts, "microseconds"));
}

int ftb_qemu_line(struct ftb_qemu *q, const char *prefix, char *line, size_t len, int timeout_ms,
		  char *err, size_t errlen)
{
	uint64_t end = ftb_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	char what[80];

	snprintf(what, sizeof(what), "the guest printed no '%s' line", prefix);
	for (;;) {
		char *nl = memchr(q->sbuf, '\n', q->slen);
		ssize_t n;
		int ret;

		if (nl) {
			size_t l = (size_t)(nl - q->sbuf);
			bool want = !strncmp(q->sbuf, prefix, strlen(prefix));
			bool exc = !strncmp(q->sbuf, "FTBG EXCEPTION", 14);

			if (want || exc)
				snprintf(line, len, "%.*s", (int)l, q->sbuf);
			memmove(q->sbuf, q->sbuf + l + 1, q->slen - l - 1);
			q->slen -= l + 1;
			if (exc) {
				snprintf(err, errlen, "QEMU (%s): the guest stopped: %s", q->name,
					 line);
				return -EFAULT;
			}
			if (want)
				return 0;
			continue;
		}
		if (q->slen == SER_BUF)
			q->slen = 0;	/* not our guest's output: drop it */
		ret = wait_readable(q, q->ser_out, end);
		if (ret)
			return dead(q, ret, ret == -ETIMEDOUT ? what : "printing", err, errlen);
		n = read(q->ser_out, q->sbuf + q->slen, SER_BUF - q->slen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return dead(q, n < 0 ? -errno : -EPIPE, "printing", err, errlen);
		q->slen += (size_t)n;
	}
}

int ftb_qemu_send(struct ftb_qemu *q, char c)
{
	return write(q->ser_in, &c, 1) == 1 ? 0 : -errno;
}
