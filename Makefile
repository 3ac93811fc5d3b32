# reportmailer. `make demo` and `make test` are all a fresh clone needs
# (Go 1.26 and Node 20 on the PATH).

GO      ?= go
BIN     := bin
DEMO    := demo-out
NPM_STAMP := node_modules/.package-lock.json
PREVIEW := preview-out
# Debian's Chromium, for the browser tests and reportmailer-screenshot.
CHROMIUM := /usr/bin/chromium

# Stamped into the binary (reportmailer version), here and in the image.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
IMAGE   ?= reportmailer:$(VERSION)

.PHONY: all build test race demo demo-serve preview bench python-recipe-deps clean image deploy-check

all: build

build: ## the production binary
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/reportmailer ./cmd/reportmailer

$(BIN)/devstack: FORCE
	$(GO) build -o $(BIN)/devstack ./cmd/devstack

# Screenshots of previewed emails; a binary of its own so that the
# production one carries no headless-browser client.
$(BIN)/reportmailer-screenshot: FORCE
	$(GO) build -o $(BIN)/reportmailer-screenshot ./cmd/reportmailer-screenshot

# The npm emulators the integration tests run (fauxqs, aws-ses-v2-local),
# pinned by package-lock.json.
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# Installed only when missing; CI runs as root on Debian.
$(CHROMIUM):
	@echo "installing Debian's chromium (apt-get) for the browser tests"
	@{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/tmp/reportmailer-chromium.log 2>&1 \
		|| { cat /tmp/reportmailer-chromium.log; echo "could not install chromium: run as root on Debian, or install it yourself"; exit 1; }
	@rm -f /tmp/reportmailer-chromium.log

test: $(NPM_STAMP) $(CHROMIUM) ## every test, emulators and a headless browser included
	$(GO) mod tidy -diff
	$(GO) vet ./...
	@$(MAKE) --no-print-directory -j4 test-module test-slow-faults test-slow-ops test-kumo

# The main module's tests. cmd/reportmailer's cannot run in parallel
# within one process (the SDK reads its endpoints from the environment),
# and most of their time is spent waiting on emulators and visibility
# timeouts, so its slowest tests run in processes of their own beside
# the rest, and test-kumo's build beside them all; go vet, before them,
# has already compiled the dependencies on both cores. A name in
# SLOW_FAULTS or SLOW_OPS is skipped in test-module and run, in every
# package that has it, by its own target.
SLOW_FAULTS := ^TestFaults$$
SLOW_OPS    := ^(TestRedrive|TestResend.*|TestHistoryAndStatus|TestDrainEndToEnd)$$
.PHONY: test-module test-slow-faults test-slow-ops
test-module:
	$(GO) test -count=1 -timeout 8m -skip '$(SLOW_FAULTS)|$(SLOW_OPS)' ./...
test-slow-faults:
	$(GO) test -count=1 -timeout 8m -run '$(SLOW_FAULTS)' ./cmd/reportmailer ./internal/awsproxy
test-slow-ops:
	$(GO) test -count=1 -timeout 8m -run '$(SLOW_OPS)' ./cmd/reportmailer ./worker/preflight

# The key-rotation and KMS tests against kumo (CloudFront edge, KMS), in
# a module of their own so that kumo's dependencies stay out of go.mod.
.PHONY: test-kumo
test-kumo:
	cd test/kumo && $(GO) mod tidy -diff && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...

race: $(NPM_STAMP) $(CHROMIUM) ## the tests under the race detector (slower; not part of make test)
	$(GO) test -race -count=1 -timeout 8m ./...

demo: build $(BIN)/devstack ## run the real worker against an embedded local stack
	$(BIN)/devstack demo -reportmailer $(BIN)/reportmailer -out $(DEMO)

demo-serve: build $(BIN)/devstack ## the demo, then keep the stack, inbox and edge up
	$(BIN)/devstack serve -reportmailer $(BIN)/reportmailer -out $(DEMO)

# A throwaway CloudFront key for the preview example.
$(PREVIEW)/cloudfront-example.pem:
	@mkdir -p $(PREVIEW)
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $@ 2>/dev/null

preview: build $(BIN)/reportmailer-screenshot $(CHROMIUM) $(PREVIEW)/cloudfront-example.pem ## render examples/preview/events.json as emails and screenshots
	PREVIEW_CLOUDFRONT_KEY="$$(cat $(PREVIEW)/cloudfront-example.pem)" $(BIN)/reportmailer preview \
		-config examples/preview/reportmailer.yaml -schedule on-demand -event examples/preview/events.json -out $(PREVIEW)/each
	PREVIEW_CLOUDFRONT_KEY="$$(cat $(PREVIEW)/cloudfront-example.pem)" $(BIN)/reportmailer preview \
		-config examples/preview/reportmailer.yaml -schedule daily -event examples/preview/events.json -out $(PREVIEW)/digest
	$(BIN)/reportmailer-screenshot $(PREVIEW)/each $(PREVIEW)/digest

# The load runs of docs/benchmarks.md: each times the production binary
# and, where it says -baseline, a bare-SDK loop on the same stack, so that
# every figure is a ratio from one run. docs/benchmarks.md gives the
# last run's time.
LOAD := $(BIN)/devstack load -reportmailer $(BIN)/reportmailer
# The Python recipe that the RSA load runs compare with (devstack load
# -python); installed only when python3 cannot import its modules.
python-recipe-deps:
	@python3 -c 'import boto3, jinja2, cryptography' 2>/dev/null || { \
		echo "installing Debian's python3-boto3, python3-jinja2, python3-cryptography (apt-get) for the Python recipe"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-boto3 python3-jinja2 python3-cryptography; } >/tmp/reportmailer-python.log 2>&1 \
		|| { cat /tmp/reportmailer-python.log; echo "could not install them: run as root on Debian, or install boto3, jinja2 and cryptography yourself"; exit 1; }; }

