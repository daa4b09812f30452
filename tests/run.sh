#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine
# (with Rust and Node 20 already there), then runs the whole suite.
#   bash tests/run.sh            # everything
#   bash tests/run.sh --test interop   # arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: a C toolchain (bundled SQLite, better-sqlite3 for the
# reference server), systemd-analyze and dpkg-deb (packaging tests), and
# the Prometheus text parser (metrics test).
need=()
command -v cc >/dev/null || need+=(build-essential)
command -v make >/dev/null || need+=(make)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v dpkg-deb >/dev/null || need+=(dpkg)
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v python3 >/dev/null || need+=(python3)
if ! python3 -c 'import prometheus_client.parser' 2>/dev/null &&
   ! /usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null; then
  need+=(python3-prometheus-client)
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "== installing Debian packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The Node packages of the interop tests (real cojson clients, the
# reference server) are installed by the interop tests themselves with
# `npm ci` (tests/common/node.rs).
echo "== cargo test $*"
exec cargo test "$@"
