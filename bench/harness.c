/* SPDX-License-Identifier: MIT */
/*
 * The harness every mode runs in: warm-up runs, measured runs in ABBA
 * order, statistics, the --json document and the --plot picture.
 *
 * Order of the runs, per group: W warm-up runs of every variant (kept in
 * --json as warmup_samples, never in the statistics), then --runs rounds;
 * round i runs the variants first to last when i is even and last to first
 * when i is odd, so slow drift of the machine (thermal, other tenants)
 * does not favour the variant that always runs first.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <ftrepl/ftrepl.h>

#include "ftbench.h"

void ftb_note(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ftbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void ftb_stats_of(const struct ftb_series *s, struct ftb_stats *out)
{
	double v[FTB_MAX_RUNS], sum = 0, sq = 0;
	unsigned n = s->n;

	memset(out, 0, sizeof(*out));
	out->n = n;
	if (!n)
		return;
	memcpy(v, s->v, n * sizeof(double));
	qsort(v, n, sizeof(double), cmp_double);
	out->min = v[0];
	out->max = v[n - 1];
	out->median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	for (unsigned i = 0; i < n; i++)
		sum += v[i];
	out->mean = sum / n;
	for (unsigned i = 0; i < n; i++)
		sq += (v[i] - out->mean) * (v[i] - out->mean);
	out->std = n > 1 ? sqrt(sq / (n - 1)) : 0;
}

void ftb_case_stats(const struct ftb_ctx *c, unsigned g, unsigned v, unsigned k,
		    struct ftb_stats *out)
{
	ftb_stats_of(&c->cases[g][v].m[k], out);
}

/* ---- --json ------------------------------------------------------------------------ */

static json_t *number(double v)
{
	if (v == floor(v) && fabs(v) < 9007199254740992.0)
		return json_integer((json_int_t)v);
	return json_real(v);
}

static json_t *samples_json(const struct ftb_mode *m, const struct ftb_series *s)
{
	json_t *arr = json_array();

	for (unsigned i = 0; i < s[0].n; i++) {
		json_t *o = json_object();

		for (unsigned k = 0; k < m->nmetrics; k++)
			json_object_set_new(o, m->metrics[k].key, number(s[k].v[i]));
		json_array_append_new(arr, o);
	}
	return arr;
}

static json_t *stats_json(const struct ftb_mode *m, const struct ftb_series *s)
{
	json_t *o = json_object();

	for (unsigned k = 0; k < m->nmetrics; k++) {
		struct ftb_stats st;

		ftb_stats_of(&s[k], &st);
		json_object_set_new(o, m->metrics[k].key,
				    json_pack("{s:i, s:o, s:o, s:o, s:o, s:o}", "n", (int)st.n,
					      "median", number(st.median), "min", number(st.min),
					      "max", number(st.max), "mean", json_real(st.mean),
					      "std", json_real(st.std)));
	}
	return o;
}

static json_t *document(struct ftb_ctx *c)
{
	const struct ftb_mode *m = c->mode;
	json_t *doc = json_object(), *groups = json_array(), *cases = json_array();
	json_t *variants = json_array(), *metrics = json_array();

	json_object_set_new(doc, "ftbench", json_integer(1));
	json_object_set_new(doc, "bench", json_string(m->name));
	for (unsigned v = 0; v < c->nvariants; v++)
		json_array_append_new(variants, json_string(c->variants[v]));
	for (unsigned k = 0; k < m->nmetrics; k++)
		json_array_append_new(metrics, json_pack("{s:s, s:s}", "key", m->metrics[k].key,
							 "unit", m->metrics[k].unit));
	json_object_set_new(c->config, "size", json_integer((json_int_t)c->o.size));
	json_object_set_new(c->config, "runs", json_integer(c->o.runs));
	json_object_set_new(c->config, "warmup", json_integer(c->o.warmup));
	json_object_set_new(c->config, "variants", variants);
	json_object_set_new(c->config, "metrics", metrics);
	json_object_set(doc, "config", c->config);
	json_object_set_new(doc, "machine", ftb_machine_json());
	json_object_set(doc, "baselines", c->baselines);
	for (unsigned g = 0; g < c->ngroups; g++) {
		struct ftb_group *gr = &c->groups[g];
		json_t *o = json_object();

		json_object_set_new(o, "name", json_string(gr->name));
		json_object_set_new(o, "skipped",
				    gr->skipped ? json_string(gr->skip_reason) : json_false());
		json_object_update(o, gr->info);
		json_array_append_new(groups, o);
		if (gr->skipped)
			continue;
		for (unsigned v = 0; v < c->nvariants; v++) {
			struct ftb_case *cs = &c->cases[g][v];

			json_array_append_new(cases, json_pack(
				"{s:s, s:s, s:o, s:o, s:o}", "group", gr->name, "variant",
				c->variants[v], "samples", samples_json(m, cs->m),
				"warmup_samples", samples_json(m, cs->warm),
				"stats", stats_json(m, cs->m)));
		}
	}
	json_object_set_new(doc, "groups", groups);
	json_object_set_new(doc, "cases", cases);
	json_object_set(doc, "summary", c->summary);
	return doc;
}

/* ---- running ------------------------------------------------------------------------- */

