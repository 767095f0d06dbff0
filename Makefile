# The Makefile is the single entry point for building and testing; CI runs
# `make test` through .ci/run, and the Dockerfile builds with `make build`.

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Static binaries, exactly as the Dockerfile builds them.
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
FUZZTIME ?= 15s
# The tools the tests need (apt packages, a real kube-apiserver and etcd,
# helm), built once and cached outside the clone (test/tools/README.md).
TOOLS_ENV = eval "$$(bash test/tools/install.sh --print-env)"

.DEFAULT_GOAL := help
.PHONY: help build run run-node test test-node test-busy measure-node tools lint vet fmt-check unit fuzz bench clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/injector, bin/mesh-init and bin/mesh-cni (static, CGO off, as in the Dockerfile)
	$(GOBUILD) -o $(BIN)/injector ./cmd/injector
	$(GOBUILD) -o $(BIN)/mesh-init ./cmd/mesh-init
	$(GOBUILD) -o $(BIN)/mesh-cni ./cmd/mesh-cni

run: ## the injector on a local kube-apiserver + etcd with the chart's webhook: sample pods and what they get (the first run builds kube-apiserver, etcd and helm: 5-14 min)
	eval "$$(bash test/tools/install.sh --only controlplane --print-env)" && eval "$$(bash test/tools/install.sh --only helm --print-env)" && $(GO) run ./test/demo

# The demo pods of `make run` running on a real node (docs/node.md). Not
# part of `make run`: the node adds the kubelet's build and the images' to
# its first run (about 7.5 more minutes), and needs root.
run-node: ## make run's demo pods actually Running on a real kubelet (root; first run builds the kubelet: ~8 min more)
	$(TOOLS_ENV) && $(GO) run ./test/node/demo

test: tools fmt-check unit fuzz ## run every test: gofmt, go vet and all tiers with -race (netns, e2e, node), brief fuzzing

# The node tier alone (docs/node.md): injected pods started by a real
# kubelet with containerd, runc and CNI. As root; `make test` runs it too.
test-node: tools ## the node tier alone: injected pods on a real kubelet, containerd and CNI (root; first run builds the kubelet)
	$(TOOLS_ENV) && $(GO) test -race -vet=all -count=1 -timeout 25m -v ./test/node/...

# The unit tiers (every package that needs no root, control plane or node)
# while BUSY_N CPU burners (test/busy; default twice the cores) keep the
# machine busy on purpose: the suite must not depend on an idle machine
# (docs/testing.md). 6 to 8 minutes on 2 cores, so `make test` leaves it
# out. The burner is built before it starts, so the build is not slowed.
BUSY_N    ?= $(shell echo $$((2 * $$(nproc))))
UNIT_PKGS  = $$($(GO) list ./... | grep -v -e /test/e2e -e /test/netns -e "/test/node$$")

test-busy: ## the unit tiers with -race while BUSY_N CPU burners (default 2x cores) keep the machine busy
	$(GO) build -o $(BIN)/busy ./test/busy
	$(BIN)/busy -n $(BUSY_N) -- $(GO) test -race -count=1 -timeout 25m $(UNIT_PKGS)

# The node tier's heavy measurements in full (docs/lossless.md): every
# rollout case with 3 replicas, one at a time, and 20 pods per start/stop
# series. Without the race detector, which would slow the measuring client.
measure-node: tools ## docs/lossless.md's measurements in full (root; about 22 min)
	$(TOOLS_ENV) && SIDECAR_INJECTOR_NODE_MEASURE=full $(GO) test -count=1 -timeout 60m -v \
		-run '^(TestLosslessRollouts|TestStartAndStopTimes|TestTeardownLeavesTheHostAsItWas)$$' ./test/node/

tools: ## install and build the test prerequisites (cached)
	bash test/tools/install.sh

lint: vet fmt-check ## go vet and gofmt

vet: ## go vet ./...
	$(GO) vet ./...

fmt-check: ## fail when gofmt would change a file
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# -vet=all runs every go vet analyzer on every package (each has tests) as
# part of the race build: one compile of the large dependency graph instead
# of a second one for a separate `go vet ./...`.
unit: ## go test -race -vet=all ./... (every tier; needs `make tools`)
	$(TOOLS_ENV) && $(GO) test -race -vet=all -count=1 -timeout 25m ./...

# -fuzzminimizetime: Go minimizes every new interesting input for up to 60 s
# by default, during which the workers run no new inputs; a CI run keeps no
# corpus, so brief minimization leaves the fuzz time to fuzzing (5,341
# executions and 28 new inputs in 15 s instead of 7 and none).
fuzz: ## fuzz the admission handler briefly (FUZZTIME each)
	$(GO) test -run '^$$' -fuzz '^FuzzHandlerPod$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./webhook/
	$(GO) test -run '^$$' -fuzz '^FuzzHandlerReview$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./webhook/

bench: ## admission benchmarks with allocations
	$(GO) test -run '^$$' -bench . -benchmem ./webhook/

clean: ## remove build output
	rm -rf $(BIN)
