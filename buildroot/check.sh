#!/usr/bin/env bash
# Checks the BR2_EXTERNAL tree.
#
# With a Buildroot checkout named by BUILDROOT_DIR (git clone
# https://gitlab.com/buildroot.org/buildroot), it first runs Buildroot's own
# checks: utils/check-package on every file of the tree (0 warnings wanted; it
# needs python3 with the Debian packages python3-magic and python3-flake8, and
# the shellcheck program for the init script), then `make BR2_EXTERNAL=... <defconfig>`
# for each defconfig in configs/ and `make pairguard-show-info` in that output
# directory, so that the package's Kconfig and .mk evaluate in real Buildroot.
# Without BUILDROOT_DIR it says so and runs only the checks below.
#
# The checks that need no Buildroot: the files the Buildroot manual asks for,
# Kconfig and make syntax basics, what pairguard.mk evaluates to, the init
# script, the defconfig's paths, the kernel fragment, the shipped config (with
# `pairguard check-config`), and that the QEMU hardware-in-the-loop image is
# built from this tree's overlay and init script.
#
# Prints one line per check and exits non-zero if any failed.
#
# shellcheck disable=SC2016 # single-quoted $(...) below are make syntax, not shell
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
fails=0
ok() { printf 'ok   %s\n' "$*"; }
bad() { printf 'FAIL %s\n' "$*"; fails=$((fails + 1)); }
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@" >/tmp/pg-br-check.$$ 2>&1; then ok "$what"; else
		bad "$what"
		sed 's/^/     /' /tmp/pg-br-check.$$
	fi
	rm -f /tmp/pg-br-check.$$
}

# 0. Buildroot's own checks, when a checkout is given.
if [ -z "${BUILDROOT_DIR:-}" ]; then
	ok "BUILDROOT_DIR not set: Buildroot's utils/check-package and make <defconfig> NOT run (set it to a Buildroot checkout)"
elif [ ! -x "$BUILDROOT_DIR/utils/check-package" ]; then
	bad "BUILDROOT_DIR=$BUILDROOT_DIR is not a Buildroot checkout (no utils/check-package)"
else
	py=
	for p in python3 /usr/bin/python3; do
		if "$p" -c 'import magic, flake8' 2>/dev/null; then py=$p; break; fi
	done
	if [ -z "$py" ]; then
		bad "check-package needs python3 with magic and flake8 (apt-get install python3-magic python3-flake8)"
	else
		check_package() {
			local out
			out=$(cd "$root" && find buildroot \( -type f -o -type l \) -print0 | sort -z |
				xargs -0 "$py" "$BUILDROOT_DIR/utils/check-package" -b 2>&1)
			echo "$out"
			grep -q '^0 warnings generated' <<<"$out"
		}
		check "Buildroot's utils/check-package -b: 0 warnings" check_package
	fi
	out=$(mktemp -d)
	for def in "$here"/configs/*_defconfig; do
		name=$(basename "$def")
		defconfig() {
			make -s -C "$BUILDROOT_DIR" BR2_EXTERNAL="$here" O="$out/$name" "$name" &&
				grep -qx 'BR2_PACKAGE_PAIRGUARD=y' "$out/$name/.config" &&
				grep -qx 'BR2_DOWNLOAD_FORCE_CHECK_HASHES=y' "$out/$name/.config"
		}
		check "make BR2_EXTERNAL=buildroot $name: pairguard enabled, hashes enforced" defconfig
		check "make pairguard-show-info evaluates the package in Buildroot" \
			make -s -C "$out/$name" pairguard-show-info
	done
	rm -rf "$out"
fi

# 1. The external tree's skeleton.
for f in external.desc external.mk Config.in; do
	check "$f exists" test -s "$here/$f"
done
check "external.desc names the tree PAIRGUARD" grep -qx 'name: PAIRGUARD' "$here/external.desc"
check "external.desc has a desc" grep -q '^desc: .' "$here/external.desc"
check "external.mk includes the packages' .mk files" \
	grep -qF 'include $(sort $(wildcard $(BR2_EXTERNAL_PAIRGUARD_PATH)/package/*/*.mk))' "$here/external.mk"
