#!/usr/bin/env bash
# Measures `immune backtest` over one NAB file with 100 deploys: wall time
# and peak memory (docs/performance.md). Usage: scripts/bench-backtest.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
nab=../shared/bench/nab/data/realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv
go build -o bin/immune ./cmd/immune
deploys=$(mktemp --suffix .csv)
trap 'rm -f "$deploys"' EXIT
# 100 deploys, 39 samples apart from sample 48 (the file has 4 032 samples).
awk -F, 'NR > 1 { ts[NR-2] = $1 } END { print "id,time"; for (i = 0; i < 100; i++) printf "d%03d,%s\n", i, ts[48 + i*39 - 1] }' "$nab" > "$deploys"
for i in $(seq "$runs"); do
  /usr/bin/time -f "run $i: %e s wall, %M KB peak RSS" \
    ./bin/immune backtest -q --rules examples/backtest/cpu.yaml --data "$nab" --deploys "$deploys" > /dev/null
done
