#!/usr/bin/env bash
# Installs maia-sync as a systemd service on a host without the .deb
# (any distribution with systemd). Safe to run again, e.g. to upgrade.
#
#   sudo packaging/install.sh [--binary PATH] [--prefix DIR] [--no-start]
#
#   --binary PATH  the executable to install (default: target/release/maia-sync;
#                  build it first with: cargo build --release)
#   --prefix DIR   stage everything under DIR instead of / (also: DESTDIR);
#                  systemctl is then not run, unless SYSTEMCTL is set
#   --no-start     install and enable, but do not start or restart
#
# Installs:
#   /usr/local/bin/maia-sync                  the server
#   /etc/systemd/system/maia-sync.service     the unit (ExecStart adjusted)
#   /etc/default/maia-sync                    settings, only if absent: an
#                                             existing file is never replaced
# then runs: systemctl daemon-reload && systemctl enable --now maia-sync
# (and restarts the service if it was running an older version).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
binary="$root/target/release/maia-sync"
prefix="${DESTDIR:-}"
start=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --binary=*) binary="${1#*=}"; shift ;;
        --prefix) prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --no-start) start=no; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
prefix="${prefix%/}"

# Without a prefix this changes the running system: check it can.
systemctl_cmd="${SYSTEMCTL:-}"
if [ -z "$prefix" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }
    if [ -z "$systemctl_cmd" ]; then
        [ -d /run/systemd/system ] || {
            echo "install.sh: systemd is not running here; use --prefix DIR to stage the files only" >&2
            exit 1
        }
        systemctl_cmd=systemctl
    fi
fi
[ -x "$binary" ] || {
    echo "install.sh: no executable at $binary (run cargo build --release, or pass --binary)" >&2
    exit 1
}
"$binary" --version >/dev/null || { echo "install.sh: $binary does not run" >&2; exit 1; }

changed=no
# install_file SRC DEST MODE: atomic replace (a running binary is never
# written in place), reporting whether anything changed.
install_file() {
    local src="$1" dest="$2" mode="$3"
    mkdir -p "$(dirname "$dest")"
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        chmod "$mode" "$dest"
        echo "unchanged  $dest"
        return
    fi
    local tmp="$dest.install-$$"
    cp "$src" "$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$dest"
    changed=yes
    echo "installed  $dest"
}

unit_tmp="$(mktemp)"
trap 'rm -f "$unit_tmp"' EXIT
sed 's#^ExecStart=/usr/bin/maia-sync#ExecStart=/usr/local/bin/maia-sync#' \
    "$root/maia-sync.service" > "$unit_tmp"

install_file "$binary" "$prefix/usr/local/bin/maia-sync" 755
install_file "$unit_tmp" "$prefix/etc/systemd/system/maia-sync.service" 644
default="$prefix/etc/default/maia-sync"
if [ -e "$default" ]; then
    echo "kept       $default (your settings; the shipped one is packaging/default/maia-sync)"
else
    install_file "$root/packaging/default/maia-sync" "$default" 644
fi

if [ -z "$systemctl_cmd" ]; then
    echo "staged under $prefix; on the target host run:"
    echo "  systemctl daemon-reload && systemctl enable --now maia-sync"
    exit 0
fi
was_active=no
$systemctl_cmd is-active --quiet maia-sync && was_active=yes
$systemctl_cmd daemon-reload
if [ "$start" = yes ]; then
    $systemctl_cmd enable --now maia-sync
    # enable --now leaves a running service alone: restart it onto the new files.
    if [ "$was_active" = yes ] && [ "$changed" = yes ]; then
        $systemctl_cmd restart maia-sync
    fi
    echo "maia-sync is running: systemctl status maia-sync; journalctl -u maia-sync -f"
else
    $systemctl_cmd enable maia-sync
    echo "maia-sync is enabled; start it with: systemctl start maia-sync"
fi