for d in "$here"/package/*/; do
	p=$(basename "$d")
	check "package/$p has Config.in and $p.mk" test -s "$d/Config.in" -a -s "$d/$p.mk"
	check "Config.in sources package/$p/Config.in" \
		grep -qF "source \"\$BR2_EXTERNAL_PAIRGUARD_PATH/package/$p/Config.in\"" "$here/Config.in"
done

# 2. Kconfig basics: sources resolve, symbols are BR2_PACKAGE_*, help is
# indented, menus are balanced.
kconfig_ok() {
	local f=$1 menus=0 ifs=0 line src
	while IFS= read -r line; do
		case "$line" in
		source*)
			src=$(sed -E 's/^source[[:space:]]+"?([^"]*)"?/\1/' <<<"$line")
			src=${src/\$BR2_EXTERNAL_PAIRGUARD_PATH/$here}
			[ -f "$src" ] || { echo "$f: source $src: no such file"; return 1; } ;;
		config*|menuconfig*)
			[[ $line =~ ^(menu)?config\ BR2_PACKAGE_[A-Z0-9_]+$ ]] || { echo "$f: bad symbol line: $line"; return 1; } ;;
		menu*) menus=$((menus + 1)) ;;
		endmenu*) menus=$((menus - 1)) ;;
		if\ *) ifs=$((ifs + 1)) ;;
		endif*) ifs=$((ifs - 1)) ;;
		' '*) echo "$f: indented with spaces, Kconfig wants tabs: $line"; return 1 ;;
		esac
	done <"$f"
	if [ $menus != 0 ] || [ $ifs != 0 ]; then
		echo "$f: unbalanced menu/if"
		return 1
	fi
}
for f in "$here/Config.in" "$here"/package/*/Config.in; do
	check "Kconfig basics of ${f#"$here"/}" kconfig_ok "$f"
done
check "BR2_PACKAGE_PAIRGUARD has a prompt and help" \
	bash -c "grep -q '^	bool \"pairguard\"' '$here/package/pairguard/Config.in' && grep -q '^	help' '$here/package/pairguard/Config.in'"

# Real Kconfig parsing when kconfiglib is there (Debian: python3-kconfiglib):
# the tree under a stub of the Buildroot symbols it depends on, and the
# defconfig loaded into it must enable the package (CONFIG_ empty: Buildroot
# symbols carry no CONFIG_ prefix).
if /usr/bin/python3 -c 'import kconfiglib' 2>/dev/null; then
	kconfig_real() {
		local stub
		stub=$(mktemp)
		cat >"$stub" <<KC
mainmenu "Buildroot stub"
config BR2_PACKAGE_HOST_GO_TARGET_ARCH_SUPPORTS
	bool
	default y
config BR2_TOOLCHAIN_HAS_THREADS
	bool
	default $1
menu "External options"
source "\$BR2_EXTERNAL_PAIRGUARD_PATH/Config.in"
endmenu
KC
		CONFIG_='' BR2_EXTERNAL_PAIRGUARD_PATH=$here /usr/bin/python3 - "$stub" "$here/configs/pairguard_qemu_aarch64_virt_defconfig" "$2" <<'PY'
import sys, kconfiglib
k = kconfiglib.Kconfig(sys.argv[1], warn_to_stderr=False)
for w in k.warnings:
    if "undefined symbol" not in w and "unknown symbol" not in w:
        print(w); sys.exit(1)
k.load_config(sys.argv[2])
got = k.syms["BR2_PACKAGE_PAIRGUARD"].str_value
if got != sys.argv[3]:
    print("BR2_PACKAGE_PAIRGUARD =", repr(got), "want", repr(sys.argv[3])); sys.exit(1)
PY
		local rc=$?
		rm -f "$stub"
		return $rc
	}
	check "kconfiglib parses the tree; the defconfig enables pairguard" kconfig_real y y
	check "kconfiglib: without threads pairguard cannot be enabled" kconfig_real n n
else
	ok "kconfiglib not installed (apt-get install python3-kconfiglib): real Kconfig parse skipped"
fi

# 3. pairguard.mk: parse it with GNU make against stubs of Buildroot's
# infrastructure and look at what it sets.
stub=$(mktemp)
cat >"$stub" <<MK
BR2_EXTERNAL_PAIRGUARD_PATH := $here
pkgname := pairguard
PAIRGUARD_PKGDIR := $here/package/pairguard/
golang-package :=
include $here/package/pairguard/pairguard.mk
\$(info SITE=\$(PAIRGUARD_SITE))
\$(info SITE_METHOD=\$(PAIRGUARD_SITE_METHOD))
\$(info GOMOD=\$(PAIRGUARD_GOMOD))
\$(info BUILD_TARGETS=\$(PAIRGUARD_BUILD_TARGETS))
\$(info HOOKS=\$(PAIRGUARD_POST_RSYNC_HOOKS))
\$(info INIT=\$(value PAIRGUARD_INSTALL_INIT_SYSV))
all: ;
MK
if vars=$(make --no-print-directory -f "$stub" 2>&1); then
	ok "pairguard.mk parses with GNU make"
	get() { sed -n "s/^$1=//p" <<<"$vars"; }
	site=$(get SITE)
	check "PAIRGUARD_SITE ($site) is this repository" test -f "$site/go.mod"
	check "PAIRGUARD_SITE_METHOD is local" test "$(get SITE_METHOD)" = local
	mod=$(awk '/^module /{print $2}' "$root/go.mod")
	check "PAIRGUARD_GOMOD is the module path ($mod)" test "$(get GOMOD)" = "$mod"
	check "PAIRGUARD_BUILD_TARGETS ($(get BUILD_TARGETS)) is the daemon's main package" \
		bash -c "grep -q '^package main' '$site/$(get BUILD_TARGETS)'/*.go"
	check "modules are vendored after the rsync" test "$(get HOOKS)" = PAIRGUARD_VENDOR_MODULES
	check "the init script is installed from the package directory" \
		grep -q 'S60pairguard' <<<"$(get INIT)"
	check "no INSTALL_BINS (no longer supported by golang-package)" \
		bash -c "! grep -q '_INSTALL_BINS' '$here/package/pairguard/pairguard.mk'"
	check "golang-package is evaluated last" \
		test "$(grep -v '^[[:space:]]*$' "$here/package/pairguard/pairguard.mk" | tail -1)" = '$(eval $(golang-package))'
