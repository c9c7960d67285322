# Mailfleet. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -o errexit -o nounset -o pipefail -c

MODULES := deploy devcluster proto pkg mailctl services/storage services/access services/inbound services/submission test
BINARIES := storage access inbound submission
IMAGE_TAG ?= dev
GO_PACKAGES := $(foreach m,$(MODULES),./$(m)/...)

.PHONY: help images build test test-short fuzz-short bench verify run engines fmt e2e-k8s

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build every binary into ./bin
	@mkdir -p bin
	@for b in $(BINARIES); do go build -o bin/$$b ./services/$$b; done
	go build -o bin/mailctl ./mailctl
	go build -o bin/mailfleet-dev ./devcluster
	@echo "binaries in ./bin: $$(ls bin | tr '\n' ' ')"

images: ## build every container image as an OCI tarball into bin/images (no Docker engine needed)
	@mkdir -p bin/static
	@for b in $(BINARIES); do CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/static/$$b ./services/$$b; done
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/static/mailctl ./mailctl
	go run ./deploy/images/cmd/build-images --bin bin/static --out bin/images --tag $(IMAGE_TAG)

engines: ## build the pinned etcd and MinIO used by tests (cached outside the checkout)
	@bash hack/install-etcd.sh >/dev/null
	@bash hack/install-minio.sh >/dev/null

test: verify engines ## run every test (unit, integration and e2e on real etcd and MinIO, short fuzz runs)
	go test -count=1 -timeout 40m $(GO_PACKAGES)
	$(MAKE) fuzz-short

# The in-process targets run a fixed number of inputs (about 10 s each on two
# cores): with a time budget, Go 1.26's fuzz coordinator can fail a healthy
# run with a bare "context deadline exceeded" at the deadline (Go issue
# 75804, fixed in Go 1.27). A count has no deadline to race, and a hanging
# input still fails (each target bounds its own I/O).
fuzz-short: ## a short run of every fuzz target (a long one: FUZZTIME=10m make fuzz-short)
	go test -run '^$$' -fuzz FuzzSession -fuzztime $${FUZZTIME:-10000x} ./services/access/internal/pop3
	go test -run '^$$' -fuzz FuzzIMAPSession -fuzztime $${FUZZTIME:-10s} ./test/e2e
	go test -run '^$$' -fuzz FuzzSMTPSession -fuzztime $${FUZZTIME:-10s} ./test/e2e
	go test -run '^$$' -fuzz FuzzParse -fuzztime $${FUZZTIME:-40000x} ./pkg/mimetree
	go test -run '^$$' -fuzz FuzzEnvelope -fuzztime $${FUZZTIME:-50000x} ./pkg/envelope
	go test -run '^$$' -fuzz FuzzParseCommand -fuzztime $${FUZZTIME:-150000x} ./services/access/internal/imapconn

# Packages whose tests start etcd, MinIO or whole clusters, and the chart
# and image checks (they render the chart with helm for every case and build
# static binaries): not in test-short; `make test` runs them all.
ENGINE_PACKAGES := test/e2e|services/storage/integration|services/storage/internal/(blobstore|etcdtx)
CHECK_PACKAGES := deploy/helm|deploy/images

test-short: ## the fast loop: unit tests only (no engine, no cluster, no chart rendering)
	go test -short -count=1 $$(go list $(GO_PACKAGES) | grep -v -E '/($(ENGINE_PACKAGES)|$(CHECK_PACKAGES))$$')

bench: engines ## benchmarks: storage appends (etcd + MinIO / fs), then the access tier on a real cluster
	go run ./services/storage/cmd/bench
	go test -run '^$$' -bench . -benchtime 1x ./test/e2e

e2e-k8s: ## the chart on a one-node Kubernetes built offline (root; see hack/local-k8s.sh)
	bash hack/local-k8s.sh

verify: ## gofmt, go vet, generated code and go.work up to date
	@bash hack/verify.sh

fmt: ## gofmt every Go file
	gofmt -w $(MODULES)

run: build ## run the whole cluster on 127.0.0.1 (embedded etcd, fs bodies, every tier; data in ./.mailfleet)
	./bin/mailfleet-dev
