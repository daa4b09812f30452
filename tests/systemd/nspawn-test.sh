#!/usr/bin/env bash
# Tests maia-sync.service and the .deb under a real systemd: boots a minimal
# Debian 12 in systemd-nspawn with the package installed, and checks from
# inside the container (tests/systemd/checks.sh, run by a oneshot unit after
# maia-sync.service, which then powers the container off):
#   a  readiness: active (running) only through READY=1 (Type=notify), and
#      GET /health answers {"status":"ok"}
#   b  sandbox: a non-root dynamic user, no capabilities, seccomp; in its
#      mount namespace nothing but the state directory is writable; the
#      database at /var/lib/private/maia-sync/sync.db, directory mode 0700
#   f  a write over WebSocket (a signed CoValue) acknowledged, and still
#      there after every restart below and after the stop
#   g  the backup command of the unit's comment, as root, while it runs
#   c  watchdog: with WatchdogSec=4, SIGSTOP gets it killed and restarted
#   d  kill -9: restarted (Restart=on-failure), the acknowledged write kept
#   e  systemctl stop: the server's clean exit lines, exit status 0, no WAL
#   f  after the stop: `maia-sync check` as root passes and the service
#      starts again with its data
#
#   sudo tests/systemd/nspawn-test.sh [--no-build] [--keep] [--fresh-rootfs]
#
#   --no-build      package the existing target/release/maia-sync
#   --keep          keep the container's tree after a pass too (a failed
#                   run's is kept anyway; the next run removes it)
#   --fresh-rootfs  debootstrap the base tree again
#
# Needs root, debootstrap and systemd-nspawn (installed with apt-get when
# missing). The first run
# debootstraps a base tree (a few minutes, Debian mirror needed) into
# $MAIA_NSPAWN_CACHE (default /var/cache/maia-sync-nspawn); later runs copy
# it. The container has its own network namespace (loopback only), so
# port 4203 on the host is not touched. Other settings: DEBIAN_MIRROR,
# MAIA_NSPAWN_TIMEOUT (seconds for the whole boot; default 300).
set -euo pipefail

started=$SECONDS
repo="$(cd "$(dirname "$0")/../.." && pwd)"
here="$repo/tests/systemd"
cache="${MAIA_NSPAWN_CACHE:-/var/cache/maia-sync-nspawn}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
boot_timeout="${MAIA_NSPAWN_TIMEOUT:-300}"
suite=bookworm
packages="systemd,systemd-sysv,dbus,libnss-systemd,curl,python3"
base="$cache/$suite-base"
tree="$cache/run-$$" # the container's tree, one per run
machine="maia-sync-test-$$"
build=yes keep=no fresh=no
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=no ;;
        --keep) keep=yes ;;
        --fresh-rootfs) fresh=yes ;;
        -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "nspawn-test.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