else
	bad "pairguard.mk parses with GNU make"
	while IFS= read -r l; do printf '     %s\n' "$l"; done <<<"$vars"
fi
rm -f "$stub"

# 4. The init script.
init=$here/package/pairguard/S60pairguard
check "S60pairguard is not executable (installed with \$(INSTALL) -D -m 0755)" test ! -x "$init"
check "pairguard.mk installs S60pairguard with mode 0755" \
	grep -qF '$(INSTALL) -D -m 0755 $(PAIRGUARD_PKGDIR)/S60pairguard' "$here/package/pairguard/pairguard.mk"
check "S60pairguard's DAEMON names no path" grep -qx 'DAEMON="pairguard"' "$init"
check "S60pairguard is valid sh" sh -n "$init"
if command -v shellcheck >/dev/null; then
	check "shellcheck S60pairguard" shellcheck -s sh "$init"
fi
for a in start stop restart reload; do
	check "S60pairguard handles $a" grep -Eq "^[[:space:]]*(${a}|.*\| ${a}( |\)|\|)|${a} \|)" "$init"
done

# 5. The defconfig and the kernel fragment.
def=$here/configs/pairguard_qemu_aarch64_virt_defconfig
check "defconfig enables the package" grep -qx 'BR2_PACKAGE_PAIRGUARD=y' "$def"
check "defconfig uses BusyBox init" grep -qx 'BR2_INIT_BUSYBOX=y' "$def"
check "defconfig enforces download hashes" grep -qx 'BR2_DOWNLOAD_FORCE_CHECK_HASHES=y' "$def"
for key in BR2_ROOTFS_OVERLAY BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES BR2_GLOBAL_PATCH_DIR; do
	v=$(sed -n "s/^$key=\"\(.*\)\"/\1/p" "$def")
	v=${v//\$(BR2_EXTERNAL_PAIRGUARD_PATH)/$here}
	check "$key exists ($v)" test -e "$v"
done
frag=$here/board/qemu-aarch64-virt/linux.fragment
for opt in CONFIG_PACKET CONFIG_GPIO_CDEV CONFIG_GPIO_PL061 CONFIG_LEDS_CLASS CONFIG_BLK_DEV_NBD CONFIG_WATCHDOG; do
	check "fragment sets $opt=y" grep -qx "$opt=y" "$frag"
done
check "fragment keeps gpio-keys out" bash -c "grep -qx '# CONFIG_KEYBOARD_GPIO is not set' '$frag' && ! grep -q '^CONFIG_KEYBOARD_GPIO=' '$frag'"

# 6. The rootfs overlay.
overlay=$here/board/qemu-aarch64-virt/rootfs-overlay
check "overlay has the default config" test -s "$overlay/etc/pairguard/pairguard.toml"
check "overlay has the hooks directory with executable hooks" \
	bash -c "test -d '$overlay/etc/pairguard/hooks.d' && test -n \"\$(find '$overlay/etc/pairguard/hooks.d' -type f -perm -u+x)\""
if command -v go >/dev/null && [ -d "$root/firmware/cmd/pairguard" ]; then
	check "pairguard check-config accepts the shipped config" \
		bash -c "cd '$root' && go run ./firmware/cmd/pairguard check-config '$overlay/etc/pairguard/pairguard.toml'"
fi

# 7. The hardware-in-the-loop image is built from this tree.
hil=$root/test/hil/run.sh
check "test/hil/run.sh takes the overlay from this tree" \
	grep -qF 'overlay=$root/buildroot/board/qemu-aarch64-virt/rootfs-overlay' "$hil"
check "test/hil/run.sh takes the init script from this tree" \
	grep -qF 'initscript=$root/buildroot/package/pairguard/S60pairguard' "$hil"
img=$root/test/hil/.cache/image/rootfs
if [ -d "$img" ]; then
	same_files() {
		local f rel
		while IFS= read -r -d '' f; do
			rel=${f#"$overlay"/}
			cmp -s "$f" "$img/$rel" || { echo "image's /$rel differs from the overlay"; return 1; }
		done < <(find "$overlay" -type f -print0)
		cmp -s "$init" "$img/etc/init.d/S60pairguard" || { echo "image's S60pairguard differs"; return 1; }
	}
	check "the last HIL image holds the overlay and init script unchanged" same_files
fi

if [ $fails -gt 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
