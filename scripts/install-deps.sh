#!/usr/bin/env bash
# Installs what ftrepl needs to build and test on Debian 12 (as root, or
# with sudo). Installs only what is missing; safe to run again.
#   scripts/install-deps.sh [--with-bench] [--with-fuzz]
set -euo pipefail

pkgs=(cmake make gcc pkg-config libibverbs-dev librdmacm-dev liburing-dev uuid-dev
      check libsubunit-dev libjansson-dev jq)
for arg in "$@"; do
	case "$arg" in
	--with-bench) pkgs+=(iperf3 gnuplot-nox perftest rdma-core ibverbs-providers iproute2) ;;
	--with-fuzz) pkgs+=(clang libclang-rt-dev) ;;
	*) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
	esac
done

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "install-deps: run as root (missing: ${missing[*]})" >&2; exit 1; }
	SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
