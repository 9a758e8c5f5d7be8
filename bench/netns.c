/* SPDX-License-Identifier: MIT */
/*
 * A shaped link for --writev-vs-write: two network namespaces joined by a
 * veth pair, the sender's egress shaped with tbf.
 *
 *   ftb-<pid>-tx: device ftb-tx, 192.168.250.1/30, tbf on egress
 *   ftb-<pid>-rx: device ftb-rx, 192.168.250.2/30
 *
 * The veth ends are created directly inside their namespaces, so nothing
 * ever appears in the root namespace, and removing the two namespaces
 * removes the pair and the qdisc with them. The pid in the names lets a
 * later ftbench tell a crashed run's leftovers from a run still going.
 *
 * tbf's burst must cover what the link sends between two dequeue timers,
 * or tbf caps the rate below the one asked for: 2 ms of the rate (at least
 * 64 KiB) reaches 0.957 Gbit/s of TCP goodput at 1gbit and ~9.2 Gbit/s at
 * 10gbit here (64 KiB at 1gbit only reached 0.84). The reference measured
 * on the link in the same run is what the results are compared against.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftbench.h"

#define NETNS_DIR "/var/run/netns"
#define TBF_LATENCY "20ms"

static const char *const dev_name[2] = { "ftb-tx", "ftb-rx" };
static const char *const dev_ip[2] = { FTB_TX_IP "/30", FTB_RX_IP "/30" };

int ftb_link_create(struct ftb_link *l, char *err, size_t errlen)
{
	int ret;

	memset(l, 0, sizeof(*l));
	l->ns_fd[0] = l->ns_fd[1] = -1;
	if (geteuid() != 0) {
		snprintf(err, errlen, "creating network namespaces needs root");
		return -EPERM;
	}
	if (!ftb_have_program("ip") || !ftb_have_program("tc")) {
		snprintf(err, errlen, "`ip` and `tc` (iproute2) are needed for the veth links");
		return -ENOENT;
	}
	l->up = true;	/* from here on, destroy undoes whatever exists */
	for (int i = 0; i < 2; i++) {
		const char *argv[] = { "ip", "netns", "add", l->ns_name[i], NULL };

		snprintf(l->ns_name[i], sizeof(l->ns_name[i]), FTB_NETNS_PREFIX "%d-%s",
			 (int)getpid(), i ? "rx" : "tx");
		snprintf(l->ns_path[i], sizeof(l->ns_path[i]), NETNS_DIR "/%s", l->ns_name[i]);
		ftb_cleanup_add_netns(l->ns_path[i]);
		ret = ftb_cmd(err, errlen, argv);
		if (ret)
			goto out_destroy;
	}
	{
		const char *argv[] = { "ip", "link", "add", dev_name[0], "netns", l->ns_name[0],
				       "type", "veth", "peer", "name", dev_name[1], "netns",
				       l->ns_name[1], NULL };

		ret = ftb_cmd(err, errlen, argv);
		if (ret)
			goto out_destroy;
	}
	for (int i = 0; i < 2; i++) {
		const char *addr[] = { "ip", "-n", l->ns_name[i], "addr", "add", dev_ip[i], "dev",
				       dev_name[i], NULL };
		const char *up[] = { "ip", "-n", l->ns_name[i], "link", "set", dev_name[i], "up",
				     NULL };
		const char *lo[] = { "ip", "-n", l->ns_name[i], "link", "set", "lo", "up", NULL };

		if ((ret = ftb_cmd(err, errlen, addr)) || (ret = ftb_cmd(err, errlen, up)) ||
		    (ret = ftb_cmd(err, errlen, lo)))
			goto out_destroy;
		l->ns_fd[i] = open(l->ns_path[i], O_RDONLY | O_CLOEXEC);
		if (l->ns_fd[i] < 0) {
			ret = -errno;
			snprintf(err, errlen, "open %s: %s", l->ns_path[i], strerror(errno));
			goto out_destroy;
		}
	}
	return 0;

out_destroy:
	ftb_link_destroy(l);
	return ret;
}

