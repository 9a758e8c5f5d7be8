#!/usr/bin/env bash
# Configures and builds ftrepl into ./build (or $BUILD_DIR).
#   scripts/build.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
log="$BUILD_DIR/build.log"
if ! cmake --build "$BUILD_DIR" -j"$(nproc)" >"$log" 2>&1; then
	grep -E "error|Error" "$log" | head -40 >&2 || tail -40 "$log" >&2
	echo "build failed (full log: $log)" >&2
	exit 1
fi
grep -E "warning" "$log" || true
