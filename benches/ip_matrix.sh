#!/usr/bin/env bash
# The lossy-link comparison of issue 24 section 3 in one command: Huddle, Huddle with one event
# stream per connection (huddle-1s), Redis 7 with TLS and NATS 2.9 with TLS, every one across
# the same `huddle ipsim` link (benches/ip_compare.sh: two network namespaces, every IP packet
# through the same seeded impairment), cell after cell:
#
#   cargo build --release --features compare && sudo benches/ip_matrix.sh
#
#   loss-L-rttR  20 rooms x 10 members, each connection in 4 rooms (40 members a room), 20 msg/s
#                per room, 200 B: 15,600 deliveries/s; uniform loss L% (0, 1, 5, 10) both ways,
#                R ms RTT (50, 150)
#   w3-L         the W3 shape in 10 rooms: 100 rooms of 100, 1,000 connections each in 10 rooms,
#                1 msg/s per room (9,900 deliveries/s), 50 ms RTT, loss L% (1, 5)
#   blackhole    the 20 x 10 workload, 50 ms RTT, no loss, both directions dark for 3 s
#                (catch-up after the link returns)
#   rebind       the same, the client side's address changes mid-run (first delivery after it,
#                deliveries lost)
#   start        the same at 100 ms RTT, no loss: connect + login (+ subscribe or enter the
#                rooms) on a fresh start
#
# Every cell runs each system once with the same seed (the same packets dropped at the same
# point of the schedule, whatever the protocol). About 23 minutes in all on a 2-core machine
# (each system-run takes its warm-up, measured window and drain plus 5-30 s to connect and stop;
# RUN_TIMEOUT bounds each). Writes OUT/CELL/SYSTEM.json (`huddle load --json`) and
# OUT/CELL/cell.json (the cell's link and workload), then OUT/table.md and the
# latency-against-loss plots OUT/loss-rtt50.svg and OUT/loss-rtt150.svg (benches/ip_matrix.py,
# which can be run again on its own: `benches/ip_matrix.py OUT`).
#
# Environment: CELLS (all of the above, in that order; a subset by name, e.g. "loss-5-rtt50
# blackhole"), SYSTEMS ("huddle huddle-1s redis-tls nats-tls"), SEED (1), WARMUP (4), DURATION
# (8), DRAIN (4: a delivery later than this after the last send counts as lost), RUN_TIMEOUT (150 s per system-run), OUT (target/ip_matrix), HUDDLE, NICE (0; e.g. -10).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

OUT=${OUT:-target/ip_matrix}
SYSTEMS=${SYSTEMS:-"huddle huddle-1s redis-tls nats-tls"}
SEED=${SEED:-1}
WARMUP=${WARMUP:-4}
DURATION=${DURATION:-8}
DRAIN=${DRAIN:-4}
RUN_TIMEOUT=${RUN_TIMEOUT:-150}
NICE=${NICE:-0}
ALL_CELLS="loss-0-rtt50 loss-1-rtt50 loss-5-rtt50 loss-10-rtt50 loss-0-rtt150 loss-1-rtt150
loss-5-rtt150 loss-10-rtt150 w3-1 w3-5 blackhole rebind start"
CELLS=${CELLS:-$ALL_CELLS}

[ "$(id -u)" = 0 ] || { echo "run as root: this makes network namespaces" >&2; exit 2; }
mkdir -p "$OUT"
started=$(date +%s)

# One cell: its link and workload as environment for ip_compare.sh, recorded in cell.json.
run_cell() {
  local cell=$1 loss=0 rtt=50 rooms=20 members=10 k=4 rate=20 warmup=$WARMUP duration=$DURATION
  local blackhole="" rebind="" kind
  case $cell in
    loss-*-rtt*)
      kind=loss
      loss=${cell#loss-}
      loss=${loss%-rtt*}
      rtt=${cell#*-rtt}
      ;;
    w3-*)
      kind=w3
      loss=${cell#w3-}
      rooms=100 members=10 k=10 rate=1
      ;;
    blackhole)
      kind=blackhole
      blackhole="10:3"
      duration=$((DURATION + 6))
      ;;
    rebind)
      kind=rebind
      rebind=12
      duration=$((DURATION + 4))
      ;;
    start)
      kind=start
      rtt=100 warmup=2 duration=4
      ;;
    *) echo "unknown cell $cell" >&2; exit 2 ;;
  esac
  local dir=$OUT/$cell
  rm -rf "$dir"
  mkdir -p "$dir"
  printf '{"cell":"%s","kind":"%s","loss_pct":%s,"rtt_ms":%s,"rooms":%s,"members":%s,"rooms_per_member":%s,"rate":%s,"warmup_s":%s,"duration_s":%s,"drain_s":%s,"blackhole":"%s","rebind_at_s":"%s","seed":%s,"commit":"%s","started":"%s","loadavg":"%s"}\n' \
    "$cell" "$kind" "$loss" "$rtt" "$rooms" "$members" "$k" "$rate" "$warmup" "$duration" \
    "$DRAIN" "$blackhole" "$rebind" "$SEED" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$dir/cell.json"
  echo "=== $cell ($(( $(date +%s) - started )) s in)"
  nice -n "$NICE" env OUT="$dir" STATE="/tmp/huddle-ip-matrix-$$" SYSTEMS="$SYSTEMS" SEED="$SEED" \
    DELAY_MS=$((rtt / 2)) LOSS="$(awk "BEGIN { print $loss / 100 }")" BLACKHOLE="$blackhole" \
    REBIND_AT="$rebind" ROOMS=$rooms MEMBERS=$members ROOMS_PER_MEMBER=$k RATE=$rate \
    WARMUP="$warmup" DURATION="$duration" DRAIN="$DRAIN" RUN_TIMEOUT="$RUN_TIMEOUT" \
    HUDDLE="${HUDDLE:-$top/target/release/huddle}" "$top/benches/ip_compare.sh" \
    >"$dir/ip_compare.log" 2>&1 || echo "$cell: ip_compare.sh failed (see $dir/ip_compare.log)" >&2
  sed -n '/^| system/,$p' "$dir/ip_compare.log"
}

for cell in $CELLS; do run_cell "$cell"; done
echo "=== all cells in $(( $(date +%s) - started )) s"
python3 "$top/benches/ip_matrix.py" "$OUT"
