#!/usr/bin/env bash
# Builds the maia-sync .deb with dpkg-deb alone, from the same
# [package.metadata.deb] table in Cargo.toml that `cargo deb` reads, so the
# package can be made (and tested) without installing cargo-deb.
#
#   packaging/build-deb.sh [--binary PATH] [--out DIR]
#
#   --binary PATH  the maia-sync executable to package
#                  (default: target/release/maia-sync; build it first with
#                  cargo build --release)
#   --out DIR      where the .deb goes (default: target/debian)
#   --fast         quick gzip compression instead of xz (tests, local use)
#
# Prints the path of the .deb. Needs bash, python3 (3.11+, for tomllib),
# dpkg-deb; uses dpkg-shlibdeps for Depends when present (package dpkg-dev),
# else derives the libc6 version from the binary's symbols (objdump).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
binary="$root/target/release/maia-sync"
out="$root/target/debian"
compress=()
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --binary=*) binary="${1#*=}"; shift ;;
        --out) out="$2"; shift 2 ;;
        --out=*) out="${1#*=}"; shift ;;
        --fast) compress=(-Zgzip -z1); shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "build-deb.sh: $1 not found; install it with: apt-get install -y $2" >&2
        exit 1
    }
}
need python3 python3
need dpkg-deb dpkg
[ -x "$binary" ] || {
    echo "build-deb.sh: no executable at $binary (run cargo build --release, or pass --binary)" >&2
    exit 1
}

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
mkdir -p "$pkg/DEBIAN"

# Lay out the assets and write the control files from Cargo.toml.
python3 - "$root" "$binary" "$pkg" <<'PY'
import os, shutil, sys, tomllib

root, binary, pkg = sys.argv[1:4]
with open(os.path.join(root, "Cargo.toml"), "rb") as f:
    cargo = tomllib.load(f)
package = cargo["package"]
deb = package["metadata"]["deb"]
name = deb.get("name", package["name"])

def put(src, dest, mode):
    dest = dest.lstrip("/")
    if dest.endswith("/"):
        dest += os.path.basename(src)
    target = os.path.join(pkg, dest)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(src, target)
    os.chmod(target, int(mode, 8))
    return "/" + dest

installed = []
for src, dest, mode in deb["assets"]:
    # cargo-deb's convention: target/release/ means "the built binary".
    path = binary if src.startswith("target/release/") else os.path.join(root, src)
    installed.append(put(path, dest, mode))

units = deb.get("systemd-units")
unit = None
if units:
    unit_dir = os.path.join(root, units.get("unit-scripts", "systemd"))
    unit = f"{name}.service"
    put(os.path.join(unit_dir, unit), f"usr/lib/systemd/system/{unit}", "644")

conffiles = sorted(set(
    [p for p in installed if p.startswith("/etc/")] + deb.get("conf-files", [])))
with open(os.path.join(pkg, "DEBIAN", "conffiles"), "w") as f:
    f.writelines(p + "\n" for p in conffiles)

# Maintainer scripts with the same behaviour as cargo-deb's (debhelper's
# dh_installsystemd) for enable / start / restart-after-upgrade. A script
# of our own in maintainer-scripts gets them at its #DEBHELPER# line.
scripts_dir = os.path.join(root, deb.get("maintainer-scripts", "packaging/debian"))
def script(kind, body):
    own = os.path.join(scripts_dir, kind)
    if os.path.isfile(own):
        with open(own) as f:
            text = f.read().replace("#DEBHELPER#", body)
    else:
        text = "#!/bin/sh\nset -e\n" + body + "\n"
    path = os.path.join(pkg, "DEBIAN", kind)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)

