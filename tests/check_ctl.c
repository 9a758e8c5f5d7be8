/* SPDX-License-Identifier: MIT */
/*
 * The control socket: request/reply through ftr_ctl_request(), the error
 * replies for malformed input over a raw socket (and that the connection
 * survives them), binding rules (stale socket, regular file, live server,
 * long path, mode 0600), the client's errors and timeout, the client
 * limit, stalled and non-reading clients.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/ctlsock.h"
#include "testutil.h"

#define BIG_FIELD 60000

/* ---- the test handler ---------------------------------------------------- */

struct th {
	int calls;
};

static json_t *test_handler(void *arg, const char *cmd, json_t *req, char **errmsg)
{
	struct th *t = arg;

	t->calls++;
	if (!strcmp(cmd, "echo"))
		return json_pack("{s:s, s:O?}", "cmd", cmd, "x", json_object_get(req, "x"));
	if (!strcmp(cmd, "count"))
		return json_pack("{s:i}", "count", t->calls);
	if (!strcmp(cmd, "fail")) {
		*errmsg = ftr_ctl_errorf("failed: %d", 42);
		return NULL;
	}
	if (!strcmp(cmd, "fail_silently"))
		return NULL;
	if (!strcmp(cmd, "not_object"))
		return json_integer(7);
	if (!strcmp(cmd, "bad_utf8")) {
		*errmsg = ftr_ctl_errorf("bad \xff name");
		return NULL;
	}
	if (!strcmp(cmd, "sleep")) {
		usleep((useconds_t)json_integer_value(json_object_get(req, "ms")) * 1000);
		return json_object();
	}
	if (!strcmp(cmd, "big")) {
		char *s = malloc(BIG_FIELD + 1);
		json_t *r;

		memset(s, 'x', BIG_FIELD);
		s[BIG_FIELD] = '\0';
		r = json_pack("{s:s}", "data", s);
		free(s);
		return r;
	}
	*errmsg = ftr_ctl_errorf("unknown command \"%s\"", cmd);
	return NULL;
}

/* ---- fixture: a temp dir and a server in it ------------------------------ */

static char *dir;
static char sock[512];
static struct th th;

static void setup(void)
{
	dir = ftr_test_mkdtemp("check_ctl");
	snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
	memset(&th, 0, sizeof(th));
}

static void teardown(void)
{
	ftr_test_rmtree(dir);
	free(dir);
}

static struct ftr_ctl_server *start(void)
{
	struct ftr_ctl_server *srv = NULL;
	int ret = ftr_ctl_server_start(sock, test_handler, &th, &srv);

	ck_assert_msg(ret == 0, "server_start: %s", strerror(-ret));
	ck_assert_ptr_nonnull(srv);
	return srv;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- raw socket helpers -------------------------------------------------- */

static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 10 }; /* a broken server fails, not hangs */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_lt(strlen(path), sizeof(sa.sun_path));
	strcpy(sa.sun_path, path);
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %s",
		      strerror(errno));
	return fd;
}

static void raw_send(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		ck_assert_msg(n > 0, "send: %s", strerror(errno));
		buf += n;
		len -= (size_t)n;
	}
}

static void raw_sends(int fd, const char *s)
{
	raw_send(fd, s, strlen(s));
}

/* Reads one line (without '\n') into a malloc'ed string; NULL on EOF or
 * error. Byte by byte: slow, but leaves later lines in the socket. */