step() { printf '== %s (%ss)\n' "$*" $((SECONDS - started)); }
die() { echo "nspawn-test.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot and systemd-nspawn need it)"
vector="$repo/tests/data/vectors/session-trusting.json"
[ -f "$vector" ] || die "$vector not found"
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- the package ---------------------------------------------------------------
cd "$repo"
if [ "$build" = yes ]; then
    step "cargo build --release"
    command -v cargo >/dev/null || die "cargo not found (as root: sudo env PATH=\$PATH ...)"
    cargo build --release --quiet
fi
step "packaging/build-deb.sh"
deb="$(packaging/build-deb.sh)"
echo "   $deb"

# --- the base tree (cached) ------------------------------------------------------
mkdir -p "$cache"
exec 9> "$cache/.lock"
flock 9 # one run at a time creates (or copies) the base tree
marker="$base/.maia-sync-base"
want_marker="$suite $packages"
if [ "$fresh" = yes ] || [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$want_marker" ]; then
    step "debootstrap $suite into $base (once; a few minutes)"
    rm -rf "$base" "$base.new"
    debootstrap --variant=minbase --include="$packages" "$suite" "$base.new" "$mirror" \
        > "$cache/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $cache/debootstrap.log"
    echo maia-sync-test > "$base.new/etc/hostname"
    chroot "$base.new" apt-get clean
    echo "$want_marker" > "$base.new/.maia-sync-base"
    mv "$base.new" "$base"
else
    step "using the cached base tree $base"
fi

# --- the container's tree: a copy with the .deb installed -------------------------
# Trees of earlier runs whose script is gone (kept after a failure).
for old in "$cache"/run-*; do
    pid="${old##*/run-}"
    pid="${pid%%.*}"
    [ -e "$old" ] && ! kill -0 "$pid" 2>/dev/null && rm -rf "$old"
done
step "copying the base tree to $tree"
rm -rf "$tree"
cp -a "$base" "$tree"
flock -u 9
exec 9>&-

step "installing $(basename "$deb") (dpkg -i in a chroot)"
cp "$deb" "$tree/tmp/maia-sync.deb"
# No service starts in the chroot: the postinst only starts one when
# /run/systemd/system exists, and policy-rc.d (honoured by
# deb-systemd-invoke) refuses it anyway. It still enables the unit.
printf '#!/bin/sh\nexit 101\n' > "$tree/usr/sbin/policy-rc.d"
chmod 755 "$tree/usr/sbin/policy-rc.d"
chroot "$tree" dpkg -i /tmp/maia-sync.deb > "$tree.dpkg.log" 2>&1 ||
    { cat "$tree.dpkg.log"; die "dpkg -i failed"; }
rm -f "$tree/usr/sbin/policy-rc.d" "$tree/tmp/maia-sync.deb"
[ -L "$tree/etc/systemd/system/multi-user.target.wants/maia-sync.service" ] ||
    die "the package did not enable maia-sync.service"

mkdir -p "$tree/maia-test"
cp "$here/checks.sh" "$here/wsclient.py" "$vector" "$tree/maia-test/"
chmod 755 "$tree/maia-test/checks.sh"
cp "$here/maia-sync-checks.service" "$tree/etc/systemd/system/"
ln -s /etc/systemd/system/maia-sync-checks.service \
    "$tree/etc/systemd/system/multi-user.target.wants/maia-sync-checks.service"

# --- boot -------------------------------------------------------------------------
# With systemd on the host, nspawn registers the container with it as
# usual. Without one (a build container, a CI runner), it cannot get a scope
# unit (--register=no --keep-unit) and runs in cgroups of our own instead,
# which also let us find and end every process of the container afterwards.
nspawn_opts=()
cgroups=()
if [ ! -d /run/systemd/system ]; then
    nspawn_opts=(--register=no --keep-unit)
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        hierarchies=(/sys/fs/cgroup)                                 # cgroup2 only
    else
        hierarchies=(/sys/fs/cgroup/systemd /sys/fs/cgroup/unified) # hybrid or v1
    fi
    for h in "${hierarchies[@]}"; do
        [ -f "$h/cgroup.procs" ] || continue
        mkdir -p "$h/maia-sync-nspawn-$$"
        cgroups+=("$h/maia-sync-nspawn-$$")
    done
fi
# nspawn keeps a directory per machine under the host's /run; it cannot
# remove it itself when /run is not a tmpfs.
propagate=/run/systemd/nspawn/propagate
made_dirs=()
for d in /run/systemd /run/systemd/nspawn /run/systemd/nspawn/locks "$propagate"; do
    [ -d "$d" ] || made_dirs=("$d" "${made_dirs[@]}")
done
cleanup() {
    local cg pid d
    # Registered with the host's systemd: only after a timeout can the
    # container outlive nspawn.
    [ ${#nspawn_opts[@]} -gt 0 ] || machinectl terminate "$machine" 2>/dev/null || true
    rm -rf "${propagate:?}/$machine"
    for d in "${made_dirs[@]}"; do rmdir "$d" 2>/dev/null || true; done
    for cg in "${cgroups[@]}"; do
        # Every process still in there belongs to the container.
        while read -r pid; do
            kill -9 "$pid" 2>/dev/null || true
        done < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
    done
    [ ${#cgroups[@]} -eq 0 ] || sleep 0.5
    for cg in "${cgroups[@]}"; do
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}
trap cleanup EXIT

step "booting the container (timeout ${boot_timeout}s)"
boot_log="$tree.console.log"
boot_start=$SECONDS
set +e
(
    for cg in "${cgroups[@]}"; do echo "$BASHPID" > "$cg/cgroup.procs"; done
    exec timeout --kill-after=20 "$boot_timeout" systemd-nspawn \
        --quiet --boot --directory="$tree" --machine="$machine" \
        "${nspawn_opts[@]}" --private-network --console=pipe
) < /dev/null > "$boot_log" 2>&1
status=$?
set -e
boot_took=$((SECONDS - boot_start))

# --- report -----------------------------------------------------------------------
results="$tree/maia-test/results"
echo
echo "$(basename "$deb") under systemd (Debian $suite in systemd-nspawn):"
failed=0
if [ -f "$results" ]; then
    while IFS= read -r line; do
        case "$line" in
            PASS*) echo "  $line" ;;
            FAIL*) echo "  $line"; failed=1 ;;
            DONE) ;;
            *) echo "  $line" ;;
        esac
    done < "$results"
fi
if [ $status -eq 124 ] || [ $status -eq 137 ]; then
    echo "  FAIL boot: no poweroff within ${boot_timeout}s (killed)"
    failed=1
elif [ $status -ne 0 ]; then
    echo "  FAIL boot: systemd-nspawn exited with status $status"
    failed=1
fi
if ! grep -qx DONE "$results" 2>/dev/null; then
    echo "  FAIL checks: they did not all run (see the logs below)"
    failed=1
fi
echo "boot and checks: ${boot_took}s; total: $((SECONDS - started))s"
if [ $failed -ne 0 ]; then
    echo
    log="$tree/maia-test/log"
    # The log of each failed check (with the unit's journal), else its tail.
    names="$(sed -n 's/^FAIL \([^ ]*\) .*/\1/p' "$results" 2>/dev/null)"
    if [ -n "$names" ]; then
        for name in $names; do
            echo "--- log of $name (inside the container: /maia-test/log):"
            awk -v n="$name" '$0 == "=== " n { p = 1 } /^=== / && $0 != "=== " n { p = 0 } p' "$log"
        done
    else
        echo "--- /maia-test/log (inside the container):"
        tail -n 60 "$log" 2>/dev/null || echo "(none)"
    fi
    echo "--- console ($boot_log):"
    grep -v 'Attempted to remove disk file system' "$boot_log" | tail -n 40 || true
    echo "the container's journal: journalctl -D $tree/var/log/journal"
    echo "RESULT: FAIL (container tree kept at $tree until the next run)"
    exit 1
fi
if [ "$keep" = yes ]; then
    echo "container tree kept at $tree until the next run"
else
    rm -rf "$tree" "$tree.dpkg.log" "$tree.console.log"
fi
echo "RESULT: PASS"
