#!/usr/bin/env bash
# Per-room streams vs one ordered event stream per connection (the TCP-like baseline,
# `[transport] single_event_stream = true`) under packet loss.
#
# Each connection is in ROOMS_PER_MEMBER rooms (default 4), so with one stream per connection a
# lost packet of one room's message holds back the other rooms' messages behind it (head-of-line
# blocking); with per-room streams it holds back only its own room's.
#
# For each mode and loss level, RUNS runs (seeds 1..RUNS) of a spawned server on CPU 0 and the
# load generator on CPU 1, 50 ms RTT through the in-process network simulator; then a markdown
# table of medians (min-max) of the runs. JSON summaries go to $OUT. SUMMARY_ONLY=1 only prints
# the table from the JSON already in $OUT (same environment as the runs).
#
#   cargo build --release && benches/loss_compare.sh
#
# Environment: OUT (default target/loss_compare), RUNS (3), LOSSES ("0 0.01 0.05 0.10"),
# DURATION (8), WARMUP (2), HUDDLE (./target/release/huddle), RUN_TIMEOUT (120 s per run),
# CONGESTION (cubic, or bbr: BBR on the server and in the clients), and the shape: ROOMS (20),
# MEMBERS (10 per room; each member is its own connection, so ROOMS x MEMBERS connections),
# ROOMS_PER_MEMBER (4: member j of room i also joins the next ROOMS_PER_MEMBER-1 rooms, so every
# room has MEMBERS x ROOMS_PER_MEMBER members), RATE (20 messages/s per room), DELAY_MS (25 each
# way, 50 ms RTT), STALL_TIMEOUT_MS (2000: the client library's stall watchdog, 0 turns it off),
# MODES ("per-room single-stream"; also ack0, ack9, ack9-fixed, and ack9-dN for
# `ack_max_delay_ms = N`, ack9-d0 being the clients' own 25 ms).
# E.g. the W3 shape, 100 rooms of 100 (10,000 connections; see BENCHMARKS.md for why these
# settings):
#
#   ROOMS=100 MEMBERS=100 RATE=0.1 WARMUP=20 DURATION=10 STALL_TIMEOUT_MS=0 RUN_TIMEOUT=300 \
#     OUT=target/loss_compare_w3 benches/loss_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

HUDDLE=${HUDDLE:-./target/release/huddle}
OUT=${OUT:-target/loss_compare}
RUNS=${RUNS:-3}
LOSSES=${LOSSES:-"0 0.01 0.05 0.10"}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
ROOMS=${ROOMS:-20}
MEMBERS=${MEMBERS:-10}
ROOMS_PER_MEMBER=${ROOMS_PER_MEMBER:-4}
RATE=${RATE:-20}
DELAY_MS=${DELAY_MS:-25}
STALL_TIMEOUT_MS=${STALL_TIMEOUT_MS:-2000}

[ -x "$HUDDLE" ] || { echo "no $HUDDLE: run cargo build --release first" >&2; exit 2; }
mkdir -p "$OUT"
CONGESTION=${CONGESTION:-cubic}
MODES=${MODES:-"per-room single-stream"}
for mode in $MODES; do
  case $mode in
    per-room) extra_toml="" ;;
    single-stream) extra_toml="single_event_stream = true" ;;
    ack0) extra_toml="ack_eliciting_threshold = 0" ;;
    ack9) extra_toml="ack_eliciting_threshold = 9" ;;
    ack9-fixed) extra_toml=$'ack_eliciting_threshold = 9\nack_loss_fallback_ms = 0' ;;
    ack9-d[0-9]*) extra_toml="ack_max_delay_ms = ${mode#ack9-d}" ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  printf '[transport]\ncongestion = "%s"\n%s\n' "$CONGESTION" "$extra_toml" >"$OUT/$mode.toml"
done
client=()
[ "$CONGESTION" = bbr ] && client=(--client-bbr)

# The modes alternate run by run, so that a change in the machine's background load (other
# processes on the same cores) falls on both alike rather than on one mode's block of runs.
[ "${SUMMARY_ONLY:-0}" = 1 ] && LOSSES_RUN="" || LOSSES_RUN=$LOSSES
for loss in $LOSSES_RUN; do
  for run in $(seq 1 "$RUNS"); do
    for mode in $MODES; do
      extra=(--server-config "$OUT/$mode.toml" "${client[@]}")
      json="$OUT/${mode}_loss${loss}_run${run}.json"
      rm -f "$json"
      echo "== $mode loss=$loss run $run ($(date +%T), load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
      # Exit code 1 means something was lost or reordered: recorded in the JSON, not fatal here.
      timeout "$RUN_TIMEOUT" taskset -c 1 "$HUDDLE" load --spawn-server --server-taskset 0 \
        "${extra[@]}" --rooms "$ROOMS" --members "$MEMBERS" --rooms-per-member "$ROOMS_PER_MEMBER" \
        --rate "$RATE" --priority medium --size 200 --warmup "$WARMUP" --duration "$DURATION" \
        --client-stall-timeout-ms "$STALL_TIMEOUT_MS" \
        --netsim "loss=$loss,delay-ms=$DELAY_MS" --seed "$run" --json "$json" \
        >"$OUT/${mode}_loss${loss}_run${run}.txt" 2>&1 || echo "   (exit $?)" >&2
    done
  done
done

OUT="$OUT" RUNS="$RUNS" LOSSES="$LOSSES" ROOMS="$ROOMS" MEMBERS="$MEMBERS" \
  ROOMS_PER_MEMBER="$ROOMS_PER_MEMBER" RATE="$RATE" DELAY_MS="$DELAY_MS" CONGESTION="$CONGESTION" \
  DURATION="$DURATION" STALL_TIMEOUT_MS="$STALL_TIMEOUT_MS" MODES="$MODES" python3 - <<'EOF'
import json, os, statistics

out, runs, losses = os.environ["OUT"], int(os.environ["RUNS"]), os.environ["LOSSES"].split()
modes = os.environ["MODES"].split()
e = os.environ
rooms, members, k = int(e["ROOMS"]), int(e["MEMBERS"]), int(e["ROOMS_PER_MEMBER"])
print(f"Shape: {rooms} rooms x {members} members = {rooms * members} connections, each in {k} "
      f"room(s) ({members * k} members per room), {e['RATE']} msg/s per room, "
      f"{2 * int(e['DELAY_MS'])} ms RTT, {e['CONGESTION']}, {e['DURATION']} s measured, "
      f"stall watchdog {e['STALL_TIMEOUT_MS']} ms, "
      f"{runs} run(s) per cell; median (min-max) of the runs.")
print()

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

print("| mode | loss | runs | p50 ms | p90 ms | p99 ms | p99.9 ms | deliveries/s | send lag p99 ms "
      "| delivered / expected (all runs) | lost/dup/ooo (all runs) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
p99 = {}
for mode in modes:
    for loss in losses:
        rs = load(mode, loss)
        lat = lambda k: [r["latency_us"][k] for r in rs]
        p99[(mode, loss)] = statistics.median(lat("p99")) if rs else None
        dps = spread([r["deliveries_per_s"] for r in rs], lambda v: f"{v:.0f}")
        lag = spread([r["send_lag_us"]["p99"] for r in rs], ms)
        got = f"{sum(r['deliveries'] for r in rs)} / {sum(r['expected_deliveries'] for r in rs)}"
        bad = "/".join(str(sum(r[k] for r in rs)) for k in ["lost", "duplicates", "out_of_order"])
        print(f"| {mode} | {loss} | {len(rs)} | {spread(lat('p50'), ms)} | {spread(lat('p90'), ms)} "
              f"| {spread(lat('p99'), ms)} | {spread(lat('p999'), ms)} | {dps} | {lag} | {got} | {bad} |")
print()
base, others = modes[0], modes[1:]
print("| loss | " + " | ".join(f"p99 {m} / {base}" for m in others) + " |")
print("|---" * (1 + len(others)) + "|")
for loss in losses:
    b = p99[(base, loss)]
    cells = [f"{p99[(m, loss)] / b:.2f}" if b and p99[(m, loss)] else "n/a" for m in others]
    print(f"| {loss} | " + " | ".join(cells) + " |")
EOF
