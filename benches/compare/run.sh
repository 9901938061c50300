#!/usr/bin/env bash
# Huddle vs Redis 7 pub/sub and NATS 2.9 (issue 3): the same `huddle load` workloads against
# each, server on CPU 0 and the load generator on CPU 1, systems interleaved run by run so that
# the machine's noise falls on all of them alike. Then a markdown table of medians (min-max)
# and the ratios of deliveries per server-CPU-second. JSON summaries go to $OUT.
#
#   cargo build --release --features compare
#   benches/compare/start.sh && benches/compare/run.sh; benches/compare/stop.sh
#
# Environment: OUT (default target/compare), RUNS (3), W1_RATES ("10 30 50": msg/s into one
# room of 1,000), W3_RATE (2: msg/s into each of 100 rooms of 100), SYSTEMS ("huddle redis-tls
# redis nats-tls nats"; also huddle-ack0: Huddle with `ack_eliciting_threshold = 0`, QUIC's
# usual ACK rate, huddle-ack9: `ack_eliciting_threshold = 9` without the loss fallback, and
# huddle-d0: `ack_max_delay_ms = 0`, the clients' own 25 ms ACK delay throughout, huddle-b:
# the server of another build, HUDDLE_B, e.g. one with the system allocator, and huddle-c: the
# server started from the configuration file HUDDLE_C),
# SHAPES ("w1 w3"), WARMUP (2), DURATION (8), RUN_TIMEOUT (120 s),
# STATE (start.sh's, default /tmp/huddle-compare), HUDDLE (./target/release/huddle).
set -euo pipefail
cd "$(dirname "$0")/../.."

HUDDLE=${HUDDLE:-./target/release/huddle}
OUT=${OUT:-target/compare}
RUNS=${RUNS:-3}
W1_RATES=${W1_RATES:-"10 30 50"}
W3_RATE=${W3_RATE:-2}
SYSTEMS=${SYSTEMS:-"huddle redis-tls redis nats-tls nats"}
SHAPES=${SHAPES:-"w1 w3"}
WARMUP=${WARMUP:-2}
DURATION=${DURATION:-8}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
STATE=${STATE:-/tmp/huddle-compare}

[ -x "$HUDDLE" ] || { echo "no $HUDDLE: cargo build --release --features compare" >&2; exit 2; }
[ -e "$STATE/env" ] || { echo "no $STATE/env: run benches/compare/start.sh first" >&2; exit 2; }
# shellcheck disable=SC1091
source "$STATE/env"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

target() { # system -> the flags that point the harness at it
  case $1 in
    huddle) echo "--spawn-server --server-taskset 0" ;;
    # ACK frequency variants: BENCHMARKS.md, "Cost per delivery against the per-connection
    # rate, and ACK frequency".
    huddle-ack0)
      printf '[transport]\nack_eliciting_threshold = 0\n' >"$OUT/ack0.toml"
      echo "--spawn-server --server-taskset 0 --server-config $OUT/ack0.toml" ;;
    huddle-ack9)
      printf '[transport]\nack_eliciting_threshold = 9\nack_loss_fallback_ms = 0\n' >"$OUT/ack9.toml"
      echo "--spawn-server --server-taskset 0 --server-config $OUT/ack9.toml" ;;
    huddle-d0)
      printf '[transport]\nack_max_delay_ms = 0\n' >"$OUT/d0.toml"
      echo "--spawn-server --server-taskset 0 --server-config $OUT/d0.toml" ;;
    huddle-c) echo "--spawn-server --server-taskset 0 --server-config ${HUDDLE_C:?set HUDDLE_C}" ;;
    huddle-b) echo "--spawn-server --server-taskset 0 --server-exe ${HUDDLE_B:?set HUDDLE_B}" ;;
    redis-tls) echo "--backend redis --server $REDIS_TLS_ADDR --server-pid $REDIS_PID --certs-dir $CERTS_DIR" ;;
    redis) echo "--backend redis --plaintext --server $REDIS_ADDR --server-pid $REDIS_PID" ;;
    nats-tls) echo "--backend nats --server $NATS_TLS_ADDR --server-pid $NATS_TLS_PID --certs-dir $CERTS_DIR" ;;
    nats) echo "--backend nats --plaintext --server $NATS_ADDR --server-pid $NATS_PID" ;;
    *) echo "unknown system $1" >&2; exit 2 ;;
  esac
}

cases=()
for shape in $SHAPES; do
  case $shape in
    w1) for r in $W1_RATES; do cases+=("w1-r$r:--rooms 1 --members 1000 --rate $r"); done ;;
    w3) cases+=("w3-r$W3_RATE:--rooms 100 --members 100 --rate $W3_RATE") ;;
  esac
done

for run in $(seq 1 "$RUNS"); do
  for c in "${cases[@]}"; do
    name=${c%%:*} shape=${c#*:}
    for sys in $SYSTEMS; do
      base="$OUT/${name}_${sys}_run${run}"
      rm -f "$base.json"
      echo "== $name $sys run $run" >&2
      # shellcheck disable=SC2046
      timeout "$RUN_TIMEOUT" taskset -c 1 "$HUDDLE" load $(target "$sys") $shape \
        --size 200 --warmup "$WARMUP" --duration "$DURATION" --seed "$run" --json "$base.json" \
        >"$base.txt" 2>&1 || echo "   (exit $?)" >&2
    done
  done
done

names=""
for c in "${cases[@]}"; do names="$names ${c%%:*}"; done
OUT="$OUT" RUNS="$RUNS" SYSTEMS="$SYSTEMS" NAMES="$names" python3 "$(dirname "$0")/summary.py"