static char *raw_line(int fd)
{
	size_t len = 0, cap = 256;
	char *buf = malloc(cap);
	char ch;

	ck_assert_ptr_nonnull(buf);
	for (;;) {
		ssize_t n = recv(fd, &ch, 1, 0);

		if (n <= 0) {
			free(buf);
			return NULL;
		}
		if (ch == '\n')
			break;
		if (len + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		buf[len++] = ch;
	}
	buf[len] = '\0';
	return buf;
}

/* Reads one reply line and parses it as an object. */
static json_t *raw_reply(int fd)
{
	char *line = raw_line(fd);
	json_error_t jerr;
	json_t *rep;

	ck_assert_msg(line != NULL, "no reply line");
	rep = json_loads(line, 0, &jerr);
	ck_assert_msg(json_is_object(rep), "reply is not an object: %s", line);
	free(line);
	return rep;
}

/* True once the server has closed fd (EOF or reset). */
static bool raw_eof(int fd)
{
	char buf[4096];
	ssize_t n;

	do
		n = recv(fd, buf, sizeof(buf), 0);
	while (n > 0);
	return n == 0 || errno == ECONNRESET;
}

static const char *err_of(json_t *rep)
{
	ck_assert(json_is_false(json_object_get(rep, "ok")));
	ck_assert(json_is_string(json_object_get(rep, "error")));
	return json_string_value(json_object_get(rep, "error"));
}

static void assert_error(json_t *rep, const char *want)
{
	ck_assert_str_eq(err_of(rep), want);
	json_decref(rep);
}

static json_t *request(const char *json)
{
	json_t *req = json_loads(json, 0, NULL), *rep = NULL;
	int ret;

	ck_assert_ptr_nonnull(req);
	ret = ftr_ctl_request(sock, req, 5000, &rep);
	json_decref(req);
	ck_assert_msg(ret == 0, "request %s: %s", json, strerror(-ret));
	ck_assert(json_is_object(rep));
	return rep;
}

/* A socket file nobody listens on, as a crashed daemon leaves behind. */
static void make_stale_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	strcpy(sa.sun_path, path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
}

/* ---- request / reply ----------------------------------------------------- */

START_TEST(test_roundtrip)
{
	struct ftr_ctl_server *srv = start();
	json_t *rep = request("{\"cmd\":\"echo\",\"x\":[1,\"two\"]}");
	char *line;
	int fd;

	ck_assert(json_is_true(json_object_get(rep, "ok")));
	ck_assert_str_eq(json_string_value(json_object_get(rep, "cmd")), "echo");
	ck_assert_int_eq(json_array_size(json_object_get(rep, "x")), 2);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(rep, "x"), 1)), "two");
	json_decref(rep);
	ck_assert_int_eq(th.calls, 1);

	/* The wire form: one compact line, "ok" first. */
	fd = raw_connect(sock);
	raw_sends(fd, "{\"cmd\":\"echo\",\"x\":1}\n");
	line = raw_line(fd);
	ck_assert_ptr_nonnull(line);
	ck_assert_str_eq(line, "{\"ok\":true,\"cmd\":\"echo\",\"x\":1}");
	free(line);
	close(fd);
	ftr_ctl_server_stop(srv);
}
END_TEST

START_TEST(test_handler_errors)
{
	struct ftr_ctl_server *srv = start();

	assert_error(request("{\"cmd\":\"fail\"}"), "failed: 42");
	assert_error(request("{\"cmd\":\"fail_silently\"}"), "internal error");
	assert_error(request("{\"cmd\":\"not_object\"}"), "internal error");
	assert_error(request("{\"cmd\":\"nope\"}"), "unknown command \"nope\"");
	/* A message that is not UTF-8 still arrives, with the byte replaced. */
	assert_error(request("{\"cmd\":\"bad_utf8\"}"), "bad ? name");
	ftr_ctl_server_stop(srv);
}
END_TEST

START_TEST(test_errorf)
{
	char *s = ftr_ctl_errorf("%s=%d", "x", 12);

	ck_assert_str_eq(s, "x=12");
	free(s);
}
END_TEST

/* ---- malformed requests: specific errors, connection stays usable -------- */

