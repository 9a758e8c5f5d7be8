// SPDX-License-Identifier: MIT
/*
 * ftr-resume-client: a resuming workload for the integration tests.
 *
 *   ftr-resume-client --sock PATH --mode shared|anon|firecracker
 *                     [--size SIZE] [--writes N] [--expect-k K]
 *
 * Connects to a promoted standby's resume socket, maps the committed image,
 * reads the synthetic workload's control page (k), checks the image against
 * the oracle, continues the workload for N writes and checks it again.
 * Prints "resumed-k K", "final-k K" and "oracle ok" lines; exits 1 on any
 * failure.
 *
 * --mode firecracker speaks Firecracker's snapshot-restore handshake byte
 * for byte: it creates its own uffd (UFFDIO_API, no features), maps
 * anonymous guest memory, registers it MISSING, and sends one message with
 * a JSON array of GuestRegionUffdMapping objects
 *   [{"base_host_virt_addr":A,"size":S,"offset":0,"page_size":4096,"page_size_kib":4}]
 * and the uffd as SCM_RIGHTS ancillary data. It never sends anything else.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <ftrepl/ftrepl.h>
#include <ftrepl/resume.h>
#include <ftrepl/synth.h>

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ftr-resume-client: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* The Firecracker side of the handshake. Returns the guest memory. */
static void *firecracker_handshake(const char *path, uint64_t size, int *sock_out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	char json[256], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	void *mem;
	int uffd, sock;

	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (mem == MAP_FAILED)
		die("mmap guest memory: %s", strerror(errno));
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api))
		die("userfaultfd: %s", strerror(errno));
	reg.range.start = (uintptr_t)mem;
	reg.range.len = size;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER: %s", strerror(errno));

	snprintf(json, sizeof(json),
		 "[{\"base_host_virt_addr\":%" PRIu64 ",\"size\":%" PRIu64
		 ",\"offset\":0,\"page_size\":4096,\"page_size_kib\":4}]",
		 (uint64_t)(uintptr_t)mem, size);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect %s: %s", path, strerror(errno));
	iov.iov_base = json;
	iov.iov_len = strlen(json);
	memset(cbuf, 0, sizeof(cbuf));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &uffd, sizeof(int));
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t)iov.iov_len)
		die("sendmsg: %s", strerror(errno));
	/* Firecracker keeps its uffd (and the memory) for the VM's life. */
	*sock_out = sock;
	return mem;
}

static void check(const void *base, uint64_t size, const struct ftr_synth_spec *spec,
		  const char *when)
{
	struct ftr_synth_verdict v;
	int ret = ftr_synth_verify(base, size, spec, &v);

	if (ret)
		die("oracle %s: %s", when, strerror(-ret));
	if (!v.ok)
		die("oracle %s: FAILED: %s", when, v.msg);
	printf("oracle ok %s: %s\n", when, v.msg);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "sock", required_argument, NULL, 's' },
		{ "mode", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 'z' },
		{ "writes", required_argument, NULL, 'w' },
		{ "expect-k", required_argument, NULL, 'k' },
		{ "touch-slowly", no_argument, NULL, 't' },
		{ "at", required_argument, NULL, 'a' },
		{ 0 },
	};
	const char *sock = NULL, *mode = "shared";
	uint64_t size = 0, writes = 10000, expect_k = UINT64_MAX, k0;
	struct ftr_resumed *r = NULL;
	struct ftr_synth_spec spec;
	struct ftr_synth_gen g;
	char err[256];
	void *base;
	int opt, fcsock = -1;
	bool slowly = false;
	uint64_t at = 0;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			sock = optarg;
			break;
		case 'm':
			mode = optarg;
			break;
		case 'z':
			if (ftr_parse_size(optarg, &size))
				die("bad --size");
			break;
		case 'w':
			writes = strtoull(optarg, NULL, 0);
			break;
		case 'k':
			expect_k = strtoull(optarg, NULL, 0);
			break;
		case 't':
			slowly = true;
			break;
		case 'a':
			at = strtoull(optarg, NULL, 0);
			break;
		default:
			die("usage: ftr-resume-client --sock PATH --mode shared|anon|firecracker");
		}
	}
	if (!sock)
		die("--sock is required");
	setvbuf(stdout, NULL, _IOLBF, 0); /* the tests watch the lines as they come */

	if (!strcmp(mode, "firecracker")) {
		if (!size)
			die("--mode firecracker needs --size (the guest memory size)");
		base = firecracker_handshake(sock, size, &fcsock);
	} else {
		struct ftr_resume_opts o = {
			.mode = !strcmp(mode, "anon") ? FTR_RESUME_ANON : FTR_RESUME_SHARED,
		};

		if (strcmp(mode, "anon") && strcmp(mode, "shared"))
			die("unknown mode %s", mode);
		o.no_background = slowly;
		o.addrs[0] = at;
		if (ftr_resume_connect(sock, &o, &r, err, sizeof(err)))
			die("%s", err);
		if (slowly) {
			/* Liveness: fault one page every millisecond, forever. When
			 * the server goes away the library must end this process
			 * with SIGBUS, never leave it hanging in a fault. */
			volatile uint8_t *m = r->regions[0].base;

			printf("touching\n");
			for (uint64_t i = 0;; i = (i + 1) % (r->regions[0].size / 4096)) {
				(void)m[i * 4096];
				usleep(1000);
			}
		}
		base = r->regions[0].base;
		size = r->regions[0].size;
		if (at && (uint64_t)(uintptr_t)base != at)
			die("region mapped at %p, asked for 0x%" PRIx64, base, at);
		printf("epoch %" PRIu64 "\n", r->epoch);
	}
	/* First touch: the control page, served through the fault server. */
	if (ftr_synth_spec_from_image(base, size, &spec, &k0))
		die("the resumed image has no synthetic control page");
	if (r)
		ftr_resume_started(r);
	printf("resumed-k %" PRIu64 "\n", k0);
	if (expect_k != UINT64_MAX && k0 < expect_k)
		die("resumed at k=%" PRIu64 ", older than the expected %" PRIu64, k0, expect_k);
	check(base, size, &spec, "at resume");
	ftr_synth_gen_seek(&g, &spec, k0);
	for (uint64_t i = 0; i < writes; i++)
		ftr_synth_write(&g, base);
	check(base, size, &spec, "after more writes");
	printf("final-k %" PRIu64 "\n", g.k);
	if (r) {
		if (ftr_resume_wait_resident(r, 30000))
			die("not every page became resident within 30 s");
		ftr_resume_close(r);
	} else {
		close(fcsock);
	}
	fflush(stdout);
	return 0;
}