int ftb_link_shape(struct ftb_link *l, uint64_t rate_bps, char *err, size_t errlen)
{
	char rate[32], burst[32];
	uint64_t b = (uint64_t)((double)rate_bps / 8.0 * 0.002);
	int ret;

	if (!rate_bps) {
		const char *argv[] = { "tc", "-n", l->ns_name[0], "qdisc", "del", "dev",
				       dev_name[0], "root", NULL };

		if (!l->rate_bps)
			return 0;
		ret = ftb_cmd(err, errlen, argv);
		if (!ret) {
			l->rate_bps = 0;
			l->qdisc[0] = '\0';
		}
		return ret;
	}
	if (b < 65536)
		b = 65536;
	snprintf(rate, sizeof(rate), "%" PRIu64 "bit", rate_bps);
	snprintf(burst, sizeof(burst), "%" PRIu64, b);
	{
		const char *argv[] = { "tc", "-n", l->ns_name[0], "qdisc", "replace", "dev",
				       dev_name[0], "root", "tbf", "rate", rate, "burst", burst,
				       "latency", TBF_LATENCY, NULL };

		ret = ftb_cmd(err, errlen, argv);
	}
	if (ret)
		return ret;
	l->rate_bps = rate_bps;
	snprintf(l->qdisc, sizeof(l->qdisc), "tbf rate %s burst %s latency %s", rate, burst,
		 TBF_LATENCY);
	return 0;
}

void ftb_link_destroy(struct ftb_link *l)
{
	if (!l->up)
		return;
	for (int i = 0; i < 2; i++) {
		if (l->ns_fd[i] >= 0)
			close(l->ns_fd[i]);
		l->ns_fd[i] = -1;
		if (l->ns_path[i][0]) {
			ftb_netns_remove(l->ns_path[i]);
			ftb_cleanup_del_netns(l->ns_path[i]);
		}
	}
	l->up = false;
}

/* An ftbench process is still running as pid (a zombie is not: a killed
 * run's main process can stay one while its parent does not reap it). */
static bool ftbench_alive(int pid)
{
	char path[64], line[256], *open, *close;
	FILE *f;

	if (pid == (int)getpid())
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	/* "pid (comm) state ..." */
	open = strchr(line, '(');
	close = strrchr(line, ')');
	if (!open || !close || close[1] != ' ')
		return false;
	*close = '\0';
	return !strcmp(open + 1, "ftbench") && close[2] != 'Z' && close[2] != 'X';
}

int ftb_link_clean_stale(void)
{
	DIR *d = opendir(NETNS_DIR);
	struct dirent *e;
	int removed = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char side[4], path[300];
		int pid, end = 0;

		/* exactly ftb-<pid>-tx or ftb-<pid>-rx */
		if (sscanf(e->d_name, FTB_NETNS_PREFIX "%d-%2[rtx]%n", &pid, side, &end) != 2 ||
		    e->d_name[end] || (strcmp(side, "tx") && strcmp(side, "rx")) || pid <= 0)
			continue;
		if (ftbench_alive(pid))
			continue;
		snprintf(path, sizeof(path), NETNS_DIR "/%s", e->d_name);
		if (!ftb_netns_remove(path)) {
			ftb_note("removed namespace %s left by a run that ended abnormally",
				 e->d_name);
			removed++;
		}
	}
	closedir(d);
	return removed;
}

int ftb_parse_rate(const char *s, uint64_t *bps)
{
	double v, mult = 1;
	char *end;

	if (!strcmp(s, "unshaped") || !strcmp(s, "0")) {
		*bps = 0;
		return 0;
	}
	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno || !(v > 0))
		return -EINVAL;
	switch (tolower((unsigned char)*end)) {
	case 'k': mult = 1e3; end++; break;
	case 'm': mult = 1e6; end++; break;
	case 'g': mult = 1e9; end++; break;
	case 't': mult = 1e12; end++; break;
	default: break;
	}
	if (*end && strcasecmp(end, "bit") && strcasecmp(end, "bit/s"))
		return -EINVAL;
	v *= mult;
	if (v < 1e5 || v > 1e13)
		return -EINVAL;
	*bps = (uint64_t)llround(v);
	return 0;
}

const char *ftb_rate_name(uint64_t bps, char *buf, size_t len)
{
	if (!bps)
		snprintf(buf, len, "unshaped");
	else if (bps >= 1000000000ull)
		snprintf(buf, len, "%gg", (double)bps / 1e9);
	else if (bps >= 1000000ull)
		snprintf(buf, len, "%gm", (double)bps / 1e6);
	else
		snprintf(buf, len, "%gk", (double)bps / 1e3);
	return buf;
}