START_TEST(test_malformed)
{
	struct ftr_ctl_server *srv = start();
	int fd = raw_connect(sock);
	json_t *rep;
	const char *e;

	raw_sends(fd, "this is not json\n");
	rep = raw_reply(fd);
	e = err_of(rep);
	ck_assert_msg(!strncmp(e, "invalid JSON: ", 14), "got \"%s\"", e);
	ck_assert_msg(strstr(e, "(line 1 column "), "got \"%s\"", e);
	json_decref(rep);

	raw_sends(fd, "{\"cmd\":\n");
	rep = raw_reply(fd);
	ck_assert(!strncmp(err_of(rep), "invalid JSON: ", 14));
	json_decref(rep);

	raw_sends(fd, "[1,2]\n");
	assert_error(raw_reply(fd), "request must be a JSON object");
	raw_sends(fd, "42\n");
	assert_error(raw_reply(fd), "request must be a JSON object");
	raw_sends(fd, "\"status\"\n");
	assert_error(raw_reply(fd), "request must be a JSON object");

	raw_sends(fd, "{\"x\":1}\n");
	assert_error(raw_reply(fd), "request needs a \"cmd\" string");
	raw_sends(fd, "{\"cmd\":5}\n");
	assert_error(raw_reply(fd), "request needs a \"cmd\" string");
	raw_sends(fd, "{\"cmd\":null}\n");
	assert_error(raw_reply(fd), "request needs a \"cmd\" string");

	/* Still the same connection, still served. */
	raw_sends(fd, "{\"cmd\":\"count\"}\n");
	rep = raw_reply(fd);
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	ck_assert_int_eq(json_integer_value(json_object_get(rep, "count")), 1);
	json_decref(rep);
	close(fd);
	ftr_ctl_server_stop(srv);
}
END_TEST

START_TEST(test_line_too_long)
{
	struct ftr_ctl_server *srv = start();
	size_t len = 70000;
	char *big = malloc(len + 1);
	int fd = raw_connect(sock);
	json_t *rep;

	memset(big, 'a', len);
	big[len] = '\n';
	/* The server may hang up before taking all of it: no asserts here. */
	if (send(fd, big, len + 1, MSG_NOSIGNAL) < 0)
		ck_assert_int_eq(errno, EPIPE);
	free(big);
	rep = raw_reply(fd);
	assert_error(rep, "request line longer than 65536 bytes");
	ck_assert(raw_eof(fd));
	close(fd);

	/* The server itself carries on. */
	rep = request("{\"cmd\":\"echo\"}");
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	ftr_ctl_server_stop(srv);
}
END_TEST

/* A line of exactly FTR_CTL_MAX_LINE bytes is still accepted. */
START_TEST(test_line_at_limit)
{
	struct ftr_ctl_server *srv = start();
	const char *head = "{\"cmd\":\"echo\",\"x\":\"";
	size_t len = FTR_CTL_MAX_LINE, pad = len - strlen(head) - 2;
	char *line = malloc(len + 1);
	int fd = raw_connect(sock);
	json_t *rep;

	memcpy(line, head, strlen(head));
	memset(line + strlen(head), 'y', pad);
	memcpy(line + strlen(head) + pad, "\"}\n", 3);
	raw_send(fd, line, len + 1);
	free(line);
	rep = raw_reply(fd);
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	ck_assert_uint_eq(json_string_length(json_object_get(rep, "x")), pad);
	json_decref(rep);
	close(fd);
	ftr_ctl_server_stop(srv);
}
END_TEST

START_TEST(test_several_per_connection)
{
	struct ftr_ctl_server *srv = start();
	int fd = raw_connect(sock);
	json_t *rep;

	/* Three requests in one write, answered in order. */
	raw_sends(fd, "{\"cmd\":\"count\"}\n{\"cmd\":\"count\"}\n{\"cmd\":\"count\"}\n");
	for (int i = 1; i <= 3; i++) {
		rep = raw_reply(fd);
		ck_assert_int_eq(json_integer_value(json_object_get(rep, "count")), i);
		json_decref(rep);
	}
	/* One request split over several writes. */
	raw_sends(fd, "{\"cmd\":");
	usleep(50 * 1000);
	raw_sends(fd, "\"count\"");
	usleep(50 * 1000);
	raw_sends(fd, "}\n{\"cmd\":\"count\"}");
	rep = raw_reply(fd);
	ck_assert_int_eq(json_integer_value(json_object_get(rep, "count")), 4);
	json_decref(rep);
	raw_sends(fd, "\n");
	rep = raw_reply(fd);
	ck_assert_int_eq(json_integer_value(json_object_get(rep, "count")), 5);
	json_decref(rep);
	close(fd);
	ftr_ctl_server_stop(srv);
}
END_TEST

/* ---- binding ------------------------------------------------------------- */

START_TEST(test_stale_socket_replaced)
{
	struct ftr_ctl_server *srv;
	json_t *rep;
	struct stat st;

	make_stale_socket(sock);
	ck_assert_int_eq(lstat(sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	srv = start();
	rep = request("{\"cmd\":\"echo\"}");
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	ftr_ctl_server_stop(srv);
}
END_TEST

START_TEST(test_regular_file_kept)
{
	struct ftr_ctl_server *srv = NULL;
	FILE *f = fopen(sock, "w");
	struct stat st;

	ck_assert_ptr_nonnull(f);
	fputs("precious", f);
	fclose(f);
	ck_assert_int_eq(ftr_ctl_server_start(sock, test_handler, &th, &srv), -EEXIST);
	ck_assert_ptr_null(srv);
	ck_assert_int_eq(lstat(sock, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_size, 8);
}
END_TEST

START_TEST(test_live_server_kept)
{
	struct ftr_ctl_server *srv = start(), *other = NULL;
	json_t *rep;

	ck_assert_int_eq(ftr_ctl_server_start(sock, test_handler, &th, &other), -EADDRINUSE);
	ck_assert_ptr_null(other);
	rep = request("{\"cmd\":\"count\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(rep, "count")), 1);
	json_decref(rep);
	ftr_ctl_server_stop(srv);
}
END_TEST

START_TEST(test_path_too_long)
{
	struct ftr_ctl_server *srv = NULL;
	char path[300];
	json_t *req = json_pack("{s:s}", "cmd", "echo"), *rep = NULL;

	memset(path, 0, sizeof(path));
	snprintf(path, sizeof(path), "%s/", dir);
	memset(path + strlen(path), 'p', sizeof(path) - strlen(path) - 1);
	ck_assert_int_eq(ftr_ctl_server_start(path, test_handler, &th, &srv), -ENAMETOOLONG);
	ck_assert_ptr_null(srv);
	ck_assert_int_eq(ftr_ctl_request(path, req, 1000, &rep), -ENAMETOOLONG);
	ck_assert_ptr_null(rep);
	json_decref(req);
}
END_TEST

START_TEST(test_mode_0600)
{
	struct ftr_ctl_server *srv;
	struct stat st;

	umask(0); /* the server must not depend on the caller's umask */
	srv = start();
	ck_assert_int_eq(lstat(sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	ftr_ctl_server_stop(srv);
}
END_TEST

START_TEST(test_stop_unlinks)
{
	struct ftr_ctl_server *srv = start();
	struct stat st;
	int fd = raw_connect(sock);

	ck_assert_int_eq(lstat(sock, &st), 0);
	ftr_ctl_server_stop(srv); /* with a client still connected */
	ck_assert_int_eq(lstat(sock, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert(raw_eof(fd));
	close(fd);
	ftr_ctl_server_stop(NULL);

	/* The path can be served again right away. */
	srv = start();
	ftr_ctl_server_stop(srv);
}
END_TEST

/* ---- client errors ------------------------------------------------------- */

START_TEST(test_client_no_server)
{
	json_t *req = json_pack("{s:s}", "cmd", "echo"), *rep = NULL;
	char path[600];

	snprintf(path, sizeof(path), "%s/missing.sock", dir);
	ck_assert_int_eq(ftr_ctl_request(path, req, 1000, &rep), -ENOENT);
	ck_assert_ptr_null(rep);
	make_stale_socket(sock);
	ck_assert_int_eq(ftr_ctl_request(sock, req, 1000, &rep), -ECONNREFUSED);
	ck_assert_ptr_null(rep);
	json_decref(req);
}
END_TEST

START_TEST(test_client_timeout)
{
	struct ftr_ctl_server *srv = start();
	json_t *req = json_pack("{s:s, s:i}", "cmd", "sleep", "ms", 700), *rep = NULL;
	uint64_t t0 = now_ms(), dt;

	ck_assert_int_eq(ftr_ctl_request(sock, req, 200, &rep), -ETIMEDOUT);
	dt = now_ms() - t0;
	ck_assert_ptr_null(rep);
	ck_assert_msg(dt >= 190 && dt < 600, "timed out after %llu ms", (unsigned long long)dt);
	json_decref(req);

	/* The server answers the next client once the handler is done. */
	rep = request("{\"cmd\":\"count\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(rep, "count")), 2);
	json_decref(rep);
	ftr_ctl_server_stop(srv);
}
END_TEST

/* A fake server that reads one request line, answers with text that is
 * not a JSON object line, and hangs up. No ck_assert in this thread. */
struct fake_server {
	int lfd;
	const char *answer;
	int result; /* 0 when it did its part */
};

static void *fake_server(void *arg)
{
	struct fake_server *f = arg;
	int fd = accept(f->lfd, NULL, NULL);
	char ch = 0;

	f->result = -1;
	if (fd < 0)
		return NULL;
	while (ch != '\n' && recv(fd, &ch, 1, 0) == 1)
		;
	if (ch == '\n' && write(fd, f->answer, strlen(f->answer)) == (ssize_t)strlen(f->answer))
		f->result = 0;
	close(fd);
	return NULL;
}

START_TEST(test_client_bad_reply)
{
	static const char *const bad[] = { "[1]\n", "nonsense\n", "{\"ok\":true}" /* no \n */ };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_t *req = json_pack("{s:s}", "cmd", "x"), *rep = NULL;
	struct fake_server f = { .lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) };
	pthread_t t;

	strcpy(sa.sun_path, sock);
	ck_assert_int_eq(bind(f.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(f.lfd, 4), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f.answer = bad[i];
		ck_assert_int_eq(pthread_create(&t, NULL, fake_server, &f), 0);
		ck_assert_int_eq(ftr_ctl_request(sock, req, 2000, &rep), -EPROTO);
		ck_assert_ptr_null(rep);
		ck_assert_int_eq(pthread_join(t, NULL), 0);
		ck_assert_int_eq(f.result, 0);
	}
	close(f.lfd);
	json_decref(req);
}
END_TEST

/* ---- limits -------------------------------------------------------------- */

START_TEST(test_too_many_clients)
{
	struct ftr_ctl_server *srv = start();
	int fds[FTR_CTL_MAX_CLIENTS], extra;
	json_t *rep;

	for (int i = 0; i < FTR_CTL_MAX_CLIENTS; i++) {
		fds[i] = raw_connect(sock);
		raw_sends(fds[i], "{\"cmd\":\"echo\"}\n");
		rep = raw_reply(fds[i]);
		ck_assert(json_is_true(json_object_get(rep, "ok")));
		json_decref(rep);
	}
	extra = raw_connect(sock);
	assert_error(raw_reply(extra), "too many control clients");
	ck_assert(raw_eof(extra));
	close(extra);

	/* The 16 are still served; once one leaves there is room again. */
	raw_sends(fds[5], "{\"cmd\":\"echo\"}\n");
	rep = raw_reply(fds[5]);
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	close(fds[0]);
	usleep(100 * 1000);
	extra = raw_connect(sock);
	raw_sends(extra, "{\"cmd\":\"echo\"}\n");
	rep = raw_reply(extra);
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	close(extra);
	for (int i = 1; i < FTR_CTL_MAX_CLIENTS; i++)
		close(fds[i]);
	ftr_ctl_server_stop(srv);
}
END_TEST

START_TEST(test_stalled_client_dropped)
{
	struct ftr_ctl_server *srv = start();
	int fd = raw_connect(sock), idle = raw_connect(sock);
	uint64_t t0 = now_ms(), dt;
	json_t *rep;

	raw_sends(fd, "{\"cmd\":\"ec");
	/* Meanwhile the server keeps answering others. */
	rep = request("{\"cmd\":\"echo\"}");
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	ck_assert(raw_eof(fd));
	dt = now_ms() - t0;
	ck_assert_msg(dt >= FTR_CTL_STALL_MS - 100 && dt < FTR_CTL_STALL_MS + 2000,
		      "dropped after %llu ms", (unsigned long long)dt);
	close(fd);

	/* A client idle between requests (no partial line) is not dropped. */
	raw_sends(idle, "{\"cmd\":\"echo\"}\n");
	rep = raw_reply(idle);
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	close(idle);
	ftr_ctl_server_stop(srv);
}
END_TEST

/* A line finished while a slow handler keeps the server busy past the
 * stall limit is still answered: the client was not idle, the server was. */
START_TEST(test_busy_server_no_false_stall)
{
	struct ftr_ctl_server *srv = start();
	int slow = raw_connect(sock), b = raw_connect(sock);
	json_t *rep;
	char req[64];

	raw_sends(b, "{\"cmd\":\"co");
	usleep(100 * 1000);
	snprintf(req, sizeof(req), "{\"cmd\":\"sleep\",\"ms\":%d}\n", FTR_CTL_STALL_MS + 500);
	raw_sends(slow, req);
	usleep(100 * 1000);
	raw_sends(b, "unt\"}\n");
	rep = raw_reply(slow);
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	rep = raw_reply(b);
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	ck_assert_int_eq(json_integer_value(json_object_get(rep, "count")), 2);
	json_decref(rep);
	close(slow);
	close(b);
	ftr_ctl_server_stop(srv);
}
END_TEST

/* A client that sends requests and never reads the replies must not hold
 * up the server: it is dropped once a reply cannot be delivered. */
START_TEST(test_non_reading_client_dropped)
{
	struct ftr_ctl_server *srv = start();
	int fd = raw_connect(sock), replies = 0;
	uint64_t t0;
	json_t *rep;
	char *line;

	for (int i = 0; i < 200; i++)
		raw_sends(fd, "{\"cmd\":\"big\"}\n");
	usleep(200 * 1000);
	t0 = now_ms();
	rep = request("{\"cmd\":\"echo\"}");
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	ck_assert_msg(now_ms() - t0 < 4000, "server was held up %llu ms",
		      (unsigned long long)(now_ms() - t0));
	while ((line = raw_line(fd))) {
		replies++;
		free(line);
	}
	ck_assert_int_gt(replies, 0);
	ck_assert_int_lt(replies, 200);
	close(fd);
	ftr_ctl_server_stop(srv);
}
END_TEST

static Suite *ctl_suite(void)
{
	Suite *su = suite_create("ctl");
	TCase *tc;

	tc = tcase_create("protocol");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_handler_errors);
	tcase_add_test(tc, test_errorf);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_line_too_long);
	tcase_add_test(tc, test_line_at_limit);
	tcase_add_test(tc, test_several_per_connection);
	suite_add_tcase(su, tc);

	tc = tcase_create("bind");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_stale_socket_replaced);
	tcase_add_test(tc, test_regular_file_kept);
	tcase_add_test(tc, test_live_server_kept);
	tcase_add_test(tc, test_path_too_long);
	tcase_add_test(tc, test_mode_0600);
	tcase_add_test(tc, test_stop_unlinks);
	suite_add_tcase(su, tc);

	tc = tcase_create("client");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_client_no_server);
	tcase_add_test(tc, test_client_timeout);
	tcase_add_test(tc, test_client_bad_reply);
	suite_add_tcase(su, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_too_many_clients);
	tcase_add_test(tc, test_stalled_client_dropped);
	tcase_add_test(tc, test_busy_server_no_false_stall);
	tcase_add_test(tc, test_non_reading_client_dropped);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(ctl_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