bench: build $(BIN)/devstack python-recipe-deps ## Go benchmarks plus end-to-end load runs (docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 0.2s ./...
	$(LOAD) -out $(DEMO)-load/ecdsa-2 -events 20000 -key ecdsa -gomaxprocs 2 -cpuprofile $(DEMO)-load/ecdsa-2/cpu.prof -memprofile $(DEMO)-load/ecdsa-2/mem.prof
	$(LOAD) -out $(DEMO)-load/ecdsa-2-small -events 2000 -key ecdsa -gomaxprocs 2 -baseline=false
	$(LOAD) -out $(DEMO)-load/ecdsa-1 -events 1000 -key ecdsa -gomaxprocs 1
	$(LOAD) -out $(DEMO)-load/rsa-2 -events 1000 -key rsa -gomaxprocs 2 -python
	$(LOAD) -out $(DEMO)-load/rsa-1 -events 1000 -key rsa -gomaxprocs 1 -baseline=false -python
	$(LOAD) -out $(DEMO)-load/ecdsa-2-20ms -events 1000 -key ecdsa -gomaxprocs 2 -latency 20ms
	$(LOAD) -out $(DEMO)-load/ecdsa-1-20ms -events 1000 -key ecdsa -gomaxprocs 1 -latency 20ms -baseline=false
	$(LOAD) -out $(DEMO)-load/rsa-2-20ms -events 1000 -key rsa -gomaxprocs 2 -latency 20ms -baseline=false
	$(LOAD) -out $(DEMO)-load/pace-14 -events 60 -baseline=false -latency 20ms -max-send-rate 14
	$(LOAD) -out $(DEMO)-load/pace-100 -events 320 -baseline=false -latency 20ms -max-send-rate 100
	$(LOAD) -out $(DEMO)-load/pace-500 -events 1600 -baseline=false -latency 20ms -max-send-rate 500
	$(LOAD) -out $(DEMO)-load/pace-100-replicas -events 320 -baseline=false -latency 20ms -max-send-rate 100 -replicas 2
	$(LOAD) -out $(DEMO)-load/quota-replicas -events 320 -baseline=false -latency 20ms -max-send-rate 100 -replicas 2 -max-24h-send 300
	$(LOAD) -out $(DEMO)-load/traces -events 300 -baseline=false -traces 3
	$(LOAD) -out $(DEMO)-load/traces-20ms -events 300 -baseline=false -latency 20ms -traces 3
	$(LOAD) -out $(DEMO)-load/traces-sampled -events 300 -baseline=false -traces 3 -trace-sample 0.1
	$(LOAD) -out $(DEMO)-load/traces-sampled-20ms -events 300 -baseline=false -latency 20ms -traces 3 -trace-sample 0.1

image: ## the production image (deploy/Dockerfile), with Docker
	@command -v docker >/dev/null 2>&1 || { echo "make image: docker is not installed; the image is built with deploy/Dockerfile by any OCI builder"; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine is running (docker info failed), so no image was built; start one, or build deploy/Dockerfile elsewhere"; exit 1; }
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

deploy-check: ## the deploy/ tests: Terraform (HCL), kustomize overlays, image, systemd unit
	$(GO) test -count=1 ./deploy/...
	@if command -v terraform >/dev/null 2>&1; then \
		echo "terraform fmt -check -recursive deploy/terraform"; \
		terraform fmt -check -recursive -diff deploy/terraform 2>/dev/null || { echo "make deploy-check: run terraform fmt -recursive deploy/terraform"; exit 1; }; \
	else echo "make deploy-check: terraform is not on the PATH; skipped terraform fmt -check"; fi

clean:
	rm -rf $(BIN) $(DEMO) $(DEMO)-load $(PREVIEW)

FORCE:
