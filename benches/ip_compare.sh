#!/usr/bin/env bash
# Huddle (QUIC), Redis with TLS and NATS with TLS (TCP) across one and the same lossy link:
# `huddle ipsim` makes two network namespaces joined only through its seeded impairment (every
# IP packet, whatever the protocol), the three servers run in the server side (10.77.0.1) and
# `huddle load` in the client side, one system after the other, with the same workload and the
# same seed. Needs root (namespaces, /dev/net/tun) and a build with the Redis and NATS backends:
#
#   cargo build --release --features compare && sudo benches/ip_compare.sh
#
# Environment: the link, DELAY_MS (25 each way), JITTER_MS (0), LOSS (0.01), IPSIM_FLAGS (more
# `huddle ipsim` flags, e.g. "--burst-loss 0.02 --blackhole 5:1"), SEED (1); the workload, ROOMS
# (10), MEMBERS (10), RATE (10 messages/s per room), WARMUP (4), DURATION (8), RUN_TIMEOUT (120
# s per system); SYSTEMS ("huddle redis-tls nats-tls"), OUT (target/ip_compare: one JSON summary
# per system), HUDDLE (./target/release/huddle), STATE (/tmp/huddle-ip-compare: certificates,
# configs, logs). Redis and NATS come from benches/compare/start.sh (installed from Debian's
# packages if missing), started inside the server namespace. Everything started here is stopped
# and both namespaces are deleted on exit, Ctrl-C included.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

HUDDLE=${HUDDLE:-$top/target/release/huddle}
OUT=${OUT:-target/ip_compare}
STATE=${STATE:-/tmp/huddle-ip-compare}
DELAY_MS=${DELAY_MS:-25}
JITTER_MS=${JITTER_MS:-0}
LOSS=${LOSS:-0.01}
IPSIM_FLAGS=${IPSIM_FLAGS:-}
SEED=${SEED:-1}
ROOMS=${ROOMS:-10}
MEMBERS=${MEMBERS:-10}
RATE=${RATE:-10}
WARMUP=${WARMUP:-4}
DURATION=${DURATION:-8}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
SYSTEMS=${SYSTEMS:-"huddle redis-tls nats-tls"}
PREFIX=huddle-ipc-$$
SERVER_ADDR=10.77.0.1

[ -x "$HUDDLE" ] || { echo "no $HUDDLE: cargo build --release --features compare" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root: this makes network namespaces" >&2; exit 2; }
mkdir -p "$OUT" "$STATE"

ipsim_pid="" serve_pid="" compare_started=""
cleanup() {
  set +e
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  [ -n "$compare_started" ] && STATE=$STATE/compare "$top/benches/compare/stop.sh" >/dev/null
  # SIGTERM: ipsim stops forwarding and deletes both namespaces.
  [ -n "$ipsim_pid" ] && kill "$ipsim_pid" 2>/dev/null && wait "$ipsim_pid" 2>/dev/null
  [ -s "$STATE/ipsim.log" ] && tail -n 3 "$STATE/ipsim.log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Certificates valid for the server side's address too: Redis and NATS clients check the IP
# they dial (Huddle's client checks "localhost"). A fresh development CA, then a server
# certificate signed by it with localhost, 127.0.0.1 and 10.77.0.1.
CERTS=$STATE/certs
rm -rf "$CERTS"
"$HUDDLE" certs --dir "$CERTS" >/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=huddle ip_compare" \
  -keyout "$CERTS/server.key" -out "$STATE/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:%s\n' "$SERVER_ADDR" >"$STATE/san.ext"
openssl x509 -req -in "$STATE/server.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
  -CAcreateserial -days 7 -extfile "$STATE/san.ext" -out "$CERTS/server.pem" 2>/dev/null

# The link, bounded: it ends by itself after every run's time limit plus a minute.
n_systems=$(wc -w <<<"$SYSTEMS")
# shellcheck disable=SC2086
"$HUDDLE" ipsim --prefix "$PREFIX" --delay-ms "$DELAY_MS" --jitter-ms "$JITTER_MS" --loss "$LOSS" \
  --seed "$SEED" --duration $((n_systems * RUN_TIMEOUT + 60)) $IPSIM_FLAGS >"$STATE/ipsim.log" 2>&1 &
ipsim_pid=$!
for _ in $(seq 100); do grep -q "^ipsim up" "$STATE/ipsim.log" && break; sleep 0.1; done
grep "^ipsim up" "$STATE/ipsim.log" || { cat "$STATE/ipsim.log" >&2; exit 1; }

# The servers, in the server namespace (`ip netns exec` execs them, so $! is the server's pid).
ip netns exec "$PREFIX-s" "$HUDDLE" serve --listen "$SERVER_ADDR:7443" --certs-dir "$CERTS" \
  </dev/null >"$STATE/huddle.log" 2>&1 &
serve_pid=$!
if [ "$SYSTEMS" != huddle ]; then
  rm -f "$STATE/compare/env"
  compare_started=1
  ip netns exec "$PREFIX-s" env STATE="$STATE/compare" BIND="$SERVER_ADDR" CERTS_DIR="$CERTS" \
    HUDDLE="$HUDDLE" LIFETIME_S=$((n_systems * RUN_TIMEOUT + 60)) "$top/benches/compare/start.sh" >/dev/null
  # shellcheck disable=SC1091
  source "$STATE/compare/env"
fi

for sys in $SYSTEMS; do
  case $sys in
    huddle) target="--server $SERVER_ADDR:7443 --server-pid $serve_pid" ;;
    redis-tls) target="--backend redis --server $REDIS_TLS_ADDR --server-pid $REDIS_PID" ;;
    nats-tls) target="--backend nats --server $NATS_TLS_ADDR --server-pid $NATS_TLS_PID" ;;
    redis) target="--backend redis --plaintext --server $REDIS_ADDR --server-pid $REDIS_PID" ;;
    nats) target="--backend nats --plaintext --server $NATS_ADDR --server-pid $NATS_PID" ;;
    *) echo "unknown system $sys" >&2; exit 2 ;;
  esac
  echo "== $sys"
  # shellcheck disable=SC2086
  ip netns exec "$PREFIX-c" timeout "$RUN_TIMEOUT" "$HUDDLE" load $target --certs-dir "$CERTS" \
    --rooms "$ROOMS" --members "$MEMBERS" --rate "$RATE" --warmup "$WARMUP" --duration "$DURATION" \
    --seed "$SEED" --json "$OUT/$sys.json" </dev/null | grep -E "deliveries|latency|reconnects|result" || true
done

python3 - "$OUT" $SYSTEMS <<'PY'
import json, sys
out, systems = sys.argv[1], sys.argv[2:]
print("| system | deliveries/s | p50 ms | p99 ms | lost | server CPU us/delivery |")
print("|---|---|---|---|---|---|")
for s in systems:
    try:
        r = json.load(open(f"{out}/{s}.json"))
    except (OSError, ValueError):
        print(f"| {s} | no summary | | | | |")
        continue
    lat, cost = r["latency_us"], r.get("server_cpu_us_per_delivery")
    cost = "n/a" if cost is None else f"{cost:.1f}"
    print(f"| {s} | {r['deliveries_per_s']:.0f} | {lat['p50'] / 1000:.2f} | {lat['p99'] / 1000:.2f} "
          f"| {r['lost']} | {cost} |")
PY
