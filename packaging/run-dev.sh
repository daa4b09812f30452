#!/usr/bin/env bash
# Runs maia-sync from a checkout on a fresh Debian machine (Rust installed):
# installs the C toolchain the bundled SQLite needs if it is missing, then
# builds and starts the server. Arguments go to maia-sync, e.g.
#   bash packaging/run-dev.sh --port 4300 --db ./dev.db
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cc >/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "== installing build-essential (a C compiler for the bundled SQLite)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq build-essential >/dev/null
fi
exec cargo run --release -- "$@"
