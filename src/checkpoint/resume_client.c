// SPDX-License-Identifier: MIT
/*
 * The resuming side of failover (include/ftrepl/resume.h): maps the
 * committed image into this process and has the standby serve its faults.
 *
 * The uffd and the socket stay open for the life of the mapping. A monitor
 * thread watches the socket: if the server goes away while faults may
 * still need it, the process must not go on with memory it cannot trust,
 * so on_lost runs (default: SIGBUS to the process).
 */
#define FTR_LOG_PREFIX "resume"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include <ftrepl/resume.h>

#include "common/common.h"
#include "uffd/uffd_io.h"

#define RC_MAX_REPLY (256 * 1024)

struct rc_state {
	struct ftr_resumed pub;	/* first: the handle given out */
	struct ftr_resume_opts o;
	int sock;
	int uffd;
	int memfd;
	int stop_fd;
	pthread_t mon;
	bool mon_started;
	pthread_mutex_t req_lock; /* one request at a time on the socket */
	atomic_bool closing;
	atomic_bool in_request;
};

static int send_line(int sock, json_t *req, int fd)
{
	char *text = json_dumps(req, JSON_COMPACT);
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov[2];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	size_t total;
	ssize_t r;

	if (!text)
		return -ENOMEM;
	iov[0] = (struct iovec){ text, strlen(text) };
	iov[1] = (struct iovec){ (void *)"\n", 1 };
	total = iov[0].iov_len + 1;
	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	do
		r = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	free(text);
	if (r < 0)
		return -errno;
	/* Requests are small: a short send on a unix stream socket would mean
	 * the peer is gone or the buffer is full; treat it as an error. */
	return (size_t)r == total ? 0 : -EIO;
}

/* Reads one reply line (and an fd passed with it). */
static int recv_reply(int sock, int timeout_ms, json_t **out, int *fd)
{
	char *buf = malloc(RC_MAX_REPLY);
	uint64_t end = ftr_now_ms() + (uint64_t)timeout_ms;
	size_t len = 0;
	int ret = -ETIMEDOUT;

	if (fd)
		*fd = -1;
	if (!buf)
		return -ENOMEM;
	while (ftr_now_ms() < end) {
		struct pollfd pfd = { .fd = sock, .events = POLLIN };
		char cbuf[CMSG_SPACE(sizeof(int) * 2)];
		struct iovec iov = { buf + len, RC_MAX_REPLY - 1 - len };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
		};
		ssize_t r;

		if (poll(&pfd, 1, (int)(end - ftr_now_ms())) <= 0)
			continue;
		r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0) {
			ret = r ? -errno : -ECONNRESET;
			break;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				int f;

				memcpy(&f, CMSG_DATA(cm), sizeof(int));
				if (fd && *fd < 0)
					*fd = f;
				else
					close(f);
			}
		}
		len += (size_t)r;
		if (memchr(buf, '\n', len)) {
			json_t *j = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, NULL);

			ret = json_is_object(j) ? 0 : -EPROTO;
			if (ret)
				json_decref(j);
			else
				*out = j;
			break;
		}
		if (len >= RC_MAX_REPLY - 1) {
			ret = -EMSGSIZE;
			break;
		}
	}
	free(buf);
	if (ret && fd && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	return ret;
}

/* One request/reply. On {"ok":false} returns -EREMOTEIO with the error in
 * err. */
static int request(struct rc_state *s, json_t *req, int send_fd, json_t **rep, int *recv_fd,
		   char *err, size_t errlen)
{
	json_t *r = NULL;
	int ret;

	pthread_mutex_lock(&s->req_lock);
	atomic_store(&s->in_request, true);
	ret = send_line(s->sock, req, send_fd);
	if (!ret)
		ret = recv_reply(s->sock, s->o.timeout_ms, &r, recv_fd);
	atomic_store(&s->in_request, false);
	pthread_mutex_unlock(&s->req_lock);
	json_decref(req);
	if (ret) {
		snprintf(err, errlen, "resume socket: %s", strerror(-ret));
		return ret;
	}
	if (!json_is_true(json_object_get(r, "ok"))) {
		snprintf(err, errlen, "standby: %s",
			 json_string_value(json_object_get(r, "error")) ?: "request refused");
		json_decref(r);
		if (recv_fd && *recv_fd >= 0)
			close(*recv_fd), *recv_fd = -1;
		return -EREMOTEIO;
	}
	if (rep)
		*rep = r;
	else
		json_decref(r);
	return 0;
}

