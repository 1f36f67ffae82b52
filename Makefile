# stripe-webhooks: `make run` starts the local stack, `make test` runs every test.

SHELL := /bin/bash
GO ?= go
# Every module of the workspace, as ./dir/... patterns (./... stops at module boundaries).
MODULES := $(shell $(GO) list -m -f '{{.Dir}}' 2>/dev/null)
PKGS := $(patsubst $(CURDIR)/%,./%/...,$(MODULES))
EVENT ?= account.updated
TEST_TIMEOUT ?= 18m

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "}; /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/ingest and bin/worker
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ingest ./ingest
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/worker ./worker

IMAGE_REPO ?= stripe-webhooks
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)

.PHONY: images
images: ## Build the container images (prints the commands where no container engine runs)
	@for b in ingest worker; do \
	  cmd="docker build -f deploy/Dockerfile.$$b -t $(IMAGE_REPO)-$$b:$(IMAGE_TAG) ."; \
	  if docker info >/dev/null 2>&1; then echo "$$cmd"; $$cmd || exit 1; \
	  else echo "no container engine answers here; on a machine with one this runs: $$cmd"; fi; \
	done

.PHONY: test
test: lint stripe-mock oauth2-proxy ## Run gofmt, go vet and every test (race detector on) against real Postgres, Redis, stripe-mock and oauth2-proxy
	STRIPE_MOCK=$(STRIPE_MOCK) OAUTH2_PROXY=$(OAUTH2_PROXY) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

# stripe-mock (Stripe's API double, answering from Stripe's OpenAPI description)
# for the tests of pkg/stripeapi; installed from the Go module proxy.
STRIPE_MOCK_VERSION ?= v0.203.0
STRIPE_MOCK := $(CURDIR)/.dev/bin/stripe-mock

.PHONY: stripe-mock
stripe-mock: ## Install stripe-mock, the Stripe API double the tests run, into .dev/bin (once per version)
	@if ! $(GO) version -m $(STRIPE_MOCK) 2>/dev/null | grep -q "^[[:space:]]*mod[[:space:]]*github.com/stripe/stripe-mock[[:space:]]*$(STRIPE_MOCK_VERSION)[[:space:]]"; then \
	  echo "installing stripe-mock $(STRIPE_MOCK_VERSION) into .dev/bin"; \
	  GOBIN=$(CURDIR)/.dev/bin $(GO) install github.com/stripe/stripe-mock@$(STRIPE_MOCK_VERSION); \
	fi

# oauth2-proxy (the authenticating proxy the deploy puts in front of the web
# UI) for the single sign-on tests; installed from the Go module proxy.
OAUTH2_PROXY_VERSION ?= v7.15.6
OAUTH2_PROXY := $(CURDIR)/.dev/bin/oauth2-proxy

.PHONY: oauth2-proxy
oauth2-proxy: ## Install oauth2-proxy, which the single sign-on tests run, into .dev/bin (once per version)
	@if ! $(GO) version -m $(OAUTH2_PROXY) 2>/dev/null | grep -q "^[[:space:]]*mod[[:space:]]*github.com/oauth2-proxy/oauth2-proxy/v7[[:space:]]*$(OAUTH2_PROXY_VERSION)[[:space:]]"; then \
	  echo "installing oauth2-proxy $(OAUTH2_PROXY_VERSION) into .dev/bin"; \
	  GOBIN=$(CURDIR)/.dev/bin $(GO) install github.com/oauth2-proxy/oauth2-proxy/v7@$(OAUTH2_PROXY_VERSION); \
	fi

.PHONY: lint
lint: ## gofmt and go vet over every module
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: tidy
tidy: ## go mod tidy in every module
	@for m in $(MODULES); do echo "tidy $$m"; (cd $$m && $(GO) mod tidy) || exit 1; done

.PHONY: run
run: ## Start the local stack (Postgres and Redis if needed, migrate, ingest, worker, web UI)
	@scripts/run-local.sh

.PHONY: trigger
trigger: ## Send a signed example event to the running ingest: make trigger EVENT=account.updated
	@STRIPE_WEBHOOK_SECRET="$${STRIPE_WEBHOOK_SECRET:-whsec_local_development_only}" $(GO) run ./ingest/cmd/trigger -event "$(EVENT)"

.PHONY: account
account: ## Show the connected accounts and their external accounts in the local database
	@psql "$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/stripe_webhooks?sslmode=disable}" -c \
	  "SELECT stripe_account_id, charges_enabled, payouts_enabled, details_submitted, capabilities, deauthorized_at, updated_at FROM stripe_connected_accounts ORDER BY updated_at DESC LIMIT 5" -c \
	  "SELECT stripe_external_account_id, object, last4, coalesce(bank_name, brand) AS bank_or_brand, currency, status, default_for_currency, deleted_at FROM stripe_external_accounts ORDER BY updated_at DESC LIMIT 5"

.PHONY: bench
bench: build ## Measure ceilings, the ingest alone and with a worker, end-to-end latency, a burst, the drain and an idle worker, in one run; JSON under .bench/
	$(GO) run ./ingest/cmd/bench -bin bin

.PHONY: clean
clean: ## Remove bin/ and the local stack's .dev/
	rm -rf bin .dev
