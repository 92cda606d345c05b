# posagent — build, demo, test and release entry points.
#
#   make run     the whole demo on the embedded broker
#   make test    everything CI runs (CI=true makes optional tools mandatory)
#
# Other targets: build lint fuzz cross test-arm bench fleet ci clean.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO            ?= go
MODULE        := github.com/posagent/posagent
FUZZTIME      ?= 10s
SMOKE_FUZZTIME ?= 5s
TEST_TIMEOUT  ?= 20m
BENCH_OUT     ?= bench.out
# Screenshots of the browser tests (internal/browsertest); the directory ignores itself in git.
ARTEFACTS     ?= artefacts
export POSAGENT_ARTEFACTS ?= $(CURDIR)/$(ARTEFACTS)
ARGS          ?=

# Tools installed with `go install` (staticcheck) live here.
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)

# Version stamp. The date is the commit's, not the build's, so that rebuilding a commit gives
# the same binary. Without git (a source tarball) the fallbacks apply.
ifndef VERSION
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
endif
ifndef COMMIT
COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
endif
ifndef DATE
DATE := $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
endif
BUILDINFO := $(MODULE)/agent/buildinfo
XFLAGS    := -X $(BUILDINFO).Version=$(VERSION) -X $(BUILDINFO).Commit=$(COMMIT) -X $(BUILDINFO).Date=$(DATE)

# Release binaries: static, no local paths, no symbol tables.
CROSS_ENV   := CGO_ENABLED=0
CROSS_FLAGS := -trimpath -ldflags '-s -w $(XFLAGS)'
AGENT_PKG   ?= ./cmd/posagent

.PHONY: build run test ci lint fmt-check vet staticcheck unit fuzz test-arm cross bench fleet clean

## build: every command under cmd/ into bin/
build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(XFLAGS)' -o bin/ ./cmd/...

## run: the demo (TMS, agent, broker, host and devices in one process tree)
run: build
	./bin/posdemo $(ARGS)

## test: formatting, vet, staticcheck, race tests, fuzz smoke, ARM tests, release builds
test:
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(SMOKE_FUZZTIME)
	@if command -v qemu-aarch64-static >/dev/null && command -v qemu-arm-static >/dev/null; then \
		$(MAKE) --no-print-directory test-arm; \
	elif [ "$${CI:-}" = true ]; then \
		echo "test-arm: qemu-user-static is required when CI=true" >&2; exit 1; \
	else \
		echo "test-arm: skipped, qemu-user-static is not installed"; \
	fi
	@$(MAKE) --no-print-directory cross
	@echo "make test: all steps passed"

## ci: test with CI strictness (staticcheck, qemu and Mosquitto required)
ci:
	@CI=true POSAGENT_TEST_BROKER=$${POSAGENT_TEST_BROKER:-mosquitto} $(MAKE) --no-print-directory test

## lint: gofmt, go vet, staticcheck
lint: fmt-check vet staticcheck

fmt-check:
	@echo "== gofmt"
	@files=$$(find . -name '*.go' -not -path './.*' -not -path '*/testdata/*' -print); \
	bad=$$(gofmt -l $$files); \
	if [ -n "$$bad" ]; then echo "gofmt needed on:" >&2; echo "$$bad" >&2; exit 1; fi

vet:
	@echo "== go vet"
	$(GO) vet ./...

staticcheck:
	@echo "== staticcheck"
	@if command -v staticcheck >/dev/null; then \
		staticcheck ./...; \
	elif [ "$${CI:-}" = true ]; then \
		echo "staticcheck is required when CI=true (go install honnef.co/go/tools/cmd/staticcheck@v0.8.2)" >&2; exit 1; \
	else \
		echo "staticcheck: skipped, not installed"; \
	fi

## unit: all tests with the race detector
unit:
	@echo "== go test -race"
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

## fuzz: every FuzzXxx target of every package for FUZZTIME (default 10s) each
fuzz:
	@echo "== fuzz ($(FUZZTIME) per target)"
	@GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

## test-arm: unit tests for linux/arm64 and linux/arm (GOARM=7) under qemu-user
test-arm:
	@echo "== go test linux/arm64 (qemu)"
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) test -short -count=1 -timeout $(TEST_TIMEOUT) -exec qemu-aarch64-static ./...
	@echo "== go test linux/arm GOARM=7 (qemu)"
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) test -short -count=1 -timeout $(TEST_TIMEOUT) -exec qemu-arm-static ./...

## cross: release builds of the agent into dist/
cross:
	@echo "== cross builds ($(VERSION))"
	@mkdir -p dist
	$(CROSS_ENV) GOOS=linux GOARCH=arm64 $(GO) build $(CROSS_FLAGS) -o dist/posagent-linux-arm64 $(AGENT_PKG)
	$(CROSS_ENV) GOOS=linux GOARCH=arm GOARM=7 $(GO) build $(CROSS_FLAGS) -o dist/posagent-linux-armv7 $(AGENT_PKG)
	$(CROSS_ENV) GOOS=android GOARCH=arm64 $(GO) build $(CROSS_FLAGS) -o dist/posagent-android-arm64 $(AGENT_PKG)
	@ls -l dist/

## bench: all benchmarks into $(BENCH_OUT), then printed
bench:
	@status=0; $(GO) test -run='^$$' -bench=. -benchmem ./... > $(BENCH_OUT) 2>&1 || status=$$?; \
	cat $(BENCH_OUT); exit $$status

## fleet: fleet-scale runs against Mosquitto on loopback → docs/fleet.md (about 30 minutes)
fleet:
	GO=$(GO) scripts/fleet.sh

clean:
	rm -rf bin dist $(BENCH_OUT) $(ARTEFACTS)