static void *monitor_main(void *arg)
{
	struct rc_state *s = arg;

	ftr_thread_name("ftr-rc-monitor");

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = s->sock, .events = POLLRDHUP },
			{ .fd = s->stop_fd, .events = POLLIN },
		};

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			return NULL;
		if (pfd[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
			if (atomic_load(&s->closing))
				return NULL;
			fprintf(stderr, "ftrepl: the resume server went away while this process "
					"depends on it for its memory\n");
			if (s->o.on_lost)
				s->o.on_lost(s->o.arg);
			else
				kill(getpid(), SIGBUS);
			return NULL;
		}
	}
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int parse_layout(struct rc_state *s, json_t *rep, char *err, size_t errlen)
{
	struct ftr_resumed *r = &s->pub;
	json_t *regs = json_object_get(rep, "regions"), *m;
	const char *blob = json_string_value(json_object_get(rep, "blob"));
	size_t i;

	r->epoch = (uint64_t)json_integer_value(json_object_get(rep, "epoch"));
	r->page_size = (uint32_t)json_integer_value(json_object_get(rep, "page_size"));
	if (r->page_size < 4096 || (r->page_size & (r->page_size - 1)) ||
	    !json_is_array(regs) || !json_array_size(regs) ||
	    json_array_size(regs) > FTR_WIRE_MAX_REGIONS) {
		snprintf(err, errlen, "standby sent a malformed layout");
		return -EPROTO;
	}
	json_array_foreach(regs, i, m) {
		json_int_t size = json_integer_value(json_object_get(m, "size"));

		if (size <= 0 || (uint64_t)size % r->page_size) {
			snprintf(err, errlen, "standby sent a malformed region %zu", i);
			return -EPROTO;
		}
		r->regions[i].size = (uint64_t)size;
		ftr_strlcpy(r->regions[i].name,
			    json_string_value(json_object_get(m, "name")) ?: "",
			    sizeof(r->regions[i].name));
	}
	r->nregions = (uint32_t)i;
	if (blob) {
		size_t n = strlen(blob) / 2;

		for (size_t b = 0; b < n && b < sizeof(r->blob); b++) {
			int hi = hexval(blob[2 * b]), lo = hexval(blob[2 * b + 1]);

			if (hi < 0 || lo < 0)
				break;
			r->blob[b] = (uint8_t)(hi << 4 | lo);
			r->blob_len = (uint32_t)(b + 1);
		}
	}
	return 0;
}

static void rc_unmap(struct rc_state *s)
{
	for (uint32_t i = 0; i < s->pub.nregions; i++) {
		if (s->pub.regions[i].base)
			munmap(s->pub.regions[i].base, s->pub.regions[i].size);
		s->pub.regions[i].base = NULL;
	}
}

