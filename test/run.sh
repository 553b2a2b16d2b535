#!/usr/bin/env bash
# The whole test suite: `make test` and CI run this.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
t0=$(date +%s)
echo "== go vet"
go vet ./...
echo "== unit, fuzz seeds and namespace pairs"
go test -count=1 -timeout 20m ./...
echo "== cross builds (static, CGO_ENABLED=0)"
make -s arm64 armv7 build
ls -l bin/
if [ "${PAIRGUARD_SKIP_HIL:-}" = 1 ]; then
	echo "== QEMU pair skipped (PAIRGUARD_SKIP_HIL=1)"
elif [ -f test/hil/run.sh ]; then
	echo "== QEMU pair: cold boot and power loss"
	make -s hil-ci
fi
echo "== all tests passed in $(( $(date +%s) - t0 ))s"
