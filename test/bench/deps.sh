#!/usr/bin/env bash
# Installs, besides what test/deps.sh installs, the tools the benchmarks
# under test/bench compare Pairguard with or drive: keepalived (LAN 1),
# stress-ng (the load test), rsync (the mirror), sqlite3 and e2fsprogs (the
# mixed datastore image), fio and nbdkit (online replication).
set -euo pipefail
bash "$(dirname "$0")/../deps.sh"
need=()
for pc in keepalived:keepalived stress-ng:stress-ng rsync:rsync sqlite3:sqlite3 \
	e2fsprogs:mkfs.ext4 fio:fio nbdkit:nbdkit iproute2:tc nftables:nft; do
	pkg=${pc%%:*} cmd=${pc##*:}
	command -v "$cmd" >/dev/null 2>&1 || [[ " ${need[*]} " == *" $pkg "* ]] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "bench-deps: missing ${need[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "bench-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
