#!/usr/bin/env bash
# make test: everything a change must pass, on a fresh machine.
#  1. installs the servers the integration tests run against (Debian packages),
#  2. builds, vets, checks the example rule files,
#  3. runs every test with the race detector, with a real Prometheus and ZooKeeper
#     started on loopback for the integration tests (IMMUNE_REQUIRE_SERVERS=1 turns a
#     missing server into a failure instead of a skip).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

echo "== go build"
go build -o bin/immune ./cmd/immune
echo "== go vet"
go vet ./...
echo "== immune rules check / rules test on examples/"
# (examples/config/ holds configs of immune run, parsed by internal/config's tests.)
./bin/immune rules check $(ls examples/*.yaml examples/*/*.yaml | grep -v -e '\.test\.yaml$' -e '^examples/config/')
./bin/immune rules test examples/*.test.yaml

echo "== go test -race (with real servers)"
export IMMUNE_REQUIRE_SERVERS=1
# The browser test's screenshots of the on-call pages are kept here.
export IMMUNE_ARTIFACTS=${IMMUNE_ARTIFACTS:-$PWD/bin/artifacts}
mkdir -p "$IMMUNE_ARTIFACTS"
./scripts/prometheus.sh run -- ./scripts/zookeeper.sh run -- go test -race -count=1 -timeout 20m ./...
