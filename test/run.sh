#!/usr/bin/env bash
# The whole test suite: `make test` and CI run this.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
t0=$(date +%s)
stage() { echo "== $* ($(( $(date +%s) - t0 ))s so far)"; }
# The dissector's tests skip without tshark; here it must be there.
for cmd in tshark qemu-aarch64-static qemu-arm-static; do
	command -v "$cmd" >/dev/null || { echo "$cmd is missing: run make deps (as root)" >&2; exit 1; }
done
stage "go vet"
go vet ./...
stage "generated code is current (go generate: stringer)"
go generate ./...
if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet -- '*_string.go'; then
	git diff --stat -- '*_string.go'
	echo "go generate changed the files above: commit them" >&2
	exit 1
fi
stage "unit, fuzz seeds, namespace pairs, the Wireshark dissector on a live capture"
go test -count=1 -timeout 20m ./...
stage "unit tests on arm64 and armv7 under qemu-user-static"
make -s test-arm
stage "Buildroot external tree (BUILDROOT_DIR=${BUILDROOT_DIR:-unset})"
bash buildroot/check.sh
stage "cross builds (static, CGO_ENABLED=0)"
make -s arm64 armv7 build
ls -l bin/
if [ "${PAIRGUARD_SKIP_HIL:-}" = 1 ]; then
	stage "QEMU pair skipped (PAIRGUARD_SKIP_HIL=1)"
elif [ -f test/hil/run.sh ]; then
	stage "QEMU pair: cold boot, power loss, a filesystem on NBD through a power loss"
	make -s hil-ci
fi
echo "== all tests passed in $(( $(date +%s) - t0 ))s"
