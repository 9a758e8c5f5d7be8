#!/usr/bin/env bash
# Installs what is needed, builds with warnings as errors, and runs the
# default test suites (unit + integration, ~10 minutes).
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh -DFTREPL_WERROR=ON -DFTREPL_TEST_HOOKS=ON
ctest --test-dir "${BUILD_DIR:-build}" -L 'unit|integration' --output-on-failure --timeout 900