static void rc_free(struct rc_state *s)
{
	uint64_t one = 1;

	atomic_store(&s->closing, true);
	if (s->mon_started) {
		if (write(s->stop_fd, &one, sizeof(one)) < 0) {
			/* already signalled */
		}
		pthread_join(s->mon, NULL);
	}
	if (s->sock >= 0)
		close(s->sock);
	rc_unmap(s);
	if (s->uffd >= 0)
		close(s->uffd);
	if (s->memfd >= 0)
		close(s->memfd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	pthread_mutex_destroy(&s->req_lock);
	free(s);
}

int ftr_resume_connect(const char *path, const struct ftr_resume_opts *o,
		       struct ftr_resumed **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ftr_resume_opts dflt = { 0 };
	bool shared;
	struct rc_state *s;
	json_t *rep = NULL, *regs;
	uint64_t features;
	int ret;

	if (!o)
		o = &dflt;
	shared = o->mode == FTR_RESUME_SHARED;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "resume socket path too long");
		return -ENAMETOOLONG;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *o;
	if (s->o.timeout_ms <= 0)
		s->o.timeout_ms = 10000;
	s->uffd = s->memfd = -1;
	pthread_mutex_init(&s->req_lock, NULL);
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	s->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	strcpy(sa.sun_path, path);
	if (s->stop_fd < 0 || s->sock < 0 || connect(s->sock, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(errno));
		goto fail;
	}

	ret = request(s, json_pack("{s:s, s:b}", "op", "layout", "shared", shared), -1, &rep,
		      shared ? &s->memfd : NULL, err, errlen);
	if (ret)
		goto fail;
	ret = parse_layout(s, rep, err, errlen);
	if (!ret && shared && s->memfd < 0) {
		snprintf(err, errlen, "standby did not pass its cache memfd");
		ret = -EPROTO;
	}
	if (ret)
		goto fail;

	/* Map every region: the cache itself (shared) or fresh anonymous
	 * memory (the server copies every page in). */
	regs = json_object_get(rep, "regions");
	for (uint32_t i = 0; i < s->pub.nregions; i++) {
		uint64_t off = (uint64_t)json_integer_value(json_object_get(json_array_get(regs, i),
									    "offset"));
		void *want = (void *)(uintptr_t)o->addrs[i];
		int fixed = want ? MAP_FIXED_NOREPLACE : 0;
		void *p = shared ? mmap(want, s->pub.regions[i].size, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | fixed, s->memfd, (off_t)off)
				 : mmap(want, s->pub.regions[i].size, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | fixed, -1, 0);

		if (p == MAP_FAILED) {
			ret = -errno;
			snprintf(err, errlen, "mapping region %u%s: %s", i,
				 want ? " at its original address" : "", strerror(errno));
			goto fail;
		}
		if (want && p != want) {
			/* Kernels before 4.17 ignore MAP_FIXED_NOREPLACE. */
			munmap(p, s->pub.regions[i].size);
			ret = -EEXIST;
			snprintf(err, errlen, "region %u: address %p is taken", i, want);
			goto fail;
		}
		s->pub.regions[i].base = p;
	}

	features = shared ? UFFD_FEATURE_MINOR_SHMEM : 0;
	ret = ftr_uffd_open(features, false, NULL, NULL, NULL);
	if (ret < 0) {
		snprintf(err, errlen, "userfaultfd with %s: %s",
			 shared ? "MINOR_SHMEM" : "no features", strerror(-ret));
		goto fail;
	}
	s->uffd = ret;
	for (uint32_t i = 0; i < s->pub.nregions; i++) {
		ret = ftr_uffd_register(s->uffd, s->pub.regions[i].base, s->pub.regions[i].size,
					shared ? UFFDIO_REGISTER_MODE_MINOR
					       : UFFDIO_REGISTER_MODE_MISSING, NULL);
		if (ret) {
			snprintf(err, errlen, "registering region %u (%s mode): %s", i,
				 shared ? "minor" : "missing", strerror(-ret));
			goto fail;
		}
	}

	json_t *ranges = json_array();

	for (uint32_t i = 0; i < s->pub.nregions; i++)
		json_array_append_new(ranges, json_pack("{s:I, s:I, s:I}", "id", (json_int_t)i,
							"addr",
							(json_int_t)(uintptr_t)s->pub.regions[i].base,
							"size", (json_int_t)s->pub.regions[i].size));
	ret = request(s, json_pack("{s:s, s:s, s:b, s:o}", "op", "serve", "mode",
				   shared ? "minor" : "missing", "background", !o->no_background,
				   "regions", ranges),
		      s->uffd, NULL, NULL, err, errlen);
	if (ret)
		goto fail;
	ret = -pthread_create(&s->mon, NULL, monitor_main, s);
	if (ret) {
		snprintf(err, errlen, "cannot start the monitor thread: %s", strerror(-ret));
		goto fail;
	}
	s->mon_started = true;
	json_decref(rep);
	*out = &s->pub;
	return 0;
fail:
	json_decref(rep);
	rc_free(s);
	return ret;
}

int ftr_resume_started(struct ftr_resumed *r)
{
	struct rc_state *s = (struct rc_state *)r;
	char err[128];

	return request(s, json_pack("{s:s}", "op", "started"), -1, NULL, NULL, err, sizeof(err));
}

int ftr_resume_wait_resident(struct ftr_resumed *r, int timeout_ms)
{
	struct rc_state *s = (struct rc_state *)r;
	int saved = s->o.timeout_ms;
	json_t *rep = NULL;
	char err[128];
	int ret;

	s->o.timeout_ms = timeout_ms + 5000;
	ret = request(s, json_pack("{s:s, s:i}", "op", "wait", "timeout_ms", timeout_ms), -1,
		      &rep, NULL, err, sizeof(err));
	s->o.timeout_ms = saved;
	if (ret)
		return ret;
	ret = json_is_true(json_object_get(rep, "resident")) ? 0 : -ETIMEDOUT;
	json_decref(rep);
	return ret;
}

void ftr_resume_close(struct ftr_resumed *r)
{
	struct rc_state *s = (struct rc_state *)r;
	char err[128];

	if (!r)
		return;
	atomic_store(&s->closing, true);
	/* Unmap first: nothing can fault any more, so the server may go. */
	rc_unmap(s);
	request(s, json_pack("{s:s}", "op", "bye"), -1, NULL, NULL, err, sizeof(err));
	rc_free(s);
}
