/* SPDX-License-Identifier: MIT */
/* Helpers shared by the Check suites. */
#ifndef FTR_TESTUTIL_H
#define FTR_TESTUTIL_H

#include <stddef.h>

/* Creates a fresh directory under $TMPDIR (or /tmp) named after prefix and
 * returns its path (static storage per call site is not kept: the caller
 * owns the returned malloc'ed string). Aborts the test on failure. */
char *ftr_test_mkdtemp(const char *prefix);
/* Removes a directory tree made by ftr_test_mkdtemp (best effort). */
void ftr_test_rmtree(const char *path);

#endif
