#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian 12 machine, idempotently:
# the Debian packages, and the guest kernel (linux-image-*-cloud-amd64) unpacked
# into .cache/kernel of this checkout (never installed on the host).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(qemu-system-x86 qemu-block-extra qemu-utils tgt sg3-utils libiscsi-bin busybox-static iproute2 python3)
# net/'s integration tests: knotd takes the signed dynamic updates, kdig and
# dig read the zone and the responder, avahi-daemon (on its own D-Bus, in a
# namespace) resolves the mDNS name. The tests start them inside their own
# namespaces; the system services the packages bring must not run on the host
# (avahi would send mDNS from the host's interfaces): see below.
pkgs+=(knot knot-dnsutils bind9-dnsutils avahi-daemon avahi-utils dbus util-linux)
# The GUP benchmark's peer (make bench-gup): three etcd members, each in a
# namespace of its own; etcdctl cross-checks the gateway's latency. The
# packaged etcd service would listen on the host's 127.0.0.1:2379 and 2380:
# it must not run (see below).
pkgs+=(etcd-server etcd-client)
# testbed/nscluster/gup: openssl s_client is the stranger the streams refuse.
pkgs+=(openssl)
# resources/ocf's tests run Debian's OCF agents through the adapter:
# ocf:heartbeat:IPaddr2 (with its send_arp) and ocf-tester come with
# resource-agents, ocf:pacemaker:Dummy with pacemaker-resource-agents (the
# agents only: no pacemaker daemon); ocf-tester's meta-data check needs
# xmllint (libxml2-utils).
pkgs+=(resource-agents pacemaker-resource-agents libxml2-utils)
# The physical disk test: mkfs.ext4 makes the data LUN's filesystem on the
# host, e2fsck (with its libraries) goes into the guest image, and the host
# checks the LUN with e2fsck -n at the end.
pkgs+=(e2fsprogs)
# testbed/systemdrig: systemd-nspawn boots the host's own systemd in a
# throwaway container (the generic_service type's tests talk to it); the
# machines do not run systemd as PID 1.
pkgs+=(systemd systemd-container)
# packaging/'s TestIntegrationDebInstall: debootstrap makes the clean
# Debian 12 root the package is installed into (cached in .cache/debroot);
# groff checks the man pages.
pkgs+=(debootstrap groff-base)
# The failover race's peer (make bench-race): keepalived 2.2.7, two
# instances per rig, each inside a node's namespace, started by the test.
# The packaged service would run VRRP on the host's own interfaces: it must
# not run (see below).
pkgs+=(keepalived)
# The appliance (make appliance, docs/appliance.md): lz4 compresses its
# initramfs, objcopy (binutils) joins the single-file UEFI image onto
# systemd-boot's EFI stub (systemd-boot-efi), and the UEFI boot test runs
# it under OVMF (ovmf).
pkgs+=(lz4 binutils systemd-boot-efi ovmf)
services=(knot avahi-daemon etcd-server keepalived) # packages with a daemon the tests run themselves
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: need root to install: ${missing[*]}" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	apt-get update -q >/dev/null
	# While installing, a policy-rc.d (unless the machine has one) keeps
	# invoke-rc.d and deb-systemd-invoke from starting any service.
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# scripts/deps.sh: no service starts during its install\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
	if grep -q 'scripts/deps.sh' "$policy" 2>/dev/null; then
		rm -f "$policy"
		trap - EXIT
	fi
	# Nor at boot: under systemd, disable the units of the service packages
	# installed just now (a machine that had them keeps its own settings).
	if [ -d /run/systemd/system ]; then
		for p in "${services[@]}"; do
			case " ${missing[*]} " in *" $p "*) ;; *) continue ;; esac
			units=$p.service
			[ "$p" = avahi-daemon ] && units="avahi-daemon.service avahi-daemon.socket"
			[ "$p" = etcd-server ] && units=etcd.service
			# shellcheck disable=SC2086
			systemctl disable --now $units >/dev/null 2>&1 || true
		done
	fi
fi

cache=.cache/kernel
if ! ls "$cache"/boot/vmlinuz-* >/dev/null 2>&1; then
	echo "deps: fetching the guest kernel into $cache"
	[ -n "$(apt-cache policy linux-image-cloud-amd64 | sed -n 's/ *Candidate: //p' | grep -v none)" ] || apt-get update -q >/dev/null
	# The meta package names the versioned image package it depends on.
	img=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
	[ -n "$img" ] || { echo "deps: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
	tmp=$(mktemp -d) && chmod 755 "$tmp"
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download -q "$img" >/dev/null)
	rm -rf "$cache.tmp" && mkdir -p "$cache.tmp"
	dpkg-deb -x "$tmp"/"$img"_*.deb "$cache.tmp"
	rm -rf "$cache" && mv "$cache.tmp" "$cache"
fi
echo "deps: ok ($(basename "$(ls "$cache"/boot/vmlinuz-* | head -n1)"))"
