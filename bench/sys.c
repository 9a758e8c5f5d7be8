/* SPDX-License-Identifier: MIT */
/*
 * Child processes, external commands and the cleanup that must happen
 * however ftbench ends.
 *
 * Everything ftbench leaves on the machine is either a child process or a
 * named network namespace (the veth pair and its qdisc live inside the
 * namespaces and disappear with them). Both are registered here. A SIGINT,
 * SIGTERM or SIGHUP kills the children and removes the namespaces from the
 * signal handler itself, with async-signal-safe calls only (kill, umount2,
 * unlink), then dies of the same signal; exit() does the same from an
 * atexit handler and reaps the children. A SIGKILL cannot be caught: the
 * next ftbench removes what is left (ftb_link_clean_stale()), and the
 * children die with their parent (PR_SET_PDEATHSIG).
 *
 * The registry is process-wide state on purpose: a signal handler can reach
 * nothing else. Only the main process acts on it; a forked child that
 * inherits it resets its signal handlers and never calls exit().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ftrepl/checkpoint.h>

#include "ftbench.h"

#define MAX_CHILDREN 32
#define MAX_NETNS 4

static pid_t g_main_pid;
static volatile pid_t g_children[MAX_CHILDREN];
static char g_netns[MAX_NETNS][64];
static volatile sig_atomic_t g_netns_used[MAX_NETNS];

static const int g_fatal_signals[] = { SIGINT, SIGTERM, SIGHUP };

uint64_t ftb_clock_ns(int clockid)
{
	struct timespec ts;

	clock_gettime(clockid, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void *ftb_engine_main(void *arg)
{
	struct ftb_engine *e = arg;

	e->ret = ftr_primary_run(e->p);
	e->cpu_end_ns = ftb_clock_ns(CLOCK_THREAD_CPUTIME_ID);
	atomic_store(&e->done, true);
	return NULL;
}

uint64_t ftb_now_ns(void)
{
	return ftb_clock_ns(CLOCK_MONOTONIC);
}

int ftb_netns_remove(const char *path)
{
	/* What `ip netns del` does: the bind mount pins the namespace. */
	umount2(path, MNT_DETACH);
	if (unlink(path) && errno != ENOENT)
		return -errno;
	return 0;
}

/* Async-signal-safe. */
static void cleanup_now(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		pid_t pid = g_children[i];

		if (pid > 0)
			kill(pid, SIGKILL);
	}
	for (int i = 0; i < MAX_NETNS; i++)
		if (g_netns_used[i])
			ftb_netns_remove(g_netns[i]);
}

static void on_fatal_signal(int sig)
{
	int saved = errno;

	if (getpid() == g_main_pid) {
		static const char msg[] = "ftbench: interrupted: removing children and namespaces\n";

		cleanup_now();
		if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
			/* nothing to do about it */
		}
	}
	signal(sig, SIG_DFL);
	raise(sig);		/* delivered when the handler returns */
	errno = saved;
}

static void on_exit_cleanup(void)
{
	if (getpid() != g_main_pid)
		return;
	cleanup_now();
	for (int i = 0; i < MAX_CHILDREN; i++) {
		pid_t pid = g_children[i];

		if (pid > 0) {
			waitpid(pid, NULL, 0);
			g_children[i] = 0;
		}
	}
}

void ftb_cleanup_install(void)
{
	struct sigaction sa;

	g_main_pid = getpid();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(g_fatal_signals) / sizeof(g_fatal_signals[0]); i++)
		sigaddset(&sa.sa_mask, g_fatal_signals[i]);
	for (size_t i = 0; i < sizeof(g_fatal_signals) / sizeof(g_fatal_signals[0]); i++)
		sigaction(g_fatal_signals[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	atexit(on_exit_cleanup);
}

/* The namespace is registered before it exists, so that an interrupt
 * between `ip netns add` and the registration cannot leak it. */
void ftb_cleanup_add_netns(const char *path)
{
	for (int i = 0; i < MAX_NETNS; i++) {
		if (!g_netns_used[i]) {
			snprintf(g_netns[i], sizeof(g_netns[i]), "%s", path);
			g_netns_used[i] = 1;
			return;
		}
	}
}

void ftb_cleanup_del_netns(const char *path)
{
	for (int i = 0; i < MAX_NETNS; i++)
		if (g_netns_used[i] && !strcmp(g_netns[i], path))
			g_netns_used[i] = 0;
}

static void track(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (!g_children[i]) {
			g_children[i] = pid;
			return;
		}
	}
}

static void untrack(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (g_children[i] == pid)
			g_children[i] = 0;
}

