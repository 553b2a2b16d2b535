#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, if missing;
# arguments PACKAGE:COMMAND add more (test/bench/deps.sh).
set -euo pipefail
need=()
for pc in iproute2:ip iputils-ping:ping procps:pgrep tcpdump:tcpdump make:make tshark:tshark \
	qemu-user-static:qemu-aarch64-static qemu-user-static:qemu-arm-static \
	libnbd-bin:nbdcopy python3-libnbd:nbdsh qemu-utils:qemu-img fio:fio nbdkit:nbdkit \
	nftables:nft "$@"; do
	pkg=${pc%%:*} cmd=${pc##*:}
	command -v "$cmd" >/dev/null 2>&1 || [[ " ${need[*]} " == *" $pkg "* ]] || need+=("$pkg")
done
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "deps: Go 1.26 or newer is needed (https://go.dev/dl); it is not a Debian package of that version" >&2
	exit 1
fi
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing ${need[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# tshark asks whether non-root users may capture: no.
	echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
