#!/usr/bin/env bash
# Installs, besides what test/deps.sh installs, the tools the benchmarks
# under test/bench compare Pairguard with or drive: keepalived (LAN 1),
# stress-ng (the load test), rsync (the mirror), sqlite3 and e2fsprogs (the
# mixed datastore image).
set -euo pipefail
exec bash "$(dirname "$0")/../deps.sh" keepalived:keepalived stress-ng:stress-ng rsync:rsync \
	sqlite3:sqlite3 e2fsprogs:mkfs.ext4