pid_t ftb_fork(int ns_fd)
{
	pid_t parent = getpid(), pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		track(pid);
		return pid;
	}
	for (size_t i = 0; i < sizeof(g_fatal_signals) / sizeof(g_fatal_signals[0]); i++)
		signal(g_fatal_signals[i], SIG_DFL);
	for (int i = 0; i < MAX_CHILDREN; i++)
		g_children[i] = 0;
	for (int i = 0; i < MAX_NETNS; i++)
		g_netns_used[i] = 0;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
		_exit(1);
	if (ns_fd >= 0 && setns(ns_fd, CLONE_NEWNET)) {
		fprintf(stderr, "ftbench: setns: %s\n", strerror(errno));
		_exit(126);
	}
	return 0;
}

void ftb_kill(pid_t pid)
{
	if (pid > 0)
		kill(pid, SIGKILL);
}

int ftb_wait(pid_t pid, int timeout_ms)
{
	uint64_t end = ftb_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000ull;
	int status, ret = 0;

	for (;;) {
		pid_t r = waitpid(pid, &status, timeout_ms < 0 ? 0 : WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			ret = -errno;
			untrack(pid);
			return ret;
		}
		if (r == 0) {
			if (ftb_now_ns() >= end) {
				kill(pid, SIGKILL);
				waitpid(pid, &status, 0);
				ret = -ETIMEDOUT;
				break;
			}
			usleep(2000);
		}
	}
	untrack(pid);
	return ret ? ret : status;
}

int ftb_run_cmd(const char *const argv[], int ns_fd, char *out, size_t outlen,
		bool merge_stderr, int timeout_ms)
{
	uint64_t end = ftb_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	size_t n = 0;
	int pfd[2], status;
	pid_t pid;

	if (out && outlen)
		out[0] = '\0';
	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	pid = ftb_fork(ns_fd);
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return (int)pid;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, STDIN_FILENO);
		dup2(pfd[1], STDOUT_FILENO);
		dup2(merge_stderr ? pfd[1] : null, STDERR_FILENO);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		uint64_t now = ftb_now_ns();
		char sink[4096];
		ssize_t k;

		if (now >= end)
			break;
		if (poll(&p, 1, (int)((end - now) / 1000000ull) + 1) <= 0)
			continue;
		if (out && n + 1 < outlen)
			k = read(pfd[0], out + n, outlen - 1 - n);
		else
			k = read(pfd[0], sink, sizeof(sink));
		if (k <= 0) {
			if (k < 0 && errno == EINTR)
				continue;
			break;
		}
		if (out && n + 1 < outlen)
			n += (size_t)k;
	}
	if (out && outlen)
		out[n] = '\0';
	close(pfd[0]);
	{
		uint64_t now = ftb_now_ns();
		int left = now >= end ? 0 : (int)((end - now) / 1000000ull);

		status = ftb_wait(pid, left);
	}
	if (status < 0)
		return status;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int ftb_cmd(char *err, size_t errlen, const char *const argv[])
{
	char out[512], cmd[256] = "";
	size_t len = 0;
	int ret = ftb_run_cmd(argv, -1, out, sizeof(out), true, 20000);

	if (!ret)
		return 0;
	for (int i = 0; argv[i] && len < sizeof(cmd); i++)
		len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, "%s%s", i ? " " : "", argv[i]);
	out[strcspn(out, "\n")] = '\0';
	if (ret < 0)
		snprintf(err, errlen, "`%s`: %s", cmd, strerror(-ret));
	else if (ret == 127)
		snprintf(err, errlen, "`%s`: cannot run %s (is it installed?)", cmd, argv[0]);
	else
		snprintf(err, errlen, "`%s` failed (exit %d): %s", cmd, ret, out);
	return ret < 0 ? ret : -EIO;
}

bool ftb_have_program(const char *argv0)
{
	const char *path = getenv("PATH");
	char buf[512];

	if (strchr(argv0, '/'))
		return access(argv0, X_OK) == 0;
	if (!path)
		path = "/usr/bin:/bin";
	while (*path) {
		size_t len = strcspn(path, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, argv0);
		if (len && access(buf, X_OK) == 0)
			return true;
		path += len;
		if (*path == ':')
			path++;
	}
	return false;
}

int ftb_listen_tcp(const char *ip, int backlog, uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int ls, err;

	if (inet_pton(AF_INET, ip, &a.sin_addr) != 1)
		return -EINVAL;
	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0)
		return -errno;
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, backlog) ||
	    getsockname(ls, (struct sockaddr *)&a, &alen)) {
		err = -errno;
		close(ls);
		return err;
	}
	*port = ntohs(a.sin_port);
	return ls;
}
