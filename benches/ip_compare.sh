#!/usr/bin/env bash
# Huddle (QUIC), Redis with TLS and NATS with TLS (TCP) across one and the same lossy link:
# `huddle ipsim` makes two network namespaces joined only through its seeded impairment (every
# IP packet, whatever the protocol), the three servers run in the server side (10.77.0.1) and
# `huddle load` in the client side, one system after the other, with the same workload and the
# same seed. Needs root (namespaces, /dev/net/tun) and a build with the Redis and NATS backends:
#
#   cargo build --release --features compare && sudo benches/ip_compare.sh
#
#   sudo BLACKHOLE=8:3 REBIND_AT=14 benches/ip_compare.sh     # a 3 s blackhole, an address change
#   sudo DELAY_MS=50 LOSS=0 benches/ip_compare.sh             # the handshake cost at 100 ms RTT
#   sudo DELAY_MS=50 LOSS=0 STARTUP=20 SYSTEMS="huddle huddle-0rtt redis-tls nats-tls" \
#     benches/ip_compare.sh     # time to login and first message of 20 new members, 100 ms RTT
#   sudo IPV6=1 benches/ip_compare.sh                          # the same over IPv6 (fd77:77::1)
#
# Each system gets a link of its own, started just before its server: BLACKHOLE (START:SECS,
# space-separated) and REBIND_AT (seconds) count from the link's start, which comes about 1-2 s
# before the members connect, so keep them after WARMUP + 2. `huddle load` reads the link's
# schedule (`--ipsim-schedule`) and reports for each system the catch-up after each blackhole,
# the first new delivery after each address change, reconnects and lost deliveries; the table
# at the end puts them side by side with the latency percentiles and connect+login time.
#
# Environment: the link, DELAY_MS (25 each way), JITTER_MS (0), LOSS (0.01), BLACKHOLE,
# REBIND_AT, IPSIM_FLAGS (more `huddle ipsim` flags, e.g. "--burst-loss 0.02"), SEED (1), IPV6
# (1: the servers listen on the server side's IPv6 address, fd77:77::1); STARTUP (N: instead of
# the fan-out, `huddle load --startup N` times N new members from their start to logged in, in
# the room and their first message; the system huddle-0rtt is Huddle with `--zero-rtt`); the
# workload, ROOMS (10), MEMBERS (10), ROOMS_PER_MEMBER (1: each member's connection is in its
# room and the next K-1, as `--rooms-per-member`), RATE (10 messages/s per room), WARMUP (4),
# DURATION (8), DRAIN (2: seconds after the last send for the last deliveries), RUN_TIMEOUT (120
# s per system); SYSTEMS ("huddle redis-tls nats-tls"; also huddle-1s, Huddle with `[transport]
# single_event_stream = true`: all of a connection's rooms on one ordered stream, as over TCP),
# OUT (target/ip_compare: one JSON summary per system), HUDDLE (./target/release/huddle), STATE
# (/tmp/huddle-ip-compare: certificates, configs, logs). Redis and NATS come from
# benches/compare/start.sh (installed from Debian's packages if missing), started inside the
# server namespace. Huddle's server gets the load harness's relaxations (no message or
# operation rate limits, no per-address caps, room for every member's rooms: Redis and NATS have
# none of these limits) and its defaults otherwise. Everything started here is stopped and both
# namespaces are deleted on exit, Ctrl-C included.
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
BLACKHOLE=${BLACKHOLE:-}
REBIND_AT=${REBIND_AT:-}
SEED=${SEED:-1}
ROOMS=${ROOMS:-10}
MEMBERS=${MEMBERS:-10}
ROOMS_PER_MEMBER=${ROOMS_PER_MEMBER:-1}
RATE=${RATE:-10}
WARMUP=${WARMUP:-4}
DURATION=${DURATION:-8}
DRAIN=${DRAIN:-2}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
SYSTEMS=${SYSTEMS:-"huddle redis-tls nats-tls"}
PREFIX=huddle-ipc-$$
IPV6=${IPV6:-0}
STARTUP=${STARTUP:-0}
SERVER_ADDR=10.77.0.1
SERVER_HOST=$SERVER_ADDR
if [ "$IPV6" = 1 ]; then SERVER_ADDR=fd77:77::1 SERVER_HOST="[fd77:77::1]"; fi

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
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.77.0.1,IP:fd77:77::1\n' >"$STATE/san.ext"
openssl x509 -req -in "$STATE/server.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
  -CAcreateserial -days 7 -extfile "$STATE/san.ext" -out "$CERTS/server.pem" 2>/dev/null

