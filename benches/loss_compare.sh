#!/usr/bin/env bash
# Per-room streams vs one ordered event stream per connection (the TCP-like baseline,
# `[transport] single_event_stream = true`) under packet loss.
#
# Each connection is in 4 rooms (--rooms-per-member 4), so with one stream per connection a lost
# packet of one room's message holds back the other rooms' messages behind it (head-of-line
# blocking); with per-room streams it holds back only its own room's.
#
# For each mode and loss level, RUNS runs (seeds 1..RUNS) of a spawned server on CPU 0 and the
# load generator on CPU 1, 50 ms RTT through the in-process network simulator; then a markdown
# table of medians (min-max) of the runs. JSON summaries go to $OUT.
#
#   cargo build --release && benches/loss_compare.sh
#
# Environment: OUT (default target/loss_compare), RUNS (3), LOSSES ("0 0.01 0.05 0.10"),
# DURATION (8), WARMUP (2), HUDDLE (./target/release/huddle), RUN_TIMEOUT (120 s per run),
# CONGESTION (cubic, or bbr: BBR on the server and in the clients).
set -euo pipefail
cd "$(dirname "$0")/.."

HUDDLE=${HUDDLE:-./target/release/huddle}
OUT=${OUT:-target/loss_compare}
RUNS=${RUNS:-3}
LOSSES=${LOSSES:-"0 0.01 0.05 0.10"}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}

[ -x "$HUDDLE" ] || { echo "no $HUDDLE: run cargo build --release first" >&2; exit 2; }
mkdir -p "$OUT"
CONGESTION=${CONGESTION:-cubic}
design="$OUT/per_room.toml"
baseline="$OUT/single_stream.toml"
printf '[transport]\ncongestion = "%s"\n' "$CONGESTION" >"$design"
printf '[transport]\nsingle_event_stream = true\ncongestion = "%s"\n' "$CONGESTION" >"$baseline"
client=()
[ "$CONGESTION" = bbr ] && client=(--client-bbr)

for mode in per-room single-stream; do
  extra=(--server-config "$design" "${client[@]}")
  [ "$mode" = single-stream ] && extra=(--server-config "$baseline" "${client[@]}")
  for loss in $LOSSES; do
    for run in $(seq 1 "$RUNS"); do
      json="$OUT/${mode}_loss${loss}_run${run}.json"
      rm -f "$json"
      echo "== $mode loss=$loss run $run" >&2
      # Exit code 1 means something was lost or reordered: recorded in the JSON, not fatal here.
      timeout "$RUN_TIMEOUT" taskset -c 1 "$HUDDLE" load --spawn-server --server-taskset 0 \
        "${extra[@]}" --rooms 20 --members 10 --rooms-per-member 4 --rate 20 \
        --priority medium --size 200 --warmup "$WARMUP" --duration "$DURATION" \
        --netsim "loss=$loss,delay-ms=25" --seed "$run" --json "$json" \
        >"$OUT/${mode}_loss${loss}_run${run}.txt" 2>&1 || echo "   (exit $?)" >&2
    done
  done
done

OUT="$OUT" RUNS="$RUNS" LOSSES="$LOSSES" python3 - <<'EOF'
import json, os, statistics

out, runs, losses = os.environ["OUT"], int(os.environ["RUNS"]), os.environ["LOSSES"].split()

def load(mode, loss):
    rs = []
    for run in range(1, runs + 1):
        try:
            with open(f"{out}/{mode}_loss{loss}_run{run}.json") as f:
                rs.append(json.load(f))
        except (OSError, ValueError):
            pass
    return rs

def ms(v):
    return f"{v / 1000:.1f}"

def spread(vals, fmt):
    if not vals:
        return "n/a"
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}-{fmt(max(vals))})"

print("| mode | loss | runs | p50 ms | p99 ms | p99.9 ms | deliveries/s | lost/dup/ooo (all runs) |")
print("|---|---|---|---|---|---|---|---|")
p99 = {}
for mode in ["per-room", "single-stream"]:
    for loss in losses:
        rs = load(mode, loss)
        lat = lambda k: [r["latency_us"][k] for r in rs]
        p99[(mode, loss)] = statistics.median(lat("p99")) if rs else None
        dps = spread([r["deliveries_per_s"] for r in rs], lambda v: f"{v:.0f}")
        bad = "/".join(str(sum(r[k] for r in rs)) for k in ["lost", "duplicates", "out_of_order"])
        print(f"| {mode} | {loss} | {len(rs)} | {spread(lat('p50'), ms)} | {spread(lat('p99'), ms)} "
              f"| {spread(lat('p999'), ms)} | {dps} | {bad} |")
print()
print("| loss | p99 per-room / single-stream |")
print("|---|---|")
for loss in losses:
    a, b = p99[("per-room", loss)], p99[("single-stream", loss)]
    print(f"| {loss} | {a / b:.2f} |" if a and b else f"| {loss} | n/a |")
EOF
