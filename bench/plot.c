/* SPDX-License-Identifier: MIT */
/*
 * --plot FILE.png|FILE.svg through gnuplot: the harness picks the terminal
 * from the file name, the mode writes its data file and plot commands.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftbench.h"

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && !strcasecmp(s + n - k, suffix);
}

int ftb_plot(struct ftb_ctx *c, const char *path, char *err, size_t errlen)
{
	char data_path[] = "/tmp/ftbench-plot-data-XXXXXX";
	char script_path[] = "/tmp/ftbench-plot-gp-XXXXXX";
	const char *term;
	FILE *data = NULL, *script = NULL;
	int dfd, sfd, ret;

	if (ends_with(path, ".png"))
		term = "pngcairo size 1100,600 font 'sans,10'";
	else if (ends_with(path, ".svg"))
		term = "svg size 1100,600 dynamic font 'sans,10'";
	else {
		snprintf(err, errlen, "%s: the name must end in .png or .svg", path);
		return -EINVAL;
	}
	if (!ftb_have_program("gnuplot")) {
		snprintf(err, errlen, "gnuplot is not installed (Debian: gnuplot-nox)");
		return -ENOENT;
	}
	dfd = mkstemp(data_path);
	sfd = dfd >= 0 ? mkstemp(script_path) : -1;
	if (dfd < 0 || sfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "temporary file: %s", strerror(errno));
		if (dfd >= 0) {
			close(dfd);
			unlink(data_path);
		}
		return ret;
	}
	data = fdopen(dfd, "w");
	script = fdopen(sfd, "w");
	if (!data || !script) {
		ret = -ENOMEM;
		snprintf(err, errlen, "fdopen: %s", strerror(errno));
		if (!data)
			close(dfd);
		if (!script)
			close(sfd);
		goto out;
	}
	/* gnuplot string literals in single quotes: only ' needs care */
	if (strchr(path, '\'')) {
		ret = -EINVAL;
		snprintf(err, errlen, "%s: the name must not contain a quote", path);
		goto out;
	}
	fprintf(script, "set terminal %s\nset output '%s'\n", term, path);
	ret = c->mode->plot(c, script, data_path, data);
	if (ret) {
		snprintf(err, errlen, "nothing to plot");
		goto out;
	}
	if (fclose(data) || fclose(script)) {
		data = script = NULL;
		ret = -EIO;
		snprintf(err, errlen, "writing the plot files: %s", strerror(errno));
		goto out;
	}
	data = script = NULL;
	{
		const char *argv[] = { "gnuplot", script_path, NULL };
		char out[512];

		ret = ftb_run_cmd(argv, -1, out, sizeof(out), true, 30000);
		if (ret) {
			out[strcspn(out, "\n")] = '\0';
			snprintf(err, errlen, "gnuplot failed (%d): %s", ret, out);
			ret = -EIO;
		}
	}
out:
	if (data)
		fclose(data);
	if (script)
		fclose(script);
	unlink(data_path);
	unlink(script_path);
	return ret;
}
