GO ?= go
PKGS_PURE = ./topology/... ./reconcile/... ./internal/watch/...

.PHONY: all build test test-unit test-live test-kernel test-fixture test-random vet fmt-check fuzz bench clean-check

all: build test

build:
	$(GO) build -o bin/netplan-lab ./cmd/netplan-lab

## test: everything CI runs. Unit tests with -race (no root), then the live
## tests against the real kernel (root; they skip, saying so, without it).
test: vet fmt-check test-unit test-live test-fixture clean-check

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test-unit:
	$(GO) test -race -count=1 $(PKGS_PURE) ./cmd/...

SHELL := /bin/bash

test-live:
	$(GO) test -race -count=1 -v ./internal/... ./labtest/... 2>&1 | tee /tmp/netplan-lab-live.log | grep -E '^(--- |ok|FAIL|PASS|panic)|SKIP|skipped'; exit $${PIPESTATUS[0]}

## test-kernel: the live tests again under Debian's stock kernel in qemu
## (TCG), for what this machine's kernel lacks (ipvlan). Installs qemu,
## busybox-static and the kernel package itself. Fails if the tests inside
## fail; skips, loudly, only if qemu cannot start at all.
test-kernel:
	bash scripts/test-kernel.sh
	@$(MAKE) --no-print-directory clean-check

## test-fixture: examples/fixture, a module of its own that uses labtest
## as a project would (root: it builds labs).
test-fixture:
	cd examples/fixture && $(GO) test -race -count=1 -v ./... 2>&1 | grep -E '^(--- |ok|FAIL|PASS|panic)|SKIP|_test.go:[0-9]+:'; exit $${PIPESTATUS[0]}

## test-random: the randomized edit test and the fake-versus-real
## differential test with new seeds and more steps (a failing seed is
## printed: keep it in internal/live/testdata/differential-seeds).
test-random:
	NETPLAN_LAB_SEED=random NETPLAN_LAB_RANDOM_STEPS=1000 NETPLAN_LAB_DIFF_STEPS=1000 \
		$(GO) test -count=1 -v -timeout 60m -run 'TestRandomEdits|TestFakeKernelMatchesRealKernel' ./internal/live
	@$(MAKE) --no-print-directory clean-check

## clean-check: the tests left no namespace behind.
clean-check:
	@left=$$(ls /run/netns 2>/dev/null | grep -E '^(npl-test-|npl-bench-|npl-lt-|t[0-9a-f]{4}-|lt[0-9a-f]{6}-)' || true); \
	if [ -n "$$left" ]; then echo "tests left namespaces behind: $$left"; exit 1; fi; \
	left=$$(ls /etc/netns 2>/dev/null | grep -E '^(npl-test-|npl-bench-|npl-lt-|t[0-9a-f]{4}-|lt[0-9a-f]{6}-)' || true); \
	if [ -n "$$left" ]; then echo "tests left hosts files behind under /etc/netns: $$left"; exit 1; fi; \
	left=$$(ls /run/netplan-lab/sysctls 2>/dev/null | grep -E '^(npl-test-|npl-bench-|npl-lt-)' || true); \
	if [ -n "$$left" ]; then echo "tests left sysctl records behind under /run/netplan-lab/sysctls: $$left"; exit 1; fi; \
	for d in /etc/netns/.netplan-lab/*; do \
		[ -e "$$d" ] || continue; \
		if [ -z "$$(find /etc/netns -maxdepth 1 -lname ".netplan-lab/$${d##*/}")" ]; then echo "a lab's shared hosts file with no namespace left: $$d"; exit 1; fi; \
	done

## fuzz: run the YAML decoder/validator fuzzer for a while (seeds run in test).
fuzz:
	$(GO) test ./topology -run '^$$' -fuzz FuzzParse -fuzztime 60s

## bench: netplan-lab (whole CLI processes) against an equivalent `ip` script,
## N = 10, 100, 1000, 3000; 10 000 bare namespaces; memory for a 100k file.
## Pins and hosts files on tmpfs in a mount namespace of the benchmark's own
## (scripts/bench-fs.sh says why); BENCH_MACHINE_FS=1: on the machine's own.
BENCH_RUN = $(if $(filter 1,$(BENCH_MACHINE_FS)),,scripts/bench-fs.sh)
bench:
	$(BENCH_RUN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench/ | tee bench/last.txt
