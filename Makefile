# Pairguard: the single entry point. `make` builds for the host; the other
# targets are listed by `make help`.

GO       ?= go
BIN      := bin
PKG      := ./firmware/cmd/pairguard
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/pairguard/pairguard/firmware/daemon.Version=$(VERSION)
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -ldflags='$(LDFLAGS)'

.PHONY: all build arm64 armv7 test unit test-arm wireshark deps bench-deps demo hil hil-ci hil-powercut fuzz bench cover clean help

all: build

build:
	$(GOBUILD) -o $(BIN)/pairguard $(PKG)

arm64:
	GOOS=linux GOARCH=arm64 $(GOBUILD) -o $(BIN)/pairguard-arm64 $(PKG)

armv7:
	GOOS=linux GOARCH=arm GOARM=7 $(GOBUILD) -o $(BIN)/pairguard-armv7 $(PKG)

# deps installs what the tests and the demo need on a Debian machine (as root).
deps:
	@bash test/deps.sh

# bench-deps adds the tools the side-by-side benchmarks in test/bench need.
bench-deps:
	@bash test/bench/deps.sh

# test: every unit test, the pairs in network namespaces (root), the fuzz
# seeds, the cross builds and the QEMU pair's cold-boot, power-loss and online-filesystem scenarios.
test: deps
	bash test/run.sh

# unit: the tests that need neither root nor QEMU.
unit:
	$(GO) test ./...

# test-arm: the unit tests of the product packages built for arm64 and armv7
# and run under qemu-user-static (go test -exec): 32-bit ARM is where
# unaligned 64-bit atomics and int overflows show up. Tests that cannot work
# under user-mode emulation skip with the reason; PAIRGUARD_TEST_EMULATED=1
# tells them where they run.
ARM_PKGS := ./board/... ./drivers/... ./firmware/... ./sdcard/...
test-arm: deps
	PAIRGUARD_TEST_EMULATED=1 GOARCH=arm64 $(GO) test -count=1 -timeout 15m -exec qemu-aarch64-static $(ARM_PKGS)
	PAIRGUARD_TEST_EMULATED=1 GOARCH=arm GOARM=7 $(GO) test -count=1 -timeout 15m -exec qemu-arm-static $(ARM_PKGS)

# wireshark: the dissector's tests through tshark, with a live capture of a
# pair in namespaces (root).
wireshark: deps
	$(GO) test -count=1 ./firmware/frame/wireshark
	$(GO) test -count=1 -run 'TestCaptureDecodesInTshark' ./test/pair

demo: deps
	$(GO) run ./test/demo

hil: deps
	bash test/hil/run.sh

# hil-powercut: the spare's QEMU killed during resync rounds (not in CI; PAIRGUARD_HIL_POWERCUTS=N, default 30).
hil-powercut: deps
	PAIRGUARD_HIL_POWERCUT=1 bash test/hil/run.sh -timeout 120m -run '^TestPowerCutSpare$$'

# hil-ci: the QEMU scenarios CI runs (cold boot, power loss, a filesystem on the online
# datastore through a power cut: 21-35 s on 2 shared cores under TCG).
hil-ci: deps
	bash test/hil/run.sh -run '^(TestColdBoot|TestPowerLossOfMain|TestOnlineFilesystem)$$'

fuzz:
	$(GO) test ./firmware/frame -run='^$$' -fuzz=FuzzDecode -fuzztime=$${FUZZTIME:-5m}

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./firmware/... ./drivers/... ./sdcard/...

cover:
	$(GO) test -cover ./firmware/engine

clean:
	rm -rf $(BIN)

help:
	@echo "make            build bin/pairguard for the host"
	@echo "make arm64      static binary for arm64 (bin/pairguard-arm64)"
	@echo "make armv7      static binary for armv7 (bin/pairguard-armv7)"
	@echo "make demo       a main and a spare in namespaces; the main dies (root)"
	@echo "make test       all tests, namespaces and the QEMU pair included (root)"
	@echo "make unit       unit tests only"
	@echo "make test-arm   unit tests for arm64 and armv7 under qemu-user-static"
	@echo "make wireshark  the Wireshark dissector through tshark, a live capture included (root)"
	@echo "make hil        every QEMU hardware-in-the-loop scenario (root)"
	@echo "make fuzz       fuzz the frame decoder (FUZZTIME=5m)"
	@echo "make bench      benchmarks"
	@echo "make bench-deps the tools test/bench compares with (keepalived, rsync, ...; root)"
