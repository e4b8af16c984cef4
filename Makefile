# Local Kubernetes control plane for integration tests (see tests/cluster/README.md).
#   eval "$$(make -s cluster-up)"   starts it and sets KUBECONFIG and PATH
#   make cluster-down               stops it
.PHONY: cluster-build cluster-up cluster-down

cluster-build:
	tests/cluster/build.sh

cluster-up:
	tests/cluster/up.sh

cluster-down:
	tests/cluster/down.sh

# The two front doors: `make demo` and `make test` (see README.md).
.PHONY: test test-unit demo build lint image
build:
	scripts/ensure-deps.sh npm
	cargo build --release --locked

# gitfaas' container image without Docker or a registry: the release build
# packed as an OCI archive, ${CARGO_TARGET_DIR:-target}/image/gitfaas.tar,
# image gitfaas.local/gitfaas:<version> (scripts/image.sh; README.md says
# how to load or push it).
image:
	scripts/image.sh

test:
	tests/run.sh

# The tier without a cluster or a Redis: the library's unit tests (the API
# server mocked, src/fixtures.rs), the fuzz corpora, and the store suites on
# the embedded backend (tests/store.rs; their Redis run, tests/store_redis.rs,
# needs `make test`'s redis-server). `make test` runs it first.
UNIT_TARGETS = --lib --test fuzz_corpus --test store
test-unit:
	scripts/ensure-deps.sh npm
	cargo test --locked $(UNIT_TARGETS)

demo:
	examples/demo.sh

# Every shell script in the repository: the tracked files whose first line
# is a sh or bash shebang, and the sourced ones (*.sh without one).
SHELL_SCRIPTS = $(shell git ls-files -z | xargs -0 awk 'FNR == 1 { if ($$0 ~ /^\#!.*(ba)?sh/ || FILENAME ~ /\.sh$$/) print FILENAME; nextfile }')

lint:
	scripts/ensure-deps.sh shellcheck
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings
	shellcheck --external-sources --source-path=SCRIPTDIR $(SHELL_SCRIPTS)

# Deployment: the Helm chart deploy/gitfaas and the plain manifests rendered
# from it (deploy/kubernetes/). Scripts and details: tests/helm/.
#   make deploy-check    lint, drift check, server-side dry runs, least-privilege proof
#   make deploy-render   re-render deploy/kubernetes/gitfaas.yaml after a chart change
.PHONY: helm-build deploy-render deploy-check

helm-build:
	tests/helm/build.sh

deploy-render:
	tests/helm/render.sh --write

deploy-check:
	tests/helm/check.sh

# Benchmarks (design.md §11): builds, starts the local control plane unless it
# is up (stops it afterwards), prints one markdown table; see BENCHMARKS.md.
.PHONY: bench
bench:
	scripts/bench.sh

# Fuzzing (fuzz/README.md): both AFL++ targets in parallel for FUZZ_SECONDS
# (default 600); fails when a crash or hang was found and lists the inputs.
#   make fuzz FUZZ_SECONDS=60
.PHONY: fuzz
FUZZ_SECONDS ?= 600
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)