static int run_one(struct ftb_ctx *c, unsigned g, unsigned v, struct ftb_series *dst,
		   const char *what, unsigned i, unsigned n)
{
	const struct ftb_metric *m0 = &c->mode->metrics[0];
	double vals[FTB_MAX_METRICS] = { 0 };
	char err[320] = "";
	int ret;

	ret = c->mode->run(c, g, v, vals, err, sizeof(err));
	if (ret) {
		ftb_note("%s %s: %s", c->groups[g].name, c->variants[v],
			 err[0] ? err : strerror(-ret));
		return ret;
	}
	for (unsigned k = 0; k < c->mode->nmetrics; k++)
		dst[k].v[dst[k].n++] = vals[k];
	ftb_note("[%s] %-7s %s %u/%u: %s %.4g %s", c->groups[g].name, c->variants[v], what, i + 1,
		 n, m0->key, vals[0], m0->unit);
	return 0;
}

static int run_group(struct ftb_ctx *c, unsigned g)
{
	int ret;

	for (unsigned w = 0; w < c->o.warmup; w++)
		for (unsigned v = 0; v < c->nvariants; v++)
			if ((ret = run_one(c, g, v, c->cases[g][v].warm, "warm-up", w, c->o.warmup)))
				return ret;
	for (unsigned i = 0; i < c->o.runs; i++) {
		for (unsigned j = 0; j < c->nvariants; j++) {
			unsigned v = i % 2 ? c->nvariants - 1 - j : j;

			if ((ret = run_one(c, g, v, c->cases[g][v].m, "run", i, c->o.runs)))
				return ret;
		}
	}
	return 0;
}

static int parse_variants(struct ftb_ctx *c, char *list)
{
	for (char *save = NULL, *t = strtok_r(list, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		if (c->nvariants == FTB_MAX_VARIANTS)
			return -E2BIG;
		c->variants[c->nvariants++] = t;
	}
	return c->nvariants ? 0 : -EINVAL;
}

int ftb_run_mode(const struct ftb_mode *m, const struct ftb_opts *o)
{
	struct ftb_ctx *c = calloc(1, sizeof(*c));
	char err[320] = "", *defv = NULL;
	int ret, status = 1;
	unsigned g = 0;

	if (!c) {
		ftb_note("out of memory");
		return 1;
	}
	c->mode = m;
	c->o = *o;
	c->out = o->json ? stderr : stdout;
	if (!c->o.size)
		c->o.size = m->default_size;
	if (!c->o.runs)
		c->o.runs = m->default_runs;
	if (o->nvariants) {
		memcpy(c->variants, o->variants, sizeof(o->variants));
		c->nvariants = o->nvariants;
	} else if (m->default_variants) {
		defv = strdup(m->default_variants);
		if (!defv || parse_variants(c, defv))
			goto out;
	}
	c->config = json_object();
	c->baselines = json_object();
	c->summary = json_object();
	ret = m->prepare ? m->prepare(c, err, sizeof(err)) : 0;
	if (ret) {
		fprintf(stderr, "ftbench: %s%s\n", err, ret == -EINVAL ? " (try --help)" : "");
		status = ret == -EINVAL ? 2 : 1;
		goto out_finish;
	}
	c->memcpy_gbps = ftb_memcpy_gbps();
	json_object_set_new(c->baselines, "memcpy_gbps", json_real(c->memcpy_gbps));
	for (g = 0; g < c->ngroups; g++) {
		struct ftb_group *gr = &c->groups[g];

		if (!gr->info)
			gr->info = json_object();
		if (gr->skipped)
			continue;
		err[0] = '\0';
		ret = m->group_begin ? m->group_begin(c, g, err, sizeof(err)) : 0;
		if (ret == -EOPNOTSUPP) {
			gr->skipped = true;
			snprintf(gr->skip_reason, sizeof(gr->skip_reason), "%.*s",
				 (int)sizeof(gr->skip_reason) - 1, err);
			ftb_note("%s skipped: %s", gr->name, err);
			continue;
		}
		if (ret) {
			ftb_note("%s: %s", gr->name, err[0] ? err : strerror(-ret));
			goto out_end_group;
		}
		ret = run_group(c, g);
		if (m->group_end)
			m->group_end(c, g);
		if (ret)
			goto out_finish;
	}
	if (m->report)
		m->report(c);
	fflush(c->out);
	if (o->json) {
		json_t *doc = document(c);
		char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		if (s)
			puts(s);
		free(s);
		json_decref(doc);
	}
	status = 0;
	if (o->plot) {
		if (!m->plot) {
			ftb_note("--%s has no picture; --plot ignored", m->name);
		} else if (ftb_plot(c, o->plot, err, sizeof(err))) {
			ftb_note("--plot: %s", err);
			status = 1;
		} else {
			ftb_note("wrote %s", o->plot);
		}
	}
	goto out_finish;

out_end_group:
	if (m->group_end)
		m->group_end(c, g);
out_finish:
	if (m->finish)
		m->finish(c);
	for (unsigned i = 0; i < c->ngroups; i++)
		json_decref(c->groups[i].info);
	json_decref(c->config);
	json_decref(c->baselines);
	json_decref(c->summary);
out:
	free(defv);
	free(c);
	return status;
}
