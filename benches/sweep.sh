#!/usr/bin/env bash
# Latency against load (issue 3): sweeps W1 (1 room x 1,000 members) over 10-200 msg/s
# and one room of 100 over 100..1000 msg/s, server pinned to CPU 0 and the harness to CPU 1,
# RUNS runs per rate, then draws p50/p99 against deliveries/s with `huddle load-curve`.
#
#   cargo build --release && benches/sweep.sh
#   RUNS=1 W1_RATES="10 30" ROOM100_RATES="100 500" benches/sweep.sh   # a quick look
#
# JSON summaries in $OUT/<series>/, one per run; the SVGs and the Markdown tables in $RESULTS;
# the load average before each run in $OUT/loadavg.txt. Every run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
HUDDLE=${HUDDLE:-./target/release/huddle}
OUT=${OUT:-target/sweep}
RESULTS=${RESULTS:-benches/results}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-8}
W1_RATES=${W1_RATES:-10 20 30 50 100 150 200}
ROOM100_RATES=${ROOM100_RATES:-100 200 300 500 700 1000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

mkdir -p "$OUT/w1" "$OUT/room100" "$RESULTS"
: >"$OUT/loadavg.txt"

run() { # series members rate run
    local series=$1 members=$2 rate=$3 i=$4
    echo "$(date -u +%H:%M:%S) $series rate $rate run $i: load average $(cut -d' ' -f1-3 /proc/loadavg)" \
        | tee -a "$OUT/loadavg.txt"
    # Exit code 1 (a run with loss or errors) is kept and shown on the curve.
    timeout 180 taskset -c "$LOAD_CPU" "$HUDDLE" load --spawn-server --server-taskset "$SERVER_CPU" \
        --rooms 1 --members "$members" --rate "$rate" --warmup "$WARMUP" --duration "$DURATION" \
        --seed "$i" --json "$OUT/$series/rate-$rate-run-$i.json" >"$OUT/$series/rate-$rate-run-$i.txt" \
        2>&1 || echo "  exit $? (see $OUT/$series/rate-$rate-run-$i.txt)"
}

# Rates interleaved run by run, so that a noisy minute does not land on one rate only.
for i in $(seq 1 "$RUNS"); do
    for r in $W1_RATES; do run w1 1000 "$r" "$i"; done
    for r in $ROOM100_RATES; do run room100 100 "$r" "$i"; done
done

"$HUDDLE" load-curve --title "W1: one room of 1,000, 10-200 msg/s (server on 1 core)" \
    --series "1 x 1,000=$OUT/w1" --out "$RESULTS/w1-latency-vs-load.svg" >"$RESULTS/w1-latency-vs-load.md"
"$HUDDLE" load-curve --title "One room of 100, 100-1,000 msg/s (server on 1 core)" \
    --series "1 x 100=$OUT/room100" --out "$RESULTS/room100-latency-vs-load.svg" \
    >"$RESULTS/room100-latency-vs-load.md"
"$HUDDLE" load-curve --title "Latency against load, one room (server on 1 core, harness on the other)" \
    --series "1 x 1,000=$OUT/w1" --series "1 x 100=$OUT/room100" \
    --out "$RESULTS/latency-vs-load.svg" >/dev/null
cat "$RESULTS"/w1-latency-vs-load.md "$RESULTS"/room100-latency-vs-load.md
