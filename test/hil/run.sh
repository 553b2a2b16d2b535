#!/usr/bin/env bash
# Hardware-in-the-loop pair: build the guest image and run the QEMU scenarios.
#
#   test/hil/run.sh [go test flags...]      e.g. test/hil/run.sh -run 'ColdBoot|PowerLoss'
#
# 1. installs missing host packages with apt-get (qemu-system-arm, kmod, cpio, e2fsprogs,
#    device-tree-compiler, iproute2, iputils-ping);
# 2. fetches Debian's arm64 kernel and busybox-static with apt-get download, through a
#    separate arm64 APT state under test/hil/.cache (the host's APT state is untouched);
# 3. cross-compiles pairguard for arm64 (PAIRGUARD_HIL_STANDIN=1 builds the stand-in
#    test/hil/standin instead, for work on the harness itself);
# 4. builds the initramfs: BusyBox, the kernel modules, test/hil/rootfs (the HIL-only
#    /init, inittab and rcS), then the files the Buildroot package installs: the
#    rootfs overlay buildroot/board/qemu-aarch64-virt/rootfs-overlay and the init
#    script buildroot/package/pairguard/S60pairguard, and /usr/bin/pairguard;
# 5. runs `go test ./test/hil` with PAIRGUARD_HIL_IMAGE pointing at the result (the
#    harness dumps QEMU's device tree and names the PL061 lines from the board file
#    board/boards/qemu-virt-arm64.toml).
#
# Downloads are cached in test/hil/.cache; PAIRGUARD_HIL_REFRESH=1 fetches them again.
# Needs root (taps, bridges and network namespaces).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=$here/.cache
img=$cache/image
overlay=$root/buildroot/board/qemu-aarch64-virt/rootfs-overlay
initscript=$root/buildroot/package/pairguard/S60pairguard
kernel_meta=linux-image-arm64
t0=$(date +%s)

log() { printf 'hil: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (taps, bridges, network namespaces)"

# 1. Host packages.
need=()
for pc in qemu-system-arm:qemu-system-aarch64 kmod:depmod cpio:cpio e2fsprogs:mkfs.ext4 \
	device-tree-compiler:fdtput iproute2:ip iputils-ping:ping; do
	command -v "${pc#*:}" >/dev/null 2>&1 || need+=("${pc%%:*}")
done
# QEMU's default NIC (used while dumping the device tree) wants the iPXE ROM,
# a Recommends of qemu-system-arm that --no-install-recommends leaves out.
[ -e /usr/share/qemu/efi-virtio.rom ] || [ -e /usr/lib/ipxe/qemu/efi-virtio.rom ] || need+=(ipxe-qemu)
if [ ${#need[@]} -gt 0 ]; then
	log "installing host packages: ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 2. Guest packages (arm64), fetched without installing them.
apto=(-oAPT::Architecture=arm64 -oAPT::Architectures=arm64
	"-oDir::State::Lists=$cache/apt-lists" "-oDir::Cache=$cache/apt-cache"
	-oDebug::NoLocking=1)
mkdir -p "$cache/apt-lists/partial" "$cache/apt-cache/archives/partial" "$cache/debs"
if [ -n "${PAIRGUARD_HIL_REFRESH:-}" ] || ! ls "$cache"/debs/linux-image-*.deb >/dev/null 2>&1 ||
	! ls "$cache"/debs/busybox-static_*.deb >/dev/null 2>&1; then
	log "fetching the arm64 kernel and busybox-static"
	apt-get "${apto[@]}" update -qq
	kpkg=$(apt-cache "${apto[@]}" depends "$kernel_meta" | awk '/Depends: linux-image-/{print $2; exit}')
	[ -n "$kpkg" ] || die "cannot resolve $kernel_meta"
	rm -f "$cache"/debs/*.deb
	(cd "$cache/debs" && apt-get "${apto[@]}" download "$kpkg" busybox-static 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
fi
kdeb=$(ls "$cache"/debs/linux-image-*.deb | head -1)
bdeb=$(ls "$cache"/debs/busybox-static_*.deb | head -1)
[ -f "$kdeb" ] && [ -f "$bdeb" ] || die "guest packages missing in $cache/debs"
if [ ! -f "$cache/x/.stamp" ] || [ "$kdeb" -nt "$cache/x/.stamp" ] || [ "$bdeb" -nt "$cache/x/.stamp" ]; then
	rm -rf "$cache/x"
	mkdir -p "$cache/x/k" "$cache/x/b"
	dpkg -x "$kdeb" "$cache/x/k"
	dpkg -x "$bdeb" "$cache/x/b"
	touch "$cache/x/.stamp"
fi
kver=$(ls "$cache/x/k/lib/modules" | head -1)
[ -n "$kver" ] || die "no kernel modules in $kdeb"

# 3. Pairguard for arm64.
rm -rf "$img"
mkdir -p "$img"
if [ -n "${PAIRGUARD_HIL_STANDIN:-}" ]; then
	pkg=./test/hil/standin
	log "building the STAND-IN (PAIRGUARD_HIL_STANDIN set), not the real daemon"
else
	pkg=./firmware/cmd/pairguard
	[ -d "$root/firmware/cmd/pairguard" ] || die "firmware/cmd/pairguard does not exist yet (PAIRGUARD_HIL_STANDIN=1 boots the stand-in)"
fi
(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -ldflags='-s -w' -o "$img/pairguard" "$pkg")

# 4. Initramfs.
st=$img/rootfs
mkdir -p "$st/bin" "$st/sbin" "$st/usr/bin" "$st/usr/sbin" "$st/etc/init.d" "$st/lib/modules/$kver"
cp "$cache/x/b/bin/busybox" "$st/bin/busybox"
cp -a "$here/rootfs/." "$st/"
while read -r m; do
	case "$m" in '' | '#'*) continue ;; esac
	m=${m#ship }
	install -D -m 0644 "$cache/x/k/lib/modules/$kver/kernel/$m" "$st/lib/modules/$kver/kernel/$m"
done <"$here/rootfs/etc/hil/modules"
for f in modules.order modules.builtin modules.builtin.modinfo; do
	[ -f "$cache/x/k/lib/modules/$kver/$f" ] && cp "$cache/x/k/lib/modules/$kver/$f" "$st/lib/modules/$kver/"
done
depmod -b "$st" "$kver"
# What the Buildroot package and overlay install, from the same files:
cp -a "$overlay/." "$st/"
install -D -m 0755 "$initscript" "$st/etc/init.d/S60pairguard"
install -D -m 0755 "$img/pairguard" "$st/usr/bin/pairguard"
mkdir -p "$st/var/lib/pairguard"
(cd "$st" && find . -print0 | sort -z | cpio --null -o -H newc --owner=0:0 --quiet) | gzip -1 >"$img/initramfs.cpio.gz"
cp "$cache/x/k/boot/vmlinuz-$kver" "$img/vmlinuz"

printf '%s\n' "$kver" >"$img/kernel-version"
log "image ready in $(($(date +%s) - t0)) s: $img ($(du -h "$img/initramfs.cpio.gz" | cut -f1) initramfs, kernel $kver)"

# 5. Scenarios.
cd "$root"
PAIRGUARD_HIL_IMAGE=$img go test -count=1 -v -timeout 30m "$@" ./test/hil/
log "done in $(($(date +%s) - t0)) s"
