# flowerd: build, test and benchmark. Every Go command runs with
# GOEXPERIMENT=simd: only then does GoMLX's pure-Go backend use its
# AVX-512/AVX2 matmul (a training step is ~5.5x slower without it). A build
# without it still works, only slower.
export GOEXPERIMENT := simd

GO        ?= go
DATA      ?= $(abspath ../shared/data/flowers17)
TOOLS     := $(abspath .tools/bin)
# Pinned tool versions, installed by `go install` into $(TOOLS) on first use.
BUF_VERSION                ?= v1.75.0
PROTOC_GEN_GO_VERSION      ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.0
GRPCURL_VERSION            ?= v1.9.3
GHZ_VERSION                ?= v0.120.0
# A Python with PyTorch, for bench-torch (Debian 12's python3-torch is 1.13.1).
PYTHON ?= python3
BENCHTIME ?= 3x
BENCH     ?= Variants
PKGS      := ./...
# Packages that execute no GoMLX graph run under the race detector (GoMLX's
# pure-Go executor trips it on its own). Test packages run one at a time
# (-p 1): each trains full-size networks on every core, and two at once on a
# 2-core machine only slow each other down.
RACE_PKGS := ./model/dataset/ ./checkpoints/ ./cmd/flowerd/ ./clients/ ./cmd/flowerctl/ ./cmd/flowerdata/

export FLOWERD_DATA ?= $(DATA)

.PHONY: all build run test test-short e2e race bench bench-torch bench-load deploy-validate study data docker lint vet fmt proto clean

all: lint test

build:
	$(GO) build -o bin/ ./cmd/...

## run: the server on localhost:50051 (FLOWERD_ADDR), store in ./flowerd-data
## (FLOWERD_DATA_DIR), dataset ../shared/data/flowers17 (FLOWERD_DATASET),
## backend go (GOMLX_BACKEND). The environment passes through.
run:
	$(GO) run ./cmd/flowerd

## proto: regenerate pb/ from pb/flowerd/v1/*.proto with the pinned buf and plugins.
proto: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc
	cd pb && $(TOOLS)/buf lint && $(TOOLS)/buf generate

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(TOOLS)/grpcurl:
	GOBIN=$(TOOLS) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
$(TOOLS)/ghz:
	GOBIN=$(TOOLS) $(GO) install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

## test: vet, the whole suite (with the end-to-end test of the binary driven by
## grpcurl), the race detector on the packages it applies to, and the
## Kubernetes manifests' validation.
test: vet $(TOOLS)/grpcurl
	GRPCURL=$(TOOLS)/grpcurl $(GO) test -p 1 -count=1 -timeout 25m $(PKGS)
	$(GO) test -count=1 -race -short -timeout 10m $(RACE_PKGS)
	$(MAKE) deploy-validate

## e2e: build the binary, start it, drive it with grpcurl, stop it with SIGTERM.
e2e: $(TOOLS)/grpcurl
	GRPCURL=$(TOOLS)/grpcurl $(GO) test -count=1 -run TestEndToEnd -v ./cmd/flowerd/

## test-short: the quick suite (skips full-size training runs).
test-short:
	$(GO) test -count=1 -short $(PKGS)

## bench: per variant at full size — classify latency (batch 1), inference img/s
## (batch 16), training img/s (batch 32) and GFLOP/s, on $$GOMLX_BACKEND (default go).
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -timeout 60m ./model/

## bench-torch: make bench's benchmark, then the same network in PyTorch on the
## same machine (every core; the GPU if there is one), and flowerd's figures as
## ratios to PyTorch's. Needs PyTorch: on Debian 12, `apt-get install
## python3-torch libopenblas0-pthread`, then PYTHON=/usr/bin/python3.
bench-torch:
	$(GO) test -run '^$$' -bench 'Variants' -benchtime $(BENCHTIME) -timeout 60m ./model/ >bench-variants.out; \
	rc=$$?; cat bench-variants.out; exit $$rc
	$(PYTHON) deploy/gpu/alexnet_torch.py --flowerd bench-variants.out

## bench-load: Classify at 1, 4 and 16 concurrent clients (ghz), batching on and off.
bench-load: build $(TOOLS)/ghz
	GHZ=$(TOOLS)/ghz BIN=bin/flowerd deploy/bench-load.sh

## docker: the CPU and GPU images (needs a Docker engine; none runs on the
## build machines here, so this target is untested in CI).
docker:
	docker build -f deploy/Dockerfile -t flowerd:cpu .
	docker build -f deploy/Dockerfile.gpu -t flowerd:gpu .

## data: download the Oxford 17 Flowers archive (or read ARCHIVE=17flowers.tgz),
## check every image's MD5 and sort them into data/flowers17/<class>/.
data:
	$(GO) run ./cmd/flowerdata -out data/flowers17 $(if $(ARCHIVE),-archive $(ARCHIVE))

STUDY_EPOCHS   ?= 100
STUDY_PATIENCE ?= 10
STUDY_SEED     ?= 1
STUDY_FLAGS    ?=

## study: train the five variants through a running server (`make run` in another
## terminal, or FLOWERD_ADDR), evaluate them on the test split, and write
## docs/study/README.md and figure2.png. STUDY_FLAGS=-skip-train regenerates the
## report from the store; STUDY_FLAGS=-from-scratch=false resumes an interrupted study.
study: build
	bin/flowerctl study -epochs $(STUDY_EPOCHS) -patience $(STUDY_PATIENCE) -seed $(STUDY_SEED) -out docs/study $(STUDY_FLAGS)

## deploy-validate: render deploy/k8s (kustomize) and validate every object offline
## against the Kubernetes schemas and what flowerd needs (its own Go module).
deploy-validate:
	cd deploy/k8s/validate && $(GO) test -count=1 ./...

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change (make fmt):"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	$(GO) clean -testcache