# Huddle's configuration: the load harness's relaxations (as `huddle load --spawn-server`
# writes them) and, for huddle-1s, one event stream per connection.
cat >"$STATE/huddle.toml" <<EOF
[limits]
rate_limit_per_s = 0
ops_rate_per_s = 0
address_ops_rate_per_s = 0
rooms_per_user = $((ROOMS_PER_MEMBER > 5 ? ROOMS_PER_MEMBER : 5))

[transport]
retry_above_handshakes_per_s = 4294967295
max_connections_per_ip = 0
EOF
sed 's/^\[transport\]$/[transport]\nsingle_event_stream = true/' "$STATE/huddle.toml" >"$STATE/huddle-1s.toml"

# One system at a time, each on a link of its own started just before its server, so that the
# blackholes and address changes (which count from the link's start) fall at the same point of
# every run: the link (bounded: it ends by itself after the run's time limit plus a minute),
# the server in the server namespace (`ip netns exec` execs it, so $! is its pid), then `huddle
# load` in the client namespace, told the link's schedule.
link_flags=""
for w in $BLACKHOLE; do link_flags="$link_flags --blackhole $w"; done
for r in $REBIND_AT; do link_flags="$link_flags --rebind-at $r"; done
stop_system() {
  set +e
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  serve_pid=""
  [ -n "$compare_started" ] && STATE=$STATE/compare "$top/benches/compare/stop.sh" >/dev/null
  compare_started=""
  [ -n "$ipsim_pid" ] && kill "$ipsim_pid" 2>/dev/null && wait "$ipsim_pid" 2>/dev/null
  ipsim_pid=""
  set -e
}

for sys in $SYSTEMS; do
  echo "== $sys"
  rm -f "$OUT/$sys.json" "$STATE/schedule"
  # shellcheck disable=SC2086
  "$HUDDLE" ipsim --prefix "$PREFIX" --delay-ms "$DELAY_MS" --jitter-ms "$JITTER_MS" --loss "$LOSS" \
    --seed "$SEED" --duration $((RUN_TIMEOUT + 60)) --schedule "$STATE/schedule" $link_flags $IPSIM_FLAGS \
    >"$STATE/ipsim.log" 2>&1 &
  ipsim_pid=$!
  for _ in $(seq 300); do grep -q "^ipsim up" "$STATE/ipsim.log" && break; sleep 0.1; done
  grep -q "^ipsim up" "$STATE/ipsim.log" || { cat "$STATE/ipsim.log" >&2; exit 1; }
  case $sys in
    huddle | huddle-1s | huddle-0rtt)
      conf=$sys; [ "$sys" = huddle-0rtt ] && conf=huddle
      ip netns exec "$PREFIX-s" "$HUDDLE" serve --listen "$SERVER_HOST:7443" --certs-dir "$CERTS" \
        --config "$STATE/$conf.toml" </dev/null >"$STATE/$sys.log" 2>&1 &
      serve_pid=$!
      target="--server $SERVER_HOST:7443 --server-pid $serve_pid"
      [ "$sys" = huddle-0rtt ] && target="$target --zero-rtt"
      ;;
    redis-tls | nats-tls | redis | nats)
      rm -f "$STATE/compare/env"
      compare_started=1
      ip netns exec "$PREFIX-s" env STATE="$STATE/compare" BIND="$SERVER_ADDR" CERTS_DIR="$CERTS" \
        HUDDLE="$HUDDLE" LIFETIME_S=$((RUN_TIMEOUT + 60)) "$top/benches/compare/start.sh" >/dev/null
      # shellcheck disable=SC1091
      source "$STATE/compare/env"
      case $sys in
        redis-tls) target="--backend redis --server $REDIS_TLS_ADDR --server-pid $REDIS_PID" ;;
        nats-tls) target="--backend nats --server $NATS_TLS_ADDR --server-pid $NATS_TLS_PID" ;;
        redis) target="--backend redis --plaintext --server $REDIS_ADDR --server-pid $REDIS_PID" ;;
        nats) target="--backend nats --plaintext --server $NATS_ADDR --server-pid $NATS_PID" ;;
      esac
      ;;
    *) echo "unknown system $sys" >&2; exit 2 ;;
  esac
  # shellcheck disable=SC2086
  workload="--rooms $ROOMS --members $MEMBERS --rooms-per-member $ROOMS_PER_MEMBER --rate $RATE"
  workload="$workload --warmup $WARMUP --duration $DURATION --drain $DRAIN"
  [ "$STARTUP" -gt 0 ] && workload="--startup $STARTUP"
  # shellcheck disable=SC2086
  ip netns exec "$PREFIX-c" timeout "$RUN_TIMEOUT" "$HUDDLE" load $target --certs-dir "$CERTS" \
    $workload --seed "$SEED" --ipsim-schedule "$STATE/schedule" --json "$OUT/$sys.json" </dev/null |
    grep -E "connect\+login|startup|deliveries|latency|reconnects|blackhole|address change|result" || true
  stop_system
