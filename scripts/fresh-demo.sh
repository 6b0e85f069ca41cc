#!/usr/bin/env bash
# Times `make demo` on a fresh Debian 12 machine: a new bookworm root made by
# debootstrap (make, git, curl and ca-certificates added, as on a new machine),
# with this machine's Go (`go env GOROOT`, as /usr/local/go) and its local CA
# certificates (a machine behind a TLS-inspecting proxy has them), nothing else
# installed, no Go module or build cache; a clone of this checkout's HEAD;
# then `time make demo` inside it (a chroot: the demo's VMs, tgtd and
# namespaces run on this kernel, and are gone afterwards). Root only.
#
#	scripts/fresh-demo.sh [DIR]     # DIR: where the root goes (default .cache/fresh-root), removed first
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "fresh-demo: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
command -v debootstrap >/dev/null || ./scripts/deps.sh
root=$(realpath -m "${1:-.cache/fresh-root}")
goroot=$(go env GOROOT)
umount -R "$root" 2>/dev/null || true
rm -rf "$root"
echo "fresh-demo: debootstrap bookworm into $root"
debootstrap --include=make,git,ca-certificates,xz-utils,curl bookworm "$root" http://deb.debian.org/debian >/dev/null
printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' >"$root/etc/apt/sources.list"
mkdir -p "$root/usr/local/go" && cp -a "$goroot/." "$root/usr/local/go/"
cp /etc/resolv.conf "$root/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
	cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
	chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
git clone -q "$PWD" "$root/root/wolfpack"
git -C "$root/root/wolfpack" checkout -q "$(git rev-parse HEAD)"
trap 'umount -R "$root" 2>/dev/null || true' EXIT
mount --bind "$root" "$root" # "/" must be a mount point: ip netns exec makes it rslave
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs -o size=8g tmpfs "$root/tmp"
chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb \
	bash -c 'cd /root/wolfpack && uptime && time make demo'
