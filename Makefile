# reportmailer. `make demo` and `make test` are all a fresh clone needs
# (Go 1.26 and Node 20 on the PATH).

GO      ?= go
BIN     := bin
DEMO    := demo-out
NPM_STAMP := node_modules/.package-lock.json

.PHONY: all build test demo demo-serve bench lint clean

all: build

build: ## the production binary
	$(GO) build -o $(BIN)/reportmailer ./cmd/reportmailer

$(BIN)/devstack: FORCE
	$(GO) build -o $(BIN)/devstack ./cmd/devstack

# The npm emulators the integration tests run (fauxqs, aws-ses-v2-local),
# pinned by package-lock.json.
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

test: $(NPM_STAMP) ## every test, emulators included
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 8m ./...

demo: build $(BIN)/devstack ## run the real worker against an embedded local stack
	$(BIN)/devstack demo -reportmailer $(BIN)/reportmailer -out $(DEMO)

demo-serve: build $(BIN)/devstack ## the demo, then keep the stack, inbox and edge up
	$(BIN)/devstack serve -reportmailer $(BIN)/reportmailer -out $(DEMO)

bench: build $(BIN)/devstack ## Go benchmarks plus an end-to-end load run
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(BIN)/devstack load -reportmailer $(BIN)/reportmailer -out $(DEMO)-load

clean:
	rm -rf $(BIN) $(DEMO) $(DEMO)-load

FORCE:
