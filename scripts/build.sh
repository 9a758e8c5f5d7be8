#!/usr/bin/env bash
# Configures and builds ftrepl into ./build (or $BUILD_DIR).
#   scripts/build.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" 2>&1 | grep -E "warning|error|Error" || true
test -x "$BUILD_DIR/src/ftrepl-receiver" || { echo "build failed" >&2; exit 1; }