done

python3 - "$OUT" $SYSTEMS <<'PY'
import json, sys
out, systems = sys.argv[1], sys.argv[2:]
def ms(us):
    return f"{us / 1000:.1f}"
def opt(v):
    return "-" if v is None else f"{v:.0f}"
if any(json.load(open(f"{out}/{s}.json")).get("startup") for s in systems
       if __import__("os").path.exists(f"{out}/{s}.json")):
    print("| system | new members | logged in p50 / max ms | in the room p50 / max ms "
          "| first message p50 / max ms | 0-RTT logins |")
    print("|---|---|---|---|---|---|")
    for s in systems:
        try:
            st = json.load(open(f"{out}/{s}.json"))["startup"]
        except (OSError, ValueError, KeyError, TypeError):
            print(f"| {s} | no summary | | | | |")
            continue
        fig = lambda l: f"{ms(l['p50'])} / {ms(l['max'])}"
        early = "-" if st["early_data"] is None else f"{st['early_data']} of {st['members']}"
        print(f"| {s} | {st['first_delivery_us']['count']} of {st['members']} | {fig(st['login_us'])} "
              f"| {fig(st['in_room_us'])} | {fig(st['first_delivery_us'])} | {early} |")
    sys.exit(0)
print("| system | delivered / expected | lost | send errors + unacked | p50 / p99 / p99.9 / max ms "
      "| connect+login p50 / max ms | reconnects | caught up after blackholes ms "
      "| first new delivery after address changes p50 / max ms (members without) |")
print("|---|---|---|---|---|---|---|---|---|")
for s in systems:
    try:
        r = json.load(open(f"{out}/{s}.json"))
    except (OSError, ValueError):
        print(f"| {s} | no summary | | | | | | | |")
        continue
    lat, con = r["latency_us"], r["connect_us"]
    caught = ", ".join(opt(o["caught_up_after_end_ms"]) for o in r["outages"]) or "-"
    changes = ", ".join(
        f"{opt(c['first_delivery_p50_ms'])} / {opt(c['first_delivery_max_ms'])} ({c['members_without']})"
        for c in r["address_changes"]) or "-"
    print(f"| {s} | {r['deliveries']} / {r['expected_deliveries']} | {r['lost']} "
          f"| {r['send_errors']} + {r['unacked']} "
          f"| {ms(lat['p50'])} / {ms(lat['p99'])} / {ms(lat['p999'])} / {ms(lat['max'])} "
          f"| {ms(con['p50'])} / {ms(con['max'])} | {r['reconnects']} | {caught} | {changes} |")
PY
