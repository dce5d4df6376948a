# The go directive is 1.27: let the go command fetch that toolchain through
# the module proxy when the machine has an older one.
export GOTOOLCHAIN := auto

GO       ?= go
DATA_DIR ?= ./data
LISTEN   ?= 127.0.0.1:8008
SERVER   ?= localhost
BIN      := bin

.PHONY: all build run demo test test-short vet lint fmt generate bench fuzz clean deploy-check helm-lint promtool-check

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## run: start the hub on embedded defaults (in-process NATS, SQLite under $(DATA_DIR)),
## with the fictional sample directory and sample accounts loaded
run: build
	$(BIN)/eimis-hub sample --data-dir $(DATA_DIR) --server-name $(SERVER)
	$(BIN)/eimis-hub serve --data-dir $(DATA_DIR) --listen $(LISTEN) --server-name $(SERVER)

## test: every test, PostgreSQL included (a throwaway server is started when
## EIMIS_TEST_POSTGRES_URL is unset)
## demo: the hub plus two demo messengers (App A on :8101, App B on :8102)
demo: build
	scripts/demo.sh

test: vet deploy-check
	$(GO) test -count=1 -timeout 30m ./...

## deploy-check: the Helm chart linted, rendered and decoded strictly into the
## Kubernetes API types, in-process with the helm library, and the alert rules
## and dashboard queries parsed by Prometheus's parser (a module of its own
## under deploy/helm, so helm, k8s.io and prometheus stay out of the hub's go.mod)
deploy-check:
	cd deploy/helm && $(GO) vet ./... && $(GO) test -count=1 ./...

## helm-lint: the same checks with the helm command itself, built through the
## Go module proxy (no helm binary needed on the machine)
HELM_VERSION ?= v3.22.0
helm-lint:
	$(GO) run helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) lint deploy/helm/eimis-hub \
		--set secrets.databaseURL=postgres://x@db/eimis --set secrets.signingKey=k
	$(GO) run helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) template eimis deploy/helm/eimis-hub \
		--set secrets.databaseURL=postgres://x@db/eimis --set secrets.signingKey=k >/dev/null

## promtool-check: the alert rules parsed by promtool, built through the Go
## module proxy
PROMETHEUS_VERSION ?= v0.316.0
promtool-check:
	$(GO) run github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION) check rules deploy/monitoring/alerts.yaml

test-short:
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.0 ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## generate: regenerate the code tables and docs/refusal-codes.md from
## schemas/codes.json (a test fails when they are stale)
generate:
	$(GO) generate ./...

## bench: Go micro-benchmarks (the load generator is cmd/eimis-bench)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: a short run of every fuzz target (seeds always run in make test)
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeBody -fuzztime 30s ./internal/clientapi/
	$(GO) test -run '^$$' -fuzz FuzzBuildEvent -fuzztime 30s ./internal/rooms/
	$(GO) test -run '^$$' -fuzz FuzzDecodeFrame -fuzztime 30s ./bridges/gateway/
	$(GO) test -run '^$$' -fuzz FuzzValidate -fuzztime 30s ./internal/canonjson/
	$(GO) test -run '^$$' -fuzz FuzzDecodeTransaction -fuzztime 30s ./federation/inbound/
	$(GO) test -run '^$$' -fuzz FuzzCheckPDU -fuzztime 30s ./internal/rooms/

clean:
	rm -rf $(BIN)
