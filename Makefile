# Airlock — make help lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/airlock
DEMO ?= demo
# Packages with goroutines shared between requests run under the race detector.
RACE_PKGS := ./internal/audit/... ./internal/differencing/... ./internal/store/... ./internal/sqlop/... ./internal/govern/... ./internal/dp/... ./internal/engine/... ./internal/keys/... ./internal/netlimit/... ./internal/breaker/... ./internal/admission/... ./internal/federation/... ./internal/anon/... ./internal/psi/... ./internal/collab/... ./internal/secagg/... ./internal/fedjob/...

.PHONY: help build run run-federation run-cleanroom run-demand run-fl fl-curve deps test test-race vet fmt-check bench stress fuzz reference clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/airlock
	$(GO) build -o $(BIN) ./cmd/airlock

run: build ## start the server on the demo workspace (HTTP 127.0.0.1:8080)
	@test -f $(DEMO)/airlock.yaml || ./$(BIN) demo init $(DEMO)
	./$(BIN) serve --workspace $(DEMO)

FED ?= fed
run-federation: build ## start the federation demo's four nodes on loopback (research 8090/psql 5440, stmary 8091, stjohn 8092, mercy 8093)
	@test -f $(FED)/research/airlock.yaml || ./$(BIN) demo federation $(FED)
	@trap 'kill 0' INT TERM EXIT; \
	./$(BIN) serve --workspace $(FED)/research --http 127.0.0.1:8090 --pg 127.0.0.1:5440 --access-log off & \
	./$(BIN) serve --workspace $(FED)/stmary --http 127.0.0.1:8091 --pg '' --access-log off & \
	./$(BIN) serve --workspace $(FED)/stjohn --http 127.0.0.1:8092 --pg '' --access-log off & \
	./$(BIN) serve --workspace $(FED)/mercy --http 127.0.0.1:8093 --pg '' --access-log off & \
	wait

CR ?= cleanroom
run-cleanroom: build ## start the clean-room demo's two banks on loopback (northbank 8095, partnerbank 8096), signed and approved
	@test -f $(CR)/northbank/airlock.yaml || { ./$(BIN) demo cleanroom $(CR) && \
	  for b in northbank partnerbank; do ./$(BIN) collab sign --workspace $(CR)/$$b fraud-consortium && \
	  ./$(BIN) collab approve --workspace $(CR)/$$b fraud-consortium fraud_overlap_by_country && \
	  ./$(BIN) collab approve --workspace $(CR)/$$b fraud-consortium flagged_amounts_by_country; done; }
	@trap 'kill 0' INT TERM EXIT; \
	./$(BIN) serve --workspace $(CR)/northbank --http 127.0.0.1:8095 --pg '' --access-log off & \
	./$(BIN) serve --workspace $(CR)/partnerbank --http 127.0.0.1:8096 --pg '' --access-log off & \
	wait

DEMAND ?= demand
run-demand: build ## start the federated-analytics demo: four retailers (8101-8104) and the demand exchange (8100), the job approved
	@test -f $(DEMAND)/exchange/airlock.yaml || { ./$(BIN) demo demand $(DEMAND) && \
	  for n in acme bolt corner dash; do ./$(BIN) fl approve --workspace $(DEMAND)/$$n $(DEMAND)/demand-weekly.yaml; done; }
	@trap 'kill 0' INT TERM EXIT; \
	./$(BIN) serve --workspace $(DEMAND)/exchange --http 127.0.0.1:8100 --pg '' --access-log off & \
	for n in acme:8101 bolt:8102 corner:8103 dash:8104; do \
	  ./$(BIN) serve --workspace $(DEMAND)/$${n%%:*} --http 127.0.0.1:$${n##*:} --pg '' --access-log off & done; \
	wait

FLDEMO ?= fl
run-fl: build ## start the federated-learning demo: three census offices (8111-8113) and the research lab (8110), the job approved
	@test -f $(FLDEMO)/lab/airlock.yaml || { ./$(BIN) demo fl $(FLDEMO) && \
	  for n in private selfemp public; do ./$(BIN) fl approve --workspace $(FLDEMO)/$$n $(FLDEMO)/salary-class.yaml; done; }
	@trap 'kill 0' INT TERM EXIT; \
	./$(BIN) serve --workspace $(FLDEMO)/lab --http 127.0.0.1:8110 --pg '' --access-log off & \
	for n in private:8111 selfemp:8112 public:8113; do \
	  ./$(BIN) serve --workspace $(FLDEMO)/$${n%%:*} --http 127.0.0.1:$${n##*:} --pg '' --access-log off & done; \
	wait

fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet ./...

deps: ## install and start what the tests need (PostgreSQL, psql, psycopg2) if missing
	scripts/ensure-postgres.sh

test: deps fmt-check vet ## the whole suite: unit, integration (DuckDB, PostgreSQL, psql), attack and oracle suites, race
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)

bench: build ## benchmarks; figures go to docs/benchmarks.md
	scripts/bench.sh

fl-curve: ## the FL demo's accuracy against ε per node: the table for docs/federated-jobs.md and docs/fl-accuracy-epsilon.png
	$(GO) run ./tools/flcurve -png docs/fl-accuracy-epsilon.png

stress: deps ## long runs: statistics with 10x the samples, SIGKILL under load with reconciliation, floods, store outages with two replicas on a PostgreSQL of its own, fuzzing
	AIRLOCK_STRESS=1 $(GO) test -count=1 -timeout 60m ./internal/dp/... ./internal/audit/... ./internal/store/...
	AIRLOCK_STRESS=1 $(GO) test -count=1 -timeout 60m -run TestEmpiricalPrivacyThroughTheServer ./internal/server/
	AIRLOCK_STRESS=1 $(GO) test -count=5 -timeout 60m -run 'TestStress|TestCrashKeepsAuditConsistent|TestListenersAreBounded|TestStoreOutage|TestOverloadIsAnsweredAndAudited' ./internal/server/
	$(MAKE) fuzz FUZZTIME=2m

FUZZTIME ?= 60s
fuzz: deps ## fuzz the wire protocol, the HTTP body decoder and the SQL planner for FUZZTIME each
	$(GO) test -run '^$$' -fuzz FuzzWireMessages -fuzztime $(FUZZTIME) ./internal/server
	$(GO) test -run '^$$' -fuzz FuzzDecodeQuery -fuzztime $(FUZZTIME) ./internal/httpapi
	$(GO) test -run '^$$' -fuzz FuzzParsePlan -fuzztime $(FUZZTIME) ./internal/query

reference: ## regenerate docs/workspace-reference.md and docs/schema/ from internal/workspace
	AIRLOCK_WRITE_REFERENCE=1 $(GO) test -count=1 -run TestReferenceIsCurrent ./internal/workspace/reference

clean: ## remove build output
	rm -rf bin
