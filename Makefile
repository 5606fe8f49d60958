# immune — make help lists the targets.

GO          ?= go
BIN         ?= bin/immune
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 2m
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/immune
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/immune

DEMOFLAGS ?=

.PHONY: demo
demo: build ## the whole story on one machine: a simulated fleet, a good deploy promoted, a bad one reverted (no servers needed; DEMOFLAGS="--speed 4 --keep")
	$(BIN) demo $(DEMOFLAGS)

.PHONY: demo-offline
demo-offline: build ## the statistics on files: compare, rules check and test, a backtest on a real series
	./scripts/demo.sh $(BIN)

.PHONY: test
test: ## everything: unit, R fixtures, examples, integration tests against real servers (installs them)
	./scripts/test.sh

.PHONY: test-short
test-short: ## unit tests only (-short), no servers
	$(GO) test -short -count=1 ./...

.PHONY: lint
lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) $$($(GO) list ./... | grep -v '/internal/zk$$') # internal/zk: a patched copy of a library (its README)

.PHONY: bench
bench: ## statistics and store benchmarks (figures go to docs/performance.md)
	$(GO) test -run '^$$' -bench . -benchmem ./detector/ ./collector/...

.PHONY: bench-accuracy
bench-accuracy: ## accuracy: immune vs reference detectors on NAB, Gaussian, events/trials and concurrent (NAB machines) series (tables for docs/performance.md)
	@mkdir -p bin
	$(GO) run ./bench/accuracy -json bin/bench-accuracy.jsonl

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each
	./scripts/fuzz.sh $(FUZZTIME)

.PHONY: fixtures
fixtures: ## regenerate the R fixtures (needs r-base-core)
	cd detector/testdata && for f in *.R; do echo "Rscript $$f"; Rscript $$f || exit 1; done

.PHONY: clean
clean: ## remove build output
	rm -rf bin
