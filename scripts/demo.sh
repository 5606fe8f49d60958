#!/usr/bin/env bash
# make demo-offline: what immune does with a deploy's numbers, on example
# files, no servers needed. (make demo runs the live story: immune demo.)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/immune}
ex=examples/compare

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "A deploy of checkout: its p99 latency and its errors, two hours before"
echo "(baseline) against the first half hour after (canary)."
step "$bin" compare --test mann-whitney $ex/latency-baseline.txt $ex/latency-canary.txt
step "$bin" compare --test mann-whitney --alternative greater --format json $ex/latency-baseline.txt $ex/latency-canary.txt
step "$bin" compare --test proportion --alternative greater $ex/errors-baseline.txt $ex/errors-canary.txt
echo
echo "The rule files a team writes for its service, checked like promtool checks Prometheus rules:"
step "$bin" rules check examples/checkout.yaml examples/api-gateway.yaml
echo
echo "Their unit tests: input series, deploys, and the verdicts the rules must reach:"
step "$bin" rules test -v examples/checkout.test.yaml
echo
echo "What the rules would have done to 55 past deploys of a real EC2 CPU series:"
nab=../shared/bench/nab/data/realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv
if [ -f "$nab" ]; then
  step "$bin" backtest --rules examples/backtest/cpu.yaml --data "$nab" --deploys examples/backtest/deploys.csv
fi