if unit:
    u = f"'{unit}'"
    post = []
    if units.get("enable", True):
        post.append(f"""if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
\t# Remove a mask left by a previous removal, then enable on first install
\t# (or refresh the links on upgrade) unless the admin disabled it.
\tdeb-systemd-helper unmask {u} >/dev/null || true
\tif deb-systemd-helper --quiet was-enabled {u}; then
\t\tdeb-systemd-helper enable {u} >/dev/null || true
\telse
\t\tdeb-systemd-helper update-state {u} >/dev/null || true
\tfi
fi""")
    if units.get("start", True):
        action = "restart" if units.get("restart-after-upgrade", True) else "start"
        post.append(f"""if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
\tif [ -d /run/systemd/system ]; then
\t\tsystemctl --system daemon-reload >/dev/null || true
\t\tif [ -n "$2" ]; then _action={action}; else _action=start; fi
\t\tdeb-systemd-invoke $_action {u} >/dev/null || true
\tfi
fi""")
    script("postinst", "\n".join(post))
    stop_cond = '[ "$1" = remove ]' if units.get("restart-after-upgrade", True) else "true"
    script("prerm", f"""if [ -d /run/systemd/system ] && {stop_cond}; then
\tdeb-systemd-invoke stop {u} >/dev/null || true
fi""")
    script("postrm", f"""if [ -d /run/systemd/system ]; then
\tsystemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = remove ] && [ -x /usr/bin/deb-systemd-helper ]; then
\tdeb-systemd-helper mask {u} >/dev/null || true
fi
if [ "$1" = purge ] && [ -x /usr/bin/deb-systemd-helper ]; then
\tdeb-systemd-helper purge {u} >/dev/null || true
\tdeb-systemd-helper unmask {u} >/dev/null || true
fi""")

# Debian policy: every package carries its copyright file (as cargo-deb
# writes it).
doc = os.path.join(pkg, "usr/share/doc", name)
os.makedirs(doc, exist_ok=True)
with open(os.path.join(doc, "copyright"), "w") as f:
    f.write("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
            f"Upstream-Name: {name}\nCopyright: {deb.get('copyright', deb['maintainer'])}\n")
os.chmod(os.path.join(doc, "copyright"), 0o644)

# Fields the shell side completes (Depends, Architecture, Installed-Size).
revision = deb.get("revision", "1")
version = package["version"] + (f"-{revision}" if revision else "")
desc = package.get("description", name)
ext = deb.get("extended-description", "").split()
lines, line = [], ""
for word in ext:
    if line and len(line) + 1 + len(word) > 78:
        lines.append(line)
        line = word
    else:
        line = f"{line} {word}".strip()
if line:
    lines.append(line)
with open(os.path.join(pkg, "DEBIAN", "control.in"), "w") as f:
    f.write(f"Package: {name}\nVersion: {version}\n")
    f.write(f"Section: {deb.get('section', 'misc')}\nPriority: {deb.get('priority', 'optional')}\n")
    f.write(f"Maintainer: {deb['maintainer']}\n")
    f.write(f"Depends-Spec: {deb.get('depends', '$auto')}\n")
    f.write(f"Description: {desc}\n")
    f.writelines(f" {l}\n" for l in lines)
PY

# Depends: "$auto" is the shared libraries the binary links to.
auto_depends() {
    local bin="$pkg/usr/bin/$(basename "$binary")"
    if command -v dpkg-shlibdeps >/dev/null 2>&1; then
        mkdir -p "$stage/debian" && touch "$stage/debian/control"
        (cd "$stage" && dpkg-shlibdeps -O "$bin" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
    else
        need objdump binutils
        local v
        v="$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)"
        echo "libc6 (>= ${v:-2.17})"
    fi
}
spec="$(sed -n 's/^Depends-Spec: //p' "$pkg/DEBIAN/control.in")"
depends="${spec//\$auto/$(auto_depends)}"
arch="$(dpkg-deb --version >/dev/null && dpkg --print-architecture)"
size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
{
    sed -n '1,/^Description:/{/^Depends-Spec:/d;/^Description:/d;p}' "$pkg/DEBIAN/control.in"
    echo "Architecture: $arch"
    echo "Installed-Size: $size"
    [ -n "$depends" ] && echo "Depends: $depends"
    sed -n '/^Description:/,$p' "$pkg/DEBIAN/control.in"
} > "$pkg/DEBIAN/control"
rm "$pkg/DEBIAN/control.in"

name="$(sed -n 's/^Package: //p' "$pkg/DEBIAN/control")"
version="$(sed -n 's/^Version: //p' "$pkg/DEBIAN/control")"
mkdir -p "$out"
deb="$out/${name}_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$pkg" "$deb" >/dev/null
echo "$deb"
